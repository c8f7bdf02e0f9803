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

pub use file::{FileSink, FileSinkConfig, FsyncPolicy};

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
