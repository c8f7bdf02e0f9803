//! Policy hot reload on the build machine: the network rules run through the cgroup socket
//! programs here (through BPF LSM on a kernel that has it), so what the kernel enforces can be
//! checked after each reload. A broken edit keeps the running policy and counts a failed
//! reload; a fixed edit takes over; SIGHUP reloads; `enforcer status` reports it all, and says
//! when no daemon runs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failure

mod support;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::{
    egress_policy, enforcer, forbidden_port, runnable, start_daemon, wait_until, TestCgroup,
};

/// `bash -c` that joins `cgroup` and opens a TCP connection to 127.0.0.2:port.
fn connects(cgroup: &str, port: u16) -> bool {
    let script = format!(
        "echo $$ > {cgroup}/cgroup.procs && exec bash -c 'exec 3<>/dev/tcp/127.0.0.2/{port}'"
    );
    let out = Command::new("bash").args(["-c", &script]).output().unwrap();
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("Operation not permitted"),
            "connect failed otherwise: {err}"
        );
    }
    out.status.success()
}

/// Network rules are enforced here: through BPF LSM or the cgroup socket programs.
fn can_enforce() -> bool {
    runnable(
        "this kernel has neither BPF LSM nor cgroup socket programs",
        |k| k["bpf_lsm"] == true || k["cgroup_sock_addr"] == true,
    )
}

fn policy(name: &str, port: u16) -> String {
    egress_policy(name, &format!("no-port-{port}"), port)
}

fn status(state: &Path) -> (Option<i32>, serde_json::Value) {
    let out = enforcer()
        .args(["status", "--json", "--state-dir"])
        .arg(state)
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code(), v)
}

