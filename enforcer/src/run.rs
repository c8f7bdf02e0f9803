//! `enforcer run`: load the kernel programs, print and record every verdict
//! they report, and keep running until SIGTERM or SIGINT.

use crate::cgroup;
use crate::exit_code::{self, Failure};
use crate::verdict_log::{self, Clock, VerdictLog};
use anyhow::Context;
use bpf_lsm::{FileOpenPlan, FileRule, LoadError, Loaded, Mode, ScopedCgroup};
use std::path::{Path, PathBuf};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::signal::unix::{signal, SignalKind};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Deny opening this file (resolved path) inside the given cgroups.
    #[arg(long = "deny-open", value_name = "PATH")]
    pub deny_open: Vec<PathBuf>,
    /// A cgroup2 the rules apply to: an absolute path, or one relative to the
    /// cgroup2 mount. Repeatable.
    #[arg(long = "cgroup", value_name = "CGROUP")]
    pub cgroups: Vec<String>,
    /// `audit` records what would be denied and allows it.
    #[arg(long, value_enum, default_value_t = ModeArg::Enforce)]
    pub mode: ModeArg,
    /// Where events and state are kept.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/enforcer")]
    pub state_dir: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    Enforce,
    Audit,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Enforce => Mode::Enforce,
            ModeArg::Audit => Mode::Audit,
        }
    }
}

/// What every event is stamped with.
struct Stamp {
    host: String,
    clock: Clock,
}

/// The rules given on the command line, with what the kernel needs.
struct Rules {
    plan: FileOpenPlan,
    /// rule_id -> the path as the user named it, for messages.
    names: Vec<String>,
}

fn build_rules(args: &RunArgs) -> Result<Rules, Failure> {
    let mode = Mode::from(args.mode);
    let mut plan = FileOpenPlan::default();
    for spec in &args.cgroups {
        let cg = cgroup::resolve(spec).map_err(|e| Failure::new(exit_code::POLICY, e))?;
        plan.cgroups.push(ScopedCgroup { id: cg.id, mode });
    }
    let mut names = Vec::new();
    for path in &args.deny_open {
        let resolved = resolve_file(path).map_err(|e| Failure::new(exit_code::POLICY, e))?;
        let rule_id = u32::try_from(names.len()).map_err(|e| Failure::new(exit_code::POLICY, e))?;
        plan.rules.push(FileRule {
            rule_id,
            path: resolved.as_os_str().as_encoded_bytes().to_vec(),
        });
        names.push(format!("deny-open {}", path.display()));
    }
    if !plan.rules.is_empty() && plan.cgroups.is_empty() {
        return Err(Failure::new(
            exit_code::USAGE,
            anyhow::anyhow!("`--deny-open` needs at least one `--cgroup` to apply to"),
        ));
    }
    Ok(Rules { plan, names })
}

/// The kernel matches the resolved path, so symlinks in the rule's path are
/// resolved here once; a file that does not exist yet keeps its path.
fn resolve_file(path: &Path) -> anyhow::Result<PathBuf> {
    if !path.is_absolute() {
        anyhow::bail!("`{}` is relative: give an absolute path", path.display());
    }
    Ok(std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()))
}

fn ensure_state_dir(dir: &Path) -> Result<(), Failure> {
    std::fs::create_dir_all(dir)
        .and_then(|()| {
            let probe = dir.join(".write-test");
            std::fs::write(&probe, b"")?;
            std::fs::remove_file(&probe)
        })
        .with_context(|| format!("state directory `{}` is not writable", dir.display()))
        .map_err(|e| Failure::new(exit_code::STATE_DIR, e))
}

