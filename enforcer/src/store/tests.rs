#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failure

use std::path::{Path, PathBuf};
use std::time::Duration;

use siem_export::event::{
    ByteText, Cgroup, Container, EventClass, FileTarget, Kubernetes, Process, Target, Verdict,
};
use siem_export::{EventId, SecurityEvent, Severity, Timestamp};

use super::*;

const T0: i64 = 1_750_000_000_000_000_000;
const SEC: i64 = 1_000_000_000;

/// Event number `i` at `T0 + i s`, with a deterministic id.
pub(crate) fn event(i: u32, verdict: Verdict) -> SecurityEvent {
    let time = Timestamp::from_unix_nanos(T0 + i64::from(i) * SEC);
    let mut ev = SecurityEvent::new(
        time,
        "node-a",
        verdict,
        EventClass::File,
        "open",
        Severity::High,
    );
    ev.id = EventId::from_time_and_tail(time, u128::from(i) + 1);
    ev.kernel_ns = Some(1_000 + u64::from(i));
    ev.policy = Some(
        if i.is_multiple_of(2) {
            "baseline"
        } else {
            "web"
        }
        .into(),
    );
    ev.rule = Some(format!("rule-{}", i % 3));
    ev.message = format!("event {i}");
    ev.process = Some(Process {
        pid: 5000 + i,
        tgid: 100 + i % 4,
        ppid: Some(1),
        uid: 0,
        gid: 0,
        user: None,
        comm: ByteText::new(b"cat".to_vec()),
        exe: None,
        argv: Vec::new(),
        argv_truncated: false,
        cwd: None,
        exec_id: Some(format!("exec-{i}")),
        start_time: None,
        ancestors: Vec::new(),
    });
    ev.cgroup = Some(Cgroup { id: 77, path: None });
    if !i.is_multiple_of(5) {
        ev.container = Some(Container {
            id: format!("c{}0ffee{i:04}", i % 2),
            runtime: Some("containerd".into()),
        });
        ev.kubernetes = Some(Kubernetes {
            namespace: "shop".into(),
            pod_name: "web-1".into(),
            pod_uid: None,
            qos: None,
        });
    }
    ev.target = Some(Target::File(FileTarget {
        path: ByteText::new(format!("/etc/file-{i}").into_bytes()),
        flags: Some(0),
        mode: None,
        operation: Some("read".into()),
        path_truncated: false,
        second_path: None,
    }));
    ev
}

fn verdict_of(i: u32) -> Verdict {
    Verdict::ALL[i as usize % Verdict::ALL.len()]
}

fn events(n: u32) -> Vec<SecurityEvent> {
    (0..n).map(|i| event(i, verdict_of(i))).collect()
}

fn new_store(dir: &Path) -> (Store, PathBuf) {
    let path = path_in(dir);
    (Store::open(&path).unwrap(), path)
}

fn ids(found: &[StoredEvent]) -> Vec<u32> {
    found
        .iter()
        .map(|s| s.event.message["event ".len()..].parse().unwrap())
        .collect()
}

fn pragma(store: &Store, name: &str) -> String {
    store
        .conn
        .query_row(&format!("PRAGMA {name}"), [], |r| {
            r.get::<_, rusqlite::types::Value>(0)
        })
        .map(|v| format!("{v:?}"))
        .unwrap()
}

#[test]
fn migrates_an_empty_file_and_sets_the_pragmas() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = new_store(dir.path());
    assert_eq!(schema::step_count() as u32, SCHEMA_VERSION);
    assert_eq!(store.stats().unwrap().schema_version, SCHEMA_VERSION);
    assert_eq!(pragma(&store, "journal_mode"), "Text(\"wal\")");
    assert_eq!(pragma(&store, "auto_vacuum"), "Integer(2)"); // incremental
    assert_eq!(pragma(&store, "synchronous"), "Integer(1)"); // normal
    assert_eq!(
        pragma(&store, "page_size"),
        format!("Integer({})", schema::PAGE_SIZE)
    );
    // 64 MiB of log between checkpoints, in pages of this file.
    assert_eq!(pragma(&store, "wal_autocheckpoint"), "Integer(4096)");
    assert_eq!(
        pragma(&store, "application_id"),
        format!("Integer({})", schema::APPLICATION_ID)
    );
    drop(store);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // Opening again is a no-op migration, and readers accept the file.
    let mut store = Store::open(&path).unwrap();
    store.insert_batch(&events(3)).unwrap();
    drop(store);
    let reader = Store::open_read_only(&path).unwrap();
    assert_eq!(reader.stats().unwrap().events, 3);
}

