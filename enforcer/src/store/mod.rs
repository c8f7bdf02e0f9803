//! The local event store: every verdict as a [`SecurityEvent`] in one SQLite
//! file, `<state-dir>/events.db`, queryable by time, verdict, policy, rule,
//! container and process.
//!
//! - [`Store::open`] opens (creating and migrating) the store for writing:
//!   WAL journal, `synchronous=NORMAL`, `auto_vacuum=INCREMENTAL`.
//!   [`Store::open_read_only`] opens it for reading, never creating or
//!   changing anything (a store copied from another machine reads fine).
//! - [`Store::insert_batch`] writes a batch in one transaction; the same
//!   event id twice is a no-op, so replays are idempotent. [`Writer`] does
//!   the batching on its own thread for the daemon.
//! - [`Store::query`] and [`Tail`] read; WAL lets them run while another
//!   process writes.
//! - [`Store::enforce_retention`] deletes by age and size, keeping denied and
//!   killed events in preference to the others, and returns what it deleted.
//!
//! The schema, the retention policy and the CLI are documented in
//! `docs/event-store.md`.

mod query;
mod queue;
mod retention;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use siem_export::event::{DecodeError, Verdict};
use siem_export::{EventId, Timestamp};

pub use query::{Order, Query, StoredEvent, Tail};
pub use retention::{Retention, RetentionReport};
pub use schema::SCHEMA_VERSION;
pub use writer::{BatchOutcome, Writer, WriterOptions, WriterStats};

/// The store's file name inside the state directory.
pub const FILE_NAME: &str = "events.db";

/// `<state_dir>/events.db`.
pub fn path_in(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE_NAME)
}

/// How long a statement waits for another connection's write lock before
/// failing with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Per-connection settings of a writer. `synchronous = NORMAL`: in WAL mode
/// a power loss can lose the last transactions, never consistency (the
/// export outbox, which must not lose events, uses FULL). A page cache big
/// enough for the hot leaf pages of every index, so a batch does not spill
/// dirty pages to the log mid-transaction or re-read pages. The checkpoint
/// interval is set in bytes ([`WAL_CHECKPOINT_BYTES`]), whatever the
/// file's page size.
const WRITER_PRAGMAS: &str = "
    PRAGMA synchronous = NORMAL;
    PRAGMA cache_size = -65536;
    PRAGMA mmap_size = 2147418112;
    PRAGMA temp_store = MEMORY;
";

/// The log is checkpointed after this many bytes rather than SQLite's
/// default 4 MiB (1,000 pages of 4 KiB), so a page changed by consecutive
/// batches is copied back once rather than once per batch.
const WAL_CHECKPOINT_BYTES: u64 = 64 << 20;

/// Everything that can go wrong with the store. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no event store at `{}`", path.display())]
    Missing { path: PathBuf },
    #[error(
        "event store `{}` has schema version {found}, but this enforcer knows versions up to {supported}: \
         it was written by a newer enforcer; read it with that version",
        path.display()
    )]
    TooNew {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error(
        "event store `{}` has schema version {found}, older than this enforcer reads ({supported}); \
         open it once for writing (`enforcer run`, `enforcer events import`) to upgrade it",
        path.display()
    )]
    TooOld {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("`{}` is not an enforcer event store (SQLite application id {found:#010x})", path.display())]
    Foreign { path: PathBuf, found: i32 },
    #[error("event store `{}`: {source}", path.display())]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("event store `{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("event store `{}`: row {seq} does not hold a valid event: {source}", path.display())]
    CorruptRow {
        path: PathBuf,
        seq: i64,
        #[source]
        source: DecodeError,
    },
    #[error("event {id} cannot be encoded: {source}")]
    Encode {
        id: EventId,
        #[source]
        source: serde_json::Error,
    },
}

/// Attaches the store's path to SQLite errors.
trait At<T> {
    fn at(self, path: &Path) -> Result<T, StoreError>;
}

impl<T> At<T> for Result<T, rusqlite::Error> {
    fn at(self, path: &Path) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// Events per verdict (deletion counts, row counts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VerdictCounts {
    pub allowed: u64,
    pub denied: u64,
    pub audited: u64,
    pub killed: u64,
    pub alerted: u64,
}

