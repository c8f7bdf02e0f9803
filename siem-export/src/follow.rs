//! The log follower: export driven from a JSON-lines event log (the
//! enforcer's fsynced `events.jsonl`, written by [`crate::FileSink`]).
//!
//! The follower reads complete lines after its position, and stores the
//! events in the outbox together with its new position, in one transaction
//! ([`Outbox::enqueue_from_log`]). Whatever instant the process dies at, the
//! next start reads on from exactly after the last event stored: an event
//! that reached the log reaches the outbox, once.
//!
//! * The position is the file's identity (device and inode) and a byte
//!   offset, so a rotated file is recognised under its new name. When the
//!   file being read has been rotated, the follower reads it to its end
//!   first, then goes on with the next newer file from offset 0.
//! * Only newline-terminated lines are read: a line being written (or torn
//!   by a crash) waits until it is complete. A line that is not an event
//!   (torn, then terminated by the writer's next start) is counted, logged
//!   with its file and offset, and skipped.
//! * Backpressure, not drops: when the outbox is full of undelivered deny
//!   and kill events, the follower stops ([`Step::Stalled`]) and the log
//!   keeps the events; the outbox's disk-full policy for the other verdicts
//!   applies and is counted as for any enqueue.
//! * A [`RotationHold`] shared with the writer keeps rotation from deleting
//!   a file the follower has not finished (up to the hold's limit, past
//!   which the loss is counted on both sides).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::event::SecurityEvent;
use crate::outbox::{LogEnqueue, LogPosition, LoggedEvent, Outbox, OutboxError};
use crate::sink::{file_index, rotated_path, RotationHold};

/// How many times locating a file is tried again when a rotation moved it
/// between two looks.
const LOCATE_TRIES: usize = 5;

#[derive(Debug, Clone)]
pub struct FollowConfig {
    /// The active log file; rotated files are `<path>.1`, `<path>.2`, ...
    pub path: PathBuf,
    /// The name the position is saved under in the outbox.
    pub name: String,
    /// Rotated files that may exist (`keep` plus the hold's extra files).
    pub scan: u32,
    /// Shared with the writer's rotation: the follower names the file it reads.
    pub hold: Option<Arc<RotationHold>>,
    /// Events (and bytes) stored per transaction at most.
    pub max_batch_events: usize,
    pub max_batch_bytes: usize,
}

impl FollowConfig {
    /// 1000 events or 4 MiB per transaction.
    pub fn new(path: impl Into<PathBuf>, name: impl Into<String>, scan: u32) -> Self {
        Self {
            path: path.into(),
            name: name.into(),
            scan,
            hold: None,
            max_batch_events: 1000,
            max_batch_bytes: 4 << 20,
        }
    }
}

/// Counters since start.
#[derive(Debug, Default)]
pub struct FollowStats {
    /// Events read from the log and handed to the outbox.
    pub events: AtomicU64,
    /// Lines that were not an event (skipped).
    pub invalid_lines: AtomicU64,
    /// Times the follower stopped because the outbox was full of deny/kill
    /// events.
    pub stalls: AtomicU64,
    /// Times the file being read was gone (rotated away before the follower
    /// finished it, see [`RotationHold`]): the follower went on with the
    /// oldest file left, and events in between are not exported.
    pub lost_files: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error("cannot {op} the event log `{path}`: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Outbox(#[from] OutboxError),
}

fn io_err<'p>(op: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> FollowError + 'p {
    move |source| FollowError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// What one [`LogFollower::step`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Stored a batch (what the outbox did with it); there may be more to read.
    Stored(LogEnqueue),
    /// Nothing new: the follower is at the end of the active file.
    CaughtUp,
    /// The outbox is full of undelivered deny/kill events; try again later.
    Stalled(LogEnqueue),
}

struct Current {
    file: File,
    /// Where the file is known to be (for logs).
    path: PathBuf,
    /// The file has been rotated: it gets no more lines.
    complete: bool,
}

pub struct LogFollower {
    cfg: FollowConfig,
    pos: LogPosition,
    current: Option<Current>,
    stats: Arc<FollowStats>,
    line: Vec<u8>,
}

fn identity(m: &std::fs::Metadata) -> (u64, u64) {
    (m.dev(), m.ino())
}

impl LogFollower {
    /// Starts at the position saved in `outbox`. Without one (the first start with this
    /// outbox), starts at the current end of the active file and saves that: events
    /// logged before export was configured are not sent.
    pub fn open(outbox: &Outbox, cfg: FollowConfig) -> Result<Self, FollowError> {
        let pos = match outbox.log_position(&cfg.name)? {
            Some(pos) => pos,
            None => {
                let m = std::fs::metadata(&cfg.path).map_err(io_err("stat", &cfg.path))?;
                let (dev, ino) = identity(&m);
                let pos = LogPosition {
                    dev,
                    ino,
                    offset: m.len(),
                };
                outbox.set_log_position(&cfg.name, pos)?;
                tracing::info!(log = %cfg.path.display(), offset = pos.offset,
                    "export starts at the end of the event log");
                pos
            }
        };
        if let Some(hold) = &cfg.hold {
            hold.hold(pos.dev, pos.ino);
        }
        Ok(Self {
            cfg,
            pos,
            current: None,
            stats: Arc::new(FollowStats::default()),
            line: Vec::new(),
        })
    }

