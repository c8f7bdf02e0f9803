//! End-to-end tests of enforcement that outlives the daemon: the plan is pinned in bpffs, so a
//! `kill -9`ed daemon leaves it in force, a restarted one adopts it (and records the verdicts
//! made while no daemon ran) with no instant without enforcement, SIGTERM leaves it pinned,
//! and `enforcer unload` removes it. A loop in a scoped cgroup opens a denied file without
//! pause through each switch; every answer of the kernel is recorded and checked.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};

use super::cgroup::Cgroup;
use super::command::capture;
use super::enforcer_process::Enforcer;
use super::reload::Loop;
use super::Test;
use crate::guest_rootfs::GUEST_ENFORCER;

pub const TESTS: &[Test] = &[
    Test::new(
        "kill9_and_restart_keep_enforcing_and_keep_the_gap_verdicts",
        kill9_and_restart_keep_enforcing_and_keep_the_gap_verdicts,
    )
    .with_timeout(600),
    Test::new(
        "sigterm_keeps_enforcement_and_unload_removes_it",
        sigterm_keeps_enforcement_and_unload_removes_it,
    )
    .with_timeout(600),
    Test::new(
        "a_restart_with_another_policy_replaces_the_pinned_one_without_a_gap",
        a_restart_with_another_policy_replaces_the_pinned_one_without_a_gap,
    )
    .with_timeout(600),
];

/// The environment variable `enforcer run|status|unload` take their pin root from.
pub const PIN_ROOT_ENV: &str = "ENFORCER_PIN_ROOT";
/// The suite's pin root (set for every daemon by `enforcer-e2e`), cleared after each test.
pub const PIN_ROOT: &str = "/sys/fs/bpf/enforcer-e2e";

/// Removes whatever the last test's daemons left pinned, and waits until the kernel has
/// released their links (it does so asynchronously, one trampoline at a time: under
/// emulation a generation with many hooks takes seconds), so no program of one test still
/// runs in the next.
pub fn clear() {
    if let Ok(entries) = fs::read_dir(PIN_ROOT) {
        for e in entries.flatten() {
            if !e.path().is_dir() {
                continue;
            }
            let generation = bpf_lsm::pins::PinnedGeneration::new(e.path());
            if let Err(err) = generation.remove_and_wait(std::time::Duration::from_secs(180)) {
                eprintln!("e2e: clearing {}: {err}", e.path().display());
            }
        }
    }
    if let Err(e) = fs::remove_dir_all(PIN_ROOT) {
        if e.kind() != std::io::ErrorKind::NotFound {
            eprintln!("e2e: clearing {PIN_ROOT} failed: {e}");
        }
    }
}

const DIR: &str = "/tmp/e2e-pin";
const CGROUP: &str = "e2e-pin";

/// A policy `name` on the test cgroup denying the read of each (rule, file).
fn write_policy(name: &str, rules: &[(&str, &str)]) -> Result<String> {
    let mut text = format!(
        "policies:
  - name: {name}
    select: {{cgroups: [/{CGROUP}]}}
    mode: enforce
    rules:
"
    );
    for (rule_name, file) in rules {
        let path = format!("{DIR}/{file}");
        text.push_str(&format!(
            "      - {{name: {rule_name}, action: deny, file: {{path: {path}, ops: [read]}}}}\n"
        ));
    }
    let path = format!("{DIR}/{name}.yaml");
    fs::write(&path, text).with_context(|| format!("writing {path}"))?;
    Ok(path)
}

fn fixture() -> Result<()> {
    let _ = fs::remove_dir_all(DIR);
    fs::create_dir_all(DIR).context("creating the fixture")?;
    for f in ["secret", "gap", "aonly"] {
        fs::write(format!("{DIR}/{f}"), format!("{f}\n"))?;
    }
    Ok(())
}

/// The generation directories pinned now, sorted.
fn pinned() -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(PIN_ROOT)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A shell loop in the cgroup reading each of `files` without pause, one line per attempt:
/// `<file> ok` or `<file> denied`.
fn start_loop(cg: &Cgroup, files: &[&str]) -> Result<Loop> {
    let body: String = files
            .iter()
            .map(|f| {
                format!(
                    "if cat {DIR}/{f} >/dev/null 2>&1; then echo '{f} ok'; else echo '{f} denied'; fi; "
                )
            })
            .collect();
    fs::write(format!("{DIR}/attempts"), "")?;
    Loop::spawn(cg, &format!("while :; do {body}done >> {DIR}/attempts"))
}

