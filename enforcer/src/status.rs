//! The daemon's status file and `enforcer status`.
//!
//! `enforcer run` writes `<state_dir>/status.json` at start, after every reload (whether it
//! took effect or not), every few seconds with fresh counters, and once more at a clean stop
//! (`running: false`). It is written to a temporary file and renamed over the old one, so a
//! reader always sees a whole file. `enforcer status` reads it and the event store; the daemon
//! is alive when the file says it runs and the process with its pid has the start time the
//! file recorded (a pid reused by another process does not count).

use crate::exit_code::{self, Failure};
use anyhow::Context;
use enforcer::store::{self, Store, StoreError};
use serde::{Deserialize, Serialize};
use siem_export::event::Timestamp;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The file name in the state directory.
pub const FILE: &str = "status.json";

/// One policy of the plan in force.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyInfo {
    pub name: String,
    /// `enforce` or `audit` (after `--mode audit`).
    pub mode: String,
    /// Rules of this policy in the compiled plan.
    pub rules: usize,
}

/// The plan in force.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanInfo {
    pub policies: Vec<PolicyInfo>,
    /// Rules the kernel programs enforce (0 when this kernel runs none of them).
    pub rules_loaded: u64,
    /// cgroups the plan's selectors resolved to when it was loaded.
    pub cgroups: usize,
    /// Programs attached (`enf_file_open`, ...).
    pub hooks: Vec<String>,
    /// `lsm` or `cgroup_sock`; absent when the plan has no network rule.
    pub network_mechanism: Option<String>,
}

/// Why the last reload did not take effect.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadFailure {
    pub at: Timestamp,
    /// `SIGHUP` or `policy files changed`.
    pub trigger: String,
    pub error: String,
    /// The diagnostics (`file:line:col: ...`) or the verifier log, when there are any.
    pub details: String,
}

/// The kernel programs' counters, summed over every plan loaded since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelCounters {
    pub ringbuf_drops: u64,
    pub path_unresolved: u64,
    pub inherit_failed: u64,
    pub inherited: u64,
    /// Filtered rule matches on tasks of unknown executable (failed closed).
    #[serde(default)]
    pub binary_unknown: u64,
    /// Execs and forks whose binary sets could not be stored.
    #[serde(default)]
    pub binary_store_failed: u64,
    /// Verdict records the kernel's rate limit did not send (the verdicts applied).
    #[serde(default)]
    pub rate_suppressed: u64,
}

impl KernelCounters {
    pub fn add(self, s: bpf_lsm::KernelStats) -> Self {
        KernelCounters {
            ringbuf_drops: self.ringbuf_drops.saturating_add(s.ringbuf_drops),
            path_unresolved: self.path_unresolved.saturating_add(s.path_unresolved),
            inherit_failed: self.inherit_failed.saturating_add(s.inherit_failed),
            inherited: self.inherited.saturating_add(s.inherited),
            binary_unknown: self.binary_unknown.saturating_add(s.binary_unknown),
            binary_store_failed: self
                .binary_store_failed
                .saturating_add(s.binary_store_failed),
            rate_suppressed: self.rate_suppressed.saturating_add(s.rate_suppressed),
        }
    }

    pub fn stats(self) -> bpf_lsm::KernelStats {
        bpf_lsm::KernelStats {
            ringbuf_drops: self.ringbuf_drops,
            path_unresolved: self.path_unresolved,
            inherit_failed: self.inherit_failed,
            inherited: self.inherited,
            binary_unknown: self.binary_unknown,
            binary_store_failed: self.binary_store_failed,
            rate_suppressed: self.rate_suppressed,
        }
    }
}

/// What `status.json` holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonStatus {
    pub version: String,
    pub pid: u32,
    /// The process's start time in clock ticks since boot (`/proc/PID/stat` field 22): with
    /// the pid, it tells the daemon from a later process that got the same pid.
    pub pid_start_ticks: u64,
    /// false once the daemon stopped cleanly.
    pub running: bool,
    pub started_at: Timestamp,
    pub updated_at: Timestamp,
    /// `files`, `embedded rule library` or `--deny-open`.
    pub source: String,
    pub policy_paths: Vec<PathBuf>,
    /// `audit` when `--mode audit` (or the config's `mode`) forces every policy into audit.
    pub mode_override: Option<String>,
    /// What reloads the policies: `SIGHUP`, `policy file changes`; empty for `--deny-open`.
    pub reload_on: Vec<String>,
    pub plan: PlanInfo,
    /// 1 for the plan loaded at start, one more per reload that took effect.
    pub generation: u64,
    /// When the plan in force took effect.
    pub loaded_at: Timestamp,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    /// Set when the last reload failed; cleared by the next one that takes effect.
    pub last_reload_error: Option<ReloadFailure>,
    pub kernel: KernelCounters,
    /// Verdicts read from the kernel since start.
    pub events: u64,
}

