//! Shared plumbing of the network sinks: TLS settings (rustls; custom CA,
//! client certificates), the HTTP client, and turning HTTP answers into
//! [`Delivery`] values.

pub mod elasticsearch;
pub mod splunk;
pub mod syslog;
pub mod webhook;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use tokio_rustls::rustls;

use crate::encode::{Encoder, NativeJson};
use crate::retry::parse_retry_after;
use crate::secret::SecretSource;
use crate::sink::{Delivery, SinkError};
use crate::{Ecs, Ocsf};

/// The JSON event format of an HTTP sink.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JsonFormat {
    /// The native schema (this README).
    #[default]
    Native,
    /// Elastic Common Schema.
    Ecs,
    /// OCSF.
    Ocsf,
}

impl JsonFormat {
    pub fn encoder(self) -> Box<dyn Encoder> {
        match self {
            JsonFormat::Native => Box::new(NativeJson),
            JsonFormat::Ecs => Box::new(Ecs::default()),
            JsonFormat::Ocsf => Box::new(Ocsf::default()),
        }
    }
}

/// How much of an error answer's body is kept in a dead-letter reason.
pub const BODY_EXCERPT: usize = 512;

/// TLS settings of a network sink. Without any field set, the server is
/// verified against the built-in Mozilla roots and no client certificate is
/// sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with one or more CA certificates to trust in addition to
    /// the built-in roots (or instead, with `only_ca_file`).
    pub ca_file: Option<PathBuf>,
    /// Trust only `ca_file`, not the built-in roots.
    pub only_ca_file: bool,
    /// PEM certificate chain for mutual TLS; requires `client_key`.
    pub client_cert: Option<PathBuf>,
    /// The client certificate's PEM private key (a secret: file or env).
    pub client_key: Option<SecretSource>,
    /// Name to verify the server certificate against, when it differs from
    /// the host in the address (syslog only; HTTP uses the URL's host).
    pub server_name: Option<String>,
}

/// (certificate chain, private key), PEM.
type PemPair = (Vec<u8>, Vec<u8>);

fn config_err(msg: impl Into<String>) -> SinkError {
    SinkError::Config(msg.into())
}

fn read_file(path: &PathBuf, what: &str) -> Result<Vec<u8>, SinkError> {
    std::fs::read(path)
        .map_err(|e| config_err(format!("cannot read {what} `{}`: {e}", path.display())))
}

impl TlsConfig {
    /// The client certificate chain and key, both PEM.
    fn client_identity_pem(&self) -> Result<Option<PemPair>, SinkError> {
        match (&self.client_cert, &self.client_key) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => {
                let cert = read_file(cert, "client certificate")?;
                let key = key
                    .load()
                    .map_err(|e| config_err(format!("client key: {e}")))?;
                Ok(Some((cert, key.expose().as_bytes().to_vec())))
            }
            _ => Err(config_err("tls: client_cert and client_key go together")),
        }
    }

    /// A rustls client configuration (syslog over TLS).
    pub fn rustls_config(&self) -> Result<Arc<rustls::ClientConfig>, SinkError> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};

        let mut roots = rustls::RootCertStore::empty();
        if !self.only_ca_file {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        if let Some(path) = &self.ca_file {
            let pem = read_file(path, "CA file")?;
            let mut n = 0;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert =
                    cert.map_err(|e| config_err(format!("CA file `{}`: {e}", path.display())))?;
                roots
                    .add(cert)
                    .map_err(|e| config_err(format!("CA file `{}`: {e}", path.display())))?;
                n += 1;
            }
            if n == 0 {
                return Err(config_err(format!(
                    "CA file `{}` holds no certificate",
                    path.display()
                )));
            }
        } else if self.only_ca_file {
            return Err(config_err("tls: only_ca_file needs ca_file"));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| config_err(format!("tls: {e}")))?
            .with_root_certificates(roots);
        let cfg = match self.client_identity_pem()? {
            None => builder.with_no_client_auth(),
            Some((cert_pem, key_pem)) => {
                let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
                    .collect::<Result<_, _>>()
                    .map_err(|e| config_err(format!("client certificate: {e}")))?;
                // The key's parse error never includes key material.
                let key = PrivateKeyDer::from_pem_slice(&key_pem)
                    .map_err(|e| config_err(format!("client key: {e}")))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| config_err(format!("client certificate: {e}")))?
            }
        };
        Ok(Arc::new(cfg))
    }

    /// Applies the settings to an HTTP client builder.
    fn apply(&self, mut b: reqwest::ClientBuilder) -> Result<reqwest::ClientBuilder, SinkError> {
        if let Some(path) = &self.ca_file {
            let pem = read_file(path, "CA file")?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| config_err(format!("CA file `{}`: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(config_err(format!(
                    "CA file `{}` holds no certificate",
                    path.display()
                )));
            }
            for c in certs {
                b = b.add_root_certificate(c);
            }
        } else if self.only_ca_file {
            return Err(config_err("tls: only_ca_file needs ca_file"));
        }
        if self.only_ca_file {
            b = b.tls_built_in_root_certs(false);
        }
        if let Some((mut cert, key)) = self.client_identity_pem()? {
            cert.push(b'\n');
            cert.extend_from_slice(&key);
            let id = reqwest::Identity::from_pem(&cert)
                .map_err(|_| config_err("client certificate or key is not valid PEM"))?;
            b = b.identity(id);
        }
        Ok(b)
    }
}

