//! The dispatcher: one worker task per sink, each looping over the outbox:
//! lease a batch, drop what the sink's filter does not want (counted as
//! delivered for that sink), send the rest, and acknowledge, retry or
//! dead-letter each event by what the sink reported.
//!
//! * Batching: a worker sends as soon as `batch.max_events` events are
//!   waiting; an idle worker woken by new events waits up to
//!   `batch.max_delay_ms` for the batch to fill first.
//! * Backoff: when a whole batch fails with a retryable error the sink is
//!   considered down: the worker waits (capped exponential backoff with full
//!   jitter, at least the server's `Retry-After`) before sending anything
//!   else, and the batch is due again at the same time. Events that fail
//!   alone (an Elasticsearch item) wait on their own attempt count.
//! * Shutdown ([`Dispatcher::shutdown`]) lets batches in flight finish (or
//!   hit the grace period; their rows are then released on the next start).
//!
//! The outbox is synchronous (SQLite); the workers call it on tokio's
//! blocking pool.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::{BatchConfig, SinkRuntime};
use crate::event::{EventClass, SecurityEvent, Timestamp, Verdict};
use crate::filter::EventFilter;
use crate::outbox::{
    now_ms, EnqueueReport, EntryKey, Leased as LeasedEvent, LeasedNative, Outbox, OutboxError,
    OutboxStats,
};
use crate::retry::{Jitter, RetryPolicy};
use crate::severity::Severity;
use crate::sink::{AsyncSink, Delivery, NativeRecord};

/// How long an idle worker sleeps when nothing wakes it (it also wakes on
/// every enqueue and when a retry falls due).
const IDLE_POLL: Duration = Duration::from_secs(5);

/// Counters of one sink. All cumulative since start except `in_flight`
/// and `consecutive_failures` (gauges).
#[derive(Debug, Default)]
pub struct SinkMetrics {
    pub name: String,
    /// Events handed to the sink (after filtering).
    pub sent: AtomicU64,
    pub delivered: AtomicU64,
    /// Events the sink's filter did not want (acknowledged without sending).
    pub filtered: AtomicU64,
    pub retried: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub batches: AtomicU64,
    /// Batches that failed as a whole (sink down, 429, 5xx...).
    pub failed_batches: AtomicU64,
    pub in_flight: AtomicU64,
    pub consecutive_failures: AtomicU64,
    /// When the last event was delivered, ms since the epoch (0: never).
    pub last_delivery_ms: AtomicU64,
    /// Outbox errors met by this worker (it keeps going).
    pub outbox_errors: AtomicU64,
}

