#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The webhook sink over HTTPS against a receiver on loopback whose
//! certificate comes from a CA generated here: trusted through `tls.ca_file`,
//! refused with the built-in roots alone, and mutual TLS with a client
//! certificate (key from a secret file) accepted and without one refused at
//! the handshake. Sinks are built from their configuration as JSON, with the
//! documented keys, like the daemon builds them from its TOML file.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use siem_export::config::SinkConfig;
use siem_export::Delivery;
use support::{events, Request};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::rustls;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A test CA; the server certificate (for `127.0.0.1`), a client certificate,
/// all written as PEM files into `dir`.
struct Pki {
    ca: String,
    server_cert: String,
    server_key: String,
}

fn pki(dir: &Path) -> Pki {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "https test CA");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issue = |names: Vec<String>, cn: &str| {
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = issue(vec!["127.0.0.1".into()], "receiver");
    let (client_cert, client_key) = issue(vec!["enforcer.test".into()], "enforcer");
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("client.pem"), client_cert).unwrap();
    std::fs::write(dir.join("client.key"), client_key).unwrap();
    std::fs::write(dir.join("hook.secret"), format!("{SECRET}\n")).unwrap();
    Pki {
        ca: ca.pem(),
        server_cert,
        server_key,
    }
}

#[derive(Default)]
struct Seen {
    /// Requests read completely (each answered 200).
    requests: Vec<Request>,
    /// TLS handshakes the receiver refused or that failed, with the reason.
    handshake_errors: Vec<String>,
}

