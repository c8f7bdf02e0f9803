//! Policy hot reload: what triggers one (SIGHUP; inotify on the policy files and folders), and
//! the steps that turn a policy set into programs attached in the kernel, shared by the start
//! and every reload: compile -> translate -> load and attach -> cover the cgroups created
//! meanwhile. The switch itself (detach the old programs only once the new ones run, read the
//! old ring buffer to its end) is in `run.rs`'s event loop.
//!
//! A reload that fails at any step changes nothing in the kernel: the new object is dropped
//! (detaching whatever of it was attached) and the old plan stays in force.

use crate::alerts::AlertRules;
use crate::cgroup;
use crate::exit_code::{self, Failure};
use crate::kernel_apply;
use crate::kernel_settings::KernelSettings;
use crate::policy_cmd;
use crate::run::{Load, ModeArg, Rules};
use crate::status::{PlanInfo, PolicyInfo};
use crate::verdict_log::Names;
use anyhow::Context;
use bpf_lsm::plan::NetMechanism;
use bpf_lsm::{EventRing, Loaded};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, InotifyEvent, WatchDescriptor};
use policy_lang::KernelFeatures;
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::unix::AsyncFd;

/// Events closer together than this are one change: an editor's save is several (write a
/// temporary file, rename it over the old one, ...).
pub const DEBOUNCE: Duration = Duration::from_millis(200);
/// A file written to without pause still reloads this long after the first event.
pub const DEBOUNCE_MAX: Duration = Duration::from_secs(2);

/// Where the policies come from, which decides what reloads them.
#[derive(Clone, Debug)]
pub enum Source {
    /// `--policy` or the config's `policies`: SIGHUP and edits of the files reload.
    Files(Vec<PathBuf>),
    /// The rule library embedded in the binary: SIGHUP reloads (and resolves the cgroup
    /// selectors again).
    Embedded,
    /// `--deny-open`: nothing reloads.
    Adhoc,
}

impl Source {
    pub fn label(&self) -> &'static str {
        match self {
            Source::Files(_) => "files",
            Source::Embedded => "embedded rule library",
            Source::Adhoc => "--deny-open",
        }
    }

    pub fn paths(&self) -> &[PathBuf] {
        match self {
            Source::Files(p) => p,
            Source::Embedded | Source::Adhoc => &[],
        }
    }

    pub fn reload_on(&self) -> Vec<String> {
        match self {
            Source::Files(_) => vec!["SIGHUP".into(), "policy file changes".into()],
            Source::Embedded => vec!["SIGHUP".into()],
            Source::Adhoc => Vec::new(),
        }
    }
}

/// A policy set that did not become a plan, or a plan the kernel refused.
#[derive(Debug)]
pub struct Rejected {
    /// The exit code at start ([`exit_code::POLICY`], [`exit_code::KERNEL_LOAD`], ...).
    pub code: u8,
    pub error: anyhow::Error,
    /// Diagnostics rendered `file:line:col: ...`, or the lines naming unenforceable rules;
    /// empty when the error says it all (the verifier log is part of a load error).
    pub details: String,
    /// At start only `details` is printed (the error line would repeat it).
    quiet: bool,
}

impl Rejected {
    pub fn new(code: u8, error: impl Into<anyhow::Error>) -> Self {
        Rejected {
            code,
            error: error.into(),
            details: String::new(),
            quiet: false,
        }
    }

    /// At start: the details go to stderr, and the daemon stops with the code.
    pub fn into_failure(self) -> Failure {
        eprint!("{}", self.details);
        let f = Failure::new(self.code, self.error);
        if self.quiet {
            f.quiet()
        } else {
            f
        }
    }
}

impl From<Failure> for Rejected {
    fn from(f: Failure) -> Self {
        Rejected::new(f.code, f.error)
    }
}

/// A policy set made into what the kernel gets, not loaded yet.
pub struct Prepared {
    pub rules: Rules,
    /// The plan the kernel part comes from (after `--mode audit` and, without BPF LSM, cut to
    /// its network part): its cgroup selectors are resolved again after the attach.
    pub plan: Option<policy_lang::Plan>,
    pub policies: Vec<PolicyInfo>,
    /// Warnings of the policy set, rendered `file:line:col: ...`.
    pub warnings: String,
    /// The kubelet's pod log directory, for namespace selectors.
    pub pod_logs_dir: PathBuf,
}

