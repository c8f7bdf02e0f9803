//! What the host tests share: the binary under test, root detection, the cgroup2 mount, and
//! starting a daemon until it says it is ready.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The binary, with pinning off: these tests start daemons in parallel on the build machine,
/// and a pinned plan would outlive its test (pinning is tested in the VM, e2e `pinning`).
pub fn enforcer() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_enforcer"));
    c.env("ENFORCER_PIN_ROOT", "");
    c
}

/// The effective uid is 0 (`Uid:` line of /proc/self/status: real, effective, ...).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// Where cgroup2 is mounted (`/sys/fs/cgroup/unified` on hybrid hosts).
pub fn cgroup2_root() -> String {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-")?;
            (f.get(sep + 1) == Some(&"cgroup2")).then(|| f[4].to_string())
        })
        .expect("cgroup2 mounted")
}

/// Reads `daemon`'s piped stderr until a line says `enforcer ready`; returns the lines so far
/// (the rest keeps going to a thread). On a timeout or an early exit the daemon is killed and
/// the error carries its log.
pub fn wait_ready(daemon: &mut Child, limit: Duration) -> Result<Vec<String>, String> {
    let stderr = daemon.stderr.take().expect("stderr is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + limit;
    let mut log = Vec::new();
    while !log.iter().any(|l: &String| l.contains("enforcer ready")) {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => log.push(line),
            Err(_) => {
                let _ = daemon.kill();
                let _ = daemon.wait();
                return Err(format!(
                    "no `enforcer ready` within {limit:?}:\n{}",
                    log.join("\n")
                ));
            }
        }
    }
    Ok(log)
}

/// `enforcer doctor --json` of this host, or `None` (said on stderr) when not root: the
/// host tests that load programs need root.
pub fn doctor_as_root() -> Option<serde_json::Value> {
    if !is_root() {
        eprintln!("skipped: needs root");
        return None;
    }
    let doctor = enforcer().args(["doctor", "--json"]).output().unwrap();
    Some(serde_json::from_slice(&doctor.stdout).unwrap())
}

/// `enforcer run --policy POLICY --state-dir STATE` without metrics, its stderr piped for
/// [`wait_ready`].
pub fn spawn_run(policy: &std::path::Path, state: &std::path::Path) -> Child {
    enforcer()
        .args(["run", "--metrics-address", ""])
        .arg("--policy")
        .arg(policy)
        .arg("--state-dir")
        .arg(state)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// `bash -c SCRIPT`, run after moving the shell into `cgroup` (a cgroup2 directory) if any.
pub fn bash_in(cgroup: Option<&str>, script: &str) -> Command {
    let join = cgroup
        .map(|c| format!("echo $$ > {c}/cgroup.procs && "))
        .unwrap_or_default();
    let mut cmd = Command::new("bash");
    cmd.args(["-c", &format!("{join}{script}")]);
    cmd
}

/// Every event of the store in `state`, as `enforcer events query --format json` prints them.
pub fn all_events(state: &std::path::Path) -> serde_json::Value {
    let query = enforcer()
        .args(["events", "query", "--format", "json", "--state-dir"])
        .arg(state)
        .output()
        .unwrap();
    serde_json::from_slice(&query.stdout).unwrap()
}

/// `enforcer doctor --json` on this machine.
pub fn doctor() -> serde_json::Value {
    let out = enforcer().args(["doctor", "--json"]).output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A destination on 127.0.0.2 that accepts every connection, so that only a policy can make
/// a connect there fail; returns its port.
pub fn forbidden_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || for _ in listener.incoming() {});
    port
}

/// A policy `egress` for cgroup `/{name}` whose rule `rule` denies TCP connects to
/// 127.0.0.2:`port`.
pub fn egress_policy(name: &str, rule: &str, port: u16) -> String {
    format!(
        "policies:
  - name: egress
    select: {{cgroups: [/{name}]}}
    mode: enforce
    rules:
      - name: {rule}
        message: connect to a forbidden port
        action: deny
        network: {{ops: [connect], protocol: tcp, cidr: [127.0.0.2/32], ports: [{port}]}}
"
    )
}

/// A cgroup `name` made under the cgroup2 root, removed on drop (retried for a while: its
/// processes may still be leaving).
pub struct TestCgroup {
    pub path: String,
}

impl TestCgroup {
    pub fn new(name: &str) -> Self {
        let path = format!("{}/{name}", cgroup2_root());
        std::fs::create_dir(&path).unwrap();
        TestCgroup { path }
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for _ in 0..50 {
            if std::fs::remove_dir(&self.path).is_ok() || !std::path::Path::new(&self.path).exists()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("could not remove the test cgroup {}", self.path);
    }
}

/// Whether this machine can run a daemon test: root, and a kernel whose `doctor --json`
/// report satisfies `kernel`; otherwise says `skipped: {why}` on stderr.
pub fn runnable(why: &str, kernel: impl Fn(&serde_json::Value) -> bool) -> bool {
    if !is_root() {
        eprintln!("skipped: needs root");
        return false;
    }
    if !kernel(&doctor()) {
        eprintln!("skipped: {why}");
        return false;
    }
    true
}

/// Starts `enforcer run ARGS` with stderr piped and waits for `enforcer ready` (see
/// [`wait_ready`]).
pub fn start_daemon(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Result<(Child, Vec<String>), String> {
    let mut daemon = enforcer()
        .arg("run")
        .args(args.iter().map(|a| a.as_ref()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let log = wait_ready(&mut daemon, Duration::from_secs(30))?;
    Ok((daemon, log))
}

/// `enforcer events query --format json --verdict VERDICT` on `state`.
pub fn query_events(state: &std::path::Path, verdict: &str) -> Vec<serde_json::Value> {
    let out = enforcer()
        .args(["events", "query", "--format", "json", "--verdict", verdict])
        .arg("--state-dir")
        .arg(state)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// Polls `cond` until it holds or `limit` passes; says whether it held.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}
