//! A local JSON-lines file with size-based rotation: `events.jsonl` is
//! written, and when the next record would push it past `max_bytes` it is
//! renamed to `events.jsonl.1` (the old `.1` to `.2`, and so on, dropping
//! the oldest beyond `keep`).
//!
//! Every rename is atomic, so a reader (or a log shipper tailing by name)
//! only ever sees complete files under each name, and a record is never
//! split across two files.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::Range;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::{BatchReport, Delivery, Sink, SinkError};
use crate::encode::{Encoder, Framing, NativeJson};
use crate::event::SecurityEvent;

/// When written data is forced to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// Leave it to the kernel's writeback. Fastest; a power loss can lose
    /// the last few seconds of events even though they were reported
    /// delivered.
    Never,
    /// Sync a file before rotating it out, and the directory after the
    /// renames, so rotated files are always complete on disk.
    #[default]
    OnRotate,
    /// Also `fdatasync` after every batch before reporting it delivered.
    /// Needed for the outbox's at-least-once guarantee to survive power
    /// loss.
    EveryBatch,
}

#[derive(Debug, Clone)]
pub struct FileSinkConfig {
    /// The active file, e.g. `/var/log/enforcer/events.jsonl`. Rotated files
    /// get `.1`, `.2`, ... appended. The directory must exist.
    pub path: PathBuf,
    /// Rotate before a record would make the active file larger than this.
    /// A single record larger than this still gets written, alone in its file.
    pub max_bytes: u64,
    /// Rotated files to keep; 0 discards the active file on rotation.
    pub keep: u32,
    pub fsync: FsyncPolicy,
    /// Permission bits for newly created files. Events name users, paths and
    /// command lines, so the default is owner-only.
    pub file_mode: u32,
    /// A reader of the files (the log follower) that rotation must not
    /// outrun; `None`: rotation keeps `keep` files, whatever reads them.
    pub hold: Option<Arc<RotationHold>>,
}

/// Keeps rotation from deleting a file a reader has not finished: the reader
/// names the oldest file it still needs (device and inode), and rotation keeps
/// that file and every newer one, up to `max_extra` files beyond `keep`. Past
/// that the disk limit wins: the oldest file goes anyway, and it is counted in
/// [`RotationHold::forced`] and logged.
#[derive(Debug)]
pub struct RotationHold {
    held: Mutex<Option<(u64, u64)>>,
    max_extra: u32,
    forced: AtomicU64,
}

impl RotationHold {
    pub fn new(max_extra: u32) -> Self {
        Self {
            held: Mutex::new(None),
            max_extra,
            forced: AtomicU64::new(0),
        }
    }

    /// The reader needs the file with this device and inode, and every newer one.
    pub fn hold(&self, dev: u64, ino: u64) {
        *self.held.lock().unwrap_or_else(PoisonError::into_inner) = Some((dev, ino));
    }

    pub fn held(&self) -> Option<(u64, u64)> {
        *self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Files beyond `keep` that rotation may keep for the reader.
    pub fn max_extra(&self) -> u32 {
        self.max_extra
    }

    /// Files rotation deleted although the reader had not finished them.
    pub fn forced(&self) -> u64 {
        self.forced.load(Ordering::Relaxed)
    }
}

impl FileSinkConfig {
    /// 100 MiB per file, 5 rotated files, sync on rotate, mode 0600.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            max_bytes: 100 * 1024 * 1024,
            keep: 5,
            fsync: FsyncPolicy::default(),
            file_mode: 0o600,
            hold: None,
        }
    }
}

pub struct FileSink {
    cfg: FileSinkConfig,
    name: String,
    encoder: Box<dyn Encoder>,
    /// `None` after an I/O error: the next send reopens by path, which also
    /// recovers from the file or directory having been replaced.
    file: Option<File>,
    /// Bytes in the active file, as far as we know (we are its only writer).
    size: u64,
    /// Reused across batches.
    buf: Vec<u8>,
}

impl FileSink {
    /// A sink writing native JSON lines.
    pub fn open(cfg: FileSinkConfig) -> Result<Self, SinkError> {
        Self::with_encoder(cfg, Box::new(NativeJson))
    }