#[test]
fn refuses_newer_schemas_and_foreign_files() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = new_store(dir.path());
    store
        .conn
        .execute_batch(&format!("PRAGMA user_version = {}", SCHEMA_VERSION + 1))
        .unwrap();
    drop(store);
    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::TooNew { found, .. } if found == SCHEMA_VERSION + 1));
    assert!(err.to_string().contains("newer enforcer"), "{err}");
    let err = Store::open_read_only(&path).unwrap_err();
    assert!(matches!(err, StoreError::TooNew { .. }), "{err}");

    let other = dir.path().join("other.db");
    let conn = rusqlite::Connection::open(&other).unwrap();
    conn.execute_batch("CREATE TABLE t (x)").unwrap();
    drop(conn);
    assert!(matches!(
        Store::open(&other).unwrap_err(),
        StoreError::Foreign { .. }
    ));
    assert!(matches!(
        Store::open_read_only(&other).unwrap_err(),
        StoreError::Foreign { .. }
    ));
}

#[test]
fn read_only_open_of_a_missing_store_names_the_path_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = path_in(dir.path());
    let err = Store::open_read_only(&path).unwrap_err();
    assert!(err.to_string().contains(&path.display().to_string()));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn read_only_open_of_a_closed_store_creates_no_files() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, path) = new_store(dir.path());
    store.insert_batch(&events(10)).unwrap();
    drop(store);
    let before: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(before.len(), 1, "only events.db after a clean close");
    let mut reader = Store::open_read_only(&path).unwrap();
    assert!(reader.is_snapshot());
    assert_eq!(reader.query(&Query::default()).unwrap().len(), 10);
    assert!(!reader.refresh().unwrap());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    // A writer appears: the reader switches to live mode and sees new rows.
    let mut writer = Store::open(&path).unwrap();
    writer.insert_batch(&[event(10, Verdict::Denied)]).unwrap();
    assert!(reader.refresh().unwrap());
    assert_eq!(reader.query(&Query::default()).unwrap().len(), 11);
    drop(reader);
    drop(writer);
    // A path that needs escaping in a URI.
    let odd = dir.path().join("a?b#c%d");
    std::fs::create_dir(&odd).unwrap();
    std::fs::copy(&path, path_in(&odd)).unwrap();
    let copy = Store::open_read_only(&path_in(&odd)).unwrap();
    assert_eq!(copy.stats().unwrap().events, 11);
}

#[test]
fn inserting_the_same_ids_again_is_a_no_op_and_events_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = new_store(dir.path());
    let evs = events(20);
    let first = store.insert_batch(&evs).unwrap();
    assert_eq!(
        first,
        BatchOutcome {
            inserted: 20,
            duplicates: 0,
            invalid: 0
        }
    );
    let mut replay = evs[10..].to_vec();
    replay.push(event(20, Verdict::Denied));
    let second = store.insert_batch(&replay).unwrap();
    assert_eq!((second.inserted, second.duplicates), (1, 10));
    let all = store
        .query(&Query {
            order: Order::OldestFirst,
            ..Query::default()
        })
        .unwrap();
    assert_eq!(all.len(), 21);
    for (stored, original) in all.iter().zip(&evs) {
        assert_eq!(&stored.event, original, "lossless");
    }
}

/// Batches are written with multi-row statements (chunks of 64, the rest in
/// powers of two): every size, duplicates inside one statement and across
/// statements, and invalid events between valid ones keep rows, order and
/// counts exact.
#[test]
fn every_batch_size_stores_each_event_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = new_store(dir.path());
    let mut next = 0u32;
    let mut stored: Vec<SecurityEvent> = Vec::new();
    for size in [1usize, 2, 3, 7, 63, 64, 65, 127, 128, 200] {
        let fresh: Vec<SecurityEvent> = (next..next + size as u32)
            .map(|i| event(i, Verdict::Denied))
            .collect();
        next += size as u32;
        // Each fresh event twice (the copy right after it, so in the same
        // statement), one already stored event, and an invalid one.
        let mut batch = Vec::new();
        for ev in &fresh {
            batch.push(ev.clone());
            batch.push(ev.clone());
        }
        if let Some(old) = stored.first() {
            batch.insert(batch.len() / 2, old.clone());
        }
        let mut bad = event(1_000_000, Verdict::Denied);
        bad.operation.clear();
        batch.insert(1, bad);
        let out = store.insert_batch(&batch).unwrap();
        let old = usize::from(!stored.is_empty());
        assert_eq!(
            out,
            BatchOutcome {
                inserted: size,
                duplicates: size + old,
                invalid: 1
            },
            "batch of {size} events"
        );
        stored.extend(fresh);
    }
    let all = store
        .query(&Query {
            order: Order::OldestFirst,
            ..Query::default()
        })
        .unwrap();
    assert_eq!(all.len(), stored.len());
    for (row, original) in all.iter().zip(&stored) {
        assert_eq!(&row.event, original);
    }
    // Sequence numbers follow insertion order.
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
}