/// Everything the daemon exports as metrics. Plain atomics: read them
/// directly, or take a [`Metrics::snapshot`].
#[derive(Debug, Default)]
pub struct Metrics {
    pub sinks: Vec<Arc<SinkMetrics>>,
    pub enqueued: AtomicU64,
    pub duplicates: AtomicU64,
    pub dropped_low: AtomicU64,
    pub dropped_high: AtomicU64,
    pub evicted_dead: AtomicU64,
    pub evicted_pending: AtomicU64,
    pub unencodable: AtomicU64,
    pub enqueue_errors: AtomicU64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SinkMetricsSnapshot {
    pub name: String,
    pub sent: u64,
    pub delivered: u64,
    pub filtered: u64,
    pub retried: u64,
    pub dead_lettered: u64,
    pub batches: u64,
    pub failed_batches: u64,
    pub in_flight: u64,
    pub consecutive_failures: u64,
    pub last_delivery_ms: u64,
    pub outbox_errors: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MetricsSnapshot {
    pub sinks: Vec<SinkMetricsSnapshot>,
    pub enqueued: u64,
    pub duplicates: u64,
    pub dropped_low: u64,
    pub dropped_high: u64,
    pub evicted_dead: u64,
    pub evicted_pending: u64,
    pub unencodable: u64,
    pub enqueue_errors: u64,
}

fn get(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

fn add(a: &AtomicU64, n: usize) {
    a.fetch_add(n as u64, Ordering::Relaxed);
}

impl Metrics {
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            sinks: self
                .sinks
                .iter()
                .map(|s| SinkMetricsSnapshot {
                    name: s.name.clone(),
                    sent: get(&s.sent),
                    delivered: get(&s.delivered),
                    filtered: get(&s.filtered),
                    retried: get(&s.retried),
                    dead_lettered: get(&s.dead_lettered),
                    batches: get(&s.batches),
                    failed_batches: get(&s.failed_batches),
                    in_flight: get(&s.in_flight),
                    consecutive_failures: get(&s.consecutive_failures),
                    last_delivery_ms: get(&s.last_delivery_ms),
                    outbox_errors: get(&s.outbox_errors),
                })
                .collect(),
            enqueued: get(&self.enqueued),
            duplicates: get(&self.duplicates),
            dropped_low: get(&self.dropped_low),
            dropped_high: get(&self.dropped_high),
            evicted_dead: get(&self.evicted_dead),
            evicted_pending: get(&self.evicted_pending),
            unencodable: get(&self.unencodable),
            enqueue_errors: get(&self.enqueue_errors),
        }
    }

    fn record_enqueue(&self, r: &EnqueueReport) {
        add(&self.enqueued, r.accepted);
        add(&self.duplicates, r.duplicates);
        add(&self.dropped_low, r.dropped_low);
        add(&self.dropped_high, r.dropped_high);
        add(&self.evicted_dead, r.evicted_dead);
        add(&self.evicted_pending, r.evicted_pending);
        add(&self.unencodable, r.unencodable);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error("sink `{0}` is not configured in the outbox")]
    SinkNotInOutbox(String),
    #[error("sink `{0}` is configured twice")]
    DuplicateSink(String),
    #[error("outbox task failed: {0}")]
    Task(String),
}

struct Wake {
    notify: Notify,
    /// Events accepted since the worker last leased (a hint for batching).
    fresh: AtomicUsize,
}

/// The running dispatcher. Dropping it without [`Dispatcher::shutdown`]
/// aborts nothing: the workers keep running until the runtime stops.
pub struct Dispatcher {
    outbox: Arc<Outbox>,
    metrics: Arc<Metrics>,
    wakes: Vec<Arc<Wake>>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Dispatcher {
    /// Starts one worker per sink. Every sink must be among the outbox's
    /// sinks (the names the outbox was opened with). Call from within a
    /// tokio runtime.
    pub fn start(outbox: Arc<Outbox>, sinks: Vec<SinkRuntime>) -> Result<Self, DispatchError> {
        let known: Vec<&str> = outbox.sink_names().collect();
        let mut seen = Vec::new();
        for s in &sinks {
            if !known.contains(&s.name.as_str()) {
                return Err(DispatchError::SinkNotInOutbox(s.name.clone()));
            }
            if seen.contains(&s.name) {
                return Err(DispatchError::DuplicateSink(s.name.clone()));
            }
            seen.push(s.name.clone());
        }
        let (stop, stop_rx) = watch::channel(false);
        let mut metrics = Metrics::default();
        let mut wakes = Vec::new();
        let mut workers = Vec::new();
        for s in sinks {
            let m = Arc::new(SinkMetrics {
                name: s.name.clone(),
                ..SinkMetrics::default()
            });
            metrics.sinks.push(Arc::clone(&m));
            let wake = Arc::new(Wake {
                notify: Notify::new(),
                fresh: AtomicUsize::new(0),
            });
            wakes.push(Arc::clone(&wake));
            workers.push(Worker {
                outbox: Arc::clone(&outbox),
                name: s.name,
                sink: s.sink,
                filter: s.filter,
                batch: s.batch,
                retry: s.retry,
                metrics: m,
                wake,
                stop: stop_rx.clone(),
                jitter: Jitter::from_entropy(),
                consecutive: 0,
            });
        }
        let tasks = workers.into_iter().map(|w| tokio::spawn(w.run())).collect();
        Ok(Self {
            outbox,
            metrics: Arc::new(metrics),
            wakes,
            stop,
            tasks,
        })
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics)
    }

    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    /// Stores `events` durably and wakes the workers. When this returns
    /// `Ok`, the accepted events survive a crash.
    pub async fn enqueue(
        &self,
        events: Vec<SecurityEvent>,
    ) -> Result<EnqueueReport, DispatchError> {
        let outbox = Arc::clone(&self.outbox);
        let res = tokio::task::spawn_blocking(move || outbox.enqueue(&events))
            .await
            .map_err(|e| DispatchError::Task(e.to_string()))?;
        self.after_enqueue(res)
    }