fn ensure_bpffs() -> Result<(), Failure> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").context("reading mountinfo")?;
    if bpf_lsm::probe::parse_mountinfo(&text)
        .iter()
        .any(|m| m.fs_type == "bpf")
    {
        return Ok(());
    }
    nix::mount::mount(
        Some("bpf"),
        bpf_lsm::probe::BPFFS,
        Some("bpf"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .with_context(|| {
        format!(
            "bpffs is not mounted and mounting it at {} failed",
            bpf_lsm::probe::BPFFS
        )
    })
    .map_err(|e| Failure::new(exit_code::BPFFS, e))
}

pub fn run(args: RunArgs) -> Result<(), Failure> {
    if !nix::unistd::geteuid().is_root() {
        return Err(Failure::new(
            exit_code::NOT_ROOT,
            anyhow::anyhow!("`enforcer run` needs root to load BPF programs: run it with sudo"),
        ));
    }
    let rules = build_rules(&args)?;
    ensure_state_dir(&args.state_dir)?;
    ensure_bpffs()?;
    let log = VerdictLog::open(&args.state_dir.join("events.jsonl"))?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(rules, args.mode, log))
}

async fn serve(rules: Rules, mode: ModeArg, mut log: VerdictLog) -> Result<(), Failure> {
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;

    let loaded = if rules.plan.rules.is_empty() {
        tracing::warn!("no rules given: nothing to enforce (use --deny-open PATH --cgroup CGROUP)");
        None
    } else {
        match Loaded::file_open(&rules.plan) {
            Ok(l) => Some(l),
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                tracing::warn!(
                    "this kernel refuses BPF LSM programs (EPERM), so file rules cannot be enforced \
                     or audited here; `enforcer doctor` says what this kernel supports, and \
                     `cargo xtask vm run` tries a policy against a kernel with BPF LSM"
                );
                None
            }
            Err(e @ LoadError::Verifier { .. }) => {
                return Err(Failure::new(exit_code::KERNEL_LOAD, e))
            }
            Err(e) => return Err(Failure::new(exit_code::KERNEL_LOAD, e)),
        }
    };
    tracing::info!(
        rules = rules.plan.rules.len(),
        cgroups = rules.plan.cgroups.len(),
        mode = ?mode,
        attached = loaded.is_some(),
        "enforcer ready"
    );

    let Some(mut loaded) = loaded else {
        tokio::select! {
            _ = sigterm.recv() => {}
            _ = sigint.recv() => {}
        }
        tracing::info!("stopping");
        return Ok(());
    };

    let ctx = Stamp {
        host: nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
        clock: Clock::now()?,
    };
    let ring = loaded.take_events()?;
    // SAFETY: the ring buffer owns its map fd and returns that same fd from
    // as_raw_fd() until it is dropped, which is after the AsyncFd.
    let mut ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("polling the ring buffer: {}", e.into_parts().1))?;
    let mut decode_errors = 0u64;
    loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard.context("waiting on the ring buffer")?;
                drain(guard.get_inner_mut(), &rules, &ctx, &mut log, &mut decode_errors)?;
                guard.clear_ready();
            }
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        }
    }
    // Stop reading only after what the kernel already reported is recorded.
    drain(ring.get_mut(), &rules, &ctx, &mut log, &mut decode_errors)?;
    log.flush()?;
    let stats = loaded.stats()?;
    tracing::info!(
        ringbuf_drops = stats.ringbuf_drops,
        path_unresolved = stats.path_unresolved,
        decode_errors,
        "stopping"
    );
    Ok(())
}

fn drain(
    ring: &mut bpf_lsm::EventRing,
    rules: &Rules,
    ctx: &Stamp,
    log: &mut VerdictLog,
    decode_errors: &mut u64,
) -> Result<(), Failure> {
    while let Some(item) = ring.next() {
        match bpf_lsm::decode(&item) {
            Ok(event) => {
                let rule = rules
                    .names
                    .get(event.common().rule_id as usize)
                    .map(String::as_str);
                println!("{}", verdict_log::human(&event, rule));
                log.append(&verdict_log::security_event(
                    &event, rule, &ctx.host, &ctx.clock,
                ))?;
            }
            Err(e) => {
                *decode_errors += 1;
                tracing::warn!(error = %e, "skipping a malformed kernel record");
            }
        }
    }
    Ok(())
}
