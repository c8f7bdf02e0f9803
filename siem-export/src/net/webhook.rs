//! Generic webhook: POSTs each batch as one JSON array, signed the
//! Standard Webhooks way.
//!
//! Headers of every request:
//!
//! * `webhook-id`: `msg_` + 32 hex digits of SHA-256 over the batch's event
//!   ids. A retry of the same batch carries the same id, so a receiver can
//!   de-duplicate whole deliveries (and, inside, events by `id`).
//! * `webhook-timestamp`: Unix seconds when this attempt was sent.
//! * `webhook-signature`: `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`,
//!   one space-separated entry per configured secret (key rotation: the
//!   receiver accepts any that verifies). A secret written `whsec_<base64>`
//!   is base64-decoded to the key, as Standard Webhooks libraries do; any
//!   other secret is used as raw bytes.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{
    classify, excerpt, exchange, http_client, HttpTimeouts, JsonFormat, TlsConfig, BODY_EXCERPT,
};
use crate::encode::{Encoder, Framing};
use crate::event::SecurityEvent;
use crate::secret::SecretSource;
use crate::sink::{
    send_decoded, AsyncSink, BatchReport, Delivery, NativeRecord, SendFuture, SinkError,
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://` or `https://` URL to POST to.
    pub url: String,
    /// Signing secrets (Standard Webhooks). Empty: requests are not signed.
    #[serde(default)]
    pub secrets: Vec<SecretSource>,
    /// Extra headers, e.g. `{ "x-tenant" = "blue" }`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Extra headers whose values are secrets, e.g.
    /// `{ authorization = { env = "WEBHOOK_AUTH" } }`.
    #[serde(default)]
    pub secret_headers: BTreeMap<String, SecretSource>,
    #[serde(default)]
    pub format: JsonFormat,
    #[serde(default)]
    pub tls: TlsConfig,
    #[serde(default)]
    pub timeouts: HttpTimeouts,
}

impl WebhookConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            secrets: Vec::new(),
            headers: BTreeMap::new(),
            secret_headers: BTreeMap::new(),
            format: JsonFormat::Native,
            tls: TlsConfig::default(),
            timeouts: HttpTimeouts::default(),
        }
    }
}

/// A signing key; `Debug` does not show it.
struct Key(Vec<u8>);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

pub struct WebhookSink {
    url: reqwest::Url,
    client: reqwest::Client,
    keys: Vec<Key>,
    headers: HeaderMap,
    encoder: Box<dyn Encoder>,
    /// The payload is native JSON: stored records are sent as they are.
    native: bool,
    last_answer: Option<String>,
}

/// The signing key of a secret: `whsec_<base64>` decoded, else the bytes.
pub fn signing_key(secret: &str) -> Result<Vec<u8>, SinkError> {
    match secret.strip_prefix("whsec_") {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| {
                SinkError::Config("webhook secret `whsec_...` is not valid base64".into())
            }),
        None => Ok(secret.as_bytes().to_vec()),
    }
}

/// `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.
pub fn sign(key: &[u8], id: &str, timestamp: u64, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        // HMAC accepts keys of any length.
        Err(_) => return String::new(),
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(tag)
    )
}

/// `[record,record]`: the records spliced in as they are, one allocation.
fn json_array(records: &[NativeRecord]) -> Vec<u8> {
    let len = records.iter().map(|r| r.json.len() + 1).sum::<usize>() + 1;
    let mut body = Vec::with_capacity(len);
    body.push(b'[');
    for (i, r) in records.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&r.json);
    }
    body.push(b']');
    body
}

/// `msg_` + 32 hex digits of SHA-256 over the ids (in batch order).
pub fn batch_id<'a>(ids: impl IntoIterator<Item = &'a SecurityEvent>) -> String {
    let mut h = Sha256::new();
    let mut buf = [0u8; 26];
    for ev in ids {
        h.update(ev.id.encode(&mut buf).as_bytes());
        h.update(b"\n");
    }
    hex_id(h)
}

/// [`batch_id`] from the ids' text form (as the outbox stores them: upper
/// case, 26 characters), so a batch sent from stored records gets the same
/// `webhook-id` as the same batch sent from decoded events.
pub fn batch_id_of_texts<'a>(ids: impl IntoIterator<Item = &'a str>) -> String {
    let mut h = Sha256::new();
    for id in ids {
        h.update(id.as_bytes());
        h.update(b"\n");
    }
    hex_id(h)
}

