//! Elasticsearch (and OpenSearch) `_bulk`: one `create` action per event
//! with `_id` = the event id, so a resent event is refused as a conflict
//! instead of indexed twice. Each item's result decides that event alone:
//!
//! | item status | delivery |
//! |---|---|
//! | 200, 201 | delivered |
//! | 409 (version conflict: a document with this id exists) | delivered |
//! | 408, 429, 5xx | retryable (only these events are sent again) |
//! | other | permanent, with the error type and reason |

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

use super::{
    classify, excerpt, exchange, http_client, status_is_retryable, HttpTimeouts, JsonFormat,
    TlsConfig,
};
use crate::encode::Encoder;
use crate::event::SecurityEvent;
use crate::secret::SecretSource;
use crate::sink::{AsyncSink, BatchReport, Delivery, SendFuture, SinkError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchConfig {
    /// Base URL, e.g. `https://es.example:9200`.
    pub url: String,
    /// Index or data stream (default `logs-enforcer-default`, a data
    /// stream under the built-in `logs-*-*` template).
    #[serde(default = "default_index")]
    pub index: String,
    /// Default ECS.
    #[serde(default = "default_format")]
    pub format: JsonFormat,
    /// `Authorization: ApiKey <key>` (the base64 `id:api_key` form).
    #[serde(default)]
    pub api_key: Option<SecretSource>,
    /// Basic authentication user; the password comes from `password`.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<SecretSource>,
    #[serde(default)]
    pub tls: TlsConfig,
    #[serde(default)]
    pub timeouts: HttpTimeouts,
}

fn default_index() -> String {
    "logs-enforcer-default".into()
}

fn default_format() -> JsonFormat {
    JsonFormat::Ecs
}

impl ElasticsearchConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            index: default_index(),
            format: default_format(),
            api_key: None,
            username: None,
            password: None,
            tls: TlsConfig::default(),
            timeouts: HttpTimeouts::default(),
        }
    }
}

pub struct ElasticsearchSink {
    url: reqwest::Url,
    index: String,
    client: reqwest::Client,
    headers: HeaderMap,
    encoder: Box<dyn Encoder>,
    last_answer: Option<String>,
}

#[derive(Deserialize)]
struct BulkAnswer {
    #[serde(default)]
    items: Vec<std::collections::HashMap<String, BulkItem>>,
}

