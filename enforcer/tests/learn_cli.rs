//! `enforcer learn` as a user runs it: a store filled through the store API as the daemon
//! fills it, the time window, the output file, merging into a policy file, and the errors
//! with their exit codes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failure

use std::path::Path;
use std::process::{Command, Output};

use enforcer::store::{self, Store};
use siem_export::event::{ByteText, Cgroup, EventClass, ExecTarget, FileTarget, Target, Verdict};
use siem_export::{EventId, SecurityEvent, Severity, Timestamp};

const TEMPLATE: &str = include_str!("../../rules/templates/default-deny-namespace.yaml");
const HOUR_NS: i64 = 3_600 * 1_000_000_000;

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

/// An audited event of `hardened`, `hours` before now.
fn audited(i: u32, hours: i64, class: EventClass, target: Target) -> SecurityEvent {
    let now = Timestamp::now().unix_nanos();
    let t = Timestamp::from_unix_nanos(now - hours * HOUR_NS);
    let op = match class {
        EventClass::Exec => "exec",
        _ => "open",
    };
    let mut ev = SecurityEvent::new(t, "node", Verdict::Audited, class, op, Severity::High);
    ev.id = EventId::from_time_and_tail(t, u128::from(i) + 1);
    ev.policy = Some("hardened".into());
    ev.rule = Some("default".into());
    ev.message = "not allowed by the policy's default posture".into();
    ev.cgroup = Some(Cgroup {
        id: 7,
        path: Some(ByteText::new(b"/hardened.slice/app.service".to_vec())),
    });
    ev.target = Some(target);
    ev
}

fn exec(i: u32, hours: i64, path: &str) -> SecurityEvent {
    audited(
        i,
        hours,
        EventClass::Exec,
        Target::Exec(ExecTarget {
            path: ByteText::new(path.as_bytes().to_vec()),
            argv: Vec::new(),
            argv_truncated: false,
        }),
    )
}

fn write(i: u32, hours: i64, path: &str) -> SecurityEvent {
    audited(
        i,
        hours,
        EventClass::File,
        Target::File(FileTarget {
            path: ByteText::new(path.as_bytes().to_vec()),
            flags: Some(0o1 | 0o100),
            mode: None,
            operation: Some("open".into()),
            path_truncated: false,
            second_path: None,
        }),
    )
}

/// A store with a recent week of a service, one old exec, and another policy's events.
fn store(dir: &Path) {
    let mut s = Store::open(&store::path_in(dir)).unwrap();
    let mut evs = vec![
        exec(1, 1, "/usr/bin/app"),
        exec(2, 2, "/usr/bin/app"),
        exec(3, 30, "/usr/bin/old-tool"),
        write(4, 1, "/srv/app/cache/a"),
        write(5, 1, "/srv/app/cache/b"),
        write(6, 1, "/srv/app/cache/c"),
        write(7, 1, "/srv/app/state"),
    ];
    let mut other = exec(8, 1, "/usr/bin/other");
    other.policy = Some("baseline".into());
    let mut allowed = exec(9, 1, "/usr/bin/allowed");
    allowed.verdict = Verdict::Allowed;
    evs.extend([other, allowed]);
    let o = s.insert_batch(&evs).unwrap();
    assert_eq!(o.inserted, evs.len());
}

#[test]
fn learns_a_checked_policy_within_the_window() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path());
    let state = dir.path().to_str().unwrap();
    let out = enforcer(&["learn", "--policy", "hardened", "--state-dir", state]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.contains("      - /usr/bin/app  # 2 events, "),
        "{stdout}"
    );
    assert!(
        stdout.contains("      - /usr/bin/old-tool  # 1 event, "),
        "{stdout}"
    );
    assert!(
        stdout.contains("      - /srv/app/cache/**  # 3 paths, 3 events, "),
        "{stdout}"
    );
    assert!(
        stdout.contains("      - /srv/app/state  # 1 event, "),
        "{stdout}"
    );
    assert!(!stdout.contains("/usr/bin/other") && !stdout.contains("/usr/bin/allowed"));
    assert!(
        stdout.contains("        - /hardened.slice/app.service\n"),
        "{stdout}"
    );
    // What it prints is a policy file that checks.
    let file = dir.path().join("learned.yaml");
    std::fs::write(&file, &stdout).unwrap();
    // Checked for a kernel with BPF LSM, where the policy is meant to run (this host has
    // neither BPF LSM nor kprobes to enforce or record its defaults).
    let kernel = dir.path().join("full.json");
    std::fs::write(
        &kernel,
        r#"{"enforcement":"bpf_lsm","bpf_lsm":true,"btf":true,"ringbuf":true,"kprobes":true,
            "bpf_send_signal":true,"cgroup_sock_addr":true,"lsm_cgroup":false,"d_path":true,
            "lsm_userns_create":true,"tp_btf":true,"checks":[]}"#,
    )
    .unwrap();
    let check = enforcer(&[
        "policy",
        "check",
        file.to_str().unwrap(),
        "--kernel",
        kernel.to_str().unwrap(),
    ]);
    assert!(check.status.success(), "{:?}", text(&check));
    // Same store, same output.
    let again = enforcer(&["learn", "--policy", "hardened", "--state-dir", state]);
    assert_eq!(text(&again).0, stdout);

    // --since leaves the old exec out; --until keeps only it.
    let recent = enforcer(&[
        "learn",
        "--policy",
        "hardened",
        "--since",
        "1d",
        "--state-dir",
        state,
    ]);
    let (recent, _) = text(&recent);
    assert!(
        recent.contains("/usr/bin/app") && !recent.contains("/usr/bin/old-tool"),
        "{recent}"
    );
    let old = enforcer(&[
        "learn",
        "--policy",
        "hardened",
        "--until",
        "1d",
        "--state-dir",
        state,
        "-o",
        file.to_str().unwrap(),
    ]);
    assert_eq!(old.status.code(), Some(0), "{:?}", text(&old));
    let old = std::fs::read_to_string(&file).unwrap();
    assert!(
        old.contains("/usr/bin/old-tool") && !old.contains("/usr/bin/app"),
        "{old}"
    );
}

