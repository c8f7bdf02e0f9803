//! `enforcer run`: load the kernel programs, print and record every verdict
//! they report, and keep running until SIGTERM or SIGINT.

use crate::cgroup;
use crate::config::{Config, ModeSetting};
use crate::exit_code::{self, Failure};
use crate::kernel_apply;
use crate::policy_cmd;
use crate::verdict_log::{self, Clock, Names, RuleInfo, VerdictLog};
use anyhow::Context;
use bpf_lsm::plan::KernelPlan;
use bpf_lsm::{FileOpenPlan, FileRule, Loaded, Mode, ScopedCgroup};
use enforcer::store::{self, Store, Writer, WriterOptions};
use std::path::{Path, PathBuf};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::signal::unix::{signal, SignalKind};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Policy files or folders (repeatable). Default: the config's `policies`, else the
    /// rule library embedded in this binary.
    #[arg(long = "policy", value_name = "PATH")]
    pub policies: Vec<PathBuf>,
    /// The daemon's config file (TOML; see docs/architecture.md for every key).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// `audit` turns every policy into audit: record what would be denied, allow it.
    #[arg(long, value_enum)]
    pub mode: Option<ModeArg>,
    /// Where events and state are kept. Default: the config's, else /var/lib/enforcer.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// An ad-hoc rule instead of policies: deny opening this file (its resolved path)
    /// inside the `--cgroup`s.
    #[arg(long = "deny-open", value_name = "PATH", requires = "cgroups")]
    pub deny_open: Vec<PathBuf>,
    /// A cgroup2 the `--deny-open` rules apply to: an absolute path, or one relative to
    /// the cgroup2 mount. Repeatable.
    #[arg(long = "cgroup", value_name = "CGROUP")]
    pub cgroups: Vec<String>,
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

/// What the kernel gets.
enum Load {
    /// `--deny-open` rules.
    Adhoc(FileOpenPlan),
    /// A compiled policy set.
    Plan(Box<KernelPlan>),
    /// Nothing: this kernel cannot load BPF LSM programs (the reason is logged).
    Nothing,
}

/// What the daemon enforces, and how its events name rules and policies.
struct Rules {
    load: Load,
    names: Names,
}

fn build_rules(args: &RunArgs, mode: ModeArg) -> Result<Rules, Failure> {
    let mode = Mode::from(mode);
    let mut plan = FileOpenPlan::default();
    for spec in &args.cgroups {
        let cg = cgroup::resolve(spec).map_err(|e| Failure::new(exit_code::POLICY, e))?;
        plan.cgroups.push(ScopedCgroup { id: cg.id, mode });
    }
    let mut names = Names::default();
    for path in &args.deny_open {
        let resolved = resolve_file(path).map_err(|e| Failure::new(exit_code::POLICY, e))?;
        let rule_id =
            u32::try_from(plan.rules.len()).map_err(|e| Failure::new(exit_code::POLICY, e))?;
        plan.rules.push(FileRule {
            rule_id,
            path: resolved.as_os_str().as_encoded_bytes().to_vec(),
        });
        names.rules.insert(
            rule_id,
            RuleInfo::adhoc(format!("deny-open {}", path.display())),
        );
    }
    Ok(Rules {
        load: Load::Adhoc(plan),
        names,
    })
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
    let config = match &args.config {
        Some(path) => Config::load(path).map_err(|e| Failure::new(exit_code::CONFIG, e))?,
        None => Config::default(),
    };
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| config.state_dir.clone());
    let mode = args.mode.or(config.mode.map(|m| match m {
        ModeSetting::Enforce => ModeArg::Enforce,
        ModeSetting::Audit => ModeArg::Audit,
    }));

    let rules = if args.deny_open.is_empty() {
        let paths = if args.policies.is_empty() {
            config.policies.clone()
        } else {
            args.policies.clone()
        };
        compile_policies(&paths, mode)?
    } else {
        build_rules(&args, mode.unwrap_or(ModeArg::Enforce))?
    };
    ensure_state_dir(&state_dir)?;
    ensure_bpffs()?;
    let log = VerdictLog::open(&state_dir.join("events.jsonl"), &config.event_log)?;
    let store_path = store::path_in(&state_dir);
    let store = Store::open(&store_path)
        .with_context(|| format!("opening the event store `{}`", store_path.display()))
        .map_err(|e| Failure::new(exit_code::STATE_DIR, e))?;
    let writer = Writer::spawn(
        store,
        WriterOptions {
            retention: config.store.retention(),
            ..WriterOptions::default()
        },
    )
    .context("starting the event store writer")?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(serve(rules, mode, log, &writer));
    // Whatever happened, what was queued for the store is written before exit.
    match writer.shutdown() {
        Ok((_, stats)) => tracing::info!(
            stored = stats.inserted,
            dropped = stats.dropped,
            failed = stats.failed,
            "event store flushed"
        ),
        Err(e) => tracing::error!(error = %e, "flushing the event store failed"),
    }
    result
}

