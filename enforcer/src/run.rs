//! `enforcer run`: load the kernel programs, print and record every verdict
//! they report, and keep running until SIGTERM or SIGINT.

use crate::alerts::AlertRules;
use crate::cgroup;
use crate::config::{Config, ModeSetting};
use crate::exit_code::{self, Failure};
use crate::export_cmd;
use crate::kernel_settings::KernelSettings;
use crate::metrics::{self, DaemonMetrics, MetricsAddress, TableSample};
use crate::pinning::{self, Pins};
use crate::process_feed::{self, Feed, SlotCache};
use crate::reload::{self, Compiler, Rejected, Source};
use crate::status::{self, DaemonStatus, KernelCounters, PlanInfo, ReloadFailure};
use crate::verdict_log::{self, Clock, Names, RuleInfo, VerdictLog};
use anyhow::Context;
use bpf_lsm::plan::KernelPlan;
use bpf_lsm::{EventRing, FileOpenPlan, FileRule, Loaded, Mode, ScopedCgroup};
use enforcer::enrich::{EnrichConfig, Enricher};
use enforcer::store::{self, Store, Writer, WriterOptions};
use siem_export::config::SinkRuntime;
use siem_export::dispatcher::Dispatcher;
use siem_export::event::Timestamp;
use siem_export::follow::{FollowConfig, LogFollower, Step};
use siem_export::outbox::Outbox;
use siem_export::sink::RotationHold;
use siem_export::SecurityEvent;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::unix::{AsyncFd, AsyncFdReadyMutGuard};
use tokio::io::Interest;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

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
    /// Serve Prometheus metrics at http://ADDR/metrics (ADDR is IP:PORT; "" turns them off).
    /// Default: the config's `[metrics] address`, else 127.0.0.1:9464.
    #[arg(long, value_name = "ADDR", value_parser = metrics::parse_address)]
    pub metrics_address: Option<MetricsAddress>,
    /// The bpffs directory each loaded plan is pinned in, so that enforcement outlives the
    /// daemon ("" turns pinning off). Default: the config's `pin_root`, else
    /// /sys/fs/bpf/enforcer.
    #[arg(long, value_name = "DIR", env = pinning::PIN_ROOT_ENV)]
    pub pin_root: Option<String>,
    /// Self-protection on, whatever the config says (it is on by default): tasks under
    /// enforcement may not signal or ptrace the daemon, reach BPF objects by pin or id, or
    /// touch its state directory and pin root.
    #[arg(long, conflicts_with = "no_self_protection")]
    pub self_protection: bool,
    /// Self-protection off, whatever the config says.
    #[arg(long)]
    pub no_self_protection: bool,
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

/// What every event is stamped and enriched with.
struct Stamp {
    host: String,
    clock: Clock,
    /// The process table (exe, argv, ancestors, exec id) and workload identity.
    enricher: Enricher,
    metrics: Arc<DaemonMetrics>,
    /// cgroup id to policy slots, for the scope of alert rules on verdicts.
    slots: SlotCache,
    /// Verdicts read from the kernel since start.
    events: u64,
}

/// What the kernel gets.
pub(crate) enum Load {
    /// `--deny-open` rules.
    Adhoc(FileOpenPlan),
    /// A compiled policy set.
    Plan(Box<KernelPlan>),
    /// Nothing: this kernel cannot load BPF LSM programs (the reason is logged).
    Nothing,
}

/// What the daemon enforces, and how its events name rules and policies.
pub(crate) struct Rules {
    pub(crate) load: Load,
    pub(crate) names: Names,
    /// `alert` rules, evaluated on exec records and verdicts.
    pub(crate) alerts: AlertRules,
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
        alerts: AlertRules::none(),
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

