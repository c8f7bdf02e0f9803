#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failure
//! `enforcer run` with a webhook sink, killed with SIGKILL while the receiver holds a batch, then
//! started again on the same state directory: every denied verdict in the store reaches the
//! receiver at least once (at-least-once delivery; duplicates are allowed and counted). The
//! verdicts are real denies of the cgroup socket programs (kernels without BPF LSM, like
//! network_fallback_host.rs); on a kernel with BPF LSM, or without root, the test says so and
//! stops.

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod support;

use support::{
    egress_policy, forbidden_port, query_events, runnable, start_daemon, wait_until, TestCgroup,
};

const N: usize = 20;

/// One request the receiver read.
struct Received {
    at: Instant,
    ids: Vec<String>,
}

#[derive(Default)]
struct HookState {
    /// Wait this long before answering each request.
    delay: Duration,
    requests: Vec<Received>,
    /// Requests read and not answered yet.
    in_flight: usize,
}

/// A webhook receiver on 127.0.0.1: HTTP/1.1 with keep-alive, one thread per connection, reads
/// each request's native JSON array and records the event ids, answers `200 {}` after the
/// configured delay.
struct Hook {
    url: String,
    state: Arc<Mutex<HookState>>,
}

impl Hook {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(HookState::default()));
        let st = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let st = Arc::clone(&st);
                std::thread::spawn(move || serve(stream, &st));
            }
        });
        Self { url, state }
    }

    fn set_delay(&self, d: Duration) {
        self.state.lock().unwrap().delay = d;
    }

    fn in_flight(&self) -> usize {
        self.state.lock().unwrap().in_flight
    }

    /// Every id received, with repetitions.
    fn ids(&self) -> Vec<String> {
        let st = self.state.lock().unwrap();
        st.requests.iter().flat_map(|r| r.ids.clone()).collect()
    }

    fn ids_since(&self, t: Instant) -> BTreeSet<String> {
        let st = self.state.lock().unwrap();
        st.requests
            .iter()
            .filter(|r| r.at >= t)
            .flat_map(|r| r.ids.clone())
            .collect()
    }

    fn requests(&self) -> usize {
        self.state.lock().unwrap().requests.len()
    }
}

fn serve(stream: TcpStream, state: &Mutex<HookState>) {
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut stream = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let events: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap_or_default();
        let ids = events
            .iter()
            .filter_map(|e| e["id"].as_str().map(str::to_owned))
            .collect();
        let delay = {
            let mut st = state.lock().unwrap();
            st.requests.push(Received {
                at: Instant::now(),
                ids,
            });
            st.in_flight += 1;
            st.delay
        };
        std::thread::sleep(delay);
        let written = stream
            .write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
            )
            .is_ok();
        state.lock().unwrap().in_flight -= 1;
        if !written {
            return;
        }
    }
}

/// The daemon (if running) and the test cgroup; both go away on drop, also when the test fails.
/// Kills the daemon, then (its field dropping) removes the test cgroup.
struct Guard {
    daemon: Option<Child>,
    _cgroup: TestCgroup,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
    }
}

/// Starts `enforcer run` and waits for `enforcer ready`; returns the child and its log lines
/// so far (the rest keeps going to a thread).
fn start(config: &Path, policy: &Path, state: &Path) -> Result<(Child, Vec<String>), String> {
    start_daemon(&[
        &"--config",
        &config,
        &"--policy",
        &policy,
        &"--state-dir",
        &state,
    ])
}

/// What both tests share: a listening forbidden destination, the test cgroup, a webhook
/// receiver, the policy and config files, and the state directory.
struct Env {
    guard: Guard,
    hook: Hook,
    port: u16,
    cgroup: String,
    _dir: tempfile::TempDir,
    policy: std::path::PathBuf,
    config: std::path::PathBuf,
    state: std::path::PathBuf,
}