/// Restarts the daemon on `state` with `policy` while `looping` runs, waits for `n` attempts
/// under the new daemon and stops the loop; checks that only the new generation is pinned.
/// Returns the daemon and every attempt.
fn restart(state: &Path, policy: &str, looping: Loop, n: usize) -> Result<(Enforcer, Vec<String>)> {
    let second = Enforcer::start_in(state, &["--policy", policy])?;
    let ready = attempts()?.len();
    let all = wait_attempts(ready, n)?;
    drop(looping);
    ensure!(
        pinned() == ["gen-2"],
        "after the restart pinned: {:?}\n{}",
        pinned(),
        second.log().unwrap_or_default()
    );
    Ok((second, all))
}

fn attempts() -> Result<Vec<String>> {
    super::reload::read_lines(&format!("{DIR}/attempts"))
}

/// Waits until the loop recorded `n` more attempts than `since`; returns them all.
fn wait_attempts(since: usize, n: usize) -> Result<Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let all = attempts()?;
        if all.len() >= since + n {
            return Ok(all);
        }
        ensure!(
            Instant::now() < deadline,
            "the loop recorded {} attempts in 60 s",
            all.len() - since.min(all.len())
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The links attached now and their programs' names (what is still enforcing).
fn attached_programs() -> String {
    let names: std::collections::HashMap<u32, String> = aya::programs::loaded_programs()
        .flatten()
        .map(|p| (p.id(), p.name_as_str().unwrap_or("?").to_string()))
        .collect();
    let links: Vec<String> = aya::programs::loaded_links()
        .flatten()
        .map(|l| {
            let name = names.get(&l.program_id()).map_or("?", String::as_str);
            format!("link {} -> {name}", l.id())
        })
        .collect();
    let errors = aya::programs::loaded_links().filter(|l| l.is_err()).count();
    let progs: Vec<String> = names
        .values()
        .filter(|n| n.starts_with("enf"))
        .cloned()
        .collect();
    let pins: Vec<String> = walk(Path::new(PIN_ROOT));
    format!("{links:?} ({errors} errors); enf programs {progs:?}; pins: {pins:?}")
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        out.push(e.path().display().to_string());
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        }
    }
    out
}

fn cat_in(cg: &Cgroup, file: &str) -> Result<super::command::Captured> {
    cg.run(Command::new("cat").arg(format!("{DIR}/{file}")))
}

fn events_of(state: &Path, rule: &str) -> Result<usize> {
    Ok(super::enforcer_process::query_events(state, &["--limit", "0", "--rule", rule])?.len())
}

fn stop(enforcer: Enforcer) -> Result<()> {
    let log = enforcer.log().unwrap_or_default();
    let status = enforcer.stop()?;
    ensure!(
        status.success(),
        "SIGTERM must exit 0: {status}; log:\n{log}"
    );
    Ok(())
}

/// (1) The daemon is `kill -9`ed while a loop reads a denied file, then restarted: every
/// attempt is denied, and the denies made while no daemon ran reach the store.
fn kill9_and_restart_keep_enforcing_and_keep_the_gap_verdicts() -> Result<()> {
    fixture()?;
    let policy = write_policy("e2e-pin", &[("no-secret", "secret"), ("no-gap", "gap")])?;
    let cg = Cgroup::create(CGROUP)?;
    let first = Enforcer::start(&["--policy", &policy])?;
    let state = first.state_dir().to_path_buf();
    let looping = start_loop(&cg, &["secret"])?;
    wait_attempts(0, 5)?;

    first.kill9()?;
    ensure!(
        pinned() == ["gen-1"],
        "pinned after kill -9: {:?}",
        pinned()
    );
    let killed_at = attempts()?.len();
    // No daemon runs: the pinned programs decide. These reads happen only now.
    for _ in 0..5 {
        let read = cat_in(&cg, "gap")?;
        ensure!(
            !read.status.success(),
            "with no daemon the read was not refused: {read}"
        );
    }
    wait_attempts(killed_at, 5)?;

    let (second, all) = restart(&state, &policy, looping, 5)?;
    let log = second.log().unwrap_or_default();
    ensure!(
        log.contains("adopted the pinned generation"),
        "the restart did not adopt generation 1:\n{log}"
    );
    stop(second)?;

    let ok: Vec<&String> = all.iter().filter(|l| l.ends_with(" ok")).collect();
    ensure!(
        ok.is_empty(),
        "{} of {} reads succeeded across kill -9 and restart",
        ok.len(),
        all.len()
    );
    let gap = events_of(&state, "no-gap")?;
    ensure!(
        gap == 5,
        "the store holds {gap} of the 5 denies made while no daemon ran\n{log}"
    );
    Ok(())
}

