//! Loads the embedded programs, fills their maps from a [`KernelPlan`], and
//! attaches the hooks the plan needs. Maps are filled before any program is
//! attached, so the first time one runs it already sees the whole plan.

use crate::abi;
use crate::kernel_ops::kops;
use crate::objects;
use crate::plan::{
    self, net, Accept, Action, CgroupPolicies, Edge, ExecMechanism, KernelPlan, KernelPolicy,
    KernelRule, NetMechanism, NetworkPlan, PathMatcherEntries, PlanError,
};
use aya::maps::lpm_trie::{Key as LpmKey, LpmTrie};
use aya::maps::{Array, HashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::{
    links::FdLink, BtfTracePoint, CgroupAttachMode, CgroupSockAddr, Lsm, ProgramError,
};
use aya::{Btf, Ebpf, EbpfLoader, Pod};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use crate::plan::Mode;

/// A cgroup the plan applies to, by its cgroup2 id (the inode number of its
/// directory, which is what `bpf_get_current_cgroup_id()` returns).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopedCgroup {
    pub id: u64,
    pub mode: Mode,
}

/// Deny opening exactly this resolved path (the first, `file_open`-only API;
/// [`KernelPlan`] supersedes it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRule {
    /// Reported back in events, so user space can name the rule.
    pub rule_id: u32,
    /// Absolute, resolved path as `d_path` renders it.
    pub path: Vec<u8>,
}

