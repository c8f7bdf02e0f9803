//! Prometheus metrics of `enforcer run`: the daemon's counters and gauges, rendered in the
//! Prometheus text exposition format 0.0.4 and served by a minimal HTTP/1.1 server on the
//! daemon's tokio runtime (`GET /metrics`; anything else is 404).
//!
//! - [`Exposition`]: the text format (HELP and TYPE lines, label escaping, families and series
//!   sorted so that two scrapes of the same state are byte-identical).
//! - [`DaemonMetrics`]: what the daemon counts itself (events by class and verdict, decode
//!   errors, export hand-off drops) and the latest samples of what other parts count (the
//!   kernel's `enf_stats`, the store writer, the process table; refreshed every second by the
//!   event loop), plus the export dispatcher's live counters and the outbox, read per scrape.
//! - [`bind`] and [`spawn_server`]: the listener (bound before anything is loaded, so that an
//!   address in use stops the daemon with [`exit_code::PORT`]) and the server.
//!
//! A scrape never blocks the event loop: it reads atomics and a copy of the samples, and the
//! outbox statistics on the blocking pool. One connection's failure (a slow or broken client, a
//! request that is too large) only closes that connection.

use crate::exit_code::{self, Failure};
use bpf_lsm::KernelStats;
use enforcer::enrich::{CgroupStats, TableStats};
use enforcer::store::WriterStats;
use siem_export::dispatcher::Metrics as ExportMetrics;
use siem_export::event::{EventClass, Verdict};
use siem_export::follow::FollowStats;
use siem_export::outbox::{Outbox, OutboxStats};
use siem_export::sink::RotationHold;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

/// The default `[metrics] address`: loopback only; the Prometheus exporter port range.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:9464";

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A request's head (request line and headers) larger than this is refused with 431.
const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// A client must send its request head within this long, and read the answer within it.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more are closed at accept.
const MAX_CONNECTIONS: usize = 16;
/// How long reading the outbox statistics may take before a scrape goes without them.
const OUTBOX_STATS_TIMEOUT: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------------------------------
// The text exposition format.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

#[derive(Debug)]
struct Family {
    help: &'static str,
    kind: Kind,
    /// Labels sorted by name, then the value.
    series: BTreeMap<Vec<(&'static str, String)>, u64>,
}

/// One scrape's worth of metric families, rendered in the text format 0.0.4.
///
/// Families are sorted by name and series by their labels (sorted by label name), so the
/// output is stable. Adding a series twice keeps the last value; a family is declared by its
/// first use (a later use with another kind is ignored, and caught by the tests).
#[derive(Debug, Default)]
pub struct Exposition {
    families: BTreeMap<&'static str, Family>,
}

impl Exposition {
    pub fn counter(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &str)],
        value: u64,
    ) {
        self.add(name, help, Kind::Counter, labels, value);
    }

    pub fn gauge(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &str)],
        value: u64,
    ) {
        self.add(name, help, Kind::Gauge, labels, value);
    }

    fn add(
        &mut self,
        name: &'static str,
        help: &'static str,
        kind: Kind,
        labels: &[(&'static str, &str)],
        value: u64,
    ) {
        let family = self.families.entry(name).or_insert_with(|| Family {
            help,
            kind,
            series: BTreeMap::new(),
        });
        if family.kind != kind {
            return;
        }
        let mut key: Vec<(&'static str, String)> =
            labels.iter().map(|(k, v)| (*k, (*v).to_string())).collect();
        key.sort();
        family.series.insert(key, value);
    }

    /// The text format: per family `# HELP`, `# TYPE`, then one line per series.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, family) in &self.families {
            let _ = writeln!(out, "# HELP {name} {}", escape_help(family.help));
            let _ = writeln!(out, "# TYPE {name} {}", family.kind.as_str());
            for (labels, value) in &family.series {
                out.push_str(name);
                if !labels.is_empty() {
                    out.push('{');
                    for (i, (k, v)) in labels.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        let _ = write!(out, "{k}=\"{}\"", escape_label_value(v));
                    }
                    out.push('}');
                }
                let _ = writeln!(out, " {value}");
            }
        }
        out
    }
}