    pub fn position(&self) -> LogPosition {
        self.pos
    }

    pub fn stats(&self) -> Arc<FollowStats> {
        Arc::clone(&self.stats)
    }

    /// Reads the next batch of complete lines and stores it in `outbox` with the new
    /// position. Blocking (file and database I/O).
    pub fn step(&mut self, outbox: &Outbox) -> Result<Step, FollowError> {
        loop {
            if self.current.is_none() {
                let was = self.pos;
                let cur = self.locate()?;
                self.current = Some(cur);
                self.moved(outbox, was)?;
            }
            let (events, end, torn) = self.read_batch()?;
            if end > self.pos.offset {
                let end = LogPosition {
                    offset: end,
                    ..self.pos
                };
                let done = outbox.enqueue_from_log(&self.cfg.name, &events, end)?;
                self.pos = done.position;
                let taken = if done.stalled {
                    events
                        .iter()
                        .take_while(|e| e.offset < done.position.offset)
                        .count()
                } else {
                    events.len()
                };
                self.stats.events.fetch_add(taken as u64, Ordering::Relaxed);
                if done.stalled {
                    self.stats.stalls.fetch_add(1, Ordering::Relaxed);
                    return Ok(Step::Stalled(done));
                }
                return Ok(Step::Stored(done));
            }
            // Nothing new in this file.
            let Some(cur) = self.current.as_mut() else {
                continue;
            };
            if !cur.complete {
                let active = std::fs::metadata(&self.cfg.path).ok().map(|m| identity(&m));
                if active == Some((self.pos.dev, self.pos.ino)) {
                    return Ok(Step::CaughtUp);
                }
                // Rotated: it gets no more lines. Read it once more to its end, since
                // lines may have been added between the last read and the rotation.
                cur.complete = true;
                continue;
            }
            if torn {
                self.stats.invalid_lines.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(file = %cur.path.display(), offset = self.pos.offset,
                    "the event log file ends with an incomplete line; skipped");
            }
            let was = self.pos;
            self.next_file()?;
            self.moved(outbox, was)?;
        }
    }

    /// After the follower went on to another file: saves the new position (so that a
    /// restart does not look for the finished file, which rotation may now delete), then
    /// lets rotation delete what is older than it.
    fn moved(&mut self, outbox: &Outbox, was: LogPosition) -> Result<(), FollowError> {
        if self.pos == was {
            return Ok(());
        }
        outbox.set_log_position(&self.cfg.name, self.pos)?;
        if let Some(hold) = &self.cfg.hold {
            hold.hold(self.pos.dev, self.pos.ino);
        }
        Ok(())
    }

    /// Complete lines from the position on: the events, the offset after the last line
    /// read, and whether an incomplete line follows.
    fn read_batch(&mut self) -> Result<(Vec<LoggedEvent>, u64, bool), FollowError> {
        let Some(cur) = self.current.as_mut() else {
            return Ok((Vec::new(), self.pos.offset, false));
        };
        let path = cur.path.clone();
        (&cur.file)
            .seek(SeekFrom::Start(self.pos.offset))
            .map_err(io_err("seek in", &path))?;
        let mut reader = BufReader::with_capacity(64 * 1024, &cur.file);
        let mut events = Vec::new();
        let mut offset = self.pos.offset;
        let mut bytes = 0usize;
        let mut torn = false;
        while events.len() < self.cfg.max_batch_events && bytes < self.cfg.max_batch_bytes {
            self.line.clear();
            let n = reader
                .read_until(b'\n', &mut self.line)
                .map_err(io_err("read", &path))?;
            if n == 0 {
                break;
            }
            if self.line.last() != Some(&b'\n') {
                // Being written, or torn: not read until it ends.
                torn = true;
                break;
            }
            let start = offset;
            offset += n as u64;
            bytes += n;
            let text = &self.line[..n - 1];
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match SecurityEvent::from_json(text) {
                Ok(event) => events.push(LoggedEvent {
                    event,
                    json: text.to_vec(),
                    offset: start,
                }),
                Err(e) => {
                    self.stats.invalid_lines.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(file = %path.display(), offset = start, error = %e,
                        "a line of the event log is not an event; skipped");
                }
            }
        }
        Ok((events, offset, torn))
    }