/// `None` (and why on stderr) when this machine cannot run the test.
fn prepare(tag: &str) -> Option<Env> {
    if !runnable(
        "this kernel has BPF LSM (the VM suite covers it) or no cgroup socket programs",
        |k| k["bpf_lsm"] != true && k["cgroup_sock_addr"] == true,
    ) {
        return None;
    }

    let port = forbidden_port();
    let name = format!("enforcer-export-{tag}-{}", std::process::id());
    let test_cgroup = TestCgroup::new(&name);
    let cgroup = test_cgroup.path.clone();
    let guard = Guard {
        daemon: None,
        _cgroup: test_cgroup,
    };

    let hook = Hook::start();
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("net.yaml");
    std::fs::write(&policy, egress_policy(&name, "no-port", port)).unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            // Bursts of one rule: every deny must be a record (no kernel rate limit).
            "event_rate_limit = 0\n[metrics]\naddress = \"\"\n\n[[export.sinks]]\nname = \"hook\"\ntype = \"webhook\"\n\
             url = {url:?}\nformat = \"native\"\n\
             batch = {{ max_events = 5, max_delay_ms = 50 }}\n\
             retry = {{ base_ms = 50, cap_ms = 500 }}\n",
            url = hook.url
        ),
    )
    .unwrap();
    let state = dir.path().join("state");
    Some(Env {
        guard,
        hook,
        port,
        cgroup,
        _dir: dir,
        policy,
        config,
        state,
    })
}

/// `n` denied connects from one child in the cgroup.
fn denied_connects(cgroup: &str, port: u16, n: usize) {
    let script = format!(
        "echo $$ > {cgroup}/cgroup.procs && for i in $(seq {n}); do \
         (exec 3<>/dev/tcp/127.0.0.2/{port}) 2>/dev/null && echo connected; done; true"
    );
    let out = Command::new("bash").args(["-c", &script]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("connected"),
        "every connect is denied: {out:?}"
    );
}

/// Ids of the denied events to `port` in the event log (rotated files included).
fn logged_denies(state: &Path, port: u16) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for entry in std::fs::read_dir(state).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("events.jsonl") {
            continue;
        }
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let Ok(ev) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if ev["verdict"] == "denied" && ev["target"]["network"]["dst_port"] == port {
                ids.insert(ev["id"].as_str().unwrap().to_owned());
            }
        }
    }
    ids
}

#[test]
fn every_logged_deny_arrives_when_the_daemon_is_killed_before_the_outbox_commit() {
    const BURST: usize = 200;
    let Some(mut env) = prepare("log") else {
        return;
    };
    let (daemon, mut log) = start(&env.config, &env.policy, &env.state).unwrap();
    env.guard.daemon = Some(daemon);
    // Hold the outbox's write lock: the daemon logs every verdict (fsynced) but cannot
    // commit any of them to the outbox, the window an in-memory hand-off loses on SIGKILL.
    let outbox = rusqlite::Connection::open(env.state.join("outbox.db")).unwrap();
    outbox.execute_batch("BEGIN IMMEDIATE").unwrap();
    denied_connects(&env.cgroup, env.port, BURST);
    assert!(
        wait_until(Duration::from_secs(20), || logged_denies(
            &env.state, env.port
        )
        .len()
            >= BURST),
        "every deny is in the event log"
    );
    let mut daemon = env.guard.daemon.take().unwrap();
    daemon.kill().unwrap(); // SIGKILL
    assert!(!daemon.wait().unwrap().success());
    assert_eq!(
        env.hook.requests(),
        0,
        "nothing reached the outbox before the kill"
    );
    outbox.execute_batch("ROLLBACK").unwrap();
    drop(outbox);
    let logged = logged_denies(&env.state, env.port);
    assert_eq!(logged.len(), BURST);

    let (daemon, more) = start(&env.config, &env.policy, &env.state).unwrap();
    log.extend(more);
    env.guard.daemon = Some(daemon);
    let arrived = wait_until(Duration::from_secs(30), || {
        logged.is_subset(&env.hook.ids().into_iter().collect())
    });
    let ids = env.hook.ids();
    let distinct: BTreeSet<String> = ids.iter().cloned().collect();
    let missing: Vec<&String> = logged.difference(&distinct).collect();
    eprintln!(
        "logged: {}, received: {} ({} distinct)",
        logged.len(),
        ids.len(),
        distinct.len()
    );
    assert!(
        arrived && missing.is_empty(),
        "{} logged denies never arrived: {missing:?}\nlog:\n{}",
        missing.len(),
        log.join("\n")
    );
    assert_eq!(ids.len(), distinct.len(), "the log is read once");
    let mut daemon = env.guard.daemon.take().unwrap();
    Command::new("kill")
        .arg("-TERM")
        .arg(daemon.id().to_string())
        .status()
        .unwrap();
    assert!(daemon.wait().unwrap().success());
}