    /// A sink writing `encoder`'s records, one per line.
    pub fn with_encoder(cfg: FileSinkConfig, encoder: Box<dyn Encoder>) -> Result<Self, SinkError> {
        if cfg.max_bytes == 0 {
            return Err(SinkError::Config(
                "file sink max_bytes must be positive".into(),
            ));
        }
        if cfg.path.file_name().is_none() {
            return Err(SinkError::Config(format!(
                "file sink path `{}` does not name a file",
                cfg.path.display()
            )));
        }
        if !Framing::Lines.accepts(encoder.record_kind()) {
            return Err(SinkError::Config(format!(
                "encoder `{}` cannot be written as lines",
                encoder.name()
            )));
        }
        let mut sink = Self {
            name: format!("file:{}", cfg.path.display()),
            cfg,
            encoder,
            file: None,
            size: 0,
            buf: Vec::new(),
        };
        sink.ensure_open()?;
        Ok(sink)
    }

    pub fn path(&self) -> &Path {
        &self.cfg.path
    }

    /// Path of the `n`th rotated file (`n >= 1`).
    pub fn rotated_path(&self, n: u32) -> PathBuf {
        rotated_path(&self.cfg.path, n)
    }

    /// Size of the active file as tracked by the sink.
    pub fn current_size(&self) -> u64 {
        self.size
    }

    fn ensure_open(&mut self) -> Result<&mut File, SinkError> {
        let file = match self.file.take() {
            Some(f) => f,
            None => {
                let (f, size) = open_active(&self.cfg)?;
                self.size = size;
                f
            }
        };
        Ok(self.file.insert(file))
    }

    /// Appends `bytes` (whole records) to the active file. On failure the
    /// file is cut back so no torn record stays behind, and closed.
    fn write_segment(&mut self, bytes: &[u8]) -> Result<(), SinkError> {
        let before = self.size;
        let file = self.ensure_open()?;
        match file.write_all(bytes) {
            Ok(()) => {
                self.size += bytes.len() as u64;
                Ok(())
            }
            Err(err) => {
                if let Err(trunc) = file.set_len(before) {
                    // The next open terminates the torn line instead.
                    tracing::warn!(path = %self.cfg.path.display(), error = %trunc,
                        "could not cut a partial write back");
                }
                self.file = None;
                Err(SinkError::io("write", &self.cfg.path, err))
            }
        }
    }

    fn sync_active(&mut self) -> Result<(), SinkError> {
        if let Some(f) = &self.file {
            if let Err(err) = f.sync_data() {
                self.file = None;
                return Err(SinkError::io("fsync", &self.cfg.path, err));
            }
        }
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), SinkError> {
        if self.cfg.fsync != FsyncPolicy::Never {
            self.sync_active()?;
        }
        self.file = None;
        let path = &self.cfg.path;
        let keep = self.cfg.keep;
        // After this rotation `.1` ..= `.upto` exist: `keep`, or more while the reader
        // still needs an older file.
        let mut upto = keep;
        let mut scan = keep;
        if let Some(hold) = &self.cfg.hold {
            scan = keep.saturating_add(hold.max_extra);
            if let Some(id) = hold.held() {
                // The held file's index after this rotation; when it is gone (deleted by an
                // earlier forced rotation) the reader is behind every file there is.
                let needed = file_index(path, id, scan).map_or(scan + 1, |n| n + 1);
                if needed > scan && rotated_path(path, scan).exists() {
                    hold.forced.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(path = %rotated_path(path, scan).display(), keep, extra = hold.max_extra,
                        "rotation deletes a log file its reader has not finished: the reader is too far behind");
                }
                upto = upto.max(needed.min(scan));
            }
        }
        // Oldest first: what would move past `.upto` goes; each rename then replaces
        // nothing.
        for n in (upto.max(1)..=scan).rev() {
            remove_if_exists(&rotated_path(path, n))?;
        }
        for n in (1..upto).rev() {
            rename_if_exists(&rotated_path(path, n), &rotated_path(path, n + 1))?;
        }
        if upto == 0 {
            remove_if_exists(path)?;
        } else {
            rename_if_exists(path, &rotated_path(path, 1))?;
        }
        if self.cfg.fsync != FsyncPolicy::Never {
            sync_dir(path)?;
        }
        self.ensure_open()?;
        Ok(())
    }