/// An HTTPS/1.1 receiver on 127.0.0.1 that answers every request `200 {}`.
/// With `require_client_cert`, clients must present a certificate signed by
/// the test CA.
struct HttpsReceiver {
    port: u16,
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HttpsReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HttpsReceiver {
    async fn start(pki: &Pki, require_client_cert: bool) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = vec![CertificateDer::from_pem_slice(pki.server_cert.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(pki.server_key.as_bytes()).unwrap();
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if require_client_cert {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(CertificateDer::from_pem_slice(pki.ca.as_bytes()).unwrap())
                .unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let config = builder.with_single_cert(chain, key).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let st = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    break;
                };
                let acceptor = acceptor.clone();
                let st = Arc::clone(&st);
                conns.spawn(async move {
                    let mut tls = match acceptor.accept(sock).await {
                        Ok(t) => t,
                        Err(e) => {
                            st.lock().unwrap().handshake_errors.push(e.to_string());
                            return;
                        }
                    };
                    let mut buf = Vec::new();
                    while let Some(req) = read_request(&mut tls, &mut buf).await {
                        st.lock().unwrap().requests.push(req);
                        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
                        if tls.write_all(ok).await.is_err() || tls.flush().await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self { port, seen, task }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}/in", self.port)
    }

    fn requests(&self) -> Vec<Request> {
        self.seen.lock().unwrap().requests.clone()
    }

    fn handshake_errors(&self) -> Vec<String> {
        self.seen.lock().unwrap().handshake_errors.clone()
    }
}

async fn read_request<S: AsyncRead + Unpin>(sock: &mut S, buf: &mut Vec<u8>) -> Option<Request> {
    let mut chunk = [0u8; 16384];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let mut lines = head.split("\r\n");
            let mut first = lines.next()?.split(' ');
            let method = first.next()?.to_owned();
            let path = first.next()?.to_owned();
            let mut headers = HashMap::new();
            for l in lines {
                let (k, v) = l.split_once(':')?;
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
            let len: usize = headers
                .get("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = sock.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = buf[end + 4..end + 4 + len].to_vec();
            buf.drain(..end + 4 + len);
            return Some(Request {
                method,
                path,
                headers,
                body,
                at: Instant::now(),
            });
        }
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A webhook sink as the daemon's `[[export.sinks]]` table would give it,
/// plus the `tls` table `tls`.
fn sink(dir: &Path, url: &str, tls: serde_json::Value) -> SinkConfig {
    let cfg = serde_json::json!({
        "name": "hook",
        "type": "webhook",
        "url": url,
        "format": "native",
        "secrets": [{ "file": dir.join("hook.secret") }],
        "timeouts": { "connect_ms": 3000, "request_ms": 5000 },
        "tls": tls,
    });
    serde_json::from_value(cfg).unwrap()
}

async fn send(cfg: &SinkConfig, n: u64) -> Vec<Delivery> {
    let mut rt = cfg.build().unwrap();
    let evs = events(0..n);
    let report = tokio::time::timeout(Duration::from_secs(15), rt.sink.send(&evs))
        .await
        .expect("the send finishes within its timeouts");
    report.deliveries
}

fn ids(req: &Request) -> Vec<String> {
    let v: Vec<serde_json::Value> = serde_json::from_slice(&req.body).unwrap();
    v.iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

fn expected_ids(n: u64) -> Vec<String> {
    events(0..n).iter().map(|e| e.id.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_over_https_trusts_the_configured_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let rx = HttpsReceiver::start(&pki, false).await;
    let cfg = sink(
        dir.path(),
        &rx.url(),
        serde_json::json!({ "ca_file": dir.path().join("ca.pem") }),
    );
    let d = send(&cfg, 3).await;
    assert_eq!(d.len(), 3);
    assert!(d.iter().all(|d| *d == Delivery::Delivered), "{d:?}");
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 1, "one batch, one request");
    let r = &reqs[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/in");
    support::verify_webhook(SECRET, r).unwrap();
    assert!(support::verify_webhook("whsec_d3Jvbmc=", r).is_err());
    assert_eq!(ids(r), expected_ids(3));
    assert!(
        rx.handshake_errors().is_empty(),
        "{:?}",
        rx.handshake_errors()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_over_https_refuses_an_unknown_ca_with_the_default_roots() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let rx = HttpsReceiver::start(&pki, false).await;
    // No `tls` keys at all: only the built-in roots.
    let cfg = sink(dir.path(), &rx.url(), serde_json::json!({}));
    let d = send(&cfg, 2).await;
    assert_eq!(d.len(), 2);
    for d in &d {
        // Transport errors, TLS included, are classified as retryable.
        let Delivery::Retryable { reason, .. } = d else {
            panic!("expected a retryable TLS failure: {d:?}");
        };
        eprintln!("default roots: {reason}");
        let lower = reason.to_ascii_lowercase();
        assert!(
            lower.contains("certificate") && lower.contains("unknownissuer"),
            "the reason names the certificate problem: {reason}"
        );
    }
    assert!(rx.requests().is_empty(), "nothing delivered");
    // The client aborted the handshake.
    let deadline = Instant::now() + Duration::from_secs(5);
    while rx.handshake_errors().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!rx.handshake_errors().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_over_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let pki = pki(dir.path());
    let rx = HttpsReceiver::start(&pki, true).await;

    // With a client certificate (its key from a secret file): delivered.
    let with_cert = sink(
        dir.path(),
        &rx.url(),
        serde_json::json!({
            "ca_file": p("ca.pem"),
            "only_ca_file": true,
            "client_cert": p("client.pem"),
            "client_key": { "file": p("client.key") },
        }),
    );
    let d = send(&with_cert, 4).await;
    assert!(d.iter().all(|d| *d == Delivery::Delivered), "{d:?}");
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 1);
    support::verify_webhook(SECRET, &reqs[0]).unwrap();
    assert_eq!(ids(&reqs[0]), expected_ids(4));
    assert!(
        rx.handshake_errors().is_empty(),
        "{:?}",
        rx.handshake_errors()
    );

    // Without one: the receiver refuses the handshake, nothing arrives.
    let without = sink(
        dir.path(),
        &rx.url(),
        serde_json::json!({ "ca_file": p("ca.pem"), "only_ca_file": true }),
    );
    let d = send(&without, 2).await;
    eprintln!("without a client certificate: {:?}", d[0]);
    assert_eq!(d.len(), 2);
    // Transport errors are retryable. With TLS 1.3 the client's handshake is
    // done before the server has checked it, so the client sees either the
    // server's `CertificateRequired` alert or a connection closed before the
    // request could be sent: the receiver's side says why.
    for d in &d {
        assert!(
            matches!(d, Delivery::Retryable { .. }),
            "a refused handshake is retryable: {d:?}"
        );
    }
    assert_eq!(rx.requests().len(), 1, "nothing more delivered");
    let deadline = Instant::now() + Duration::from_secs(5);
    while rx.handshake_errors().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let errs = rx.handshake_errors();
    eprintln!("receiver: {errs:?}");
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].to_ascii_lowercase().contains("certificate"),
        "the receiver refused for the missing client certificate: {errs:?}"
    );
}
