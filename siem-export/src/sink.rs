//! Destinations for encoded events: the [`Sink`] trait, per-event delivery
//! outcomes, and the sinks themselves (a rotating local file for now).
//!
//! Sinks are synchronous and blocking on purpose: this crate stays free of
//! the daemon's runtime. The daemon drives a `Box<dyn Sink>` from a
//! dedicated thread or `tokio::task::spawn_blocking`; network sinks that
//! want async I/O internally can own a runtime handle without changing the
//! trait.

mod file;

use std::io;
use std::path::PathBuf;
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