/// The start time of `pid` in clock ticks since boot.
pub fn start_ticks(pid: u32) -> Option<u64> {
    let pid = i32::try_from(pid).ok()?;
    procfs::process::Process::new(pid)
        .ok()?
        .stat()
        .ok()
        .map(|s| s.starttime)
}

impl DaemonStatus {
    /// Writes `<dir>/status.json` atomically: a temporary file renamed over it.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        let path = dir.join(FILE);
        let tmp = dir.join(format!(".{FILE}.tmp"));
        let text = serde_json::to_vec_pretty(self).context("encoding the status")?;
        let mut f =
            std::fs::File::create(&tmp).with_context(|| format!("creating `{}`", tmp.display()))?;
        f.write_all(&text)
            .and_then(|()| f.write_all(b"\n"))
            .with_context(|| format!("writing `{}`", tmp.display()))?;
        std::fs::rename(&tmp, &path)
            .with_context(|| format!("renaming `{}` to `{}`", tmp.display(), path.display()))
    }

    /// Reads `<dir>/status.json`; `None` when there is none.
    pub fn read(dir: &Path) -> anyhow::Result<Option<Self>> {
        let path = dir.join(FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(e).with_context(|| format!("reading the status `{}`", path.display()))
            }
        };
        serde_json::from_str(&text)
            .with_context(|| {
                format!(
                    "`{}` is not a status file of this enforcer; it is rewritten when the daemon \
                     starts",
                    path.display()
                )
            })
            .map(Some)
    }

    /// The daemon that wrote this still runs.
    pub fn alive(&self) -> bool {
        self.running && start_ticks(self.pid) == Some(self.pid_start_ticks)
    }
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The daemon's state directory (default: the config's `state_dir`, else
    /// /var/lib/enforcer).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// The daemon's config file, for its `state_dir`.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the status as JSON.
    #[arg(long)]
    pub json: bool,
    /// The bpffs directory the daemon pins its plans in (default: the config's `pin_root`,
    /// else /sys/fs/bpf/enforcer): the generations pinned there are listed.
    #[arg(long, value_name = "DIR", env = crate::pinning::PIN_ROOT_ENV)]
    pub pin_root: Option<String>,
}

/// The store's part of `enforcer status`.
#[derive(Debug, Serialize)]
struct StoreInfo {
    path: PathBuf,
    events: u64,
    file_bytes: u64,
    wal_bytes: u64,
}

#[derive(Debug, Serialize)]
struct Report {
    /// The daemon runs (exit code 0) or not (exit code [`exit_code::NO_DAEMON`]).
    alive: bool,
    /// The last status the daemon wrote; absent when it never ran with this state directory.
    daemon: Option<DaemonStatus>,
    /// Absent when there is no event store yet.
    store: Option<StoreInfo>,
    /// The generations pinned in bpffs: enforced also while no daemon runs.
    pinned: Vec<crate::pinning::PinnedInfo>,
}

