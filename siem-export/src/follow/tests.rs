use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::Write;

use super::*;
use crate::event::tests::minimal_event;
use crate::event::{EventId, Timestamp, Verdict};
use crate::outbox::OutboxConfig;
use crate::sink::{FileSink, FileSinkConfig, FsyncPolicy, Sink};

fn ev(n: u64, verdict: Verdict) -> SecurityEvent {
    let mut e = minimal_event();
    e.id = EventId::from_time_and_tail(
        Timestamp::from_unix_nanos(1_700_000_000_000_000_000),
        u128::from(n) + 1,
    );
    e.verdict = verdict;
    e.message = format!("event {n}");
    e
}

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        Setup {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("events.jsonl")
    }

    /// The log as the enforcer writes it: native JSON lines, fsynced per batch.
    fn writer(&self, max_bytes: u64, keep: u32, hold: Option<Arc<RotationHold>>) -> FileSink {
        let mut cfg = FileSinkConfig::new(self.log_path());
        cfg.fsync = FsyncPolicy::EveryBatch;
        cfg.max_bytes = max_bytes;
        cfg.keep = keep;
        cfg.hold = hold;
        FileSink::open(cfg).unwrap()
    }

    fn outbox(&self, max_bytes: u64) -> Outbox {
        Outbox::open(
            &self.dir.path().join("outbox.db"),
            &["siem"],
            OutboxConfig {
                max_bytes,
                ..OutboxConfig::default()
            },
        )
        .unwrap()
    }

    fn follower(&self, outbox: &Outbox, scan: u32, hold: Option<Arc<RotationHold>>) -> LogFollower {
        let mut cfg = FollowConfig::new(self.log_path(), "events.jsonl", scan);
        cfg.hold = hold;
        LogFollower::open(outbox, cfg).unwrap()
    }
}

fn append(sink: &mut FileSink, range: std::ops::Range<u64>, verdict: Verdict) {
    let events: Vec<SecurityEvent> = range.map(|n| ev(n, verdict)).collect();
    assert!(sink.send(&events).all_delivered());
}

/// Steps until caught up; panics on a stall.
fn catch_up(f: &mut LogFollower, outbox: &Outbox) -> usize {
    let mut steps = 0;
    loop {
        steps += 1;
        assert!(steps < 10_000, "never caught up");
        match f.step(outbox).unwrap() {
            Step::Stored(_) => {}
            Step::CaughtUp => return steps,
            Step::Stalled(r) => panic!("stalled: {r:?}"),
        }
    }
}

/// Every event waiting in the outbox, in delivery order (delivered: acked).
fn deliver_all(outbox: &Outbox) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let leased = outbox.lease("siem", 1000, i64::MAX / 2).unwrap();
        if leased.is_empty() {
            return out;
        }
        let keys: Vec<_> = leased.iter().map(|l| l.key).collect();
        out.extend(leased.into_iter().map(|l| l.event.message));
        outbox.ack("siem", &keys).unwrap();
    }
}

fn messages(range: std::ops::Range<u64>) -> Vec<String> {
    range.map(|n| format!("event {n}")).collect()
}

#[test]
fn appended_events_are_exported_once() {
    let s = Setup::new();
    let mut log = s.writer(1 << 20, 3, None);
    let outbox = s.outbox(1 << 30);
    let mut f = s.follower(&outbox, 3, None);
    append(&mut log, 0..5, Verdict::Denied);
    catch_up(&mut f, &outbox);
    assert_eq!(deliver_all(&outbox), messages(0..5));
    append(&mut log, 5..8, Verdict::Audited);
    catch_up(&mut f, &outbox);
    catch_up(&mut f, &outbox);
    assert_eq!(deliver_all(&outbox), messages(5..8));
    assert_eq!(f.stats().events.load(Ordering::Relaxed), 8);
    assert_eq!(
        f.position().offset,
        std::fs::metadata(s.log_path()).unwrap().len()
    );
}

#[test]
fn a_first_start_begins_at_the_end_of_the_log() {
    let s = Setup::new();
    let mut log = s.writer(1 << 20, 3, None);
    append(&mut log, 0..3, Verdict::Denied);
    let outbox = s.outbox(1 << 30);
    let mut f = s.follower(&outbox, 3, None);
    append(&mut log, 3..4, Verdict::Denied);
    catch_up(&mut f, &outbox);
    assert_eq!(deliver_all(&outbox), messages(3..4));
}

