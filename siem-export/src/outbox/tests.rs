use super::*;
use crate::event::tests::minimal_event;
use crate::event::{EventId, Timestamp};

fn ev(n: u64, verdict: Verdict) -> SecurityEvent {
    let mut e = minimal_event();
    e.id = EventId::from_time_and_tail(
        Timestamp::from_unix_nanos(1_700_000_000_000_000_000),
        u128::from(n),
    );
    e.verdict = verdict;
    e.message = format!("event {n}");
    e
}

fn evs(range: std::ops::Range<u64>, verdict: Verdict) -> Vec<SecurityEvent> {
    range.map(|n| ev(n, verdict)).collect()
}

fn open(dir: &tempfile::TempDir, sinks: &[&str]) -> Outbox {
    Outbox::open(
        &dir.path().join("outbox.db"),
        sinks,
        OutboxConfig::default(),
    )
    .unwrap()
}

fn keys(l: &[Leased]) -> Vec<EntryKey> {
    l.iter().map(|l| l.key).collect()
}

fn messages(l: &[Leased]) -> Vec<String> {
    l.iter().map(|l| l.event.message.clone()).collect()
}

#[test]
fn durable_pragmas_and_schema_version() {
    let dir = tempfile::tempdir().unwrap();
    let ob = open(&dir, &["a"]);
    let conn = ob.lock();
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    let sync: i64 = conn
        .pragma_query_value(None, "synchronous", |r| r.get(0))
        .unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    let page: i64 = conn
        .pragma_query_value(None, "page_size", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(sync, 2, "FULL");
    assert_eq!(page, PAGE_SIZE);
    assert_eq!(version, SCHEMA_VERSION);
    conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    drop(conn);
    drop(ob);
    let err = Outbox::open(
        &dir.path().join("outbox.db"),
        &["a"],
        OutboxConfig::default(),
    )
    .unwrap_err();
    assert!(matches!(err, OutboxError::NewerSchema { .. }), "{err}");
}

#[test]
fn every_sink_must_ack_before_the_event_goes() {
    let dir = tempfile::tempdir().unwrap();
    let ob = open(&dir, &["a", "b"]);
    let r = ob.enqueue_at(&evs(0..3, Verdict::Audited), 1000).unwrap();
    assert_eq!(r.accepted, 3);
    let la = ob.lease("a", 10, 1000).unwrap();
    assert_eq!(messages(&la), ["event 0", "event 1", "event 2"]);
    assert!(la.iter().all(|l| l.attempts == 1));
    assert_eq!(ob.ack("a", &keys(&la)).unwrap(), 3);
    assert_eq!(ob.stats().unwrap().events, 3, "sink b still needs them");
    let lb = ob.lease("b", 2, 1000).unwrap();
    ob.ack("b", &keys(&lb)).unwrap();
    let s = ob.stats().unwrap();
    assert_eq!(s.events, 1);
    assert_eq!(s.sinks[0].delivered, 3);
    assert_eq!((s.sinks[1].delivered, s.sinks[1].queued), (2, 1));
    assert!(ob.lease("a", 10, 1000).unwrap().is_empty());
    assert!(matches!(
        ob.lease("c", 1, 0),
        Err(OutboxError::UnknownSink(_))
    ));
}

#[test]
fn deny_and_kill_go_first() {
    let dir = tempfile::tempdir().unwrap();
    let ob = open(&dir, &["a"]);
    ob.enqueue_at(&evs(0..3, Verdict::Audited), 1000).unwrap();
    ob.enqueue_at(&[ev(10, Verdict::Denied), ev(11, Verdict::Killed)], 2000)
        .unwrap();
    let l = ob.lease("a", 3, 3000).unwrap();
    assert_eq!(messages(&l), ["event 10", "event 11", "event 0"]);
    assert_eq!(l[0].priority, Priority::High);
    assert_eq!(l[2].priority, Priority::Low);
}

#[test]
fn duplicates_are_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let ob = open(&dir, &["a"]);
    ob.enqueue_at(&evs(0..2, Verdict::Denied), 1).unwrap();
    let r = ob.enqueue_at(&evs(1..3, Verdict::Denied), 2).unwrap();
    assert_eq!((r.accepted, r.duplicates), (1, 1));
    assert_eq!(ob.lease("a", 10, 5).unwrap().len(), 3);
}

