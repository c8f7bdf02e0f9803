//! `enforcer run` on the host (no BPF LSM on our build machines): it must say
//! plainly what it cannot do, keep running, and stop cleanly on SIGTERM; and
//! bad input must fail with the documented exit codes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failure

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn enforcer() -> Command {
    Command::new(env!("CARGO_BIN_EXE_enforcer"))
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

#[test]
fn run_rejects_a_missing_cgroup_with_the_policy_exit_code() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let out = enforcer()
        .args([
            "run",
            "--deny-open",
            "/etc/hostname",
            "--cgroup",
            "/sys/fs/cgroup/definitely-not-here",
        ])
        .arg("--state-dir")
        .arg(state.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("definitely-not-here") && err.contains("does not exist"),
        "{err}"
    );
}

#[test]
fn run_rejects_a_relative_rule_path() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let out = enforcer()
        .args(["run", "--deny-open", "etc/shadow", "--cgroup"])
        .arg(cgroup2_root())
        .arg("--state-dir")
        .arg(state.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`etc/shadow` is relative"));
}

#[test]
fn run_needs_a_cgroup_for_its_rules() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let out = enforcer()
        .args(["run", "--deny-open", "/etc/shadow"])
        .arg("--state-dir")
        .arg(state.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn run_rejects_an_unwritable_state_dir() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    // A path below a regular file can never be created, even by root.
    let file = tempfile::NamedTempFile::new().unwrap();
    let out = enforcer()
        .args(["run", "--mode", "audit"])
        .arg("--state-dir")
        .arg(file.path().join("state"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// On a kernel that refuses LSM programs, `run` says so, becomes ready, and
/// exits 0 on SIGTERM. On a kernel that allows them it attaches instead;
/// both must reach `enforcer ready` and stop cleanly.
#[test]
fn run_reports_ready_and_stops_on_sigterm() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let cgroup_root = cgroup2_root();
    let mut child = enforcer()
        // No metrics server: tests may run beside another daemon on the default port.
        .args([
            "run",
            "--metrics-address",
            "",
            "--deny-open",
            "/etc/hostname",
            "--cgroup",
        ])
        .arg(&cgroup_root)
        .arg("--mode")
        .arg("audit")
        .arg("--state-dir")
        .arg(state.path())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.contains("enforcer ready")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!("no `enforcer ready` within 30 s:\n{}", seen.join("\n"));
            }
        }
    }
    let all = seen.join("\n");
    if all.contains("attached=false") {
        assert!(all.contains("refuses BPF LSM programs"), "{all}");
        assert!(all.contains("cargo xtask vm run"), "{all}");
    }
    nix_kill_term(child.id());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(state.path().join("events.jsonl").exists());
}

fn nix_kill_term(pid: u32) {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

fn cgroup2_root() -> String {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-")?;
            (f.get(sep + 1) == Some(&"cgroup2")).then(|| f[4].to_string())
        })
        .expect("cgroup2 mounted")
}