    /// [`Dispatcher::enqueue`] for a caller on a plain thread (not inside
    /// the runtime's async tasks).
    pub fn enqueue_blocking(
        &self,
        events: &[SecurityEvent],
    ) -> Result<EnqueueReport, DispatchError> {
        let res = self.outbox.enqueue(events);
        self.after_enqueue(res)
    }

    /// Counts what an enqueue made outside the dispatcher did (e.g.
    /// [`Outbox::enqueue_from_log`]) and wakes the workers for the accepted events.
    pub fn note_enqueued(&self, r: &EnqueueReport) {
        self.metrics.record_enqueue(r);
        if r.accepted > 0 {
            for w in &self.wakes {
                w.fresh.fetch_add(r.accepted, Ordering::Relaxed);
                w.notify.notify_one();
            }
        }
    }

    fn after_enqueue(
        &self,
        res: Result<EnqueueReport, OutboxError>,
    ) -> Result<EnqueueReport, DispatchError> {
        match res {
            Ok(r) => {
                self.note_enqueued(&r);
                Ok(r)
            }
            Err(e) => {
                self.metrics.enqueue_errors.fetch_add(1, Ordering::Relaxed);
                Err(e.into())
            }
        }
    }

    /// Wakes every worker now (e.g. after [`Outbox::replay_dead`]).
    pub fn wake_all(&self) {
        for w in &self.wakes {
            w.notify.notify_one();
        }
    }

    /// Row counts and persistent counters from the outbox (queued, in
    /// flight, dead, delivered, retried... per sink).
    pub async fn stats(&self) -> Result<OutboxStats, DispatchError> {
        let outbox = Arc::clone(&self.outbox);
        Ok(tokio::task::spawn_blocking(move || outbox.stats())
            .await
            .map_err(|e| DispatchError::Task(e.to_string()))??)
    }

    /// Replays dead letters (one sink or all) and wakes the workers.
    pub async fn replay_dead(&self, sink: Option<String>) -> Result<usize, DispatchError> {
        let outbox = Arc::clone(&self.outbox);
        let n = tokio::task::spawn_blocking(move || outbox.replay_dead(sink.as_deref()))
            .await
            .map_err(|e| DispatchError::Task(e.to_string()))??;
        self.wake_all();
        Ok(n)
    }

    /// Stops the workers: each finishes the batch it is sending, records
    /// the outcome and flushes its sink. Workers still busy after `grace`
    /// are aborted; their rows stay in flight and are sent again after the
    /// next start.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.stop.send(true);
        let deadline = Instant::now() + grace;
        for mut t in self.tasks {
            if tokio::time::timeout_at(deadline, &mut t).await.is_err() {
                tracing::warn!("export worker did not stop within the grace period; aborted");
                t.abort();
            }
        }
    }
}

/// A leased batch: decoded events, or the stored native JSON as it is.
enum Leased {
    Decoded(Vec<LeasedEvent>),
    Native(Vec<LeasedNative>),
}

