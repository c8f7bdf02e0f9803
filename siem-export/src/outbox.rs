//! The durable outbox: every event waits here, in SQLite, until every sink
//! has delivered it (or dead-lettered it).
//!
//! * The database runs in WAL mode with `synchronous=FULL`: once
//!   [`Outbox::enqueue`] returns, the events survive a crash or power loss.
//! * `events` holds each event once (its id, priority and native JSON);
//!   `deliveries` holds one row per (event, sink) that is not delivered yet:
//!   `pending`, `in_flight` (leased by a worker, with a deadline) or `dead`
//!   (dead-lettered, with the reason). A delivered row is deleted on
//!   [`Outbox::ack`] and counted; an event with no rows left is deleted at
//!   once, so the database only holds work still to do and dead letters.
//! * [`Outbox::lease`] hands a worker the next due rows of its sink, deny and
//!   kill verdicts first, then by due time. Rows still in flight when the
//!   process dies are released when the outbox is opened again, so a restart
//!   (even after `kill -9`) resends them: delivery is at-least-once, and
//!   receivers de-duplicate on the event id.
//! * Disk use is bounded by [`OutboxConfig::max_bytes`]; see [`Outbox::enqueue`]
//!   for what happens when the outbox is full. Nothing is dropped silently:
//!   every refused or evicted event is counted in [`OutboxStats`] and logged.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use crate::encode::{Encoder, NativeJson};
use crate::event::{SecurityEvent, Verdict};
use crate::sink::NativeRecord;

/// Version of the outbox schema written by this build (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 2;

/// Page size of a new outbox file (an existing one keeps its own).
const PAGE_SIZE: i64 = 16_384;

/// Estimated bytes one delivery row and one event row cost besides the body
/// (keys, index entries, page slack). Used to decide whether an event fits.
const ROW_OVERHEAD: u64 = 96;

/// Rows deleted per step when making room.
const EVICT_CHUNK: i64 = 256;

const STATE_PENDING: i64 = 0;
const STATE_IN_FLIGHT: i64 = 1;
const STATE_DEAD: i64 = 3;

/// The pseudo sink id under which outbox-wide counters are kept.
const GLOBAL: i64 = 0;

/// Milliseconds since the Unix epoch, the outbox's clock.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxConfig {
    /// Upper bound on the database's used size (pages in use, excluding the
    /// free list). The WAL file comes on top (truncated to
    /// [`OutboxConfig::wal_limit_bytes`] after each checkpoint).
    pub max_bytes: u64,
    /// How long a leased row may stay in flight before another lease may
    /// take it back (a worker stuck in a send).
    pub lease_timeout: Duration,
    /// `PRAGMA journal_size_limit`.
    pub wal_limit_bytes: u64,
}

impl Default for OutboxConfig {
    /// 1 GiB, 5-minute leases, 64 MiB WAL.
    fn default() -> Self {
        Self {
            max_bytes: 1 << 30,
            lease_timeout: Duration::from_secs(300),
            wal_limit_bytes: 64 << 20,
        }
    }
}

/// Delivery priority: deny and kill verdicts are delivered first and are
/// the last to be given up when the disk is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// `audited`, `alerted`, `allowed`.
    Low = 0,
    /// `denied`, `killed`.
    High = 1,
}

impl Priority {
    pub fn of(ev: &SecurityEvent) -> Self {
        match ev.verdict {
            Verdict::Denied | Verdict::Killed => Priority::High,
            _ => Priority::Low,
        }
    }
}

/// The outbox's handle on one stored event (its row number). Keys are never
/// reused, so a worker can hold one across garbage collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryKey(pub i64);

/// One row handed out by [`Outbox::lease`].
#[derive(Debug, Clone)]
pub struct Leased {
    pub key: EntryKey,
    pub event: SecurityEvent,
    /// Delivery attempts to this sink including this one.
    pub attempts: u32,
    pub enqueued_at_ms: i64,
    pub priority: Priority,
}

/// One row handed out by [`Outbox::lease_native`]: the event as stored.
#[derive(Debug, Clone)]
pub struct LeasedNative {
    pub key: EntryKey,
    pub record: NativeRecord,
    /// Delivery attempts to this sink including this one.
    pub attempts: u32,
    pub enqueued_at_ms: i64,
    pub priority: Priority,
}

struct LeaseRow<T> {
    key: EntryKey,
    item: T,
    attempts: u32,
    enqueued_at_ms: i64,
    priority: Priority,
}

/// What [`Outbox::enqueue`] did with a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EnqueueReport {
    /// Stored, one delivery row per sink.
    pub accepted: usize,
    /// Already in the outbox (same id); not stored twice.
    pub duplicates: usize,
    /// Low-priority events refused because the outbox was full.
    pub dropped_low: usize,
    /// High-priority events refused because even eviction could not make
    /// room (the outbox is full of undelivered deny/kill events).
    pub dropped_high: usize,
    /// Dead-letter rows evicted to make room.
    pub evicted_dead: usize,
    /// Undelivered low-priority events evicted to make room (each lost for
    /// every sink that had not delivered it yet).
    pub evicted_pending: usize,
    /// Events that could not be encoded (never stored).
    pub unencodable: usize,
}

