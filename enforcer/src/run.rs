//! `enforcer run`: load the kernel programs, print and record every verdict
//! they report, and keep running until SIGTERM or SIGINT.

use crate::cgroup;
use crate::config::{Config, ModeSetting};
use crate::exit_code::{self, Failure};
use crate::export_cmd;
use crate::kernel_apply;
use crate::metrics::{self, DaemonMetrics, MetricsAddress, TableSample};
use crate::policy_cmd;
use crate::verdict_log::{self, Clock, Names, RuleInfo, VerdictLog};
use anyhow::Context;
use bpf_lsm::plan::KernelPlan;
use bpf_lsm::{FileOpenPlan, FileRule, Loaded, Mode, ScopedCgroup};
use enforcer::enrich::{EnrichConfig, Enricher};
use enforcer::store::{self, Store, Writer, WriterOptions};
use siem_export::config::SinkRuntime;
use siem_export::dispatcher::Dispatcher;
use siem_export::outbox::Outbox;
use siem_export::SecurityEvent;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

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
    // Bound before anything is opened or loaded: an address in use stops the daemon here.
    let metrics_address = match args.metrics_address {
        Some(MetricsAddress(addr)) => addr,
        None => config.metrics.socket_addr(),
    };
    let listener = metrics_address.map(metrics::bind).transpose()?;
    let metrics = Arc::new(DaemonMetrics::new(env!("CARGO_PKG_VERSION")));
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

    let export = if config.export.sinks.is_empty() {
        None
    } else {
        Some(prepare_export(&config, &state_dir)?)
    };

    // Two workers: the ring buffer is read on the main thread (block_on) while the export
    // workers send on the runtime's threads; the outbox runs on the blocking pool.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(serve(
        rules,
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
        // Audit mode denies nothing, so it accepts what this kernel can record: a rule it can
        // neither enforce nor record compiles as `unenforced` and is named below.
        for p in &mut set.policies {
            p.mode = policy_lang::model::Mode::Audit;
            p.allow_downgrade = true;
            for r in &mut p.rules {
                r.allow_downgrade = true;
            }
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
    let names = Names::of(&plan);
    // Without BPF LSM only the network rules have a kernel mechanism (cgroup socket
    // programs); the rest is said plainly, rule by rule, and the daemon runs what it can.
    let plan = if plan.kernel.bpf_lsm {
        plan
    } else {
        let (part, skipped) = kernel_apply::network_part(&plan);
        for rule in &skipped {
            tracing::warn!(
                "rule `{rule}` is neither enforced nor audited here: this kernel cannot load BPF \
                 LSM programs"
            );
        }
        if !skipped.is_empty() {
            tracing::warn!(
                "{} of {} rules need BPF LSM; `enforcer doctor` says what this kernel supports, \
                 and `cargo xtask vm run` tries the policy against a kernel with BPF LSM",
                skipped.len(),
                plan.rules.len()
            );
        }
        part
    };
    if plan.rules.is_empty() && !plan.policies.iter().any(has_kernel_default) {
        return Ok(Rules {
            load: Load::Nothing,
            names,
        });
    }
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
    Ok(Rules {
        load: Load::Plan(Box::new(kernel_plan)),
        names,
    })
}

/// A default `deny` is enforced in the kernel even without any rule.
fn has_kernel_default(p: &policy_lang::plan::PlanPolicy) -> bool {
    p.defaults
        .iter()
        .any(|d| d.posture == policy_lang::model::Posture::Deny)
}

/// What export needs before the runtime starts: the sinks built (secrets read) and the outbox
/// opened. A sink that cannot be built is a config error: the daemon does not start.
struct ExportSetup {
    outbox: Arc<Outbox>,
    sinks: Vec<SinkRuntime>,
    grace: Duration,
}

fn prepare_export(config: &Config, state_dir: &Path) -> Result<ExportSetup, Failure> {
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
    Ok(ExportSetup {
        outbox: Arc::new(outbox),
        sinks,
        grace: Duration::from_millis(config.export.shutdown_grace_ms),
    })
}

/// Batches of events (one per ring-buffer wakeup) waiting to be stored in the outbox. Bounded:
/// when the outbox falls this far behind, batches are dropped from export (they are still in
/// the local log and store) rather than stall the ring buffer.
const EXPORT_QUEUE_BATCHES: usize = 1024;

/// The daemon's side of export: events go through a channel to a task that stores them in the
/// outbox (the ring-buffer loop never waits for the disk), and the dispatcher's workers deliver
/// them from there.
struct Exporter {
    tx: mpsc::Sender<Vec<SecurityEvent>>,
    task: tokio::task::JoinHandle<()>,
    /// Events that could not be queued for export.
    dropped: u64,
    metrics: Arc<DaemonMetrics>,
}

impl Exporter {
    /// Starts the dispatcher; call inside the runtime.
    fn start(setup: ExportSetup, metrics: Arc<DaemonMetrics>) -> Result<Self, Failure> {
        let names: Vec<String> = setup.sinks.iter().map(|s| s.name.clone()).collect();
        let dispatcher = Dispatcher::start(Arc::clone(&setup.outbox), setup.sinks)
            .context("starting the export dispatcher")?;
        metrics.set_export(dispatcher.metrics(), setup.outbox);
        tracing::info!(sinks = ?names, "export started");
        let (tx, rx) = mpsc::channel(EXPORT_QUEUE_BATCHES);
        let task = tokio::spawn(export_task(dispatcher, rx, setup.grace));
        Ok(Exporter {
            tx,
            task,
            dropped: 0,
            metrics,
        })
    }