impl VerdictCounts {
    pub fn get(&self, v: Verdict) -> u64 {
        match v {
            Verdict::Allowed => self.allowed,
            Verdict::Denied => self.denied,
            Verdict::Audited => self.audited,
            Verdict::Killed => self.killed,
            Verdict::Alerted => self.alerted,
        }
    }

    pub fn add(&mut self, v: Verdict, n: u64) {
        let slot = match v {
            Verdict::Allowed => &mut self.allowed,
            Verdict::Denied => &mut self.denied,
            Verdict::Audited => &mut self.audited,
            Verdict::Killed => &mut self.killed,
            Verdict::Alerted => &mut self.alerted,
        };
        *slot += n;
    }

    pub fn merge(&mut self, other: &VerdictCounts) {
        for &v in Verdict::ALL {
            self.add(v, other.get(v));
        }
    }

    pub fn total(&self) -> u64 {
        Verdict::ALL.iter().map(|&v| self.get(v)).sum()
    }

    /// `(verdict, count)` for every verdict, in [`Verdict::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (Verdict, u64)> + '_ {
        Verdict::ALL.iter().map(|&v| (v, self.get(v)))
    }
}

/// What `enforcer status` shows about the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    pub path: PathBuf,
    pub schema_version: u32,
    /// Stored events.
    pub events: u64,
    pub by_verdict: VerdictCounts,
    /// Size of the database file (what `Retention::max_bytes` limits).
    pub file_bytes: u64,
    /// Of which free pages not yet returned to the file system.
    pub free_bytes: u64,
    /// Size of the write-ahead log next to it (0 when there is none).
    pub wal_bytes: u64,
    pub oldest: Option<Timestamp>,
    pub newest: Option<Timestamp>,
}