    let source = if !args.deny_open.is_empty() {
        Source::Adhoc
    } else {
        let paths = if args.policies.is_empty() {
            config.policies.clone()
        } else {
            args.policies.clone()
        };
        if paths.is_empty() {
            Source::Embedded
        } else {
            Source::Files(paths)
        }
    };
    // Watching starts before the first compile: an edit made after it is never missed.
    let watches = match &source {
        Source::Files(paths) => match reload::Watches::new(paths) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "policy files are not watched; SIGHUP still reloads them"
                );
                None
            }
        },
        Source::Embedded | Source::Adhoc => None,
    };
    let (prepared, compiler) = match &source {
        Source::Adhoc => {
            let mode = mode.unwrap_or(ModeArg::Enforce);
            (
                reload::Prepared::adhoc(build_rules(&args, mode)?, mode),
                None,
            )
        }
        Source::Files(_) | Source::Embedded => {
            let compiler = Compiler::new(source.paths().to_vec(), mode)?
                .with_pod_logs_dir(config.pod_logs_dir.clone());
            let prepared = compiler.compile().map_err(Rejected::into_failure)?;
            eprint!("{}", prepared.warnings);
            (prepared, Some(Arc::new(compiler)))
        }
    };
    ensure_state_dir(&state_dir)?;
    ensure_bpffs()?;
    // Bound before anything is opened or loaded: an address in use stops the daemon here.
    let metrics_address = match args.metrics_address {
        Some(MetricsAddress(addr)) => addr,
        None => config.metrics.socket_addr(),
    };
    let listener = metrics_address.map(metrics::bind).transpose()?;
    let metrics = Arc::new(DaemonMetrics::new(env!("CARGO_PKG_VERSION")));
    // With export, the log follower reads events.jsonl: rotation keeps what it has not
    // read, up to `keep_files` more files (at least one).
    let hold = (!config.export.sinks.is_empty())
        .then(|| Arc::new(RotationHold::new(config.event_log.keep_files.max(1))));
    let log_path = state_dir.join(verdict_log::FILE_NAME);
    let log = VerdictLog::open(&log_path, &config.event_log, hold.clone())?;
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

    let export = match hold {
        None => None,
        Some(hold) => Some(prepare_export(&config, &state_dir, &log_path, hold)?),
    };

    // Two workers: the ring buffer is read on the main thread (block_on) while the export
    // workers send on the runtime's threads; the outbox runs on the blocking pool.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let pins =
        pinning::root(args.pin_root.as_deref().map(Path::new), &config.pin_root).map(|root| Pins {
            root,
            state_dir: state_dir.clone(),
        });
    let guard = match &compiler {
        Some(_) if args.no_self_protection || !(args.self_protection || config.self_protection) => {
            tracing::warn!(
                "self-protection is off: tasks under enforcement may signal the daemon and \
                 touch its state directory and pins"
            );
            None
        }
        Some(c) if c.bpf_lsm() => Some(crate::self_guard::of_daemon(
            &state_dir,
            pins.as_ref().map(|p| p.root.as_path()),
        )),
        Some(_) => {
            tracing::warn!(
                "self-protection is off: this kernel refuses BPF LSM programs, which it is made of"
            );
            None
        }
        // --deny-open: an ad-hoc plan, loaded as it is.
        None => None,
    };
    let settings = Arc::new(KernelSettings {
        rate_limit: config.event_rate_limit,
        guard,
    });
    let reloading = Reloading {
        source,
        compiler,
        watches,
        state_dir,
        pins,
        settings,
        pod_logs_dir: config.pod_logs_dir.clone(),
        config: args
            .config
            .clone()
            .map(|path| crate::config_reload::RunningConfig::new(path, config.clone())),
    };
    let result = runtime.block_on(serve(
        prepared,
        reloading,
        mode,
        log,
        &writer,
        export,
        Served { metrics, listener },
    ));
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

/// What export needs before the runtime starts: the sinks built (secrets read), the outbox
/// opened and the log follower at its saved position (holding its file against rotation
/// before the first verdict is logged). A sink that cannot be built is a config error: the
/// daemon does not start.
struct ExportSetup {
    outbox: Arc<Outbox>,
    sinks: Vec<SinkRuntime>,
    grace: Duration,
    follower: LogFollower,
    hold: Arc<RotationHold>,
}