    /// Queues one wakeup's events without waiting.
    fn submit(&mut self, batch: Vec<SecurityEvent>) {
        if batch.is_empty() {
            return;
        }
        if let Err(e) = self.tx.try_send(batch) {
            let (why, batch) = match e {
                mpsc::error::TrySendError::Full(b) => ("the outbox is too far behind", b),
                mpsc::error::TrySendError::Closed(b) => ("the export task stopped", b),
            };
            if self.dropped == 0 {
                tracing::error!(
                    reason = why,
                    "events are not exported (they are still in the local log and store); \
                     the total is logged at stop"
                );
            }
            self.dropped += batch.len() as u64;
            self.metrics
                .count_export_handoff_dropped(batch.len() as u64);
        }
    }

    /// Stores what is still queued, gives the sinks up to the grace period to deliver, and
    /// stops the workers; what is not delivered stays in the outbox for the next start.
    async fn shutdown(self) {
        let Exporter {
            tx, task, dropped, ..
        } = self;
        drop(tx);
        if let Err(e) = task.await {
            tracing::error!(error = %e, "the export task failed");
        }
        if dropped > 0 {
            tracing::error!(events = dropped, "events were not queued for export");
        }
    }
}

async fn export_task(
    dispatcher: Dispatcher,
    mut rx: mpsc::Receiver<Vec<SecurityEvent>>,
    grace: Duration,
) {
    let mut batches = Vec::new();
    // Everything that piled up while the previous enqueue ran goes in one transaction.
    while rx.recv_many(&mut batches, EXPORT_QUEUE_BATCHES).await > 0 {
        let events: Vec<SecurityEvent> = batches.drain(..).flatten().collect();
        let n = events.len();
        // The outbox logs and counts what its disk-full policy refuses or evicts.
        if let Err(e) = dispatcher.enqueue(events).await {
            tracing::error!(events = n, error = %e, "storing events in the export outbox failed; they are not exported");
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
    rules: Rules,
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
    let mut exporter = match export {
        Some(setup) => Some(Exporter::start(setup, Arc::clone(&metrics))?),
        None => None,
    };
    let result = watch(rules, mode, log, writer, exporter.as_mut(), metrics).await;
    if let Some(exporter) = exporter {
        exporter.shutdown().await;
    }
    if let Some(server) = server {
        server.abort();
    }
    result
}

async fn watch(
    rules: Rules,
    mode: Option<ModeArg>,
    mut log: VerdictLog,
    writer: &Writer,
    mut exporter: Option<&mut Exporter>,
    metrics: Arc<DaemonMetrics>,
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
        Load::Plan(plan) => (
            plan.rules.len() + plan.network.rules.len(),
            plan.cgroups.len(),
        ),
        Load::Nothing => (rules.names.rules.len(), 0),
    };
    metrics.set_rules_loaded(if loaded.is_some() {
        rule_count as u64
    } else {
        0
    });
    let mut refresh = tokio::time::interval(METRICS_REFRESH);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(
        rules = rule_count,
        cgroups = cgroup_count,
        mode = ?mode,
        attached = ?loaded.as_ref().map(Loaded::attached),
        "enforcer ready"
    );

    let Some(mut loaded) = loaded else {
        loop {
            tokio::select! {
                _ = refresh.tick() => metrics.set_store(writer.stats()),
                _ = sigterm.recv() => break,
                _ = sigint.recv() => break,
            }
        }
        tracing::info!("stopping");
        return Ok(());
    };

    let (enricher, scan) =
        Enricher::start(EnrichConfig::default()).context("scanning /proc for running processes")?;
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
                drain(guard.get_inner_mut(), &rules, &mut ctx, &mut log, writer, exporter.as_deref_mut(), &mut decode_errors)?;
                guard.clear_ready();
            }
            _ = refresh.tick() => refresh_metrics(&ctx, &loaded, writer),
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        }
    }
    // Stop reading only after what the kernel already reported is recorded.
    drain(
        ring.get_mut(),
        &rules,
        &mut ctx,
        &mut log,
        writer,
        exporter,
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

/// Copies the counters kept elsewhere into the metrics.
fn refresh_metrics(ctx: &Stamp, loaded: &Loaded, writer: &Writer) {
    let m = &ctx.metrics;
    m.set_store(writer.stats());
    match loaded.stats() {
        Ok(stats) => m.set_kernel(stats),
        Err(e) => tracing::debug!(error = %e, "reading the kernel statistics failed"),
    }
    let table = ctx.enricher.table();
    m.set_table(TableSample {
        entries: table.len() as u64,
        table: table.stats,
        cgroups: table.cgroups().stats,
    });
}

fn drain(
    ring: &mut bpf_lsm::EventRing,
    rules: &Rules,
    ctx: &mut Stamp,
    log: &mut VerdictLog,
    writer: &Writer,
    exporter: Option<&mut Exporter>,
    decode_errors: &mut u64,
) -> Result<(), Failure> {
    let mut batch = Vec::new();
    while let Some(item) = ring.next() {
        match bpf_lsm::decode_record(&item) {
            Ok(record) => {
                println!("{}", verdict_log::human(&record, &rules.names));
                let mut event =
                    verdict_log::security_event(&record, &rules.names, &ctx.host, &ctx.clock);
                let h = record.header();
                ctx.enricher.enrich(&mut event, h.pid, h.cgroup_id);
                ctx.metrics.count_event(event.class, event.verdict);
                log.append(&event)?;
                if exporter.is_some() {
                    batch.push(event.clone());
                }
                // Never blocks: a full queue is counted as dropped by the writer.
                writer.submit(event);
            }
            Err(e) => {
                *decode_errors += 1;
                ctx.metrics.count_decode_error();
                tracing::warn!(error = %e, "skipping a malformed kernel record");
            }
        }
    }
    if let Some(exporter) = exporter {
        exporter.submit(batch);
    }
    Ok(())
}