/// An open event store.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    read_only: bool,
    snapshot: bool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("read_only", &self.read_only)
            .field("snapshot", &self.snapshot)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the store at `path` for writing, creating it (mode 0600) if it
    /// does not exist and applying any pending schema migrations. The
    /// directory must exist. Fails with [`StoreError::TooNew`] on a store
    /// written by a newer enforcer, rather than touching it.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        create_private(path)?;
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .at(path)?;
        conn.busy_timeout(BUSY_TIMEOUT).at(path)?;
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
            read_only: false,
            snapshot: false,
        };
        schema::migrate(&mut store.conn, path)?;
        // After the migration: `auto_vacuum` must be chosen before the
        // first table exists (migrate does that), WAL is per file and
        // sticky, `synchronous` per connection. NORMAL in WAL mode loses at
        // most the last transactions on power loss, never consistency.
        let mode: String = store
            .conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .at(path)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Sqlite {
                path: path.to_path_buf(),
                source: rusqlite::Error::InvalidParameterName(format!(
                    "journal_mode WAL refused (got `{mode}`)"
                )),
            });
        }
        store.conn.execute_batch(WRITER_PRAGMAS).at(path)?;
        let page_size = store.sizes()?.page_size.max(512);
        store
            .conn
            .execute_batch(&format!(
                "PRAGMA wal_autocheckpoint = {}",
                WAL_CHECKPOINT_BYTES / page_size
            ))
            .at(path)?;
        // A first read transaction creates the `-wal` and `-shm` files now,
        // so readers see a writer is present (see `open_read_only`).
        store
            .conn
            .query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
            .at(path)?;
        store.conn.set_prepared_statement_cache_capacity(32);
        Ok(store)
    }

    /// Opens an existing store for reading only. Never creates the file or
    /// changes it; works on a copy from another machine and while the daemon
    /// writes. A missing file is [`StoreError::Missing`].
    ///
    /// When the store has a write-ahead log next to it (a writer has it
    /// open), this is a live WAL reader, which SQLite gives a `-shm` file.
    /// Without one nobody is writing (a writer always has the log), and the
    /// file is opened as an immutable snapshot, so no file is created next
    /// to it: a copied store in a read-only directory reads fine.
    /// [`Store::is_snapshot`] tells which; [`Store::refresh`] switches a
    /// snapshot to a live reader once a writer appears.
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        match std::fs::metadata(path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::Missing {
                    path: path.to_path_buf(),
                })
            }
            Err(source) => {
                return Err(StoreError::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
        let snapshot = !wal_path(path).exists();
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let uri = format!(
            "file:{}?mode=ro{}",
            uri_path(path),
            if snapshot { "&immutable=1" } else { "" }
        );
        let conn = Connection::open_with_flags(uri, flags).at(path)?;
        conn.busy_timeout(BUSY_TIMEOUT).at(path)?;
        schema::check_readable(&conn, path)?;
        Ok(Store {
            conn,
            path: path.to_path_buf(),
            read_only: true,
            snapshot,
        })
    }

    /// Whether this is an immutable snapshot (see [`Store::open_read_only`]).
    pub fn is_snapshot(&self) -> bool {
        self.snapshot
    }

    /// For a snapshot reader: reopens as a live reader if a writer has
    /// opened the store since (its write-ahead log appeared). Returns
    /// whether it did.
    pub fn refresh(&mut self) -> Result<bool, StoreError> {
        if !self.snapshot || !wal_path(&self.path).exists() {
            return Ok(false);
        }
        *self = Store::open_read_only(&self.path)?;
        Ok(!self.snapshot)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Row count, per-verdict counts, sizes and the time span.
    pub fn stats(&self) -> Result<Stats, StoreError> {
        let p = &self.path;
        let mut by_verdict = VerdictCounts::default();
        let mut stmt = self
            .conn
            .prepare_cached("SELECT verdict, count(*) FROM events GROUP BY verdict")
            .at(p)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .at(p)?;
        for row in rows {
            let (verdict, n) = row.at(p)?;
            if let Ok(v) = verdict.parse::<Verdict>() {
                by_verdict.add(v, u64::try_from(n).unwrap_or(0));
            }
        }
        let (oldest, newest): (Option<i64>, Option<i64>) = self
            .conn
            .query_row("SELECT min(time_ns), max(time_ns) FROM events", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .at(p)?;
        let sizes = self.sizes()?;
        let wal_bytes = std::fs::metadata(wal_path(p)).map_or(0, |m| m.len());
        Ok(Stats {
            path: p.clone(),
            schema_version: schema::version(&self.conn, p)?,
            events: by_verdict.total(),
            by_verdict,
            file_bytes: sizes.file_bytes(),
            free_bytes: sizes.free_bytes(),
            wal_bytes,
            oldest: oldest.map(Timestamp::from_unix_nanos),
            newest: newest.map(Timestamp::from_unix_nanos),
        })
    }

    fn sizes(&self) -> Result<Sizes, StoreError> {
        let p = &self.path;
        let pragma = |name: &str| -> Result<u64, StoreError> {
            let v: i64 = self
                .conn
                .query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
                .at(p)?;
            Ok(u64::try_from(v).unwrap_or(0))
        };
        Ok(Sizes {
            page_size: pragma("page_size")?,
            pages: pragma("page_count")?,
            free_pages: pragma("freelist_count")?,
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct Sizes {
    page_size: u64,
    pages: u64,
    free_pages: u64,
}

impl Sizes {
    fn file_bytes(self) -> u64 {
        self.pages * self.page_size
    }
    fn free_bytes(self) -> u64 {
        self.free_pages * self.page_size
    }
    fn used_bytes(self) -> u64 {
        self.pages.saturating_sub(self.free_pages) * self.page_size
    }
}

fn wal_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_os_string();
    s.push("-wal");
    PathBuf::from(s)
}

/// `path` for a `file:` URI: everything but unreserved characters and `/`
/// percent-encoded (so `?`, `#` and `%` in directory names are safe).
fn uri_path(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::new();
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Creates the database file with mode 0600 if it does not exist, so events
/// (and the `-wal`/`-shm` files SQLite derives from its mode) are private.
fn create_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(StoreError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Deny and kill verdicts are kept in preference to the others when the
/// size limit forces deletions.
fn priority(v: Verdict) -> i64 {
    match v {
        Verdict::Denied | Verdict::Killed => 1,
        Verdict::Allowed | Verdict::Audited | Verdict::Alerted => 0,
    }
}

#[cfg(test)]
pub(crate) mod tests;