/// The typed map entries of the `file_open` program.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileOpenPlan {
    pub cgroups: Vec<ScopedCgroup>,
    pub rules: Vec<FileRule>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read the kernel's BTF (/sys/kernel/btf/vmlinux): {0}")]
    Btf(#[from] aya::BtfError),
    #[error("cannot load BPF object `{object}`: {source}")]
    Object {
        object: &'static str,
        #[source]
        source: aya::EbpfError,
    },
    #[error("BPF object `{0}` is not embedded in this build")]
    MissingObject(&'static str),
    #[error("program `{program}` is missing from its object")]
    MissingProgram { program: &'static str },
    #[error("map `{map}` is missing or has the wrong type: {detail}")]
    Map { map: &'static str, detail: String },
    #[error("the kernel refused program `{program}`: {io_error}\nverifier log:\n{verifier_log}")]
    Verifier {
        program: &'static str,
        io_error: std::io::Error,
        verifier_log: String,
    },
    #[error("program `{program}`: {source}")]
    Program {
        program: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("path `{path}` is {len} bytes long; the kernel resolves paths up to {max} bytes")]
    PathTooLong {
        path: String,
        len: usize,
        max: usize,
    },
    #[error("invalid kernel plan: {0}")]
    Plan(#[from] PlanError),
    #[error("invalid kernel plan: {0}")]
    Guard(#[from] crate::guard::GuardError),
    #[error("cannot write map `{map}`: {detail}")]
    MapWrite { map: &'static str, detail: String },
    #[error("cannot attach `{program}` to cgroup `{}`: {detail}", cgroup.display())]
    CgroupAttach {
        program: &'static str,
        cgroup: PathBuf,
        detail: String,
    },
    #[error("cannot take the link of `{program}`: {detail}")]
    Link {
        program: &'static str,
        detail: String,
    },
    #[error(transparent)]
    Pin(#[from] crate::pins::PinError),
}

impl LoadError {
    fn program(program: &'static str, err: ProgramError) -> Self {
        match err {
            ProgramError::LoadError {
                io_error,
                verifier_log,
            } => LoadError::Verifier {
                program,
                io_error,
                verifier_log: verifier_log.to_string(),
            },
            source => LoadError::Program { program, source },
        }
    }

    fn map(map: &'static str, detail: impl std::fmt::Display) -> Self {
        LoadError::Map {
            map,
            detail: detail.to_string(),
        }
    }

    /// The errno behind the failure, where there is one (EPERM when the
    /// kernel refuses LSM programs outright).
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            LoadError::Verifier { io_error, .. } => io_error.raw_os_error(),
            _ => None,
        }
    }
}

/// Counters the kernel programs keep (`enf_stats`), summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct KernelStats {
    /// Records lost because the ring buffer was full.
    pub ringbuf_drops: u64,
    /// Operations decided without a resolved path (failed closed).
    pub path_unresolved: u64,
    /// cgroups created under a cgroup with policies that could not inherit
    /// them (the cgroup map was full): those cgroups are NOT covered.
    pub inherit_failed: u64,
    /// cgroups that inherited their parent's policies at creation.
    pub inherited: u64,
    /// Matches of rules with `from`/`except_from` on a task of unknown
    /// executable (applied failing closed: deny, kill, audit rules).
    pub binary_unknown: u64,
    /// Execs and forks whose binary sets could not be stored.
    pub binary_store_failed: u64,
    /// Verdict records the rate limit did not send (each verdict applied;
    /// the next record of its (cgroup, policy, rule) carries the count).
    pub rate_suppressed: u64,
}

/// The ring buffer verdicts arrive on.
pub type EventRing = RingBuf<MapData>;

/// Loaded and attached programs. Dropping it detaches them, unless they were pinned
/// ([`Loaded::pin`]): then they stay attached until [`Loaded::retire`] or the pins are removed.
pub struct Loaded {
    ebpf: Ebpf,
    hooks: Vec<&'static str>,
    net_mechanism: Option<NetMechanism>,
    cgroup_attachments: Vec<PathBuf>,
    /// Every link, by its pin name, owned here (not by the program) so that it can be pinned.
    links: Vec<(String, FdLink)>,
    /// The generation directory in bpffs, once pinned.
    pinned: Option<PathBuf>,
}

const OBJECT: &str = "enforcer";
/// (program, kind): in attach order. The cgroup programs go first so that no
/// cgroup created while the LSM hooks attach is missed.
const MKDIR: &str = "enf_cgroup_mkdir";
const RMDIR: &str = "enf_cgroup_rmdir";
const FILE_OPEN: &str = "enf_file_open";
/// (program, tracepoint) of the process event programs (exec, fork, exit).
const PROCESS: &[(&str, &str)] = &[
    ("enf_proc_fork", "sched_process_fork"),
    ("enf_proc_exec", "sched_process_exec"),
    ("enf_proc_exit", "sched_process_exit"),
];
const BPRM_CHECK: &str = "enf_bprm_check";
/// Exec rules without BPF LSM (`ExecMechanism::KillAtExec`).
const EXEC_FALLBACK: &str = "enf_exec_fallback";
/// The binary-set programs: a task's sets at exec, and a child's at fork.
const BINARY_EXEC: &str = "enf_binary_exec";
const BINARY_FORK: &str = "enf_binary_fork";
/// (program, hook, op) of the LSM network programs.
const NET_LSM: &[(&str, &str, u32)] = &[
    ("enf_socket_connect", "socket_connect", net::CONNECT),
    ("enf_socket_bind", "socket_bind", net::BIND),
    ("enf_socket_listen", "socket_listen", net::LISTEN),
    ("enf_socket_sendmsg", "socket_sendmsg", net::SEND),
];
/// (program, hook, kernel operations) of the kernel-class LSM programs: a
/// program is attached when the plan decides one of its operations.
const KERNEL_LSM: &[(&str, &str, u32)] = &[
    ("enf_sb_mount", "sb_mount", kops::MOUNT),
    ("enf_move_mount", "move_mount", kops::MOUNT),
    ("enf_sb_umount", "sb_umount", kops::UMOUNT),
    (
        "enf_ptrace_access_check",
        "ptrace_access_check",
        kops::PTRACE,
    ),
    ("enf_ptrace_traceme", "ptrace_traceme", kops::PTRACE),
    ("enf_bpf", "bpf", kops::BPF),
    (
        "enf_kernel_read_file",
        "kernel_read_file",
        kops::MODULE_LOAD | kops::KEXEC,
    ),
    (
        "enf_kernel_load_data",
        "kernel_load_data",
        kops::MODULE_LOAD | kops::KEXEC,
    ),
    ("enf_task_fix_setuid", "task_fix_setuid", kops::SETUID_ROOT),
    ("enf_task_fix_setgid", "task_fix_setgid", kops::SETGID_ROOT),
    ("enf_userns_create", "userns_create", kops::USERNS_CREATE),
    (
        "enf_socket_create",
        "socket_create",
        kops::RAW_SOCKET | kops::PACKET_SOCKET,
    ),
    (
        "enf_perf_event_open",
        "perf_event_open",
        kops::PERF_EVENT_OPEN,
    ),
    ("enf_key_alloc", "key_alloc", kops::KEYCTL),
];
const CAPABLE: &str = "enf_capable";
const SYS_ENTER: &str = "enf_sys_enter";
/// (program, op) of the cgroup socket programs (no `listen` among them).
const NET_CGROUP: &[(&str, u32)] = &[
    ("enf_cg_connect4", net::CONNECT),
    ("enf_cg_connect6", net::CONNECT),
    ("enf_cg_bind4", net::BIND),
    ("enf_cg_bind6", net::BIND),
    ("enf_cg_sendmsg4", net::SEND),
    ("enf_cg_sendmsg6", net::SEND),
];

fn map_mut<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut aya::maps::Map, LoadError> {
    ebpf.map_mut(name)
        .ok_or(LoadError::map(name, "not in the object"))
}

fn write_hash<K: Pod, V: Pod>(
    ebpf: &mut Ebpf,
    name: &'static str,
    entries: &[(K, V)],
) -> Result<(), LoadError> {
    let mut map: HashMap<_, K, V> =
        HashMap::try_from(map_mut(ebpf, name)?).map_err(|e| LoadError::map(name, e))?;
    for (k, v) in entries {
        map.insert(k, v, 0).map_err(|e| LoadError::MapWrite {
            map: name,
            detail: e.to_string(),
        })?;
    }
    Ok(())
}

fn write_array<V: Pod>(
    ebpf: &mut Ebpf,
    name: &'static str,
    entries: impl IntoIterator<Item = (u32, V)>,
) -> Result<(), LoadError> {
    let mut map: Array<_, V> =
        Array::try_from(map_mut(ebpf, name)?).map_err(|e| LoadError::map(name, e))?;
    for (i, v) in entries {
        map.set(i, v, 0).map_err(|e| LoadError::MapWrite {
            map: name,
            detail: e.to_string(),
        })?;
    }
    Ok(())
}

fn size(n: usize) -> u32 {
    u32::try_from(n.max(1)).unwrap_or(u32::MAX)
}

fn write_lpm<const N: usize>(
    ebpf: &mut Ebpf,
    name: &'static str,
    entries: &[(u32, [u8; N], abi::NetList)],
) -> Result<(), LoadError> {
    let mut map: LpmTrie<_, [u8; N], abi::NetList> =
        LpmTrie::try_from(map_mut(ebpf, name)?).map_err(|e| LoadError::map(name, e))?;
    for (len, addr, list) in entries {
        map.insert(&LpmKey::new(*len, *addr), *list, 0)
            .map_err(|e| LoadError::MapWrite {
                map: name,
                detail: e.to_string(),
            })?;
    }
    Ok(())
}

fn load_lsm(
    ebpf: &mut Ebpf,
    btf: &Btf,
    program: &'static str,
    hook: &str,
) -> Result<(), LoadError> {
    let prog = ebpf
        .program_mut(program)
        .ok_or(LoadError::MissingProgram { program })?;
    let lsm: &mut Lsm = prog
        .try_into()
        .map_err(|e| LoadError::program(program, e))?;
    lsm.load(hook, btf)
        .map_err(|e| LoadError::program(program, e))
}

/// The network mechanism of a plan that needs network hooks: `Auto` is BPF
/// LSM when file or exec hooks need it anyway, else what a real load of
/// `lsm/socket_connect` says.
fn resolve_mechanism(
    ebpf: &mut Ebpf,
    btf: &Btf,
    wanted: NetMechanism,
    lsm_needed: bool,
) -> Result<NetMechanism, LoadError> {
    match wanted {
        NetMechanism::Lsm | NetMechanism::CgroupSock => Ok(wanted),
        NetMechanism::Auto if lsm_needed => Ok(NetMechanism::Lsm),
        NetMechanism::Auto => match load_lsm(ebpf, btf, NET_LSM[0].0, NET_LSM[0].1) {
            Ok(()) => Ok(NetMechanism::Lsm),
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "BPF LSM programs do not load here: network rules go to the cgroup socket \
                     programs (connect, bind and UDP send; no listen)"
                );
                Ok(NetMechanism::CgroupSock)
            }
        },
    }
}

/// The cgroup2 directories the cgroup socket programs attach to.
fn attach_dirs(n: &NetworkPlan) -> Result<Vec<PathBuf>, LoadError> {
    let root = match &n.cgroup2_root {
        Some(r) => r.clone(),
        None => crate::probe::cgroup2_mount().ok_or_else(|| {
            LoadError::Plan(PlanError::Network(
                "no cgroup2 file system is mounted: the cgroup socket programs need one".into(),
            ))
        })?,
    };
    Ok(n.attach_cgroups
        .iter()
        .map(|rel| {
            let rel = rel.trim_start_matches('/');
            if rel.is_empty() {
                root.clone()
            } else {
                Path::new(&root).join(rel)
            }
        })
        .collect())
}

/// One debug line per program and a summary naming the slowest.
fn log_load_times(times: &[(&'static str, Duration)]) {
    for (program, took) in times {
        tracing::debug!(
            program,
            ms = took.as_millis() as u64,
            "program verified and loaded"
        );
    }
    if let Some((slowest, took)) = times.iter().max_by_key(|(_, took)| *took) {
        let total: Duration = times.iter().map(|(_, took)| *took).sum();
        tracing::info!(
            programs = times.len(),
            total_ms = total.as_millis() as u64,
            slowest,
            slowest_ms = took.as_millis() as u64,
            "the kernel verified the programs"
        );
    }
}

impl Loaded {
    /// Loads the programs `plan` needs, fills their maps and attaches them:
    /// `lsm/file_open` when there are file rules or a file default deny,
    /// `lsm/bprm_check_security` likewise for exec, the path and mmap
    /// programs of the file operations the plan decides
    /// ([`crate::path_hooks`]; `file_truncate` where the kernel has it), the
    /// process tracepoints (`tp_btf/sched_process_exec|fork|exit`) with
    /// [`KernelPlan::process_events`], and the cgroup inheritance programs
    /// with any of them. Errors carry the verifier log.
    pub fn apply(plan: &KernelPlan) -> Result<Self, LoadError> {
        let entries = plan::compile(plan)?;
        let inodes = crate::inode_alias::entries(&plan.file_matcher);
        let btf = Btf::from_sys_fs()?;
        let bytes = objects::by_name(OBJECT).ok_or(LoadError::MissingObject(OBJECT))?;
        // Every map is sized from the plan: no fixed cap on rules, states or
        // cgroups.
        let mut ebpf = EbpfLoader::new()
            .btf(Some(&btf))
            // aya has no typed wrapper for task storage (`enf_task_bins`): it
            // creates the map and hands it back as `Map::Unsupported`, which
            // `task_binaries.rs` writes through its fd.
            .allow_unsupported_maps()
            .map_max_entries("enf_cgroup_policies", entries.cgroup_capacity)
            .map_max_entries("enf_edges", size(entries.edges.len()))
            .map_max_entries("enf_states", size(entries.states.len()))
            .map_max_entries("enf_suffixes", size(entries.suffixes.len()))
            .map_max_entries("enf_rule_list", size(entries.rule_list.len()))
            .map_max_entries("enf_file_inodes", size(inodes.len()))
            .map_max_entries("enf_rule_uids", size(entries.rule_uids.len()))
            .map_max_entries("enf_net_v4", size(entries.net_v4.len()))
            .map_max_entries("enf_net_v6", size(entries.net_v6.len()))
            .map_max_entries("enf_net_rules", size(entries.net_rules.len()))
            .map_max_entries("enf_net_ports", size(entries.net_ports.len()))
            .map_max_entries("enf_kernel_lists", size(entries.kernel.lists.len()))
            .map_max_entries("enf_kernel_rules", size(entries.kernel.rules.len()))
            .map_max_entries(
                "enf_pod_cgroups",
                entries.pods.as_ref().map_or(1, |p| p.pod_capacity()),
            )
            .map_max_entries(
                "enf_k8s_namespaces",
                size(entries.pods.as_ref().map_or(0, |p| p.namespaces.len())),
            )
            .load(bytes)
            .map_err(|source| LoadError::Object {
                object: OBJECT,
                source,
            })?;

        // Self-protection goes with any hook: it guards the tasks under enforcement.
        let guard = match &plan.self_guard {
            Some(g) if entries.hooks.any() => Some((g.daemon_tgid, g.entries()?)),
            _ => None,
        };
        let exe = match &plan.self_guard {
            Some(g) if guard.is_some() => g.daemon_exe.unwrap_or_default(),
            _ => crate::guard::ExeId::default(),
        };
        // Namespace selectors go with any hook, like the cgroup inheritance they extend.
        let pods = entries
            .pods
            .as_ref()
            .filter(|p| entries.hooks.any() && !p.namespaces.is_empty());
        if let Some(p) = pods {
            write_hash(&mut ebpf, "enf_k8s_namespaces", &p.namespaces)?;
            write_hash(&mut ebpf, "enf_pod_cgroups", &p.pod_cgroups)?;
        }
        write_array(
            &mut ebpf,
            "enf_config",
            [(
                0u32,
                abi::Config {
                    rate_limit: plan.rate_limit,
                    daemon_tgid: guard.as_ref().map_or(0, |g| g.0),
                    daemon_exe_dev: exe.dev,
                    cgroup_selectors: u32::from(entries.cgroup_selectors),
                    daemon_exe_ino: exe.ino,
                    pod_logs_dev: pods.map_or(0, |p| p.logs_dir.dev),
                    _pad2: 0,
                    pod_logs_ino: pods.map_or(0, |p| p.logs_dir.ino),
                    cgroup_globs: u32::try_from(entries.cgroup_globs.len()).unwrap_or(0),
                    _pad3: 0,
                },
            )],
        )?;
        write_array(
            &mut ebpf,
            "enf_cgroup_globs",
            entries
                .cgroup_globs
                .iter()
                .copied()
                .zip(0u32..)
                .map(|(g, i)| (i, g)),
        )?;
        if let Some((_, dirs)) = &guard {
            write_array(
                &mut ebpf,
                "enf_guard_dirs",
                dirs.iter().copied().zip(0u32..).map(|(d, i)| (i, d)),
            )?;
        }
        write_array(&mut ebpf, "enf_policies", entries.policies.iter().copied())?;
        write_hash(&mut ebpf, "enf_edges", &entries.edges)?;
        write_hash(&mut ebpf, "enf_states", &entries.states)?;
        write_hash(&mut ebpf, "enf_suffixes", &entries.suffixes)?;
        write_hash(&mut ebpf, "enf_file_inodes", &inodes)?;
        write_hash(&mut ebpf, "enf_rule_uids", &entries.rule_uids)?;
        write_array(
            &mut ebpf,
            "enf_rule_list",
            entries
                .rule_list
                .iter()
                .copied()
                .zip(0u32..)
                .map(|(r, i)| (i, r)),
        )?;
        write_hash(&mut ebpf, "enf_cgroup_policies", &entries.cgroups)?;
        write_lpm(&mut ebpf, "enf_net_v4", &entries.net_v4)?;
        write_lpm(&mut ebpf, "enf_net_v6", &entries.net_v6)?;
        write_array(
            &mut ebpf,
            "enf_net_rules",
            entries
                .net_rules
                .iter()
                .copied()
                .zip(0u32..)
                .map(|(r, i)| (i, r)),
        )?;
        write_array(
            &mut ebpf,
            "enf_net_ports",
            entries
                .net_ports
                .iter()
                .copied()
                .zip(0u32..)
                .map(|(r, i)| (i, r)),
        )?;

        write_hash(&mut ebpf, "enf_kernel_lists", &entries.kernel.lists)?;
        write_array(
            &mut ebpf,
            "enf_kernel_rules",
            entries
                .kernel
                .rules
                .iter()
                .copied()
                .zip(0u32..)
                .map(|(r, i)| (i, r)),
        )?;

        let mut h = entries.hooks;
        let exec_fallback = plan.exec_mechanism == ExecMechanism::KillAtExec;
        if guard.is_some() {
            h.file_open = true;
            h.path_ops |= crate::guard::PATH_OPS;
            h.kernel.ops |= crate::guard::KERNEL_OPS;
        }
        let lsm_needed = h.file_open
            || (h.bprm_check_security && !exec_fallback)
            || h.path_ops != 0
            || h.kernel.ops != 0
            || h.kernel.capable;
        let net_mechanism = if h.net_ops != 0 {
            Some(resolve_mechanism(
                &mut ebpf,
                &btf,
                plan.network.mechanism,
                lsm_needed,
            )?)
        } else {
            None
        };
        let mut cgroup_dirs = Vec::new();
        if net_mechanism == Some(NetMechanism::CgroupSock)
            && entries
                .net_rules
                .iter()
                .any(|r| r.from_sets | r.except_sets != 0)
        {
            return Err(LoadError::Plan(PlanError::Network(
                "a network rule with `from`/`except_from` needs BPF LSM: the cgroup socket \
                 programs cannot read a task's binary sets; drop the filter, or run on a kernel \
                 with BPF LSM"
                    .into(),
            )));
        }
        if net_mechanism == Some(NetMechanism::CgroupSock) {
            if h.net_ops & net::LISTEN != 0 {
                return Err(LoadError::Plan(PlanError::Network(
                    "`listen` (a rule's op, or a network default deny) needs BPF LSM: the cgroup \
                     socket programs neither deny nor see it"
                        .into(),
                )));
            }
            cgroup_dirs = attach_dirs(&plan.network)?;
            if cgroup_dirs.is_empty() && !plan.cgroups.is_empty() {
                return Err(LoadError::Plan(PlanError::Network(
                    "the cgroup socket programs need the cgroups to attach to \
                     (NetworkPlan::attach_cgroups)"
                        .into(),
                )));
            }
        }

        let mut hooks: Vec<(&'static str, &'static str)> = Vec::new();
        if h.any() {
            hooks.push((MKDIR, "cgroup_mkdir"));
            hooks.push((RMDIR, "cgroup_rmdir"));
        }
        if pods.is_some() {
            // After cgroup_mkdir, which records the pod cgroups it classifies.
            hooks.push((crate::pods::PROGRAM, "inode_mkdir"));
        }
        if h.process_events {
            // Before the LSM hooks: a process they report on is known.
            hooks.extend_from_slice(PROCESS);
        }
        if h.binaries {
            // Before the hooks that check binary sets: fork first, so that no
            // child of a task that exec'd after the exec hook attached is
            // left without its parent's sets.
            hooks.push((BINARY_FORK, "sched_process_fork"));
            hooks.push((BINARY_EXEC, "bprm_committed_creds"));
        }
        if h.file_open {
            hooks.push((FILE_OPEN, "file_open"));
        }
        if h.bprm_check_security && exec_fallback {
            hooks.push((EXEC_FALLBACK, "sched_process_exec"));
        } else if h.bprm_check_security {
            hooks.push((BPRM_CHECK, "bprm_check_security"));
        }
        let path_programs = crate::path_hooks::programs_for(h.path_ops, |hook| {
            btf.id_by_type_name_kind(&format!("bpf_lsm_{hook}"), aya_obj::btf::BtfKind::Func)
                .is_ok()
        });
        for p in &path_programs {
            hooks.push((p.program, p.hook));
        }
        if net_mechanism == Some(NetMechanism::Lsm) {
            for &(program, hook, op) in NET_LSM {
                if h.net_ops & op != 0 {
                    hooks.push((program, hook));
                }
            }
        }
        for &(program, hook, ops) in KERNEL_LSM {
            if h.kernel.ops & ops != 0 {
                hooks.push((program, hook));
            }
        }
        if h.kernel.capable {
            hooks.push((CAPABLE, "capable"));
        }
        if guard.is_some() {
            hooks.push((crate::guard::TASK_KILL, "task_kill"));
        }
        if h.kernel.sys_enter {
            hooks.push((SYS_ENTER, "sys_enter"));
        }
        let mut links = Vec::new();
        // How long the kernel took to verify each program: on a slow machine a
        // program that verifies slowly is what makes a start or a reload slow.
        let mut load_times = Vec::new();
        for &(program, target) in &hooks {
            let started = Instant::now();
            let prog = ebpf
                .program_mut(program)
                .ok_or(LoadError::MissingProgram { program })?;
            if program == MKDIR
                || program == RMDIR
                || program == SYS_ENTER
                || program == BINARY_FORK
                || program == EXEC_FALLBACK
                || PROCESS.iter().any(|(p, _)| *p == program)
            {
                let tp: &mut BtfTracePoint = prog
                    .try_into()
                    .map_err(|e| LoadError::program(program, e))?;
                tp.load(target, &btf)
                    .map_err(|e| LoadError::program(program, e))?;
                load_times.push((program, started.elapsed()));
                let id = tp.attach().map_err(|e| LoadError::program(program, e))?;
                let link = tp
                    .take_link(id)
                    .map_err(|e| LoadError::program(program, e))?;
                links.push((crate::pins::link_name(program, None), FdLink::from(link)));
            } else {
                let lsm: &mut Lsm = prog
                    .try_into()
                    .map_err(|e| LoadError::program(program, e))?;
                // The mechanism probe may have loaded it already.
                if lsm.fd().is_err() {
                    lsm.load(target, &btf)
                        .map_err(|e| LoadError::program(program, e))?;
                }
                load_times.push((program, started.elapsed()));
                let id = lsm.attach().map_err(|e| LoadError::program(program, e))?;
                let link = lsm
                    .take_link(id)
                    .map_err(|e| LoadError::program(program, e))?;
                links.push((crate::pins::link_name(program, None), FdLink::from(link)));
            }
        }
        log_load_times(&load_times);
        let mut attached: Vec<&'static str> = hooks.iter().map(|(p, _)| *p).collect();
        if net_mechanism == Some(NetMechanism::CgroupSock) {
            for &(program, op) in NET_CGROUP {
                if h.net_ops & op == 0 {
                    continue;
                }
                let prog = ebpf
                    .program_mut(program)
                    .ok_or(LoadError::MissingProgram { program })?;
                let cg: &mut CgroupSockAddr = prog
                    .try_into()
                    .map_err(|e| LoadError::program(program, e))?;
                cg.load().map_err(|e| LoadError::program(program, e))?;
                for (i, dir) in cgroup_dirs.iter().enumerate() {
                    let file = std::fs::File::open(dir).map_err(|e| LoadError::CgroupAttach {
                        program,
                        cgroup: dir.clone(),
                        detail: e.to_string(),
                    })?;
                    // A bpf_link (aya uses one from Linux 5.7 on) is always a multi
                    // attachment, as BPF_F_ALLOW_MULTI: other programs on the cgroup
                    // and its subtree keep running. The kernel refuses attach flags on
                    // a link, so none are passed (`Single` is "no flags").
                    let id = cg.attach(&file, CgroupAttachMode::Single).map_err(|e| {
                        LoadError::CgroupAttach {
                            program,
                            cgroup: dir.clone(),
                            detail: e.to_string(),
                        }
                    })?;
                    let link = cg
                        .take_link(id)
                        .map_err(|e| LoadError::program(program, e))?;
                    let link = FdLink::try_from(link).map_err(|e| LoadError::Link {
                        program,
                        detail: e.to_string(),
                    })?;
                    links.push((crate::pins::link_name(program, Some(i)), link));
                }
                attached.push(program);
            }
        }
        Ok(Loaded {
            ebpf,
            hooks: attached,
            net_mechanism,
            cgroup_attachments: cgroup_dirs,
            links,
            pinned: None,
        })
    }

    /// Pins every link, the ring buffer and the counters under `dir` (created; its parent
    /// must be on bpffs): from now on the programs stay attached when this process exits,
    /// until [`Loaded::retire`] or [`crate::pins::PinnedGeneration::remove`]. Call it before
    /// [`Loaded::take_events`]. On failure what was pinned is removed again, and the
    /// programs stay as they were (detached when this is dropped).
    pub fn pin(&mut self, dir: &Path) -> Result<(), LoadError> {
        let generation = crate::pins::PinnedGeneration::new(dir);
        let result = self.pin_all(dir);
        if result.is_err() {
            let _ = generation.remove();
        }
        result
    }

    fn pin_all(&mut self, dir: &Path) -> Result<(), LoadError> {
        let pin_error = |path: PathBuf, detail: String| crate::pins::PinError::Pin { path, detail };
        std::fs::create_dir_all(dir).map_err(|e| pin_error(dir.to_path_buf(), e.to_string()))?;
        for name in [crate::pins::RING, crate::pins::STATS] {
            let path = dir.join(name);
            map_mut(&mut self.ebpf, name)?
                .pin(&path)
                .map_err(|e| pin_error(path, e.to_string()))?;
        }
        let mut pinned = Vec::with_capacity(self.links.len());
        let mut failed = None;
        for (name, link) in std::mem::take(&mut self.links) {
            if failed.is_some() {
                pinned.push((name, link));
                continue;
            }
            let path = dir.join(&name);
            // Pinning consumes the link; the pinned one still holds its fd.
            match link.pin(&path) {
                Ok(p) => pinned.push((name, FdLink::from(p))),
                Err(e) => failed = Some(pin_error(path, e.to_string())),
            }
        }
        self.links = pinned;
        if let Some(e) = failed {
            return Err(e.into());
        }
        self.pinned = Some(dir.to_path_buf());
        Ok(())
    }

    /// The generation directory the programs are pinned in, if they are.
    pub fn pinned_dir(&self) -> Option<&Path> {
        self.pinned.as_deref()
    }

    /// The programs attached, by name (`enf_file_open`, ...).
    pub fn attached(&self) -> &[&'static str] {
        &self.hooks
    }

    /// How network rules are enforced: `Lsm` or `CgroupSock` (never `Auto`),
    /// `None` when the plan has none.
    pub fn network_mechanism(&self) -> Option<NetMechanism> {
        self.net_mechanism
    }

    /// The cgroup2 directories the cgroup socket programs are attached to.
    pub fn cgroup_attachments(&self) -> &[PathBuf] {
        &self.cgroup_attachments
    }

    /// Loads `lsm/file_open` with exact-path deny rules: the first API, kept
    /// as a wrapper over [`Loaded::apply`] (one policy, every cgroup in it,
    /// every rule denying any open of its path). All cgroups must have the
    /// same mode.
    pub fn file_open(plan: &FileOpenPlan) -> Result<Self, LoadError> {
        Loaded::apply(&file_open_plan(plan)?)
    }
    /// Takes the ring buffer the programs report verdicts on. It can be
    /// taken once; the caller polls its fd (it implements `AsRawFd`).
    pub fn take_events(&mut self) -> Result<EventRing, LoadError> {
        let map = self
            .ebpf
            .take_map("enf_events")
            .ok_or(LoadError::map("enf_events", "already taken"))?;
        RingBuf::try_from(map).map_err(|e| LoadError::map("enf_events", e))
    }

    /// Reads the kernel-side counters.
    pub fn stats(&self) -> Result<KernelStats, LoadError> {
        let map = self
            .ebpf
            .map("enf_stats")
            .ok_or(LoadError::map("enf_stats", "not in the object"))?;
        let stats: PerCpuArray<_, u64> =
            PerCpuArray::try_from(map).map_err(|e| LoadError::map("enf_stats", e))?;
        read_stats(&stats)
    }

    /// Adds the cgroups of `plan` (resolved again from the cgroup tree) that
    /// are not yet in the cgroup map, without touching the entries already
    /// there (the plan's, or those inherited at creation). Called once the
    /// cgroup inheritance program is attached, it covers a cgroup created
    /// between the first resolution and the attach. Returns how many were
    /// added.
    pub fn cover_cgroups(&mut self, plan: &KernelPlan) -> Result<usize, LoadError> {
        let name = "enf_cgroup_policies";
        let entries = plan::compile(plan)?;
        let mut map: HashMap<_, u64, abi::CgroupPolicies> =
            HashMap::try_from(map_mut(&mut self.ebpf, name)?)
                .map_err(|e| LoadError::map(name, e))?;
        let mut added = 0;
        for (id, slots) in &entries.cgroups {
            // BPF_NOEXIST: an entry already there stays as it is.
            match map.insert(id, slots, BPF_NOEXIST) {
                Ok(()) => added += 1,
                Err(aya::maps::MapError::SyscallError(e))
                    if e.io_error.raw_os_error() == Some(libc::EEXIST) => {}
                Err(e) => {
                    return Err(LoadError::MapWrite {
                        map: name,
                        detail: e.to_string(),
                    })
                }
            }
        }
        Ok(added)
    }

    /// Detaches every program (removing its pins, if pinned) and returns the
    /// kernel counters as they were at the end: the counter map is taken
    /// first, so nothing counted up to the detach is lost. The ring buffer,
    /// if taken, stays readable.
    pub fn retire(mut self) -> Result<KernelStats, LoadError> {
        let name = "enf_stats";
        let map = self.ebpf.take_map(name);
        let pinned = self.pinned.take();
        // Dropping the object drops the links: the programs stop running (a pinned link once
        // its pin is gone too).
        drop(self);
        // The pins go whatever else fails: a retired plan must not stay attached.
        let removed = match pinned {
            Some(dir) => crate::pins::PinnedGeneration::new(dir).remove().map(drop),
            None => Ok(()),
        };
        let map = map.ok_or(LoadError::map(name, "not in the object"))?;
        let stats: PerCpuArray<_, u64> =
            PerCpuArray::try_from(map).map_err(|e| LoadError::map(name, e))?;
        let stats = read_stats(&stats)?;
        removed?;
        Ok(stats)
    }

    /// Sets the binary sets of a process that ran before the plan loaded
    /// (`pidfd` names it), unless the kernel set them meanwhile at an exec
    /// or fork (then `Ok(false)`: the kernel's entry is newer).
    pub fn backfill_binaries(
        &self,
        pidfd: std::os::fd::BorrowedFd<'_>,
        sets: u64,
    ) -> Result<bool, LoadError> {
        use std::os::fd::AsFd;
        let name = "enf_task_bins";
        let map = self
            .ebpf
            .map(name)
            .ok_or(LoadError::map(name, "not in the object"))?;
        let aya::maps::Map::Unsupported(data) = map else {
            return Err(LoadError::map(name, "not a task storage map"));
        };
        let bins = abi::TaskBins {
            sets,
            known: 1,
            _pad: 0,
        };
        crate::task_binaries::write_noexist(data.fd().as_fd(), pidfd, &bins)
            .map_err(|e| LoadError::map(name, e))
    }

    /// The policy slots the kernel applies to cgroup `cgroup_id` (bit i: the
    /// plan's i-th policy), `None` when the cgroup is in no policy's scope.
    /// One map lookup.
    pub fn cgroup_policy_slots(&self, cgroup_id: u64) -> Result<Option<u64>, LoadError> {
        let name = "enf_cgroup_policies";
        let map = self
            .ebpf
            .map(name)
            .ok_or(LoadError::map(name, "not in the object"))?;
        let map: HashMap<_, u64, abi::CgroupPolicies> =
            HashMap::try_from(map).map_err(|e| LoadError::map(name, e))?;
        match map.get(&cgroup_id, 0) {
            Ok(v) => Ok(Some(v.slots)),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(LoadError::map(name, e)),
        }
    }

    /// The cgroups the kernel currently applies policies to (those of the
    /// plan, plus those that inherited them since), with their policy slots.
    pub fn cgroup_slots(&self) -> Result<Vec<(u64, u64)>, LoadError> {
        let name = "enf_cgroup_policies";
        let map = self
            .ebpf
            .map(name)
            .ok_or(LoadError::map(name, "not in the object"))?;
        let map: HashMap<_, u64, abi::CgroupPolicies> =
            HashMap::try_from(map).map_err(|e| LoadError::map(name, e))?;
        map.iter()
            .map(|r| r.map(|(k, v)| (k, v.slots)))
            .collect::<Result<_, _>>()
            .map_err(|e| LoadError::map(name, e))
    }
}

/// `BPF_NOEXIST`: a map update that adds a key and never replaces one.
const BPF_NOEXIST: u64 = 1;

/// Sums the per-CPU counters of `enf_stats`.
pub(crate) fn read_stats<T: std::borrow::Borrow<MapData>>(
    stats: &PerCpuArray<T, u64>,
) -> Result<KernelStats, LoadError> {
    let sum = |idx: u32| -> Result<u64, LoadError> {
        let values = stats
            .get(&idx, 0)
            .map_err(|e| LoadError::map("enf_stats", e))?;
        Ok(values.iter().sum())
    };
    Ok(KernelStats {
        ringbuf_drops: sum(abi::STAT_RINGBUF_DROPS)?,
        path_unresolved: sum(abi::STAT_PATH_UNRESOLVED)?,
        inherit_failed: sum(abi::STAT_INHERIT_FAILED)?,
        inherited: sum(abi::STAT_INHERITED)?,
        binary_unknown: sum(abi::STAT_BINARY_UNKNOWN)?,
        binary_store_failed: sum(abi::STAT_BINARY_STORE_FAILED)?,
        rate_suppressed: sum(abi::STAT_RATE_SUPPRESSED)?,
    })
}

/// The [`KernelPlan`] of a [`FileOpenPlan`]: policy 0 with every cgroup, and
/// a literal path automaton whose accepting states list the rules.
fn file_open_plan(p: &FileOpenPlan) -> Result<KernelPlan, LoadError> {
    let mode = match p.cgroups.first() {
        Some(first) if p.cgroups.iter().any(|c| c.mode != first.mode) => {
            return Err(LoadError::Plan(PlanError::Matcher {
                matcher: "file",
                detail: "the cgroups of a FileOpenPlan must share one mode (use Loaded::apply)"
                    .into(),
            }))
        }
        Some(first) => first.mode,
        None => Mode::Enforce,
    };
    let mut m = PathMatcherEntries::default();
    let mut next: BTreeMap<(u32, Vec<u8>), u32> = BTreeMap::new();
    let mut accepts: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    let mut states = abi::STATE_START;
    for rule in &p.rules {
        if rule.path.len() >= abi::PATH_MAX {
            return Err(LoadError::PathTooLong {
                path: String::from_utf8_lossy(&rule.path).into_owned(),
                len: rule.path.len(),
                max: abi::PATH_MAX - 1,
            });
        }
        let mut state = abi::STATE_START;
        for comp in rule.path.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
            state = *next.entry((state, comp.to_vec())).or_insert_with(|| {
                states += 1;
                m.edges.push(Edge::new(state, comp, states));
                states
            });
        }
        accepts.entry(state).or_default().push(rule.rule_id);
    }
    m.accepts = accepts
        .into_iter()
        .map(|(state, rules)| Accept { state, rules })
        .collect();
    Ok(KernelPlan {
        cgroup_selectors: Default::default(),
        policies: vec![KernelPolicy {
            id: 0,
            mode,
            file_default: Action::Allow,
            exec_default: Action::Allow,
        }],
        cgroups: p
            .cgroups
            .iter()
            .map(|c| CgroupPolicies {
                cgroup_id: c.id,
                policies: vec![0],
            })
            .collect(),
        file_matcher: m,
        exec_matcher: PathMatcherEntries::default(),
        rules: p
            .rules
            .iter()
            .map(|r| KernelRule {
                id: r.rule_id,
                policy: 0,
                action: Action::Deny,
                // Any open, as this API always meant; not the path hooks.
                ops: plan::ops::READ | plan::ops::WRITE | plan::ops::APPEND | plan::ops::EXEC,
            })
            .collect(),
        cgroup_headroom: None,
        network: NetworkPlan::default(),
        process_events: false,
        kernel: crate::kernel_ops::KernelOpsPlan::default(),
        binaries: plan::BinaryFilters::default(),
        exec_mechanism: ExecMechanism::Lsm,
        rate_limit: 0,
        self_guard: None,
        pods: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_open_plan_becomes_a_literal_automaton() {
        let p = FileOpenPlan {
            cgroups: vec![ScopedCgroup {
                id: 5,
                mode: Mode::Audit,
            }],
            rules: vec![
                FileRule {
                    rule_id: 0,
                    path: b"/etc/shadow".to_vec(),
                },
                FileRule {
                    rule_id: 1,
                    path: b"/etc/passwd".to_vec(),
                },
            ],
        };
        let k = file_open_plan(&p).unwrap();
        assert_eq!(k.policies[0].mode, Mode::Audit);
        assert_eq!(k.file_matcher.edges.len(), 3);
        assert_eq!(k.file_matcher.accepts.len(), 2);
        assert!(plan::compile(&k).is_ok());
    }

    #[test]
    fn a_file_open_plan_needs_one_mode() {
        let cg = |id, mode| ScopedCgroup { id, mode };
        let p = FileOpenPlan {
            cgroups: vec![cg(1, Mode::Enforce), cg(2, Mode::Audit)],
            rules: vec![],
        };
        assert!(file_open_plan(&p).is_err());
    }
}