/// Loads, checks and compiles the policy set for the running kernel, and translates it for
/// the kernel programs; diagnostics go to stderr, and a set with errors, or with a rule the
/// kernel programs cannot enforce as written, stops the daemon before anything is loaded.
fn compile_policies(paths: &[PathBuf], mode: Option<ModeArg>) -> Result<Rules, Failure> {
    let input = policy_cmd::Input {
        paths: paths.to_vec(),
        builtin: paths.is_empty(),
        kernel: None,
    };
    let mut set = policy_cmd::load(&input, policy_cmd::Format::Text).map_err(|f| Failure {
        code: exit_code::POLICY,
        ..f
    })?;
    if mode == Some(ModeArg::Audit) {
        for p in &mut set.policies {
            p.mode = policy_lang::model::Mode::Audit;
        }
    }
    let kernel = policy_cmd::kernel_features(None)?;
    let plan = policy_lang::compile(&set, &kernel).map_err(|d| {
        eprint!("{}", policy_lang::render_all(&d, &set.sources));
        Failure::new(
            exit_code::POLICY,
            anyhow::anyhow!("the policy set does not compile for this kernel"),
        )
        .quiet()
    })?;
    tracing::info!(
        policies = plan.policies.len(),
        rules = plan.rules.len(),
        source = if paths.is_empty() {
            "embedded rule library"
        } else {
            "files"
        },
        "policy set compiled"
    );
    let root = cgroup::cgroup2_root().map_err(|e| Failure::new(exit_code::ERROR, e))?;
    let tree = kernel_apply::cgroup_tree(&root)
        .with_context(|| format!("walking the cgroup tree under `{}`", root.display()))?;
    let kernel_plan = kernel_apply::kernel_plan(&plan, &tree).map_err(|gaps| {
        for gap in &gaps {
            eprintln!("error: rule {gap}");
        }
        Failure::new(
            exit_code::POLICY,
            anyhow::anyhow!(
                "{} rule(s) cannot be enforced by this build as written; nothing was loaded",
                gaps.len()
            ),
        )
    })?;
    let names = Names::of(&plan);
    let load = if plan.kernel.bpf_lsm {
        Load::Plan(Box::new(kernel_plan))
    } else {
        tracing::warn!(
            "this kernel cannot load BPF LSM programs: none of the {} rules is enforced or \
             audited in the kernel here; `enforcer doctor` says what this kernel supports, and \
             `cargo xtask vm run` tries the policy against a kernel with BPF LSM",
            plan.rules.len()
        );
        Load::Nothing
    };
    Ok(Rules { load, names })
}

async fn serve(
    rules: Rules,
    mode: Option<ModeArg>,
    mut log: VerdictLog,
    writer: &Writer,
) -> Result<(), Failure> {
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;

    let loaded = match &rules.load {
        Load::Adhoc(plan) => match Loaded::file_open(plan) {
            Ok(l) => Some(l),
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                tracing::warn!(
                    "this kernel refuses BPF LSM programs (EPERM), so file rules cannot be enforced \
                     or audited here; `enforcer doctor` says what this kernel supports, and \
                     `cargo xtask vm run` tries a policy against a kernel with BPF LSM"
                );
                None
            }
            Err(e) => return Err(Failure::new(exit_code::KERNEL_LOAD, e)),
        },
        Load::Plan(plan) => {
            Some(Loaded::apply(plan).map_err(|e| Failure::new(exit_code::KERNEL_LOAD, e))?)
        }
        Load::Nothing => None,
    };
    let (rule_count, cgroup_count) = match &rules.load {
        Load::Adhoc(plan) => (plan.rules.len(), plan.cgroups.len()),
        Load::Plan(plan) => (plan.rules.len(), plan.cgroups.len()),
        Load::Nothing => (rules.names.rules.len(), 0),
    };
    tracing::info!(
        rules = rule_count,
        cgroups = cgroup_count,
        mode = ?mode,
        attached = ?loaded.as_ref().map(Loaded::attached),
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
                drain(guard.get_inner_mut(), &rules, &ctx, &mut log, writer, &mut decode_errors)?;
                guard.clear_ready();
            }
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        }
    }
    // Stop reading only after what the kernel already reported is recorded.
    drain(
        ring.get_mut(),
        &rules,
        &ctx,
        &mut log,
        writer,
        &mut decode_errors,
    )?;
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
    writer: &Writer,
    decode_errors: &mut u64,
) -> Result<(), Failure> {
    while let Some(item) = ring.next() {
        match bpf_lsm::decode_record(&item) {
            Ok(record) => {
                println!("{}", verdict_log::human(&record, &rules.names));
                let event =
                    verdict_log::security_event(&record, &rules.names, &ctx.host, &ctx.clock);
                log.append(&event)?;
                // Never blocks: a full queue is counted as dropped by the writer.
                writer.submit(event);
            }
            Err(e) => {
                *decode_errors += 1;
                tracing::warn!(error = %e, "skipping a malformed kernel record");
            }
        }
    }
    Ok(())
}