#[test]
fn no_exported_event_is_lost_when_the_daemon_is_killed_mid_batch() {
    let Some(env) = prepare("crash") else {
        return;
    };
    let Env {
        mut guard,
        hook,
        port,
        cgroup,
        _dir,
        policy,
        config,
        state,
    } = env;
    let t0 = Instant::now();
    let (daemon, mut log) = start(&config, &policy, &state).unwrap();
    guard.daemon = Some(daemon);

    // The receiver holds every answer for 3 s; N denied connects from one child in the cgroup.
    hook.set_delay(Duration::from_secs(3));
    denied_connects(&cgroup, port, N);

    assert!(
        wait_until(Duration::from_secs(20), || hook.in_flight() >= 1),
        "a batch reached the receiver"
    );
    // Let the daemon store the later ring-buffer wakeups in the outbox; the held batch is
    // still unanswered (3 s) when the daemon dies.
    std::thread::sleep(Duration::from_millis(500));
    let held: BTreeSet<String> = {
        let st = hook.state.lock().unwrap();
        assert!(st.in_flight >= 1, "the batch is still held at the kill");
        st.requests.iter().flat_map(|r| r.ids.clone()).collect()
    };
    let mut daemon = guard.daemon.take().unwrap();
    daemon.kill().unwrap(); // SIGKILL
    let status = daemon.wait().unwrap();
    assert!(!status.success(), "killed: {status}");
    let killed_at = Instant::now();
    let before_kill = hook.requests();

    // Same config and state directory; the receiver answers at once now.
    hook.set_delay(Duration::ZERO);
    let restarted = Instant::now();
    let (daemon, more) = start(&config, &policy, &state).unwrap();
    log.extend(more);
    guard.daemon = Some(daemon);
    let all_arrived = wait_until(Duration::from_secs(20), || {
        hook.ids().into_iter().collect::<BTreeSet<_>>().len() >= N
    });
    let delivered_in = restarted.elapsed();

    let mut daemon = guard.daemon.take().unwrap();
    Command::new("kill")
        .arg("-TERM")
        .arg(daemon.id().to_string())
        .status()
        .unwrap();
    let status = daemon.wait().unwrap();
    assert!(status.success(), "second run exited with {status}");

    let events = query_events(&state, "denied");
    let stored: BTreeSet<String> = events
        .iter()
        .filter(|e| e["target"]["network"]["dst_port"] == port)
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        stored.len(),
        N,
        "one denied event per connect in the store: {events:?}"
    );

    let ids = hook.ids();
    let distinct: BTreeSet<String> = ids.iter().cloned().collect();
    let missing: Vec<&String> = stored.difference(&distinct).collect();
    let foreign: Vec<&String> = distinct.difference(&stored).collect();
    let after_restart = hook.ids_since(restarted);
    eprintln!(
        "requests: {} ({} before the kill), ids received: {}, distinct: {}, duplicates: {}, \
         held at the kill: {}, all delivered {:.1} s after the restart ({:.1} s in all, \
         killed at {:.1} s)",
        hook.requests(),
        before_kill,
        ids.len(),
        distinct.len(),
        ids.len() - distinct.len(),
        held.len(),
        delivered_in.as_secs_f64(),
        t0.elapsed().as_secs_f64(),
        killed_at.duration_since(t0).as_secs_f64(),
    );
    assert!(
        all_arrived && missing.is_empty(),
        "events lost: {missing:?}\nlog:\n{}",
        log.join("\n")
    );
    assert!(foreign.is_empty(), "ids not in the store: {foreign:?}");
    assert_eq!(distinct.len(), N);
    assert!(!held.is_empty());
    assert!(
        held.is_subset(&after_restart),
        "the batch held at the kill is sent again after the restart"
    );
}
