//! Writing: [`Store::insert_batch`] (one transaction per batch, idempotent by
//! event id) and [`Writer`], a thread that batches events for the daemon and
//! runs retention between batches.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use siem_export::{SecurityEvent, Timestamp};

use super::queue::{Empty, Queue, Submitted};
use super::retention::{Retention, RetentionReport};
use super::{priority, At, Store, StoreError, VerdictCounts};

/// `OR IGNORE`: a row whose id is stored already is skipped, as `ON CONFLICT
/// (id) DO NOTHING` would. The id is the only constraint a row of ours can
/// violate (every NOT NULL column is bound from a non-optional field with the
/// column's type), and with `OR IGNORE` SQLite knows that no row can abort
/// the statement, so it keeps no statement journal: with `DO NOTHING` every
/// page a multi-row statement changes was first copied there, which cost more
/// than multi-row statements save (measured: ~84k against ~104k events per
/// CPU-second, see docs/performance.md).
const INSERT_HEAD: &str =
    "INSERT OR IGNORE INTO events (id, time_ns, kernel_ns, verdict, priority, class, \
     operation, severity, policy, rule, pid, exec_id, container_id, cgroup_id, k8s_namespace, \
     event) VALUES ";

/// Columns bound per row.
const COLUMNS: usize = 16;

/// Rows per multi-row INSERT statement at most. One statement per chunk
/// rather than per row: SQLite's per-statement work (run, reset, and the
/// `sqlite_sequence` update of an AUTOINCREMENT table, done once at the end
/// of each statement) is paid once per 64 rows. 64 x 16 parameters stays
/// far below SQLite's variable limit.
const CHUNK: usize = 64;

/// The statement inserting `rows` rows. A batch is written in chunks of
/// [`CHUNK`] and a remainder split into powers of two, so at most seven
/// statements (64, 32, ..., 1 rows) exist and all stay in the connection's
/// statement cache.
fn insert_sql(rows: usize) -> String {
    let mut sql = String::with_capacity(INSERT_HEAD.len() + rows * 72);
    sql.push_str(INSERT_HEAD);
    for r in 0..rows {
        if r > 0 {
            sql.push(',');
        }
        sql.push('(');
        for c in 0..COLUMNS {
            if c > 0 {
                sql.push(',');
            }
            sql.push_str(&format!("?{}", r * COLUMNS + c + 1));
        }
        sql.push(')');
    }
    sql
}

/// The SQL of every statement size, built once.
fn statements() -> &'static [String; 7] {
    static SQL: std::sync::OnceLock<[String; 7]> = std::sync::OnceLock::new();
    SQL.get_or_init(|| std::array::from_fn(|i| insert_sql(CHUNK >> i)))
}

/// The largest statement size (a power of two up to [`CHUNK`]) not above
/// `left`, and its SQL.
fn statement_for(left: usize) -> (usize, &'static str) {
    let sql = statements();
    for (i, s) in sql.iter().enumerate() {
        let rows = CHUNK >> i;
        if rows <= left {
            return (rows, s);
        }
    }
    (1, &sql[6])
}

/// Binds one event's columns, starting at parameter `first` (1-based).
fn bind_row(
    stmt: &mut rusqlite::CachedStatement<'_>,
    first: usize,
    ev: &SecurityEvent,
    json: &str,
) -> rusqlite::Result<()> {
    let mut id = [0u8; 26];
    let process = ev.process.as_ref();
    let mut i = first;
    let mut bind = |v: &dyn rusqlite::ToSql| -> rusqlite::Result<()> {
        stmt.raw_bind_parameter(i, v)?;
        i += 1;
        Ok(())
    };
    bind(&ev.id.encode(&mut id))?;
    bind(&ev.time.unix_nanos())?;
    bind(&ev.kernel_ns.and_then(|k| i64::try_from(k).ok()))?;
    bind(&ev.verdict.as_str())?;
    bind(&priority(ev.verdict))?;
    bind(&ev.class.as_str())?;
    bind(&ev.operation)?;
    bind(&ev.severity.as_str())?;
    bind(&ev.policy)?;
    bind(&ev.rule)?;
    bind(&process.map(|p| p.tgid))?;
    bind(&process.and_then(|p| p.exec_id.as_deref()))?;
    bind(&ev.container.as_ref().map(|c| c.id.as_str()))?;
    bind(&ev.cgroup.as_ref().and_then(|c| i64::try_from(c.id).ok()))?;
    bind(&ev.kubernetes.as_ref().map(|k| k.namespace.as_str()))?;
    bind(&json)?;
    Ok(())
}

/// What one [`Store::insert_batch`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// New rows.
    pub inserted: usize,
    /// Events whose id was stored already (replays); nothing was written.
    pub duplicates: usize,
    /// Events that failed [`SecurityEvent::validate`] and were skipped.
    pub invalid: usize,
}