#[test]
fn merges_into_the_template() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path());
    let policy = dir.path().join("hardened.yaml");
    std::fs::write(&policy, TEMPLATE).unwrap();
    let out = enforcer(&[
        "learn",
        "--policy",
        "hardened",
        "--state-dir",
        dir.path().to_str().unwrap(),
        "--from-policy",
        policy.to_str().unwrap(),
    ]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.starts_with(TEMPLATE.split("    rules:\n").next().unwrap()),
        "{stdout}"
    );
    assert!(stdout.contains("      - name: learned-exec\n"));
    assert!(stdout.contains("      - name: reads\n"));
    let file = dir.path().join("merged.yaml");
    std::fs::write(&file, &stdout).unwrap();
    let test = enforcer(&["policy", "test", file.to_str().unwrap()]);
    assert!(test.status.success(), "{:?}", text(&test));
}

#[test]
fn errors_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_str().unwrap();
    // No store.
    let out = enforcer(&["learn", "--policy", "hardened", "--state-dir", state]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("no event store at") && stderr.contains("--state-dir"),
        "{stderr}"
    );

    store(dir.path());
    // A typo: the known policies and a suggestion.
    let out = enforcer(&["learn", "--policy", "hardend", "--state-dir", state]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("no events of policy `hardend`")
            && stderr.contains("`baseline`, `hardened`")
            && stderr.contains("did you mean `hardened`?"),
        "{stderr}"
    );
    // Nothing in the window: exit code 12.
    let out = enforcer(&[
        "learn",
        "--policy",
        "hardened",
        "--since",
        "10m",
        "--state-dir",
        state,
    ]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(12), "{stderr}");
    assert!(
        stdout.is_empty() && stderr.contains("nothing to learn"),
        "{stderr}"
    );
    // A bad duration, a reversed window: usage.
    let out = enforcer(&[
        "learn",
        "--policy",
        "hardened",
        "--since",
        "yesterday",
        "--state-dir",
        state,
    ]);
    assert_eq!(out.status.code(), Some(2));
    let out = enforcer(&[
        "learn",
        "--policy",
        "hardened",
        "--since",
        "1h",
        "--until",
        "2h",
        "--state-dir",
        state,
    ]);
    assert_eq!(out.status.code(), Some(2));
    // A policy file that does not define the policy.
    let policy = dir.path().join("p.yaml");
    std::fs::write(
        &policy,
        "policies:\n  - name: other\n    select: {host: true}\n    mode: audit\n",
    )
    .unwrap();
    let out = enforcer(&[
        "learn",
        "--policy",
        "hardened",
        "--state-dir",
        state,
        "--from-policy",
        policy.to_str().unwrap(),
    ]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(7));
    assert!(
        stderr.contains("has no policy named `hardened` (it has: other)"),
        "{stderr}"
    );
}

/// More events than one page of the store query, with runs of equal times across the page
/// boundaries: each is counted once.
#[test]
fn counts_every_event_across_pages() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(&store::path_in(dir.path())).unwrap();
    let base = Timestamp::now().unix_nanos() - HOUR_NS;
    let evs: Vec<SecurityEvent> = (0..12_001u32)
        .map(|i| {
            let mut ev = exec(i, 0, "/usr/bin/app");
            // Seven events share each time.
            ev.time = Timestamp::from_unix_nanos(base + i64::from(i / 7) * 1_000_000);
            ev.id = EventId::from_time_and_tail(ev.time, u128::from(i) + 1);
            ev
        })
        .collect();
    assert_eq!(s.insert_batch(&evs).unwrap().inserted, evs.len());
    drop(s);
    let out = enforcer(&[
        "learn",
        "--policy",
        "hardened",
        "--state-dir",
        dir.path().to_str().unwrap(),
    ]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("from 12001 events"), "{stdout}");
    assert!(
        stdout.contains("      - /usr/bin/app  # 12001 events, "),
        "{stdout}"
    );
}