#[derive(Deserialize)]
struct BulkItem {
    status: u16,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

impl ElasticsearchSink {
    pub fn new(cfg: &ElasticsearchConfig) -> Result<Self, SinkError> {
        let base = reqwest::Url::parse(&cfg.url)
            .map_err(|e| SinkError::Config(format!("elasticsearch url: {e}")))?;
        let url = base
            .join("/_bulk")
            .map_err(|e| SinkError::Config(format!("elasticsearch url: {e}")))?;
        if cfg.index.is_empty() {
            return Err(SinkError::Config("elasticsearch index must be set".into()));
        }
        let mut headers = HeaderMap::new();
        let auth = match (&cfg.api_key, &cfg.username, &cfg.password) {
            (Some(k), None, None) => {
                let k = k
                    .load()
                    .map_err(|e| SinkError::Config(format!("elasticsearch api_key: {e}")))?;
                Some(format!("ApiKey {}", k.expose()))
            }
            (None, Some(user), Some(pw)) => {
                use base64::Engine as _;
                let pw = pw
                    .load()
                    .map_err(|e| SinkError::Config(format!("elasticsearch password: {e}")))?;
                let raw = format!("{user}:{}", pw.expose());
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(raw)
                ))
            }
            (None, None, None) => None,
            _ => {
                return Err(SinkError::Config(
                    "elasticsearch: set either api_key, or username and password".into(),
                ))
            }
        };
        if let Some(a) = auth {
            let mut v = HeaderValue::from_str(&a).map_err(|_| {
                SinkError::Config("elasticsearch credentials hold invalid characters".into())
            })?;
            v.set_sensitive(true);
            headers.insert(AUTHORIZATION, v);
        }
        Ok(Self {
            url,
            index: cfg.index.clone(),
            client: http_client(&cfg.tls, cfg.timeouts)?,
            headers,
            encoder: cfg.format.encoder(),
            last_answer: None,
        })
    }

    fn item_delivery(item: &BulkItem) -> Delivery {
        let status = StatusCode::from_u16(item.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_success() || status == StatusCode::CONFLICT {
            return Delivery::Delivered;
        }
        let err = match &item.error {
            Some(serde_json::Value::Object(o)) => format!(
                "{}: {}",
                o.get("type").and_then(|v| v.as_str()).unwrap_or("error"),
                o.get("reason").and_then(|v| v.as_str()).unwrap_or("")
            ),
            Some(other) => other.to_string(),
            None => String::new(),
        };
        let mut reason = format!("bulk item {}: {err}", item.status);
        reason.truncate(super::BODY_EXCERPT + 32);
        if status_is_retryable(status) {
            Delivery::retryable(reason)
        } else {
            Delivery::permanent(reason)
        }
    }

    async fn send_batch(&mut self, events: &[SecurityEvent]) -> BatchReport {
        let mut out: Vec<Option<Delivery>> = vec![None; events.len()];
        let mut body = Vec::with_capacity(events.len() * 1200);
        let mut sent = Vec::with_capacity(events.len());
        let mut idbuf = [0u8; 26];
        let mut doc = Vec::with_capacity(2048);
        for (i, ev) in events.iter().enumerate() {
            doc.clear();
            if let Err(e) = self.encoder.encode(ev, &mut doc) {
                out[i] = Some(Delivery::permanent(e.to_string()));
                continue;
            }
            if doc.contains(&b'\n') {
                out[i] = Some(Delivery::permanent("encoded document contains a newline"));
                continue;
            }
            body.extend_from_slice(b"{\"create\":{\"_index\":");
            if serde_json::to_writer(&mut body, &self.index).is_err() {
                out[i] = Some(Delivery::permanent("index name cannot be written"));
                continue;
            }
            body.extend_from_slice(b",\"_id\":\"");
            body.extend_from_slice(ev.id.encode(&mut idbuf).as_bytes());
            body.extend_from_slice(b"\"}}\n");
            body.extend_from_slice(&doc);
            body.push(b'\n');
            sent.push(i);
        }
        if !sent.is_empty() {
            let req = self
                .client
                .post(self.url.clone())
                .headers(self.headers.clone())
                .header(CONTENT_TYPE, "application/x-ndjson")
                .body(body);
            match exchange(req, 64 << 20).await {
                Ok((status, headers, answer)) => {
                    self.last_answer =
                        Some(format!("HTTP {}: {}", status.as_u16(), excerpt(&answer)));
                    let whole = classify(status, &headers, &answer);
                    let items = match (&whole, serde_json::from_slice::<BulkAnswer>(&answer)) {
                        (Delivery::Delivered, Ok(a)) if a.items.len() == sent.len() => {
                            Some(a.items)
                        }
                        (Delivery::Delivered, _) => None,
                        _ => {
                            for &i in &sent {
                                out[i] = Some(whole.clone());
                            }
                            Some(Vec::new())
                        }
                    };
                    match items {
                        None => {
                            let d = Delivery::retryable(format!(
                                "bulk answer does not list one result per action: {}",
                                excerpt(&answer)
                            ));
                            for &i in &sent {
                                out[i] = Some(d.clone());
                            }
                        }
                        Some(items) => {
                            for (&i, item) in sent.iter().zip(&items) {
                                let d = item
                                    .values()
                                    .next()
                                    .map(Self::item_delivery)
                                    .unwrap_or_else(|| Delivery::retryable("empty bulk item"));
                                out[i] = Some(d);
                            }
                        }
                    }
                }
                Err(d) => {
                    self.last_answer = Some(format!("{d:?}"));
                    for &i in &sent {
                        out[i] = Some(d.clone());
                    }
                }
            }
        }
        BatchReport::from_partial(out)
    }
}

impl AsyncSink for ElasticsearchSink {
    fn describe(&self) -> String {
        format!(
            "elasticsearch:{}/{}",
            self.url.host_str().unwrap_or(""),
            self.index
        )
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

    #[test]
    fn item_results() {
        let item = |status, error: Option<serde_json::Value>| BulkItem { status, error };
        assert!(ElasticsearchSink::item_delivery(&item(201, None)).is_delivered());
        assert!(ElasticsearchSink::item_delivery(&item(409, None)).is_delivered());
        assert!(matches!(
            ElasticsearchSink::item_delivery(&item(429, None)),
            Delivery::Retryable { .. }
        ));
        assert!(matches!(
            ElasticsearchSink::item_delivery(&item(503, None)),
            Delivery::Retryable { .. }
        ));
        let err = serde_json::json!({"type": "mapper_parsing_exception", "reason": "failed to parse field [x]"});
        assert_eq!(
            ElasticsearchSink::item_delivery(&item(400, Some(err))),
            Delivery::permanent(
                "bulk item 400: mapper_parsing_exception: failed to parse field [x]"
            )
        );
    }

    #[test]
    fn auth_is_either_or() {
        let mut cfg = ElasticsearchConfig::new("http://127.0.0.1:9200");
        cfg.username = Some("elastic".into());
        assert!(ElasticsearchSink::new(&cfg).is_err());
    }
}