/// (2) SIGTERM ends the daemon but not the enforcement; `enforcer unload` ends that, and says
/// so; a second unload finds nothing and exits 0.
fn sigterm_keeps_enforcement_and_unload_removes_it() -> Result<()> {
    fixture()?;
    let policy = write_policy("e2e-pin", &[("no-secret", "secret")])?;
    let cg = Cgroup::create(CGROUP)?;
    let enforcer = Enforcer::start(&["--policy", &policy])?;
    let state = enforcer.state_dir().to_path_buf();
    let read = cat_in(&cg, "secret")?;
    ensure!(
        !read.status.success(),
        "not refused with the daemon: {read}"
    );
    stop(enforcer)?;

    let read = cat_in(&cg, "secret")?;
    ensure!(
        !read.status.success(),
        "after SIGTERM the read was not refused: {read}"
    );
    ensure!(pinned() == ["gen-1"], "pinned: {:?}", pinned());
    let status = capture(
        Command::new(GUEST_ENFORCER)
            .args(["status", "--state-dir"])
            .arg(&state),
    )?;
    ensure!(status.code() == Some(11), "status with no daemon: {status}");
    ensure!(
        status.stdout.contains("pinned: generation 1")
            && status.stdout.contains("policies e2e-pin")
            && status.stdout.contains("enforced with no daemon running"),
        "status does not show the pinned generation: {status}"
    );

    let unload = capture(
        Command::new(GUEST_ENFORCER)
            .args(["unload", "--state-dir"])
            .arg(&state),
    )?;
    ensure!(unload.code() == Some(0), "unload: {unload}");
    ensure!(
        unload.stdout.contains("removed generation 1"),
        "unload does not say what it removed: {unload}"
    );
    let read = cat_in(&cg, "secret")?;
    ensure!(
        read.status.success() && read.stdout == "secret\n",
        "after unload the read is still refused: {read}\nattached: {}",
        attached_programs()
    );
    ensure!(
        pinned().is_empty(),
        "left pinned after unload: {:?}",
        pinned()
    );

    let again = capture(Command::new(GUEST_ENFORCER).arg("unload"))?;
    ensure!(
        again.code() == Some(0) && again.stdout.contains("nothing is pinned"),
        "a second unload: {again}"
    );
    Ok(())
}

/// (3) The daemon stopped with policy A pinned; one started with policy B replaces it: the
/// file both deny is never read, the one only A denies opens once B is in force.
fn a_restart_with_another_policy_replaces_the_pinned_one_without_a_gap() -> Result<()> {
    fixture()?;
    let a = write_policy("e2e-pin-a", &[("a-secret", "secret"), ("a-only", "aonly")])?;
    let b = write_policy("e2e-pin-b", &[("b-secret", "secret")])?;
    let cg = Cgroup::create(CGROUP)?;
    let first = Enforcer::start(&["--policy", &a])?;
    let state = first.state_dir().to_path_buf();
    stop(first)?;
    ensure!(pinned() == ["gen-1"], "pinned: {:?}", pinned());

    let looping = start_loop(&cg, &["secret", "aonly"])?;
    // Every attempt up to here ran under A alone.
    let before = wait_attempts(0, 10)?.len();
    let (second, all) = restart(&state, &b, looping, 10)?;
    let log = second.log().unwrap_or_default();
    stop(second)?;

    let secret_ok = all.iter().filter(|l| *l == "secret ok").count();
    ensure!(
        secret_ok == 0,
        "the file both policies deny was read {secret_ok} times during the switch"
    );
    ensure!(
        all[..before]
            .iter()
            .filter(|l| l.starts_with("aonly"))
            .all(|l| l == "aonly denied"),
        "policy A was not in force before the restart"
    );
    // A read of `aonly` may have started before B was ready: the last attempts decide.
    let tail: Vec<&String> = all
        .iter()
        .rev()
        .filter(|l| l.starts_with("aonly"))
        .take(3)
        .collect();
    ensure!(
        tail.iter().all(|l| *l == "aonly ok"),
        "policy A still applies after the restart: last attempts {tail:?}\n{log}"
    );
    Ok(())
}