/// `enforcer status`: 0 when the daemon runs, [`exit_code::NO_DAEMON`] when it does not.
pub fn run(args: StatusArgs) -> Result<u8, Failure> {
    let config = crate::pinning::config_or_default(args.config.as_deref())?;
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| config.state_dir.clone());
    let pinned = crate::pinning::root(args.pin_root.as_deref().map(Path::new), &config.pin_root)
        .map(|root| crate::pinning::pinned_info(&root, &state_dir))
        .unwrap_or_default();
    let daemon = DaemonStatus::read(&state_dir)?;
    let alive = daemon.as_ref().is_some_and(DaemonStatus::alive);
    let store_path = store::path_in(&state_dir);
    let store = match Store::open_read_only(&store_path) {
        Ok(s) => {
            let st = s
                .stats()
                .with_context(|| format!("reading the event store `{}`", store_path.display()))?;
            Some(StoreInfo {
                path: store_path,
                events: st.events,
                file_bytes: st.file_bytes,
                wal_bytes: st.wal_bytes,
            })
        }
        Err(StoreError::Missing { .. }) => None,
        Err(e) => {
            return Err(Failure::from(anyhow::Error::new(e).context(format!(
                "opening the event store `{}`",
                store_path.display()
            ))))
        }
    };
    let report = Report {
        alive,
        daemon,
        store,
        pinned,
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("encoding the status")?
        );
    } else {
        print!("{}", render(&report, &state_dir));
    }
    Ok(if alive {
        exit_code::OK
    } else {
        exit_code::NO_DAEMON
    })
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn render(r: &Report, state_dir: &Path) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    match &r.daemon {
        None => {
            let _ = writeln!(
                o,
                "daemon: not running (no status in `{}`: `enforcer run` writes one)",
                state_dir.display()
            );
        }
        Some(d) => {
            if r.alive {
                let _ = writeln!(
                    o,
                    "daemon: running, pid {}, since {} (enforcer {})",
                    d.pid, d.started_at, d.version
                );
            } else if d.running {
                let _ = writeln!(
                    o,
                    "daemon: not running (pid {} is gone; it did not stop cleanly); last status \
                     of {}:",
                    d.pid, d.updated_at
                );
            } else {
                let _ = writeln!(
                    o,
                    "daemon: not running (stopped at {}); last status:",
                    d.updated_at
                );
            }
            let paths: Vec<String> = d
                .policy_paths
                .iter()
                .map(|p| format!("`{}`", p.display()))
                .collect();
            let _ = writeln!(
                o,
                "policies: from {}{}; generation {}, loaded {}{}",
                d.source,
                if paths.is_empty() {
                    String::new()
                } else {
                    format!(" {}", paths.join(", "))
                },
                d.generation,
                d.loaded_at,
                d.mode_override
                    .as_deref()
                    .map(|m| format!("; every policy forced to {m}"))
                    .unwrap_or_default()
            );
            for p in &d.plan.policies {
                let _ = writeln!(o, "  {:<32} {:<8} {} rules", p.name, p.mode, p.rules);
            }
            let _ = writeln!(
                o,
                "kernel: {} rules loaded in {} cgroups; hooks: {}; network: {}",
                d.plan.rules_loaded,
                d.plan.cgroups,
                if d.plan.hooks.is_empty() {
                    "none".to_string()
                } else {
                    d.plan.hooks.join(", ")
                },
                d.plan.network_mechanism.as_deref().unwrap_or("none")
            );
            let _ = writeln!(
                o,
                "reloads: {} ok, {} failed; reloaded on: {}",
                d.reloads_ok,
                d.reloads_failed,
                if d.reload_on.is_empty() {
                    "nothing (ad-hoc rules)".to_string()
                } else {
                    d.reload_on.join(", ")
                }
            );
            if let Some(e) = &d.last_reload_error {
                let _ = writeln!(
                    o,
                    "last reload failed at {} ({}): {}; the plan of generation {} stays in force",
                    e.at, e.trigger, e.error, d.generation
                );
                for line in e.details.lines() {
                    let _ = writeln!(o, "  {line}");
                }
            }
            let k = &d.kernel;
            let _ = writeln!(
                o,
                "counters: {} events, {} ring-buffer drops, {} unresolved paths, {} inherited \
                 cgroups, {} failed inheritances, {} records suppressed by the rate limit",
                d.events,
                k.ringbuf_drops,
                k.path_unresolved,
                k.inherited,
                k.inherit_failed,
                k.rate_suppressed
            );
        }
    }
    match &r.store {
        Some(s) => {
            let _ = writeln!(
                o,
                "store: `{}`: {} events, {} (write-ahead log {})",
                s.path.display(),
                s.events,
                bytes(s.file_bytes),
                bytes(s.wal_bytes)
            );
        }
        None => {
            let _ = writeln!(o, "store: none yet in `{}`", state_dir.display());
        }
    }
    for p in &r.pinned {
        let _ = writeln!(
            o,
            "pinned: generation {} in `{}`: {} link(s) attached{}{}{}",
            p.generation,
            p.dir.display(),
            p.links,
            if p.policies.is_empty() {
                String::new()
            } else {
                format!("; policies {}", p.policies.join(", "))
            },
            p.plan_hash
                .as_deref()
                .map(|h| format!("; plan {h}"))
                .unwrap_or_default(),
            if r.alive {
                ""
            } else {
                "; enforced with no daemon running (`enforcer unload` removes it)"
            }
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> DaemonStatus {
        let now = Timestamp::now();
        DaemonStatus {
            version: "0.1.0".into(),
            pid: std::process::id(),
            pid_start_ticks: start_ticks(std::process::id()).unwrap(),
            running: true,
            started_at: now,
            updated_at: now,
            source: "files".into(),
            policy_paths: vec![PathBuf::from("/etc/enforcer/policies")],
            mode_override: None,
            reload_on: vec!["SIGHUP".into()],
            plan: PlanInfo::default(),
            generation: 1,
            loaded_at: now,
            reloads_ok: 0,
            reloads_failed: 0,
            last_reload_error: None,
            kernel: KernelCounters::default(),
            events: 0,
        }
    }

    #[test]
    fn the_status_file_round_trips_and_tells_a_live_pid() {
        let dir = tempfile::tempdir().unwrap();
        assert!(DaemonStatus::read(dir.path()).unwrap().is_none());
        let s = sample();
        s.write(dir.path()).unwrap();
        let back = DaemonStatus::read(dir.path()).unwrap().unwrap();
        assert_eq!(back, s);
        assert!(back.alive());
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(FILE)]);
    }

    #[test]
    fn a_reused_pid_or_a_clean_stop_is_not_a_running_daemon() {
        let mut s = sample();
        s.pid_start_ticks += 1;
        assert!(!s.alive());
        let mut s = sample();
        s.running = false;
        assert!(!s.alive());
    }

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 * 1024 * 1024), "3.0 MiB");
    }
}