    /// Writes the encoded records in `ranges` (each including its newline),
    /// rotating between records as needed. Returns how many of them are
    /// delivered: on error, a prefix may be.
    fn write_records(&mut self, ranges: &[Range<usize>]) -> (usize, Option<SinkError>) {
        // Records are taken out of `buf` while `self` is borrowed mutably.
        let buf = std::mem::take(&mut self.buf);
        let mut delivered = 0;
        let mut written = 0;
        let mut segment: Option<Range<usize>> = None;
        let mut result = Ok(());
        for (i, r) in ranges.iter().enumerate() {
            let pending = segment.as_ref().map_or(0, |s| (s.end - s.start) as u64);
            let len = (r.end - r.start) as u64;
            let occupied = self.size + pending;
            if occupied > 0 && occupied + len > self.cfg.max_bytes {
                if let Some(s) = segment.take() {
                    result = self.write_segment(&buf[s]);
                    if result.is_err() {
                        break;
                    }
                    written = i;
                }
                result = self.rotate();
                if result.is_err() {
                    break;
                }
                // Rotation synced what was written, unless the policy is
                // Never, in which case written already counts as delivered.
                delivered = written;
            }
            segment = Some(match segment {
                Some(s) => s.start..r.end,
                None => r.clone(),
            });
        }
        if result.is_ok() {
            if let Some(s) = segment {
                result = self.write_segment(&buf[s]);
                if result.is_ok() {
                    written = ranges.len();
                }
            }
        }
        if result.is_ok() && self.cfg.fsync == FsyncPolicy::EveryBatch {
            result = self.sync_active();
        }
        if result.is_ok() || self.cfg.fsync != FsyncPolicy::EveryBatch {
            delivered = delivered.max(written);
        }
        self.buf = buf;
        (delivered, result.err())
    }
}

impl Sink for FileSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn send(&mut self, events: &[SecurityEvent]) -> BatchReport {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let encoded = self.encoder.encode_batch(events, Framing::Lines, &mut buf);
        self.buf = buf;

        let mut deliveries = Vec::with_capacity(events.len());
        // Ranges with their trailing newline, and which event each is.
        let mut ranges = Vec::with_capacity(events.len());
        let mut owners = Vec::with_capacity(events.len());
        for (i, res) in encoded.into_iter().enumerate() {
            match res {
                Ok(r) => {
                    ranges.push(r.start..r.end + 1);
                    owners.push(i);
                    deliveries.push(Delivery::Delivered);
                }
                Err(err) => deliveries.push(Delivery::permanent(err.to_string())),
            }
        }
        let (delivered, err) = self.write_records(&ranges);
        if let Some(err) = err {
            let reason = err.to_string();
            tracing::warn!(sink = %self.name, error = %reason, "file sink write failed");
            for &i in &owners[delivered..] {
                deliveries[i] = Delivery::retryable(reason.clone());
            }
        }
        BatchReport { deliveries }
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.sync_active()
    }
}

/// Path of the `n`th rotated file of `path` (`n >= 1`; 0 is `path` itself).
pub fn rotated_path(path: &Path, n: u32) -> PathBuf {
    if n == 0 {
        return path.to_path_buf();
    }
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// Which of `path` (0) and its rotated files `.1` ..= `.scan` is the file with this
/// device and inode, if any.
pub fn file_index(path: &Path, (dev, ino): (u64, u64), scan: u32) -> Option<u32> {
    (0..=scan).find(|&n| {
        fs::metadata(rotated_path(path, n)).is_ok_and(|m| m.dev() == dev && m.ino() == ino)
    })
}

/// Opens (creating if needed) the active file for appending, and returns
/// its size. If a crash left a torn last line, ends it so the next record
/// starts on a line of its own.
fn open_active(cfg: &FileSinkConfig) -> Result<(File, u64), SinkError> {
    let path = &cfg.path;
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(cfg.file_mode)
        .open(path)
        .map_err(|e| SinkError::io("open", path, e))?;
    let mut size = file
        .metadata()
        .map_err(|e| SinkError::io("stat", path, e))?
        .len();
    if size > 0 {
        let mut last = [0u8; 1];
        file.read_exact_at(&mut last, size - 1)
            .map_err(|e| SinkError::io("read", path, e))?;
        if last[0] != b'\n' {
            file.write_all(b"\n")
                .map_err(|e| SinkError::io("write", path, e))?;
            size += 1;
        }
    }
    Ok((file, size))
}

fn rename_if_exists(from: &Path, to: &Path) -> Result<(), SinkError> {
    match fs::rename(from, to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(SinkError::io("rename", from, e)),
        _ => Ok(()),
    }
}

fn remove_if_exists(path: &Path) -> Result<(), SinkError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(SinkError::io("remove", path, e)),
        _ => Ok(()),
    }
}

