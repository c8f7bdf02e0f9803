//! The compiled plan: everything the loader needs (hooks to attach, typed map entries),
//! the user-space rules, and how every rule is enforced on the target kernel.

use crate::condition::{CmpOp, Expr, Field, Value};
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::kernel_features::KernelFeatures;
use crate::matcher::{self, PathMatcher};
use crate::model::*;
use crate::net::{Cidr, PortRange};
use crate::pattern::PathPattern;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

pub const PLAN_VERSION: u32 = 1;

/// How a rule (or a default) takes effect on the target kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Enforcement {
    /// The LSM hook returns -EPERM.
    LsmDeny,
    /// The LSM hook returns -EPERM and the process gets SIGKILL.
    LsmDenyAndKill,
    /// cgroup socket hooks refuse the operation (network without BPF LSM).
    CgroupSockDeny,
    /// No LSM: `tp_btf/sched_process_exec` kills the process after the exec succeeded and
    /// before the new program runs its first instruction.
    KillAtExec,
    /// Recorded by the kernel programs, not denied.
    KernelAudit,
    /// `raw_syscalls/sys_enter` sends SIGKILL (syscalls cannot be denied there).
    TracepointKill,
    /// An exemption from the default deny, in whatever mechanism the default uses.
    Allow,
    /// Matched in user space from events; recorded only (a downgrade the user accepted).
    UserspaceAudit,
    /// Detection only, in user space.
    UserspaceAlert,
    /// The target kernel can neither enforce nor record it (a downgrade the user accepted).
    Unenforced,
}