#[test]
fn invalid_events_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = new_store(dir.path());
    let mut bad = event(1, Verdict::Denied);
    bad.operation.clear();
    let out = store
        .insert_batch(&[event(0, Verdict::Denied), bad])
        .unwrap();
    assert_eq!((out.inserted, out.invalid), (1, 1));
}

#[test]
fn every_filter_and_the_order() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = new_store(dir.path());
    let evs = events(30);
    store.insert_batch(&evs).unwrap();
    let q = |q: Query| ids(&store.query(&q).unwrap());
    let expect = |f: &dyn Fn(&SecurityEvent) -> bool| -> Vec<u32> {
        let mut v: Vec<u32> = (0..30).filter(|&i| f(&evs[i as usize])).collect();
        v.reverse(); // newest first
        v
    };
    assert_eq!(q(Query::default()), expect(&|_| true));
    let at = |s: i64| Timestamp::from_unix_nanos(T0 + s * SEC);
    assert_eq!(
        q(Query {
            since: Some(at(10)),
            until: Some(at(20)),
            ..Query::default()
        }),
        (10..20).rev().collect::<Vec<_>>()
    );
    assert_eq!(
        q(Query {
            verdict: vec![Verdict::Denied],
            ..Query::default()
        }),
        expect(&|e| e.verdict == Verdict::Denied)
    );
    assert_eq!(
        q(Query {
            verdict: vec![Verdict::Denied, Verdict::Killed],
            ..Query::default()
        }),
        expect(&|e| matches!(e.verdict, Verdict::Denied | Verdict::Killed))
    );
    assert_eq!(
        q(Query {
            policy: Some("web".into()),
            ..Query::default()
        }),
        expect(&|e| e.policy.as_deref() == Some("web"))
    );
    assert_eq!(
        q(Query {
            rule: Some("rule-2".into()),
            ..Query::default()
        }),
        expect(&|e| e.rule.as_deref() == Some("rule-2"))
    );
    assert_eq!(
        q(Query {
            container: Some("c10ffee".into()),
            ..Query::default()
        }),
        expect(&|e| e
            .container
            .as_ref()
            .is_some_and(|c| c.id.starts_with("c10ffee")))
    );
    assert_eq!(
        q(Query {
            container: Some("c00ffee0012".into()),
            ..Query::default()
        }),
        vec![12]
    );
    assert_eq!(
        q(Query {
            pid: Some(102),
            ..Query::default()
        }),
        expect(&|e| e.process.as_ref().is_some_and(|p| p.tgid == 102))
    );
    assert_eq!(
        q(Query {
            limit: Some(3),
            ..Query::default()
        }),
        vec![29, 28, 27]
    );
    assert_eq!(
        q(Query {
            limit: Some(3),
            order: Order::OldestFirst,
            ..Query::default()
        }),
        vec![0, 1, 2]
    );
    // Combined.
    assert_eq!(
        q(Query {
            policy: Some("baseline".into()),
            verdict: vec![Verdict::Denied],
            since: Some(at(5)),
            ..Query::default()
        }),
        expect(&|e| e.policy.as_deref() == Some("baseline")
            && e.verdict == Verdict::Denied
            && e.time >= at(5))
    );
}