/// Timeouts of an HTTP sink, ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpTimeouts {
    /// TCP + TLS connect (default 5000).
    pub connect_ms: u64,
    /// Whole request, from sending to the end of the answer (default 30000).
    pub request_ms: u64,
}

impl Default for HttpTimeouts {
    fn default() -> Self {
        Self {
            connect_ms: 5_000,
            request_ms: 30_000,
        }
    }
}

/// The HTTP client of one sink: rustls, no redirects (a 3xx is an answer
/// to act on, not to follow with the payload), keep-alive.
pub fn http_client(tls: &TlsConfig, t: HttpTimeouts) -> Result<reqwest::Client, SinkError> {
    let b = reqwest::Client::builder()
        .use_rustls_tls()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_millis(t.connect_ms))
        .timeout(Duration::from_millis(t.request_ms))
        .pool_idle_timeout(Duration::from_secs(60));
    tls.apply(b)?
        .build()
        .map_err(|e| config_err(format!("http client: {e}")))
}

/// `Retry-After` of an answer, if any and parseable.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(v, SystemTime::now())
}

/// The first [`BODY_EXCERPT`] bytes of a body, as text.
pub fn excerpt(body: &[u8]) -> String {
    let cut = &body[..body.len().min(BODY_EXCERPT)];
    String::from_utf8_lossy(cut).trim().to_owned()
}

/// Whether a status is worth retrying: 408, 425, 429 and 5xx.
pub fn status_is_retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 425 | 429) || status.is_server_error()
}

/// The delivery an HTTP answer means for every event it covered: 2xx
/// delivered; 408/425/429/5xx retryable (honouring `Retry-After`);
/// anything else permanent, with the status and the start of the body.
pub fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Delivery {
    if status.is_success() {
        return Delivery::Delivered;
    }
    let reason = format!("HTTP {}: {}", status.as_u16(), excerpt(body));
    if status_is_retryable(status) {
        Delivery::Retryable {
            reason,
            retry_after: retry_after(headers),
        }
    } else {
        Delivery::Permanent { reason }
    }
}

/// A transport error (connect, TLS, timeout, connection reset) is always
/// retryable. The URL is left out of the reason: it may carry credentials.
pub fn transport_error(err: reqwest::Error) -> Delivery {
    let kind = if err.is_timeout() {
        "timeout"
    } else if err.is_connect() {
        "connect"
    } else {
        "transport"
    };
    let err = err.without_url();
    let mut reason = format!("{kind}: {err}");
    let mut src = std::error::Error::source(&err);
    while let Some(s) = src {
        reason.push_str(": ");
        reason.push_str(&s.to_string());
        src = s.source();
    }
    Delivery::retryable(reason)
}

/// Sends a prepared request and returns the status, headers and body (at
/// most `limit` bytes kept), or the transport error as a delivery.
pub async fn exchange(
    req: reqwest::RequestBuilder,
    limit: usize,
) -> Result<(StatusCode, HeaderMap, Vec<u8>), Delivery> {
    let mut resp = req.send().await.map_err(transport_error)?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() < limit {
                    let room = limit - body.len();
                    body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
            }
            Ok(None) => break,
            // The answer's status arrived; a broken body only loses detail
            // for a success, but we cannot trust a partial error body to
            // decide either way.
            Err(e) if status.is_success() && limit <= BODY_EXCERPT => {
                tracing::debug!(error = %e.without_url(), "answer body cut short");
                break;
            }
            Err(e) => return Err(transport_error(e)),
        }
    }
    Ok((status, headers, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let h = HeaderMap::new();
        assert_eq!(classify(StatusCode::OK, &h, b""), Delivery::Delivered);
        assert_eq!(
            classify(StatusCode::NO_CONTENT, &h, b""),
            Delivery::Delivered
        );
        for s in [408, 425, 429, 500, 502, 503, 504] {
            let st = StatusCode::from_u16(s).unwrap();
            assert!(
                matches!(classify(st, &h, b""), Delivery::Retryable { .. }),
                "{s}"
            );
        }
        for s in [301, 400, 401, 403, 404, 413, 422] {
            let st = StatusCode::from_u16(s).unwrap();
            assert!(
                matches!(classify(st, &h, b""), Delivery::Permanent { .. }),
                "{s}"
            );
        }
        let long = vec![b'x'; 2000];
        let Delivery::Permanent { reason } = classify(StatusCode::BAD_REQUEST, &h, &long) else {
            panic!()
        };
        assert_eq!(reason.len(), "HTTP 400: ".len() + BODY_EXCERPT);
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS, &h, b"slow down"),
            Delivery::Retryable {
                reason: "HTTP 429: slow down".into(),
                retry_after: Some(Duration::from_secs(7))
            }
        );
    }

    #[test]
    fn tls_config_errors() {
        let only = TlsConfig {
            only_ca_file: true,
            ..TlsConfig::default()
        };
        assert!(only.rustls_config().is_err());
        let half = TlsConfig {
            client_cert: Some("/x".into()),
            ..TlsConfig::default()
        };
        assert!(half.rustls_config().is_err());
        assert!(TlsConfig::default().rustls_config().is_ok());
        assert!(http_client(&TlsConfig::default(), HttpTimeouts::default()).is_ok());
    }
}