impl Leased {
    fn len(&self) -> usize {
        match self {
            Leased::Decoded(v) => v.len(),
            Leased::Native(v) => v.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What is handed to the sink.
enum Batch {
    Decoded(Vec<SecurityEvent>),
    Native(Vec<NativeRecord>),
}

impl Batch {
    fn len(&self) -> usize {
        match self {
            Batch::Decoded(v) => v.len(),
            Batch::Native(v) => v.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

struct Worker {
    outbox: Arc<Outbox>,
    name: String,
    sink: Box<dyn AsyncSink>,
    filter: EventFilter,
    batch: BatchConfig,
    retry: RetryPolicy,
    metrics: Arc<SinkMetrics>,
    wake: Arc<Wake>,
    stop: watch::Receiver<bool>,
    jitter: Jitter,
    consecutive: u32,
}

enum Step {
    Continue,
    Stop,
}

impl Worker {
    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Sleeps until `until`; `Stop` if shutdown was requested meanwhile.
    async fn sleep_until(&mut self, until: Instant) -> Step {
        tokio::select! {
            _ = tokio::time::sleep_until(until) => Step::Continue,
            _ = self.stop.wait_for(|s| *s) => Step::Stop,
        }
    }

    /// Runs `f` on the outbox on the blocking pool. (Not a method: the
    /// future must not borrow the worker, whose sink need not be `Sync`.)
    fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Outbox) -> Result<T, OutboxError> + Send + 'static,
    ) -> impl std::future::Future<Output = Option<T>> + Send + 'static {
        let outbox = Arc::clone(&self.outbox);
        let metrics = Arc::clone(&self.metrics);
        let name = self.name.clone();
        async move {
            let res = tokio::task::spawn_blocking(move || f(&outbox)).await;
            match res {
                Ok(Ok(v)) => Some(v),
                Ok(Err(e)) => {
                    metrics.outbox_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(sink = %name, error = %e, "outbox operation failed");
                    None
                }
                Err(e) => {
                    metrics.outbox_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(sink = %name, error = %e, "outbox task failed");
                    None
                }
            }
        }
    }

    async fn run(mut self) {
        tracing::info!(sink = %self.name, target = %self.sink.describe(), "export worker started");
        let mut backoff_until: Option<Instant> = None;
        loop {
            if self.stopping() {
                break;
            }
            if let Some(t) = backoff_until.take() {
                if let Step::Stop = self.sleep_until(t).await {
                    break;
                }
            }
            let (name, max) = (self.name.clone(), self.batch.max_events);
            self.wake.fresh.store(0, Ordering::Relaxed);
            // A sink that sends native JSON and wants every event gets the
            // stored bytes as they are: nothing to decode or encode again.
            let native = self.filter.is_pass_all() && self.sink.sends_native_json();
            let leased = if native {
                self.blocking(move |o| o.lease_native(&name, max, now_ms()))
                    .await
                    .map(Leased::Native)
            } else {
                self.blocking(move |o| o.lease(&name, max, now_ms()))
                    .await
                    .map(Leased::Decoded)
            };
            let Some(leased) = leased else {
                backoff_until = Some(Instant::now() + Duration::from_secs(1));
                continue;
            };
            if leased.is_empty() {
                if let Step::Stop = self.idle().await {
                    break;
                }
                continue;
            }
            backoff_until = self.process(leased).await;
        }
        if let Err(e) = self.sink.flush().await {
            tracing::error!(sink = %self.name, error = %e, "flushing the sink on shutdown failed");
        }
        tracing::info!(sink = %self.name, "export worker stopped");
    }

    /// Nothing due: wait for new events (then linger up to `max_delay_ms`
    /// for a fuller batch), for the next retry to fall due, or for shutdown.
    async fn idle(&mut self) -> Step {
        let name = self.name.clone();
        let due = self.blocking(move |o| o.next_due(&name)).await.flatten();
        let wait = match due {
            Some(at) => Duration::from_millis((at - now_ms()).max(0) as u64).min(IDLE_POLL),
            None => IDLE_POLL,
        };
        let woke = tokio::select! {
            _ = self.wake.notify.notified() => true,
            _ = tokio::time::sleep(wait) => false,
            _ = self.stop.wait_for(|s| *s) => return Step::Stop,
        };
        if woke {
            let deadline = Instant::now() + Duration::from_millis(self.batch.max_delay_ms);
            while self.wake.fresh.load(Ordering::Relaxed) < self.batch.max_events {
                tokio::select! {
                    _ = self.wake.notify.notified() => {}
                    _ = tokio::time::sleep_until(deadline) => break,
                    _ = self.stop.wait_for(|s| *s) => break,
                }
            }
        }
        Step::Continue
    }

    /// Sends one leased batch and records the outcome. Returns when the
    /// sink may be tried again, if it failed as a whole.
    async fn process(&mut self, leased: Leased) -> Option<Instant> {
        let mut delivered: Vec<EntryKey> = Vec::new();
        // (key, attempts) of the events sent, parallel to `events`.
        let mut meta: Vec<(EntryKey, u32)> = Vec::with_capacity(leased.len());
        let events = match leased {
            Leased::Decoded(rows) => {
                let mut events: Vec<SecurityEvent> = Vec::with_capacity(rows.len());
                for l in rows {
                    if self.filter.matches(&l.event) {
                        meta.push((l.key, l.attempts));
                        events.push(l.event);
                    } else {
                        delivered.push(l.key);
                    }
                }
                Batch::Decoded(events)
            }
            // Leased natively only when the filter passes everything.
            Leased::Native(rows) => Batch::Native(
                rows.into_iter()
                    .map(|l| {
                        meta.push((l.key, l.attempts));
                        l.record
                    })
                    .collect(),
            ),
        };
        let filtered = delivered.len();
        add(&self.metrics.filtered, filtered);
        let mut retry: Vec<(EntryKey, u32, Option<Duration>, String)> = Vec::new();
        let mut dead: HashMap<String, Vec<EntryKey>> = HashMap::new();
        let mut whole_batch_failed = false;
        if !events.is_empty() {
            add(&self.metrics.sent, events.len());
            self.metrics
                .in_flight
                .store(events.len() as u64, Ordering::Relaxed);
            add(&self.metrics.batches, 1);
            let timeout = Duration::from_millis(self.batch.send_timeout_ms);
            let send = match &events {
                Batch::Decoded(events) => self.sink.send(events),
                Batch::Native(records) => self.sink.send_native(records),
            };
            let report = match tokio::time::timeout(timeout, send).await {
                Ok(r) => r.deliveries,
                Err(_) => Vec::new(),
            };
            self.metrics.in_flight.store(0, Ordering::Relaxed);
            let mut any_delivered = false;
            for (i, &(key, attempts)) in meta.iter().enumerate() {
                let d = report.get(i).cloned().unwrap_or_else(|| {
                    Delivery::retryable(if report.is_empty() {
                        "send timed out".to_owned()
                    } else {
                        "sink reported no result for this event".to_owned()
                    })
                });
                match d {
                    Delivery::Delivered => {
                        any_delivered = true;
                        delivered.push(key);
                    }
                    Delivery::Retryable {
                        reason,
                        retry_after,
                    } => {
                        if self.retry.exhausted(attempts) {
                            dead.entry(format!("gave up after {attempts} attempts: {reason}"))
                                .or_default()
                                .push(key);
                        } else {
                            retry.push((key, attempts, retry_after, reason));
                        }
                    }
                    Delivery::Permanent { reason } => dead.entry(reason).or_default().push(key),
                }
            }
            whole_batch_failed = !any_delivered && !retry.is_empty();
        }

        // Decide when retries are due.
        let now = now_ms();
        let mut sink_backoff = None;
        let mut retry_groups: HashMap<(i64, String), Vec<EntryKey>> = HashMap::new();
        if whole_batch_failed {
            self.consecutive = self.consecutive.saturating_add(1);
            add(&self.metrics.failed_batches, 1);
            let hint = retry.iter().filter_map(|r| r.2).max();
            let delay = self.retry.delay(self.consecutive, hint, &mut self.jitter);
            let at = now + delay.as_millis() as i64;
            sink_backoff = Some(Instant::now() + delay);
            let reason = retry.first().map(|r| r.3.clone()).unwrap_or_default();
            tracing::warn!(sink = %self.name, events = retry.len(), delay_ms = delay.as_millis() as u64,
                failures = self.consecutive, %reason, "batch not delivered; retrying later");
            for (key, _, _, reason) in retry.drain(..) {
                retry_groups.entry((at, reason)).or_default().push(key);
            }
        } else {
            if !delivered.is_empty() || !dead.is_empty() {
                self.consecutive = 0;
            }
            for (key, attempts, hint, reason) in retry.drain(..) {
                let delay = self.retry.delay(attempts, hint, &mut self.jitter);
                let at = now + delay.as_millis() as i64;
                // Group by second so one update covers most of the batch.
                let at = at - at % 1000 + 1000;
                retry_groups.entry((at, reason)).or_default().push(key);
            }
        }
        self.metrics
            .consecutive_failures
            .store(u64::from(self.consecutive), Ordering::Relaxed);

        let n_delivered = delivered.len() - filtered;
        let n_retry: usize = retry_groups.values().map(Vec::len).sum();
        let n_dead: usize = dead.values().map(Vec::len).sum();
        for (reason, keys) in &dead {
            tracing::error!(sink = %self.name, events = keys.len(), %reason, "dead-lettered");
        }
        let name = self.name.clone();
        let ok = self
            .blocking(move |o| {
                if !delivered.is_empty() {
                    o.ack(&name, &delivered)?;
                }
                for ((at, reason), keys) in &retry_groups {
                    o.retry(&name, keys, *at, reason)?;
                }
                for (reason, keys) in &dead {
                    o.dead_letter(&name, keys, reason)?;
                }
                Ok(())
            })
            .await;
        if ok.is_some() {
            add(&self.metrics.delivered, n_delivered);
            add(&self.metrics.retried, n_retry);
            add(&self.metrics.dead_lettered, n_dead);
            if n_delivered > 0 {
                self.metrics
                    .last_delivery_ms
                    .store(now.max(0) as u64, Ordering::Relaxed);
            }
        }
        sink_backoff
    }
}

/// The event `enforcer export test` sends: an `info` audit event of class
/// `kernel`, operation `export-test`, policy `enforcer`, rule
/// `export-test`, with a fresh id.
pub fn test_event(host: &str) -> SecurityEvent {
    let mut ev = SecurityEvent::new(
        Timestamp::now(),
        host,
        Verdict::Audited,
        EventClass::Kernel,
        "export-test",
        Severity::Info,
    );
    ev.policy = Some("enforcer".into());
    ev.rule = Some("export-test".into());
    ev.message = "enforcer export test event".into();
    ev
}

/// What `enforcer export test --sink NAME` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TestReport {
    pub sink: String,
    pub target: String,
    pub event_id: String,
    /// `delivered`, `retryable` or `permanent`.
    pub outcome: &'static str,
    /// The reason for a failure.
    pub reason: Option<String>,
    /// What the destination answered (status and the start of the body).
    pub answer: Option<String>,
}

/// Sends one [`test_event`] through `sink` directly (not through the
/// outbox, and ignoring the sink's filter) and reports the answer.
pub async fn send_test_event(
    name: &str,
    sink: &mut dyn AsyncSink,
    host: &str,
    timeout: Duration,
) -> TestReport {
    let ev = test_event(host);
    let events = [ev];
    let d = match tokio::time::timeout(timeout, sink.send(&events)).await {
        Ok(r) => r
            .deliveries
            .into_iter()
            .next()
            .unwrap_or_else(|| Delivery::retryable("no result")),
        Err(_) => Delivery::retryable(format!("no answer within {} ms", timeout.as_millis())),
    };
    let (outcome, reason) = match d {
        Delivery::Delivered => ("delivered", None),
        Delivery::Retryable { reason, .. } => ("retryable", Some(reason)),
        Delivery::Permanent { reason } => ("permanent", Some(reason)),
    };
    TestReport {
        sink: name.to_owned(),
        target: sink.describe(),
        event_id: events[0].id.to_string(),
        outcome,
        reason,
        answer: sink.last_answer(),
    }
}