#[test]
fn filtered_queries_use_the_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = new_store(dir.path());
    let plan = |q: &Query| -> String {
        let (filter, params) = q.where_clause(&[]);
        let sql = format!(
            "EXPLAIN QUERY PLAN SELECT seq, event FROM events {filter} ORDER BY time_ns DESC, seq DESC LIMIT 10"
        );
        let mut stmt = store.conn.prepare(&sql).unwrap();
        let rows = stmt
            .query_map(rusqlite::params_from_iter(params), |r| {
                r.get::<_, String>(3)
            })
            .unwrap();
        rows.map(Result::unwrap).collect::<Vec<_>>().join("; ")
    };
    let cases = [
        (Query::default(), "events_time"),
        (
            Query {
                since: Some(Timestamp::from_unix_nanos(T0)),
                ..Query::default()
            },
            "events_time",
        ),
        (
            Query {
                verdict: vec![Verdict::Denied],
                ..Query::default()
            },
            "events_verdict",
        ),
        (
            Query {
                policy: Some("p".into()),
                ..Query::default()
            },
            "events_policy",
        ),
        (
            Query {
                rule: Some("r".into()),
                ..Query::default()
            },
            "events_rule",
        ),
        (
            Query {
                container: Some("c".into()),
                ..Query::default()
            },
            "events_container",
        ),
        (
            Query {
                pid: Some(1),
                ..Query::default()
            },
            "events_pid",
        ),
    ];
    for (q, index) in cases {
        let p = plan(&q);
        assert!(p.contains(index), "{q:?}: {p}");
        if q.container.is_none() {
            assert!(!p.contains("TEMP B-TREE"), "{q:?} sorts: {p}");
        }
    }
}

#[test]
fn retention_by_age_deletes_every_verdict_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = new_store(dir.path());
    store.insert_batch(&events(5_000)).unwrap();
    // "Now" is T0 + 5000 s; keep the last 1000 s.
    let now = Timestamp::from_unix_nanos(T0 + 5_000 * SEC);
    let report = store
        .enforce_retention(
            &Retention {
                max_age: Some(Duration::from_secs(1_000)),
                max_bytes: None,
            },
            now,
        )
        .unwrap();
    assert_eq!(report.deleted_by_age.total(), 4_000);
    assert_eq!(report.deleted_by_age.denied, 800);
    assert_eq!(report.deleted_by_size.total(), 0);
    assert!(report.bytes_after < report.bytes_before, "{report:?}");
    let left = store
        .query(&Query {
            order: Order::OldestFirst,
            ..Query::default()
        })
        .unwrap();
    assert_eq!(left.len(), 1_000);
    assert_eq!(ids(&left[..1]), vec![4_000]);
}

#[test]
fn retention_by_size_deletes_low_priority_events_first_and_shrinks_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, path) = new_store(dir.path());
    // One in ten is denied or killed, the rest audit/allow/alert.
    let evs: Vec<SecurityEvent> = (0..20_000)
        .map(|i| {
            let v = match i % 20 {
                0 => Verdict::Denied,
                10 => Verdict::Killed,
                n if n % 3 == 0 => Verdict::Allowed,
                n if n % 3 == 1 => Verdict::Audited,
                _ => Verdict::Alerted,
            };
            event(i, v)
        })
        .collect();
    for chunk in evs.chunks(1_000) {
        store.insert_batch(chunk).unwrap();
    }
    let before = store.stats().unwrap();
    let max = before.file_bytes / 2;
    let report = store
        .enforce_retention(
            &Retention {
                max_age: None,
                max_bytes: Some(max),
            },
            Timestamp::now(),
        )
        .unwrap();
    assert!(!report.over_size_limit, "{report:?}");
    assert!(report.bytes_after <= max, "{report:?}");
    // The file on disk shrank too (after the WAL checkpoint).
    let on_disk = std::fs::metadata(&path).unwrap().len();
    assert!(on_disk <= max, "{on_disk} > {max}");
    let after = store.stats().unwrap();
    assert_eq!(after.by_verdict.denied, 1_000, "{report:?}");
    assert_eq!(after.by_verdict.killed, 1_000);
    assert_eq!(
        report.deleted_by_size.denied + report.deleted_by_size.killed,
        0
    );
    assert_eq!(
        report.deleted_by_size.total(),
        before.events - after.events,
        "every deletion counted"
    );
    // The oldest low-priority events went first.
    let low = store
        .query(&Query {
            verdict: vec![Verdict::Allowed, Verdict::Audited, Verdict::Alerted],
            order: Order::OldestFirst,
            ..Query::default()
        })
        .unwrap();
    let oldest_left = ids(&low[..1])[0];
    assert!(low.len() < 18_000 && oldest_left > 0);
    assert!(ids(&low).iter().all(|&i| i >= oldest_left));

    // With only a tiny budget, the oldest denied/killed go too, newest kept.
    let report = store
        .enforce_retention(
            &Retention {
                max_age: None,
                max_bytes: Some(max / 8),
            },
            Timestamp::now(),
        )
        .unwrap();
    assert!(report.deleted_by_size.denied > 0, "{report:?}");
    let left = store.stats().unwrap();
    assert_eq!(left.by_verdict.allowed + left.by_verdict.audited, 0);
    assert_eq!(left.newest, Some(evs[19_990].time), "newest kill kept");
}

