//! End-to-end tests of policy hot reload: a loop in a scoped cgroup opens files without pause
//! while the policy file is edited (a broken edit, then a fixed one) and SIGHUP is sent; the
//! kernel's answers to every open are recorded and checked: the running policy holds through
//! a broken edit, the new plan takes over at the reload, and a file denied by both the old and
//! the new plan is never opened, not even during the swap.

use std::fs;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::cgroup::Cgroup;
use super::command::capture;
use super::enforcer_process::Enforcer;
use super::Test;
use crate::guest_rootfs::GUEST_ENFORCER;

pub const TESTS: &[Test] = &[
    Test::new(
        "edits_and_sighup_swap_plans_without_a_gap",
        edits_and_sighup_swap_plans_without_a_gap,
    )
    .with_timeout(300),
    Test::new(
        "cgroups_created_during_a_reload_are_covered",
        cgroups_created_during_a_reload_are_covered,
    )
    .with_timeout(300),
];

const DIR: &str = "/tmp/e2e-reload";
const CGROUP: &str = "e2e-reload";

fn rule(name: &str, file: &str) -> String {
    format!(
        "      - name: {name}
        message: {file} was read
        action: deny
        file: {{path: {DIR}/{file}, ops: [read]}}
"
    )
}

fn policy(rules: &[(&str, &str)]) -> String {
    policy_for(CGROUP, rules)
}

fn policy_for(cgroup: &str, rules: &[(&str, &str)]) -> String {
    let mut text = format!(
        "policies:
  - name: e2e-reload
    select: {{cgroups: [/{cgroup}]}}
    mode: enforce
    rules:
"
    );
    for (name, file) in rules {
        text.push_str(&rule(name, file));
    }
    text
}

/// Saves `text` as `policies/reload.yaml` the way editors do: a new file renamed over it.
fn save(text: &str) -> Result<()> {
    let tmp = format!("{DIR}/policies/.reload.yaml.tmp");
    fs::write(&tmp, text).with_context(|| format!("writing {tmp}"))?;
    fs::rename(&tmp, format!("{DIR}/policies/reload.yaml")).context("renaming the policy")
}

/// `enforcer status --json`'s `daemon` object.
fn status(enforcer: &Enforcer) -> Result<serde_json::Value> {
    let out = capture(
        Command::new(GUEST_ENFORCER)
            .args(["status", "--json", "--state-dir"])
            .arg(enforcer.state_dir()),
    )?;
    ensure!(out.code() == Some(0), "status says no daemon runs: {out}");
    let v: serde_json::Value = serde_json::from_str(&out.stdout)
        .with_context(|| format!("status printed no JSON: {out}"))?;
    Ok(v["daemon"].clone())
}