#[test]
fn the_position_survives_a_restart_and_events_logged_meanwhile_are_exported() {
    let s = Setup::new();
    let mut log = s.writer(1 << 20, 3, None);
    {
        let outbox = s.outbox(1 << 30);
        let mut f = s.follower(&outbox, 3, None);
        append(&mut log, 0..4, Verdict::Denied);
        catch_up(&mut f, &outbox);
    }
    // Logged while nothing followed (the daemon down, or killed before the outbox commit).
    append(&mut log, 4..9, Verdict::Denied);
    let outbox = s.outbox(1 << 30);
    let mut f = s.follower(&outbox, 3, None);
    catch_up(&mut f, &outbox);
    assert_eq!(deliver_all(&outbox), messages(0..9));
    assert_eq!(outbox.stats().unwrap().sinks[0].delivered, 9);
}

#[test]
fn a_torn_last_line_waits_until_it_is_complete() {
    let s = Setup::new();
    let mut log = s.writer(1 << 20, 3, None);
    let outbox = s.outbox(1 << 30);
    let mut f = s.follower(&outbox, 3, None);
    append(&mut log, 0..2, Verdict::Denied);
    drop(log);
    let mut line = serde_json::to_vec(&ev(2, Verdict::Denied)).unwrap();
    line.push(b'\n');
    let (head, tail) = line.split_at(line.len() / 2);
    let mut file = OpenOptions::new().append(true).open(s.log_path()).unwrap();
    file.write_all(head).unwrap();
    catch_up(&mut f, &outbox);
    assert_eq!(deliver_all(&outbox), messages(0..2));
    catch_up(&mut f, &outbox);
    assert!(
        deliver_all(&outbox).is_empty(),
        "half a line is not exported"
    );
    file.write_all(tail).unwrap();
    catch_up(&mut f, &outbox);
    assert_eq!(deliver_all(&outbox), messages(2..3));
    assert_eq!(f.stats().invalid_lines.load(Ordering::Relaxed), 0);
}

#[test]
fn a_garbage_line_is_counted_and_skipped() {
    let s = Setup::new();
    let mut log = s.writer(1 << 20, 3, None);
    let outbox = s.outbox(1 << 30);
    let mut f = s.follower(&outbox, 3, None);
    append(&mut log, 0..2, Verdict::Denied);
    drop(log);
    // A line torn by a crash, terminated by the writer's next start.
    std::fs::OpenOptions::new()
        .append(true)
        .open(s.log_path())
        .unwrap()
        .write_all(b"{\"id\":\"01J")
        .unwrap();
    let mut log = s.writer(1 << 20, 3, None);
    append(&mut log, 2..4, Verdict::Denied);
    catch_up(&mut f, &outbox);
    assert_eq!(deliver_all(&outbox), messages(0..4));
    assert_eq!(f.stats().invalid_lines.load(Ordering::Relaxed), 1);
}

#[test]
fn rotation_in_the_middle_loses_nothing_and_sends_nothing_twice() {
    let s = Setup::new();
    let line = serde_json::to_vec(&ev(0, Verdict::Denied)).unwrap().len() as u64 + 1;
    // Three events per file, five rotated files kept.
    let mut log = s.writer(3 * line, 5, None);
    let outbox = s.outbox(1 << 30);
    let mut cfg = FollowConfig::new(s.log_path(), "events.jsonl", 5);
    cfg.max_batch_events = 2;
    let mut f = LogFollower::open(&outbox, cfg.clone()).unwrap();
    append(&mut log, 0..4, Verdict::Denied);
    // Two events read from the first file, then it is rotated twice.
    assert!(matches!(f.step(&outbox).unwrap(), Step::Stored(_)));
    append(&mut log, 4..10, Verdict::Denied);
    // A restart in the middle, too.
    assert!(matches!(f.step(&outbox).unwrap(), Step::Stored(_)));
    drop(f);
    let mut f = LogFollower::open(&outbox, cfg).unwrap();
    append(&mut log, 10..14, Verdict::Audited);
    catch_up(&mut f, &outbox);
    let got = deliver_all(&outbox);
    assert_eq!(got.len(), 14, "{got:?}");
    let unique: HashSet<&String> = got.iter().collect();
    assert_eq!(unique.len(), 14, "{got:?}");
    assert_eq!(got, messages(0..14), "deny first, and in log order");
    assert_eq!(outbox.stats().unwrap().sinks[0].delivered, 14);
    assert_eq!(f.stats().lost_files.load(Ordering::Relaxed), 0);
}

