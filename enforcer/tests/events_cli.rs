//! `enforcer events import|query|tail` as a user runs them: stores built
//! by importing JSON lines, every filter, both formats, exit codes, reading
//! a copied store, and following a store another process writes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failure

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use siem_export::event::{ByteText, Container, EventClass, FileTarget, Process, Target, Verdict};
use siem_export::{EventId, SecurityEvent, Severity, Timestamp};

fn enforcer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_enforcer"))
        .args(args)
        .output()
        .unwrap()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const HOUR_NS: i64 = 3_600 * 1_000_000_000;

/// Event `i`, `i` hours before now (so relative `--since` works), with a
/// deterministic id.
fn event(i: u32) -> SecurityEvent {
    let now = Timestamp::now().unix_nanos();
    // Round to the hour so repeated calls give the same event.
    let time = Timestamp::from_unix_nanos(now - now % HOUR_NS - i64::from(i) * HOUR_NS);
    let verdict = [
        Verdict::Denied,
        Verdict::Audited,
        Verdict::Killed,
        Verdict::Allowed,
    ][i as usize % 4];
    let mut ev = SecurityEvent::new(
        time,
        "node-a",
        verdict,
        EventClass::File,
        "open",
        Severity::High,
    );
    ev.id = EventId::from_time_and_tail(time, u128::from(i) + 1);
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
        pid: 9000 + i,
        tgid: 700 + i % 3,
        ppid: None,
        uid: 0,
        gid: 0,
        user: None,
        // The process chooses its comm: escape sequences must not reach
        // the terminal.
        comm: ByteText::new(if i == 1 {
            b"evil\x1b[2J".to_vec()
        } else {
            b"cat".to_vec()
        }),
        exe: None,
        argv: Vec::new(),
        argv_truncated: false,
        cwd: None,
        exec_id: None,
        start_time: None,
        ancestors: Vec::new(),
    });
    ev.container = Some(Container {
        id: format!(
            "{}abcdef0123456789",
            if i.is_multiple_of(2) { "aa" } else { "bb" }
        ),
        runtime: None,
    });
    ev.target = Some(Target::File(FileTarget {
        path: ByteText::new(format!("/etc/secret-{i}").into_bytes()),
        flags: None,
        mode: None,
        operation: None,
        path_truncated: false,
        second_path: None,
    }));
    ev
}

fn jsonl(dir: &Path, name: &str, range: std::ops::Range<u32>) -> PathBuf {
    let mut s = String::new();
    for i in range {
        s.push_str(&serde_json::to_string(&event(i)).unwrap());
        s.push('\n');
    }
    let path = dir.join(name);
    std::fs::write(&path, s).unwrap();
    path
}

