//! The versioned schema: an ordered list of migration steps. The file's
//! `PRAGMA user_version` is the number of steps applied; each step runs in
//! its own transaction together with the version bump, so a crash leaves the
//! store at a whole version. Steps are append-only: never edit a released
//! one, add the next.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use super::{At, StoreError};

/// `PRAGMA application_id` of an event store ("ENFC"), so a reader can tell
/// our file from some other SQLite database.
pub const APPLICATION_ID: i32 = 0x454E_4643;

struct Migration {
    /// What the step does, for humans reading the code and the docs.
    #[allow(dead_code)]
    description: &'static str,
    sql: &'static str,
}

/// Version `n` is reached by applying `MIGRATIONS[n - 1]`.
const MIGRATIONS: &[Migration] = &[
    Migration {
    description: "events table with filter columns, the native JSON event, and indexes",
    sql: "
        CREATE TABLE events (
            seq           INTEGER PRIMARY KEY AUTOINCREMENT,
            id            TEXT    NOT NULL UNIQUE,
            time_ns       INTEGER NOT NULL,
            kernel_ns     INTEGER,
            verdict       TEXT    NOT NULL,
            priority      INTEGER NOT NULL,
            class         TEXT    NOT NULL,
            operation     TEXT    NOT NULL,
            severity      TEXT    NOT NULL,
            policy        TEXT,
            rule          TEXT,
            pid           INTEGER,
            exec_id       TEXT,
            container_id  TEXT,
            cgroup_id     INTEGER,
            k8s_namespace TEXT,
            event         TEXT    NOT NULL
        ) STRICT;
        CREATE INDEX events_time      ON events (time_ns);
        CREATE INDEX events_verdict   ON events (verdict, time_ns);
        CREATE INDEX events_retention ON events (priority, time_ns);
        CREATE INDEX events_policy    ON events (policy, time_ns)       WHERE policy IS NOT NULL;
        CREATE INDEX events_rule      ON events (rule, time_ns)         WHERE rule IS NOT NULL;
        CREATE INDEX events_container ON events (container_id, time_ns) WHERE container_id IS NOT NULL;
        CREATE INDEX events_pid       ON events (pid, time_ns)          WHERE pid IS NOT NULL;
    ",
    },
    Migration {
        description: "drop the (priority, time) index: size retention merges the per-verdict \
                      index instead, and every insert writes one index fewer",
        sql: "DROP INDEX IF EXISTS events_retention;",
    },
];

/// Page size of newly created stores.
pub const PAGE_SIZE: u32 = 16_384;

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

pub(super) fn version(conn: &Connection, path: &Path) -> Result<u32, StoreError> {
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .at(path)?;
    Ok(u32::try_from(v).unwrap_or(u32::MAX))
}

fn application_id(conn: &Connection, path: &Path) -> Result<i32, StoreError> {
    conn.query_row("PRAGMA application_id", [], |r| r.get(0))
        .at(path)
}

fn table_count(conn: &Connection, path: &Path) -> Result<i64, StoreError> {
    conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
        .at(path)
}

/// Refuses files that are not ours: another application id, or tables
/// without our id.
fn check_ours(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let app = application_id(conn, path)?;
    if app == APPLICATION_ID || (app == 0 && table_count(conn, path)? == 0) {
        return Ok(());
    }
    Err(StoreError::Foreign {
        path: path.to_path_buf(),
        found: app,
    })
}

/// Brings the store up to [`SCHEMA_VERSION`].
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    migrate_to(conn, path, SCHEMA_VERSION)
}

/// Brings the store up to version `target` (tests build old stores with it).
pub(super) fn migrate_to(
    conn: &mut Connection,
    path: &Path,
    target: u32,
) -> Result<(), StoreError> {
    check_ours(conn, path)?;
    let current = version(conn, path)?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found: current,
            supported: SCHEMA_VERSION,
        });
    }
    if current == 0 {
        // Only takes effect before the first table exists: this is what
        // makes `PRAGMA incremental_vacuum` able to shrink the file.
        // `page_size` too: a new store uses 16 KiB pages. A batch then
        // writes a quarter as many log frames (each a write system call and
        // a copy back at checkpoint) and the B-trees split less often. A
        // store created with another page size keeps it: changing it would
        // mean rewriting the whole file outside WAL mode.
        conn.execute_batch(&format!(
            "PRAGMA page_size = {PAGE_SIZE}; PRAGMA auto_vacuum = INCREMENTAL; \
             PRAGMA application_id = {APPLICATION_ID};"
        ))
        .at(path)?;
    }
    let steps = MIGRATIONS.iter().take(target as usize);
    for (i, step) in steps.enumerate().skip(current as usize) {
        let next = i as u32 + 1;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .at(path)?;
        // Another process may have migrated while we waited for the lock.
        if version(&tx, path)? >= next {
            continue;
        }
        tx.execute_batch(step.sql).at(path)?;
        tx.execute_batch(&format!("PRAGMA user_version = {next}"))
            .at(path)?;
        tx.commit().at(path)?;
    }
    Ok(())
}

/// A reader needs exactly the current schema: it cannot migrate.
pub(super) fn check_readable(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    check_ours(conn, path)?;
    let found = version(conn, path)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if found < SCHEMA_VERSION {
        return Err(StoreError::TooOld {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}

#[cfg(test)]
pub(super) fn step_count() -> usize {
    MIGRATIONS.len()
}
