//! `enforcer run --policy` on a kernel without BPF LSM (our build machines): network rules
//! are still real denies, through the cgroup socket programs, inside the selected cgroup
//! only; the verdict reaches the event store. On a kernel with BPF LSM the VM suite covers
//! the same rules through the LSM hooks, and this test says so and stops.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failure

mod support;

use std::process::Command;
use support::{egress_policy, forbidden_port, query_events, runnable, start_daemon, TestCgroup};

/// `bash -c` that joins `cgroup` (if any) and opens a TCP connection to addr:port.
fn connect(cgroup: Option<&str>, port: u16) -> std::process::Output {
    let join = cgroup
        .map(|c| format!("echo $$ > {c}/cgroup.procs && "))
        .unwrap_or_default();
    let script = format!("{join}exec bash -c 'exec 3<>/dev/tcp/127.0.0.2/{port}'");
    Command::new("bash").args(["-c", &script]).output().unwrap()
}

#[test]
fn network_rules_are_denied_through_cgroup_hooks_without_bpf_lsm() {
    if !runnable(
        "this kernel has BPF LSM (the VM suite's network:: tests cover it) or no cgroup socket programs",
        |k| k["bpf_lsm"] != true && k["cgroup_sock_addr"] == true,
    ) {
        return;
    }

    let port = forbidden_port();
    let name = format!("enforcer-net-host-{}", std::process::id());
    let cg = TestCgroup::new(&name);
    let cgroup = cg.path.clone();

    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("net.yaml");
    std::fs::write(&policy, egress_policy(&name, "no-port", port)).unwrap();
    let state = dir.path().join("state");
    let (mut daemon, log) = start_daemon(&[
        &"--metrics-address",
        &"",
        &"--policy",
        &policy,
        &"--state-dir",
        &state,
    ])
    .unwrap_or_else(|e| panic!("{e}"));

    let inside = connect(Some(&cgroup), port);
    let outside = connect(None, port);
    Command::new("kill")
        .arg("-TERM")
        .arg(daemon.id().to_string())
        .status()
        .unwrap();
    let status = daemon.wait().unwrap();
    drop(cg);

    assert!(
        status.success(),
        "enforcer exited with {status}:\n{}",
        log.join("\n")
    );
    let inside_err = String::from_utf8_lossy(&inside.stderr);
    assert!(
        !inside.status.success() && inside_err.contains("Operation not permitted"),
        "inside: {inside_err}"
    );
    assert!(
        outside.status.success(),
        "outside: {}",
        String::from_utf8_lossy(&outside.stderr)
    );

    let events = query_events(&state, "denied");
    let e = &events[0];
    assert_eq!(e["rule"], "no-port", "{events:?}");
    assert_eq!(e["class"], "network", "{e}");
    assert_eq!(e["target"]["network"]["dst_ip"], "127.0.0.2", "{e}");
    assert_eq!(e["target"]["network"]["dst_port"], port, "{e}");
}