/// A state directory with events 0..n imported.
fn state(n: u32) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = jsonl(dir.path(), "in.jsonl", 0..n);
    let state = dir.path().join("state");
    let out = enforcer(&[
        "events",
        "import",
        "--state-dir",
        state.to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    (dir, state.display().to_string())
}

/// `events query --format json` with extra args: the events' message
/// numbers, in output order.
fn query(state: &str, args: &[&str]) -> Vec<u32> {
    let mut all = vec!["events", "query", "--format", "json", "--state-dir", state];
    all.extend_from_slice(args);
    let out = enforcer(&all);
    assert!(out.status.success(), "{args:?}: {:?}", text(&out));
    let events: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    events
        .iter()
        .map(|e| {
            let ev = SecurityEvent::from_json(e.to_string().as_bytes()).unwrap();
            ev.message["event ".len()..].parse().unwrap()
        })
        .collect()
}

#[test]
fn import_is_idempotent_and_reports_bad_lines_by_number() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let state_s = state.to_str().unwrap();
    let good = jsonl(dir.path(), "good.jsonl", 0..10);
    let out = enforcer(&[
        "events",
        "import",
        "--state-dir",
        state_s,
        good.to_str().unwrap(),
    ]);
    let (stdout, _) = text(&out);
    assert!(out.status.success());
    assert!(stdout.contains("imported 10 events"), "{stdout}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(state.join("events.db"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "the store is private");

    // Same file again, plus a file with two bad lines and one new event.
    let mut mixed = std::fs::read_to_string(&good).unwrap();
    mixed.push_str("not json\n\n");
    mixed.push_str(
        &serde_json::to_string(&event(10))
            .unwrap()
            .replace("\"open\"", "\"\""),
    );
    mixed.push('\n');
    mixed.push_str(&serde_json::to_string(&event(11)).unwrap());
    mixed.push('\n');
    let mixed_path = dir.path().join("mixed.jsonl");
    std::fs::write(&mixed_path, mixed).unwrap();
    let out = enforcer(&[
        "events",
        "import",
        "--state-dir",
        state_s,
        mixed_path.to_str().unwrap(),
    ]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains("imported 1 events") && stdout.contains("10 already stored"),
        "{stdout}"
    );
    assert!(stdout.contains("2 bad lines"), "{stdout}");
    let name = mixed_path.display();
    assert!(stderr.contains(&format!("{name}:11: ")), "{stderr}");
    assert!(
        stderr.contains(&format!("{name}:13: invalid event at `operation`")),
        "{stderr}"
    );
    assert_eq!(query(state_s, &[]).len(), 11);
}

#[test]
fn query_filters_order_and_limit() {
    let (_dir, state) = state(24);
    let newest_first: Vec<u32> = (0..24).collect(); // event i is i hours old
    assert_eq!(query(&state, &[]), newest_first);
    assert_eq!(query(&state, &["--limit", "3"]), vec![0, 1, 2]);
    assert_eq!(query(&state, &["--limit", "2", "--reverse"]), vec![23, 22]);
    let pick = |f: &dyn Fn(u32) -> bool| -> Vec<u32> { (0..24).filter(|&i| f(i)).collect() };
    assert_eq!(
        query(&state, &["--verdict", "denied"]),
        pick(&|i| i % 4 == 0)
    );
    assert_eq!(
        query(&state, &["--verdict", "deny,kill"]),
        pick(&|i| i % 2 == 0 && i % 4 != 1)
    );
    assert_eq!(query(&state, &["--policy", "web"]), pick(&|i| i % 2 == 1));
    assert_eq!(query(&state, &["--rule", "rule-1"]), pick(&|i| i % 3 == 1));
    assert_eq!(
        query(&state, &["--container", "bbabcdef"]),
        pick(&|i| i % 2 == 1)
    );
    assert_eq!(query(&state, &["--pid", "702"]), pick(&|i| i % 3 == 2));
    // Relative times: the last 5 h (events 0..=4 are at most 4 h old, plus
    // less than an hour of rounding).
    assert_eq!(query(&state, &["--since", "5h"]), vec![0, 1, 2, 3, 4]);
    assert_eq!(query(&state, &["--until", "20h"]), vec![20, 21, 22, 23]);
    assert_eq!(
        query(
            &state,
            &["--since", "3d", "--until", "22h", "--policy", "baseline"]
        ),
        vec![22]
    );
    // An absolute time.
    let t = event(10).time.to_rfc3339();
    assert_eq!(query(&state, &["--until", &t, "--limit", "1"]), vec![11]);
    assert_eq!(
        query(&state, &["--since", &t, "--reverse", "--limit", "1"]),
        vec![10]
    );
}

#[test]
fn table_output_is_aligned_and_escapes_control_characters() {
    let (_dir, state) = state(3);
    let out = enforcer(&["events", "query", "--state-dir", &state]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(lines[0].starts_with("TIME"), "{stdout}");
    for col in [
        "VERDICT",
        "CLASS/OP",
        "POLICY/RULE",
        "PID",
        "COMM",
        "CONTAINER",
        "TARGET",
    ] {
        let at = lines[0].find(col).unwrap();
        for l in &lines[1..] {
            let b = l.as_bytes();
            assert!(
                b[at - 1] == b' ' && b[at] != b' ',
                "{col} misaligned:\n{stdout}"
            );
        }
    }
    assert!(
        lines[1].contains("denied") && lines[1].contains("file/open"),
        "{stdout}"
    );
    assert!(
        lines[1].contains("baseline/rule-0") && lines[1].contains("/etc/secret-0"),
        "{stdout}"
    );
    assert!(
        lines[1].contains("aaabcdef0123 "),
        "container ids shortened to 12: {stdout}"
    );
    assert!(
        !stdout.contains('\u{1b}'),
        "raw escape reached the terminal: {stdout:?}"
    );
    assert!(stdout.contains("evil\\u{1b}[2J"), "{stdout}");
}

#[test]
fn bad_flag_values_are_usage_errors_naming_the_flag() {
    let (_dir, state) = state(1);
    let cases: [(&[&str], &str); 5] = [
        (&["--since", "yesterday"], "--since"),
        (&["--until", "10 minutes"], "--until"),
        (&["--verdict", "blocked"], "denied"),
        (&["--format", "xml"], "--format"),
        (&["--pid=-3"], "--pid"),
    ];
    for (args, needle) in cases {
        let mut all = vec!["events", "query", "--state-dir", &state];
        all.extend_from_slice(args);
        let out = enforcer(&all);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    let out = enforcer(&[
        "events",
        "query",
        "--state-dir",
        &state,
        "--since",
        "1h",
        "--until",
        "2h",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).1.contains("must be before --until"),
        "{:?}",
        text(&out)
    );
}

#[test]
fn a_missing_store_is_an_error_naming_the_path_and_nothing_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("nowhere");
    for cmd in ["query", "tail"] {
        let out = enforcer(&["events", cmd, "--state-dir", state.to_str().unwrap()]);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(&state.join("events.db").display().to_string()),
            "{stderr}"
        );
        assert!(
            stderr.contains("--state-dir"),
            "says how to fix it: {stderr}"
        );
    }
    assert!(!state.exists());
}

#[test]
fn a_copied_store_reads_without_creating_files_next_to_it() {
    let (dir, state) = state(5);
    let copy = dir.path().join("copy");
    std::fs::create_dir(&copy).unwrap();
    std::fs::copy(Path::new(&state).join("events.db"), copy.join("events.db")).unwrap();
    let copy_s = copy.to_str().unwrap();
    assert_eq!(query(copy_s, &["--verdict", "killed"]), vec![2]);
    let names: Vec<_> = std::fs::read_dir(&copy)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("events.db")]);
}