fn wait_status(
    enforcer: &Enforcer,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> Result<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let d = status(enforcer)?;
        if pred(&d) {
            return Ok(d);
        }
        if Instant::now() >= deadline {
            bail!(
                "no {what} within 90 s; status: {d:#}\nlog:\n{}",
                enforcer.log().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One attempt of the loop: `first ok`, `first denied`, `second ok`, `second denied`.
fn attempts() -> Result<Vec<String>> {
    read_lines(&format!("{DIR}/attempts"))
}

/// The lines of the file a test loop appends its attempts to.
pub(super) fn read_lines(path: &str) -> Result<Vec<String>> {
    Ok(fs::read_to_string(path)
        .with_context(|| format!("reading {path}"))?
        .lines()
        .map(str::to_string)
        .collect())
}

/// Waits until the loop recorded `n` more attempts of each file than `since`.
fn wait_attempts(since: usize, n: usize) -> Result<Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let all = attempts()?;
        let new = all.get(since..).unwrap_or_default();
        let first = new.iter().filter(|l| l.starts_with("first")).count();
        let second = new.iter().filter(|l| l.starts_with("second")).count();
        if first >= n && second >= n {
            return Ok(all);
        }
        ensure!(
            Instant::now() < deadline,
            "the loop recorded {first} and {second} attempts in 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A background shell loop, killed when dropped.
pub(super) struct Loop(Child);

impl Loop {
    /// Runs `sh -c script` in `cg`, with no input or output.
    pub(super) fn spawn(cg: &Cgroup, script: &str) -> Result<Self> {
        Ok(Loop(
            cg.spawn(
                Command::new("sh")
                    .args(["-c", script])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null()),
            )?,
        ))
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn events_of(enforcer: &Enforcer, rule: &str) -> Result<usize> {
    let out = capture(
        Command::new(GUEST_ENFORCER)
            .args(["events", "query", "--format", "json", "--limit", "0"])
            .args(["--rule", rule, "--state-dir"])
            .arg(enforcer.state_dir()),
    )?
    .success()?;
    let v: serde_json::Value = serde_json::from_str(&out.stdout)
        .with_context(|| format!("query printed no JSON: {out}"))?;
    Ok(v.as_array().map_or(0, Vec::len))
}

fn edits_and_sighup_swap_plans_without_a_gap() -> Result<()> {
    let _ = fs::remove_dir_all(DIR);
    fs::create_dir_all(format!("{DIR}/policies")).context("creating the fixture")?;
    fs::write(format!("{DIR}/first"), "1\n")?;
    fs::write(format!("{DIR}/second"), "2\n")?;
    save(&policy(&[("first-v1", "first")]))?;
    let cg = Cgroup::create(CGROUP)?;
    let enforcer = Enforcer::start(&["--policy", &format!("{DIR}/policies")])?;

    // Opens both files without pause and writes what the kernel answered, one line each.
    let script = format!(
        "while :; do \
           if cat {DIR}/first >/dev/null 2>&1; then echo 'first ok'; else echo 'first denied'; fi; \
           if cat {DIR}/second >/dev/null 2>&1; then echo 'second ok'; else echo 'second denied'; fi; \
         done >> {DIR}/attempts"
    );
    fs::write(format!("{DIR}/attempts"), "")?;
    let looping = Loop::spawn(&cg, &script)?;
    let before = wait_attempts(0, 5)?;
    ensure!(
        before.iter().any(|l| l == "second ok"),
        "the second file must be readable under the first plan: {before:?}"
    );

    // (a) A broken edit: the running policy stays, the failure is counted and explained.
    save("policies:\n  - name: e2e-reload\n    select: {cgroups: [/x]}\n    rules: [{name: r, action: deny, fiel: {}}]\n")?;
    let d = wait_status(&enforcer, "failed reload", |d| d["reloads_failed"] == 1)?;
    ensure!(d["generation"] == 1, "{d:#}");
    let details = d["last_reload_error"]["details"]
        .as_str()
        .unwrap_or_default();
    ensure!(
        details.contains(&format!("{DIR}/policies/reload.yaml:4:")),
        "the diagnostics must name the file, line and column: {d:#}"
    );
    let mark = attempts()?.len();
    wait_attempts(mark, 5)?;

    // (b) The fixed edit: the first file stays denied, the second one is denied from now on.
    save(&policy(&[("first-v2", "first"), ("second-v2", "second")]))?;
    let d = wait_status(&enforcer, "reload", |d| d["generation"] == 2)?;
    ensure!(
        d["reloads_ok"] == 1 && d["last_reload_error"].is_null(),
        "{d:#}"
    );
    // The status is written after the swap: every attempt recorded from here on is under the
    // new plan.
    let swapped = attempts()?.len();
    wait_attempts(swapped, 5)?;

    // (c) SIGHUP reloads the same files.
    let pid = Pid::from_raw(i32::try_from(enforcer.pid().context("no pid")?)?);
    kill(pid, Signal::SIGHUP).context("sending SIGHUP")?;
    let d = wait_status(&enforcer, "SIGHUP reload", |d| d["generation"] == 3)?;
    ensure!(d["last_reload_error"].is_null(), "{d:#}");
    let after_hup = attempts()?.len();
    let all = wait_attempts(after_hup, 5)?;
    drop(looping);

    let first_v1 = events_of(&enforcer, "first-v1")?;
    let first_v2 = events_of(&enforcer, "first-v2")?;
    let second_v2 = events_of(&enforcer, "second-v2")?;
    let log = enforcer.log().unwrap_or_default();
    let exit = enforcer.stop()?;
    ensure!(
        exit.success(),
        "SIGTERM after reloads must exit 0: {exit}\n{log}"
    );

    // No gap: the file denied by every plan was never opened, through all three swaps.
    let opened: Vec<usize> = all
        .iter()
        .enumerate()
        .filter(|(_, l)| *l == "first ok")
        .map(|(i, _)| i)
        .collect();
    ensure!(
        opened.is_empty(),
        "the first file was opened {} times (attempts {opened:?} of {})",
        opened.len(),
        all.len()
    );
    let second_after: Vec<&String> = all
        .get(swapped..)
        .unwrap_or_default()
        .iter()
        .filter(|l| l.starts_with("second"))
        .collect();
    ensure!(
        second_after.iter().all(|l| *l == "second denied"),
        "the second file was read after the reload: {second_after:?}"
    );
    // Verdicts are named after the rules of the plan that decided them.
    ensure!(
        first_v1 > 0 && first_v2 > 0 && second_v2 > 0,
        "events: first-v1 {first_v1}, first-v2 {first_v2}, second-v2 {second_v2}\n{log}"
    );
    ensure!(
        log.contains("policy reload failed") && log.contains("policy reloaded"),
        "{log}"
    );
    Ok(())
}

/// cgroups are created below the scoped one, without pause, from before the edit until the
/// reload is done: every one of them, whenever it appeared (before the new plan resolved the
/// selectors, between that and the attach of its inheritance program, or after), must be under
/// the new plan.
fn cgroups_created_during_a_reload_are_covered() -> Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    const PARENT: &str = "e2e-reload-mkdir";
    let _ = fs::remove_dir_all(DIR);
    fs::create_dir_all(format!("{DIR}/policies")).context("creating the fixture")?;
    fs::write(format!("{DIR}/first"), "1\n")?;
    fs::write(format!("{DIR}/second"), "2\n")?;
    let v1 = policy_for(PARENT, &[("first-v1", "first")]);
    save(&v1)?;
    let cg = Cgroup::create(PARENT)?;
    let enforcer = Enforcer::start(&["--policy", &format!("{DIR}/policies")])?;

    let stop = Arc::new(AtomicBool::new(false));
    let maker = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || -> Result<Vec<Cgroup>> {
            let mut made = Vec::new();
            while !stop.load(Ordering::Relaxed) && made.len() < 2000 {
                made.push(Cgroup::create(&format!("{PARENT}/c{}", made.len()))?);
                std::thread::sleep(Duration::from_millis(2));
            }
            Ok(made)
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let v2 = policy_for(PARENT, &[("first-v2", "first"), ("second-v2", "second")]);
    save(&v2)?;
    let waited = wait_status(&enforcer, "reload", |d| d["generation"] == 2);
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let made = maker
        .join()
        .map_err(|_| anyhow::anyhow!("the cgroup maker panicked"))??;
    waited?;

    let mut uncovered = Vec::new();
    for child in &made {
        let read = child.run(Command::new("cat").arg(format!("{DIR}/second")))?;
        if read.status.success() || !read.stderr.contains("Operation not permitted") {
            uncovered.push(format!("{}: {read}", child.path().display()));
        }
    }
    let n = made.len();
    drop(made);
    let log = enforcer.log().unwrap_or_default();
    let exit = enforcer.stop()?;
    drop(cg);
    ensure!(exit.success(), "enforcer exited with {exit}\n{log}");
    ensure!(n >= 10, "only {n} cgroups were made during the reload");
    ensure!(
        uncovered.is_empty(),
        "{} of {n} cgroups made during the reload are not under the new plan:\n{}\n{log}",
        uncovered.len(),
        uncovered
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    Ok(())
}
