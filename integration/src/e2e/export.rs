//! End-to-end tests of SIEM export: a deny in the kernel reaches webhook receivers inside the
//! guest (one ECS, one OCSF), signed the Standard Webhooks way, within 2 s; a receiver that
//! answers 503 first still gets the event (retry).

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::cgroup::Cgroup;
use super::command::capture;
use super::enforcer_process::Enforcer;
use super::Test;
use crate::guest_rootfs::GUEST_ENFORCER;

pub const TESTS: &[Test] = &[
    Test::new(
        "deny_reaches_ecs_and_ocsf_webhooks_signed",
        deny_reaches_ecs_and_ocsf_webhooks_signed,
    ),
    Test::new(
        "webhook_503_then_200_is_retried",
        webhook_503_then_200_is_retried,
    ),
];

const DIR: &str = "/tmp/e2e-export";
/// A Standard Webhooks secret: `whsec_` and the base64 of the key.
const SECRET: &str = "whsec_ZTJlLWV4cG9ydC1zaWduaW5nLWtleS0zMi1ieXRlcyE=";
/// How long a deny may take to reach the receivers.
const MAX_LATENCY: Duration = Duration::from_secs(2);

/// One request the receiver read, and when it had read it all.
#[derive(Debug)]
struct Received {
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
    status: u16,
    at: Instant,
}

/// An HTTP/1.1 webhook receiver on 127.0.0.1, on its own thread. Each path answers the statuses
/// in `script` in order, then 200.
struct Receiver {
    port: u16,
    requests: mpsc::Receiver<Received>,
}

impl Receiver {
    fn start(script: HashMap<String, Vec<u16>>) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the receiver")?;
        let port = listener.local_addr()?.port();
        let (tx, requests) = mpsc::channel();
        std::thread::spawn(move || {
            let mut script = script;
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                match serve_one(stream, &mut script) {
                    Ok(received) => {
                        if tx.send(received).is_err() {
                            return;
                        }
                    }
                    Err(e) => eprintln!("export receiver: {e:#}"),
                }
            }
        });
        Ok(Self { port, requests })
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Requests until `done` says enough, or `timeout`.
    fn collect(
        &self,
        timeout: Duration,
        done: impl Fn(&[Received]) -> bool,
    ) -> Result<Vec<Received>> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        while !done(&got) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.requests.recv_timeout(left) {
                Ok(r) => got.push(r),
                Err(_) => bail!(
                    "the receiver got {} request(s) within {} s: {:?}",
                    got.len(),
                    timeout.as_secs(),
                    got.iter()
                        .map(|r| (r.path.as_str(), r.status, String::from_utf8_lossy(&r.body)))
                        .collect::<Vec<_>>()
                ),
            }
        }
        Ok(got)
    }
}

fn serve_one(
    mut stream: std::net::TcpStream,
    script: &mut HashMap<String, Vec<u16>>,
) -> Result<Received> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .context("no content-length")?;
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    let at = Instant::now();
    let status = match script.get_mut(&path) {
        Some(s) if !s.is_empty() => s.remove(0),
        _ => 200,
    };
    write!(
        stream,
        "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    )?;
    stream.flush()?;
    Ok(Received {
        path,
        headers,
        body,
        status,
        at,
    })
}

/// Verifies a request the way a Standard Webhooks consumer does: HMAC-SHA256 with the decoded
/// secret over `id.timestamp.body`, base64, `v1,` prefix, any of the space-separated entries;
/// a timestamp within five minutes.
fn verify_signature(r: &Received) -> Result<()> {
    let header = |name: &str| {
        r.headers
            .get(name)
            .with_context(|| format!("no `{name}` header: {:?}", r.headers))
    };
    let id = header("webhook-id")?;
    ensure!(id.starts_with("msg_"), "webhook-id {id}");
    let timestamp = header("webhook-timestamp")?;
    let ts: u64 = timestamp.parse().context("webhook-timestamp")?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    ensure!(now.abs_diff(ts) < 300, "webhook-timestamp {ts}, now {now}");
    let key = base64::engine::general_purpose::STANDARD
        .decode(SECRET.trim_start_matches("whsec_"))
        .context("decoding the secret")?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).context("HMAC key")?;
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(&r.body);
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    let signatures = header("webhook-signature")?;
    ensure!(
        signatures.split(' ').any(|s| s == expected),
        "signature {signatures:?} does not verify (expected {expected})"
    );
    Ok(())
}