#[test]
fn a_store_from_a_newer_enforcer_is_refused_clearly() {
    let (_dir, state) = state(1);
    let db = Path::new(&state).join("events.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("PRAGMA user_version = 999").unwrap();
    drop(conn);
    let out = enforcer(&["events", "query", "--state-dir", &state]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("schema version 999") && stderr.contains("newer enforcer"),
        "{stderr}"
    );
}

#[test]
fn tail_follows_events_another_process_writes() {
    let (dir, state) = state(4);
    // Keep a writer connection open, as the running daemon does.
    let db = Path::new(&state).join("events.db");
    let daemon = enforcer::store::Store::open(&db).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_enforcer"))
        .args([
            "events",
            "tail",
            "--format",
            "json",
            "--interval",
            "50ms",
            "--limit",
            "2",
        ])
        .args(["--verdict", "denied,killed", "--state-dir", &state])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let ev = SecurityEvent::from_json(line.as_bytes()).unwrap();
            tx.send(ev.message).unwrap();
        }
    });
    let next = || rx.recv_timeout(Duration::from_secs(10)).unwrap();
    // The backlog: the last two matching events in storage order.
    assert_eq!(
        (next(), next()),
        ("event 0".to_string(), "event 2".to_string())
    );
    // Another process writes; matching events arrive, others do not.
    let more = jsonl(dir.path(), "more.jsonl", 100..108);
    let out = enforcer(&[
        "events",
        "import",
        "--state-dir",
        &state,
        more.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    let start = Instant::now();
    let got: Vec<String> = (0..4).map(|_| next()).collect();
    assert_eq!(got, ["event 100", "event 102", "event 104", "event 106"]);
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "nothing else matches"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    drop(daemon);
}
