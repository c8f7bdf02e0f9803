//! Retention by age and by size. The policy (also in docs/event-store.md):
//!
//! 1. **Age.** Every event older than `now - max_age` is deleted, whatever
//!    its verdict: `max_age` is a hard limit (data minimisation).
//! 2. **Size.** While the database file is larger than `max_bytes`, events
//!    are deleted down to 90% of it (so the limit is not hit again by the
//!    next batch): first the oldest `allowed`, `audited` and `alerted`
//!    events; only when none of those are left, the oldest `denied` and
//!    `killed` ones. Within each group the order is event time, oldest
//!    first.
//!
//! Deletions run in transactions of [`DELETE_BATCH`] rows, so a writer or
//! reader never waits long; then `PRAGMA incremental_vacuum` returns the
//! freed pages to the file system and the write-ahead log is truncated, so
//! the files really shrink. Every deleted event is counted per verdict.

use std::time::Duration;

use siem_export::event::Verdict;
use siem_export::Timestamp;

use super::{At, Store, StoreError, VerdictCounts};

/// Rows deleted per transaction.
pub const DELETE_BATCH: usize = 2_000;
/// Pages returned to the file system per `incremental_vacuum` step.
const VACUUM_STEP: u64 = 1_024;
/// Size passes at most per run (each deletes an estimate, then measures).
const SIZE_ROUNDS: usize = 16;

/// Selects the oldest `?2` events of `priority` (see [`super::priority`]),
/// oldest first: one arm per verdict of that priority, each reading at most
/// `?2` entries of the `(verdict, time_ns)` index, already in time order,
/// merged by sorting at most a few times `?2` rows, however big the store
/// is. So no `(priority, time_ns)` index is needed. (`?1` is not used.)
pub(super) fn oldest_of_priority(priority: i64) -> String {
    let arms: Vec<String> = Verdict::ALL
        .iter()
        .filter(|&&v| super::priority(v) == priority)
        .map(|v| {
            format!(
                "SELECT * FROM (SELECT seq, time_ns FROM events WHERE verdict = '{}' \
                 ORDER BY time_ns, seq LIMIT ?2)",
                v.as_str()
            )
        })
        .collect();
    format!(
        "SELECT seq FROM ({}) ORDER BY time_ns, seq LIMIT ?2",
        arms.join(" UNION ALL ")
    )
}

/// How much the store keeps. `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    pub max_age: Option<Duration>,
    pub max_bytes: Option<u64>,
}

impl Retention {
    pub fn is_unlimited(&self) -> bool {
        self.max_age.is_none() && self.max_bytes.is_none()
    }
}

/// What one [`Store::enforce_retention`] run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub deleted_by_age: VerdictCounts,
    pub deleted_by_size: VerdictCounts,
    /// Database file size before and after (page count x page size).
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// `max_bytes` could not be met: the store is smaller than one event,
    /// or freed space stays in partly used pages.
    pub over_size_limit: bool,
}

impl RetentionReport {
    pub fn deleted(&self) -> u64 {
        self.deleted_by_age.total() + self.deleted_by_size.total()
    }
}

impl Store {
    /// Applies `retention` as of `now` (see the module docs for the policy).
    pub fn enforce_retention(
        &mut self,
        retention: &Retention,
        now: Timestamp,
    ) -> Result<RetentionReport, StoreError> {
        let mut report = RetentionReport {
            bytes_before: self.sizes()?.file_bytes(),
            ..RetentionReport::default()
        };
        if let Some(age) = retention.max_age {
            let age_ns = i64::try_from(age.as_nanos()).unwrap_or(i64::MAX);
            let cutoff = now.unix_nanos().saturating_sub(age_ns);
            loop {
                let n = self.delete_batch(
                    "SELECT seq FROM events WHERE time_ns < ?1 ORDER BY time_ns LIMIT ?2",
                    cutoff,
                    DELETE_BATCH,
                    &mut report.deleted_by_age,
                )?;
                if n < DELETE_BATCH {
                    break;
                }
            }
            self.vacuum()?;
        }
        if let Some(max) = retention.max_bytes {
            let target = max / 10 * 9;
            for _ in 0..SIZE_ROUNDS {
                let sizes = self.sizes()?;
                if sizes.file_bytes() <= max {
                    break;
                }
                let rows: i64 = self
                    .conn
                    .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
                    .at(&self.path)?;
                let rows = u64::try_from(rows).unwrap_or(0);
                if rows == 0 {
                    break;
                }
                // Estimate how many rows free enough pages; the loop measures
                // again, so an underestimate costs a round, not correctness.
                let per_row = (sizes.used_bytes() / rows).max(1);
                let excess = sizes.file_bytes().saturating_sub(target);
                let want =
                    usize::try_from(excess.div_ceil(per_row).min(rows)).unwrap_or(usize::MAX);
                self.delete_by_priority(want.max(1), &mut report.deleted_by_size)?;
                self.vacuum()?;
            }
            report.over_size_limit = self.sizes()?.file_bytes() > max;
        }
        if report.deleted() > 0 {
            // Readers may hold the log; then it shrinks next time.
            self.conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .at(&self.path)?;
        }
        report.bytes_after = self.sizes()?.file_bytes();
        Ok(report)
    }

    /// Deletes `want` rows: oldest low-priority events first, then oldest
    /// denied/killed ones.
    fn delete_by_priority(
        &mut self,
        mut want: usize,
        counts: &mut VerdictCounts,
    ) -> Result<(), StoreError> {
        for prio in [0i64, 1] {
            let select = oldest_of_priority(prio);
            while want > 0 {
                let n = self.delete_batch(&select, prio, want.min(DELETE_BATCH), counts)?;
                want -= n.min(want);
                if n == 0 {
                    break;
                }
            }
        }
        Ok(())
    }

    /// One transaction: deletes the rows `select` (with `?1 = arg`,
    /// `?2 = limit`) picks, counting them by verdict.
    fn delete_batch(
        &mut self,
        select: &str,
        arg: i64,
        limit: usize,
        counts: &mut VerdictCounts,
    ) -> Result<usize, StoreError> {
        let p = &self.path;
        let sql = format!("DELETE FROM events WHERE seq IN ({select}) RETURNING verdict");
        let tx = self.conn.transaction().at(p)?;
        let mut n = 0;
        {
            let mut stmt = tx.prepare_cached(&sql).at(p)?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let mut rows = stmt.query(rusqlite::params![arg, limit]).at(p)?;
            while let Some(row) = rows.next().at(p)? {
                let verdict: String = row.get(0).at(p)?;
                // Rows are written from `Verdict::as_str`; an unknown word
                // would be a newer writer's verdict, counted as allowed.
                counts.add(verdict.parse().unwrap_or(Verdict::Allowed), 1);
                n += 1;
            }
        }
        tx.commit().at(p)?;
        Ok(n)
    }

    /// Returns free pages to the file system, a bounded step at a time.
    fn vacuum(&mut self) -> Result<(), StoreError> {
        loop {
            let free = self.sizes()?.free_pages;
            if free == 0 {
                return Ok(());
            }
            self.conn
                .execute_batch(&format!(
                    "PRAGMA incremental_vacuum({})",
                    free.min(VACUUM_STEP)
                ))
                .at(&self.path)?;
            if self.sizes()?.free_pages >= free {
                // Nothing moved (should not happen with auto_vacuum set).
                return Ok(());
            }
        }
    }
}
