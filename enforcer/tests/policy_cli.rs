//! `enforcer policy check|compile|test` as a user runs them: exit codes, the rendered
//! diagnostics, JSON output, and kernel-dependent compilation.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failure

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn enforcer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_enforcer"))
        .args(args)
        .output()
        .unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Kernel feature reports as `enforcer doctor --json` prints them (a superset is fine).
fn kernels(dir: &Path) -> (String, String) {
    let full = write(
        dir,
        "full.json",
        r#"{"enforcement":"bpf_lsm","bpf_lsm":true,"btf":true,"ringbuf":true,"kprobes":true,
            "bpf_send_signal":true,"cgroup_sock_addr":true,"lsm_cgroup":false,"d_path":true,
            "lsm_userns_create":true,"checks":[]}"#,
    );
    let no_lsm = write(
        dir,
        "no-lsm.json",
        r#"{"enforcement":"degraded","bpf_lsm":false,"btf":true,"ringbuf":true,
            "bpf_send_signal":true,"cgroup_sock_addr":true}"#,
    );
    (full.display().to_string(), no_lsm.display().to_string())
}

const GOOD: &str = "\
policies:
  - name: web
    select: {cgroups: [/system.slice/nginx.service]}
    mode: enforce
    rules:
      - name: no-shadow
        message: shadow read
        action: deny
        file: {path: /etc/shadow, ops: [read]}
tests:
  - name: cat is denied
    process: /usr/bin/cat
    cgroup: /system.slice/nginx.service
    file: {op: read, path: /etc/shadow}
    expect: {verdict: deny, rule: web/no-shadow}
  - name: elsewhere is fine
    process: /usr/bin/cat
    cgroup: /system.slice/cron.service
    file: {op: read, path: /etc/shadow}
    expect: allow
";

#[test]
fn check_accepts_a_valid_file() {
    let dir = tempfile::tempdir().unwrap();
    let (full, _) = kernels(dir.path());
    let good = write(dir.path(), "good.yaml", GOOD);
    let out = enforcer(&["policy", "check", good.to_str().unwrap(), "--kernel", &full]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_reports_every_error_with_position_caret_and_help() {
    let dir = tempfile::tempdir().unwrap();
    let (full, _) = kernels(dir.path());
    let bad = write(
        dir.path(),
        "bad.yaml",
        "policies:\n  - name: web\n    selct: {host: true}\n    mode: enforse\n",
    );
    let out = enforcer(&["policy", "check", bad.to_str().unwrap(), "--kernel", &full]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let path = bad.display();
    assert!(
        err.contains(&format!(
            "{path}:3:5: error[E0201]: unknown key `selct` in a policy"
        )),
        "{err}"
    );
    assert!(
        err.contains(" 3 |     selct: {host: true}\n   |     ^^^^^\n"),
        "{err}"
    );
    assert!(err.contains("help: did you mean `select`?"), "{err}");
    assert!(
        err.contains(&format!(
            "{path}:4:11: error[E0103]: unknown mode `enforse`"
        )),
        "{err}"
    );
    assert!(err.contains("help: did you mean `enforce`?"), "{err}");
}

#[test]
fn check_speaks_json_for_editors() {
    let dir = tempfile::tempdir().unwrap();
    let (full, _) = kernels(dir.path());
    let bad = write(
        dir.path(),
        "bad.yaml",
        "policies:\n  - name: web\n    selct: {host: true}\n    mode: audit\n",
    );
    let out = enforcer(&[
        "policy",
        "check",
        bad.to_str().unwrap(),
        "--kernel",
        &full,
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let diags: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let unknown = diags
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["code"] == "E0201")
        .unwrap();
    assert_eq!(unknown["line"], 3);
    assert_eq!(unknown["column"], 5);
    assert_eq!(unknown["severity"], "error");
}

#[test]
fn a_usage_error_exits_2() {
    assert_eq!(enforcer(&["policy", "check"]).status.code(), Some(2));
    assert_eq!(enforcer(&["policy", "frobnicate"]).status.code(), Some(2));
}

#[test]
fn test_runs_the_cases_and_ends_with_the_counts() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "good.yaml", GOOD);
    let out = enforcer(&["policy", "test", good.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert_eq!(stdout.lines().last(), Some("2 passed, 0 failed"));

    let wrong = write(
        dir.path(),
        "wrong.yaml",
        &GOOD.replace("expect: allow", "expect: deny"),
    );
    let out = enforcer(&["policy", "test", wrong.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert_eq!(stdout.lines().last(), Some("1 passed, 1 failed"));
    assert!(stdout.contains("elsewhere is fine"), "{stdout}");
}

#[test]
fn the_builtin_rule_library_passes_its_tests() {
    let out = enforcer(&["policy", "test", "--builtin"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout
            .lines()
            .last()
            .unwrap()
            .ends_with(" passed, 0 failed"),
        "{stdout}"
    );
}

#[test]
fn compile_depends_on_the_kernel() {
    let dir = tempfile::tempdir().unwrap();
    let (full, no_lsm) = kernels(dir.path());
    let good = write(dir.path(), "good.yaml", GOOD);
    let out = enforcer(&[
        "policy",
        "compile",
        good.to_str().unwrap(),
        "--kernel",
        &full,
        "--format",
        "json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["rules"][0]["enforcement"], "lsm_deny");
    assert!(
        plan["hooks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["program"] == "lsm/file_open"),
        "{plan}"
    );

    // Without BPF LSM a file deny would be weaker: an error unless the user opts in.
    let out = enforcer(&[
        "policy",
        "compile",
        good.to_str().unwrap(),
        "--kernel",
        &no_lsm,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error[E0801]") && err.contains("allow_downgrade"),
        "{err}"
    );

    let out = enforcer(&[
        "policy",
        "compile",
        good.to_str().unwrap(),
        "--kernel",
        &full,
        "--explain",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("rule `no-shadow`") && text.contains("denied by BPF LSM"),
        "{text}"
    );
}

#[test]
fn a_kernel_report_that_is_not_json_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "good.yaml", GOOD);
    let junk = write(dir.path(), "junk.json", "not json");
    let out = enforcer(&[
        "policy",
        "compile",
        good.to_str().unwrap(),
        "--kernel",
        junk.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("enforcer doctor --json"));
}