#[test]
fn queries_run_while_another_connection_writes() {
    let dir = tempfile::tempdir().unwrap();
    // Keeps the store open, as the daemon does, so readers are live.
    let (_daemon, path) = new_store(dir.path());
    let writer_path = path.clone();
    let writer = std::thread::spawn(move || {
        let mut w = Store::open(&writer_path).unwrap();
        for b in 0..50u32 {
            let batch: Vec<_> = (b * 100..(b + 1) * 100)
                .map(|i| event(i, Verdict::Denied))
                .collect();
            w.insert_batch(&batch).unwrap();
        }
    });
    let reader = Store::open_read_only(&path).unwrap();
    assert!(!reader.is_snapshot());
    let mut seen = 0;
    let (mut tail, backlog) = Tail::start(&reader, Query::default(), 0).unwrap();
    let mut tailed = backlog.len();
    let mut last_seq = 0;
    while !writer.is_finished() || seen < 5_000 {
        let n = reader.stats().unwrap().events;
        assert_eq!(n % 100, 0, "a batch is seen whole or not at all");
        assert!(n >= seen);
        seen = n;
        for e in tail.poll(&reader, 1_000).unwrap() {
            assert!(e.seq > last_seq);
            last_seq = e.seq;
            tailed += 1;
        }
        let latest = reader
            .query(&Query {
                limit: Some(5),
                ..Query::default()
            })
            .unwrap();
        assert!(latest.len() <= 5);
    }
    writer.join().unwrap();
    while tail.position() < reader.last_seq().unwrap() {
        tailed += tail.poll(&reader, 1_000).unwrap().len();
    }
    assert_eq!(tailed, 5_000);
}

#[test]
fn tail_returns_the_backlog_then_new_matching_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = new_store(dir.path());
    store.insert_batch(&events(10)).unwrap();
    let q = Query {
        policy: Some("web".into()),
        ..Query::default()
    };
    let (mut tail, backlog) = Tail::start(&store, q, 2).unwrap();
    assert_eq!(ids(&backlog), vec![7, 9]);
    assert!(tail.poll(&store, 100).unwrap().is_empty());
    // Out-of-order times still come in storage order.
    store
        .insert_batch(&[
            event(13, Verdict::Denied),
            event(11, Verdict::Denied),
            event(12, Verdict::Denied),
        ])
        .unwrap();
    assert_eq!(ids(&tail.poll(&store, 1).unwrap()), vec![13]);
    assert_eq!(ids(&tail.poll(&store, 100).unwrap()), vec![11]);
    assert!(tail.poll(&store, 100).unwrap().is_empty());
}

#[test]
fn writer_thread_batches_and_flushes_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = new_store(dir.path());
    let writer = Writer::spawn(
        store,
        WriterOptions {
            max_batch: 100,
            ..WriterOptions::default()
        },
    )
    .unwrap();
    for ev in events(2_500) {
        assert!(writer.submit(ev));
    }
    assert!(writer.submit(event(0, Verdict::Allowed)), "a replay");
    let (store, stats) = writer.shutdown().unwrap();
    assert_eq!(stats.inserted, 2_500);
    assert_eq!(stats.duplicates, 1);
    assert_eq!(stats.dropped + stats.failed, 0);
    assert!(stats.batches >= 25);
    assert_eq!(store.stats().unwrap().events, 2_500);
}