impl Prepared {
    /// `--deny-open` rules.
    pub fn adhoc(rules: Rules, mode: ModeArg) -> Self {
        let n = rules.names.rules.len();
        Prepared {
            rules,
            plan: None,
            policies: vec![PolicyInfo {
                name: "deny-open".into(),
                mode: match mode {
                    ModeArg::Enforce => "enforce",
                    ModeArg::Audit => "audit",
                }
                .into(),
                rules: n,
            }],
            warnings: String::new(),
            pod_logs_dir: PathBuf::from(enforcer::pod_logs::DEFAULT_POD_LOGS_DIR),
        }
    }
}

/// Compiles the policy set, at start and at each reload, for the kernel probed at start.
#[derive(Debug)]
pub struct Compiler {
    paths: Vec<PathBuf>,
    mode: Option<ModeArg>,
    kernel: KernelFeatures,
    pod_logs_dir: PathBuf,
}

/// A default `deny` is enforced in the kernel even without any rule.
fn has_kernel_default(p: &policy_lang::plan::PlanPolicy) -> bool {
    p.defaults
        .iter()
        .any(|d| d.posture == policy_lang::model::Posture::Deny)
}

impl Compiler {
    /// `paths` empty: the embedded rule library. Probes the running kernel once.
    pub fn new(paths: Vec<PathBuf>, mode: Option<ModeArg>) -> Result<Self, Failure> {
        Ok(Compiler {
            paths,
            mode,
            kernel: policy_cmd::kernel_features(None)?,
            pod_logs_dir: PathBuf::from(enforcer::pod_logs::DEFAULT_POD_LOGS_DIR),
        })
    }

    /// Where namespace selectors read the node's pods (the config's `pod_logs_dir`).
    pub fn with_pod_logs_dir(mut self, dir: PathBuf) -> Self {
        self.pod_logs_dir = dir;
        self
    }

    /// BPF LSM programs attach on this kernel (self-protection needs them).
    pub fn bpf_lsm(&self) -> bool {
        self.kernel.bpf_lsm
    }

    /// Loads, checks and compiles the policy set for this kernel and translates it for the
    /// kernel programs. A set with errors, or with a rule the kernel programs cannot enforce
    /// as written, is rejected before anything is loaded.
    pub fn compile(&self) -> Result<Prepared, Rejected> {
        let mut sources: Vec<(String, String)> = Vec::new();
        if self.paths.is_empty() {
            sources.extend(rules::files().map(|(p, t)| (p.to_string(), t.to_string())));
        }
        let (files, unreadable) = policy_lang::read_sources(&self.paths);
        sources.extend(files);
        let mut set = policy_lang::load_with(sources, unreadable).map_err(|e| Rejected {
            details: e.render(),
            quiet: true,
            ..Rejected::new(
                exit_code::POLICY,
                anyhow::anyhow!("the policy set has errors"),
            )
        })?;
        let warnings = if set.warnings.is_empty() {
            String::new()
        } else {
            policy_lang::render_all(&set.warnings, &set.sources)
        };
        if self.mode == Some(ModeArg::Audit) {
            // Audit mode denies nothing, so it accepts what this kernel can record: a rule it
            // can neither enforce nor record compiles as `unenforced` and is named in the log.
            for p in &mut set.policies {
                p.mode = policy_lang::model::Mode::Audit;
                p.allow_downgrade = true;
                for r in &mut p.rules {
                    r.allow_downgrade = true;
                }
            }
        }
        let plan = policy_lang::compile(&set, &self.kernel).map_err(|d| Rejected {
            details: policy_lang::render_all(&d, &set.sources),
            quiet: true,
            ..Rejected::new(
                exit_code::POLICY,
                anyhow::anyhow!("the policy set does not compile for this kernel"),
            )
        })?;
        tracing::info!(
            policies = plan.policies.len(),
            rules = plan.rules.len(),
            source = if self.paths.is_empty() {
                "embedded rule library"
            } else {
                "files"
            },
            "policy set compiled"
        );
        let names = Names::of(&plan);
        let policies = plan
            .policies
            .iter()
            .map(|p| PolicyInfo {
                name: p.name.clone(),
                mode: p.mode.name().into(),
                rules: plan.rules.iter().filter(|r| r.policy == p.id).count(),
            })
            .collect();
        // Without BPF LSM only the network rules have a kernel mechanism (cgroup socket
        // programs); the rest is said plainly, rule by rule, and the daemon runs what it can.
        let plan = if plan.kernel.bpf_lsm {
            plan
        } else {
            let (part, skipped) = kernel_apply::network_part(&plan);
            for line in crate::exec_fallback::notes(&plan) {
                tracing::warn!("{line}");
            }
            for rule in &skipped {
                tracing::warn!(
                    "rule `{rule}` is neither enforced nor audited here: this kernel cannot load \
                     BPF LSM programs"
                );
            }
            if !skipped.is_empty() {
                tracing::warn!(
                    "{} of {} rules need BPF LSM; `enforcer doctor` says what this kernel \
                     supports, and `cargo xtask vm run` tries the policy against a kernel with \
                     BPF LSM",
                    skipped.len(),
                    plan.rules.len()
                );
            }
            part
        };
        if plan.rules.is_empty() && !plan.policies.iter().any(has_kernel_default) {
            return Ok(Prepared {
                rules: Rules {
                    load: Load::Nothing,
                    names,
                    alerts: AlertRules::none(),
                },
                plan: None,
                policies,
                warnings,
                pod_logs_dir: self.pod_logs_dir.clone(),
            });
        }
        let kernel_plan = translate(&plan, &self.pod_logs_dir)?;
        for line in kernel_apply::alert_feeds(&plan) {
            tracing::info!("{line}");
        }
        let alerts = AlertRules::new(&plan, kernel_plan.policies.iter().map(|p| p.id).collect())
            .map_err(|e| Rejected::new(exit_code::POLICY, e))?;
        if !alerts.is_empty() {
            tracing::info!(alert_rules = alerts.len(), "alert rules run in user space");
        }
        Ok(Prepared {
            rules: Rules {
                load: Load::Plan(Box::new(kernel_plan)),
                names,
                alerts,
            },
            plan: Some(plan),
            policies,
            warnings,
            pod_logs_dir: self.pod_logs_dir.clone(),
        })
    }
}