#[test]
fn a_full_outbox_stalls_the_follower_and_it_resumes_after_deliveries() {
    let s = Setup::new();
    let mut log = s.writer(1 << 20, 3, None);
    // Measure an empty outbox, then allow a little more than that.
    let base = {
        let dir = tempfile::tempdir().unwrap();
        let ob =
            Outbox::open(&dir.path().join("o.db"), &["siem"], OutboxConfig::default()).unwrap();
        ob.stats().unwrap().used_bytes
    };
    let outbox = s.outbox(base + 64 * 1024);
    let mut f = s.follower(&outbox, 3, None);
    append(&mut log, 0..2000, Verdict::Denied);
    let mut stored = 0;
    let stall = loop {
        match f.step(&outbox).unwrap() {
            Step::Stored(r) => stored += r.report.accepted,
            Step::Stalled(r) => break r,
            Step::CaughtUp => panic!("the outbox never filled"),
        }
    };
    stored += stall.report.accepted;
    assert!(stored > 0 && stored < 2000, "{stored}");
    assert_eq!(stall.report.dropped_high, 0, "a deny is never refused");
    // Still full: stalls again, and once the estimate meets the pages really used, without
    // taking anything or moving.
    let mut last = stall;
    for _ in 0..100 {
        let Step::Stalled(again) = f.step(&outbox).unwrap() else {
            panic!("not stalled");
        };
        stored += again.report.accepted;
        let done = again.report.accepted == 0;
        if done {
            assert_eq!(again.position, last.position);
        }
        last = again;
        if done {
            break;
        }
    }
    assert_eq!(last.report.accepted, 0, "never stalled for good");
    assert!(stored < 2000, "{stored}");
    assert!(f.stats().stalls.load(Ordering::Relaxed) >= 2);
    // Deliveries make room; every event arrives, once, in order.
    let mut got = deliver_all(&outbox);
    let mut rounds = 0;
    loop {
        rounds += 1;
        assert!(rounds < 1000);
        match f.step(&outbox).unwrap() {
            Step::CaughtUp => break,
            Step::Stored(_) | Step::Stalled(_) => got.extend(deliver_all(&outbox)),
        }
    }
    got.extend(deliver_all(&outbox));
    assert_eq!(got, messages(0..2000));
    assert_eq!(outbox.stats().unwrap().dropped_high, 0);
}

#[test]
fn rotation_keeps_a_file_the_follower_has_not_finished() {
    let s = Setup::new();
    let line = serde_json::to_vec(&ev(0, Verdict::Denied)).unwrap().len() as u64 + 1;
    // One event per file, one rotated file kept, up to two more for the follower.
    let hold = Arc::new(RotationHold::new(2));
    let mut log = s.writer(line, 1, Some(Arc::clone(&hold)));
    let outbox = s.outbox(1 << 30);
    let mut f = s.follower(&outbox, 3, Some(Arc::clone(&hold)));
    append(&mut log, 0..3, Verdict::Denied);
    // The follower is still at the start: four files, three beyond the active one.
    assert!(rotated_path(&s.log_path(), 2).exists());
    catch_up(&mut f, &outbox);
    assert_eq!(deliver_all(&outbox), messages(0..3));
    assert_eq!(hold.forced(), 0);
    // Caught up: the next rotation goes back to `keep` files.
    append(&mut log, 3..4, Verdict::Denied);
    assert!(rotated_path(&s.log_path(), 1).exists());
    assert!(!rotated_path(&s.log_path(), 2).exists());
    catch_up(&mut f, &outbox);
    assert_eq!(deliver_all(&outbox), messages(3..4));
    // Too far behind: past `keep + 2` files the oldest goes anyway, counted on both sides.
    append(&mut log, 4..10, Verdict::Denied);
    assert!(hold.forced() > 0);
    catch_up(&mut f, &outbox);
    assert_eq!(f.stats().lost_files.load(Ordering::Relaxed), 1);
    let got = deliver_all(&outbox);
    assert_eq!(got.last().map(String::as_str), Some("event 9"), "{got:?}");
    assert!(got.len() < 6, "{got:?}");
}

#[test]
fn a_log_shorter_than_the_position_is_read_from_its_start() {
    let s = Setup::new();
    let outbox = s.outbox(1 << 30);
    {
        let mut log = s.writer(1 << 20, 3, None);
        let mut f = s.follower(&outbox, 3, None);
        append(&mut log, 0..5, Verdict::Denied);
        catch_up(&mut f, &outbox);
    }
    assert_eq!(deliver_all(&outbox), messages(0..5));
    // Cut back (the same inode), then written again.
    OpenOptions::new()
        .write(true)
        .open(s.log_path())
        .unwrap()
        .set_len(0)
        .unwrap();
    let mut log = s.writer(1 << 20, 3, None);
    append(&mut log, 5..7, Verdict::Denied);
    let mut f = s.follower(&outbox, 3, None);
    catch_up(&mut f, &outbox);
    assert_eq!(deliver_all(&outbox), messages(5..7));
}