impl Enforcement {
    pub fn describe(self) -> &'static str {
        match self {
            Enforcement::LsmDeny => "denied by BPF LSM",
            Enforcement::LsmDenyAndKill => "denied by BPF LSM, process killed",
            Enforcement::CgroupSockDeny => "denied by cgroup socket hooks",
            Enforcement::KillAtExec => {
                "killed at exec (no BPF LSM): the exec succeeds at the system call level; the \
                 process is killed before it runs"
            }
            Enforcement::KernelAudit => "audited in the kernel, not denied",
            Enforcement::TracepointKill => "process killed at syscall entry",
            Enforcement::Allow => "allowed (exemption from the default)",
            Enforcement::UserspaceAudit => "audited in user space, not denied",
            Enforcement::UserspaceAlert => "alert in user space",
            Enforcement::Unenforced => "neither enforced nor recorded on this kernel",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassDefault {
    pub class: Class,
    pub posture: Posture,
    /// For `deny`, how the default is enforced on this kernel.
    pub enforcement: Option<Enforcement>,
    pub downgrade: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanSelector {
    pub host: bool,
    pub cgroups: Vec<PathPattern>,
    pub namespaces: Vec<String>,
    pub labels: Vec<(String, String)>,
    pub exclude_cgroups: Vec<PathPattern>,
    pub exclude_namespaces: Vec<String>,
    pub exclude_labels: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanPolicy {
    pub id: u32,
    pub name: String,
    pub mode: Mode,
    pub defaults: Vec<ClassDefault>,
    /// Resolved to cgroup ids by the daemon (cgroup id -> policy ids map).
    pub select: PlanSelector,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanRule {
    pub id: u32,
    pub policy: u32,
    pub name: String,
    pub class: Option<Class>,
    pub action: Action,
    pub enforcement: Enforcement,
    /// Why the enforcement is weaker than the action asks (accepted by `allow_downgrade`).
    pub downgrade: Option<String>,
    pub message: String,
    pub severity: Severity,
    pub tags: Vec<String>,
    /// Operation bit set (file, network or kernel ops), 0 when not used.
    pub ops: u32,
    pub families: u32,
    pub protocols: u32,
    pub ports: Vec<PortRange>,
    pub uids: Vec<u32>,
    /// Binary-set ids (see `Maps::binary_sets`).
    pub from_set: Option<u32>,
    pub except_set: Option<u32>,
    pub parent_set: Option<u32>,
    pub ancestor_set: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LpmEntry {
    pub cidr: Cidr,
    /// Rules of this prefix and of every shorter prefix covering it, so one
    /// longest-prefix lookup returns all candidates.
    pub rules: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyedRules<K> {
    pub key: K,
    pub rules: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BinarySet {
    pub id: u32,
    pub patterns: Vec<String>,
}

/// Typed map entries, per hook family.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Maps {
    /// File hooks: path -> rule ids.
    pub file_paths: PathMatcher,
    /// `bprm_check_security`: executable path -> rule ids.
    pub exec_paths: PathMatcher,
    /// At exec: executable path -> binary-set ids (kept in task storage, inherited for
    /// ancestors).
    pub binaries: PathMatcher,
    pub binary_sets: Vec<BinarySet>,
    /// At cgroup creation: cgroup path -> selector tags, `policy id * 2` for a policy's
    /// `cgroups` pattern and `policy id * 2 + 1` for its `exclude: cgroups`. Only patterns the
    /// kernel can evaluate are here (`W0604` names the others).
    #[serde(default)]
    pub cgroups: PathMatcher,
    /// At cgroup creation too: selector patterns of whole names ending in one name with a
    /// `*` inside (`/system.slice/docker-*.scope`), with the same tags.
    #[serde(default)]
    pub cgroup_globs: Vec<CgroupGlob>,
    pub net_v4: Vec<LpmEntry>,
    pub net_v6: Vec<LpmEntry>,
    pub kernel_ops: Vec<KeyedRules<KernelOp>>,
    pub capabilities: Vec<KeyedRules<u32>>,
    pub syscalls: Vec<KeyedRules<u32>>,
}

/// A cgroup selector pattern `PARENT/PREFIX*SUFFIX` (see `PathPattern::name_glob`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupGlob {
    /// The parent cgroup's path, `""` for the root.
    pub parent: String,
    pub prefix: String,
    pub suffix: String,
    /// `policy id * 2`, `+ 1` for an exclusion.
    pub tag: u32,
}

/// Longest parent path, prefix or suffix of a [`CgroupGlob`] the kernel takes (NAME_MAX).
pub const CGROUP_GLOB_PART_MAX: usize = 255;

impl CgroupGlob {
    /// The kernel form of `pattern`, if it has one that fits.
    pub fn of(pattern: &PathPattern, tag: u32) -> Option<CgroupGlob> {
        let (parent, prefix, suffix) = pattern.name_glob()?;
        let fits = |s: &str| s.len() <= CGROUP_GLOB_PART_MAX;
        (fits(&parent) && fits(prefix) && fits(suffix)).then(|| CgroupGlob {
            parent,
            prefix: prefix.to_owned(),
            suffix: suffix.to_owned(),
            tag,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserspaceRule {
    pub rule: u32,
    pub condition: Expr,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hook {
    /// Program section, e.g. `lsm/file_open`, `tp/raw_syscalls/sys_enter`.
    pub program: String,
    pub why: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MapSize {
    pub map: String,
    pub kind: String,
    pub entries: u64,
    pub key_size: u32,
    pub value_size: u32,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub version: u32,
    pub kernel: KernelFeatures,
    /// The per-component hash the kernel computes (see `matcher::segment_hash`).
    pub segment_hash: String,
    pub policies: Vec<PlanPolicy>,
    pub rules: Vec<PlanRule>,
    pub hooks: Vec<Hook>,
    pub maps: Maps,
    pub userspace: Vec<UserspaceRule>,
    pub sizes: Vec<MapSize>,
    pub memory_bytes: u64,
}

/// Everything `compile` needs to decide how an action is enforced.
fn decide(
    k: &KernelFeatures,
    class: Class,
    action: Action,
    m: Option<&Match>,
) -> (Enforcement, Option<String>) {
    use Enforcement as E;
    let no_lsm = || Some("the kernel has no BPF LSM".to_owned());
    if action == Action::Audit {
        return (E::KernelAudit, None);
    }
    if let Some(Match::Kernel(km)) = m {
        if !km.syscalls.is_empty() {
            let lsm_part = !km.ops.is_empty() || !km.capabilities.is_empty();
            if action != Action::Kill {
                return (E::KernelAudit, None);
            }
            if !k.bpf_send_signal {
                return (
                    E::KernelAudit,
                    Some("the kernel has no bpf_send_signal".into()),
                );
            }
            if lsm_part && !k.bpf_lsm {
                return (E::KernelAudit, no_lsm());
            }
            return (E::TracepointKill, None);
        }
        if km.ops.contains(&KernelOp::UsernsCreate) && k.bpf_lsm && !k.lsm_userns_create {
            if action == Action::Allow {
                return (E::Allow, None);
            }
            return (
                E::KernelAudit,
                Some("the kernel has no `userns_create` LSM hook".into()),
            );
        }
    }
    if action == Action::Allow {
        return (E::Allow, None);
    }
    if k.bpf_lsm {
        return match action {
            Action::Kill if !k.bpf_send_signal => (
                E::LsmDeny,
                Some("the kernel has no bpf_send_signal: denied without killing".into()),
            ),
            Action::Kill => (E::LsmDenyAndKill, None),
            _ => (E::LsmDeny, None),
        };
    }
    match class {
        Class::Network => {
            let listen = match m {
                Some(Match::Network(n)) => n.ops & NetOp::Listen.bit() != 0,
                _ => true,
            };
            if !k.cgroup_sock_addr {
                (
                    E::KernelAudit,
                    Some("the kernel has neither BPF LSM nor cgroup socket hooks".into()),
                )
            } else if listen {
                (
                    E::KernelAudit,
                    Some("without BPF LSM, `listen` cannot be denied".into()),
                )
            } else if action == Action::Kill {
                (
                    E::CgroupSockDeny,
                    Some("cgroup socket hooks cannot kill: denied only".into()),
                )
            } else {
                (E::CgroupSockDeny, None)
            }
        }
        Class::Exec if k.bpf_send_signal && k.tp_btf => (
            E::KillAtExec,
            (action == Action::Deny).then(|| {
                "without BPF LSM, exec cannot be refused: the exec succeeds and the process is \
                 killed before it runs its first instruction"
                    .to_owned()
            }),
        ),
        _ => (E::KernelAudit, no_lsm()),
    }
}

/// Why the target kernel can neither enforce nor record an operation of `class` (matching
/// `m`; `None`: a default, every operation of the class), if so: then the rule is
/// `Unenforced`, a downgrade the user must accept. Without BPF LSM the kernel side records
/// through kprobes on the `security_*` functions, so a kernel without kprobes either has
/// another mechanism for the class or none at all; nothing is claimed that the kernel
/// cannot do.
fn unrecordable(k: &KernelFeatures, class: Class, m: Option<&Match>) -> Option<String> {
    if let Some(Match::Kernel(km)) = m {
        if km.ops.is_empty() && km.capabilities.is_empty() {
            // System calls only: the raw_syscalls tracepoint needs neither.
            return None;
        }
    }
    let userns = match m {
        Some(Match::Kernel(km)) => km.ops.contains(&KernelOp::UsernsCreate),
        None => class == Class::Kernel,
        _ => false,
    };
    if userns && !k.lsm_userns_create {
        return Some(
            "the kernel has no `userns_create` LSM hook, so `userns_create` can neither be \
             denied nor recorded"
                .into(),
        );
    }
    if k.bpf_lsm || k.kprobes {
        return None;
    }
    match class {
        // The sched_process_exec tracepoint sees every exec (the fallback program also
        // sends SIGKILL, so the enforcer loads it only with bpf_send_signal).
        Class::Exec if k.tp_btf && k.bpf_send_signal => None,
        Class::Exec => Some(
            "the kernel has no BPF LSM, and no tp_btf programs or bpf_send_signal for the exec \
             fallback"
                .into(),
        ),
        Class::Network => {
            let listen = match m {
                Some(Match::Network(n)) => n.ops & NetOp::Listen.bit() != 0,
                _ => true,
            };
            if k.cgroup_sock_addr && !listen {
                None
            } else {
                Some(
                    "the kernel has no BPF LSM, no kprobes and no cgroup socket hook for it".into(),
                )
            }
        }
        Class::File | Class::Kernel => {
            Some("the kernel has neither BPF LSM nor kprobes to record it".into())
        }
    }
}

/// Interns binary-pattern lists as set ids.
#[derive(Default)]
struct BinarySets {
    ids: HashMap<Vec<String>, u32>,
    sets: Vec<(u32, Vec<PathPattern>)>,
}

impl BinarySets {
    fn id(&mut self, ps: &Patterns) -> Option<u32> {
        if ps.is_empty() {
            return None;
        }
        let mut key: Vec<String> = ps.iter().map(|p| p.value.text.clone()).collect();
        key.sort();
        key.dedup();
        if let Some(id) = self.ids.get(&key) {
            return Some(*id);
        }
        let id = u32::try_from(self.sets.len()).unwrap_or(u32::MAX);
        self.ids.insert(key, id);
        self.sets
            .push((id, ps.iter().map(|p| p.value.clone()).collect()));
        Some(id)
    }
}

fn rule_hooks(
    m: &Match,
    hooks: &mut BTreeMap<String, BTreeSet<String>>,
    k: &KernelFeatures,
    why: &str,
) {
    let prefix = if k.bpf_lsm {
        "lsm/"
    } else {
        "kprobe/security_"
    };
    // Without BPF LSM and kprobes there is no such hook to name.
    let hookable = k.bpf_lsm || k.kprobes;
    let mut add = |h: &str| {
        if !hookable {
            return;
        }
        hooks
            .entry(format!("{prefix}{h}"))
            .or_default()
            .insert(why.to_owned());
    };
    match m {
        Match::Exec(_) => add("bprm_check_security"),
        Match::File(f) => {
            for op in FileOp::ALL.iter().filter(|o| f.ops & o.bit() != 0) {
                for h in file_hooks(*op) {
                    add(h);
                }
            }
        }
        Match::Network(n) => {
            for op in NetOp::ALL.iter().filter(|o| n.ops & o.bit() != 0) {
                add(net_hook(*op));
            }
        }
        Match::Kernel(km) => {
            for op in &km.ops {
                for h in kernel_hooks(*op) {
                    add(h);
                }
            }
            if !km.capabilities.is_empty() {
                add("capable");
            }
        }
        Match::Condition(_) => {}
    }
    if !k.bpf_lsm && k.tp_btf && k.bpf_send_signal && matches!(m, Match::Exec(_)) {
        // The exec fallback: SIGKILL at exec, or a record (crate::plan::Enforcement::KillAtExec).
        hooks
            .entry("tp_btf/sched_process_exec".into())
            .or_default()
            .insert(why.to_owned());
    }
    if !k.bpf_lsm {
        if let Match::Network(n) = m {
            if k.cgroup_sock_addr {
                for (op, progs) in [
                    (NetOp::Connect, ["cgroup/connect4", "cgroup/connect6"]),
                    (NetOp::Bind, ["cgroup/bind4", "cgroup/bind6"]),
                    (NetOp::Send, ["cgroup/sendmsg4", "cgroup/sendmsg6"]),
                ] {
                    if n.ops & op.bit() != 0 {
                        for p in progs {
                            hooks.entry(p.into()).or_default().insert(why.to_owned());
                        }
                    }
                }
            }
        }
    }
    if let Match::Kernel(km) = m {
        if !km.syscalls.is_empty() {
            hooks
                .entry("tp/raw_syscalls/sys_enter".into())
                .or_default()
                .insert(why.to_owned());
        }
    }
}

pub fn file_hooks(op: FileOp) -> &'static [&'static str] {
    match op {
        FileOp::Read | FileOp::Write | FileOp::Append => &["file_open"],
        // path_mknod also sees open(O_CREAT) of a new file; a symlink is create and link.
        FileOp::Create => &["path_mknod", "path_mkdir", "path_symlink"],
        FileOp::Delete => &["path_unlink", "path_rmdir"],
        FileOp::Rename => &["path_rename"],
        FileOp::Link => &["path_link", "path_symlink"],
        FileOp::SymlinkTo => &["path_symlink"],
        FileOp::Chmod | FileOp::ChmodSetuid | FileOp::ChmodSetgid => &["path_chmod"],
        FileOp::Chown => &["path_chown"],
        // file_truncate (Linux 6.2+, attached where the kernel has it) sees ftruncate and
        // open(O_TRUNC); before 6.2 path_truncate does.
        FileOp::Truncate => &["path_truncate", "file_truncate"],
        FileOp::Exec => &["bprm_check_security"],
        // mprotect adding PROT_EXEC to a file mapping goes through file_mprotect.
        FileOp::MmapExec => &["mmap_file", "file_mprotect"],
    }
}

pub fn net_hook(op: NetOp) -> &'static str {
    match op {
        NetOp::Connect => "socket_connect",
        NetOp::Bind => "socket_bind",
        NetOp::Listen => "socket_listen",
        NetOp::Send => "socket_sendmsg",
    }
}

pub fn kernel_hooks(op: KernelOp) -> &'static [&'static str] {
    match op {
        KernelOp::Mount => &["sb_mount"],
        KernelOp::Umount => &["sb_umount"],
        KernelOp::Ptrace => &["ptrace_access_check"],
        KernelOp::Bpf => &["bpf"],
        KernelOp::ModuleLoad | KernelOp::Kexec => &["kernel_read_file", "kernel_load_data"],
        KernelOp::SetuidRoot => &["task_fix_setuid"],
        KernelOp::SetgidRoot => &["task_fix_setgid"],
        KernelOp::UsernsCreate => &["userns_create"],
        KernelOp::RawSocket | KernelOp::PacketSocket => &["socket_create"],
        KernelOp::PerfEventOpen => &["perf_event_open"],
        KernelOp::Keyctl => &["key_alloc"],
    }
}

/// Hooks a default `deny` for `class` needs (every operation of the class).
fn default_hooks(class: Class) -> Match {
    match class {
        Class::Exec => Match::Exec(ExecMatch::default()),
        Class::File => Match::File(FileMatch {
            paths: Vec::new(),
            ops: mask_of(FileOp::ALL, FileOp::bit),
            binaries: BinaryFilter::default(),
        }),
        Class::Network => Match::Network(NetworkMatch {
            ops: mask_of(NetOp::ALL, NetOp::bit),
            families: 0,
            protocols: 0,
            cidrs: Vec::new(),
            ports: Vec::new(),
            binaries: BinaryFilter::default(),
        }),
        Class::Kernel => Match::Kernel(KernelMatch {
            ops: KernelOp::ALL.to_vec(),
            ..KernelMatch::default()
        }),
    }
}

fn any_path(field: Field, ps: &Patterns) -> Expr {
    Expr::Cmp {
        field,
        op: CmpOp::Glob,
        value: Value::Paths(ps.iter().map(|p| p.value.clone()).collect()),
    }
}

fn names_in(field: Field, names: Vec<String>) -> Expr {
    Expr::Cmp {
        field,
        op: CmpOp::In,
        value: Value::Strs(names),
    }
}

fn binaries_expr(b: &BinaryFilter, out: &mut Vec<Expr>) {
    if !b.from.is_empty() {
        out.push(any_path(Field::ProcExe, &b.from));
    }
    if !b.except_from.is_empty() {
        out.push(Expr::Not(Box::new(any_path(
            Field::ProcExe,
            &b.except_from,
        ))));
    }
}

fn mask_names(mask: u32, all: &[&str]) -> Vec<String> {
    all.iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, n)| (*n).to_owned())
        .collect()
}

/// The user-space equivalent of a kernel match, for rules downgraded to user space.
fn match_expr(m: &Match) -> Expr {
    let mut all = Vec::new();
    match m {
        Match::Exec(e) => {
            all.push(any_path(Field::ExecPath, &e.paths));
            if !e.parent.is_empty() {
                all.push(any_path(Field::ProcParent, &e.parent));
            }
            if !e.ancestor.is_empty() {
                all.push(any_path(Field::ProcAncestors, &e.ancestor));
            }
            if !e.uids.is_empty() {
                all.push(Expr::Cmp {
                    field: Field::ProcUid,
                    op: CmpOp::In,
                    value: Value::Nums(e.uids.iter().map(|u| u64::from(*u)).collect()),
                });
            }
        }
        Match::File(f) => {
            all.push(any_path(Field::FilePath, &f.paths));
            all.push(names_in(Field::FileOp, mask_names(f.ops, FileOp::NAMES)));
            binaries_expr(&f.binaries, &mut all);
        }
        Match::Network(n) => {
            all.push(names_in(Field::NetOp, mask_names(n.ops, NetOp::NAMES)));
            all.push(names_in(
                Field::NetProtocol,
                mask_names(n.protocols, Protocol::NAMES),
            ));
            let fams: Vec<Cidr> = [("0.0.0.0/0", Family::Ipv4), ("::/0", Family::Ipv6)]
                .iter()
                .filter(|(_, f)| n.families & f.bit() != 0)
                .filter_map(|(c, _)| Cidr::parse(c).ok())
                .collect();
            all.push(Expr::Cmp {
                field: Field::NetAddr,
                op: CmpOp::In,
                value: Value::Cidrs(fams),
            });
            if !n.cidrs.is_empty() {
                all.push(Expr::Cmp {
                    field: Field::NetAddr,
                    op: CmpOp::In,
                    value: Value::Cidrs(n.cidrs.iter().map(|c| c.value).collect()),
                });
            }
            if !n.ports.is_empty() {
                all.push(Expr::Cmp {
                    field: Field::NetPort,
                    op: CmpOp::In,
                    value: Value::Ranges(n.ports.clone()),
                });
            }
            binaries_expr(&n.binaries, &mut all);
        }
        Match::Kernel(k) => {
            let mut names: Vec<String> = k.ops.iter().map(|o| o.name().to_owned()).collect();
            names.extend(
                k.capabilities
                    .iter()
                    .filter_map(|c| crate::capabilities::name(*c))
                    .map(str::to_owned),
            );
            names.extend(
                k.syscalls
                    .iter()
                    .filter_map(|s| crate::syscalls::name(*s))
                    .map(str::to_owned),
            );
            all.push(names_in(Field::KernelOp, names));
            binaries_expr(&k.binaries, &mut all);
        }
        Match::Condition(e) => return e.clone(),
    }
    Expr::And(all)
}

fn needs_userspace(m: &Match) -> bool {
    matches!(m, Match::Condition(_))
        || m.path_patterns()
            .iter()
            .any(|p| !p.value.kernel_evaluable())
}

/// Builds LPM entries where each entry also carries the rules of covering prefixes.
fn lpm(entries: BTreeMap<Cidr, BTreeSet<u32>>) -> Vec<LpmEntry> {
    let mut out = Vec::with_capacity(entries.len());
    for (cidr, rules) in &entries {
        let mut all = rules.clone();
        for len in 0..cidr.prefix {
            let bits = cidr.key_bits();
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len))
            };
            let addr = match cidr.addr {
                IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::from(
                    u32::try_from((bits & mask) >> 96).unwrap_or(0),
                )),
                IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::from(bits & mask)),
            };
            if let Some(r) = entries.get(&Cidr { addr, prefix: len }) {
                all.extend(r);
            }
        }
        out.push(LpmEntry {
            cidr: *cidr,
            rules: all.into_iter().collect(),
        });
    }
    out
}

/// Compiles a checked policy set for a kernel. Fails (with every reason) when a rule would
/// be enforced more weakly than written and the user did not allow the downgrade.
pub fn compile(set: &PolicySet, k: &KernelFeatures) -> Result<Plan, Diagnostics> {
    let mut diags = Diagnostics::default();
    let mut hooks: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (h, why) in [
        ("tp/sched/sched_process_exec", "process tracking"),
        ("tp/sched/sched_process_fork", "process tracking"),
        ("tp/sched/sched_process_exit", "process tracking"),
        (
            "tp/cgroup/cgroup_mkdir",
            "new cgroups inherit their parent's policies and get those whose selectors match them",
        ),
    ] {
        hooks.entry(h.into()).or_default().insert(why.into());
    }
    let mut policies = Vec::new();
    let mut rules = Vec::new();
    let mut userspace = Vec::new();
    let mut bins = BinarySets::default();
    let mut file_pats: Vec<(&PathPattern, u32)> = Vec::new();
    let mut exec_pats: Vec<(&PathPattern, u32)> = Vec::new();
    let mut v4: BTreeMap<Cidr, BTreeSet<u32>> = BTreeMap::new();
    let mut v6: BTreeMap<Cidr, BTreeSet<u32>> = BTreeMap::new();
    let mut kops: BTreeMap<KernelOp, Vec<u32>> = BTreeMap::new();
    let mut caps: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    let mut sys: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    let any4 = Cidr::parse("0.0.0.0/0").ok();
    let any6 = Cidr::parse("::/0").ok();
    for (pi, p) in set.policies.iter().enumerate() {
        let pid = u32::try_from(pi).unwrap_or(u32::MAX);
        let mut defaults = Vec::new();
        for class in Class::ALL {
            let posture = p.defaults.get(*class);
            let (enforcement, downgrade) = match (posture, p.mode) {
                (Posture::Allow, _) => (None, None),
                (Posture::Deny, Mode::Audit) => (Some(Enforcement::KernelAudit), None),
                (Posture::Deny, Mode::Enforce) => {
                    let (e, d) = decide(k, *class, Action::Deny, None);
                    (Some(e), d)
                }
            };
            let (enforcement, downgrade) = match unrecordable(k, *class, None) {
                Some(why) if posture == Posture::Deny => (Some(Enforcement::Unenforced), Some(why)),
                _ => (enforcement, downgrade),
            };
            if let Some(reason) = &downgrade {
                if !p.allow_downgrade {
                    diags.push(
                        Diagnostic::error(
                            "E0802",
                            p.span,
                            format!(
                                "the `{}` default `deny` of policy `{}` cannot be enforced on this kernel: {reason}",
                                class.name(),
                                p.name
                            ),
                        )
                        .with_help("set `allow_downgrade: true` on the policy to accept weaker enforcement"),
                    );
                }
            }
            // An unenforced default needs no hook: nothing would run it.
            if posture == Posture::Deny && enforcement != Some(Enforcement::Unenforced) {
                rule_hooks(
                    &default_hooks(*class),
                    &mut hooks,
                    k,
                    &format!("policy `{}` default deny", p.name),
                );
            }
            defaults.push(ClassDefault {
                class: *class,
                posture,
                enforcement,
                downgrade,
            });
        }
        policies.push(PlanPolicy {
            id: pid,
            name: p.name.clone(),
            mode: p.mode,
            defaults,
            select: PlanSelector {
                host: p.select.host,
                cgroups: p.select.cgroups.clone(),
                namespaces: p.select.namespaces.clone(),
                labels: p.select.labels.clone(),
                exclude_cgroups: p.select.exclude.cgroups.clone(),
                exclude_namespaces: p.select.exclude.namespaces.clone(),
                exclude_labels: p.select.exclude.labels.clone(),
            },
        });
        for r in &p.rules {
            let id = u32::try_from(rules.len()).unwrap_or(u32::MAX);
            let class = r.matcher.class();
            let userspace_only = needs_userspace(&r.matcher);
            let (enforcement, downgrade) = match (class, r.action) {
                (None, _) => (Enforcement::UserspaceAlert, None),
                (Some(_), Action::Allow) if userspace_only => (Enforcement::Allow, None),
                (Some(_), _) if userspace_only => (
                    Enforcement::UserspaceAudit,
                    Some(
                        "a pattern the kernel cannot evaluate is matched in user space".to_owned(),
                    ),
                ),
                (Some(_), a) if p.mode == Mode::Audit && a != Action::Allow => {
                    (Enforcement::KernelAudit, None)
                }
                (Some(c), a) => decide(k, c, a, Some(&r.matcher)),
            };
            let unrec = match (class, userspace_only, r.action) {
                (Some(c), false, a) if !matches!(a, Action::Allow | Action::Alert) => {
                    unrecordable(k, c, Some(&r.matcher))
                }
                _ => None,
            };
            let (enforcement, downgrade) = match unrec {
                Some(why) => (Enforcement::Unenforced, Some(why)),
                None => (enforcement, downgrade),
            };
            if downgrade.is_some() && !r.allow_downgrade {
                diags.push(
                    Diagnostic::error(
                        "E0801",
                        r.span,
                        format!(
                            "rule `{}` (`{}`) cannot be enforced on this kernel: {}",
                            r.name,
                            r.action.name(),
                            downgrade.as_deref().unwrap_or("")
                        ),
                    )
                    .with_help("set `allow_downgrade: true` on the rule or policy to accept weaker enforcement"),
                );
            }
            let mut pr = PlanRule {
                id,
                policy: pid,
                name: r.name.clone(),
                class,
                action: r.action,
                enforcement,
                downgrade: downgrade.clone(),
                message: r.message.clone(),
                severity: r.severity,
                tags: r.tags.clone(),
                ops: 0,
                families: 0,
                protocols: 0,
                ports: Vec::new(),
                uids: Vec::new(),
                from_set: None,
                except_set: None,
                parent_set: None,
                ancestor_set: None,
            };
            if userspace_only {
                if r.action != Action::Allow {
                    userspace.push(UserspaceRule {
                        rule: id,
                        condition: match_expr(&r.matcher),
                    });
                }
                if let Match::Condition(_) = r.matcher {
                    // Alerts need no hook beyond the event stream.
                } else {
                    rule_hooks(
                        &r.matcher,
                        &mut hooks,
                        k,
                        &format!("rule `{}/{}`", p.name, r.name),
                    );
                }
                rules.push(pr);
                continue;
            }
            if enforcement != Enforcement::Unenforced {
                rule_hooks(
                    &r.matcher,
                    &mut hooks,
                    k,
                    &format!("rule `{}/{}`", p.name, r.name),
                );
            }
            match &r.matcher {
                Match::Exec(e) => {
                    exec_pats.extend(e.paths.iter().map(|x| (&x.value, id)));
                    pr.parent_set = bins.id(&e.parent);
                    pr.ancestor_set = bins.id(&e.ancestor);
                    pr.uids = e.uids.clone();
                }
                Match::File(f) => {
                    file_pats.extend(f.paths.iter().map(|x| (&x.value, id)));
                    pr.ops = f.ops;
                    pr.from_set = bins.id(&f.binaries.from);
                    pr.except_set = bins.id(&f.binaries.except_from);
                }
                Match::Network(n) => {
                    pr.ops = n.ops;
                    pr.families = n.families;
                    pr.protocols = n.protocols;
                    pr.ports = n.ports.clone();
                    pr.from_set = bins.id(&n.binaries.from);
                    pr.except_set = bins.id(&n.binaries.except_from);
                    if n.cidrs.is_empty() {
                        if let (Some(a4), true) = (any4, n.families & Family::Ipv4.bit() != 0) {
                            v4.entry(a4).or_default().insert(id);
                        }
                        if let (Some(a6), true) = (any6, n.families & Family::Ipv6.bit() != 0) {
                            v6.entry(a6).or_default().insert(id);
                        }
                    }
                    for c in &n.cidrs {
                        let map = if c.value.is_ipv4() { &mut v4 } else { &mut v6 };
                        map.entry(c.value).or_default().insert(id);
                    }
                }
                Match::Kernel(km) => {
                    pr.ops = mask_of(&km.ops, KernelOp::bit);
                    pr.from_set = bins.id(&km.binaries.from);
                    pr.except_set = bins.id(&km.binaries.except_from);
                    for op in &km.ops {
                        kops.entry(*op).or_default().push(id);
                    }
                    for c in &km.capabilities {
                        caps.entry(*c).or_default().push(id);
                    }
                    for s in &km.syscalls {
                        sys.entry(*s).or_default().push(id);
                    }
                }
                Match::Condition(_) => {}
            }
            rules.push(pr);
        }
    }
    let mut build = |pats: &[(&PathPattern, u32)], what: &str| match matcher::build(pats) {
        Ok(m) => m,
        Err(e) => {
            diags.push(Diagnostic::global(
                "E0803",
                format!("cannot build the {what} matcher: {e}"),
            ));
            PathMatcher::default()
        }
    };
    let file_paths = build(&file_pats, "file path");
    let exec_paths = build(&exec_pats, "exec path");
    let bin_pairs: Vec<(&PathPattern, u32)> = bins
        .sets
        .iter()
        .flat_map(|(id, ps)| ps.iter().map(move |p| (p, *id)))
        .collect();
    let binaries = build(&bin_pairs, "binary");
    let all_cgroup_pairs: Vec<(&PathPattern, u32)> = policies
        .iter()
        .flat_map(|p: &PlanPolicy| {
            let tag = p.id.saturating_mul(2);
            let include = p.select.cgroups.iter().map(move |c| (c, tag));
            let exclude = p.select.exclude_cgroups.iter().map(move |c| (c, tag + 1));
            include.chain(exclude)
        })
        .collect();
    let (cgroup_pairs, others): (Vec<_>, Vec<_>) = all_cgroup_pairs
        .into_iter()
        .partition(|(c, _)| c.kernel_evaluable());
    let cgroups = build(&cgroup_pairs, "cgroup selector");
    let cgroup_globs: Vec<CgroupGlob> = others
        .into_iter()
        .filter_map(|(c, tag)| CgroupGlob::of(c, tag))
        .collect();
    if diags.has_errors() {
        diags.sort();
        return Err(diags);
    }
    let maps = Maps {
        file_paths,
        exec_paths,
        binaries,
        cgroups,
        cgroup_globs,
        binary_sets: bins
            .sets
            .iter()
            .map(|(id, ps)| BinarySet {
                id: *id,
                patterns: ps.iter().map(|p| p.text.clone()).collect(),
            })
            .collect(),
        net_v4: lpm(v4),
        net_v6: lpm(v6),
        kernel_ops: kops
            .into_iter()
            .map(|(key, rules)| KeyedRules { key, rules })
            .collect(),
        capabilities: caps
            .into_iter()
            .map(|(key, rules)| KeyedRules { key, rules })
            .collect(),
        syscalls: sys
            .into_iter()
            .map(|(key, rules)| KeyedRules { key, rules })
            .collect(),
    };
    let sizes = crate::plan_size::sizes(&maps, rules.len(), policies.len());
    let memory_bytes = sizes.iter().map(|s| s.bytes).sum();
    Ok(Plan {
        version: PLAN_VERSION,
        kernel: *k,
        segment_hash: "fnv1a64".into(),
        policies,
        rules,
        hooks: hooks
            .into_iter()
            .map(|(program, why)| Hook {
                program,
                why: why.into_iter().collect(),
            })
            .collect(),
        maps,
        userspace,
        sizes,
        memory_bytes,
    })
}
