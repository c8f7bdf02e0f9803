//! `enforcer run` with an `alert` policy on the host. The host kernel refuses BPF LSM but
//! loads `tp_btf` programs, so the daemon runs the process tracepoints alone: a shell in the
//! policy's cgroup that runs `/bin/echo` fires the alert, with the process enriched from the
//! table the exec and fork records keep; the same shell outside the cgroup fires nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failure

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{cgroup2_root, enforcer, is_root, query_events, wait_ready};

/// A cgroup2 directory, removed when dropped.
struct TestCgroup(std::path::PathBuf);

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// `/bin/sh` moves itself into `cgroup` (when given), then execs a shell that runs
/// `/bin/echo MARKER` in a child. Returns the shell's pid.
fn workload(cgroup: Option<&std::path::Path>, marker: &str) -> u32 {
    let mv = cgroup.map_or(String::new(), |c| {
        format!("echo $$ > {}/cgroup.procs && ", c.display())
    });
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("{mv}exec /bin/sh -c '/bin/echo {marker}; true'"))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    assert!(child.wait().unwrap().success());
    pid
}

#[test]
fn an_alert_rule_fires_on_exec_records_in_its_cgroup_only() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let name = format!("enf-alert-host-{}", std::process::id());
    let dir = std::path::Path::new(&cgroup2_root()).join(&name);
    std::fs::create_dir(&dir).unwrap();
    let _cg = TestCgroup(dir.clone());
    let state = tempfile::tempdir().unwrap();
    let policy = state.path().join("alert.yaml");
    std::fs::write(
        &policy,
        format!(
            "policies:
  - name: detect
    select: {{cgroups: [/{name}]}}
    mode: enforce
    rules:
      - name: shell-runs-echo
        message: a shell ran echo
        severity: high
        tags: [T1059.004]
        action: alert
        condition: evt.class = exec and proc.name = sh and exec.path regex '^/bin/ech[o]$'
"
        ),
    )
    .unwrap();
    let mut daemon = enforcer()
        .args(["run", "--metrics-address", ""])
        .arg("--policy")
        .arg(&policy)
        .arg("--state-dir")
        .arg(state.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = wait_ready(&mut daemon, Duration::from_secs(60)).unwrap();
    let joined = log.join("\n");
    assert!(
        joined.contains("enf_proc_exec") && !joined.contains("enf_file_open"),
        "only the process programs are attached here: {joined}"
    );
    assert!(joined.contains("`detect/shell-runs-echo`"), "{joined}");

    workload(None, "enf-alert-outside");
    let shell = workload(Some(&dir), "enf-alert-inside");

    let deadline = Instant::now() + Duration::from_secs(10);
    let mut found = Vec::new();
    while found.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        found = query_events(state.path(), "alerted");
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(daemon.wait().unwrap().success());
    let all = query_events(state.path(), "alerted");
    assert_eq!(all.len(), 1, "one alert, from inside the cgroup: {all:#?}");
    let a = &all[0];
    assert_eq!(a["policy"], "detect");
    assert_eq!(a["rule"], "shell-runs-echo");
    assert_eq!(a["message"], "a shell ran echo");
    assert_eq!(a["severity"], "high");
    assert_eq!(a["class"], "exec");
    assert_eq!(a["target"]["exec"]["path"], "/bin/echo");
    assert_eq!(a["target"]["exec"]["argv"][1], "enf-alert-inside");
    // The caller: the shell's child before it exec'd echo, known from the fork record.
    let p = &a["process"];
    assert_eq!(p["exe"], "/bin/sh");
    assert_eq!(p["ancestors"][0]["pid"], shell);
    assert!(p["exec_id"].as_str().is_some_and(|s| !s.is_empty()), "{a}");
    assert_eq!(a["cgroup"]["path"], format!("/{name}").as_str(), "{a}");
}