#[test]
fn a_full_writer_queue_keeps_denies_and_counts_the_audit_events_it_drops() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = new_store(dir.path());
    // Hold the store's write lock so the writer thread cannot empty its queue
    // while it is being filled: the first event it takes waits on the lock.
    let blocker = rusqlite::Connection::open(path_in(dir.path())).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let writer = Writer::spawn(
        store,
        WriterOptions {
            queue: 10,
            max_batch: 1,
            max_delay: Duration::ZERO,
            retention: Retention {
                max_age: None,
                max_bytes: None,
            },
            ..WriterOptions::default()
        },
    )
    .unwrap();
    // The thread takes one event (its batch of one) and waits on the lock with
    // it; only then is the queue filled, so nothing else leaves it meanwhile.
    assert!(writer.submit(event(0, Verdict::Audited)));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while writer.queued() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the writer never took its first event"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    for i in 1..11 {
        assert!(writer.submit(event(i, Verdict::Audited)), "audit {i}");
    }
    assert!(
        !writer.submit(event(100, Verdict::Audited)),
        "full of audits"
    );
    for i in 0..10 {
        assert!(writer.submit(event(200 + i, Verdict::Denied)), "deny {i}");
    }
    assert!(
        !writer.submit(event(300, Verdict::Denied)),
        "full of denies"
    );
    let stats = writer.stats();
    blocker.execute_batch("ROLLBACK").unwrap();
    drop(blocker);
    let (store, end) = writer.shutdown().unwrap();
    assert_eq!(stats.dropped_by_verdict.denied, 1, "{stats:?}");
    assert_eq!(stats.dropped_by_verdict.audited, stats.dropped - 1);
    // 12 audits submitted: at most one (the one the thread took) survives.
    assert!(stats.dropped_by_verdict.audited >= 11, "{stats:?}");
    let by = store.stats().unwrap().by_verdict;
    assert_eq!(by.denied, 10, "every queued deny is stored: {end:?}");
    assert_eq!(by.audited + stats.dropped_by_verdict.audited, 12);
    assert_eq!(end.inserted, by.denied + by.audited);
}

#[test]
fn writer_runs_retention_and_counts_deletions() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = new_store(dir.path());
    let now = Timestamp::now().unix_nanos();
    let at = |i: u32, ago_s: i64, v: Verdict| {
        let mut ev = event(i, v);
        ev.time = Timestamp::from_unix_nanos(now - ago_s * SEC);
        ev.id = EventId::from_time_and_tail(ev.time, u128::from(i) + 1);
        ev
    };
    store
        .insert_batch(&[
            at(0, 3 * 86_400, Verdict::Denied),
            at(1, 2 * 86_400, Verdict::Audited),
            at(2, 10, Verdict::Denied),
        ])
        .unwrap();
    let writer = Writer::spawn(
        store,
        WriterOptions {
            retention: Retention {
                max_age: Some(Duration::from_secs(86_400)),
                max_bytes: None,
            },
            ..WriterOptions::default()
        },
    )
    .unwrap();
    assert!(writer.submit(at(3, 0, Verdict::Allowed)));
    let (store, stats) = writer.shutdown().unwrap();
    assert_eq!(stats.inserted, 1);
    assert_eq!(stats.retention_runs, 1, "once at start");
    assert_eq!(stats.deleted_by_age.denied, 1);
    assert_eq!(stats.deleted_by_age.audited, 1);
    assert_eq!(store.stats().unwrap().events, 2);
}

#[test]
fn a_retention_set_while_the_writer_runs_applies_at_its_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = new_store(dir.path());
    let now = Timestamp::now().unix_nanos();
    let mut old = event(0, Verdict::Denied);
    old.time = Timestamp::from_unix_nanos(now - 3 * 86_400 * SEC);
    old.id = EventId::from_time_and_tail(old.time, 1);
    store.insert_batch(&[old]).unwrap();
    let writer = Writer::spawn(
        store,
        WriterOptions {
            retention: Retention::default(),
            retention_interval: Duration::from_millis(20),
            ..WriterOptions::default()
        },
    )
    .unwrap();
    // Unlimited: the runs keep everything.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(writer.stats().deleted_by_age.denied, 0);
    let day = Retention {
        max_age: Some(Duration::from_secs(86_400)),
        max_bytes: None,
    };
    writer.set_retention(day);
    assert_eq!(writer.retention(), day);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while writer.stats().deleted_by_age.denied == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the new retention never ran"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let (store, _) = writer.shutdown().unwrap();
    assert_eq!(store.stats().unwrap().events, 0);
}

fn index_names(conn: &rusqlite::Connection) -> Vec<String> {
    let mut st = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'events' AND sql IS NOT NULL ORDER BY name")
        .unwrap();
    let rows = st.query_map([], |r| r.get::<_, String>(0)).unwrap();
    rows.map(Result::unwrap).collect()
}

