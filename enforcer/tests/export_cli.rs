//! `enforcer export test|replay|status` against a webhook receiver on loopback and an outbox in
//! a temporary state directory.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::mpsc;
use std::time::Duration;

use siem_export::dispatcher::test_event;
use siem_export::outbox::{now_ms, Outbox, OutboxConfig};

const SECRET: &str = "export-cli-test-secret";

/// One request as the receiver read it.
struct Request {
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// A one-shot HTTP/1.1 receiver on 127.0.0.1: answers each request with `status` and `body`,
/// and hands what it read to the returned channel. Returns its URL.
fn receiver(status: u16, body: &'static str) -> (String, mpsc::Receiver<Request>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
            let mut headers = HashMap::new();
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
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
            let mut request_body = vec![0; len];
            reader.read_exact(&mut request_body).unwrap();
            let reason = if status < 300 { "OK" } else { "Error" };
            write!(
                stream,
                "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\
                 connection: close\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            let _ = tx.send(Request {
                path,
                headers,
                body: request_body,
            });
        }
    });
    (url, rx)
}

/// A config with one webhook sink `hook` posting to `url`, signed with [`SECRET`] (from a file).
fn config(dir: &Path, url: &str) -> PathBuf {
    let secret = dir.join("hook.secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "state_dir = {state:?}\n\n[[export.sinks]]\nname = \"hook\"\ntype = \"webhook\"\n\
             url = {url:?}\nformat = \"ecs\"\nsecrets = [{{ file = {secret:?} }}]\n",
            state = dir.join("state"),
        ),
    )
    .unwrap();
    path
}

fn enforcer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_enforcer"))
        .args(args)
        .env("ENFORCER_LOG", "warn")
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        stdout(out),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn export_test_reports_a_delivered_event() {
    let dir = tempfile::tempdir().unwrap();
    let (url, requests) = receiver(200, "ok");
    let cfg = config(dir.path(), &url);
    let out = enforcer(&[
        "export",
        "test",
        "--sink",
        "hook",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let text = stdout(&out);
    assert!(text.contains("outcome:  delivered"), "{text}");
    assert!(text.contains("answer:   HTTP 200: ok"), "{text}");

    let req = requests.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(req.path, "/hook");
    // One ECS document in a JSON array: the test event.
    let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(body[0]["event"]["action"], "export-test", "{body}");
    assert!(
        text.contains(body[0]["event"]["id"].as_str().unwrap()),
        "{text}"
    );
    // Signed with the secret from the file (not with its trailing newline).
    let id = &req.headers["webhook-id"];
    let ts: u64 = req.headers["webhook-timestamp"].parse().unwrap();
    let expected = siem_export::net::webhook::sign(SECRET.as_bytes(), id, ts, &req.body);
    assert_eq!(req.headers["webhook-signature"], expected);
    // The secret is never printed.
    assert!(!describe(&out).contains(SECRET));
}

#[test]
fn export_test_reports_a_refusal_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (url, requests) = receiver(400, "bad payload");
    let cfg = config(dir.path(), &url);
    let out = enforcer(&[
        "export",
        "test",
        "--sink",
        "hook",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let text = stdout(&out);
    assert!(text.contains("outcome:  permanent"), "{text}");
    assert!(text.contains("answer:   HTTP 400: bad payload"), "{text}");
    requests.recv_timeout(Duration::from_secs(5)).unwrap();
}

#[test]
fn export_test_of_an_unknown_sink_names_the_configured_ones() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "http://127.0.0.1:9/x");
    let out = enforcer(&[
        "export",
        "test",
        "--sink",
        "nope",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(9), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`nope`") && err.contains("hook"), "{err}");
}

#[test]
fn replay_moves_dead_letters_back_to_pending() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "http://127.0.0.1:9/x");
    let cfg = cfg.to_str().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();

    // What the daemon's worker does with an event the sink refused.
    let event = test_event("host-a");
    {
        let outbox =
            Outbox::open(&state.join("outbox.db"), &["hook"], OutboxConfig::default()).unwrap();
        outbox.enqueue(std::slice::from_ref(&event)).unwrap();
        let leased = outbox.lease("hook", 10, now_ms()).unwrap();
        assert_eq!(leased.len(), 1);
        outbox
            .dead_letter("hook", &[leased[0].key], "HTTP 400: bad payload")
            .unwrap();
    }

    let out = enforcer(&["export", "status", "--config", cfg, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["sinks"][0]["sink"], "hook");
    assert_eq!(status["sinks"][0]["dead"], 1, "{status}");
    assert_eq!(status["sinks"][0]["queued"], 0, "{status}");
    assert_eq!(status["dead_letters"][0]["reason"], "HTTP 400: bad payload");
    assert_eq!(status["dead_letters"][0]["id"], event.id.to_string());

    let out = enforcer(&["export", "replay", "--sink", "hook", "--config", cfg]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        stdout(&out).starts_with("1 dead letter(s) of sink `hook` moved back to pending"),
        "{}",
        describe(&out)
    );

    // The text form, with an explicit state directory.
    let out = enforcer(&[
        "export",
        "status",
        "--config",
        cfg,
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let text = stdout(&out);
    let row: Vec<&str> = text
        .lines()
        .find(|l| l.starts_with("hook "))
        .unwrap()
        .split_whitespace()
        .collect();
    // sink, queued, in_flight, dead, delivered, retried
    assert_eq!(row, ["hook", "1", "0", "0", "0", "0"], "{text}");

    // The daemon's next lease sends it again.
    let outbox =
        Outbox::open(&state.join("outbox.db"), &["hook"], OutboxConfig::default()).unwrap();
    let leased = outbox.lease("hook", 10, now_ms()).unwrap();
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].event.id, event.id);

    let out = enforcer(&["export", "replay", "--config", cfg]);
    assert!(
        stdout(&out).starts_with("0 dead letter(s) of every sink"),
        "{}",
        describe(&out)
    );
}