/// The plan for the kernel programs, its cgroup selectors resolved against the tree (and, for
/// namespace selectors, the pods in `pod_logs_dir`) as they are now.
fn translate(
    plan: &policy_lang::Plan,
    pod_logs_dir: &Path,
) -> Result<bpf_lsm::plan::KernelPlan, Rejected> {
    let root = cgroup::cgroup2_root().map_err(|e| Rejected::new(exit_code::ERROR, e))?;
    let tree = kernel_apply::cgroup_tree(&root)
        .with_context(|| format!("walking the cgroup tree under `{}`", root.display()))
        .map_err(|e| Rejected::new(exit_code::ERROR, e))?;
    let pods = if kernel_apply::needs_pods(plan) {
        Some(
            enforcer::pod_logs::PodDirectory::open(pod_logs_dir)
                .map_err(|e| Rejected::new(exit_code::ERROR, e))?,
        )
    } else {
        None
    };
    kernel_apply::kernel_plan_with_pods(plan, &tree, pods.as_ref()).map_err(|gaps| Rejected {
        details: gaps.iter().map(|g| format!("error: rule {g}\n")).collect(),
        ..Rejected::new(
            exit_code::POLICY,
            anyhow::anyhow!(
                "{} rule(s) cannot be enforced by this build as written; nothing was loaded",
                gaps.len()
            ),
        )
    })
}

/// A plan loaded and attached: it applies from now on.
pub struct Active {
    pub names: Names,
    /// `alert` rules, evaluated on exec records and verdicts of this plan's ring buffer.
    pub alerts: AlertRules,
    pub loaded: Option<Loaded>,
    /// The ring buffer its programs report on (taken from `loaded`).
    pub ring: Option<EventRing>,
    pub info: PlanInfo,
    /// Rules of the plan (also when this kernel runs none of them).
    pub rules: usize,
    /// The generation it is pinned as (`pinning.rs`); `None` when pinning is off or nothing
    /// was loaded.
    pub pinned: Option<u64>,
}

fn mechanism(m: NetMechanism) -> &'static str {
    match m {
        NetMechanism::Auto => "auto",
        NetMechanism::Lsm => "lsm",
        NetMechanism::CgroupSock => "cgroup_sock",
    }
}