fn prepare_export(
    config: &Config,
    state_dir: &Path,
    log_path: &Path,
    hold: Arc<RotationHold>,
) -> Result<ExportSetup, Failure> {
    let sinks = config
        .export
        .sinks
        .iter()
        .map(|s| s.build())
        .collect::<Result<Vec<_>, _>>()
        .context("building the export sinks")
        .map_err(|e| Failure::new(exit_code::CONFIG, e))?;
    let outbox = export_cmd::open_outbox(state_dir, config)
        .map_err(|e| Failure::new(exit_code::STATE_DIR, e))?;
    match outbox.stats() {
        Ok(stats) => {
            for s in stats.sinks.iter().filter(|s| s.queued + s.dead > 0) {
                tracing::info!(
                    sink = %s.sink,
                    queued = s.queued,
                    dead = s.dead,
                    "outbox: events left by the previous run are sent first; dead letters wait for \
                     `enforcer export replay`"
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "reading the outbox statistics failed"),
    }
    let mut follow = FollowConfig::new(
        log_path,
        verdict_log::FILE_NAME,
        config.event_log.keep_files.saturating_add(hold.max_extra()),
    );
    follow.hold = Some(Arc::clone(&hold));
    let follower = LogFollower::open(&outbox, follow)
        .context("starting export from the event log")
        .map_err(|e| Failure::new(exit_code::STATE_DIR, e))?;
    Ok(ExportSetup {
        outbox: Arc::new(outbox),
        sinks,
        grace: Duration::from_millis(config.export.shutdown_grace_ms),
        follower,
        hold,
    })
}

/// How often the log follower looks at the event log when nothing wakes it (the event loop
/// wakes it after each batch of verdicts it logged).
const FOLLOW_POLL: Duration = Duration::from_secs(1);

/// How long the follower waits before trying again when the outbox is full of undelivered
/// deny/kill events, or failed.
const FOLLOW_RETRY: Duration = Duration::from_secs(1);

/// The daemon's side of export. Export is driven from the fsynced event log: a follower
/// task reads the lines the event loop logged and stores them in the outbox with its
/// position, in one transaction, so a verdict in the log reaches the outbox even across a
/// crash, and nothing is dropped when the outbox is slow (the log is the queue). The event
/// loop only wakes the follower; it never waits for it.
struct Exporter {
    wake: Arc<Notify>,
    stopping: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Exporter {
    /// Starts the dispatcher and the follower; call inside the runtime.
    fn start(setup: ExportSetup, metrics: Arc<DaemonMetrics>) -> Result<Self, Failure> {
        let names: Vec<String> = setup.sinks.iter().map(|s| s.name.clone()).collect();
        let dispatcher = Dispatcher::start(Arc::clone(&setup.outbox), setup.sinks)
            .context("starting the export dispatcher")?;
        metrics.set_export(dispatcher.metrics(), setup.outbox);
        metrics.set_export_log(setup.follower.stats(), setup.hold);
        tracing::info!(sinks = ?names, position = ?setup.follower.position(), "export started");
        let wake = Arc::new(Notify::new());
        let stopping = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(export_task(
            dispatcher,
            setup.follower,
            Arc::clone(&wake),
            Arc::clone(&stopping),
            setup.grace,
        ));
        Ok(Exporter {
            wake,
            stopping,
            task,
        })
    }

    /// Verdicts were appended to the log: the follower reads them now.
    fn logged(&self) {
        self.wake.notify_one();
    }

    /// Lets the follower store what the log holds, gives the sinks up to the grace period to
    /// deliver, and stops the workers; what is not delivered stays in the outbox (and what
    /// the outbox had no room for, in the log) for the next start.
    async fn shutdown(self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.wake.notify_one();
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "the export task failed");
        }
    }
}

/// Runs the follower until stopped and caught up (or stalled), then the delivery grace.
async fn export_task(
    dispatcher: Dispatcher,
    follower: LogFollower,
    wake: Arc<Notify>,
    stopping: Arc<AtomicBool>,
    grace: Duration,
) {
    let outbox = Arc::clone(dispatcher.outbox());
    let mut follower = follower;
    let mut stalled = false;
    loop {
        let stop = stopping.load(Ordering::SeqCst);
        let ob = Arc::clone(&outbox);
        let (back, result) = match tokio::task::spawn_blocking(move || {
            let r = follower.step(&ob);
            (follower, r)
        })
        .await
        {
            Ok(done) => done,
            Err(e) => {
                tracing::error!(error = %e, "the event log follower failed; events are exported again from the log at the next start");
                break;
            }
        };
        follower = back;
        let wait = match result {
            Ok(Step::Stored(done)) => {
                dispatcher.note_enqueued(&done.report);
                if stalled {
                    stalled = false;
                    tracing::info!("the export outbox has room again: reading the event log on");
                }
                continue;
            }
            Ok(Step::CaughtUp) => FOLLOW_POLL,
            Ok(Step::Stalled(done)) => {
                dispatcher.note_enqueued(&done.report);
                if !stalled {
                    stalled = true;
                    tracing::warn!(position = ?done.position,
                        "the export outbox is full of undelivered deny/kill events: export waits, \
                         and the event log keeps the events");
                }
                FOLLOW_RETRY
            }
            Err(e) => {
                tracing::error!(error = %e, "exporting from the event log failed; retrying");
                FOLLOW_RETRY
            }
        };
        if stop {
            break;
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
    let deadline = tokio::time::Instant::now() + grace;
    // Give the sinks the grace period to deliver what is queued (a sink that is down keeps
    // its events in the outbox until the next start).
    loop {
        match dispatcher.stats().await {
            Ok(stats) if stats.sinks.iter().all(|s| s.queued + s.in_flight == 0) => break,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "reading the outbox statistics failed");
                break;
            }
        }
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = dispatcher.metrics();
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    dispatcher
        .shutdown(left.max(Duration::from_millis(500)))
        .await;
    for s in metrics.snapshot().sinks {
        tracing::info!(
            sink = %s.name,
            delivered = s.delivered,
            retried = s.retried,
            dead_lettered = s.dead_lettered,
            filtered = s.filtered,
            "export stopped"
        );
    }
}

/// The metrics and, unless they are off, the bound listener they are served on.
struct Served {
    metrics: Arc<DaemonMetrics>,
    listener: Option<std::net::TcpListener>,
}

/// How often the event loop copies the kernel's, the store's and the process table's counters
/// into the metrics.
const METRICS_REFRESH: Duration = Duration::from_secs(1);

async fn serve(
    first: reload::Prepared,
    reloading: Reloading,
    mode: Option<ModeArg>,
    log: VerdictLog,
    writer: &Writer,
    export: Option<ExportSetup>,
    served: Served,
) -> Result<(), Failure> {
    let Served { metrics, listener } = served;
    let server = match listener {
        Some(listener) => Some(
            metrics::spawn_server(listener, Arc::clone(&metrics))
                .context("serving the metrics")
                .map_err(|e| Failure::new(exit_code::PORT, e))?,
        ),
        None => None,
    };
    let exporter = match export {
        Some(setup) => Some(Exporter::start(setup, Arc::clone(&metrics))?),
        None => None,
    };
    let result = watch(
        first,
        reloading,
        mode,
        log,
        writer,
        exporter.as_ref(),
        metrics,
    )
    .await;
    if let Some(exporter) = exporter {
        exporter.shutdown().await;
    }
    if let Some(server) = server {
        server.abort();
    }
    result
}

/// What reloads the policies, and where the status file goes.
struct Reloading {
    source: Source,
    /// `None` for `--deny-open`: nothing to compile again.
    compiler: Option<Arc<Compiler>>,
    watches: Option<reload::Watches>,
    state_dir: PathBuf,
    /// Where each plan is pinned; `None`: pinning is off.
    pins: Option<Pins>,
    /// From the config, for every plan loaded.
    settings: Arc<KernelSettings>,
    /// `--config`: SIGHUP reads it again.
    config: Option<crate::config_reload::RunningConfig>,
    /// The kubelet's pod log directory: events of a pod get its namespace and name from it.
    pod_logs_dir: PathBuf,
}

/// How long the ring buffer of a replaced plan is still read after its programs were
/// detached (a program that was running at the detach may still write a record); then it is
/// read to its end once more and dropped.
const RETIRE_GRACE: Duration = Duration::from_secs(1);
/// The status file is rewritten every this many metric refreshes, and at every reload.
const STATUS_EVERY: u32 = 5;

/// The plan in force.
struct Current {
    names: Names,
    alerts: AlertRules,
    loaded: Option<Loaded>,
    ring: Option<AsyncFd<EventRing>>,
    /// The process exec tracepoint is attached (an allowed exec's alerts come from its record).
    exec_records: bool,
}

/// What one plan's records are read with: its names, its alert rules and (while its programs
/// are attached) its cgroup scope map.
struct PlanView<'a> {
    names: &'a Names,
    alerts: &'a AlertRules,
    loaded: Option<&'a Loaded>,
    exec_records: bool,
}

/// The ring buffer of the plan replaced last, read until `until`.
struct Retiring {
    names: Names,
    alerts: AlertRules,
    exec_records: bool,
    ring: AsyncFd<EventRing>,
    until: Instant,
}

/// A reload's outcome, from the blocking pool.
struct Reloaded {
    trigger: &'static str,
    result: Result<reload::Active, Rejected>,
}

fn register(ring: EventRing) -> Result<AsyncFd<EventRing>, Failure> {
    // SAFETY: the ring buffer owns its map fd and returns that same fd from
    // as_raw_fd() until it is dropped, which is after the AsyncFd.
    unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }.map_err(|e| {
        Failure::from(anyhow::anyhow!(
            "polling the ring buffer: {}",
            e.into_parts().1
        ))
    })
}