fn policy(cgroup: &str) -> String {
    format!(
        "policies:
  - name: e2e-export
    select: {{cgroups: [/{cgroup}]}}
    mode: enforce
    rules:
      - name: no-secret
        message: the secret was read
        severity: high
        action: deny
        file: {{path: {DIR}/secret, ops: [read]}}
"
    )
}

/// The fixture: the secret file, the policy, the signing secret, and a config with one webhook
/// sink per `(name, path, format)`. Returns (config, policy) paths.
fn setup(cgroup: &str, sinks: &[(&str, String, &str)], extra: &str) -> Result<(String, String)> {
    let _ = fs::remove_dir_all(DIR);
    fs::create_dir_all(DIR).context("creating the fixture")?;
    fs::write(format!("{DIR}/secret"), "s3cret\n")?;
    let policy_path = format!("{DIR}/policy.yaml");
    fs::write(&policy_path, policy(cgroup))?;
    let secret_path = format!("{DIR}/webhook.secret");
    fs::write(&secret_path, format!("{SECRET}\n"))?;
    let mut config = String::new();
    for (name, url, format) in sinks {
        config.push_str(&format!(
            "[[export.sinks]]\nname = \"{name}\"\ntype = \"webhook\"\nurl = \"{url}\"\n\
             format = \"{format}\"\nsecrets = [{{ file = \"{secret_path}\" }}]\n\
             batch = {{ max_delay_ms = 50 }}\n{extra}\n"
        ));
    }
    let config_path = format!("{DIR}/config.toml");
    fs::write(&config_path, config)?;
    Ok((config_path, policy_path))
}

/// Reads the secret inside `cg`, which the kernel must refuse; returns when the read started.
fn deny_in(cg: &Cgroup) -> Result<Instant> {
    let started = Instant::now();
    let mut cmd = Command::new("cat");
    cmd.arg(format!("{DIR}/secret")).stdin(Stdio::null());
    let read = cg.run(&mut cmd)?;
    ensure!(
        !read.status.success() && read.stderr.contains("Operation not permitted"),
        "the read was not denied: {read}"
    );
    Ok(started)
}

/// The JSON documents of a request (each webhook batch is one JSON array).
fn documents(r: &Received) -> Result<Vec<serde_json::Value>> {
    let v: serde_json::Value = serde_json::from_slice(&r.body)
        .with_context(|| format!("body is not JSON: {}", String::from_utf8_lossy(&r.body)))?;
    v.as_array()
        .cloned()
        .with_context(|| format!("body is not a JSON array: {v}"))
}

fn secret_path() -> String {
    format!("{DIR}/secret")
}

/// Whether an ECS or OCSF document is about our secret file (both put it at `file.path`).
fn is_ours(d: &serde_json::Value) -> bool {
    d["file"]["path"] == secret_path().as_str()
}

/// `enforcer export status --json` for the daemon's state directory.
fn export_status(config: &str, state: &std::path::Path) -> Result<serde_json::Value> {
    let out = capture(
        Command::new(GUEST_ENFORCER)
            .args([
                "export",
                "status",
                "--json",
                "--config",
                config,
                "--state-dir",
            ])
            .arg(state),
    )?
    .success()?;
    serde_json::from_str(&out.stdout).with_context(|| format!("status printed no JSON: {out}"))
}