#[test]
fn migrates_a_version_1_store_and_keeps_its_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = path_in(dir.path());
    // A store as the first release wrote it: schema version 1, 4 KiB pages
    // (fixed before the first table, so the migration's page size has no
    // effect), with events in it.
    {
        create_private(&path).unwrap();
        let mut conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA page_size = 4096; PRAGMA auto_vacuum = INCREMENTAL;
             CREATE TABLE scratch (x); DROP TABLE scratch;",
        )
        .unwrap();
        schema::migrate_to(&mut conn, &path, 1).unwrap();
        assert_eq!(schema::version(&conn, &path).unwrap(), 1);
        assert!(index_names(&conn).contains(&"events_retention".to_owned()));
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
            .unwrap();
        let mut v1 = Store {
            conn,
            path: path.clone(),
            read_only: false,
            snapshot: false,
        };
        let evs: Vec<SecurityEvent> = (0..3_000)
            .map(|i| {
                event(
                    i,
                    if i % 10 == 0 {
                        Verdict::Denied
                    } else {
                        Verdict::Audited
                    },
                )
            })
            .collect();
        for chunk in evs.chunks(500) {
            v1.insert_batch(chunk).unwrap();
        }
    }
    // Readers need the current version.
    assert!(matches!(
        Store::open_read_only(&path).unwrap_err(),
        StoreError::TooOld { found: 1, .. }
    ));
    // A writer migrates it: the (priority, time) index goes, the events stay.
    let mut store = Store::open(&path).unwrap();
    assert_eq!(store.stats().unwrap().schema_version, SCHEMA_VERSION);
    let names = index_names(&store.conn);
    assert!(!names.contains(&"events_retention".to_owned()), "{names:?}");
    assert!(names.contains(&"events_verdict".to_owned()), "{names:?}");
    assert_eq!(pragma(&store, "page_size"), "Integer(4096)");
    assert_eq!(pragma(&store, "wal_autocheckpoint"), "Integer(16384)");
    let stats = store.stats().unwrap();
    assert_eq!(stats.events, 3_000);
    assert_eq!(stats.by_verdict.denied, 300);
    let all = store
        .query(&Query {
            order: Order::OldestFirst,
            ..Query::default()
        })
        .unwrap();
    assert_eq!(ids(&all), (0..3_000).collect::<Vec<u32>>());
    // Size retention works on the migrated store: audited events go first.
    let max = stats.file_bytes / 2;
    let r = store
        .enforce_retention(
            &Retention {
                max_age: None,
                max_bytes: Some(max),
            },
            Timestamp::now(),
        )
        .unwrap();
    assert!(r.deleted_by_size.audited > 0, "{r:?}");
    assert_eq!(r.deleted_by_size.denied, 0, "{r:?}");
    assert!(r.bytes_after <= max, "{r:?}");
    // New events go in after the migration, and opening again is a no-op.
    store
        .insert_batch(&[event(5_000, Verdict::Killed)])
        .unwrap();
    drop(store);
    let reader = Store::open_read_only(&path).unwrap();
    assert_eq!(reader.stats().unwrap().by_verdict.killed, 1);
}

#[test]
fn size_retention_reads_the_verdict_index_in_time_order() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = new_store(dir.path());
    for prio in [0, 1] {
        let sql = format!("EXPLAIN QUERY PLAN {}", retention::oldest_of_priority(prio));
        let mut stmt = store.conn.prepare(&sql).unwrap();
        let rows = stmt
            .query_map(rusqlite::params![0, 10], |r| r.get::<_, String>(3))
            .unwrap();
        let plan = rows.map(Result::unwrap).collect::<Vec<_>>().join("; ");
        assert!(plan.contains("INDEX events_verdict (verdict=?)"), "{plan}");
        // Each arm is read in index order: only the merged, limited rows
        // are sorted, never the table.
        assert!(!plan.contains("SCAN events"), "{plan}");
        assert_eq!(
            plan.matches("USE TEMP B-TREE").count(),
            1,
            "only the merge sorts: {plan}"
        );
    }
    // Every verdict is in exactly one group.
    let low = retention::oldest_of_priority(0);
    let high = retention::oldest_of_priority(1);
    for v in Verdict::ALL {
        let quoted = format!("'{}'", v.as_str());
        assert!(low.contains(&quoted) != high.contains(&quoted), "{v:?}");
    }
}