impl Store {
    /// Stores `events` in one transaction. An event whose id is stored
    /// already is skipped (counted in `duplicates`), so replaying a batch is
    /// harmless; an invalid event is skipped and counted too, so one bad
    /// event does not cost the rest of its batch. Either the whole batch is
    /// written or, on error, none of it.
    pub fn insert_batch(&mut self, events: &[SecurityEvent]) -> Result<BatchOutcome, StoreError> {
        let path = self.path.clone();
        let p = path.as_path();
        let mut out = BatchOutcome::default();
        let valid: Vec<&SecurityEvent> = events
            .iter()
            .filter(|ev| {
                let ok = ev.validate().is_ok();
                out.invalid += usize::from(!ok);
                ok
            })
            .collect();
        let mut json = Vec::with_capacity(1024);
        let tx = self.conn.transaction().at(p)?;
        let mut rest = valid.as_slice();
        while !rest.is_empty() {
            let (rows, sql) = statement_for(rest.len());
            let (chunk, tail) = rest.split_at(rows);
            rest = tail;
            let mut stmt = tx.prepare_cached(sql).at(p)?;
            for (r, ev) in chunk.iter().enumerate() {
                json.clear();
                serde_json::to_writer(&mut json, ev)
                    .map_err(|source| StoreError::Encode { id: ev.id, source })?;
                // serde_json writes UTF-8; the check is for the type system.
                let json_text = std::str::from_utf8(&json).unwrap_or_default();
                // Text is bound as a copy (SQLITE_TRANSIENT): the buffer
                // can be reused for the next row.
                bind_row(&mut stmt, r * COLUMNS + 1, ev, json_text).at(p)?;
            }
            let n = stmt.raw_execute().at(p)?;
            out.inserted += n;
            out.duplicates += rows.saturating_sub(n);
        }
        tx.commit().at(p)?;
        Ok(out)
    }
}

/// How a [`Writer`] batches and when it runs retention.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Events per transaction at most.
    pub max_batch: usize,
    /// How long an event may wait for its batch to fill.
    pub max_delay: Duration,
    /// Events queued for the writer thread at most; [`Writer::submit`]
    /// never blocks the caller: when the queue is full a deny or kill takes
    /// the place of the oldest queued allow/audit/alert event, and what
    /// cannot be queued is dropped. Every drop is counted by verdict.
    pub queue: usize,
    pub retention: Retention,
    /// How often retention runs (also once at start).
    pub retention_interval: Duration,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            max_batch: 1024,
            max_delay: Duration::from_millis(200),
            queue: 65_536,
            retention: Retention::default(),
            retention_interval: Duration::from_secs(60),
        }
    }
}

/// Counters of a [`Writer`] since it started, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriterStats {
    pub inserted: u64,
    pub duplicates: u64,
    pub invalid: u64,
    /// Lost to the full queue (refused, or evicted for a deny or kill):
    /// never stored. The sum of `dropped_by_verdict`.
    pub dropped: u64,
    /// `dropped` by the verdict of the event that was lost.
    pub dropped_by_verdict: VerdictCounts,
    /// In batches that failed to commit (after retries): never stored.
    pub failed: u64,
    pub batches: u64,
    /// Deleted by retention because they were older than `max_age`.
    pub deleted_by_age: VerdictCounts,
    /// Deleted by retention to get under `max_bytes`.
    pub deleted_by_size: VerdictCounts,
    pub retention_runs: u64,
    pub last_error: Option<String>,
}

/// The store's writing thread. Dropping it without [`Writer::shutdown`]
/// also flushes the queue, but then errors go unreported.
pub struct Writer {
    queue: Arc<Queue>,
    thread: Option<JoinHandle<Store>>,
    stats: Arc<Mutex<WriterStats>>,
    /// What retention keeps: [`WriterOptions::retention`] until [`Writer::set_retention`].
    retention: Arc<Mutex<Retention>>,
    path: PathBuf,
}

impl Writer {
    /// Starts the thread, which owns `store` until [`Writer::shutdown`].
    pub fn spawn(store: Store, options: WriterOptions) -> Result<Writer, StoreError> {
        let queue = Arc::new(Queue::new(options.queue.max(1)));
        let rx = Arc::clone(&queue);
        let stats = Arc::new(Mutex::new(WriterStats::default()));
        let thread_stats = Arc::clone(&stats);
        let retention = Arc::new(Mutex::new(options.retention));
        let thread_retention = Arc::clone(&retention);
        let path = store.path.clone();
        let thread = std::thread::Builder::new()
            .name("event-store".into())
            .spawn(move || write_loop(store, &rx, &options, &thread_retention, &thread_stats))
            .map_err(|source| StoreError::Io {
                path: path.clone(),
                source,
            })?;
        Ok(Writer {
            queue,
            thread: Some(thread),
            stats,
            retention,
            path,
        })
    }

