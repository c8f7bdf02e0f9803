//! Destinations for encoded events: the [`Sink`] trait, per-event delivery
//! outcomes, and the sinks themselves (a rotating local file for now).
//!
//! Two traits: [`Sink`] is synchronous and blocking (the file sink), and
//! [`AsyncSink`] is what the network sinks implement and the dispatcher
//! drives (tokio). [`BlockingSink`] runs a [`Sink`] as an [`AsyncSink`] on
//! tokio's blocking pool. Both report one [`Delivery`] per event.

mod file;

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use file::{file_index, rotated_path, FileSink, FileSinkConfig, FsyncPolicy, RotationHold};

use crate::event::SecurityEvent;

/// What happened to one event handed to [`Sink::send`]. The outbox acts on
/// it: delete, retry later, or move to the dead-letter table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Accepted by the destination (for the file sink: written, and synced
    /// if the fsync policy says so).
    Delivered,
    /// Not delivered; the same event may succeed later (I/O error, timeout,
    /// HTTP 5xx/429).
    Retryable {
        reason: String,
        /// A destination-provided back-off hint (e.g. `Retry-After`).
        retry_after: Option<Duration>,
    },
    /// Not delivered and never will be as is (cannot be encoded, rejected
    /// as malformed by the destination).
    Permanent { reason: String },
}

impl Delivery {
    pub fn retryable(reason: impl Into<String>) -> Self {
        Delivery::Retryable {
            reason: reason.into(),
            retry_after: None,
        }
    }

    pub fn permanent(reason: impl Into<String>) -> Self {
        Delivery::Permanent {
            reason: reason.into(),
        }
    }

    pub fn is_delivered(&self) -> bool {
        matches!(self, Delivery::Delivered)
    }
}

/// The outcome of one [`Sink::send`]: one [`Delivery`] per input event, in
/// input order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchReport {
    pub deliveries: Vec<Delivery>,
}

impl BatchReport {
    /// The same outcome for all `n` events.
    pub fn uniform(n: usize, delivery: Delivery) -> Self {
        Self {
            deliveries: vec![delivery; n],
        }
    }

    /// The outcomes of a batch sent in parts: an event that got no outcome was not sent,
    /// and is retried.
    pub fn from_partial(outcomes: Vec<Option<Delivery>>) -> Self {
        Self {
            deliveries: outcomes
                .into_iter()
                .map(|d| d.unwrap_or_else(|| Delivery::retryable("not sent")))
                .collect(),
        }
    }

    pub fn all_delivered(&self) -> bool {
        self.deliveries.iter().all(Delivery::is_delivered)
    }

    pub fn delivered_count(&self) -> usize {
        self.deliveries.iter().filter(|d| d.is_delivered()).count()
    }

    /// Indices of events worth sending again.
    pub fn retryable_indices(&self) -> impl Iterator<Item = usize> + '_ {
        self.deliveries
            .iter()
            .enumerate()
            .filter(|(_, d)| matches!(d, Delivery::Retryable { .. }))
            .map(|(i, _)| i)
    }
}

/// Errors from setting up or flushing a sink (per-event problems are
/// reported as [`Delivery`] values instead).
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot {op} `{path}`: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid sink configuration: {0}")]
    Config(String),
}

impl SinkError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        SinkError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// A destination for events.
pub trait Sink: Send {
    /// Stable, human-readable name for logs and metrics (`file:/var/...`).
    fn name(&self) -> &str;

    /// Delivers `events`. Never fails as a whole: problems are reported per
    /// event in the returned report, which has exactly `events.len()`
    /// entries. Delivery is at-least-once: after a retryable failure some
    /// events may already have reached the destination, so consumers
    /// de-duplicate on the event id.
    fn send(&mut self, events: &[SecurityEvent]) -> BatchReport;

    /// Makes everything reported as delivered so far durable, whatever the
    /// sink's usual policy. Called on shutdown.
    fn flush(&mut self) -> Result<(), SinkError>;
}

/// One stored event as the outbox holds it: its id (the 26-character text
/// form) and its native JSON encoding, exactly as [`crate::NativeJson`]
/// wrote it. Sinks that send native JSON can splice `json` into their
/// payload without decoding and encoding the event again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeRecord {
    pub id: String,
    pub json: Vec<u8>,
}

/// A boxed future borrowing the sink and the batch.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = BatchReport> + Send + 'a>>;

/// A boxed future for [`AsyncSink::flush`].
pub type FlushFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'a>>;

/// A destination driven from async code (the network sinks). Same contract
/// as [`Sink::send`]: exactly one [`Delivery`] per event, in order, and
/// the call as a whole never fails.
pub trait AsyncSink: Send {
    /// Kind and address, for logs (`webhook:https://...`). Not the
    /// configured sink name, which the dispatcher keeps.
    fn describe(&self) -> String;

    fn send<'a>(&'a mut self, events: &'a [SecurityEvent]) -> SendFuture<'a>;

    /// Whether [`AsyncSink::send_native`] sends the stored bytes as they
    /// are (the sink's payload is native JSON), so the dispatcher can skip
    /// decoding them when the sink's filter needs no event fields.
    fn sends_native_json(&self) -> bool {
        false
    }