#[test]
fn retry_waits_until_due_and_counts_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let ob = open(&dir, &["a"]);
    ob.enqueue_at(&evs(0..2, Verdict::Denied), 1000).unwrap();
    let l = ob.lease("a", 10, 1000).unwrap();
    assert_eq!(ob.retry("a", &keys(&l), 5000, "HTTP 503").unwrap(), 2);
    assert!(ob.lease("a", 10, 4999).unwrap().is_empty());
    assert_eq!(ob.next_due("a").unwrap(), Some(5000));
    let l = ob.lease("a", 10, 5000).unwrap();
    assert_eq!(l.len(), 2);
    assert!(l.iter().all(|l| l.attempts == 2));
    let s = ob.stats().unwrap();
    assert_eq!((s.sinks[0].retried, s.sinks[0].in_flight), (2, 2));
    // Retrying rows that are not in flight does nothing.
    ob.ack("a", &keys(&l)).unwrap();
    assert_eq!(ob.retry("a", &keys(&l), 0, "x").unwrap(), 0);
    assert_eq!(ob.next_due("a").unwrap(), None);
}

#[test]
fn dead_letters_are_listed_replayed_and_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let ob = open(&dir, &["a", "b"]);
    ob.enqueue_at(&evs(0..3, Verdict::Denied), 1000).unwrap();
    let l = ob.lease("a", 10, 1000).unwrap();
    ob.ack("a", &keys(&l[..1])).unwrap();
    ob.dead_letter("a", &keys(&l[1..]), "HTTP 400: bad request")
        .unwrap();
    let dead = ob.dead_letters(Some("a"), 10).unwrap();
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0].reason, "HTTP 400: bad request");
    assert_eq!(dead[0].id, ev(1, Verdict::Denied).id.to_string());
    assert_eq!(dead[0].sink, "a");
    assert!(ob.dead_letters(Some("b"), 10).unwrap().is_empty());
    assert!(ob.lease("a", 10, 2000).unwrap().is_empty());
    let s = ob.stats().unwrap();
    assert_eq!((s.sinks[0].dead, s.sinks[0].dead_lettered), (2, 2));

    assert_eq!(ob.replay_dead(Some("a")).unwrap(), 2);
    let l = ob.lease("a", 10, now_ms()).unwrap();
    assert_eq!(messages(&l), ["event 1", "event 2"]);
    assert!(l.iter().all(|l| l.attempts == 1));
    ob.dead_letter("a", &keys(&l), "again").unwrap();
    // b delivers everything: only the dead letters keep events alive.
    let lb = ob.lease("b", 10, 2000).unwrap();
    ob.ack("b", &keys(&lb)).unwrap();
    assert_eq!(ob.stats().unwrap().events, 2);
    assert_eq!(ob.discard_dead(None).unwrap(), 2);
    assert_eq!(ob.stats().unwrap().events, 0);
}

#[test]
fn a_restart_releases_rows_left_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    {
        let ob = open(&dir, &["a"]);
        ob.enqueue_at(&evs(0..4, Verdict::Denied), 1000).unwrap();
        let l = ob.lease("a", 3, 1000).unwrap();
        ob.ack("a", &keys(&l[..1])).unwrap();
        // "Crash": the other two are never acknowledged.
    }
    let ob = open(&dir, &["a"]);
    let s = ob.stats().unwrap();
    assert_eq!((s.sinks[0].queued, s.sinks[0].in_flight), (3, 0));
    let l = ob.lease("a", 10, 1000).unwrap();
    assert_eq!(messages(&l), ["event 1", "event 2", "event 3"]);
    assert_eq!(l[0].attempts, 2);
}