    /// Queues one event; `false` when it was not queued (the queue is full
    /// of events at least as important, or the thread has stopped). A deny
    /// or kill arriving at a full queue evicts the oldest queued
    /// allow/audit/alert event instead. Every lost event is counted by its
    /// verdict. Never blocks.
    pub fn submit(&self, event: SecurityEvent) -> bool {
        let verdict = event.verdict;
        let (queued, lost) = match self.queue.push(event) {
            Submitted::Queued => (true, None),
            Submitted::Evicted(v) => (true, Some(v)),
            Submitted::Refused => (false, Some(verdict)),
        };
        if let Some(v) = lost {
            let mut s = lock(&self.stats);
            s.dropped += 1;
            s.dropped_by_verdict.add(v, 1);
        }
        queued
    }

    /// Events queued and not yet taken by the writing thread.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Changes what retention keeps, from its next run on (within
    /// [`WriterOptions::retention_interval`]).
    pub fn set_retention(&self, retention: Retention) {
        *lock(&self.retention) = retention;
    }

    /// What retention keeps now.
    pub fn retention(&self) -> Retention {
        *lock(&self.retention)
    }

    /// A copy of the counters.
    pub fn stats(&self) -> WriterStats {
        lock(&self.stats).clone()
    }

    /// Writes what is queued, stops the thread and hands the store back.
    pub fn shutdown(mut self) -> Result<(Store, WriterStats), StoreError> {
        self.queue.close();
        let store = match self.thread.take().map(JoinHandle::join) {
            Some(Ok(store)) => store,
            _ => {
                return Err(StoreError::Io {
                    path: self.path.clone(),
                    source: std::io::Error::other("the event store thread panicked"),
                })
            }
        };
        Ok((store, self.stats()))
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.queue.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write_loop(
    mut store: Store,
    rx: &Queue,
    options: &WriterOptions,
    retention: &Mutex<Retention>,
    stats: &Mutex<WriterStats>,
) -> Store {
    let max_batch = options.max_batch.max(1);
    let mut batch = Vec::with_capacity(max_batch);
    // Copied: the lock is not held while retention runs.
    let current = *lock(retention);
    run_retention(&mut store, &current, stats);
    let mut next_retention = Instant::now() + options.retention_interval;
    let mut open = true;
    while open {
        // Wait for the first event (or the next retention run), then give
        // the batch `max_delay` to fill.
        let wait = next_retention.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait.max(Duration::from_millis(1))) {
            Ok(ev) => batch.push(ev),
            Err(Empty::Timeout) => {}
            Err(Empty::Closed) => open = false,
        }
        let deadline = Instant::now() + options.max_delay;
        while open && !batch.is_empty() && batch.len() < max_batch {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match rx.recv_timeout(left) {
                Ok(ev) => batch.push(ev),
                Err(Empty::Timeout) => break,
                Err(Empty::Closed) => open = false,
            }
        }
        if !batch.is_empty() {
            write_batch(&mut store, &batch, stats);
            batch.clear();
        }
        if open && Instant::now() >= next_retention {
            // Copied: the lock is not held while retention runs.
            let current = *lock(retention);
            run_retention(&mut store, &current, stats);
            next_retention = Instant::now() + options.retention_interval;
        }
    }
    // Closed: whatever was still queued was drained above by recv_timeout
    // (it yields queued events before reporting the close).
    store
}

fn write_batch(store: &mut Store, batch: &[SecurityEvent], stats: &Mutex<WriterStats>) {
    let mut last = None;
    for attempt in 0..3u32 {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(100 * u64::from(attempt)));
        }
        match store.insert_batch(batch) {
            Ok(o) => {
                let mut s = lock(stats);
                s.inserted += o.inserted as u64;
                s.duplicates += o.duplicates as u64;
                s.invalid += o.invalid as u64;
                s.batches += 1;
                return;
            }
            Err(e) => last = Some(e),
        }
    }
    let msg = last.map_or_else(String::new, |e| e.to_string());
    tracing::error!(events = batch.len(), error = %msg, "could not store a batch of events");
    let mut s = lock(stats);
    s.failed += batch.len() as u64;
    s.last_error = Some(msg);
}

fn run_retention(store: &mut Store, retention: &Retention, stats: &Mutex<WriterStats>) {
    if retention.is_unlimited() {
        return;
    }
    match store.enforce_retention(retention, Timestamp::now()) {
        Ok(RetentionReport {
            deleted_by_age,
            deleted_by_size,
            ..
        }) => {
            let mut s = lock(stats);
            s.deleted_by_age.merge(&deleted_by_age);
            s.deleted_by_size.merge(&deleted_by_size);
            s.retention_runs += 1;
        }
        Err(e) => {
            tracing::error!(error = %e, "event store retention failed");
            lock(stats).last_error = Some(e.to_string());
        }
    }
}
