//! `enforcer run` on the host (no BPF LSM on our build machines): it must say
//! plainly what it cannot do, keep running, and stop cleanly on SIGTERM; and
//! bad input must fail with the documented exit codes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failure

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;
use support::{cgroup2_root, enforcer, is_root, wait_ready};

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
    let all = wait_ready(&mut child, Duration::from_secs(30))
        .unwrap_or_else(|log| panic!("{log}"))
        .join("\n");
    // On a kernel that refuses LSM programs the daemon must say so and point to the VM.
    let doctor = enforcer().args(["doctor", "--json"]).output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&doctor.stdout).unwrap();
    if report["bpf_lsm"] == false {
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