    /// Delivers events given as stored native JSON. Same contract as
    /// [`AsyncSink::send`], and the destination must receive the same bytes
    /// `send` would produce for the decoded events. The default decodes
    /// each record and calls `send`; a record that does not decode is
    /// reported as a permanent failure.
    fn send_native<'a>(&'a mut self, records: &'a [NativeRecord]) -> SendFuture<'a> {
        Box::pin(send_decoded(self, records))
    }

    /// Makes delivered data durable (file sink); network sinks have
    /// nothing to do.
    fn flush(&mut self) -> FlushFuture<'_> {
        Box::pin(async { Ok(()) })
    }

    /// What the destination answered to the last send, for
    /// `enforcer export test` (e.g. `HTTP 200: {"text":"Success","code":0}`).
    fn last_answer(&self) -> Option<String> {
        None
    }
}

/// Decodes stored native JSON records and sends the events with
/// [`AsyncSink::send`] (what [`AsyncSink::send_native`] does by default). A
/// record that does not decode is reported as a permanent failure.
pub async fn send_decoded<S: AsyncSink + ?Sized>(
    sink: &mut S,
    records: &[NativeRecord],
) -> BatchReport {
    let mut out: Vec<Option<Delivery>> = vec![None; records.len()];
    let mut events = Vec::with_capacity(records.len());
    let mut index = Vec::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        match SecurityEvent::from_json(&r.json) {
            Ok(ev) => {
                events.push(ev);
                index.push(i);
            }
            Err(e) => {
                out[i] = Some(Delivery::permanent(format!(
                    "stored event {} is unreadable: {e}",
                    r.id
                )))
            }
        }
    }
    if !events.is_empty() {
        let report = sink.send(&events).await;
        for (k, &i) in index.iter().enumerate() {
            out[i] = report.deliveries.get(k).cloned();
        }
    }
    BatchReport {
        deliveries: out
            .into_iter()
            .map(|d| {
                d.unwrap_or_else(|| Delivery::retryable("sink reported no result for this event"))
            })
            .collect(),
    }
}

/// A blocking [`Sink`] (the file sink) as an [`AsyncSink`]: each batch runs
/// on tokio's blocking pool.
pub struct BlockingSink<S> {
    inner: Arc<Mutex<S>>,
    describe: String,
}

impl<S: Sink + 'static> BlockingSink<S> {
    pub fn new(sink: S) -> Self {
        let describe = sink.name().to_owned();
        Self {
            inner: Arc::new(Mutex::new(sink)),
            describe,
        }
    }
}

impl<S: Sink + 'static> AsyncSink for BlockingSink<S> {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn send<'a>(&'a mut self, events: &'a [SecurityEvent]) -> SendFuture<'a> {
        let inner = Arc::clone(&self.inner);
        let owned = events.to_vec();
        let n = events.len();
        Box::pin(async move {
            let res = tokio::task::spawn_blocking(move || {
                let mut sink = inner.lock().unwrap_or_else(|e| e.into_inner());
                sink.send(&owned)
            })
            .await;
            match res {
                Ok(report) => report,
                Err(err) => {
                    BatchReport::uniform(n, Delivery::retryable(format!("sink task failed: {err}")))
                }
            }
        })
    }

    fn flush(&mut self) -> FlushFuture<'_> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let mut sink = inner.lock().unwrap_or_else(|e| e.into_inner());
                sink.flush()
            })
            .await
            .map_err(|e| SinkError::Config(format!("sink task failed: {e}")))?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::Encoder;
    use crate::event::tests::{full_event, minimal_event};

    /// Delivers everything and remembers what it was given.
    struct Recorder(Vec<SecurityEvent>);

    impl AsyncSink for Recorder {
        fn describe(&self) -> String {
            "recorder".into()
        }

        fn send<'a>(&'a mut self, events: &'a [SecurityEvent]) -> SendFuture<'a> {
            self.0.extend_from_slice(events);
            let n = events.len();
            Box::pin(async move { BatchReport::uniform(n, Delivery::Delivered) })
        }
    }

    #[test]
    fn default_send_native_decodes_and_reports_unreadable_records() {
        let events = [full_event(), minimal_event()];
        let mut records: Vec<NativeRecord> = events
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
        records.insert(
            1,
            NativeRecord {
                id: "01JV71WJCN974T330MJ77Q73D6".into(),
                json: b"{\"schema_version\":1}".to_vec(),
            },
        );
        let mut sink = Recorder(Vec::new());
        assert!(!sink.sends_native_json());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let report = rt.block_on(sink.send_native(&records));
        assert_eq!(report.deliveries.len(), 3);
        assert!(report.deliveries[0].is_delivered());
        assert!(
            matches!(&report.deliveries[1], Delivery::Permanent { reason } if reason.contains("unreadable")),
            "{:?}",
            report.deliveries[1]
        );
        assert!(report.deliveries[2].is_delivered());
        assert_eq!(sink.0, events);
    }
}