/// HELP text: `\` and line feed are escaped.
fn escape_help(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Label values: `\`, `"` and line feed are escaped.
fn escape_label_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The daemon's metrics.

/// The process table's numbers at the last refresh.
#[derive(Clone, Debug, Default)]
pub struct TableSample {
    pub entries: u64,
    pub table: TableStats,
    pub cgroups: CgroupStats,
}

/// Policy reloads (SIGHUP, edited policy files).
#[derive(Default)]
struct ReloadCounters {
    ok: AtomicU64,
    failed: AtomicU64,
    /// The plan in force: 1 for the one loaded at start, +1 per successful reload.
    generation: AtomicU64,
    /// Unix time (seconds) the plan in force took effect.
    last_unix: AtomicU64,
}

#[derive(Default)]
struct Sampled {
    kernel: KernelStats,
    store: WriterStats,
    table: TableSample,
}

struct ExportSources {
    metrics: Arc<ExportMetrics>,
    outbox: Arc<Outbox>,
}

/// The kinds of process records, as the `kind` label of `enforcer_process_events_total`.
pub const PROCESS_KINDS: [&str; 3] = ["exec", "fork", "exit"];

/// The log follower's counters and the event log's rotation hold.
struct ExportLog {
    follow: Arc<FollowStats>,
    hold: Arc<RotationHold>,
}

/// Everything `/metrics` shows. Shared (`Arc`) between the event loop, the exporter and the
/// server.
pub struct DaemonMetrics {
    version: &'static str,
    /// `EventClass::ALL.len() * Verdict::ALL.len()` counters, class-major.
    events: Vec<AtomicU64>,
    decode_errors: AtomicU64,
    rules_loaded: AtomicU64,
    /// Process records (exec, fork, exit), in [`PROCESS_KINDS`] order.
    process_events: [AtomicU64; 3],
    alerts_fired: AtomicU64,
    reloads: ReloadCounters,
    sampled: Mutex<Sampled>,
    export: Mutex<Option<ExportSources>>,
    export_log: Mutex<Option<ExportLog>>,
}

impl DaemonMetrics {
    pub fn new(version: &'static str) -> Self {
        DaemonMetrics {
            version,
            events: (0..EventClass::ALL.len() * Verdict::ALL.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            decode_errors: AtomicU64::new(0),
            rules_loaded: AtomicU64::new(0),
            process_events: Default::default(),
            alerts_fired: AtomicU64::new(0),
            reloads: ReloadCounters::default(),
            sampled: Mutex::new(Sampled::default()),
            export: Mutex::new(None),
            export_log: Mutex::new(None),
        }
    }

    fn event_slot(class: EventClass, verdict: Verdict) -> Option<usize> {
        let c = EventClass::ALL.iter().position(|x| *x == class)?;
        let v = Verdict::ALL.iter().position(|x| *x == verdict)?;
        Some(c * Verdict::ALL.len() + v)
    }

    /// One event the kernel reported (decoded and handed to the log, store and export).
    pub fn count_event(&self, class: EventClass, verdict: Verdict) {
        if let Some(slot) = Self::event_slot(class, verdict).and_then(|i| self.events.get(i)) {
            slot.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One process record (`exec`, `fork` or `exit`: [`PROCESS_KINDS`]).
    pub fn count_process_event(&self, kind: &str) {
        if let Some(i) = PROCESS_KINDS.iter().position(|k| *k == kind) {
            if let Some(c) = self.process_events.get(i) {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// One `alert` rule fired (its event is also counted by [`Self::count_event`]).
    pub fn count_alert(&self) {
        self.alerts_fired.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_decode_error(&self) {
        self.decode_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn set_rules_loaded(&self, n: u64) {
        self.rules_loaded.store(n, Ordering::Relaxed);
    }

    /// A plan took effect: `generation` is its number (1 at start), `at` the Unix time.
    pub fn set_plan(&self, generation: u64, at_unix: u64) {
        self.reloads.generation.store(generation, Ordering::Relaxed);
        self.reloads.last_unix.store(at_unix, Ordering::Relaxed);
    }

    /// A reload ended: the new plan is in force (`ok`), or the old one stayed.
    pub fn count_reload(&self, ok: bool) {
        let c = if ok {
            &self.reloads.ok
        } else {
            &self.reloads.failed
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn set_kernel(&self, stats: KernelStats) {
        self.sampled().kernel = stats;
    }

    pub fn set_store(&self, stats: WriterStats) {
        self.sampled().store = stats;
    }

    pub fn set_table(&self, sample: TableSample) {
        self.sampled().table = sample;
    }

    /// Export is on: its per-sink counters and the outbox are read at each scrape.
    pub fn set_export(&self, metrics: Arc<ExportMetrics>, outbox: Arc<Outbox>) {
        *self.export.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(ExportSources { metrics, outbox });
    }

    /// Export reads the event log: the follower's counters and the rotation hold.
    pub fn set_export_log(&self, follow: Arc<FollowStats>, hold: Arc<RotationHold>) {
        *self
            .export_log
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(ExportLog { follow, hold });
    }

    fn sampled(&self) -> std::sync::MutexGuard<'_, Sampled> {
        self.sampled.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads what a scrape shows (the outbox on the blocking pool) and renders it.
    pub async fn scrape(&self) -> String {
        let export = {
            let guard = self.export.lock().unwrap_or_else(PoisonError::into_inner);
            guard
                .as_ref()
                .map(|e| (Arc::clone(&e.metrics), Arc::clone(&e.outbox)))
        };
        let export = match export {
            None => None,
            Some((metrics, outbox)) => {
                let read = tokio::task::spawn_blocking(move || outbox.stats());
                let outbox = match tokio::time::timeout(OUTBOX_STATS_TIMEOUT, read).await {
                    Ok(Ok(Ok(stats))) => Some(stats),
                    Ok(Ok(Err(e))) => {
                        tracing::debug!(error = %e, "metrics: reading the outbox statistics failed");
                        None
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "metrics: the outbox statistics task failed");
                        None
                    }
                    Err(_) => None,
                };
                Some((metrics, outbox))
            }
        };
        let mut x = Exposition::default();
        self.expose(&mut x);
        if let Some((metrics, outbox)) = &export {
            expose_export(&mut x, metrics, outbox.as_ref());
        }
        if let Some(log) = self
            .export_log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            expose_export_log(&mut x, log);
        }
        x.render()
    }

    /// Everything but export.
    fn expose(&self, x: &mut Exposition) {
        x.gauge(
            "enforcer_build_info",
            "The enforcer's version; always 1.",
            &[("version", self.version)],
            1,
        );
        x.gauge(
            "enforcer_rules_loaded",
            "Rules loaded into the kernel (0 when this kernel runs none of them).",
            &[],
            self.rules_loaded.load(Ordering::Relaxed),
        );
        for (outcome, c) in [("ok", &self.reloads.ok), ("failed", &self.reloads.failed)] {
            x.counter(
                "enforcer_policy_reloads_total",
                "Policy reloads: the new plan took effect (ok), or it did not compile, translate \
                 or load and the old one stayed in force (failed).",
                &[("outcome", outcome)],
                c.load(Ordering::Relaxed),
            );
        }
        x.gauge(
            "enforcer_policy_generation",
            "The plan in force: 1 for the one loaded at start, one more per successful reload.",
            &[],
            self.reloads.generation.load(Ordering::Relaxed),
        );
        x.gauge(
            "enforcer_policy_last_reload_timestamp_seconds",
            "Unix time the plan in force took effect (at start, or at the last successful \
             reload).",
            &[],
            self.reloads.last_unix.load(Ordering::Relaxed),
        );
        for (ci, class) in EventClass::ALL.iter().enumerate() {
            for (vi, verdict) in Verdict::ALL.iter().enumerate() {
                let n = self
                    .events
                    .get(ci * Verdict::ALL.len() + vi)
                    .map_or(0, |a| a.load(Ordering::Relaxed));
                x.counter(
                    "enforcer_events_total",
                    "Verdicts the kernel reported, by event class and verdict.",
                    &[("class", class.as_str()), ("verdict", verdict.as_str())],
                    n,
                );
            }
        }
        for (kind, n) in PROCESS_KINDS.iter().zip(&self.process_events) {
            x.counter(
                "enforcer_process_events_total",
                "Process records (exec, fork, exit) of processes in scope, fed to the process \
                 table.",
                &[("kind", kind)],
                n.load(Ordering::Relaxed),
            );
        }
        x.counter(
            "enforcer_alerts_fired_total",
            "`alert` rules that fired (each is also an event with verdict `alerted`).",
            &[],
            self.alerts_fired.load(Ordering::Relaxed),
        );
        x.counter(
            "enforcer_decode_errors_total",
            "Kernel records skipped because they could not be decoded.",
            &[],
            self.decode_errors.load(Ordering::Relaxed),
        );

        let s = self.sampled();
        x.counter(
            "enforcer_ringbuf_drops_total",
            "Kernel records lost because the ring buffer was full.",
            &[],
            s.kernel.ringbuf_drops,
        );
        x.counter(
            "enforcer_path_unresolved_total",
            "Operations the kernel decided without a resolved path (failed closed).",
            &[],
            s.kernel.path_unresolved,
        );
        x.counter(
            "enforcer_cgroup_inherit_failed_total",
            "New cgroups that could not get their policies (the cgroup map was full): they \
             are not covered.",
            &[],
            s.kernel.inherit_failed,
        );
        x.counter(
            "enforcer_cgroup_inherited_total",
            "New cgroups that got policies in the kernel at creation (their parent's, or a \
             selector's that matches their path).",
            &[],
            s.kernel.inherited,
        );
        x.counter(
            "enforcer_binary_unknown_total",
            "Matches of rules with `from`/`except_from` on a task of unknown executable (deny, \
             kill and audit rules applied, failing closed).",
            &[],
            s.kernel.binary_unknown,
        );
        x.counter(
            "enforcer_binary_store_failed_total",
            "Execs and forks whose binary sets the kernel could not store (the task is unknown).",
            &[],
            s.kernel.binary_store_failed,
        );
        x.counter(
            "enforcer_rate_limited_events_total",
            "Verdict records the kernel's rate limit (`rate_limit` per second per cgroup and \
             rule) did not send; each verdict still applied.",
            &[],
            s.kernel.rate_suppressed,
        );

        let st = &s.store;
        x.counter(
            "enforcer_store_events_inserted_total",
            "Events written to the event store.",
            &[],
            st.inserted,
        );
        for verdict in Verdict::ALL {
            x.counter(
                "enforcer_store_events_dropped_total",
                "Events not stored because the store writer's queue was full, by verdict (a deny \
                 or kill takes the place of a queued allowed/audited/alerted event).",
                &[("verdict", verdict.as_str())],
                st.dropped_by_verdict.get(*verdict),
            );
        }
        x.counter(
            "enforcer_store_events_failed_total",
            "Events not stored because their batch failed to commit.",
            &[],
            st.failed,
        );
        for (reason, n) in [("duplicate", st.duplicates), ("invalid", st.invalid)] {
            x.counter(
                "enforcer_store_events_rejected_total",
                "Events the store did not insert: already stored, or invalid.",
                &[("reason", reason)],
                n,
            );
        }
        for (reason, counts) in [("age", &st.deleted_by_age), ("size", &st.deleted_by_size)] {
            for verdict in Verdict::ALL {
                x.counter(
                    "enforcer_store_events_deleted_total",
                    "Events deleted by retention: older than store.max_age_days (age) or to stay \
                     under store.max_bytes (size).",
                    &[("reason", reason), ("verdict", verdict.as_str())],
                    counts.get(*verdict),
                );
            }
        }

        let t = &s.table;
        x.gauge(
            "enforcer_process_table_entries",
            "Processes in the enrichment process table.",
            &[],
            t.entries,
        );
        for (state, n) in [
            ("exited", t.table.evicted_exited),
            ("live", t.table.evicted_live),
        ] {
            x.counter(
                "enforcer_process_table_evictions_total",
                "Process table entries evicted because the table was full.",
                &[("state", state)],
                n,
            );
        }
        x.counter(
            "enforcer_enrichment_misses_total",
            "Process lookups that did not find the process in the table.",
            &[],
            t.table.misses,
        );
        x.counter(
            "enforcer_enrichment_load_failures_total",
            "Processes that could not be read from /proc (they were gone).",
            &[],
            t.table.load_failures,
        );
        x.counter(
            "enforcer_cgroup_cache_unresolved_total",
            "Cgroup ids left unresolved by enrichment (rate-limited walk, or the cgroup is gone).",
            &[],
            t.cgroups.unresolved,
        );
    }
}

/// The log follower: what it read from the event log, skipped, waited for, and lost.
fn expose_export_log(x: &mut Exposition, log: &ExportLog) {
    let f = &log.follow;
    x.counter(
        "enforcer_export_log_events_total",
        "Events read from the event log and stored in the export outbox.",
        &[],
        f.events.load(Ordering::Relaxed),
    );
    x.counter(
        "enforcer_export_log_invalid_lines_total",
        "Lines of the event log that were not an event (e.g. torn by a crash): skipped.",
        &[],
        f.invalid_lines.load(Ordering::Relaxed),
    );
    x.counter(
        "enforcer_export_log_stalls_total",
        "Times export from the event log waited because the outbox was full of undelivered \
         deny/kill events (the log keeps them).",
        &[],
        f.stalls.load(Ordering::Relaxed),
    );
    x.counter(
        "enforcer_export_log_lost_files_total",
        "Times the event log file being exported was deleted by rotation before it was read to \
         its end.",
        &[],
        f.lost_files.load(Ordering::Relaxed),
    );
    x.counter(
        "enforcer_export_log_files_deleted_unread_total",
        "Event log files rotation deleted although export had not read them (more than \
         event_log.keep_files files behind).",
        &[],
        log.hold.forced(),
    );
}

/// The dispatcher's per-sink counters (since start), the outbox's per-sink state (when it could
/// be read), and the outbox's disk-full policy.
fn expose_export(x: &mut Exposition, metrics: &ExportMetrics, outbox: Option<&OutboxStats>) {
    let m = metrics.snapshot();
    for s in &m.sinks {
        let sink: &[(&'static str, &str)] = &[("sink", s.name.as_str())];
        x.gauge(
            "enforcer_export_events_in_flight",
            "Events being sent to the sink.",
            sink,
            s.in_flight,
        );
        x.counter(
            "enforcer_export_events_delivered_total",
            "Events the sink acknowledged.",
            sink,
            s.delivered,
        );
        x.counter(
            "enforcer_export_events_retried_total",
            "Event deliveries to the sink that failed and were scheduled again.",
            sink,
            s.retried,
        );
        x.counter(
            "enforcer_export_events_dead_lettered_total",
            "Events the sink refused for good or that ran out of attempts.",
            sink,
            s.dead_lettered,
        );
        x.counter(
            "enforcer_export_events_filtered_total",
            "Events the sink's filter did not want (acknowledged without sending).",
            sink,
            s.filtered,
        );
        x.counter(
            "enforcer_export_batches_failed_total",
            "Batches that failed as a whole (sink down, 429, 5xx).",
            sink,
            s.failed_batches,
        );
        x.gauge(
            "enforcer_export_consecutive_failures",
            "Failed sends to the sink in a row (0 after a success).",
            sink,
            s.consecutive_failures,
        );
    }
    if let Some(o) = outbox {
        for s in &o.sinks {
            let sink: &[(&'static str, &str)] = &[("sink", s.sink.as_str())];
            x.gauge(
                "enforcer_export_events_queued",
                "Events in the outbox waiting to be sent to the sink.",
                sink,
                s.queued,
            );
            x.gauge(
                "enforcer_export_dead_letters",
                "Dead letters of the sink in the outbox (`enforcer export replay` retries them).",
                sink,
                s.dead,
            );
            x.counter(
                "enforcer_export_events_evicted_total",
                "Events of the sink lost to the outbox's disk-full eviction.",
                sink,
                s.evicted,
            );
        }
        x.gauge(
            "enforcer_export_outbox_bytes",
            "Bytes the outbox database uses.",
            &[],
            o.used_bytes,
        );
        x.gauge(
            "enforcer_export_outbox_max_bytes",
            "export.outbox.max_bytes.",
            &[],
            o.max_bytes,
        );
    }
    x.counter(
        "enforcer_export_outbox_enqueued_total",
        "Events stored in the outbox for the sinks.",
        &[],
        m.enqueued,
    );
    for (priority, n) in [("low", m.dropped_low), ("high", m.dropped_high)] {
        x.counter(
            "enforcer_export_outbox_refused_total",
            "Events the full outbox refused: audit events (low), or deny/kill events when \
             eviction could not make room (high).",
            &[("priority", priority)],
            n,
        );
    }
    for (what, n) in [("dead", m.evicted_dead), ("pending", m.evicted_pending)] {
        x.counter(
            "enforcer_export_outbox_evicted_total",
            "Rows the full outbox evicted to make room: dead letters, or undelivered audit events.",
            &[("what", what)],
            n,
        );
    }
    x.counter(
        "enforcer_export_unencodable_total",
        "Events that could not be encoded for the outbox (never exported).",
        &[],
        m.unencodable,
    );
    x.counter(
        "enforcer_export_outbox_errors_total",
        "Failed attempts to store events in the outbox.",
        &[],
        m.enqueue_errors,
    );
}

// ---------------------------------------------------------------------------------------------
// The address and the server.

/// `--metrics-address`: `IP:PORT`, or empty for no metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricsAddress(pub Option<SocketAddr>);

/// Parses `IP:PORT` (`[::1]:9464` for IPv6); the empty string turns metrics off.
pub fn parse_address(s: &str) -> Result<MetricsAddress, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(MetricsAddress(None));
    }
    s.parse::<SocketAddr>()
        .map(|a| MetricsAddress(Some(a)))
        .map_err(|_| {
            format!(
                "`{s}` is not an address: give IP:PORT, e.g. {DEFAULT_ADDRESS} or [::1]:9464, \
                 or \"\" to turn metrics off"
            )
        })
}

/// Binds the metrics address; failing is [`exit_code::PORT`] with a message naming the
/// address and the fix.
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, Failure> {
    let listener = std::net::TcpListener::bind(addr).map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::AddrInUse => "is in use (another enforcer, or another program)",
            std::io::ErrorKind::AddrNotAvailable => "is not an address of this host",
            std::io::ErrorKind::PermissionDenied => "may not be bound by this process",
            _ => "cannot be bound",
        };
        Failure::new(
            exit_code::PORT,
            anyhow::anyhow!(
                "the metrics address {addr} {why}: {e}; choose a free address with `[metrics] \
                 address` in the config file or `--metrics-address`, or turn metrics off with \
                 `--metrics-address \"\"`"
            ),
        )
    })?;
    listener.set_nonblocking(true).map_err(|e| {
        Failure::new(
            exit_code::PORT,
            anyhow::anyhow!("the metrics address {addr}: {e}"),
        )
    })?;
    Ok(listener)
}

/// Serves `/metrics` on `listener` until the task is aborted. Call inside the runtime.
pub fn spawn_server(
    listener: std::net::TcpListener,
    metrics: Arc<DaemonMetrics>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    if let Ok(addr) = listener.local_addr() {
        tracing::info!("metrics served at http://{addr}/metrics");
    }
    Ok(tokio::spawn(accept_loop(listener, metrics)))
}

async fn accept_loop(listener: tokio::net::TcpListener, metrics: Arc<DaemonMetrics>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut warned = false;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                if !warned {
                    tracing::warn!(error = %e, "metrics: accepting a connection failed");
                    warned = true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            // Too many scrapes at once: this one is closed unanswered.
            continue;
        };
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            if let Err(e) = handle(stream, &metrics).await {
                tracing::debug!(error = %e, "metrics: connection failed");
            }
            drop(permit);
        });
    }
}

/// What a request gets.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics,
    NotFound,
    MethodNotAllowed,
    BadRequest,
    TooLarge,
}

/// Routes a request head (everything up to the blank line).
fn route(head: &[u8]) -> Route {
    let Some(line) = head.split(|b| *b == b'\n').next() else {
        return Route::BadRequest;
    };
    let Ok(line) = std::str::from_utf8(line) else {
        return Route::BadRequest;
    };
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Route::BadRequest;
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() || target.is_empty() {
        return Route::BadRequest;
    }
    let path = target.split('?').next().unwrap_or(target);
    if path != "/metrics" {
        return Route::NotFound;
    }
    if method != "GET" {
        return Route::MethodNotAllowed;
    }
    Route::Metrics
}

/// Reads the request head: `Ok(None)` when the client closed before a full head.
async fn read_head(stream: &mut tokio::net::TcpStream) -> std::io::Result<Option<Route>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(Some(route(buf.get(..end).unwrap_or_default())));
        }
        if buf.len() > MAX_REQUEST_BYTES {
            return Ok(Some(Route::TooLarge));
        }
    }
}

async fn handle(mut stream: tokio::net::TcpStream, metrics: &DaemonMetrics) -> std::io::Result<()> {
    let route = match tokio::time::timeout(IO_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(Some(route))) => route,
        // Closed early, or too slow: nothing to answer.
        Ok(Ok(None)) | Err(_) => return Ok(()),
        Ok(Err(e)) => return Err(e),
    };
    let (status, extra, body) = match route {
        Route::Metrics => ("200 OK", "", metrics.scrape().await),
        Route::NotFound => ("404 Not Found", "", "not found: try /metrics\n".to_string()),
        Route::MethodNotAllowed => (
            "405 Method Not Allowed",
            "Allow: GET\r\n",
            "only GET\n".to_string(),
        ),
        Route::BadRequest => ("400 Bad Request", "", "bad request\n".to_string()),
        Route::TooLarge => (
            "431 Request Header Fields Too Large",
            "",
            "request too large\n".to_string(),
        ),
    };
    let content_type = if route == Route::Metrics {
        CONTENT_TYPE
    } else {
        "text/plain; charset=utf-8"
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let write = async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    };
    match tokio::time::timeout(IO_TIMEOUT, write).await {
        Ok(r) => r,
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use enforcer::store::VerdictCounts;

    /// A metric or label name as the format allows: `[a-zA-Z_:][a-zA-Z0-9_:]*` (labels: no `:`).
    fn valid_name(s: &str, colon: bool) -> bool {
        let ok = |c: char, first: bool| {
            c.is_ascii_alphabetic()
                || c == '_'
                || (colon && c == ':')
                || (!first && c.is_ascii_digit())
        };
        let mut chars = s.chars();
        chars.next().is_some_and(|c| ok(c, true)) && chars.all(|c| ok(c, false))
    }

    #[test]
    fn help_type_and_series_are_rendered_in_the_text_format() {
        let mut x = Exposition::default();
        x.counter("b_total", "B things.", &[("sink", "soc")], 3);
        x.gauge("a", "An a.", &[], 7);
        assert_eq!(
            x.render(),
            "# HELP a An a.\n# TYPE a gauge\na 7\n\
             # HELP b_total B things.\n# TYPE b_total counter\nb_total{sink=\"soc\"} 3\n"
        );
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut x = Exposition::default();
        x.counter(
            "x_total",
            "back\\slash and\nnewline \"quoted\"",
            &[("v", "a\\b\"c\nd")],
            1,
        );
        let text = x.render();
        assert!(
            text.contains("# HELP x_total back\\\\slash and\\nnewline \"quoted\"\n"),
            "{text}"
        );
        assert!(
            text.contains("x_total{v=\"a\\\\b\\\"c\\nd\"} 1\n"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 3, "{text}");
    }

    #[test]
    fn output_is_sorted_and_stable() {
        let mut one = Exposition::default();
        one.counter("z_total", "Z.", &[("b", "2"), ("a", "1")], 1);
        one.counter("z_total", "Z.", &[("a", "0"), ("b", "9")], 2);
        one.gauge("m", "M.", &[], 1);
        let mut two = Exposition::default();
        two.gauge("m", "M.", &[], 1);
        two.counter("z_total", "Z.", &[("a", "0"), ("b", "9")], 2);
        two.counter("z_total", "Z.", &[("a", "1"), ("b", "2")], 1);
        assert_eq!(one.render(), two.render());
        let text = one.render();
        let series: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            series,
            [
                "m 1",
                "z_total{a=\"0\",b=\"9\"} 2",
                "z_total{a=\"1\",b=\"2\"} 1"
            ]
        );
    }

    #[test]
    fn a_series_added_twice_keeps_the_last_value_and_a_kind_clash_is_ignored() {
        let mut x = Exposition::default();
        x.counter("c_total", "C.", &[], 1);
        x.counter("c_total", "C.", &[], 5);
        x.gauge("c_total", "C.", &[("k", "v")], 9);
        assert_eq!(
            x.render(),
            "# HELP c_total C.\n# TYPE c_total counter\nc_total 5\n"
        );
    }

    #[test]
    fn the_daemon_metrics_are_well_formed_and_count() {
        let m = DaemonMetrics::new("1.2.3");
        m.count_event(EventClass::File, Verdict::Denied);
        m.count_event(EventClass::File, Verdict::Denied);
        m.count_decode_error();
        m.set_rules_loaded(4);
        let mut dropped = VerdictCounts::default();
        dropped.add(Verdict::Audited, 2);
        m.set_store(WriterStats {
            inserted: 10,
            dropped: 2,
            dropped_by_verdict: dropped,
            ..WriterStats::default()
        });
        m.set_kernel(KernelStats {
            ringbuf_drops: 3,
            ..KernelStats::default()
        });
        m.set_plan(2, 1_700_000_000);
        m.count_reload(true);
        m.count_reload(false);
        m.count_reload(false);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let text = rt.block_on(m.scrape());
        for line in [
            "enforcer_build_info{version=\"1.2.3\"} 1",
            "enforcer_rules_loaded 4",
            "enforcer_events_total{class=\"file\",verdict=\"denied\"} 2",
            "enforcer_events_total{class=\"exec\",verdict=\"allowed\"} 0",
            "enforcer_decode_errors_total 1",
            "enforcer_ringbuf_drops_total 3",
            "enforcer_store_events_inserted_total 10",
            "enforcer_store_events_dropped_total{verdict=\"audited\"} 2",
            "enforcer_store_events_dropped_total{verdict=\"denied\"} 0",
            "enforcer_store_events_failed_total 0",
            "enforcer_store_events_deleted_total{reason=\"age\",verdict=\"audited\"} 0",
            "enforcer_process_table_entries 0",
            "enforcer_policy_reloads_total{outcome=\"ok\"} 1",
            "enforcer_policy_reloads_total{outcome=\"failed\"} 2",
            "enforcer_policy_generation 2",
            "enforcer_policy_last_reload_timestamp_seconds 1700000000",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        }
        // No export configured: no export series.
        assert!(!text.contains("enforcer_export_"), "{text}");
        // Every family has HELP then TYPE, every series belongs to the family before it, and
        // every name is valid; counters end in _total.
        let mut family = String::new();
        let mut lines = text.lines().peekable();
        while let Some(line) = lines.next() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                family = rest.split(' ').next().unwrap().to_string();
                assert!(valid_name(&family, true), "{family}");
                assert!(family.starts_with("enforcer_"), "{family}");
                let ty = lines.next().unwrap();
                let kind = ty.strip_prefix(&format!("# TYPE {family} ")).unwrap();
                assert!(kind == "counter" || kind == "gauge", "{ty}");
                assert_eq!(kind == "counter", family.ends_with("_total"), "{family}");
                continue;
            }
            let name = line.split(['{', ' ']).next().unwrap();
            assert_eq!(name, family, "{line}");
            if let Some(labels) = line.split_once('{').map(|(_, l)| l) {
                let labels = labels.split_once('}').unwrap().0;
                for pair in labels.split(',') {
                    let (k, v) = pair.split_once('=').unwrap();
                    assert!(valid_name(k, false), "{line}");
                    assert!(v.starts_with('"') && v.ends_with('"'), "{line}");
                }
            }
            line.rsplit(' ').next().unwrap().parse::<u64>().unwrap();
        }
    }

    #[test]
    fn the_log_follower_and_the_rotation_hold_are_exposed() {
        let m = DaemonMetrics::new("1");
        let follow = Arc::new(FollowStats::default());
        follow.events.fetch_add(7, Ordering::Relaxed);
        follow.invalid_lines.fetch_add(1, Ordering::Relaxed);
        follow.stalls.fetch_add(2, Ordering::Relaxed);
        m.set_export_log(follow, Arc::new(RotationHold::new(5)));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let text = rt.block_on(m.scrape());
        for line in [
            "enforcer_export_log_events_total 7",
            "enforcer_export_log_invalid_lines_total 1",
            "enforcer_export_log_stalls_total 2",
            "enforcer_export_log_lost_files_total 0",
            "enforcer_export_log_files_deleted_unread_total 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        }
    }

    #[test]
    fn requests_are_routed() {
        assert_eq!(route(b"GET /metrics HTTP/1.1\r\nHost: x"), Route::Metrics);
        assert_eq!(route(b"GET /metrics?x=1 HTTP/1.0"), Route::Metrics);
        assert_eq!(route(b"GET / HTTP/1.1"), Route::NotFound);
        assert_eq!(route(b"GET /metricsx HTTP/1.1"), Route::NotFound);
        assert_eq!(route(b"POST /metrics HTTP/1.1"), Route::MethodNotAllowed);
        assert_eq!(route(b"GET /metrics"), Route::BadRequest);
        assert_eq!(route(b"\xff\xfe"), Route::BadRequest);
        assert_eq!(route(b"GET /metrics SMTP/1.1"), Route::BadRequest);
    }

    #[test]
    fn addresses_parse_and_empty_turns_metrics_off() {
        assert_eq!(parse_address(""), Ok(MetricsAddress(None)));
        assert_eq!(
            parse_address(DEFAULT_ADDRESS).unwrap().0.unwrap().port(),
            9464
        );
        assert!(parse_address("[::1]:9464").unwrap().0.is_some());
        let err = parse_address("localhost:9464").unwrap_err();
        assert!(
            err.contains("localhost:9464") && err.contains("IP:PORT"),
            "{err}"
        );
    }

    #[test]
    fn binding_an_address_in_use_is_the_port_exit_code_naming_the_address() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let failure = bind(addr).unwrap_err();
        assert_eq!(failure.code, exit_code::PORT);
        let msg = format!("{:#}", failure.error);
        assert!(
            msg.contains(&addr.to_string())
                && msg.contains("in use")
                && msg.contains("--metrics-address"),
            "{msg}"
        );
    }

    #[test]
    fn the_server_answers_metrics_404_and_survives_a_bad_client() {
        use std::io::{Read, Write};
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(DaemonMetrics::new("0.0.0-test"));
        let server = rt
            .block_on(async { spawn_server(listener, Arc::clone(&metrics)) })
            .unwrap();
        let get = |request: &[u8]| {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(request).unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        };
        // A client that sends half a request and goes away, and one that sends too much.
        drop(std::net::TcpStream::connect(addr).unwrap());
        let big = get(&vec![b'a'; MAX_REQUEST_BYTES + 2048]);
        assert!(big.starts_with("HTTP/1.1 431 "), "{big}");
        let ok = get(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(
            ok.contains(&format!("Content-Type: {CONTENT_TYPE}\r\n")),
            "{ok}"
        );
        assert!(
            ok.contains("enforcer_build_info{version=\"0.0.0-test\"} 1"),
            "{ok}"
        );
        let (head, body) = ok.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{head}"
        );
        let nf = get(b"GET /other HTTP/1.1\r\n\r\n");
        assert!(nf.starts_with("HTTP/1.1 404 "), "{nf}");
        server.abort();
    }
}