fn current(active: reload::Active) -> Result<(Current, PlanInfo), Failure> {
    let ring = active.ring.map(register).transpose()?;
    let exec_records = active
        .loaded
        .as_ref()
        .is_some_and(|l| l.attached().contains(&"enf_proc_exec"));
    Ok((
        Current {
            names: active.names,
            alerts: active.alerts,
            loaded: active.loaded,
            ring,
            exec_records,
        },
        active.info,
    ))
}

async fn readable(
    ring: &mut Option<AsyncFd<EventRing>>,
) -> std::io::Result<AsyncFdReadyMutGuard<'_, EventRing>> {
    match ring {
        Some(r) => r.readable_mut().await,
        None => std::future::pending().await,
    }
}

async fn retiring_readable(
    retiring: &mut Option<Retiring>,
) -> (
    std::io::Result<AsyncFdReadyMutGuard<'_, EventRing>>,
    PlanView<'_>,
) {
    match retiring {
        Some(Retiring {
            ring,
            names,
            alerts,
            exec_records,
            ..
        }) => (
            ring.readable_mut().await,
            PlanView {
                names: &*names,
                alerts: &*alerts,
                loaded: None,
                exec_records: *exec_records,
            },
        ),
        None => std::future::pending().await,
    }
}

async fn at(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn changed(watch: &mut Option<reload::PolicyWatch>) -> std::io::Result<bool> {
    match watch {
        Some(w) => w.changed().await,
        None => std::future::pending().await,
    }
}

async fn joined(
    loading: &mut Option<JoinHandle<Reloaded>>,
) -> Result<Reloaded, tokio::task::JoinError> {
    match loading {
        Some(h) => h.await,
        None => std::future::pending().await,
    }
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn write_status(status: &mut DaemonStatus, dir: &Path) {
    status.updated_at = Timestamp::now();
    if let Err(e) = status.write(dir) {
        tracing::warn!(error = format!("{e:#}"), "writing the status file failed");
    }
}

/// Compiles and loads the policies again on the blocking pool (the ring buffers are read
/// meanwhile). A trigger while one runs queues one more: it may have read the files before
/// this change.
fn start_reload(
    reloading: &Reloading,
    loading: &mut Option<JoinHandle<Reloaded>>,
    queued: &mut Option<&'static str>,
    trigger: &'static str,
) {
    let Some(compiler) = &reloading.compiler else {
        tracing::info!(
            trigger,
            "ignored: ad-hoc rules (--deny-open) are not reloaded"
        );
        return;
    };
    if loading.is_some() {
        *queued = Some(trigger);
        return;
    }
    tracing::info!(trigger, "reloading the policies");
    let compiler = Arc::clone(compiler);
    let pins = reloading.pins.clone();
    let settings = Arc::clone(&reloading.settings);
    *loading = Some(tokio::task::spawn_blocking(move || {
        let result = compiler.compile().and_then(|p| {
            if !p.warnings.is_empty() {
                tracing::warn!("the policy set has warnings:\n{}", p.warnings.trim_end());
            }
            reload::activate(p, &settings, pins.as_ref())
        });
        Reloaded { trigger, result }
    }));
}

/// Takes over a generation an earlier daemon left pinned: opens its ring buffer (the verdicts
/// made while no daemon ran are there, named after its own rules by its manifest), then
/// removes its pins, which detaches its programs. The event loop reads the ring buffer as it
/// reads a replaced plan's, to its end after [`RETIRE_GRACE`].
fn adopt(
    pins: &Pins,
    g: &pinning::Generation,
    current_names: &Names,
) -> Result<Option<Retiring>, Failure> {
    let manifest = pinning::Manifest::read(&pins.state_dir, g.number).unwrap_or_else(|e| {
        tracing::warn!(
            error = format!("{e:#}"),
            "reading a pinned generation's manifest failed"
        );
        None
    });
    let (names, exec_records) = match manifest {
        Some(m) => (m.names, m.exec_records),
        None => {
            tracing::warn!(
                generation = g.number,
                "the pinned generation has no manifest in this state directory: its records are \
                 named after the rules loaded now"
            );
            (current_names.clone(), false)
        }
    };
    let alerts = AlertRules::none();
    let ring = match g.pins.events() {
        Ok(r) => Some(register(r)?),
        Err(e) => {
            tracing::warn!(error = %e, generation = g.number, "the pinned generation's ring buffer cannot be read");
            None
        }
    };
    // The ring buffer is held open before the pins go: what it holds stays readable, and
    // the event loop reads it (to its end at the deadline) as it reads a replaced plan's.
    let retiring = ring.map(|ring| Retiring {
        names,
        alerts,
        exec_records,
        ring,
        until: Instant::now() + RETIRE_GRACE,
    });
    let stats = g.pins.stats().ok();
    match pins.remove(g) {
        Ok(removed) => tracing::info!(
            generation = g.number,
            links = removed.links.len(),
            ringbuf_drops = stats.map(|s| s.ringbuf_drops),
            "adopted the pinned generation: its programs are detached, its ring buffer is read to its end"
        ),
        // Both stay attached then, and the kernel applies the stricter of the two.
        Err(e) => tracing::error!(
            error = %e,
            generation = g.number,
            "removing the pinned generation failed: it stays attached beside the new plan \
             until `enforcer unload` removes it"
        ),
    }
    Ok(retiring)
}

/// Reads the replaced plan's ring buffer to its end and drops it.
fn finish_retiring(
    r: Retiring,
    ctx: &mut Stamp,
    log: &mut VerdictLog,
    writer: &Writer,
    exporter: Option<&Exporter>,
    decode_errors: &mut u64,
) -> Result<(), Failure> {
    let Retiring {
        names,
        alerts,
        exec_records,
        mut ring,
        ..
    } = r;
    let view = PlanView {
        names: &names,
        alerts: &alerts,
        loaded: None,
        exec_records,
    };
    drain(
        ring.get_mut(),
        &view,
        ctx,
        log,
        writer,
        exporter,
        decode_errors,
    )
}

async fn watch(
    first: reload::Prepared,
    mut reloading: Reloading,
    mode: Option<ModeArg>,
    mut log: VerdictLog,
    writer: &Writer,
    exporter: Option<&Exporter>,
    metrics: Arc<DaemonMetrics>,
) -> Result<(), Failure> {
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    // For every source: without a handler SIGHUP would end the daemon.
    let mut sighup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;

    // What an earlier daemon left pinned, listed before this plan is pinned beside it.
    let adopted = reloading
        .pins
        .as_ref()
        .map(|p| pinning::generations(&p.root))
        .unwrap_or_default();
    let active = reload::activate(first, &reloading.settings, reloading.pins.as_ref())
        .map_err(Rejected::into_failure)?;
    let mut pinned = active.pinned;
    let (rule_count, cgroup_count) = (active.rules, active.info.cgroups);
    let (mut cur, info) = current(active)?;
    metrics.set_rules_loaded(info.rules_loaded);
    metrics.set_plan(1, unix_seconds());

    let mut decode_errors = 0u64;
    let (mut enricher, scan) =
        Enricher::start(EnrichConfig::default()).context("scanning /proc for running processes")?;
    enricher.set_pod_logs_dir(reloading.pod_logs_dir.clone());
    tracing::info!(
        processes = scan.loaded,
        unreadable = scan.failed,
        "process table loaded"
    );
    let mut ctx = Stamp {
        host: nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
        clock: Clock::now()?,
        enricher,
        metrics,
        slots: SlotCache::default(),
        events: 0,
    };
    // Make-before-break across daemons: this plan is attached and pinned by now, so the
    // generations left pinned can go; their ring buffers are read to their end.
    let mut retiring: Option<Retiring> = None;
    if let Some(pins) = &reloading.pins {
        let mut older = Vec::new();
        for g in &adopted {
            // The newest is read on for the grace period; older ones (a previous adoption
            // that did not finish) are read to their end now.
            older.extend(std::mem::replace(
                &mut retiring,
                adopt(pins, g, &cur.names)?,
            ));
        }
        for r in older {
            finish_retiring(r, &mut ctx, &mut log, writer, exporter, &mut decode_errors)?;
        }
    }
    let mut watch = match reloading.watches.take() {
        Some(w) => match w.register() {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "policy files are not watched; SIGHUP still reloads them"
                );
                None
            }
        },
        None => None,
    };
    let now = Timestamp::now();
    let pid = std::process::id();
    let mut status = DaemonStatus {
        version: env!("CARGO_PKG_VERSION").into(),
        pid,
        pid_start_ticks: status::start_ticks(pid).unwrap_or(0),
        running: true,
        started_at: now,
        updated_at: now,
        source: reloading.source.label().into(),
        policy_paths: reloading.source.paths().to_vec(),
        mode_override: (mode == Some(ModeArg::Audit)).then(|| "audit".to_string()),
        reload_on: match (&reloading.source, &watch) {
            (Source::Files(_), None) => vec!["SIGHUP".to_string()],
            (source, _) => source.reload_on(),
        },
        plan: info,
        generation: 1,
        loaded_at: now,
        reloads_ok: 0,
        reloads_failed: 0,
        last_reload_error: None,
        kernel: KernelCounters::default(),
        events: 0,
    };
    write_status(&mut status, &reloading.state_dir);
    let mut refresh = tokio::time::interval(METRICS_REFRESH);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(
        rules = rule_count,
        cgroups = cgroup_count,
        mode = ?mode,
        attached = ?status.plan.hooks,
        reload_on = ?status.reload_on,
        "enforcer ready"
    );

    let mut loading: Option<JoinHandle<Reloaded>> = None;
    let mut queued: Option<&'static str> = None;
    // (first event, reload at) of the policy file changes not reloaded yet.
    let mut debounce: Option<(Instant, Instant)> = None;
    // The counters of the plans replaced so far: the kernel's start at 0 with each plan.
    let mut kernel_base = KernelCounters::default();
    let mut ticks = 0u32;
    loop {
        let retire_at = retiring.as_ref().map(|r| r.until);
        let reload_at = debounce.map(|(_, at)| at);
        tokio::select! {
            guard = readable(&mut cur.ring) => {
                let mut guard = guard.context("waiting on the ring buffer")?;
                // The view borrows the plan's other fields; the guard borrows its ring.
                let view = PlanView { names: &cur.names, alerts: &cur.alerts, loaded: cur.loaded.as_ref(), exec_records: cur.exec_records };
                drain(guard.get_inner_mut(), &view, &mut ctx, &mut log, writer, exporter, &mut decode_errors)?;
                guard.clear_ready();
            }
            (guard, view) = retiring_readable(&mut retiring) => {
                let mut guard = guard.context("waiting on the replaced plan's ring buffer")?;
                drain(guard.get_inner_mut(), &view, &mut ctx, &mut log, writer, exporter, &mut decode_errors)?;
                guard.clear_ready();
            }
            () = at(retire_at) => {
                if let Some(r) = retiring.take() {
                    finish_retiring(r, &mut ctx, &mut log, writer, exporter, &mut decode_errors)?;
                }
            }
            _ = refresh.tick() => {
                let kernel = refresh_metrics(&ctx, cur.loaded.as_ref(), writer, kernel_base);
                ticks = ticks.wrapping_add(1);
                if ticks.is_multiple_of(STATUS_EVERY) {
                    status.kernel = kernel;
                    status.events = ctx.events;
                    write_status(&mut status, &reloading.state_dir);
                }
            }
            _ = sighup.recv() => {
                if let Some(c) = &mut reloading.config {
                    c.reload(writer, &ctx.metrics);
                }
                start_reload(&reloading, &mut loading, &mut queued, "SIGHUP");
            }
            seen = changed(&mut watch) => match seen {
                Ok(true) => {
                    let now = Instant::now();
                    let first = debounce.map_or(now, |(first, _)| first);
                    debounce = Some((first, (now + reload::DEBOUNCE).min(first + reload::DEBOUNCE_MAX)));
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "reading policy file events failed: edits are no longer seen; SIGHUP still reloads");
                    watch = None;
                }
            },
            () = at(reload_at) => {
                debounce = None;
                start_reload(&reloading, &mut loading, &mut queued, "policy files changed");
            }
            done = joined(&mut loading) => {
                loading = None;
                let Reloaded { trigger, result } = done.unwrap_or_else(|e| Reloaded {
                    trigger: "reload",
                    result: Err(Rejected::new(exit_code::ERROR, anyhow::anyhow!("the reload task failed: {e}"))),
                });
                match result {
                    Ok(active) => {
                        // A replaced plan of an earlier reload is read to its end first.
                        if let Some(r) = retiring.take() {
                            finish_retiring(r, &mut ctx, &mut log, writer, exporter, &mut decode_errors)?;
                        }
                        let generation = active.pinned;
                        let (new, info) = current(active)?;
                        // Make-before-break: the new plan's programs are attached and its maps
                        // filled; only now are the old ones detached. Until here both ran, and
                        // the kernel applied the stricter of the two.
                        let Current { names, alerts, loaded, ring, exec_records } =
                            std::mem::replace(&mut cur, new);
                        // Cached scopes are the old plan's policy slots.
                        ctx.slots = SlotCache::default();
                        if let Some(loaded) = loaded {
                            match loaded.retire() {
                                Ok(s) => kernel_base = kernel_base.add(s),
                                Err(e) => tracing::warn!(error = %e, "reading the replaced plan's kernel counters failed"),
                            }
                        }
                        // Its verdicts are named after its own rules.
                        if let Some(mut ring) = ring {
                            let view = PlanView { names: &names, alerts: &alerts, loaded: None, exec_records };
                            drain(ring.get_mut(), &view, &mut ctx, &mut log, writer, exporter, &mut decode_errors)?;
                            retiring = Some(Retiring { names, alerts, exec_records, ring, until: Instant::now() + RETIRE_GRACE });
                        }
                        pinned = generation;
                        status.generation += 1;
                        status.reloads_ok += 1;
                        status.loaded_at = Timestamp::now();
                        status.last_reload_error = None;
                        status.plan = info;
                        ctx.metrics.count_reload(true);
                        ctx.metrics.set_plan(status.generation, unix_seconds());
                        ctx.metrics.set_rules_loaded(status.plan.rules_loaded);
                        tracing::info!(
                            trigger,
                            generation = status.generation,
                            rules = status.plan.rules_loaded,
                            attached = ?status.plan.hooks,
                            "policy reloaded: the new plan is in force"
                        );
                    }
                    Err(rejected) => {
                        status.reloads_failed += 1;
                        ctx.metrics.count_reload(false);
                        let details = rejected.details.trim_end().to_string();
                        let error = format!("{:#}", rejected.error);
                        tracing::error!(
                            trigger,
                            generation = status.generation,
                            "policy reload failed, the running policy stays in force: {error}{}{details}",
                            if details.is_empty() { "" } else { "\n" },
                        );
                        status.last_reload_error = Some(ReloadFailure {
                            at: Timestamp::now(),
                            trigger: trigger.to_string(),
                            error,
                            details,
                        });
                    }
                }
                write_status(&mut status, &reloading.state_dir);
                if let Some(trigger) = queued.take() {
                    start_reload(&reloading, &mut loading, &mut queued, trigger);
                }
            }
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        }
    }
    // A plan still loading is dropped unused (dropping it detaches whatever it attached; one
    // pinned already is retired, which removes its pins).
    if let Some(h) = loading.take() {
        if let Ok(Reloaded {
            result: Ok(reload::Active {
                loaded: Some(l), ..
            }),
            ..
        }) = h.await
        {
            if let Err(e) = l.retire() {
                tracing::warn!(error = %e, "removing the pins of a plan loaded during shutdown failed");
            }
        }
    }
    // Stop reading only after what the kernel already reported is recorded.
    if let Some(ring) = cur.ring.as_mut() {
        let view = PlanView {
            names: &cur.names,
            alerts: &cur.alerts,
            loaded: cur.loaded.as_ref(),
            exec_records: cur.exec_records,
        };
        drain(
            ring.get_mut(),
            &view,
            &mut ctx,
            &mut log,
            writer,
            exporter,
            &mut decode_errors,
        )?;
    }
    if let Some(r) = retiring.take() {
        finish_retiring(r, &mut ctx, &mut log, writer, exporter, &mut decode_errors)?;
    }
    log.flush()?;
    let mut kernel = kernel_base;
    if let Some(loaded) = &cur.loaded {
        kernel = kernel_base.add(loaded.stats()?);
    }
    tracing::info!(
        ringbuf_drops = kernel.ringbuf_drops,
        path_unresolved = kernel.path_unresolved,
        decode_errors,
        "stopping"
    );
    if let (Some(generation), Some(pins)) = (pinned, &reloading.pins) {
        tracing::info!(
            generation,
            pin_root = %pins.root.display(),
            "enforcement stays in force: the plan is pinned; `enforcer unload` removes it"
        );
    }
    status.running = false;
    status.kernel = kernel;
    status.events = ctx.events;
    write_status(&mut status, &reloading.state_dir);
    Ok(())
}

