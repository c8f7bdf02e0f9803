//! Splunk HTTP Event Collector: `POST /services/collector/event` with
//! `Authorization: Splunk <token>` and a body of concatenated JSON objects
//! `{"time":..,"host":..,"sourcetype":..,"event":{..}}`, one per event.
//!
//! With indexer acknowledgement enabled on the token, every request also
//! sends `X-Splunk-Request-Channel`, Splunk answers with an `ackId`, and the
//! batch only counts as delivered once `POST /services/collector/ack`
//! reports that id as indexed. If that does not happen within
//! `ack.timeout_ms`, the batch is retried (receivers de-duplicate on the
//! event id).

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use serde::{Deserialize, Serialize};

use super::{classify, excerpt, exchange, http_client, HttpTimeouts, JsonFormat, TlsConfig};
use crate::encode::Encoder;
use crate::event::SecurityEvent;
use crate::secret::SecretSource;
use crate::sink::{AsyncSink, BatchReport, Delivery, SendFuture, SinkError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplunkHecConfig {
    /// Base URL of the collector, e.g. `https://splunk.example:8088`.
    pub url: String,
    /// The HEC token.
    pub token: SecretSource,
    /// Default `enforcer:event`.
    #[serde(default = "default_sourcetype")]
    pub sourcetype: String,
    #[serde(default)]
    pub source: Option<String>,
    /// Target index; unset: the token's default index.
    #[serde(default)]
    pub index: Option<String>,
    #[serde(default)]
    pub format: JsonFormat,
    /// Indexer acknowledgement; unset: off.
    #[serde(default)]
    pub ack: Option<HecAckConfig>,
    #[serde(default)]
    pub tls: TlsConfig,
    #[serde(default)]
    pub timeouts: HttpTimeouts,
}

fn default_sourcetype() -> String {
    "enforcer:event".into()
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HecAckConfig {
    /// The channel GUID; unset: a random one per process.
    pub channel: Option<String>,
    /// Poll interval, ms (default 500).
    pub poll_ms: Option<u64>,
    /// Give up waiting and retry the batch after this long, ms (default 60000).
    pub timeout_ms: Option<u64>,
}

pub struct SplunkHecSink {
    event_url: reqwest::Url,
    ack_url: reqwest::Url,
    client: reqwest::Client,
    headers: HeaderMap,
    sourcetype: String,
    source: Option<String>,
    index: Option<String>,
    encoder: Box<dyn Encoder>,
    ack: Option<(Duration, Duration)>,
    last_answer: Option<String>,
}

/// A random version-4 UUID, the channel id format HEC wants.
fn random_uuid() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        let t = crate::outbox::now_ms() as u128;
        b = (t ^ (u128::from(std::process::id()) << 64)).to_le_bytes();
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[derive(Deserialize)]
struct HecAnswer {
    #[serde(rename = "ackId")]
    ack_id: Option<u64>,
}

#[derive(Deserialize)]
struct AckAnswer {
    acks: std::collections::HashMap<String, bool>,
}

impl SplunkHecSink {
    pub fn new(cfg: &SplunkHecConfig) -> Result<Self, SinkError> {
        let base = reqwest::Url::parse(&cfg.url)
            .map_err(|e| SinkError::Config(format!("splunk_hec url: {e}")))?;
        let join = |p: &str| {
            base.join(p)
                .map_err(|e| SinkError::Config(format!("splunk_hec url: {e}")))
        };
        let event_url = join("/services/collector/event")?;
        let ack_url = join("/services/collector/ack")?;
        let token = cfg
            .token
            .load()
            .map_err(|e| SinkError::Config(format!("splunk_hec token: {e}")))?;
        let mut auth = HeaderValue::from_str(&format!("Splunk {}", token.expose()))
            .map_err(|_| SinkError::Config("splunk_hec token holds invalid characters".into()))?;
        auth.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, auth);
        let ack = match &cfg.ack {
            None => None,
            Some(a) => {
                let channel = a.channel.clone().unwrap_or_else(random_uuid);
                let v = HeaderValue::from_str(&channel).map_err(|_| {
                    SinkError::Config("splunk_hec ack channel is not a valid header".into())
                })?;
                headers.insert("x-splunk-request-channel", v);
                Some((
                    Duration::from_millis(a.poll_ms.unwrap_or(500)),
                    Duration::from_millis(a.timeout_ms.unwrap_or(60_000)),
                ))
            }
        };
        Ok(Self {
            event_url,
            ack_url,
            client: http_client(&cfg.tls, cfg.timeouts)?,
            headers,
            sourcetype: cfg.sourcetype.clone(),
            source: cfg.source.clone(),
            index: cfg.index.clone(),
            encoder: cfg.format.encoder(),
            ack,
            last_answer: None,
        })
    }

    /// Appends one HEC event object for `ev`.
    fn envelope(&self, ev: &SecurityEvent, out: &mut Vec<u8>) -> Result<(), String> {
        let start = out.len();
        let nanos = ev.time.unix_nanos();
        let secs = nanos.div_euclid(1_000_000_000);
        let frac = nanos.rem_euclid(1_000_000_000) / 1_000_000;
        let meta = |out: &mut Vec<u8>, key: &str, v: &str| -> Result<(), String> {
            out.extend_from_slice(format!(",\"{key}\":").as_bytes());
            serde_json::to_writer(&mut *out, v).map_err(|e| e.to_string())
        };
        out.extend_from_slice(format!("{{\"time\":{secs}.{frac:03}").as_bytes());
        let r = (|| {
            meta(out, "host", &ev.host.name)?;
            meta(out, "sourcetype", &self.sourcetype)?;
            if let Some(s) = &self.source {
                meta(out, "source", s)?;
            }
            if let Some(i) = &self.index {
                meta(out, "index", i)?;
            }
            out.extend_from_slice(b",\"event\":");
            self.encoder.encode(ev, out).map_err(|e| e.to_string())?;
            out.push(b'}');
            out.push(b'\n');
            Ok(())
        })();
        if r.is_err() {
            out.truncate(start);
        }
        r
    }

    async fn wait_for_ack(&mut self, id: u64, poll: Duration, timeout: Duration) -> Delivery {
        let deadline = tokio::time::Instant::now() + timeout;
        let body = format!("{{\"acks\":[{id}]}}");
        loop {
            tokio::time::sleep(poll).await;
            let req = self
                .client
                .post(self.ack_url.clone())
                .headers(self.headers.clone())
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
            match exchange(req, 64 * 1024).await {
                Ok((status, _, answer)) if status.is_success() => {
                    match serde_json::from_slice::<AckAnswer>(&answer) {
                        Ok(a) if a.acks.get(&id.to_string()).copied() == Some(true) => {
                            self.last_answer = Some(format!("indexed (ackId {id})"));
                            return Delivery::Delivered;
                        }
                        Ok(_) => {}
                        Err(e) => {
                            return Delivery::retryable(format!(
                                "unreadable ack answer: {e}: {}",
                                excerpt(&answer)
                            ))
                        }
                    }
                }
                Ok((status, headers, answer)) => {
                    let d = classify(status, &headers, &answer);
                    // A permanent error here concerns the ack request, not the
                    // events: they may well be indexed. Retry, never drop.
                    return match d {
                        Delivery::Permanent { reason } => {
                            Delivery::retryable(format!("ack query failed: {reason}"))
                        }
                        other => other,
                    };
                }
                Err(d) => return d,
            }
            if tokio::time::Instant::now() >= deadline {
                return Delivery::retryable(format!(
                    "indexer acknowledgement {id} not received within {} ms",
                    timeout.as_millis()
                ));
            }
        }
    }

    async fn send_batch(&mut self, events: &[SecurityEvent]) -> BatchReport {
        let mut out: Vec<Option<Delivery>> = vec![None; events.len()];
        let mut body = Vec::with_capacity(events.len() * 1200);
        let mut sent = Vec::with_capacity(events.len());
        for (i, ev) in events.iter().enumerate() {
            match self.envelope(ev, &mut body) {
                Ok(()) => sent.push(i),
                Err(e) => out[i] = Some(Delivery::permanent(e)),
            }
        }
        if !sent.is_empty() {
            let req = self
                .client
                .post(self.event_url.clone())
                .headers(self.headers.clone())
                .header(CONTENT_TYPE, "application/json")
                .body(body);
            let outcome = match exchange(req, 64 * 1024).await {
                Ok((status, headers, answer)) => {
                    self.last_answer =
                        Some(format!("HTTP {}: {}", status.as_u16(), excerpt(&answer)));
                    let d = classify(status, &headers, &answer);
                    match (d, self.ack) {
                        (Delivery::Delivered, Some((poll, timeout))) => {
                            match serde_json::from_slice::<HecAnswer>(&answer) {
                                Ok(HecAnswer { ack_id: Some(id) }) => {
                                    self.wait_for_ack(id, poll, timeout).await
                                }
                                _ => Delivery::retryable(format!(
                                "indexer acknowledgement requested but the answer has no ackId: {}",
                                excerpt(&answer)
                            )),
                            }
                        }
                        (d, _) => d,
                    }
                }
                Err(d) => {
                    self.last_answer = Some(format!("{d:?}"));
                    d
                }
            };
            for i in sent {
                out[i] = Some(outcome.clone());
            }
        }
        BatchReport::from_partial(out)
    }
}

impl AsyncSink for SplunkHecSink {
    fn describe(&self) -> String {
        format!("splunk_hec:{}", self.event_url.host_str().unwrap_or(""))
    }

    fn send<'a>(&'a mut self, events: &'a [SecurityEvent]) -> SendFuture<'a> {
        Box::pin(self.send_batch(events))
    }

    fn last_answer(&self) -> Option<String> {
        self.last_answer.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::tests::full_event;

    #[test]
    fn envelope_shape() {
        let cfg = SplunkHecConfig {
            url: "http://127.0.0.1:8088".into(),
            token: SecretSource::Env("PATH".into()),
            sourcetype: default_sourcetype(),
            source: Some("enforcer".into()),
            index: Some("security".into()),
            format: JsonFormat::Native,
            ack: None,
            tls: TlsConfig::default(),
            timeouts: HttpTimeouts::default(),
        };
        let sink = SplunkHecSink::new(&cfg).unwrap();
        let ev = full_event();
        let mut out = Vec::new();
        sink.envelope(&ev, &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["host"], ev.host.name.as_str());
        assert_eq!(v["sourcetype"], "enforcer:event");
        assert_eq!(v["index"], "security");
        assert_eq!(v["event"]["id"], ev.id.to_string().as_str());
        let t = v["time"].as_f64().unwrap();
        assert!((t - ev.time.unix_nanos() as f64 / 1e9).abs() < 0.002);
        assert_eq!(sink.event_url.path(), "/services/collector/event");
    }

    #[test]
    fn uuid_format() {
        let u = random_uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }
}