#[test]
fn expired_leases_are_taken_back() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = OutboxConfig {
        lease_timeout: Duration::from_secs(10),
        ..OutboxConfig::default()
    };
    let ob = Outbox::open(&dir.path().join("o.db"), &["a"], cfg).unwrap();
    ob.enqueue_at(&evs(0..1, Verdict::Denied), 0).unwrap();
    assert_eq!(ob.lease("a", 10, 1000).unwrap().len(), 1);
    assert!(ob.lease("a", 10, 10_999).unwrap().is_empty());
    assert_eq!(ob.lease("a", 10, 11_001).unwrap().len(), 1);
}

#[test]
fn sinks_removed_from_the_config_release_their_events() {
    let dir = tempfile::tempdir().unwrap();
    {
        let ob = open(&dir, &["a", "gone"]);
        ob.enqueue_at(&evs(0..2, Verdict::Denied), 0).unwrap();
        let l = ob.lease("a", 10, 0).unwrap();
        ob.ack("a", &keys(&l)).unwrap();
        assert_eq!(ob.stats().unwrap().events, 2);
    }
    let ob = open(&dir, &["a"]);
    assert_eq!(ob.stats().unwrap().events, 0);
    assert_eq!(
        ob.stats().unwrap().sinks[0].delivered,
        2,
        "counters survive"
    );
}

#[test]
fn unreadable_rows_are_dead_lettered_at_lease() {
    let dir = tempfile::tempdir().unwrap();
    let ob = open(&dir, &["a"]);
    ob.enqueue_at(&evs(0..2, Verdict::Denied), 0).unwrap();
    ob.lock()
        .execute(
            "UPDATE events SET body = x'7b7d' WHERE seq = (SELECT MIN(seq) FROM events)",
            [],
        )
        .unwrap();
    let l = ob.lease("a", 10, 0).unwrap();
    assert_eq!(messages(&l), ["event 1"]);
    let dead = ob.dead_letters(None, 10).unwrap();
    assert_eq!(dead.len(), 1);
    assert!(dead[0].reason.contains("unreadable"), "{}", dead[0].reason);
}

/// The disk-full policy, step by step.
#[test]
fn disk_full_policy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("o.db");
    let base = {
        let ob = Outbox::open(&path, &["a"], OutboxConfig::default()).unwrap();
        ob.stats().unwrap().used_bytes
    };
    let cfg = OutboxConfig {
        max_bytes: base + 256 * 1024,
        ..OutboxConfig::default()
    };
    let ob = Outbox::open(&path, &["a"], cfg).unwrap();
    let big = |n: u64, v: Verdict| {
        let mut e = ev(n, v);
        e.message = format!("event {n} {}", "x".repeat(4000));
        e
    };

    // Fill with low-priority events until they are refused.
    let mut n = 0;
    let mut refused = 0;
    while refused == 0 {
        let r = ob.enqueue(&[big(n, Verdict::Audited)]).unwrap();
        refused = r.dropped_low;
        n += 1;
        assert!(n < 1000, "never full");
    }
    let stored_low = n - 1;
    assert!(stored_low > 20, "{stored_low}");
    assert!(ob.stats().unwrap().used_bytes <= ob.config().max_bytes);

    // Dead-letter the two oldest; a deny event evicts them first.
    let l = ob.lease("a", 2, now_ms()).unwrap();
    ob.dead_letter("a", &keys(&l), "HTTP 400").unwrap();
    let r = ob.enqueue(&[big(5000, Verdict::Denied)]).unwrap();
    assert_eq!(r.accepted, 1);
    assert!(r.evicted_dead >= 1, "{r:?}");
    assert!(ob.stats().unwrap().used_bytes <= ob.config().max_bytes);

    // Then the oldest pending low-priority events go.
    let mut high = 5001;
    loop {
        let r = ob.enqueue(&[big(high, Verdict::Killed)]).unwrap();
        high += 1;
        if r.dropped_high > 0 {
            break;
        }
        assert_eq!(r.accepted, 1);
        assert!(high < 6000);
    }
    let s = ob.stats().unwrap();
    assert!(s.used_bytes <= s.max_bytes);
    assert_eq!(
        s.evicted_pending,
        stored_low - 2,
        "every low event went before a deny was refused"
    );
    assert_eq!(s.evicted_dead, 2);
    assert_eq!(s.dropped_high, 1);
    assert!(s.dropped_low >= 1);
    assert_eq!(s.sinks[0].evicted, stored_low);
    // What is left is only deny/kill events, in order.
    let l = ob.lease("a", 1000, now_ms()).unwrap();
    assert!(l.iter().all(|l| l.priority == Priority::High));
    assert_eq!(l.len() as u64, high - 5001);
}