impl EnqueueReport {
    /// Events that will not reach some sink because of this call.
    pub fn lost(&self) -> usize {
        self.dropped_low + self.dropped_high + self.evicted_pending + self.unencodable
    }
}

/// Where a reader of an append-only log is: the file (device and inode, so that a renamed
/// file is still recognised) and the byte offset of the next line to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LogPosition {
    pub dev: u64,
    pub ino: u64,
    pub offset: u64,
}

/// An event read from a log, its native JSON (the line, as [`NativeJson`] wrote it; stored
/// as it is), and the offset its line starts at.
#[derive(Debug, Clone)]
pub struct LoggedEvent {
    pub event: SecurityEvent,
    pub json: Vec<u8>,
    pub offset: u64,
}

/// What [`Outbox::enqueue_from_log`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogEnqueue {
    pub report: EnqueueReport,
    /// The position saved with the events.
    pub position: LogPosition,
    /// The outbox is full of undelivered deny/kill events: the events from `position` on
    /// were not taken.
    pub stalled: bool,
}

/// Counts for one sink. `queued`, `in_flight` and `dead` are current row
/// counts; the others are cumulative since the outbox was created.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkStats {
    pub sink: String,
    pub queued: u64,
    pub in_flight: u64,
    pub dead: u64,
    pub delivered: u64,
    pub retried: u64,
    pub dead_lettered: u64,
    pub replayed: u64,
    /// Rows of this sink lost to disk-full eviction (pending or dead).
    pub evicted: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxStats {
    pub sinks: Vec<SinkStats>,
    /// Events stored (waiting for some sink, or dead-lettered).
    pub events: u64,
    pub used_bytes: u64,
    pub max_bytes: u64,
    /// Cumulative counts of the disk-full policy (see [`EnqueueReport`]).
    pub dropped_low: u64,
    pub dropped_high: u64,
    pub evicted_dead: u64,
    pub evicted_pending: u64,
}

/// One dead-lettered delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub key: EntryKey,
    pub id: String,
    pub sink: String,
    pub reason: String,
    pub attempts: u32,
    pub dead_at_ms: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("unknown sink `{0}` (not configured when the outbox was opened)")]
    UnknownSink(String),
    #[error("outbox schema version {found} is newer than this build's ({SCHEMA_VERSION}); refusing to touch it")]
    NewerSchema { found: i64 },
    #[error("invalid sink name `{0}`: must be non-empty")]
    BadSinkName(String),
}

/// The SQLite outbox. All methods take `&self` and serialize on one
/// connection; share it between workers with an `Arc`. Calls block (disk
/// I/O with fsync): from async code, use `spawn_blocking`.
#[derive(Debug)]
pub struct Outbox {
    conn: Mutex<Connection>,
    cfg: OutboxConfig,
    /// (name, id) of the configured sinks.
    sinks: Vec<(String, i64)>,
}

impl Outbox {
    /// Opens (creating if needed) the outbox at `path` for `sinks`.
    ///
    /// Rows left in flight by a previous process are released (they are
    /// sent again). Rows of sinks no longer configured are deleted, with a
    /// warning: their events would otherwise be kept for ever.
    pub fn open(path: &Path, sinks: &[&str], cfg: OutboxConfig) -> Result<Self, OutboxError> {
        let conn = Connection::open(path)?;
        Self::with_connection(conn, sinks, cfg)
    }