/// Loads `prepared` into the kernel and attaches it, alongside whatever is attached already
/// (the old plan keeps running until the caller drops it). Then resolves the plan's cgroup
/// selectors once more: the cgroup inheritance program is attached by now, so a cgroup created
/// at any time is covered either by it or by this second look. With `pins` the plan is then
/// pinned as the next generation; a plan that cannot be pinned is rejected like one the
/// kernel refused.
pub fn activate(
    prepared: Prepared,
    settings: &KernelSettings,
    pins: Option<&crate::pinning::Pins>,
) -> Result<Active, Rejected> {
    let Prepared {
        mut rules,
        plan,
        policies,
        pod_logs_dir,
        ..
    } = prepared;
    let (loaded, rule_count, cgroups) = match &mut rules.load {
        Load::Adhoc(p) => match Loaded::file_open(p) {
            Ok(l) => (Some(l), p.rules.len(), p.cgroups.len()),
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                tracing::warn!(
                    "this kernel refuses BPF LSM programs (EPERM), so file rules cannot be \
                     enforced or audited here; `enforcer doctor` says what this kernel supports, \
                     and `cargo xtask vm run` tries a policy against a kernel with BPF LSM"
                );
                (None, p.rules.len(), p.cgroups.len())
            }
            Err(e) => return Err(Rejected::new(exit_code::KERNEL_LOAD, e)),
        },
        Load::Plan(k) => {
            settings.apply(k);
            let mut loaded =
                Loaded::apply(k).map_err(|e| Rejected::new(exit_code::KERNEL_LOAD, e))?;
            if let Some(plan) = &plan {
                cover_new_cgroups(plan, &pod_logs_dir, &mut loaded);
                if k.binaries.any() {
                    // After the attach: from here on the kernel sets a task's
                    // binary sets at exec and fork; the rest come from /proc.
                    let b = crate::binary_filters::backfill(plan, &loaded);
                    tracing::info!(
                        written = b.written,
                        kept = b.kept,
                        skipped = b.skipped,
                        "binary sets of running processes written"
                    );
                }
            }
            (
                Some(loaded),
                k.rules.len() + k.network.rules.len(),
                k.cgroups.len(),
            )
        }
        Load::Nothing => (None, rules.names.rules.len(), 0),
    };
    let mut loaded = loaded;
    let pinned = match (pins, loaded.as_mut()) {
        (Some(pins), Some(l)) => Some(
            pins.pin(l, &rules.names, &policies)
                .map_err(|e| Rejected::new(exit_code::BPFFS, e))?,
        ),
        _ => None,
    };
    let ring = match loaded.as_mut().map(Loaded::take_events).transpose() {
        Ok(ring) => ring,
        Err(e) => {
            // Pinned already: its pins go too, so the plan in force stays the only one.
            if let Some(l) = loaded {
                let _ = l.retire();
            }
            return Err(Rejected::new(exit_code::KERNEL_LOAD, e));
        }
    };
    let info = PlanInfo {
        policies,
        rules_loaded: if loaded.is_some() {
            rule_count as u64
        } else {
            0
        },
        cgroups,
        hooks: loaded
            .as_ref()
            .map(|l| l.attached().iter().map(|h| h.to_string()).collect())
            .unwrap_or_default(),
        network_mechanism: loaded
            .as_ref()
            .and_then(Loaded::network_mechanism)
            .map(|m| mechanism(m).to_string()),
    };
    Ok(Active {
        names: rules.names,
        alerts: rules.alerts,
        loaded,
        ring,
        info,
        rules: rule_count,
        pinned,
    })
}

/// The second resolution of the cgroup selectors, after the attach. A failure here leaves the
/// plan as loaded (covering every cgroup of the first resolution and those inherited since),
/// so it is a warning.
fn cover_new_cgroups(plan: &policy_lang::Plan, pod_logs_dir: &Path, loaded: &mut Loaded) {
    let again = match translate(plan, pod_logs_dir) {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!(error = %e.error, "resolving the cgroup selectors again after the attach failed");
            return;
        }
    };
    match loaded.cover_cgroups(&again) {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            cgroups = n,
            "cgroups created while the plan was loading are covered"
        ),
        Err(e) => {
            tracing::warn!(error = %e, "covering the cgroups created while the plan was loading failed")
        }
    }
}

// ---------------------------------------------------------------------------------------------
// inotify

/// What a watched directory stands for.
#[derive(Debug, Default)]
struct Watched {
    dir: PathBuf,
    /// A folder given as a policy path: its `*.yaml` and `*.yml` files.
    folder: bool,
    /// Files given as policy paths, by name.
    files: HashSet<OsString>,
}

/// Watches on the directories of the policy paths, made before the first compile so that no
/// edit after it is missed; [`Watches::register`] makes them pollable in the runtime.
#[derive(Debug)]
pub struct Watches {
    inotify: Inotify,
    watched: HashMap<WatchDescriptor, Watched>,
}

/// Editors replace a file by writing another and renaming it over the first, so the directory
/// is watched, not the file: files appearing, renamed in or out, written and closed, deleted;
/// and the directory itself going away.
fn watch_flags() -> AddWatchFlags {
    AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_DELETE_SELF
        | AddWatchFlags::IN_MOVE_SELF
}