/// Makes the renames themselves durable.
fn sync_dir(path: &Path) -> Result<(), SinkError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| SinkError::io("fsync directory", dir, e))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::event::tests::{full_event, minimal_event};

    fn events(n: usize) -> Vec<SecurityEvent> {
        (0..n)
            .map(|i| {
                let mut ev = minimal_event();
                ev.message = format!("event {i}");
                ev
            })
            .collect()
    }

    fn line_len() -> u64 {
        serde_json::to_vec(&events(1)[0]).unwrap().len() as u64 + 1
    }

    fn read_events(path: &Path) -> Vec<SecurityEvent> {
        let text = fs::read(path).unwrap();
        text.split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| SecurityEvent::from_json(l).unwrap())
            .collect()
    }

    fn messages(path: &Path) -> Vec<String> {
        read_events(path).into_iter().map(|e| e.message).collect()
    }

    fn cfg(dir: &Path, max_bytes: u64, keep: u32) -> FileSinkConfig {
        FileSinkConfig {
            max_bytes,
            keep,
            ..FileSinkConfig::new(dir.join("events.jsonl"))
        }
    }

    #[test]
    fn writes_json_lines_and_appends_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path(), 1 << 20, 3);
        let mut sink = FileSink::open(c.clone()).unwrap();
        let evs = vec![full_event(), minimal_event()];
        let report = sink.send(&evs);
        assert!(report.all_delivered());
        assert_eq!(report.deliveries.len(), 2);
        sink.flush().unwrap();
        drop(sink);

        let mut sink = FileSink::open(c).unwrap();
        assert!(sink.send(&evs[..1]).all_delivered());
        assert_eq!(
            read_events(&dir.path().join("events.jsonl")),
            vec![evs[0].clone(), evs[1].clone(), evs[0].clone()]
        );
        assert_eq!(
            sink.current_size(),
            fs::metadata(sink.path()).unwrap().len()
        );
        assert_eq!(sink.name(), format!("file:{}", sink.path().display()));
    }

    #[test]
    fn rotates_by_size_and_keeps_n_files() {
        let dir = tempfile::tempdir().unwrap();
        let len = line_len();
        // Room for exactly two lines per file.
        let mut sink = FileSink::open(cfg(dir.path(), 2 * len + 1, 2)).unwrap();
        let evs = events(9);
        for chunk in evs.chunks(2) {
            assert!(sink.send(chunk).all_delivered());
        }
        // 9 events, 2 per file: e8 | e6 e7 (.1) | e4 e5 (.2); older dropped.
        assert_eq!(messages(sink.path()), ["event 8"]);
        assert_eq!(messages(&sink.rotated_path(1)), ["event 6", "event 7"]);
        assert_eq!(messages(&sink.rotated_path(2)), ["event 4", "event 5"]);
        assert!(!sink.rotated_path(3).exists());
        for p in [
            sink.path().to_owned(),
            sink.rotated_path(1),
            sink.rotated_path(2),
        ] {
            assert!(fs::metadata(&p).unwrap().len() <= 2 * len + 1);
        }
    }

    #[test]
    fn one_batch_may_span_several_files() {
        let dir = tempfile::tempdir().unwrap();
        let len = line_len();
        let mut sink = FileSink::open(cfg(dir.path(), 3 * len, 5)).unwrap();
        assert!(sink.send(&events(7)).all_delivered());
        assert_eq!(
            messages(&sink.rotated_path(2)),
            ["event 0", "event 1", "event 2"]
        );
        assert_eq!(
            messages(&sink.rotated_path(1)),
            ["event 3", "event 4", "event 5"]
        );
        assert_eq!(messages(sink.path()), ["event 6"]);
    }

    #[test]
    fn oversized_record_gets_a_file_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = FileSink::open(cfg(dir.path(), 10, 5)).unwrap();
        assert!(sink.send(&events(2)).all_delivered());
        assert_eq!(messages(&sink.rotated_path(1)), ["event 0"]);
        assert_eq!(messages(sink.path()), ["event 1"]);
    }

    #[test]
    fn keep_zero_discards_on_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = FileSink::open(cfg(dir.path(), line_len(), 0)).unwrap();
        assert!(sink.send(&events(3)).all_delivered());
        assert_eq!(messages(sink.path()), ["event 2"]);
        assert!(!sink.rotated_path(1).exists());
    }

    #[test]
    fn every_fsync_policy_writes_the_same_bytes() {
        let mut contents = Vec::new();
        for fsync in [
            FsyncPolicy::Never,
            FsyncPolicy::OnRotate,
            FsyncPolicy::EveryBatch,
        ] {
            let dir = tempfile::tempdir().unwrap();
            let mut c = cfg(dir.path(), 2 * line_len(), 3);
            c.fsync = fsync;
            let mut sink = FileSink::open(c).unwrap();
            assert!(sink.send(&events(5)).all_delivered(), "{fsync:?}");
            contents.push((
                fs::read(sink.path()).unwrap(),
                fs::read(sink.rotated_path(1)).unwrap(),
            ));
        }
        assert!(contents.windows(2).all(|w| w[0] == w[1]));
    }

    #[test]
    fn new_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FileSink::open(cfg(dir.path(), 1000, 1)).unwrap();
        let mode = fs::metadata(sink.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn torn_last_line_is_terminated_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        fs::write(&path, b"{\"torn\":").unwrap();
        let mut sink = FileSink::open(cfg(dir.path(), 1 << 20, 1)).unwrap();
        assert!(sink.send(&events(1)).all_delivered());
        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "{\"torn\":");
        assert!(SecurityEvent::from_json(lines[1].as_bytes()).is_ok());
    }

    #[test]
    fn open_failure_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-dir");
        let err = FileSink::open(cfg(&missing, 1000, 1)).err().unwrap();
        let msg = err.to_string();
        assert!(msg.starts_with("cannot open `"), "{msg}");
        assert!(
            msg.contains(&missing.join("events.jsonl").display().to_string()),
            "{msg}"
        );
    }

    #[test]
    fn bad_config_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            FileSink::open(cfg(dir.path(), 0, 1)),
            Err(SinkError::Config(_))
        ));
        assert!(matches!(
            FileSink::open(FileSinkConfig::new("/")),
            Err(SinkError::Config(_))
        ));
    }

    #[test]
    fn failed_rotation_reports_written_events_delivered_and_the_rest_retryable() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("spool");
        fs::create_dir(&sub).unwrap();
        let mut c = cfg(&sub, 2 * line_len(), 2);
        c.fsync = FsyncPolicy::Never;
        let mut sink = FileSink::open(c).unwrap();
        // The open file survives the directory's removal; rotation cannot.
        fs::remove_file(sink.path()).unwrap();
        fs::remove_dir(&sub).unwrap();
        let report = sink.send(&events(4));
        assert!(report.deliveries[0].is_delivered());
        assert!(report.deliveries[1].is_delivered());
        assert_eq!(report.retryable_indices().collect::<Vec<_>>(), [2, 3]);
        match &report.deliveries[2] {
            Delivery::Retryable { reason, .. } => {
                assert!(reason.contains(&sub.display().to_string()), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        // Once the directory is back, the sink reopens by itself.
        fs::create_dir(&sub).unwrap();
        assert!(sink.send(&events(1)).all_delivered());
        assert_eq!(messages(sink.path()), ["event 0"]);
    }

    #[test]
    fn write_failure_is_retryable_and_names_the_path() {
        // /dev/full accepts opens and fails every write with ENOSPC.
        let full = Path::new("/dev/full");
        if !full.exists() {
            return;
        }
        let mut sink = match FileSink::open(FileSinkConfig::new(full)) {
            Ok(s) => s,
            Err(_) => return, // not writable in this sandbox
        };
        let report = sink.send(&events(3));
        assert_eq!(report.delivered_count(), 0);
        for d in &report.deliveries {
            match d {
                Delivery::Retryable { reason, .. } => {
                    assert!(reason.contains("cannot write `/dev/full`"), "{reason}")
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn unencodable_events_are_permanent_and_do_not_block_others() {
        struct FailOdd;
        impl Encoder for FailOdd {
            fn name(&self) -> &'static str {
                "fail-odd"
            }
            fn record_kind(&self) -> crate::encode::RecordKind {
                crate::encode::RecordKind::JsonObject
            }
            fn encode(
                &self,
                ev: &SecurityEvent,
                out: &mut Vec<u8>,
            ) -> Result<(), crate::encode::EncodeError> {
                if ev
                    .message
                    .ends_with(|c: char| c.to_digit(10).is_some_and(|d| d % 2 == 1))
                {
                    return Err(crate::encode::EncodeError::Unrepresentable {
                        encoder: "fail-odd",
                        id: ev.id,
                        reason: "odd".into(),
                    });
                }
                NativeJson.encode(ev, out)
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let mut sink =
            FileSink::with_encoder(cfg(dir.path(), 1 << 20, 1), Box::new(FailOdd)).unwrap();
        let report = sink.send(&events(4));
        assert!(report.deliveries[0].is_delivered());
        assert!(
            matches!(&report.deliveries[1], Delivery::Permanent { reason } if reason.contains("odd"))
        );
        assert!(report.deliveries[2].is_delivered());
        assert_eq!(messages(sink.path()), ["event 0", "event 2"]);
    }

    #[test]
    fn empty_batch_is_a_no_op() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = FileSink::open(cfg(dir.path(), 1000, 1)).unwrap();
        assert_eq!(sink.send(&[]).deliveries, vec![]);
        assert_eq!(fs::metadata(sink.path()).unwrap().len(), 0);
    }
}
