//! `enforcer run --policy` with an exec rule on a kernel without BPF LSM (our build machines):
//! `tp_btf/sched_process_exec` kills the denied program before it runs its first instruction,
//! inside the selected cgroup only, and the verdict reaches the event store marked as the
//! fallback. On a kernel with BPF LSM the VM suite covers exec rules through
//! `lsm/bprm_check_security`, and this test says so and stops.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failure

mod support;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;

use std::time::Duration;
use support::{all_events, bash_in, cgroup2_root, doctor_as_root, enforcer, spawn_run, wait_ready};

/// Runs `shell -c 'echo ran > marker'`, in `cgroup` if any.
fn run_copy(cgroup: Option<&str>, shell: &Path, marker: &Path) -> std::process::ExitStatus {
    let script = format!(
        "exec {} -c 'echo ran > {}'",
        shell.display(),
        marker.display()
    );
    bash_in(cgroup, &script).status().unwrap()
}

#[test]
fn exec_rules_kill_at_exec_without_bpf_lsm() {
    let Some(report) = doctor_as_root() else {
        return;
    };
    if report["bpf_lsm"] == true {
        eprintln!(
            "skipped: this kernel has BPF LSM, exec rules are refused by lsm/bprm_check_security \
             (the VM suite covers that)"
        );
        return;
    }
    if report["tp_btf"] != true || report["bpf_send_signal"] != true {
        eprintln!(
            "skipped: this host cannot load the exec fallback (doctor: tp_btf={}, \
             bpf_send_signal={})",
            report["tp_btf"], report["bpf_send_signal"]
        );
        return;
    }

    let dir = tempfile::tempdir().unwrap();
    // A copy of the shell under its own name: the rule denies the copy, not /bin/sh.
    let denied = dir.path().join("denied-sh");
    std::fs::copy("/bin/sh", &denied).unwrap();
    // A script: the kernel runs its interpreter (/bin/sh, allowed); the rule names the script.
    let script = dir.path().join("denied-script");
    let script_marker = dir.path().join("script-ran");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho ran > {}\n", script_marker.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let name = format!("enforcer-exec-host-{}", std::process::id());
    let cgroup = format!("{}/{name}", cgroup2_root());
    std::fs::create_dir(&cgroup).unwrap();

    let policy = dir.path().join("exec.yaml");
    std::fs::write(
        &policy,
        format!(
            "policies:
  - name: jobs
    select: {{cgroups: [/{name}]}}
    mode: enforce
    rules:
      - name: no-copied-shell
        message: the copied shell runs nowhere
        action: deny
        allow_downgrade: true
        exec: {{path: {}}}
      - name: no-script
        action: kill
        exec: {{path: {}}}
",
            denied.display(),
            script.display()
        ),
    )
    .unwrap();

    // Without the opt-in the deny is refused before anything loads, naming the rule.
    let strict = dir.path().join("strict.yaml");
    let text = std::fs::read_to_string(&policy).unwrap();
    std::fs::write(&strict, text.replace("        allow_downgrade: true\n", "")).unwrap();
    let refused = enforcer()
        .args(["run", "--metrics-address", ""])
        .arg("--policy")
        .arg(&strict)
        .arg("--state-dir")
        .arg(dir.path().join("strict-state"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success()
            && err.contains("rule `no-copied-shell` (`deny`) cannot be enforced on this kernel")
            && err.contains("allow_downgrade"),
        "{err}"
    );

    let state = dir.path().join("state");
    let mut daemon = spawn_run(&policy, &state);
    let log = match wait_ready(&mut daemon, Duration::from_secs(30)) {
        Ok(log) => log,
        Err(e) => {
            let _ = std::fs::remove_dir(&cgroup);
            panic!("{e}");
        }
    };

    let inside_marker = dir.path().join("inside");
    let outside_marker = dir.path().join("outside");
    let inside = run_copy(Some(&cgroup), &denied, &inside_marker);
    let outside = run_copy(None, &denied, &outside_marker);
    let script_run = bash_in(Some(&cgroup), &format!("exec {}", script.display()))
        .status()
        .unwrap();
    // Another program in the cgroup is not touched.
    let other = bash_in(Some(&cgroup), "exec /bin/true").status().unwrap();
    // SIGTERM: the daemon stops cleanly and flushes its store.
    terminate(daemon.id());
    let status = daemon.wait().unwrap();
    let _ = std::fs::remove_dir(&cgroup);

    let log = log.join("\n");
    assert!(status.success(), "enforcer exited with {status}:\n{log}");
    assert!(
        log.contains("exec rule `no-copied-shell` runs without BPF LSM"),
        "{log}"
    );
    assert_eq!(inside.signal(), Some(9), "inside: {inside}");
    assert!(
        !inside_marker.exists(),
        "the killed program ran: it wrote its marker"
    );
    assert!(outside.success(), "outside: {outside}");
    assert!(outside_marker.exists(), "the program did not run outside");
    assert!(other.success(), "another program in the cgroup: {other}");
    assert_eq!(script_run.signal(), Some(9), "script: {script_run}");
    assert!(!script_marker.exists(), "the killed script ran");

    let events = all_events(&state);
    let all = events.as_array().unwrap();
    assert_eq!(all.len(), 2, "{events}");
    let by_rule = |rule: &str| {
        all.iter()
            .find(|e| e["rule"] == rule)
            .unwrap_or_else(|| panic!("no event of `{rule}`: {events}"))
    };
    let s = by_rule("no-script");
    assert_eq!(s["verdict"], "killed", "{s}");
    assert_eq!(
        s["target"]["exec"]["path"],
        script.display().to_string(),
        "{s}"
    );
    let e = by_rule("no-copied-shell");
    assert_eq!(e["rule"], "no-copied-shell", "{e}");
    assert_eq!(e["verdict"], "killed", "{e}");
    assert_eq!(e["class"], "exec", "{e}");
    assert_eq!(
        e["target"]["exec"]["path"],
        denied.display().to_string(),
        "{e}"
    );
    assert!(
        e["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "enforcement:killed_at_exec"),
        "{e}"
    );
}

fn terminate(pid: u32) {
    bash_in(None, &format!("kill -TERM {pid}"))
        .status()
        .unwrap();
}