impl Watches {
    pub fn new(paths: &[PathBuf]) -> anyhow::Result<Self> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .context("creating an inotify instance for the policy files")?;
        let mut watched: HashMap<WatchDescriptor, Watched> = HashMap::new();
        for path in paths {
            let (dir, file) = if path.is_dir() {
                (path.clone(), None)
            } else {
                let dir = match path.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                    _ => PathBuf::from("."),
                };
                (dir, path.file_name().map(OsString::from))
            };
            let wd = inotify.add_watch(&dir, watch_flags()).with_context(|| {
                format!(
                    "watching `{}` for policy changes (raise fs.inotify.max_user_watches if \
                         the limit is reached)",
                    dir.display()
                )
            })?;
            let w = watched.entry(wd).or_insert_with(|| Watched {
                dir: dir.clone(),
                ..Watched::default()
            });
            match file {
                Some(name) => {
                    w.files.insert(name);
                }
                None => w.folder = true,
            }
        }
        Ok(Watches { inotify, watched })
    }

    /// Call inside the runtime.
    pub fn register(self) -> anyhow::Result<PolicyWatch> {
        let Watches { inotify, watched } = self;
        // SAFETY: `InotifyFd` owns the inotify fd and returns that same fd from as_raw_fd()
        // until it is dropped, which is when the AsyncFd is.
        let fd = unsafe {
            AsyncFd::register_with_interest(InotifyFd(inotify), tokio::io::Interest::READABLE)
        }
        .map_err(|e| e.into_parts().1)
        .context("polling the inotify instance")?;
        Ok(PolicyWatch { fd, watched })
    }
}

struct InotifyFd(Inotify);

impl AsRawFd for InotifyFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// The policy paths' watches, pollable.
pub struct PolicyWatch {
    fd: AsyncFd<InotifyFd>,
    watched: HashMap<WatchDescriptor, Watched>,
}

fn is_policy_file(name: &std::ffi::OsStr) -> bool {
    matches!(
        Path::new(name).extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

impl PolicyWatch {
    /// Waits for inotify events and says whether one of them concerns a policy file.
    pub async fn changed(&mut self) -> std::io::Result<bool> {
        let events = {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| fd.get_ref().0.read_events().map_err(std::io::Error::from)) {
                Ok(result) => result?,
                // Nothing to read after all: readiness is cleared, wait again.
                Err(_would_block) => return Ok(false),
            }
        };
        // Every event is looked at: a removed directory is logged even after a relevant one.
        let mut any = false;
        for e in &events {
            any |= self.relevant(e);
        }
        Ok(any)
    }

    fn relevant(&self, e: &InotifyEvent) -> bool {
        if e.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
            // Events were lost: reload to be sure.
            return true;
        }
        let Some(w) = self.watched.get(&e.wd) else {
            return false;
        };
        if e.mask
            .intersects(AddWatchFlags::IN_DELETE_SELF | AddWatchFlags::IN_MOVE_SELF)
        {
            tracing::warn!(
                dir = %w.dir.display(),
                "a watched policy directory was removed or renamed: its changes are no longer \
                 seen; SIGHUP still reloads, and a restart watches it again"
            );
            return true;
        }
        match &e.name {
            Some(name) => (w.folder && is_policy_file(name)) || w.files.contains(name),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_yaml_files_count_in_a_folder() {
        assert!(is_policy_file(std::ffi::OsStr::new("a.yaml")));
        assert!(is_policy_file(std::ffi::OsStr::new("b.yml")));
        assert!(!is_policy_file(std::ffi::OsStr::new(".a.yaml.swp")));
        assert!(!is_policy_file(std::ffi::OsStr::new("a.yaml~")));
        assert!(!is_policy_file(std::ffi::OsStr::new("4913")));
    }

    #[tokio::test]
    async fn a_rename_over_a_watched_file_is_seen_and_other_files_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let policy = dir.path().join("p.yaml");
        std::fs::write(&policy, "a").unwrap();
        let mut watch = Watches::new(std::slice::from_ref(&policy))
            .unwrap()
            .register()
            .unwrap();
        // Another file in the same directory: not a policy path.
        std::fs::write(dir.path().join("other.yaml"), "x").unwrap();
        let quiet = tokio::time::timeout(Duration::from_millis(300), async {
            loop {
                if watch.changed().await.unwrap() {
                    return;
                }
            }
        })
        .await;
        assert!(
            quiet.is_err(),
            "a change of another file was taken as a policy change"
        );
        // An editor's save: a new file renamed over the policy.
        let tmp = dir.path().join(".p.yaml.tmp");
        std::fs::write(&tmp, "b").unwrap();
        std::fs::rename(&tmp, &policy).unwrap();
        let seen = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if watch.changed().await.unwrap() {
                    return;
                }
            }
        })
        .await;
        assert!(seen.is_ok(), "the rename over the policy file was not seen");
    }
}
