//! `enforcer run` serves Prometheus metrics on the host (no BPF LSM needed: `--mode audit`
//! starts and serves them): `GET /metrics` in the text format, 404 elsewhere, an idle client
//! does not block a scrape, and a second daemon on the same address exits with the PORT code.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failure

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// `exit_code::PORT`.
const PORT_EXIT: i32 = 10;

mod support;

use support::{enforcer, is_root};

/// A port nothing listens on right now: bound to 127.0.0.1:0, then released.
fn free_address() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A running daemon, killed if the test fails before it is stopped.
struct Daemon {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    fn start(state: &std::path::Path, extra: &[&str]) -> Daemon {
        let mut child = enforcer()
            .args(["run", "--mode", "audit", "--state-dir"])
            .arg(state)
            .args(extra)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Daemon {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.seen.iter().any(|l| l.contains("enforcer ready")) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!("no `enforcer ready`:\n{}", self.seen.join("\n")),
            }
        }
    }

    fn stop(mut self) -> Option<i32> {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        self.child.wait().unwrap().code()
    }
}

/// One request; the whole answer (the server closes the connection).
fn http(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn metrics_are_served_and_a_second_daemon_on_the_address_exits_with_the_port_code() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let addr = free_address();
    let state = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(state.path(), &["--metrics-address", &addr.to_string()]);
    daemon.wait_ready();
    assert!(
        daemon
            .seen
            .iter()
            .any(|l| l.contains(&format!("http://{addr}/metrics"))),
        "{}",
        daemon.seen.join("\n")
    );

    // A client that connects and sends nothing holds no scrape up.
    let idle = TcpStream::connect(addr).unwrap();
    let answer = http(
        addr,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n",
    );
    drop(idle);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    let build_info = format!(
        "enforcer_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    for series in [
        build_info.as_str(),
        "# TYPE enforcer_events_total counter",
        "enforcer_events_total{class=\"file\",verdict=\"denied\"} ",
        "enforcer_rules_loaded ",
        "enforcer_decode_errors_total 0",
        "enforcer_ringbuf_drops_total ",
        "enforcer_store_events_inserted_total ",
        "enforcer_store_events_dropped_total{verdict=\"denied\"} 0",
        "enforcer_store_events_failed_total 0",
        "enforcer_store_events_deleted_total{reason=\"age\",verdict=\"allowed\"} ",
        "enforcer_process_table_entries ",
    ] {
        assert!(body.contains(series), "no `{series}` in:\n{body}");
    }

    let not_found = http(addr, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert!(not_found.starts_with("HTTP/1.1 404 "), "{not_found}");
    let not_found = http(addr, "GET /metrics/x HTTP/1.1\r\n\r\n");
    assert!(not_found.starts_with("HTTP/1.1 404 "), "{not_found}");

    // The same address again: the second daemon stops before loading anything.
    let state2 = tempfile::tempdir().unwrap();
    let out = enforcer()
        .args(["run", "--mode", "audit", "--state-dir"])
        .arg(state2.path())
        .args(["--metrics-address", &addr.to_string()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(PORT_EXIT), "{err}");
    assert!(
        err.contains(&addr.to_string())
            && err.contains("in use")
            && err.contains("--metrics-address"),
        "{err}"
    );
    assert!(
        !state2.path().join("events.db").exists(),
        "the second daemon opened its store"
    );

    // The first one kept serving, and stops cleanly.
    let again = http(addr, "GET /metrics HTTP/1.1\r\n\r\n");
    assert!(again.starts_with("HTTP/1.1 200 OK\r\n"), "{again}");
    assert_eq!(daemon.stop(), Some(0));
}

#[test]
fn the_command_line_turns_off_the_config_files_metrics_address() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    // The config's address is taken; `--metrics-address ""` means no metrics, so no conflict.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let state = tempfile::tempdir().unwrap();
    let config = state.path().join("enforcer.toml");
    std::fs::write(&config, format!("[metrics]\naddress = \"{addr}\"\n")).unwrap();
    let config = config.to_str().unwrap().to_string();

    let out = enforcer()
        .args(["run", "--mode", "audit", "--config", &config, "--state-dir"])
        .arg(state.path().join("a"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(PORT_EXIT), "{err}");
    assert!(err.contains(&addr.to_string()), "{err}");

    let mut daemon = Daemon::start(
        &state.path().join("b"),
        &["--config", &config, "--metrics-address", ""],
    );
    daemon.wait_ready();
    assert!(
        !daemon.seen.iter().any(|l| l.contains("metrics served")),
        "{}",
        daemon.seen.join("\n")
    );
    assert_eq!(daemon.stop(), Some(0));
}