fn deny_reaches_ecs_and_ocsf_webhooks_signed() -> Result<()> {
    let receiver = Receiver::start(HashMap::new())?;
    let cg = Cgroup::create("e2e-export")?;
    let (config, policy) = setup(
        "e2e-export",
        &[
            ("soc-ecs", receiver.url("/ecs"), "ecs"),
            ("soc-ocsf", receiver.url("/ocsf"), "ocsf"),
        ],
        "",
    )?;
    let enforcer = Enforcer::start(&["--config", &config, "--policy", &policy])?;
    let denied_at = deny_in(&cg)?;
    let got = receiver.collect(Duration::from_secs(10), |got| {
        let has = |path: &str| {
            got.iter()
                .any(|r| r.path == path && documents(r).is_ok_and(|docs| docs.iter().any(is_ours)))
        };
        has("/ecs") && has("/ocsf")
    });
    let state = enforcer.state_dir().to_path_buf();
    let log = enforcer.log().unwrap_or_default();
    let got = got.with_context(|| format!("enforcer log:\n{log}"))?;
    ensure!(
        enforcer.stop()?.success(),
        "enforcer did not stop cleanly: {log}"
    );
    // After the stop, the outbox holds the final counts.
    let status = export_status(&config, &state);

    let mut latencies = Vec::new();
    for path in ["/ecs", "/ocsf"] {
        let request = got
            .iter()
            .find(|r| r.path == path && documents(r).is_ok_and(|d| d.iter().any(is_ours)))
            .with_context(|| format!("no request on {path}"))?;
        verify_signature(request).with_context(|| format!("request on {path}"))?;
        let doc = documents(request)?
            .into_iter()
            .find(is_ours)
            .context("the event")?;
        if path == "/ecs" {
            let types = doc["event"]["type"].as_array().cloned().unwrap_or_default();
            ensure!(types.iter().any(|t| t == "denied"), "ECS event.type: {doc}");
            ensure!(
                doc["event"]["outcome"] == "failure",
                "ECS event.outcome: {doc}"
            );
            ensure!(doc["rule"]["name"] == "no-secret", "ECS rule.name: {doc}");
        } else {
            ensure!(doc["class_uid"] == 1001, "OCSF class_uid: {doc}");
            ensure!(doc["disposition_id"] == 2, "OCSF disposition_id: {doc}");
        }
        let latency = request.at.saturating_duration_since(denied_at);
        latencies.push((path, latency));
    }
    println!(
        "export latency (deny -> webhook): {}",
        latencies
            .iter()
            .map(|(p, l)| format!("{p} {} ms", l.as_millis()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (path, latency) in &latencies {
        ensure!(
            *latency <= MAX_LATENCY,
            "the deny reached {path} after {} ms (limit {} ms)",
            latency.as_millis(),
            MAX_LATENCY.as_millis()
        );
    }
    let status = status?;
    for sink in status["sinks"].as_array().into_iter().flatten() {
        ensure!(
            sink["delivered"].as_u64() >= Some(1) && sink["dead"] == 0,
            "export status: {status}"
        );
    }
    Ok(())
}

fn webhook_503_then_200_is_retried() -> Result<()> {
    let receiver = Receiver::start(HashMap::from([("/flaky".to_string(), vec![503])]))?;
    let cg = Cgroup::create("e2e-export-retry")?;
    let (config, policy) = setup(
        "e2e-export-retry",
        &[("flaky", receiver.url("/flaky"), "ecs")],
        "retry = { base_ms = 200, cap_ms = 1000 }\n",
    )?;
    let enforcer = Enforcer::start(&["--config", &config, "--policy", &policy])?;
    deny_in(&cg)?;
    let got = receiver.collect(Duration::from_secs(15), |got| {
        got.iter()
            .any(|r| r.status == 200 && documents(r).is_ok_and(|docs| docs.iter().any(is_ours)))
    });
    let state = enforcer.state_dir().to_path_buf();
    let log = enforcer.log().unwrap_or_default();
    let got = got.with_context(|| format!("enforcer log:\n{log}"))?;
    ensure!(
        enforcer.stop()?.success(),
        "enforcer did not stop cleanly: {log}"
    );
    // After the stop, the outbox holds the final counts.
    let status = export_status(&config, &state);

    let first = got.first().context("no request")?;
    ensure!(first.status == 503, "the first answer was {}", first.status);
    ensure!(
        documents(first)?.iter().any(is_ours),
        "the refused batch did not hold the event"
    );
    let delivered = got
        .iter()
        .find(|r| r.status == 200)
        .context("no delivered request")?;
    verify_signature(first)?;
    verify_signature(delivered)?;
    // A retry of the same batch keeps its id, so receivers can de-duplicate.
    ensure!(
        first.headers.get("webhook-id") == delivered.headers.get("webhook-id"),
        "webhook-id changed on retry: {:?} then {:?}",
        first.headers.get("webhook-id"),
        delivered.headers.get("webhook-id")
    );
    let status = status?;
    let sink = &status["sinks"][0];
    ensure!(
        sink["delivered"].as_u64() >= Some(1)
            && sink["retried"].as_u64() >= Some(1)
            && sink["dead"] == 0,
        "export status: {status}"
    );
    Ok(())
}