#[test]
fn native_lease_hands_out_the_stored_bytes_and_counts_like_lease() {
    let dir = tempfile::tempdir().unwrap();
    let ob = open(&dir, &["a", "b"]);
    let events = evs(0..4, Verdict::Audited);
    let mut high = ev(9, Verdict::Denied);
    high.message = "high".into();
    ob.enqueue_at(&events, 1000).unwrap();
    ob.enqueue_at(std::slice::from_ref(&high), 1000).unwrap();
    let native = ob.lease_native("a", 10, 1000).unwrap();
    let decoded = ob.lease("b", 10, 1000).unwrap();
    assert_eq!(native.len(), 5);
    // Same rows, same order (deny first), same attempt counts.
    assert_eq!(
        native.iter().map(|l| l.key).collect::<Vec<_>>(),
        keys(&decoded)
    );
    for (n, d) in native.iter().zip(&decoded) {
        assert_eq!(n.attempts, 1);
        assert_eq!(n.priority, d.priority);
        assert_eq!(n.record.id, d.event.id.to_string());
        // The stored bytes are what the native encoder writes.
        let mut enc = Vec::new();
        NativeJson.encode(&d.event, &mut enc).unwrap();
        assert_eq!(n.record.json, enc);
    }
    assert_eq!(native[0].record.id, high.id.to_string());
    // Leased: nothing more for `a` until the lease runs out.
    assert!(ob.lease_native("a", 10, 1000).unwrap().is_empty());
    assert_eq!(ob.stats().unwrap().sinks[0].in_flight, 5);
    let keys_a: Vec<EntryKey> = native.iter().map(|l| l.key).collect();
    assert_eq!(ob.ack("a", &keys_a).unwrap(), 5);
    // `b` still needs them.
    assert_eq!(ob.stats().unwrap().events, 5);
    assert_eq!(ob.ack("b", &keys(&decoded)).unwrap(), 5);
    assert_eq!(ob.stats().unwrap().events, 0);
    assert_eq!(ob.stats().unwrap().sinks[0].delivered, 5);
}

#[test]
fn native_lease_dead_letters_damaged_rows() {
    let dir = tempfile::tempdir().unwrap();
    let ob = open(&dir, &["a"]);
    ob.enqueue_at(&evs(0..3, Verdict::Audited), 1000).unwrap();
    {
        let conn = ob.lock();
        conn.execute(
            "UPDATE events SET body = CAST('{\"schema_version\":1,' AS BLOB) WHERE seq = 2",
            [],
        )
        .unwrap();
        conn.execute(
            "UPDATE events SET body = CAST('[1]' AS BLOB) WHERE seq = 3",
            [],
        )
        .unwrap();
    }
    let l = ob.lease_native("a", 10, 1000).unwrap();
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].key, EntryKey(1));
    let dead = ob.dead_letters(Some("a"), 10).unwrap();
    assert_eq!(dead.len(), 2);
    assert!(dead[0].reason.contains("unreadable"), "{}", dead[0].reason);
    assert_eq!(ob.stats().unwrap().sinks[0].dead_lettered, 2);
}

