//! The shared table of cases (`integration/conformance/`), kernel half: every case the host
//! runs through policy-lang's reference evaluator (`tests/conformance.rs`) is performed here
//! for real, under `/bin/enforcer run` with the table's policy files, and the kernel's
//! outcome (the operation worked, failed with EPERM, or the process died of SIGKILL) and the
//! event it produced (verdict, policy and rule) must be what the evaluator decided.
//!
//! [`crate::replay_plan`] turns a case into executables (copies of `/bin/enforcer-replay` at
//! the acting process's and its ancestors' paths), files, addresses and an operation; this
//! module prepares them, runs each case in its cgroup and compares. Every mismatch is
//! reported at once, with the case's name.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;

use std::os::unix::fs::{chown, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use policy_lang::testing::{vectors, TestVector};
use policy_lang::{compile, Evaluator, KernelFeatures};

use super::cgroup::Cgroup;
use super::command::{capture, Captured};
use super::enforcer_process::{query_events, Enforcer};
use super::Test;
use crate::conformance_table;
use crate::replay_plan::{replay, Outcome, Replay, Setup, GUEST_REPLAY, PTRACE_TARGET_PID};

pub const TESTS: &[Test] = &[Test::new(
    "the_kernel_decides_every_case_as_the_evaluator",
    the_kernel_decides_every_case_as_the_evaluator,
)
.with_timeout(900)];

/// Where the table's policy files are written for `enforcer run --policy`.
const POLICY_DIR: &str = "/tmp/conformance-policies";
/// How long the last case's event has to reach the store.
const EVENT_DEADLINE: Duration = Duration::from_secs(20);

fn the_kernel_decides_every_case_as_the_evaluator() -> Result<()> {
    let set = conformance_table::load().map_err(|e| anyhow!("the table does not load:\n{e}"))?;
    let plan = compile(&set, &KernelFeatures::full())
        .map_err(|d| anyhow!("{}", policy_lang::render_all(&d, &set.sources)))?;
    let evaluator = Evaluator::new(&plan)?;
    let cases = vectors(&set);
    let mut replays = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        // The table's own expectation is the evaluator's decision (the host test checks the
        // whole table; this keeps the two halves from drifting apart).
        let decided = evaluator.decide(&case.event);
        if decided.verdict != case.verdict
            || case
                .rule
                .as_ref()
                .is_some_and(|r| decided.rule.as_ref() != Some(r))
        {
            bail!(
                "case `{}`: the evaluator decides {} by {:?}, the table says {} by {:?}",
                case.name,
                decided.verdict.name(),
                decided.rule,
                case.verdict.name(),
                case.rule
            );
        }
        replays.push(replay(case, i).map_err(|e| anyhow!("case `{}`: {e}", case.name))?);
    }

    prepare_once(&replays)?;
    let mut cgroups = Cgroups::default();
    for r in &replays {
        if !late(&r.cgroup) {
            cgroups.get(&r.cgroup)?;
        }
    }
    fs::create_dir_all(POLICY_DIR).with_context(|| format!("creating {POLICY_DIR}"))?;
    for (name, text) in conformance_table::FILES {
        let path = Path::new(POLICY_DIR).join(name);
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let enforcer = Enforcer::start(&["--policy", POLICY_DIR])?;
    let target = PtraceTarget::start()?;

    let mut mismatches = Vec::new();
    let mut ran = Vec::new();
    for r in &replays {
        let cg = cgroups.get(&r.cgroup)?;
        let run = run_case(r, cg, target.pid()).with_context(|| format!("case `{}`", r.name))?;
        if run.outcome != Some(r.outcome) {
            mismatches.push(format!(
                "case `{}` in {}: the evaluator says {:?}, the kernel's outcome was {}",
                r.name, r.cgroup, r.outcome, run.text
            ));
        }
        ran.push(run);
    }
    let event_mismatches = check_events(&enforcer, &replays, &cases, &ran)?;
    mismatches.extend(event_mismatches);
    drop(target);
    enforcer.stop()?;
    cgroups.remove_all();
    if !mismatches.is_empty() {
        bail!(
            "the kernel and the evaluator differ ({} findings over {} cases):\n{}",
            mismatches.len(),
            replays.len(),
            mismatches.join("\n")
        );
    }
    println!(
        "conformance: {} cases, the kernel agreed with the evaluator on each",
        replays.len()
    );
    Ok(())
}

/// Whether the cgroup is made after the enforcer started (a component named `late-...`).
fn late(cgroup: &str) -> bool {
    cgroup.split('/').any(|c| c.starts_with("late-"))
}

/// The cases' cgroups, made on first use with their parents; removed children first.
#[derive(Default)]
struct Cgroups {
    made: BTreeMap<String, usize>,
    order: Vec<Cgroup>,
}

impl Cgroups {
    /// The cgroup at `path` (`None` for the root: the harness's own, which nothing selects).
    fn get(&mut self, path: &str) -> Result<Option<&Cgroup>> {
        if path == "/" {
            return Ok(None);
        }
        let mut prefix = String::new();
        for part in path.trim_matches('/').split('/') {
            prefix.push('/');
            prefix.push_str(part);
            if !self.made.contains_key(&prefix) {
                let cg = Cgroup::create(prefix.trim_start_matches('/'))?;
                self.made.insert(prefix.clone(), self.order.len());
                self.order.push(cg);
            }
        }
        Ok(self.made.get(&prefix).map(|&i| &self.order[i]))
    }

    fn remove_all(&mut self) {
        while let Some(cg) = self.order.pop() {
            drop(cg);
        }
        self.made.clear();
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        self.remove_all();
    }
}

/// What must exist before the enforcer starts: the replay copies, the addresses on `lo` and
/// the TCP listeners (all from the harness, outside every selected cgroup).
fn prepare_once(replays: &[Replay]) -> Result<()> {
    let replay_size = fs::metadata(GUEST_REPLAY)
        .with_context(|| format!("reading {GUEST_REPLAY}"))?
        .len();
    let mut copies = BTreeSet::new();
    let mut addresses = BTreeSet::new();
    let mut listeners = BTreeSet::new();
    for setup in replays.iter().flat_map(|r| &r.setup) {
        match setup {
            Setup::ReplayCopy(p) => {
                copies.insert(p.clone());
            }
            Setup::LocalAddress(ip) => {
                addresses.insert(*ip);
            }
            Setup::TcpListener(ip, port) => {
                listeners.insert((*ip, *port));
            }
            _ => {}
        }
    }
    for path in &copies {
        match fs::symlink_metadata(path) {
            Ok(m) if m.is_file() && m.len() == replay_size => continue,
            Ok(m) if m.file_type().is_symlink() => {
                fs::remove_file(path).with_context(|| format!("removing {path}"))?
            }
            Ok(_) => bail!("{path} exists and is not a copy of {GUEST_REPLAY}"),
            Err(_) => {}
        }
        if let Some(dir) = Path::new(path).parent() {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        fs::copy(GUEST_REPLAY, path)
            .with_context(|| format!("copying {GUEST_REPLAY} to {path}"))?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("chmod {path}"))?;
    }
    for ip in &addresses {
        let prefix = if ip.is_ipv4() { 32 } else { 128 };
        let out = capture(Command::new("ip").args([
            "addr",
            "add",
            &format!("{ip}/{prefix}"),
            "dev",
            "lo",
        ]))?;
        if !out.status.success() && !out.stderr.contains("exists") {
            bail!("adding {ip} to lo: {out}");
        }
    }
    for &(ip, port) in &listeners {
        super::rules_library::serve(&ip.to_string(), port)?;
    }
    Ok(())
}

/// A process for the ptrace cases to attach to, outside every selected cgroup.
struct PtraceTarget(Child);

impl PtraceTarget {
    fn start() -> Result<Self> {
        let child = Command::new("sleep")
            .arg("900")
            .stdin(Stdio::null())
            .spawn()
            .context("starting the ptrace target")?;
        Ok(Self(child))
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for PtraceTarget {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How a case ran.
#[derive(Debug)]
struct Ran {
    /// `None`: it ended some other way (a setup fault, or an errno other than EPERM).
    outcome: Option<Outcome>,
    /// What it printed, for messages.
    text: String,
    /// The acting process, when it got to run.
    pid: Option<u32>,
}

fn run_case(r: &Replay, cg: Option<&Cgroup>, target_pid: u32) -> Result<Ran> {
    for setup in &r.setup {
        prepare(setup)?;
    }
    let op: Vec<String> =
        r.op.iter()
            .map(|a| {
                if a == PTRACE_TARGET_PID {
                    target_pid.to_string()
                } else {
                    a.clone()
                }
            })
            .collect();
    let (first, rest) = r
        .chain
        .split_first()
        .context("a case without an acting process")?;
    let mut cmd = Command::new(first);
    cmd.arg("step")
        .arg(r.uid.to_string())
        .arg(rest.len().to_string())
        .args(rest)
        .arg("--")
        .args(&op);
    if rest.is_empty() && r.uid != 0 {
        cmd.uid(r.uid).gid(r.uid);
    }
    let out = match cg {
        Some(cg) => cg.run(&mut cmd)?,
        None => capture(&mut cmd)?,
    };
    for setup in &r.setup {
        undo(setup);
    }
    Ok(read_outcome(&out))
}

fn read_outcome(out: &Captured) -> Ran {
    let mut pid = None;
    let mut last = None;
    for line in out.stdout.lines() {
        if let Some(p) = line.strip_prefix("pid ") {
            pid = p.trim().parse().ok();
        } else {
            last = Some(line.trim().to_owned());
        }
    }
    let outcome = match (out.status.signal(), last.as_deref()) {
        (Some(libc::SIGKILL), _) | (None, Some("signal 9")) => Some(Outcome::Killed),
        (None, Some("ok" | "ran")) if out.status.success() => Some(Outcome::Worked),
        (None, Some("errno 1")) => Some(Outcome::Refused),
        _ => None,
    };
    let text = match outcome {
        Some(Outcome::Worked) => "it worked".to_owned(),
        Some(Outcome::Refused) => "EPERM".to_owned(),
        Some(Outcome::Killed) => "SIGKILL".to_owned(),
        None => format!("unexpected: {out}"),
    };
    Ran { outcome, text, pid }
}

/// Puts one precondition in place (again for every case: an earlier one may have deleted,
/// renamed or chmodded the file).
fn prepare(setup: &Setup) -> Result<()> {
    match setup {
        Setup::File { path, uid } => {
            parent_for(path, *uid)?;
            let _ = fs::remove_file(path);
            fs::write(path, b"conformance\n").with_context(|| format!("writing {path}"))?;
            fs::set_permissions(path, fs::Permissions::from_mode(0o644))
                .with_context(|| format!("chmod {path}"))?;
            chown(path, Some(*uid), Some(*uid)).with_context(|| format!("chown {path}"))?;
        }
        Setup::Absent { path, uid } => {
            parent_for(path, *uid)?;
            match fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("removing {path}")),
            }
        }
        Setup::Dir(dir) => {
            fs::create_dir_all(dir).with_context(|| format!("creating {dir}"))?;
        }
        Setup::Tmpfs(dir) => {
            fs::create_dir_all(dir).with_context(|| format!("creating {dir}"))?;
            nix::mount::mount(
                Some("none"),
                dir.as_str(),
                Some("tmpfs"),
                nix::mount::MsFlags::empty(),
                None::<&str>,
            )
            .with_context(|| format!("mounting a tmpfs on {dir}"))?;
        }
        Setup::ReplayCopy(_)
        | Setup::LocalAddress(_)
        | Setup::TcpListener(..)
        | Setup::PtraceTarget => {}
    }
    Ok(())
}

/// Undoes what a case may have left mounted.
fn undo(setup: &Setup) {
    if let Setup::Dir(dir) | Setup::Tmpfs(dir) = setup {
        let _ = nix::mount::umount2(dir.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Makes the directory of `path`, writable by `uid`.
fn parent_for(path: &str, uid: u32) -> Result<()> {
    let dir = Path::new(path)
        .parent()
        .with_context(|| format!("{path} has no directory"))?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    if uid != 0 {
        chown(dir, Some(uid), Some(uid)).with_context(|| format!("chown {}", dir.display()))?;
    }
    Ok(())
}

/// Every case whose verdict records an event has one of its acting process with that
/// verdict and (when the case names it) that policy and rule, about the case's object.
fn check_events(
    enforcer: &Enforcer,
    replays: &[Replay],
    cases: &[TestVector],
    ran: &[Ran],
) -> Result<Vec<String>> {
    let deadline = Instant::now() + EVENT_DEADLINE;
    loop {
        let events = query_events(
            enforcer.state_dir(),
            &["--limit", "0", "--verdict", "denied,audited,killed"],
        )?;
        let mut missing = Vec::new();
        for ((r, case), run) in replays.iter().zip(cases).zip(ran) {
            let Some(verdict) = r.event_verdict else {
                continue;
            };
            let Some(pid) = run.pid else {
                missing.push(format!(
                    "case `{}`: the acting process never reported its pid",
                    r.name
                ));
                continue;
            };
            let found = events.iter().any(|e| {
                e["verdict"] == verdict
                    && e["process"]["pid"].as_u64() == Some(u64::from(pid))
                    && r.rule.as_deref().is_none_or(|rule| of_rule(e, rule))
                    && about(e, case)
            });
            if !found {
                let of_pid: Vec<String> = events
                    .iter()
                    .filter(|e| e["process"]["pid"].as_u64() == Some(u64::from(pid)))
                    .map(|e| {
                        format!(
                            "{} by {}/{} ({})",
                            e["verdict"], e["policy"], e["rule"], e["target"]
                        )
                    })
                    .collect();
                missing.push(format!(
                    "case `{}`: no `{verdict}` event{} of pid {pid}; its events: [{}]",
                    r.name,
                    r.rule
                        .as_deref()
                        .map(|rule| format!(" by `{rule}`"))
                        .unwrap_or_default(),
                    of_pid.join("; ")
                ));
            }
        }
        if missing.is_empty() || Instant::now() >= deadline {
            return Ok(missing);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Whether `e` is of `rule` (`policy/rule`).
fn of_rule(e: &serde_json::Value, rule: &str) -> bool {
    rule.split_once('/')
        .is_some_and(|(p, r)| e["policy"] == p && e["rule"] == r)
}

/// Whether the event is about the case's object: its class, and for files and programs its
/// path.
fn about(e: &serde_json::Value, case: &TestVector) -> bool {
    use policy_lang::event::Operation;
    let target = e["target"].to_string();
    match &case.event.op {
        Operation::Exec { path, .. } => target.contains(path.as_str()),
        Operation::File { path, .. } => e["class"] == "file" && target.contains(path.as_str()),
        Operation::Network { .. } => e["class"] == "network",
        Operation::Kernel(_) => e["class"] == "kernel",
    }
}