    /// Opens the file at the saved position, wherever rotation put it. When it is gone,
    /// counts the loss and goes on with the oldest file left, from its start.
    fn locate(&mut self) -> Result<Current, FollowError> {
        let want = (self.pos.dev, self.pos.ino);
        for _ in 0..LOCATE_TRIES {
            let Some(n) = file_index(&self.cfg.path, want, self.cfg.scan) else {
                break;
            };
            if let Some(cur) = self.open_checked(n, want)? {
                return Ok(cur);
            }
        }
        self.stats.lost_files.fetch_add(1, Ordering::Relaxed);
        tracing::error!(log = %self.cfg.path.display(), offset = self.pos.offset,
            "the event log file being exported is gone (rotated away before it was read to its \
             end): events in it are not exported; going on with the oldest file left");
        self.oldest()
    }

    /// Goes on with the file rotated after the current one.
    fn next_file(&mut self) -> Result<(), FollowError> {
        let was = (self.pos.dev, self.pos.ino);
        self.current = None;
        for _ in 0..LOCATE_TRIES {
            let Some(n) = file_index(&self.cfg.path, was, self.cfg.scan) else {
                // Deleted under the reader (rotation only does that to a held file when
                // the reader is too far behind): newer files may be gone too.
                self.stats.lost_files.fetch_add(1, Ordering::Relaxed);
                tracing::error!(log = %self.cfg.path.display(),
                    "rotation deleted the event log file being exported; newer files may be lost                      too: going on with the oldest file left");
                self.current = Some(self.oldest()?);
                return Ok(());
            };
            let Some(next) = n.checked_sub(1) else {
                // It is the active file again (cannot happen: it was rotated).
                return Ok(());
            };
            let path = rotated_path(&self.cfg.path, next);
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("open", &path)(e)),
            };
            // The names moved if a rotation ran meanwhile: look again.
            if file_index(&self.cfg.path, was, self.cfg.scan) != Some(n) {
                continue;
            }
            self.current = Some(self.start_at(file, path)?);
            return Ok(());
        }
        Ok(())
    }

    /// The oldest file there is, from its start.
    fn oldest(&mut self) -> Result<Current, FollowError> {
        for n in (0..=self.cfg.scan).rev() {
            let path = rotated_path(&self.cfg.path, n);
            match File::open(&path) {
                Ok(file) => return self.start_at(file, path),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("open", &path)(e)),
            }
        }
        Err(io_err("open", &self.cfg.path)(io::Error::from(
            io::ErrorKind::NotFound,
        )))
    }

    /// Opens file `n` if it still is the file `want`.
    fn open_checked(&mut self, n: u32, want: (u64, u64)) -> Result<Option<Current>, FollowError> {
        let path = rotated_path(&self.cfg.path, n);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("open", &path)(e)),
        };
        let m = file.metadata().map_err(io_err("stat", &path))?;
        if identity(&m) != want {
            return Ok(None);
        }
        if m.len() < self.pos.offset {
            // Shorter than where the follower was: not the file it read (replaced, and the
            // inode number reused), or cut back. Reading it again from the start may send
            // events twice; skipping it could lose them.
            tracing::warn!(file = %path.display(), offset = self.pos.offset, len = m.len(),
                "the event log file is shorter than the export position: reading it from the start");
            self.pos.offset = 0;
        }
        Ok(Some(Current {
            file,
            path,
            complete: false,
        }))
    }

    /// `file`, from its start.
    fn start_at(&mut self, file: File, path: PathBuf) -> Result<Current, FollowError> {
        let m = file.metadata().map_err(io_err("stat", &path))?;
        let (dev, ino) = identity(&m);
        self.pos = LogPosition {
            dev,
            ino,
            offset: 0,
        };
        Ok(Current {
            file,
            path,
            complete: false,
        })
    }
}

#[cfg(test)]
mod tests;
