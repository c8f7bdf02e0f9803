//! End-to-end tests of the kernel's rate limit on verdict records (`event_rate_limit` in the
//! config): a looping process is still denied every time, the records that reach the store
//! are far fewer, the suppressed counts they carry and the kernel's counter account for every
//! denied operation, and another cgroup's rule is not starved.

use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};

use super::cgroup::Cgroup;
use super::enforcer_process::query_events;
use super::enforcer_process::Enforcer;
use super::Test;

pub const TESTS: &[Test] = &[Test::new(
    "guard_a_denied_loop_is_rate_limited_and_accounted_for",
    a_denied_loop_is_rate_limited_and_accounted_for,
)
.with_timeout(300)];

const DIR: &str = "/tmp/e2e-rate-limit";
/// Records per second per (cgroup, rule), from the config file.
const LIMIT: u64 = 50;
/// Denied opens of the looping process.
const LOOP: u64 = 5_000;
/// How long the other tests wait for the enforcer to be ready.
const READY_BUDGET: Duration = super::enforcer_process::DEFAULT_READY_TIMEOUT;
/// Denied opens in the second cgroup, fewer than the limit.
const QUIET: u64 = 20;

fn policy() -> String {
    format!(
        "policies:
  - name: e2e-rate
    select: {{cgroups: [/e2e-rate-a, /e2e-rate-b]}}
    mode: enforce
    rules:
      - name: loop-a
        message: the looping process read a
        action: deny
        file: {{path: {DIR}/a, ops: [read]}}
      - name: quiet-b
        message: b was read
        action: deny
        file: {{path: {DIR}/b, ops: [read]}}
"
    )
}

/// `n` opens of `file` by the shell itself (a redirection, no fork per open); prints the
/// number that succeeded and failed. Each failure's message goes to stderr.
fn open_loop(file: &str, n: u64) -> String {
    format!(
        "i=0; ok=0; failed=0; while [ $i -lt {n} ]; do \
         if true < {file}; then ok=$((ok+1)); else failed=$((failed+1)); fi; i=$((i+1)); done; \
         echo \"$ok $failed\""
    )
}

/// (records, sum of their `suppressed`)
fn tally(events: &[serde_json::Value]) -> (u64, u64) {
    let suppressed = events
        .iter()
        .map(|e| e["suppressed"].as_u64().unwrap_or(0))
        .sum();
    (events.len() as u64, suppressed)
}

fn a_denied_loop_is_rate_limited_and_accounted_for() -> Result<()> {
    let _ = fs::remove_dir_all(DIR);
    fs::create_dir_all(DIR).context("creating the fixture")?;
    fs::write(format!("{DIR}/a"), "a\n")?;
    fs::write(format!("{DIR}/b"), "b\n")?;
    let policy_path = format!("{DIR}/policy.yaml");
    fs::write(&policy_path, policy())?;
    let config_path = format!("{DIR}/enforcer.toml");
    fs::write(
        &config_path,
        format!("event_rate_limit = {LIMIT}\n[metrics]\naddress = \"\"\n"),
    )?;
    let cg_a = Cgroup::create("e2e-rate-a")?;
    let cg_b = Cgroup::create("e2e-rate-b")?;
    let loading = Instant::now();
    let enforcer = Enforcer::start_with_timeout(
        &["--policy", &policy_path, "--config", &config_path],
        READY_BUDGET * 4,
    )?;
    let load_time = loading.elapsed();

    let started = Instant::now();
    let err_path = format!("{DIR}/loop.err");
    let mut looping = Command::new("/bin/sh");
    looping
        .args(["-c", &open_loop(&format!("{DIR}/a"), LOOP)])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(fs::File::create(&err_path)?);
    let child = cg_a.spawn(&mut looping)?;
    // While the loop runs: the second cgroup's rule has its own budget.
    let quiet =
        cg_b.run(Command::new("/bin/sh").args(["-c", &open_loop(&format!("{DIR}/b"), QUIET)]))?;
    let out = child.wait_with_output().context("waiting for the loop")?;
    let elapsed = started.elapsed();
    // A new window: this record carries what the loop's last window suppressed.
    std::thread::sleep(Duration::from_millis(1_500));
    let last =
        cg_a.run(Command::new("/bin/sh").args(["-c", &open_loop(&format!("{DIR}/a"), 1)]))?;
    std::thread::sleep(Duration::from_millis(500));

    let state = enforcer.state_dir().to_path_buf();
    let log = enforcer.log().unwrap_or_default();
    let status = enforcer.stop()?;
    ensure!(status.success(), "enforcer exited with {status}: {log}");

    // Self-protection adds programs to every plan: the daemon must still be ready within the
    // budget the other tests give it.
    ensure!(
        load_time < READY_BUDGET,
        "the enforcer took {load_time:?} to be ready: {log}"
    );
    let counts = String::from_utf8_lossy(&out.stdout).trim().to_string();
    ensure!(
        counts == format!("0 {LOOP}"),
        "the loop's opens (ok failed): {counts}"
    );
    let errors = fs::read_to_string(&err_path)?;
    let eperm = errors
        .lines()
        .filter(|l| l.contains("Operation not permitted"))
        .count() as u64;
    ensure!(eperm == LOOP, "{eperm} of {LOOP} opens failed with EPERM");
    ensure!(
        quiet.stdout.trim() == format!("0 {QUIET}"),
        "the second cgroup's opens: {quiet}"
    );
    ensure!(last.stdout.trim() == "0 1", "the last open: {last}");

    let status_file = fs::read_to_string(state.join("status.json"))?;
    let status: serde_json::Value = serde_json::from_str(&status_file)?;
    let kernel = &status["kernel"];
    let counter = kernel["rate_suppressed"]
        .as_u64()
        .context("rate_suppressed")?;
    let drops = kernel["ringbuf_drops"].as_u64().context("ringbuf_drops")?;
    ensure!(drops == 0, "ring-buffer drops: {kernel}");

    let a = query_events(&state, &["--limit", "0", "--rule", "loop-a"])?;
    let (sent, carried) = tally(&a);
    ensure!(
        a.iter()
            .all(|e| e["cgroup"]["id"] == cg_a.id().unwrap_or(0)),
        "loop-a events from another cgroup"
    );
    // Every denied open is a record or counted in one, and the kernel counted the same.
    ensure!(
        sent + carried == LOOP + 1,
        "{sent} records + {carried} suppressed != {} opens",
        LOOP + 1
    );
    ensure!(
        carried == counter,
        "records carry {carried} suppressed, the kernel counted {counter}"
    );
    // At most LIMIT per one-second window the loop ran in (a window may start in each second
    // it spans), and the last open.
    let windows = elapsed.as_secs() + 2;
    ensure!(
        sent <= LIMIT * windows + 1 && sent * 4 < LOOP,
        "{sent} records for {LOOP} opens in {elapsed:?}: not rate limited"
    );
    ensure!(
        a.iter().any(|e| e["suppressed"].as_u64().unwrap_or(0) > 0
            && e["message"]
                .as_str()
                .is_some_and(|m| m.contains("rate limit"))),
        "no event says what it stands for: {:#?}",
        a.last()
    );

    let b = query_events(&state, &["--limit", "0", "--rule", "quiet-b"])?;
    let (b_sent, b_carried) = tally(&b);
    ensure!(
        b_sent == QUIET && b_carried == 0,
        "the second cgroup's rule got {b_sent} records ({b_carried} suppressed) of {QUIET}"
    );
    Ok(())
}