/// Copies the counters kept elsewhere into the metrics; returns the kernel's, summed over
/// every plan since start.
fn refresh_metrics(
    ctx: &Stamp,
    loaded: Option<&Loaded>,
    writer: &Writer,
    base: KernelCounters,
) -> KernelCounters {
    let m = &ctx.metrics;
    m.set_store(writer.stats());
    let mut kernel = base;
    if let Some(loaded) = loaded {
        match loaded.stats() {
            Ok(stats) => {
                kernel = base.add(stats);
                m.set_kernel(kernel.stats());
            }
            Err(e) => tracing::debug!(error = %e, "reading the kernel statistics failed"),
        }
    } else {
        m.set_kernel(kernel.stats());
    }
    let table = ctx.enricher.table();
    m.set_table(TableSample {
        entries: table.len() as u64,
        table: table.stats,
        cgroups: table.cgroups().stats,
    });
    kernel
}

#[allow(clippy::too_many_arguments)]
fn drain(
    ring: &mut bpf_lsm::EventRing,
    plan: &PlanView,
    ctx: &mut Stamp,
    log: &mut VerdictLog,
    writer: &Writer,
    exporter: Option<&Exporter>,
    decode_errors: &mut u64,
) -> Result<(), Failure> {
    let mut logged = 0usize;
    let exec_records = plan.exec_records;
    let mut emit = |event: SecurityEvent, ctx: &Stamp| -> Result<(), Failure> {
        ctx.metrics.count_event(event.class, event.verdict);
        log.append(&event)?;
        logged += 1;
        // Never blocks: when the queue is full a deny takes an audit event's place, and
        // what is lost is counted by verdict.
        writer.submit(event);
        Ok(())
    };
    while let Some(item) = ring.next() {
        match bpf_lsm::decode_record(&item) {
            Ok(record) if record.is_process() => {
                // Process records feed the table (and alert rules); they are not events.
                let Stamp {
                    host,
                    clock,
                    enricher,
                    metrics,
                    ..
                } = &mut *ctx;
                let feed = Feed {
                    host,
                    clock,
                    names: plan.names,
                    alerts: plan.alerts,
                    metrics,
                    exec_records,
                };
                let fired = process_feed::on_process(&record, enricher, &feed);
                for alert in fired {
                    println!("{}", process_feed::human(&alert));
                    emit(alert, ctx)?;
                }
            }
            Ok(record) => {
                println!("{}", verdict_log::human(&record, plan.names));
                let mut event =
                    verdict_log::security_event(&record, plan.names, &ctx.host, &ctx.clock);
                ctx.events += 1;
                let h = record.header();
                ctx.enricher.enrich(&mut event, h.pid, h.cgroup_id);
                let fired = match plan.loaded {
                    Some(loaded) if !plan.alerts.is_empty() => {
                        let slots = ctx.slots.get(loaded, h.cgroup_id);
                        let feed = Feed {
                            host: &ctx.host,
                            clock: &ctx.clock,
                            names: plan.names,
                            alerts: plan.alerts,
                            metrics: &ctx.metrics,
                            exec_records,
                        };
                        process_feed::on_verdict(&record, &event, slots, &feed)
                    }
                    // No alert rules, or a replaced plan whose programs (and scope map) are
                    // gone: its verdicts raise no alerts.
                    _ => Vec::new(),
                };
                emit(event, ctx)?;
                for alert in fired {
                    println!("{}", process_feed::human(&alert));
                    emit(alert, ctx)?;
                }
            }
            Err(e) => {
                *decode_errors += 1;
                ctx.metrics.count_decode_error();
                tracing::warn!(error = %e, "skipping a malformed kernel record");
            }
        }
    }
    // Export reads the events from the log, where they are on disk now.
    if let (Some(exporter), true) = (exporter, logged > 0) {
        exporter.logged();
    }
    Ok(())
}
