//! Sink configuration as the daemon reads it (`[[export.sinks]]` in TOML,
//! or any serde format), and turning it into running sinks.
//!
//! ```toml
//! [[export.sinks]]
//! name = "soc-webhook"
//! type = "webhook"
//! url = "https://hooks.example/enforcer"
//! secrets = [{ file = "/etc/enforcer/webhook.secret" }]
//! filter = { min_severity = "medium" }
//! batch = { max_events = 500, max_delay_ms = 1000 }
//! retry = { base_ms = 500, cap_ms = 300000 }
//! ```

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::filter::EventFilter;
use crate::net::elasticsearch::{ElasticsearchConfig, ElasticsearchSink};
use crate::net::splunk::{SplunkHecConfig, SplunkHecSink};
use crate::net::syslog::{SyslogConfig, SyslogSink};
use crate::net::webhook::{WebhookConfig, WebhookSink};
use crate::net::JsonFormat;
use crate::retry::RetryPolicy;
use crate::sink::{AsyncSink, BlockingSink, FileSink, FileSinkConfig, FsyncPolicy, SinkError};

/// One configured sink: its name (metrics, dead letters, `export test
/// --sink NAME`), its kind with the kind's settings, and what every sink
/// has: a filter, batching and a retry policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkConfig {
    pub name: String,
    #[serde(flatten)]
    pub kind: SinkKind,
    #[serde(default)]
    pub filter: EventFilter,
    #[serde(default)]
    pub batch: BatchConfig,
    #[serde(default)]
    pub retry: RetryPolicy,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SinkKind {
    Webhook(WebhookConfig),
    SplunkHec(SplunkHecConfig),
    Elasticsearch(ElasticsearchConfig),
    Syslog(SyslogConfig),
    File(FileConfig),
}

/// Batching: a batch is sent when it has `max_events` events, or
/// `max_delay_ms` after the first event arrived at an idle sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchConfig {
    /// Default 500.
    pub max_events: usize,
    /// Default 1000.
    pub max_delay_ms: u64,
    /// A send taking longer than this is abandoned and retried, ms
    /// (default 120000; the HTTP sinks' own timeouts are shorter).
    pub send_timeout_ms: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_events: 500,
            max_delay_ms: 1000,
            send_timeout_ms: 120_000,
        }
    }
}

/// The local JSON-lines file sink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub path: PathBuf,
    /// Rotate past this size (default 100 MiB).
    #[serde(default = "default_file_bytes")]
    pub max_file_bytes: u64,
    /// Rotated files kept (default 5).
    #[serde(default = "default_keep")]
    pub keep: u32,
    #[serde(default)]
    pub fsync: FileFsync,
    #[serde(default)]
    pub format: JsonFormat,
}