fn hex_id(h: Sha256) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = h.finalize();
    let mut out = String::with_capacity(4 + 32);
    out.push_str("msg_");
    for &b in &digest[..16] {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

impl WebhookSink {
    pub fn new(cfg: &WebhookConfig) -> Result<Self, SinkError> {
        let url = reqwest::Url::parse(&cfg.url)
            .map_err(|e| SinkError::Config(format!("webhook url: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(SinkError::Config(
                "webhook url must be http or https".into(),
            ));
        }
        let mut keys = Vec::new();
        for s in &cfg.secrets {
            let secret = s
                .load()
                .map_err(|e| SinkError::Config(format!("webhook secret: {e}")))?;
            keys.push(Key(signing_key(secret.expose())?));
        }
        let mut headers = HeaderMap::new();
        let bad = |name: &str| {
            SinkError::Config(format!("webhook header `{name}` is not a valid header"))
        };
        for (k, v) in &cfg.headers {
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| bad(k))?;
            let value = HeaderValue::from_str(v).map_err(|_| bad(k))?;
            headers.insert(name, value);
        }
        for (k, src) in &cfg.secret_headers {
            let secret = src
                .load()
                .map_err(|e| SinkError::Config(format!("webhook header `{k}`: {e}")))?;
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| bad(k))?;
            let mut value = HeaderValue::from_str(secret.expose()).map_err(|_| bad(k))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        Ok(Self {
            url,
            client: http_client(&cfg.tls, cfg.timeouts)?,
            keys,
            headers,
            encoder: cfg.format.encoder(),
            native: cfg.format == JsonFormat::Native,
            last_answer: None,
        })
    }

    async fn send_batch(&mut self, events: &[SecurityEvent]) -> BatchReport {
        let mut out: Vec<Option<Delivery>> = vec![None; events.len()];
        let mut body = Vec::with_capacity(events.len() * 1024);
        let results = self
            .encoder
            .encode_batch(events, Framing::JsonArray, &mut body);
        let mut sent = Vec::with_capacity(events.len());
        for (i, r) in results.into_iter().enumerate() {
            match r {
                Ok(_) => sent.push(i),
                Err(e) => out[i] = Some(Delivery::permanent(e.to_string())),
            }
        }
        if !sent.is_empty() {
            let id = batch_id(sent.iter().map(|&i| &events[i]));
            let outcome = self.post(&id, body).await;
            for i in sent {
                out[i] = Some(outcome.clone());
            }
        }
        BatchReport::from_partial(out)
    }

    /// Stored native JSON records spliced into one JSON array as they are:
    /// the same body [`WebhookSink::send_batch`] builds from the decoded
    /// events with the native encoder, and the same `webhook-id`.
    async fn send_records(&mut self, records: &[NativeRecord]) -> BatchReport {
        if records.is_empty() {
            return BatchReport {
                deliveries: Vec::new(),
            };
        }
        let body = json_array(records);
        let id = batch_id_of_texts(records.iter().map(|r| r.id.as_str()));
        let outcome = self.post(&id, body).await;
        BatchReport::uniform(records.len(), outcome)
    }

    /// POSTs one signed batch body; the outcome applies to every event in it.
    async fn post(&mut self, id: &str, body: Vec<u8>) -> Delivery {
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut req = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, self.encoder.content_type(Framing::JsonArray))
            .header("webhook-id", id)
            .header("webhook-timestamp", ts.to_string());
        if !self.keys.is_empty() {
            let sigs: Vec<String> = self
                .keys
                .iter()
                .map(|k| sign(&k.0, id, ts, &body))
                .collect();
            req = req.header("webhook-signature", sigs.join(" "));
        }
        match exchange(req.body(body), BODY_EXCERPT).await {
            Ok((status, headers, answer)) => {
                self.last_answer = Some(format!("HTTP {}: {}", status.as_u16(), excerpt(&answer)));
                classify(status, &headers, &answer)
            }
            Err(d) => {
                self.last_answer = Some(format!("{d:?}"));
                d
            }
        }
    }
}

impl AsyncSink for WebhookSink {
    fn describe(&self) -> String {
        format!(
            "webhook:{}{}",
            self.url.host_str().unwrap_or(""),
            self.url.path()
        )
    }

    fn send<'a>(&'a mut self, events: &'a [SecurityEvent]) -> SendFuture<'a> {
        Box::pin(self.send_batch(events))
    }

    fn sends_native_json(&self) -> bool {
        self.native
    }

    fn send_native<'a>(&'a mut self, records: &'a [NativeRecord]) -> SendFuture<'a> {
        if self.native {
            Box::pin(self.send_records(records))
        } else {
            Box::pin(send_decoded(self, records))
        }
    }

    fn last_answer(&self) -> Option<String> {
        self.last_answer.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::tests::{full_event, minimal_event};

    /// The example from the Standard Webhooks specification's test vectors.
    #[test]
    fn signature_matches_the_specification_example() {
        let key = signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = sign(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn batch_id_is_stable_and_order_sensitive() {
        let a = full_event();
        let b = minimal_event();
        assert_eq!(batch_id([&a, &b]), batch_id([&a, &b]));
        assert_ne!(batch_id([&a, &b]), batch_id([&b, &a]));
        assert_eq!(batch_id([&a]).len(), 4 + 32);
    }

    #[test]
    fn stored_records_make_the_same_body_and_id_as_the_events() {
        let events = [full_event(), minimal_event()];
        let records: Vec<NativeRecord> = events
            .iter()
            .map(|ev| {
                let mut json = Vec::new();
                crate::NativeJson.encode(ev, &mut json).unwrap();
                NativeRecord {
                    id: ev.id.to_string(),
                    json,
                }
            })
            .collect();
        let mut body = Vec::new();
        let results = crate::NativeJson.encode_batch(&events, Framing::JsonArray, &mut body);
        assert!(results.iter().all(Result::is_ok));
        assert_eq!(json_array(&records), body);
        assert_eq!(
            batch_id_of_texts(records.iter().map(|r| r.id.as_str())),
            batch_id(&events)
        );
        assert_eq!(json_array(&[]), b"[]");
    }

    #[test]
    fn native_format_sends_stored_records_others_decode() {
        let sink = WebhookSink::new(&WebhookConfig::new("http://127.0.0.1:9/x")).unwrap();
        assert!(sink.sends_native_json());
        let mut cfg = WebhookConfig::new("http://127.0.0.1:9/x");
        cfg.format = JsonFormat::Ecs;
        assert!(!WebhookSink::new(&cfg).unwrap().sends_native_json());
    }

    #[test]
    fn config_validation() {
        assert!(WebhookSink::new(&WebhookConfig::new("ftp://x")).is_err());
        assert!(WebhookSink::new(&WebhookConfig::new("not a url")).is_err());
        let mut cfg = WebhookConfig::new("http://127.0.0.1:9/x");
        cfg.headers.insert("bad header".into(), "v".into());
        assert!(WebhookSink::new(&cfg).is_err());
        assert!(signing_key("whsec_!!!").is_err());
    }
}