    fn with_connection(
        mut conn: Connection,
        sinks: &[&str],
        cfg: OutboxConfig,
    ) -> Result<Self, OutboxError> {
        conn.busy_timeout(Duration::from_secs(10))?;
        // Only takes effect on a new file (before WAL and the first table):
        // 16 KiB pages hold a whole batch's events in a quarter of the log
        // frames, and each frame is a write and a copy at checkpoint.
        conn.pragma_update(None, "page_size", PAGE_SIZE)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "journal_size_limit", cfg.wal_limit_bytes as i64)?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(OutboxError::NewerSchema { found: version });
        }
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if version < 1 {
            tx.execute_batch(SCHEMA_V1)?;
        }
        if version < 2 {
            tx.execute_batch(SCHEMA_V2)?;
        }
        if version < SCHEMA_VERSION {
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        }
        let mut ids = Vec::new();
        for name in sinks {
            if name.is_empty() {
                return Err(OutboxError::BadSinkName((*name).to_owned()));
            }
            tx.execute("INSERT OR IGNORE INTO sinks(name) VALUES (?1)", [name])?;
            let id: i64 =
                tx.query_row("SELECT id FROM sinks WHERE name = ?1", [name], |r| r.get(0))?;
            ids.push(((*name).to_owned(), id));
        }
        // Sinks that are no longer configured.
        let mut stale = Vec::new();
        {
            let mut st = tx.prepare("SELECT id, name FROM sinks")?;
            let rows = st.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
            for row in rows {
                let (id, name) = row?;
                if !ids.iter().any(|(_, i)| *i == id) {
                    stale.push((id, name));
                }
            }
        }
        for (id, name) in stale {
            let n = tx.execute("DELETE FROM deliveries WHERE sink = ?1", [id])?;
            if n > 0 {
                tracing::warn!(sink = %name, rows = n, "sink no longer configured: its undelivered and dead-lettered rows are dropped");
            }
        }
        tx.execute(
            "DELETE FROM events WHERE NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.seq = events.seq)",
            [],
        )?;
        let released = tx.execute(
            "UPDATE deliveries SET state = ?1, lease_until = NULL WHERE state = ?2",
            params![STATE_PENDING, STATE_IN_FLIGHT],
        )?;
        tx.commit()?;
        if released > 0 {
            tracing::info!(
                rows = released,
                "outbox: deliveries left in flight by the previous run are sent again"
            );
        }
        Ok(Self {
            conn: Mutex::new(conn),
            cfg,
            sinks: ids,
        })
    }

    pub fn config(&self) -> &OutboxConfig {
        &self.cfg
    }

    /// The configured sink names.
    pub fn sink_names(&self) -> impl Iterator<Item = &str> {
        self.sinks.iter().map(|(n, _)| n.as_str())
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half-done
        // transaction behind (rusqlite rolls back on drop).
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn sink_id(&self, sink: &str) -> Result<i64, OutboxError> {
        self.sinks
            .iter()
            .find(|(n, _)| n == sink)
            .map(|(_, id)| *id)
            .ok_or_else(|| OutboxError::UnknownSink(sink.to_owned()))
    }

    /// Stores `events` with one pending delivery per configured sink, in one
    /// durable transaction.
    ///
    /// When the outbox is full (used size plus the batch would exceed
    /// `max_bytes`), the disk-full policy applies, event by event:
    ///
    /// 1. a low-priority event (audit, alert, allow) is refused
    ///    (`dropped_low`);
    /// 2. for a high-priority event (deny, kill), room is made by deleting
    ///    the oldest dead letters (`evicted_dead`), then the oldest
    ///    undelivered low-priority events (`evicted_pending`);
    /// 3. if that is not enough either, the high-priority event is refused
    ///    (`dropped_high`).
    ///
    /// Every count is returned, added to the persistent counters and
    /// logged.
    pub fn enqueue(&self, events: &[SecurityEvent]) -> Result<EnqueueReport, OutboxError> {
        self.enqueue_at(events, now_ms())
    }

    /// [`Outbox::enqueue`] with an explicit clock.
    pub fn enqueue_at(
        &self,
        events: &[SecurityEvent],
        now: i64,
    ) -> Result<EnqueueReport, OutboxError> {
        // Encoded before the lock is taken: the workers' leases wait for it.
        let mut unencodable = 0;
        let bodies: Vec<Option<Vec<u8>>> = events
            .iter()
            .map(|ev| {
                let mut body = Vec::with_capacity(1024);
                match NativeJson.encode(ev, &mut body) {
                    Ok(()) => Some(body),
                    Err(err) => {
                        tracing::error!(%err, "event cannot be stored in the outbox; dropped");
                        unencodable += 1;
                        None
                    }
                }
            })
            .collect();
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let items = events
            .iter()
            .zip(&bodies)
            .filter_map(|(ev, b)| b.as_deref().map(|b| (ev, b)));
        let (mut report, _) = self.insert_events(&tx, items, now, false)?;
        report.unencodable = unencodable;
        tx.commit()?;
        drop(conn);
        self.log_full(&report);
        Ok(report)
    }

    /// The position saved for the log named `log` by [`Outbox::enqueue_from_log`] or
    /// [`Outbox::set_log_position`]; `None` if there is none yet.
    pub fn log_position(&self, log: &str) -> Result<Option<LogPosition>, OutboxError> {
        let conn = self.lock();
        Ok(conn
            .query_row(
                "SELECT dev, ino, offset FROM log_positions WHERE log = ?1",
                [log],
                |r| {
                    Ok(LogPosition {
                        dev: r.get::<_, i64>(0)? as u64,
                        ino: r.get::<_, i64>(1)? as u64,
                        offset: r.get::<_, i64>(2)? as u64,
                    })
                },
            )
            .optional()?)
    }

    /// Saves `pos` as the position of the log named `log`.
    pub fn set_log_position(&self, log: &str, pos: LogPosition) -> Result<(), OutboxError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        save_position(&tx, log, pos)?;
        tx.commit()?;
        Ok(())
    }

    /// Stores events read from a log (each with the offset its line starts at) and saves
    /// the log's new position in the same durable transaction: after a crash the log is read
    /// again from exactly after the last event stored, so nothing is lost or stored twice.
    ///
    /// The disk-full policy of [`Outbox::enqueue`] applies, except that a deny or kill for
    /// which no room can be made is not refused: the call stops before it (`stalled`), the
    /// position is saved at its line, and the caller tries again later (the log keeps the
    /// event meanwhile). `end` is the position after the last line read (lines that were
    /// not events included); it is saved when every event was taken.
    pub fn enqueue_from_log(
        &self,
        log: &str,
        events: &[LoggedEvent],
        end: LogPosition,
    ) -> Result<LogEnqueue, OutboxError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let items = events.iter().map(|e| (&e.event, e.json.as_slice()));
        let (report, taken) = self.insert_events(&tx, items, now_ms(), true)?;
        let (position, stalled) = match events.get(taken) {
            Some(first_left) => (
                LogPosition {
                    offset: first_left.offset,
                    ..end
                },
                true,
            ),
            None => (end, false),
        };
        save_position(&tx, log, position)?;
        tx.commit()?;
        drop(conn);
        self.log_full(&report);
        Ok(LogEnqueue {
            report,
            position,
            stalled,
        })
    }

    /// Inserts events (each with its native JSON) one by one under the disk-full policy.
    /// With `stall_on_high`, stops at the first deny/kill that does not fit instead of
    /// refusing it. Returns what was done and how many events were taken (all of them
    /// unless stalled).
    fn insert_events<'e>(
        &self,
        tx: &Transaction<'_>,
        events: impl Iterator<Item = (&'e SecurityEvent, &'e [u8])>,
        now: i64,
        stall_on_high: bool,
    ) -> Result<(EnqueueReport, usize), OutboxError> {
        let mut report = EnqueueReport::default();
        let mut taken = 0;
        let mut used = used_bytes(tx)?;
        {
            let mut ins_event = tx.prepare_cached(
                "INSERT OR IGNORE INTO events(id, priority, enqueued_at, body) VALUES (?1, ?2, ?3, ?4)",
            )?;
            let mut ins_delivery = tx.prepare_cached(
                "INSERT INTO deliveries(seq, sink, priority, state, attempts, next_attempt_at, updated_at)
                 VALUES (?1, ?2, ?3, 0, 0, ?4, ?4)",
            )?;
            let mut idbuf = [0u8; 26];
            for (ev, body) in events {
                let prio = Priority::of(ev);
                let need = body.len() as u64 + ROW_OVERHEAD * (1 + self.sinks.len() as u64);
                if used + need > self.cfg.max_bytes {
                    if prio == Priority::Low {
                        report.dropped_low += 1;
                        taken += 1;
                        continue;
                    }
                    let target = self.cfg.max_bytes.saturating_sub(need);
                    used = make_room(tx, target, used, &mut report)?;
                    if used + need > self.cfg.max_bytes {
                        if stall_on_high {
                            break;
                        }
                        report.dropped_high += 1;
                        taken += 1;
                        continue;
                    }
                }
                taken += 1;
                let id = ev.id.encode(&mut idbuf);
                let n = ins_event.execute(params![id, prio as i64, now, body])?;
                if n == 0 {
                    report.duplicates += 1;
                    continue;
                }
                let seq = tx.last_insert_rowid();
                for (_, sink) in &self.sinks {
                    ins_delivery.execute(params![seq, sink, prio as i64, now])?;
                }
                used += need;
                report.accepted += 1;
            }
        }
        let global = [
            ("dropped_low", report.dropped_low),
            ("dropped_high", report.dropped_high),
            ("evicted_dead", report.evicted_dead),
            ("evicted_pending", report.evicted_pending),
        ];
        for (name, n) in global {
            bump(tx, GLOBAL, name, n)?;
        }
        Ok((report, taken))
    }

    fn log_full(&self, report: &EnqueueReport) {
        if report.dropped_low + report.dropped_high + report.evicted_dead + report.evicted_pending
            > 0
        {
            tracing::error!(
                max_bytes = self.cfg.max_bytes,
                dropped_low = report.dropped_low,
                dropped_high = report.dropped_high,
                evicted_dead = report.evicted_dead,
                evicted_pending = report.evicted_pending,
                "outbox full: events refused or evicted (see the disk-full policy)"
            );
        }
    }

    /// Takes up to `max` due rows of `sink` (deny/kill first, then by due
    /// time), marks them in flight until `now + lease_timeout`, and counts
    /// an attempt. Rows whose lease expired are taken back first. A stored
    /// event that no longer decodes is dead-lettered here.
    pub fn lease(&self, sink: &str, max: usize, now: i64) -> Result<Vec<Leased>, OutboxError> {
        let rows = self.lease_with(sink, max, now, |body, _| {
            serde_json::from_slice::<SecurityEvent>(body).map_err(|e| e.to_string())
        })?;
        Ok(rows
            .into_iter()
            .map(|r| Leased {
                key: r.key,
                event: r.item,
                attempts: r.attempts,
                enqueued_at_ms: r.enqueued_at_ms,
                priority: r.priority,
            })
            .collect())
    }

    /// [`Outbox::lease`] without decoding: each event comes as its stored
    /// native JSON, for sinks that send it as it is
    /// ([`crate::sink::AsyncSink::send_native`]). The stored text is still
    /// checked to be one well-formed JSON object (a cheap syntax check, no
    /// allocation); one that is not is dead-lettered here, as `lease` does,
    /// so a damaged row can never corrupt a whole batch's payload.
    pub fn lease_native(
        &self,
        sink: &str,
        max: usize,
        now: i64,
    ) -> Result<Vec<LeasedNative>, OutboxError> {
        let rows = self.lease_with(sink, max, now, |body, id| {
            if body.first() != Some(&b'{') {
                return Err("not a JSON object".to_owned());
            }
            serde_json::from_slice::<serde::de::IgnoredAny>(body).map_err(|e| e.to_string())?;
            Ok(NativeRecord {
                id: id.to_owned(),
                json: body.to_vec(),
            })
        })?;
        Ok(rows
            .into_iter()
            .map(|r| LeasedNative {
                key: r.key,
                record: r.item,
                attempts: r.attempts,
                enqueued_at_ms: r.enqueued_at_ms,
                priority: r.priority,
            })
            .collect())
    }

    /// The lease transaction; `take` turns a stored body (and its event id)
    /// into what the caller hands out, or says why it is unreadable.
    fn lease_with<T>(
        &self,
        sink: &str,
        max: usize,
        now: i64,
        mut take: impl FnMut(&[u8], &str) -> Result<T, String>,
    ) -> Result<Vec<LeaseRow<T>>, OutboxError> {
        let sink_id = self.sink_id(sink)?;
        let lease_until = now.saturating_add(self.cfg.lease_timeout.as_millis() as i64);
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.prepare_cached(
            "UPDATE deliveries SET state = 0, lease_until = NULL
             WHERE sink = ?1 AND state = 1 AND lease_until < ?2",
        )?
        .execute(params![sink_id, now])?;
        let mut out = Vec::new();
        let mut broken = Vec::new();
        {
            let mut sel = tx.prepare_cached(
                "SELECT d.seq, d.attempts, e.enqueued_at, e.body, e.id FROM deliveries d
                 JOIN events e ON e.seq = d.seq
                 WHERE d.sink = ?1 AND d.state = 0 AND d.priority = ?2 AND d.next_attempt_at <= ?3
                 ORDER BY d.next_attempt_at, d.seq LIMIT ?4",
            )?;
            for prio in [Priority::High, Priority::Low] {
                let room = max.saturating_sub(out.len() + broken.len());
                if room == 0 {
                    break;
                }
                let mut rows = sel.query(params![sink_id, prio as i64, now, room as i64])?;
                while let Some(row) = rows.next()? {
                    let seq: i64 = row.get(0)?;
                    let attempts: i64 = row.get(1)?;
                    let enqueued_at: i64 = row.get(2)?;
                    let body = row.get_ref(3)?.as_bytes().map_err(|e| conversion(3, e))?;
                    let id = row.get_ref(4)?.as_str().map_err(|e| conversion(4, e))?;
                    match take(body, id) {
                        Ok(item) => out.push(LeaseRow {
                            key: EntryKey(seq),
                            item,
                            attempts: u32::try_from(attempts + 1).unwrap_or(u32::MAX),
                            enqueued_at_ms: enqueued_at,
                            priority: prio,
                        }),
                        Err(err) => {
                            broken.push((seq, format!("stored event {id} is unreadable: {err}")));
                        }
                    }
                }
                drop(rows);
            }
            // One statement for the whole batch rather than one per row.
            if !out.is_empty() {
                tx.prepare_cached(
                    "UPDATE deliveries SET state = 1, attempts = attempts + 1, lease_until = ?3, updated_at = ?4
                     WHERE sink = ?2 AND seq IN (SELECT value FROM json_each(?1))",
                )?
                .execute(params![
                    seq_list(out.iter().map(|r| r.key)),
                    sink_id,
                    lease_until,
                    now
                ])?;
            }
        }
        for (seq, reason) in &broken {
            tx.execute(
                "UPDATE deliveries SET state = 3, reason = ?3, updated_at = ?4 WHERE seq = ?1 AND sink = ?2",
                params![seq, sink_id, reason, now],
            )?;
            tracing::error!(sink, %reason, "dead-lettered");
        }
        bump(&tx, sink_id, "dead_lettered", broken.len())?;
        tx.commit()?;
        Ok(out)
    }

    /// When the next row of `sink` becomes due (`None`: nothing pending).
    pub fn next_due(&self, sink: &str) -> Result<Option<i64>, OutboxError> {
        let sink_id = self.sink_id(sink)?;
        let conn = self.lock();
        let mut best: Option<i64> = None;
        for prio in [1i64, 0] {
            let t: Option<i64> = conn
                .query_row(
                    "SELECT next_attempt_at FROM deliveries WHERE sink = ?1 AND state = 0 AND priority = ?2
                     ORDER BY next_attempt_at LIMIT 1",
                    params![sink_id, prio],
                    |r| r.get(0),
                )
                .optional()?;
            best = match (best, t) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        Ok(best)
    }

    /// Marks `keys` delivered to `sink`: their rows are deleted (and
    /// counted), and events no sink still needs are deleted.
    pub fn ack(&self, sink: &str, keys: &[EntryKey]) -> Result<usize, OutboxError> {
        let sink_id = self.sink_id(sink)?;
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Two statements for the whole batch, whatever its size.
        let list = seq_list(keys.iter().copied());
        let done = tx
            .prepare_cached(
                "DELETE FROM deliveries
                 WHERE sink = ?2 AND state != 3 AND seq IN (SELECT value FROM json_each(?1))",
            )?
            .execute(params![list, sink_id])?;
        tx.prepare_cached(
            "DELETE FROM events WHERE seq IN (SELECT value FROM json_each(?1))
             AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.seq = events.seq)",
        )?
        .execute([&list])?;
        bump(&tx, sink_id, "delivered", done)?;
        tx.commit()?;
        Ok(done)
    }

    /// Puts in-flight `keys` of `sink` back to pending, not to be leased
    /// before `not_before` (ms), remembering `reason`.
    pub fn retry(
        &self,
        sink: &str,
        keys: &[EntryKey],
        not_before: i64,
        reason: &str,
    ) -> Result<usize, OutboxError> {
        let sink_id = self.sink_id(sink)?;
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx
            .prepare_cached(
                "UPDATE deliveries SET state = 0, next_attempt_at = ?3, reason = ?4, lease_until = NULL, updated_at = ?5
                 WHERE sink = ?2 AND state = 1 AND seq IN (SELECT value FROM json_each(?1))",
            )?
            .execute(params![
                seq_list(keys.iter().copied()),
                sink_id,
                not_before,
                reason,
                now_ms()
            ])?;
        bump(&tx, sink_id, "retried", n)?;
        tx.commit()?;
        Ok(n)
    }

    /// Moves `keys` of `sink` to the dead-letter state with `reason`. They
    /// stay stored (and visible in [`Outbox::dead_letters`]) until replayed
    /// with [`Outbox::replay_dead`], discarded, or evicted by the disk-full
    /// policy.
    pub fn dead_letter(
        &self,
        sink: &str,
        keys: &[EntryKey],
        reason: &str,
    ) -> Result<usize, OutboxError> {
        let sink_id = self.sink_id(sink)?;
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx
            .prepare_cached(
                "UPDATE deliveries SET state = 3, reason = ?3, lease_until = NULL, updated_at = ?4
                 WHERE sink = ?2 AND state != 3 AND seq IN (SELECT value FROM json_each(?1))",
            )?
            .execute(params![
                seq_list(keys.iter().copied()),
                sink_id,
                reason,
                now_ms()
            ])?;
        bump(&tx, sink_id, "dead_lettered", n)?;
        tx.commit()?;
        Ok(n)
    }

    /// Makes dead letters pending again (attempts reset, due now), for one
    /// sink or all. Returns how many.
    pub fn replay_dead(&self, sink: Option<&str>) -> Result<usize, OutboxError> {
        let targets: Vec<i64> = match sink {
            Some(s) => vec![self.sink_id(s)?],
            None => self.sinks.iter().map(|(_, id)| *id).collect(),
        };
        let now = now_ms();
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut total = 0;
        for id in targets {
            let n = tx.execute(
                "UPDATE deliveries SET state = 0, attempts = 0, next_attempt_at = ?2, reason = NULL, updated_at = ?2
                 WHERE sink = ?1 AND state = 3",
                params![id, now],
            )?;
            bump(&tx, id, "replayed", n)?;
            total += n;
        }
        tx.commit()?;
        Ok(total)
    }

    /// Deletes dead letters for good (one sink or all). Returns how many.
    pub fn discard_dead(&self, sink: Option<&str>) -> Result<usize, OutboxError> {
        let targets: Vec<i64> = match sink {
            Some(s) => vec![self.sink_id(s)?],
            None => self.sinks.iter().map(|(_, id)| *id).collect(),
        };
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut total = 0;
        for id in targets {
            total += tx.execute("DELETE FROM deliveries WHERE sink = ?1 AND state = 3", [id])?;
        }
        gc_orphans(&tx)?;
        tx.commit()?;
        Ok(total)
    }

    /// Dead letters, oldest first, at most `limit`.
    pub fn dead_letters(
        &self,
        sink: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, OutboxError> {
        let filter = match sink {
            Some(s) => Some(self.sink_id(s)?),
            None => None,
        };
        let conn = self.lock();
        let mut st = conn.prepare(
            "SELECT d.seq, e.id, s.name, d.reason, d.attempts, d.updated_at
             FROM deliveries d JOIN events e ON e.seq = d.seq JOIN sinks s ON s.id = d.sink
             WHERE d.state = 3 AND (?1 IS NULL OR d.sink = ?1)
             ORDER BY d.seq LIMIT ?2",
        )?;
        let rows = st.query_map(params![filter, limit as i64], |r| {
            Ok(DeadLetter {
                key: EntryKey(r.get(0)?),
                id: r.get(1)?,
                sink: r.get(2)?,
                reason: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                attempts: u32::try_from(r.get::<_, i64>(4)?).unwrap_or(u32::MAX),
                dead_at_ms: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Deletes events that no sink needs any more. [`Outbox::ack`] already
    /// does this for the events it acknowledges; this catches the rest
    /// (e.g. after rows were dropped). Returns how many events went.
    pub fn collect_garbage(&self) -> Result<usize, OutboxError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = gc_orphans(&tx)?;
        tx.commit()?;
        Ok(n)
    }

    /// Row counts and counters, per sink and for the outbox. Counting rows
    /// reads the sink's index: cheap for thousands of rows, tens of
    /// milliseconds for millions. Call it at metrics-scrape rate, not per
    /// event.
    pub fn stats(&self) -> Result<OutboxStats, OutboxError> {
        let conn = self.lock();
        let mut out = OutboxStats {
            max_bytes: self.cfg.max_bytes,
            used_bytes: used_bytes(&conn)?,
            events: conn.query_row("SELECT COUNT(*) FROM events", [], |r| r.get::<_, i64>(0))?
                as u64,
            dropped_low: counter(&conn, GLOBAL, "dropped_low")?,
            dropped_high: counter(&conn, GLOBAL, "dropped_high")?,
            evicted_dead: counter(&conn, GLOBAL, "evicted_dead")?,
            evicted_pending: counter(&conn, GLOBAL, "evicted_pending")?,
            sinks: Vec::new(),
        };
        let mut st = conn.prepare_cached(
            "SELECT state, COUNT(*) FROM deliveries WHERE sink = ?1 GROUP BY state",
        )?;
        for (name, id) in &self.sinks {
            let mut s = SinkStats {
                sink: name.clone(),
                ..SinkStats::default()
            };
            let rows = st.query_map([id], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?;
            for row in rows {
                let (state, n) = row?;
                let n = n as u64;
                match state {
                    STATE_PENDING => s.queued = n,
                    STATE_IN_FLIGHT => s.in_flight = n,
                    STATE_DEAD => s.dead = n,
                    _ => {}
                }
            }
            s.delivered = counter(&conn, *id, "delivered")?;
            s.retried = counter(&conn, *id, "retried")?;
            s.dead_lettered = counter(&conn, *id, "dead_lettered")?;
            s.replayed = counter(&conn, *id, "replayed")?;
            s.evicted = counter(&conn, *id, "evicted")?;
            out.sinks.push(s);
        }
        Ok(out)
    }
}

const SCHEMA_V1: &str = "
CREATE TABLE sinks (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
-- One row per stored event. AUTOINCREMENT: keys are never reused.
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,            -- the event id receivers de-duplicate on
    priority INTEGER NOT NULL,          -- 1 deny/kill, 0 the rest
    enqueued_at INTEGER NOT NULL,       -- ms since the epoch
    body BLOB NOT NULL                  -- the native JSON event
);
-- One row per (event, sink) not delivered yet. Delivered rows are deleted
-- (and counted in `counters`).
CREATE TABLE deliveries (
    seq INTEGER NOT NULL,
    sink INTEGER NOT NULL,
    priority INTEGER NOT NULL,
    state INTEGER NOT NULL,             -- 0 pending, 1 in flight, 3 dead
    attempts INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,   -- ms; the enqueue time until a retry
    lease_until INTEGER,                -- ms; in flight only
    reason TEXT,                        -- last retry reason, or why dead
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (seq, sink)
) WITHOUT ROWID;
CREATE INDEX deliveries_queue ON deliveries (sink, state, priority, next_attempt_at, seq);
CREATE TABLE counters (
    sink INTEGER NOT NULL,              -- 0: outbox-wide
    name TEXT NOT NULL,
    value INTEGER NOT NULL,
    PRIMARY KEY (sink, name)
) WITHOUT ROWID;
";

/// Version 2: where the log follower is, saved with the events it enqueued.
const SCHEMA_V2: &str = "
CREATE TABLE log_positions (
    log TEXT PRIMARY KEY,               -- the log's name, e.g. events.jsonl
    dev INTEGER NOT NULL,               -- device and inode of the file being read
    ino INTEGER NOT NULL,
    offset INTEGER NOT NULL,            -- byte offset of the next line to read
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
";

fn save_position(tx: &Transaction<'_>, log: &str, pos: LogPosition) -> Result<(), rusqlite::Error> {
    tx.prepare_cached(
        "INSERT INTO log_positions(log, dev, ino, offset, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(log) DO UPDATE SET dev = excluded.dev, ino = excluded.ino,
         offset = excluded.offset, updated_at = excluded.updated_at",
    )?
    .execute(params![
        log,
        pos.dev as i64,
        pos.ino as i64,
        pos.offset as i64,
        now_ms()
    ])?;
    Ok(())
}

fn conversion(column: usize, e: rusqlite::types::FromSqlError) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Blob, Box::new(e))
}

/// Keys as a JSON array (`[1,2,3]`), for `seq IN (SELECT value FROM
/// json_each(?))`: one statement for a whole batch of rows.
fn seq_list(keys: impl Iterator<Item = EntryKey>) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(16 * keys.size_hint().0 + 2);
    s.push('[');
    for (i, k) in keys.enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{}", k.0);
    }
    s.push(']');
    s
}

/// Bytes of the database in use: all pages minus the free list.
fn used_bytes(conn: &Connection) -> Result<u64, rusqlite::Error> {
    let pages: i64 = conn.pragma_query_value(None, "page_count", |r| r.get(0))?;
    let free: i64 = conn.pragma_query_value(None, "freelist_count", |r| r.get(0))?;
    let size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
    Ok(((pages - free).max(0) * size) as u64)
}

fn bump(tx: &Transaction<'_>, sink: i64, name: &str, n: usize) -> Result<(), rusqlite::Error> {
    if n == 0 {
        return Ok(());
    }
    tx.prepare_cached(
        "INSERT INTO counters(sink, name, value) VALUES (?1, ?2, ?3)
         ON CONFLICT(sink, name) DO UPDATE SET value = value + excluded.value",
    )?
    .execute(params![sink, name, n as i64])?;
    Ok(())
}

fn counter(conn: &Connection, sink: i64, name: &str) -> Result<u64, rusqlite::Error> {
    let v: Option<i64> = conn
        .prepare_cached("SELECT value FROM counters WHERE sink = ?1 AND name = ?2")?
        .query_row(params![sink, name], |r| r.get(0))
        .optional()?;
    Ok(v.unwrap_or(0).max(0) as u64)
}

fn gc_orphans(tx: &Transaction<'_>) -> Result<usize, rusqlite::Error> {
    tx.execute(
        "DELETE FROM events WHERE NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.seq = events.seq)",
        [],
    )
}

/// Frees space until `used <= target`: oldest dead letters first, then the
/// oldest undelivered low-priority events. Returns the new used size.
fn make_room(
    tx: &Transaction<'_>,
    target: u64,
    mut used: u64,
    report: &mut EnqueueReport,
) -> Result<u64, rusqlite::Error> {
    // 1. Dead letters, oldest event first.
    while used > target {
        let rows: Vec<(i64, i64)> = {
            let mut st = tx.prepare_cached(
                "SELECT seq, sink FROM deliveries WHERE state = 3 ORDER BY seq LIMIT ?1",
            )?;
            let r = st.query_map([EVICT_CHUNK], |r| Ok((r.get(0)?, r.get(1)?)))?;
            r.collect::<Result<_, _>>()?
        };
        if rows.is_empty() {
            break;
        }
        for (seq, sink) in &rows {
            tx.execute(
                "DELETE FROM deliveries WHERE seq = ?1 AND sink = ?2",
                params![seq, sink],
            )?;
            tx.execute(
                "DELETE FROM events WHERE seq = ?1 AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.seq = ?1)",
                [seq],
            )?;
            bump(tx, *sink, "evicted", 1)?;
        }
        report.evicted_dead += rows.len();
        used = used_bytes(tx)?;
    }
    // 2. Undelivered low-priority events, oldest first.
    while used > target {
        let seqs: Vec<i64> = {
            let mut st = tx.prepare_cached(
                "SELECT seq FROM events WHERE priority = 0 ORDER BY seq LIMIT ?1",
            )?;
            let r = st.query_map([EVICT_CHUNK], |r| r.get(0))?;
            r.collect::<Result<_, _>>()?
        };
        if seqs.is_empty() {
            break;
        }
        for seq in &seqs {
            let sinks: Vec<i64> = {
                let mut st = tx.prepare_cached("SELECT sink FROM deliveries WHERE seq = ?1")?;
                let r = st.query_map([seq], |r| r.get(0))?;
                r.collect::<Result<_, _>>()?
            };
            for sink in &sinks {
                bump(tx, *sink, "evicted", 1)?;
            }
            tx.execute("DELETE FROM deliveries WHERE seq = ?1", [seq])?;
            tx.execute("DELETE FROM events WHERE seq = ?1", [seq])?;
        }
        report.evicted_pending += seqs.len();
        used = used_bytes(tx)?;
    }
    Ok(used)
}

#[cfg(test)]
mod tests;