/// Waits until the daemon's status says `pred`.
fn wait_status(state: &Path, what: &str, pred: impl Fn(&serde_json::Value) -> bool) {
    let mut last = serde_json::Value::Null;
    let held = wait_until(Duration::from_secs(30), || {
        last = status(state).1;
        pred(&last["daemon"])
    });
    assert!(held, "no {what} within 30 s: {last:#}");
}
fn signal(daemon: &Child, sig: &str) {
    assert!(Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(daemon.id().to_string())
        .status()
        .unwrap()
        .success());
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn scrape(port: u16) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn edits_and_sighup_reload_and_a_broken_edit_keeps_the_running_policy() {
    if !can_enforce() {
        return;
    }
    let (first, second) = (forbidden_port(), forbidden_port());
    let name = format!("enforcer-reload-host-{}", std::process::id());
    let cgroup = TestCgroup::new(&name);

    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    let file = policies.join("net.yaml");
    std::fs::write(&file, policy(&name, first)).unwrap();
    let state = dir.path().join("state");
    let metrics = free_port();
    let (mut daemon, log) = start_daemon(&[
        &"--metrics-address",
        &format!("127.0.0.1:{metrics}"),
        &"--policy",
        &policies,
        &"--state-dir",
        &state,
    ])
    .unwrap_or_else(|e| panic!("{e}"));

    let (code, v) = status(&state);
    assert_eq!(code, Some(0), "{v:#}\n{}", log.join("\n"));
    assert_eq!(v["alive"], true, "{v:#}");
    assert_eq!(v["daemon"]["generation"], 1, "{v:#}");
    assert_eq!(
        v["daemon"]["plan"]["policies"][0]["name"], "egress",
        "{v:#}"
    );
    assert_eq!(v["daemon"]["plan"]["policies"][0]["rules"], 1, "{v:#}");
    assert!(connects(&cgroup.path, second));
    assert!(
        !connects(&cgroup.path, first),
        "the first port must be denied"
    );

    // A broken edit, saved the way editors do: a new file renamed over the old one.
    let tmp = policies.join(".net.yaml.tmp");
    std::fs::write(&tmp, "policies:\n  - name: egress\n    select: {cgroups: [/x]}\n    rules: [{name: r, action: deny, nework: {}}]\n").unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    wait_status(&state, "failed reload", |d| d["reloads_failed"] == 1);
    let (_, v) = status(&state);
    let d = &v["daemon"];
    assert_eq!(d["generation"], 1, "{v:#}");
    let err = &d["last_reload_error"];
    assert_eq!(err["trigger"], "policy files changed", "{v:#}");
    // The diagnostics name the file, line and column.
    let at = format!("{}:4:", file.display());
    assert!(
        err["details"].as_str().unwrap().contains(&at),
        "no `{at}` in {v:#}"
    );
    assert!(
        !connects(&cgroup.path, first),
        "the running policy must stay in force after a broken edit"
    );
    let text = scrape(metrics);
    assert!(
        text.contains("enforcer_policy_reloads_total{outcome=\"failed\"} 1"),
        "{text}"
    );
    assert!(text.contains("enforcer_policy_generation 1"), "{text}");

    // The fixed edit takes over: the second port is denied, the first one no more.
    std::fs::write(&tmp, policy(&name, second)).unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    wait_status(&state, "reload", |d| d["generation"] == 2);
    let (_, v) = status(&state);
    assert_eq!(v["daemon"]["reloads_ok"], 1, "{v:#}");
    assert!(v["daemon"]["last_reload_error"].is_null(), "{v:#}");
    assert!(
        !connects(&cgroup.path, second),
        "the new rule must be in force"
    );
    assert!(connects(&cgroup.path, first), "the old rule must be gone");

    // SIGHUP reloads the same files.
    signal(&daemon, "HUP");
    wait_status(&state, "SIGHUP reload", |d| d["generation"] == 3);
    assert!(!connects(&cgroup.path, second));
    let text = scrape(metrics);
    assert!(
        text.contains("enforcer_policy_reloads_total{outcome=\"ok\"} 2"),
        "{text}"
    );
    assert!(text.contains("enforcer_policy_generation 3"), "{text}");

    // The text form, while it runs.
    let out = enforcer()
        .args(["status", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("daemon: running"), "{text}");
    assert!(text.contains("generation 3"), "{text}");
    assert!(text.contains("2 ok, 1 failed"), "{text}");

    signal(&daemon, "TERM");
    let exit = daemon.wait().unwrap();
    assert_eq!(exit.code(), Some(0));
    // The daemon's verdicts were named after the rule of the plan that decided them.
    let query = enforcer()
        .args(["events", "query", "--format", "json", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    let events: serde_json::Value = serde_json::from_slice(&query.stdout).unwrap();
    let rules: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["rule"].as_str().unwrap())
        .collect();
    assert!(
        rules.contains(&format!("no-port-{first}").as_str()),
        "{rules:?}"
    );
    assert!(
        rules.contains(&format!("no-port-{second}").as_str()),
        "{rules:?}"
    );

    let (code, v) = status(&state);
    assert_eq!(code, Some(11), "{v:#}");
    assert_eq!(v["alive"], false, "{v:#}");
    assert_eq!(v["daemon"]["running"], false, "{v:#}");
}

/// Waits until the daemon's log file holds `needle`; returns the log.
fn wait_log(log: &Path, needle: &str) -> String {
    let mut text = String::new();
    let held = wait_until(Duration::from_secs(30), || {
        text = std::fs::read_to_string(log).unwrap_or_default();
        text.contains(needle)
    });
    assert!(held, "no `{needle}` within 30 s:\n{text}");
    text
}
#[test]
fn sighup_rereads_the_config_and_a_broken_config_keeps_the_running_one() {
    if !can_enforce() {
        return;
    }
    let port = forbidden_port();
    let name = format!("enforcer-config-reload-{}", std::process::id());
    let cgroup = TestCgroup::new(&name);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("net.yaml");
    std::fs::write(&file, policy(&name, port)).unwrap();
    let state = dir.path().join("state");
    let (metrics, other) = (free_port(), free_port());
    let config = dir.path().join("config.toml");
    let good = |days: u32, address: u16| {
        format!("[store]\nmax_age_days = {days}\n\n[metrics]\naddress = \"127.0.0.1:{address}\"\n")
    };
    std::fs::write(&config, good(30, metrics)).unwrap();
    let log = dir.path().join("daemon.log");
    let mut daemon = enforcer()
        .arg("run")
        .arg("--config")
        .arg(&config)
        .arg("--policy")
        .arg(&file)
        .arg("--state-dir")
        .arg(&state)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let daemon = Kill(&mut daemon);
    wait_log(&log, "enforcer ready");
    assert!(!connects(&cgroup.path, port));

    // A misspelt key: logged with file, line and column; counted; nothing changes.
    std::fs::write(&config, "[store]\nmax_age_days = 7\nmax_agedays = 3\n").unwrap();
    signal(&*daemon.0, "HUP");
    let at = format!("{}:3:1", config.display());
    let text = wait_log(&log, "config reload failed");
    assert!(text.contains(&at), "no `{at}` in:\n{text}");
    // The policies are read again all the same.
    wait_status(&state, "SIGHUP reload", |d| d["generation"] == 2);
    let scraped = scrape(metrics);
    assert!(
        scraped.contains("enforcer_policy_reloads_total{outcome=\"failed\"} 1"),
        "{scraped}"
    );
    assert!(!connects(&cgroup.path, port), "the policy stays in force");

    // A valid edit: retention applies live, the metrics address only at a restart.
    std::fs::write(&config, good(7, other)).unwrap();
    signal(&*daemon.0, "HUP");
    wait_status(&state, "second SIGHUP reload", |d| d["generation"] == 3);
    let text = wait_log(&log, "config reloaded");
    assert!(text.contains("store.max_age_days"), "{text}");
    let text = wait_log(&log, "config key `metrics.address` changed");
    assert!(text.contains("restarts"), "{text}");
    assert!(!text.contains("`store.max_age_days` changed"), "{text}");
    // Still served where it was.
    let scraped = scrape(metrics);
    assert!(
        scraped.contains("enforcer_policy_reloads_total{outcome=\"failed\"} 1"),
        "{scraped}"
    );
    assert!(
        scraped.contains("enforcer_policy_reloads_total{outcome=\"ok\"} 2"),
        "{scraped}"
    );
    signal(&*daemon.0, "TERM");
    let exit = daemon.0.wait().unwrap();
    assert_eq!(exit.code(), Some(0));
}

#[test]
fn status_without_a_daemon_exits_11() {
    let dir = tempfile::tempdir().unwrap();
    let out = enforcer()
        .args(["status", "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(11), "{text}");
    assert!(text.contains("daemon: not running"), "{text}");
    assert!(text.contains("store: none yet"), "{text}");
}