#[test]
fn batched_statements_look_rows_up_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let ob = open(&dir, &["a"]);
    let conn = ob.lock();
    let plan = |sql: &str| -> String {
        let mut st = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = st.query_map([], |r| r.get::<_, String>(3)).unwrap();
        rows.map(|r| r.unwrap()).collect::<Vec<_>>().join("; ")
    };
    for sql in [
        "DELETE FROM deliveries WHERE sink = 1 AND state != 3 AND seq IN (SELECT value FROM json_each('[1,2]'))",
        "UPDATE deliveries SET state = 1 WHERE sink = 1 AND seq IN (SELECT value FROM json_each('[1,2]'))",
        "DELETE FROM events WHERE seq IN (SELECT value FROM json_each('[1,2]'))
         AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.seq = events.seq)",
    ] {
        let p = plan(sql);
        assert!(
            !p.contains("SCAN deliveries") && !p.contains("SCAN events") && !p.contains("SCAN d"),
            "{sql}: {p}"
        );
    }
}

#[test]
fn batched_retry_and_dead_letter_touch_only_the_given_rows() {
    let dir = tempfile::tempdir().unwrap();
    let ob = open(&dir, &["a"]);
    ob.enqueue_at(&evs(0..6, Verdict::Audited), 1000).unwrap();
    let l = ob.lease("a", 10, 1000).unwrap();
    let k = keys(&l);
    assert_eq!(ob.retry("a", &k[..2], 5000, "busy").unwrap(), 2);
    assert_eq!(ob.dead_letter("a", &k[2..3], "bad").unwrap(), 1);
    // Retrying a row that is not in flight any more changes nothing.
    assert_eq!(ob.retry("a", &k[..2], 5000, "busy").unwrap(), 0);
    let s = ob.stats().unwrap();
    assert_eq!(
        (s.sinks[0].queued, s.sinks[0].in_flight, s.sinks[0].dead),
        (2, 3, 1)
    );
    assert_eq!(ob.ack("a", &k[3..]).unwrap(), 3);
    assert!(ob.lease("a", 10, 4999).unwrap().is_empty());
    assert_eq!(keys(&ob.lease("a", 10, 5000).unwrap()), k[..2].to_vec());
}

#[test]
fn a_version_1_outbox_gains_the_log_position_table_and_keeps_its_events() {
    let dir = tempfile::tempdir().unwrap();
    {
        let ob = open(&dir, &["a"]);
        ob.enqueue(&evs(0..3, Verdict::Denied)).unwrap();
        let conn = ob.lock();
        conn.execute_batch("DROP TABLE log_positions; PRAGMA user_version = 1;")
            .unwrap();
    }
    let ob = open(&dir, &["a"]);
    assert_eq!(ob.stats().unwrap().sinks[0].queued, 3);
    assert_eq!(ob.log_position("events.jsonl").unwrap(), None);
    let pos = LogPosition {
        dev: u64::MAX,
        ino: 7,
        offset: 42,
    };
    ob.set_log_position("events.jsonl", pos).unwrap();
    drop(ob);
    let ob = open(&dir, &["a"]);
    assert_eq!(ob.log_position("events.jsonl").unwrap(), Some(pos));
}

#[test]
fn events_from_a_log_and_the_position_are_stored_together() {
    let dir = tempfile::tempdir().unwrap();
    let ob = open(&dir, &["a"]);
    let logged: Vec<LoggedEvent> = evs(0..3, Verdict::Audited)
        .into_iter()
        .enumerate()
        .map(|(i, event)| LoggedEvent {
            json: serde_json::to_vec(&event).unwrap(),
            event,
            offset: 100 * i as u64,
        })
        .collect();
    let end = LogPosition {
        dev: 1,
        ino: 2,
        offset: 300,
    };
    let done = ob.enqueue_from_log("log", &logged, end).unwrap();
    assert!(!done.stalled);
    assert_eq!(done.report.accepted, 3);
    assert_eq!(done.position, end);
    assert_eq!(ob.log_position("log").unwrap(), Some(end));
}