fn default_file_bytes() -> u64 {
    100 << 20
}
fn default_keep() -> u32 {
    5
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileFsync {
    Never,
    OnRotate,
    /// Default: "delivered" then survives a power loss, as the outbox
    /// promises.
    #[default]
    EveryBatch,
}

/// A sink ready for the [`Dispatcher`](crate::dispatcher::Dispatcher).
pub struct SinkRuntime {
    pub name: String,
    pub sink: Box<dyn AsyncSink>,
    pub filter: EventFilter,
    pub batch: BatchConfig,
    pub retry: RetryPolicy,
}

impl SinkConfig {
    /// Reads secrets and certificates and builds the sink. Nothing connects
    /// yet.
    pub fn build(&self) -> Result<SinkRuntime, SinkError> {
        if self.name.is_empty() {
            return Err(SinkError::Config("sink name must not be empty".into()));
        }
        if self.batch.max_events == 0 {
            return Err(SinkError::Config(format!(
                "sink `{}`: batch.max_events must be positive",
                self.name
            )));
        }
        let ctx = |e: SinkError| match e {
            SinkError::Config(m) => SinkError::Config(format!("sink `{}`: {m}", self.name)),
            other => other,
        };
        let sink: Box<dyn AsyncSink> = match &self.kind {
            SinkKind::Webhook(c) => Box::new(WebhookSink::new(c).map_err(ctx)?),
            SinkKind::SplunkHec(c) => Box::new(SplunkHecSink::new(c).map_err(ctx)?),
            SinkKind::Elasticsearch(c) => Box::new(ElasticsearchSink::new(c).map_err(ctx)?),
            SinkKind::Syslog(c) => Box::new(SyslogSink::new(c).map_err(ctx)?),
            SinkKind::File(c) => {
                let mut fc = FileSinkConfig::new(&c.path);
                fc.max_bytes = c.max_file_bytes;
                fc.keep = c.keep;
                fc.fsync = match c.fsync {
                    FileFsync::Never => FsyncPolicy::Never,
                    FileFsync::OnRotate => FsyncPolicy::OnRotate,
                    FileFsync::EveryBatch => FsyncPolicy::EveryBatch,
                };
                Box::new(BlockingSink::new(
                    FileSink::with_encoder(fc, c.format.encoder()).map_err(ctx)?,
                ))
            }
        };
        Ok(SinkRuntime {
            name: self.name.clone(),
            sink,
            filter: self.filter.clone(),
            batch: self.batch,
            retry: self.retry,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::severity::Severity;

    #[test]
    fn reads_a_sink_list() {
        let json = r#"[
            {"name": "hook", "type": "webhook", "url": "https://h.example/x",
             "secrets": [{"env": "HOOK_SECRET"}], "headers": {"x-tenant": "blue"},
             "filter": {"min_severity": "medium"}, "batch": {"max_events": 100}},
            {"name": "splunk", "type": "splunk_hec", "url": "https://s:8088", "token": {"file": "/t"},
             "ack": {"timeout_ms": 1000}},
            {"name": "es", "type": "elasticsearch", "url": "https://es:9200", "api_key": {"env": "K"}},
            {"name": "rsyslog", "type": "syslog", "address": "10.0.0.1:6514", "tls": {"ca_file": "/ca.pem"}, "payload": "cef"},
            {"name": "local", "type": "file", "path": "/var/log/enforcer/export.jsonl"}
        ]"#;
        let sinks: Vec<SinkConfig> = serde_json::from_str(json).unwrap();
        assert_eq!(sinks.len(), 5);
        assert_eq!(sinks[0].filter.min_severity, Some(Severity::Medium));
        assert_eq!(sinks[0].batch.max_events, 100);
        assert_eq!(sinks[0].batch.max_delay_ms, 1000);
        assert!(matches!(&sinks[1].kind, SinkKind::SplunkHec(c) if c.ack.is_some()));
        assert!(
            matches!(&sinks[2].kind, SinkKind::Elasticsearch(c) if c.format == JsonFormat::Ecs)
        );
        assert!(matches!(&sinks[4].kind, SinkKind::File(c) if c.fsync == FileFsync::EveryBatch));
    }

    #[test]
    fn unknown_keys_and_types_are_errors() {
        let err = serde_json::from_str::<SinkConfig>(
            r#"{"name":"x","type":"webhook","url":"http://a","sekrets":[]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("sekrets"), "{err}");
        assert!(serde_json::from_str::<SinkConfig>(r#"{"name":"x","type":"kafka"}"#).is_err());
    }

    #[test]
    fn build_checks() {
        let mut c: SinkConfig = serde_json::from_str(
            r#"{"name":"hook","type":"webhook","url":"http://127.0.0.1:1/x"}"#,
        )
        .unwrap();
        assert!(c.build().is_ok());
        c.batch.max_events = 0;
        assert!(c.build().is_err());
        let c: SinkConfig = serde_json::from_str(
            r#"{"name":"s","type":"splunk_hec","url":"http://127.0.0.1:1","token":{"env":"SIEM_EXPORT_SURELY_UNSET"}}"#,
        )
        .unwrap();
        let err = c.build().err().unwrap().to_string();
        assert!(
            err.contains("sink `s`") && err.contains("SIEM_EXPORT_SURELY_UNSET"),
            "{err}"
        );
    }
}
