//! bpf-lsm's typed input: what the kernel programs need of a compiled policy
//! set, and its translation into map entries ([`compile`]).
//!
//! The path matchers are policy-lang's automata (matcher.rs) as entries:
//! state 1 is the start, 0 is dead; per component the kernel follows the
//! literal edge `(state, hash)` whose bytes equal the component, else the
//! state's wildcard edge; on the last component it also looks up every
//! suffix that starts at a `.` from the state before it. The last state's
//! accept list plus the suffix lists are the matching rules.
//!
//! # Map layouts
//! - `enf_cgroup_policies` (hash): cgroup2 id -> u64 set of policy slots.
//!   Sized `cgroups + cgroup_headroom`: cgroups created after load inherit
//!   their parent's entry in the kernel and take the headroom.
//! - `enf_policies` (array of 64): slot -> id, default action per class and
//!   the ops that fail closed when a path cannot be resolved.
//! - `enf_edges` (hash): (matcher, state, hash) -> (to, len, name[256]).
//! - `enf_states` (hash): (matcher, state) -> (wildcard, accept list, longest
//!   suffix); only states with one of these have an entry.
//! - `enf_suffixes` (hash): (matcher, state, hash) -> (list, len, name[256]).
//! - `enf_rule_list` (array): every accept list concatenated; a list is an
//!   (offset, length) pair, each entry a whole rule (id, slot, action, ops).
//!   Lists have no length cap but bpf_loop's 2^23 iterations.
//!
//! - `enf_net_v4`, `enf_net_v6` (LPM tries, key: prefix length + address in
//!   network byte order) -> (offset, length) into `enf_net_rules`: the rules of
//!   the prefix and of every shorter prefix covering it (policy-lang's
//!   `LpmEntry::rules`), so one longest-prefix lookup yields every candidate.
//!   An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is looked up in the v4 trie.
//! - `enf_net_rules` (array): every prefix's list concatenated, each entry a
//!   whole rule (id, slot, action, ops, families, protocols, ports offset and
//!   length).
//! - `enf_net_ports` (array): each network rule's inclusive port ranges, once
//!   per rule; a rule with none matches any port.
//!
//! # Caps
//! At most [`MAX_POLICIES`] (64) policies per plan: a cgroup's policies are a
//! u64 bit set. More is an error ([`PlanError::TooManyPolicies`]), never a
//! silent truncation. Rule lists and a rule's port ranges are walked with
//! bpf_loop, so each is at most [`MAX_LIST_LEN`] long (an error beyond).

use crate::abi;
use crate::path_hash::path_hash;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Policies per plan: a cgroup's policies are one u64 set of slots.
pub const MAX_POLICIES: usize = abi::MAX_POLICIES;

/// Longest accept list the kernel walks (bpf_loop's iteration limit).
pub const MAX_LIST_LEN: usize = 1 << 23;

/// Room for cgroups created after load when [`KernelPlan::cgroup_headroom`]
/// is `None`. A cgroup that cannot inherit because the map is full is not covered, so the default is
/// generous: 65,536 live cgroups created after load (entries are removed at rmdir) cost about
/// 5 MiB of preallocated map.
pub const DEFAULT_CGROUP_HEADROOM: u32 = 65_536;

/// File operation bits of [`KernelRule::ops`]: bit i is the i-th operation
/// of policy-lang's `FileOp` list, so its masks pass through unchanged.
pub mod ops {
    pub const READ: u32 = crate::abi::OP_READ;
    pub const WRITE: u32 = crate::abi::OP_WRITE;
    pub const APPEND: u32 = crate::abi::OP_APPEND;
    pub const CREATE: u32 = crate::abi::OP_CREATE;
    pub const DELETE: u32 = crate::abi::OP_DELETE;
    pub const RENAME: u32 = crate::abi::OP_RENAME;
    pub const LINK: u32 = crate::abi::OP_LINK;
    pub const CHMOD: u32 = crate::abi::OP_CHMOD;
    pub const CHOWN: u32 = crate::abi::OP_CHOWN;
    pub const TRUNCATE: u32 = crate::abi::OP_TRUNCATE;
    pub const EXEC: u32 = crate::abi::OP_EXEC;
    pub const MMAP_EXEC: u32 = crate::abi::OP_MMAP_EXEC;
    pub const CHMOD_SETUID: u32 = crate::abi::OP_CHMOD_SETUID;
    pub const CHMOD_SETGID: u32 = crate::abi::OP_CHMOD_SETGID;
    pub const SYMLINK_TO: u32 = crate::abi::OP_SYMLINK_TO;
    /// Every file operation (`FileOp::ALL`: 14 of them).
    pub const ALL: u32 = (1 << 14) - 1;
}

/// Network operation, family and protocol bits of [`NetRule`]: bit i is the
/// i-th value of policy-lang's `NetOp`, `Family` and `Protocol` lists.
pub mod net {
    pub const CONNECT: u32 = crate::abi::NET_CONNECT;
    pub const BIND: u32 = crate::abi::NET_BIND;
    pub const LISTEN: u32 = crate::abi::NET_LISTEN;
    pub const SEND: u32 = crate::abi::NET_SEND;
    pub const ALL_OPS: u32 = CONNECT | BIND | LISTEN | SEND;
    pub const IPV4: u32 = crate::abi::FAMILY_IPV4;
    pub const IPV6: u32 = crate::abi::FAMILY_IPV6;
    pub const ALL_FAMILIES: u32 = IPV4 | IPV6;
    pub const TCP: u32 = crate::abi::PROTO_TCP;
    pub const UDP: u32 = crate::abi::PROTO_UDP;
    pub const ALL_PROTOCOLS: u32 = TCP | UDP;
}

/// Enforce (deny) or audit (record what would be denied, allow it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Enforce,
    Audit,
}

/// What a rule (or a default) does, least to most restrictive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Audit,
    Deny,
    /// Deny, and SIGKILL the acting process.
    Kill,
}

impl Action {
    pub(crate) fn abi(self) -> u32 {
        match self {
            Action::Allow => abi::ACTION_ALLOW,
            Action::Audit => abi::ACTION_AUDIT,
            Action::Deny => abi::ACTION_DENY,
            Action::Kill => abi::ACTION_KILL,
        }
    }

    /// In an audit-mode policy nothing is denied: deny and kill are audit.
    pub(crate) fn effective(self, mode: Mode) -> Action {
        match (mode, self) {
            (Mode::Audit, Action::Deny | Action::Kill) => Action::Audit,
            (_, a) => a,
        }
    }
}

/// One policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelPolicy {
    /// Reported back in records.
    pub id: u32,
    pub mode: Mode,
    /// What happens to a file operation no allow rule of this policy
    /// matched: `Allow` (blocklist), `Deny` (allowlist) or `Audit`.
    pub file_default: Action,
    /// The same for exec.
    pub exec_default: Action,
}

/// The policies that apply to the tasks of one cgroup (and, through the
/// kernel's inheritance at mkdir, of the cgroups created under it later).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupPolicies {
    /// cgroup2 id: the inode number of its directory.
    pub cgroup_id: u64,
    /// [`KernelPolicy::id`]s.
    pub policies: Vec<u32>,
}

/// Cgroup selectors the kernel applies when a cgroup is created (`tp_btf/cgroup_mkdir`): a
/// new cgroup starts from its parent's policies, adds those with a `cgroups` pattern that
/// matches its path and takes away those that exclude it or a cgroup above it. So a
/// cgroup that matches a selector is covered from its creation even when its parent is
/// not (a systemd unit started after the load), and an excluded one stays excluded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupSelectors {
    /// cgroup path (from the cgroup2 root, `/a/b`) -> selector tags: `policy id * 2` for
    /// a policy's pattern, `policy id * 2 + 1` for its exclusion.
    pub matcher: PathMatcherEntries,
    /// Cgroups that exist at load and the policies that exclude them (or a cgroup above
    /// them): their children created later inherit the exclusion.
    pub excluded: Vec<CgroupPolicies>,
    /// Patterns `PARENT/PREFIX*SUFFIX`, with the same tags; at most
    /// [`abi::MAX_CGROUP_GLOBS`].
    pub globs: Vec<CgroupGlob>,
}

/// A cgroup selector pattern `PARENT/PREFIX*SUFFIX`: a new cgroup whose parent's path is
/// `parent` (empty for the root) and whose name starts with `prefix` and ends with `suffix`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupGlob {
    pub parent: Vec<u8>,
    pub prefix: Vec<u8>,
    pub suffix: Vec<u8>,
    /// `policy id * 2`, `+ 1` for an exclusion.
    pub tag: u32,
}

/// A literal edge: from `from`, a component equal to `segment` leads to `to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edge {
    pub from: u32,
    /// [`path_hash`] of `segment`, checked by [`compile`].
    pub hash: u64,
    pub segment: Vec<u8>,
    pub to: u32,
}

impl Edge {
    pub fn new(from: u32, segment: &[u8], to: u32) -> Edge {
        Edge {
            from,
            hash: path_hash(segment),
            segment: segment.to_vec(),
            to,
        }
    }
}

/// From `from`, any component without a literal edge leads to `to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wildcard {
    pub from: u32,
    pub to: u32,
}

/// A path ending in `state` matches these rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accept {
    pub state: u32,
    /// [`KernelRule::id`]s.
    pub rules: Vec<u32>,
}

/// A last component ending in `suffix` (with its dot), reached from `state`
/// (the state before the last component), matches these rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SuffixAccept {
    pub state: u32,
    /// [`path_hash`] of `suffix`, checked by [`compile`].
    pub hash: u64,
    pub suffix: Vec<u8>,
    pub rules: Vec<u32>,
}

impl SuffixAccept {
    pub fn new(state: u32, suffix: &[u8], rules: Vec<u32>) -> SuffixAccept {
        SuffixAccept {
            state,
            hash: path_hash(suffix),
            suffix: suffix.to_vec(),
            rules,
        }
    }
}

/// The entries of one path automaton (policy-lang's `PathMatcher`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PathMatcherEntries {
    pub edges: Vec<Edge>,
    pub wildcards: Vec<Wildcard>,
    pub accepts: Vec<Accept>,
    pub suffixes: Vec<SuffixAccept>,
}

impl PathMatcherEntries {
    fn matches_anything(&self) -> bool {
        !self.accepts.is_empty() || !self.suffixes.is_empty()
    }
}

/// One rule. Its class is the matcher that lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelRule {
    /// Reported back in records.
    pub id: u32,
    /// Its [`KernelPolicy::id`].
    pub policy: u32,
    pub action: Action,
    /// [`ops`] bits for file rules: the rule applies to an open that asks
    /// for any of them. Ignored for exec rules.
    pub ops: u32,
}

/// Which kernel programs enforce the network rules.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NetMechanism {
    /// BPF LSM when the kernel loads LSM programs (a real load is tried),
    /// else the cgroup socket programs.
    #[default]
    Auto,
    /// `lsm/socket_connect`, `socket_bind`, `socket_listen`, `socket_sendmsg`.
    Lsm,
    /// `cgroup/connect4|6`, `bind4|6`, `sendmsg4|6` attached to
    /// [`NetworkPlan::attach_cgroups`]: connect, bind and UDP send only
    /// (`listen` is an error), and a kill rule denies without killing.
    CgroupSock,
}

/// Which kernel program decides exec rules.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecMechanism {
    /// `lsm/bprm_check_security`: the exec fails with EPERM.
    #[default]
    Lsm,
    /// `tp_btf/sched_process_exec` (`enf_exec_fallback`), for kernels
    /// without BPF LSM: the exec succeeds, and a deny or kill rule sends
    /// SIGKILL before the new program runs its first instruction.
    KillAtExec,
}

/// One address prefix and the network rules an address in it may match:
/// its own and those of every shorter prefix covering it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetPrefix {
    /// IPv4 or IPv6, host bits zero. IPv4-mapped IPv6 prefixes are given
    /// as IPv4.
    pub addr: std::net::IpAddr,
    pub prefix: u8,
    /// [`NetRule::id`]s.
    pub rules: Vec<u32>,
}

/// One network rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetRule {
    /// Reported back in records; unique across [`KernelPlan::rules`] too.
    pub id: u32,
    pub policy: u32,
    pub action: Action,
    /// [`net`] operation bits.
    pub ops: u32,
    /// [`net`] family bits.
    pub families: u32,
    /// [`net`] protocol bits.
    pub protocols: u32,
    /// Inclusive port ranges; empty: any port.
    pub ports: Vec<(u16, u16)>,
}

/// A policy's network default: what a network operation no allow rule of
/// the policy matched gets (`Allow` when the policy is not listed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetworkDefault {
    pub policy: u32,
    pub action: Action,
}

/// The network part of a plan.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkPlan {
    pub rules: Vec<NetRule>,
    pub v4: Vec<NetPrefix>,
    pub v6: Vec<NetPrefix>,
    pub defaults: Vec<NetworkDefault>,
    pub mechanism: NetMechanism,
    /// For [`NetMechanism::CgroupSock`]: the cgroup2 directories the
    /// programs attach to, relative to the cgroup2 mount (`/` is the mount
    /// itself). A program attached to a cgroup runs for its whole subtree,
    /// so list the topmost selected cgroups; which policies apply is still
    /// decided per task cgroup from [`KernelPlan::cgroups`].
    pub attach_cgroups: Vec<String>,
    /// The cgroup2 mount; `None`: found in /proc/self/mountinfo.
    pub cgroup2_root: Option<std::path::PathBuf>,
}

impl NetworkPlan {
    fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.defaults.iter().all(|d| d.action == Action::Allow)
    }
}

/// Everything the kernel programs need.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelPlan {
    pub policies: Vec<KernelPolicy>,
    pub cgroups: Vec<CgroupPolicies>,
    /// Selectors applied to cgroups created after the load.
    pub cgroup_selectors: CgroupSelectors,
    pub file_matcher: PathMatcherEntries,
    pub exec_matcher: PathMatcherEntries,
    pub rules: Vec<KernelRule>,
    /// Room for cgroups created after load, which inherit in the kernel
    /// ([`DEFAULT_CGROUP_HEADROOM`] when `None`). When it runs out, a new
    /// cgroup is not covered and `KernelStats::inherit_failed` counts it.
    pub cgroup_headroom: Option<u32>,
    /// Network rules, prefixes and defaults.
    pub network: NetworkPlan,
    /// Report exec, fork and exit of processes in the plan's cgroups (the
    /// `tp_btf/sched_process_*` programs): for user space's process table
    /// and its `alert` rules.
    pub process_events: bool,
    /// Kernel operations, capabilities and system calls (kernel_ops.rs).
    pub kernel: crate::kernel_ops::KernelOpsPlan,
    /// `from` / `except_from` of file, exec and kernel rules.
    pub binaries: BinaryFilters,
    /// How exec rules and exec defaults are enforced.
    pub exec_mechanism: ExecMechanism,
    /// Verdict records per second per (cgroup, policy, rule) the kernel sends; over it the
    /// verdicts still apply and the records are counted as suppressed. 0: no limit.
    pub rate_limit: u32,
    /// Self-protection of the enforcer from the tasks under enforcement (guard.rs); applied
    /// when the plan covers any cgroup.
    pub self_guard: Option<crate::guard::SelfGuard>,
    /// Kubernetes namespace selectors (pods.rs): pods created after the load get their
    /// namespace's policies in the kernel.
    pub pods: Option<crate::pods::PodScoping>,
}

/// The binary filters of a plan: which executables are in which binary set,
/// and which sets each filtered rule names. The kernel keeps per task the
/// sets its executable is in (computed at exec, inherited at fork).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BinaryFilters {
    /// Executable paths -> binary-set ids (its accept lists hold set ids,
    /// each below [`abi::MAX_BINARY_SETS`]).
    pub matcher: PathMatcherEntries,
    /// Rule id (a file, exec, network or kernel rule) -> its sets.
    pub rules: BTreeMap<u32, RuleBinaries>,
}

/// A rule's binary sets, as bit masks (bit i: set id i), and the process filters that go
/// with them on exec rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleBinaries {
    /// `from`: the rule applies only to a task in one of these; 0: any.
    pub from: u64,
    /// `except_from`: never to a task in one of these.
    pub except: u64,
    /// Exec `parent`: only when the task's parent process is in one of these; 0: any.
    pub parent: u64,
    /// Exec `ancestor`: only when some ancestor process is in one of these; 0: any.
    pub ancestor: u64,
    /// Exec `uid`: only for these real uids; empty: any.
    pub uids: Vec<u32>,
}

impl RuleBinaries {
    /// Whether the rule needs the tasks' binary sets.
    pub fn uses_sets(&self) -> bool {
        self.from | self.except | self.parent | self.ancestor != 0
    }

    /// Whether the rule has any filter at all.
    pub fn any(&self) -> bool {
        self.uses_sets() || !self.uids.is_empty()
    }
}

impl BinaryFilters {
    /// Whether any rule's filter needs the tasks' binary sets (the binary programs are
    /// attached then).
    pub fn any(&self) -> bool {
        self.rules.values().any(RuleBinaries::uses_sets)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("{0} policies: the kernel takes at most {MAX_POLICIES} per plan")]
    TooManyPolicies(usize),
    #[error("policy id {0} is listed twice")]
    DuplicatePolicy(u32),
    #[error("rule id {0} is listed twice")]
    DuplicateRule(u32),
    #[error("{what} refers to policy {policy}, which is not in the plan")]
    UnknownPolicy { what: String, policy: u32 },
    #[error("{what} refers to rule {rule}, which is not in the plan")]
    UnknownRule { what: String, rule: u32 },
    #[error("cgroup {0} is listed twice")]
    DuplicateCgroup(u64),
    #[error("{matcher} matcher: {detail}")]
    Matcher {
        matcher: &'static str,
        detail: String,
    },
    #[error("network: {0}")]
    Network(String),
    #[error("kernel class: {0}")]
    Kernel(String),
    #[error("namespace selectors: {0}")]
    Pods(String),
}

/// The hooks a plan needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hooks {
    pub file_open: bool,
    pub bprm_check_security: bool,
    /// Network operations ([`net`] bits) some rule or default decides.
    pub net_ops: u32,
    /// The process tracepoints (exec, fork, exit).
    pub process_events: bool,
    /// File operations of the path and mmap programs ([`ops`] bits: create,
    /// delete, rename, link, chmod, chown, truncate, mmap_exec) some file
    /// rule or a file default deny decides (`crate::path_hooks`).
    pub path_ops: u32,
    /// The kernel-class hooks.
    pub kernel: crate::kernel_ops::KernelHooks,
    /// The binary-set programs (`lsm/bprm_committed_creds`,
    /// `tp_btf/sched_process_fork`): some rule has `from`/`except_from`.
    pub binaries: bool,
}

impl Hooks {
    /// Any hook at all (the cgroup inheritance programs go with them).
    pub fn any(&self) -> bool {
        self.file_open
            || self.bprm_check_security
            || self.net_ops != 0
            || self.path_ops != 0
            || self.process_events
            || self.kernel.any()
            || self.binaries
    }
}

/// The map entries of a plan, ready to write.
#[derive(Clone, Debug, Default)]
pub(crate) struct MapEntries {
    pub hooks: Hooks,
    pub cgroups: Vec<(u64, abi::CgroupPolicies)>,
    pub cgroup_capacity: u32,
    /// The cgroup matcher has entries: the kernel walks new cgroups' paths.
    pub cgroup_selectors: bool,
    pub cgroup_globs: Vec<abi::CgroupGlob>,
    pub policies: Vec<(u32, abi::Policy)>,
    pub edges: Vec<(abi::EdgeKey, abi::Edge)>,
    pub states: Vec<(abi::StateKey, abi::State)>,
    pub suffixes: Vec<(abi::EdgeKey, abi::Suffix)>,
    pub rule_list: Vec<abi::Rule>,
    pub net_v4: Vec<(u32, [u8; 4], abi::NetList)>,
    pub net_v6: Vec<(u32, [u8; 16], abi::NetList)>,
    pub net_rules: Vec<abi::NetRule>,
    pub net_ports: Vec<abi::PortRange>,
    pub kernel: crate::kernel_ops::KernelEntries,
    pub pods: Option<crate::pods::PodEntries>,
    /// Exec rules' `uid` lists.
    pub rule_uids: Vec<(abi::RuleUid, u8)>,
}

fn name_bytes(bytes: &[u8]) -> [u8; abi::NAME_BYTES] {
    let mut name = [0u8; abi::NAME_BYTES];
    let n = bytes.len().min(abi::NAME_MAX);
    name[..n].copy_from_slice(&bytes[..n]);
    name
}

fn u32_of(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Validates the plan and lays it out as map entries.
pub(crate) fn compile(plan: &KernelPlan) -> Result<MapEntries, PlanError> {
    if plan.policies.len() > MAX_POLICIES {
        return Err(PlanError::TooManyPolicies(plan.policies.len()));
    }
    let mut slots: HashMap<u32, (u32, Mode)> = HashMap::new();
    for (slot, p) in plan.policies.iter().enumerate() {
        if slots.insert(p.id, (u32_of(slot), p.mode)).is_some() {
            return Err(PlanError::DuplicatePolicy(p.id));
        }
    }
    let mut rules: HashMap<u32, abi::Rule> = HashMap::new();
    for r in &plan.rules {
        let &(slot, mode) = slots
            .get(&r.policy)
            .ok_or_else(|| PlanError::UnknownPolicy {
                what: format!("rule {}", r.id),
                policy: r.policy,
            })?;
        let entry = abi::Rule {
            id: r.id,
            slot,
            action: r.action.effective(mode).abi(),
            ops: r.ops,
            ..abi::Rule::default()
        };
        if rules.insert(r.id, entry).is_some() {
            return Err(PlanError::DuplicateRule(r.id));
        }
    }

    let mut out = MapEntries::default();
    let mut policies: Vec<abi::Policy> = plan
        .policies
        .iter()
        .map(|p| abi::Policy {
            id: p.id,
            dflt: [
                p.file_default.effective(p.mode).abi(),
                p.exec_default.effective(p.mode).abi(),
                abi::ACTION_ALLOW,
                abi::ACTION_ALLOW,
            ],
            ..abi::Policy::default()
        })
        .collect();
    for (class, name, m) in [
        (abi::CLASS_FILE, "file", &plan.file_matcher),
        (abi::CLASS_EXEC, "exec", &plan.exec_matcher),
    ] {
        compile_matcher(class, name, m, &rules, &mut policies, &mut out)?;
    }
    let net_ops = compile_network(&plan.network, &slots, &rules, &mut policies, &mut out)?;
    let taken: HashSet<u32> = rules
        .keys()
        .copied()
        .chain(plan.network.rules.iter().map(|r| r.id))
        .collect();
    let (mut kernel, kernel_hooks) =
        crate::kernel_ops::compile(&plan.kernel, &slots, &taken, &mut policies)?;
    let rule_ids: HashSet<u32> = rules
        .keys()
        .copied()
        .chain(plan.kernel.rules.iter().map(|r| r.id))
        .chain(plan.network.rules.iter().map(|r| r.id))
        .collect();
    compile_binaries(
        &plan.binaries,
        &rule_ids,
        &mut out,
        &mut kernel.rules,
        &mut policies,
    )?;
    out.kernel = kernel;
    out.policies = policies
        .into_iter()
        .enumerate()
        .map(|(slot, p)| (u32_of(slot), p))
        .collect();

    let mut seen = HashSet::new();
    for cg in &plan.cgroups {
        if !seen.insert(cg.cgroup_id) {
            return Err(PlanError::DuplicateCgroup(cg.cgroup_id));
        }
        let mut set = 0u64;
        for pid in &cg.policies {
            let &(slot, _) = slots.get(pid).ok_or_else(|| PlanError::UnknownPolicy {
                what: format!("cgroup {}", cg.cgroup_id),
                policy: *pid,
            })?;
            set |= 1u64 << slot;
        }
        out.cgroups.push((
            cg.cgroup_id,
            abi::CgroupPolicies {
                slots: set,
                excluded: 0,
            },
        ));
    }
    compile_cgroup_selectors(&plan.cgroup_selectors, &slots, &mut out)?;
    out.pods = plan
        .pods
        .as_ref()
        .map(|p| crate::pods::entries(p, &slots))
        .transpose()?;
    let headroom = plan.cgroup_headroom.unwrap_or(DEFAULT_CGROUP_HEADROOM);
    out.cgroup_capacity = u32_of(out.cgroups.len()).saturating_add(headroom).max(1);

    out.hooks = Hooks {
        file_open: plan.file_matcher.matches_anything()
            || plan
                .policies
                .iter()
                .any(|p| p.file_default != Action::Allow),
        bprm_check_security: plan.exec_matcher.matches_anything()
            || plan
                .policies
                .iter()
                .any(|p| p.exec_default != Action::Allow),
        net_ops,
        process_events: plan.process_events,
        path_ops: path_ops(plan, &rules),
        kernel: kernel_hooks,
        binaries: plan.binaries.any(),
    };
    Ok(out)
}

/// Lays out the cgroup matcher (matcher id [`abi::MATCHER_CGROUP`]) and marks the existing
/// cgroups' exclusions on their entries (an excluded cgroup with no policy gets an entry of
/// its own, with no slots: its children inherit the exclusion).
fn compile_cgroup_selectors(
    sel: &CgroupSelectors,
    slots: &HashMap<u32, (u32, Mode)>,
    out: &mut MapEntries,
) -> Result<(), PlanError> {
    let slot_of = |policy: u32, what: String| {
        slots
            .get(&policy)
            .map(|&(slot, _)| slot)
            .ok_or(PlanError::UnknownPolicy { what, policy })
    };
    let mut tags: HashMap<u32, abi::Rule> = HashMap::new();
    let m = &sel.matcher;
    for &tag in m
        .accepts
        .iter()
        .flat_map(|a| a.rules.iter())
        .chain(m.suffixes.iter().flat_map(|s| s.rules.iter()))
    {
        let slot = slot_of(tag / 2, format!("cgroup selector {tag}"))?;
        // Not a rule: ALLOW with no ops adds nothing to a policy's fail-closed ops.
        tags.insert(
            tag,
            abi::Rule {
                id: tag,
                slot,
                action: abi::ACTION_ALLOW,
                ops: if tag % 2 == 1 { abi::SELECT_EXCLUDE } else { 0 },
                ..abi::Rule::default()
            },
        );
    }
    out.cgroup_selectors = !tags.is_empty();
    if sel.globs.len() > abi::MAX_CGROUP_GLOBS {
        return Err(PlanError::Matcher {
            matcher: "cgroups",
            detail: format!(
                "{} cgroup patterns of the form PARENT/PREFIX*SUFFIX; the kernel takes at most {}",
                sel.globs.len(),
                abi::MAX_CGROUP_GLOBS
            ),
        });
    }
    for g in &sel.globs {
        let part = |bytes: &[u8], what: &str| {
            if bytes.len() > abi::NAME_MAX || bytes.contains(&0) {
                Err(PlanError::Matcher {
                    matcher: "cgroups",
                    detail: format!(
                        "the {what} `{}` of a cgroup pattern is over {} bytes or has a NUL",
                        String::from_utf8_lossy(bytes),
                        abi::NAME_MAX
                    ),
                })
            } else {
                Ok((u32_of(bytes.len()), name_bytes(bytes)))
            }
        };
        let (parent_len, parent) = part(&g.parent, "parent")?;
        let (prefix_len, prefix) = part(&g.prefix, "prefix")?;
        let (suffix_len, suffix) = part(&g.suffix, "suffix")?;
        out.cgroup_globs.push(abi::CgroupGlob {
            slot: slot_of(g.tag / 2, format!("cgroup pattern {}", g.tag))?,
            exclude: g.tag % 2,
            parent_len,
            prefix_len,
            suffix_len,
            _pad: 0,
            parent,
            prefix,
            suffix,
        });
    }
    // No policy's fail-closed ops come from selectors: no policies to update.
    compile_matcher(abi::MATCHER_CGROUP, "cgroups", m, &tags, &mut [], out)?;

    let mut index: HashMap<u64, usize> = out
        .cgroups
        .iter()
        .enumerate()
        .map(|(i, (id, _))| (*id, i))
        .collect();
    for cg in &sel.excluded {
        let mut set = 0u64;
        for &p in &cg.policies {
            set |= 1u64 << slot_of(p, format!("excluded cgroup {}", cg.cgroup_id))?;
        }
        match index.get(&cg.cgroup_id) {
            Some(&i) => {
                let entry = &mut out.cgroups[i].1;
                entry.excluded |= set;
                entry.slots &= !set;
            }
            None => {
                index.insert(cg.cgroup_id, out.cgroups.len());
                out.cgroups.push((
                    cg.cgroup_id,
                    abi::CgroupPolicies {
                        slots: 0,
                        excluded: set,
                    },
                ));
            }
        }
    }
    Ok(())
}

/// Lays out the binaries matcher (matcher id [`abi::MATCHER_BINARY`], its
/// list entries carrying a set id in `id`) and puts each filtered rule's
/// masks on every copy of it in the file/exec and kernel rule lists.
fn compile_binaries(
    b: &BinaryFilters,
    rule_ids: &HashSet<u32>,
    out: &mut MapEntries,
    kernel_rules: &mut [abi::Rule],
    policies: &mut [abi::Policy],
) -> Result<(), PlanError> {
    let err = |detail: String| PlanError::Matcher {
        matcher: "binaries",
        detail,
    };
    let mut sets: HashMap<u32, abi::Rule> = HashMap::new();
    let m = &b.matcher;
    for id in m
        .accepts
        .iter()
        .flat_map(|a| a.rules.iter())
        .chain(m.suffixes.iter().flat_map(|s| s.rules.iter()))
    {
        if *id as usize >= abi::MAX_BINARY_SETS {
            return Err(err(format!(
                "binary set {id}: the kernel takes at most {} binary sets per plan",
                abi::MAX_BINARY_SETS
            )));
        }
        // Not a rule: no slot (so no policy's fail-closed ops), no action.
        sets.insert(
            *id,
            abi::Rule {
                id: *id,
                slot: u32::MAX,
                ..abi::Rule::default()
            },
        );
    }
    compile_matcher(abi::MATCHER_BINARY, "binaries", m, &sets, policies, out)?;

    for (id, f) in &b.rules {
        if f.any() && !rule_ids.contains(id) {
            return Err(err(format!(
                "rule {id} has binary filters but is not a file, exec, network or kernel rule \
                 of the plan"
            )));
        }
    }
    for r in out.rule_list.iter_mut().chain(kernel_rules.iter_mut()) {
        // The binaries matcher's own entries have slot u32::MAX.
        if r.slot == u32::MAX {
            continue;
        }
        if let Some(f) = b.rules.get(&r.id) {
            r.from_sets = f.from;
            r.except_sets = f.except;
            r.parent_sets = f.parent;
            r.ancestor_sets = f.ancestor;
            r.uid_filter = u32::from(!f.uids.is_empty());
        }
    }
    for (id, f) in &b.rules {
        for &uid in &f.uids {
            out.rule_uids.push((abi::RuleUid { rule_id: *id, uid }, 1));
        }
    }
    // Network rules: the LSM hooks check them; the loader refuses them for the
    // cgroup socket programs, which cannot read a task's binary sets.
    for r in out.net_rules.iter_mut() {
        if let Some(f) = b.rules.get(&r.id) {
            r.from_sets = f.from;
            r.except_sets = f.except;
        }
    }
    Ok(())
}

/// The path-hook operations a plan decides: those of the file rules the file
/// matcher lists (an allow rule only matters under a default deny, which
/// takes every operation anyway), and all of them for a file default that
/// is not allow (policy-lang's default covers every file operation).
fn path_ops(plan: &KernelPlan, rules: &HashMap<u32, abi::Rule>) -> u32 {
    let all = crate::path_hooks::PATH_OPS;
    if plan
        .policies
        .iter()
        .any(|p| p.file_default != Action::Allow)
    {
        return all;
    }
    let m = &plan.file_matcher;
    m.accepts
        .iter()
        .flat_map(|a| a.rules.iter())
        .chain(m.suffixes.iter().flat_map(|s| s.rules.iter()))
        .filter_map(|id| rules.get(id))
        .filter(|r| r.action != abi::ACTION_ALLOW)
        .fold(0, |acc, r| acc | r.ops)
        & all
}

fn net_err(detail: String) -> PlanError {
    PlanError::Network(detail)
}

/// The (prefix length, address bytes) of a trie key, checked.
fn prefix_key<const N: usize>(p: &NetPrefix) -> Result<(u32, [u8; N]), PlanError> {
    use std::net::IpAddr;
    let bytes: Vec<u8> = match p.addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => {
            if a.to_ipv4_mapped().is_some() && p.prefix >= 96 {
                return Err(net_err(format!(
                    "{}/{} is IPv4-mapped: give it as IPv4 (mapped addresses are looked up in the v4 trie)",
                    p.addr, p.prefix
                )));
            }
            a.octets().to_vec()
        }
    };
    let mut key = [0u8; N];
    if bytes.len() != N {
        return Err(net_err(format!(
            "{}/{} is in the wrong family's list",
            p.addr, p.prefix
        )));
    }
    key.copy_from_slice(&bytes);
    let width = u32_of(N * 8);
    let len = u32::from(p.prefix);
    if len > width {
        return Err(net_err(format!(
            "{}/{}: a prefix is at most {width} bits",
            p.addr, p.prefix
        )));
    }
    for (i, b) in key.iter().enumerate() {
        let start = u32_of(i * 8);
        let keep = len.saturating_sub(start).min(8);
        let mask: u8 = if keep == 0 { 0 } else { 0xffu8 << (8 - keep) };
        if b & !mask != 0 {
            return Err(net_err(format!(
                "{}/{} has host bits set",
                p.addr, p.prefix
            )));
        }
    }
    Ok((len, key))
}

/// Lays out the network rules, tries and defaults; returns the operations
/// that need a hook.
fn compile_network(
    n: &NetworkPlan,
    slots: &HashMap<u32, (u32, Mode)>,
    file_rules: &HashMap<u32, abi::Rule>,
    policies: &mut [abi::Policy],
    out: &mut MapEntries,
) -> Result<u32, PlanError> {
    let class = abi::CLASS_NET as usize;
    let mut hook_ops = 0u32;
    let mut seen_default = HashSet::new();
    for d in &n.defaults {
        let &(slot, mode) = slots
            .get(&d.policy)
            .ok_or_else(|| PlanError::UnknownPolicy {
                what: "a network default".into(),
                policy: d.policy,
            })?;
        if !seen_default.insert(d.policy) {
            return Err(net_err(format!(
                "policy {} has two network defaults",
                d.policy
            )));
        }
        if let Some(p) = policies.get_mut(slot as usize) {
            p.dflt[class] = d.action.effective(mode).abi();
        }
        if d.action != Action::Allow {
            hook_ops |= net::ALL_OPS;
        }
    }
    let mut rules: HashMap<u32, abi::NetRule> = HashMap::new();
    for r in &n.rules {
        let &(slot, mode) = slots
            .get(&r.policy)
            .ok_or_else(|| PlanError::UnknownPolicy {
                what: format!("network rule {}", r.id),
                policy: r.policy,
            })?;
        if file_rules.contains_key(&r.id) {
            return Err(PlanError::DuplicateRule(r.id));
        }
        if r.ops == 0 || r.ops & !net::ALL_OPS != 0 {
            return Err(net_err(format!(
                "rule {} has operations {:#x}",
                r.id, r.ops
            )));
        }
        if r.families & !net::ALL_FAMILIES != 0 || r.protocols & !net::ALL_PROTOCOLS != 0 {
            return Err(net_err(format!(
                "rule {} has families {:#x} / protocols {:#x}",
                r.id, r.families, r.protocols
            )));
        }
        if r.ports.len() > MAX_LIST_LEN {
            return Err(net_err(format!(
                "rule {} has {} port ranges; at most {MAX_LIST_LEN}",
                r.id,
                r.ports.len()
            )));
        }
        if let Some((lo, hi)) = r.ports.iter().find(|(lo, hi)| lo > hi) {
            return Err(net_err(format!(
                "rule {}: port range {lo}-{hi} is empty",
                r.id
            )));
        }
        let ports_off = u32_of(out.net_ports.len());
        out.net_ports
            .extend(r.ports.iter().map(|&(lo, hi)| abi::PortRange { lo, hi }));
        let entry = abi::NetRule {
            id: r.id,
            slot,
            action: r.action.effective(mode).abi(),
            ops: r.ops,
            families: r.families,
            protocols: r.protocols,
            ports_off,
            ports_len: u32_of(r.ports.len()),
            // Set by compile_binaries.
            from_sets: 0,
            except_sets: 0,
        };
        if rules.insert(r.id, entry).is_some() {
            return Err(PlanError::DuplicateRule(r.id));
        }
        hook_ops |= r.ops;
    }
    let push_list = |p: &NetPrefix, out: &mut MapEntries| {
        if p.rules.len() > MAX_LIST_LEN {
            return Err(net_err(format!(
                "{}/{} lists {} rules; at most {MAX_LIST_LEN}",
                p.addr,
                p.prefix,
                p.rules.len()
            )));
        }
        let off = u32_of(out.net_rules.len());
        for id in &p.rules {
            let r = rules.get(id).ok_or_else(|| PlanError::UnknownRule {
                what: format!("network prefix {}/{}", p.addr, p.prefix),
                rule: *id,
            })?;
            out.net_rules.push(*r);
        }
        Ok(abi::NetList {
            list_off: off,
            list_len: u32_of(p.rules.len()),
        })
    };
    let mut keys4 = HashSet::new();
    for p in &n.v4 {
        let (len, key) = prefix_key::<4>(p)?;
        if !keys4.insert((len, key)) {
            return Err(net_err(format!("{}/{} is listed twice", p.addr, p.prefix)));
        }
        let list = push_list(p, out)?;
        out.net_v4.push((len, key, list));
    }
    let mut keys6 = HashSet::new();
    for p in &n.v6 {
        let (len, key) = prefix_key::<16>(p)?;
        if !keys6.insert((len, key)) {
            return Err(net_err(format!("{}/{} is listed twice", p.addr, p.prefix)));
        }
        let list = push_list(p, out)?;
        out.net_v6.push((len, key, list));
    }
    Ok(if n.is_empty() { 0 } else { hook_ops })
}

fn compile_matcher(
    class: u32,
    name: &'static str,
    m: &PathMatcherEntries,
    rules: &HashMap<u32, abi::Rule>,
    policies: &mut [abi::Policy],
    out: &mut MapEntries,
) -> Result<(), PlanError> {
    let err = |detail: String| PlanError::Matcher {
        matcher: name,
        detail,
    };
    let check_state = |s: u32, what: &str| {
        if s == abi::STATE_DEAD {
            Err(err(format!("{what} uses state 0, the dead state")))
        } else {
            Ok(())
        }
    };
    // Appends a rule list. What fails closed when a path cannot be resolved
    // is collected on the way: the ops of the class's deny/kill and audit rules.
    let mut push_list = |ids: &[u32], what: &str, out: &mut MapEntries| {
        if ids.len() > MAX_LIST_LEN {
            return Err(err(format!(
                "{what} lists {} rules; at most {MAX_LIST_LEN}",
                ids.len()
            )));
        }
        let off = u32_of(out.rule_list.len());
        for id in ids {
            let mut r = *rules.get(id).ok_or_else(|| PlanError::UnknownRule {
                what: format!("{name} matcher {what}"),
                rule: *id,
            })?;
            if class == abi::CLASS_EXEC {
                r.ops = abi::OP_EXEC;
            }
            if let Some(p) = policies.get_mut(r.slot as usize) {
                let c = class as usize % abi::CLASSES;
                match r.action {
                    abi::ACTION_DENY | abi::ACTION_KILL => p.deny_ops[c] |= r.ops,
                    abi::ACTION_AUDIT => p.audit_ops[c] |= r.ops,
                    _ => {}
                }
            }
            out.rule_list.push(r);
        }
        Ok((off, u32_of(ids.len())))
    };
    let check_name = |bytes: &[u8], hash: u64, what: &str| {
        if bytes.is_empty() || bytes.len() > abi::NAME_MAX {
            return Err(err(format!(
                "{what} `{}` is {} bytes; components are 1 to {} bytes",
                String::from_utf8_lossy(bytes),
                bytes.len(),
                abi::NAME_MAX
            )));
        }
        if bytes.contains(&b'/') || bytes.contains(&0) {
            return Err(err(format!(
                "{what} `{}` contains `/` or NUL",
                String::from_utf8_lossy(bytes)
            )));
        }
        if path_hash(bytes) != hash {
            return Err(err(format!(
                "{what} `{}` has hash {hash:#x}, not its FNV-1a {:#x}",
                String::from_utf8_lossy(bytes),
                path_hash(bytes)
            )));
        }
        Ok(())
    };

    let mut edge_keys = HashSet::new();
    for e in &m.edges {
        check_state(e.from, "an edge")?;
        check_state(e.to, "an edge")?;
        check_name(&e.segment, e.hash, "edge")?;
        let key = abi::EdgeKey {
            matcher: class,
            state: e.from,
            hash: e.hash,
        };
        if !edge_keys.insert(key) {
            return Err(err(format!(
                "two edges from state {} for `{}`",
                e.from,
                String::from_utf8_lossy(&e.segment)
            )));
        }
        out.edges.push((
            key,
            abi::Edge {
                to: e.to,
                len: u32_of(e.segment.len()),
                name: name_bytes(&e.segment),
            },
        ));
    }

    let mut states: BTreeMap<u32, abi::State> = BTreeMap::new();
    for w in &m.wildcards {
        check_state(w.from, "a wildcard")?;
        check_state(w.to, "a wildcard")?;
        let s = states.entry(w.from).or_default();
        if s.wildcard != 0 {
            return Err(err(format!("two wildcards from state {}", w.from)));
        }
        s.wildcard = w.to;
    }
    for a in &m.accepts {
        check_state(a.state, "an accept")?;
        let (off, len) = push_list(&a.rules, &format!("accept of state {}", a.state), out)?;
        let s = states.entry(a.state).or_default();
        if s.list_len != 0 {
            return Err(err(format!("two accepts for state {}", a.state)));
        }
        s.list_off = off;
        s.list_len = len;
    }
    let mut suffix_keys = HashSet::new();
    for sfx in &m.suffixes {
        check_state(sfx.state, "a suffix")?;
        check_name(&sfx.suffix, sfx.hash, "suffix")?;
        if sfx.suffix.first() != Some(&b'.') {
            return Err(err(format!(
                "suffix `{}` does not start with `.`",
                String::from_utf8_lossy(&sfx.suffix)
            )));
        }
        let key = abi::EdgeKey {
            matcher: class,
            state: sfx.state,
            hash: sfx.hash,
        };
        if !suffix_keys.insert(key) {
            return Err(err(format!(
                "two suffix entries from state {} for `{}`",
                sfx.state,
                String::from_utf8_lossy(&sfx.suffix)
            )));
        }
        let what = format!(
            "suffix `{}` of state {}",
            String::from_utf8_lossy(&sfx.suffix),
            sfx.state
        );
        let (off, len) = push_list(&sfx.rules, &what, out)?;
        out.suffixes.push((
            key,
            abi::Suffix {
                list_off: off,
                list_len: len,
                len: u32_of(sfx.suffix.len()),
                _pad: 0,
                name: name_bytes(&sfx.suffix),
            },
        ));
        let s = states.entry(sfx.state).or_default();
        s.max_suffix = s.max_suffix.max(u32_of(sfx.suffix.len()));
    }
    out.states.extend(states.into_iter().map(|(state, s)| {
        (
            abi::StateKey {
                matcher: class,
                state,
            },
            s,
        )
    }));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(id: u32, mode: Mode) -> KernelPolicy {
        KernelPolicy {
            id,
            mode,
            file_default: Action::Allow,
            exec_default: Action::Allow,
        }
    }

    fn rule(id: u32, policy: u32, action: Action, ops: u32) -> KernelRule {
        KernelRule {
            id,
            policy,
            action,
            ops,
        }
    }

    /// Selector tags become list entries of the cgroup matcher with their policy's slot
    /// (and the exclusion mark); existing cgroups' exclusions go on their entries, one of
    /// their own when no policy selects the cgroup.
    #[test]
    fn cgroup_selectors_become_the_cgroup_matcher_and_exclusions() {
        let mut p = small();
        p.cgroup_selectors = CgroupSelectors {
            // `/svc` selects for policy 11 (tag 22); `/svc/debug` excludes it (tag 23).
            matcher: PathMatcherEntries {
                edges: vec![Edge::new(1, b"svc", 2), Edge::new(2, b"debug", 3)],
                wildcards: vec![],
                accepts: vec![
                    Accept {
                        state: 2,
                        rules: vec![22],
                    },
                    Accept {
                        state: 3,
                        rules: vec![23],
                    },
                ],
                suffixes: vec![],
            },
            excluded: vec![
                CgroupPolicies {
                    cgroup_id: 99,
                    policies: vec![11],
                },
                CgroupPolicies {
                    cgroup_id: 100,
                    policies: vec![10],
                },
            ],
            globs: vec![CgroupGlob {
                parent: b"/system.slice".to_vec(),
                prefix: b"docker-".to_vec(),
                suffix: b".scope".to_vec(),
                tag: 23,
            }],
        };
        let e = compile(&p).unwrap();
        assert!(e.cgroup_selectors);
        let lists: Vec<(u32, u32, u32)> = e
            .states
            .iter()
            .filter(|(k, _)| k.matcher == abi::MATCHER_CGROUP)
            .flat_map(|(_, s)| {
                &e.rule_list[s.list_off as usize..(s.list_off + s.list_len) as usize]
            })
            .map(|r| (r.id, r.slot, r.ops))
            .collect();
        assert_eq!(lists.len(), 2);
        assert!(lists.contains(&(22, 1, 0)));
        assert!(lists.contains(&(23, 1, abi::SELECT_EXCLUDE)));
        let entry = |id: u64| e.cgroups.iter().find(|(c, _)| *c == id).unwrap().1;
        assert_eq!(
            entry(99),
            abi::CgroupPolicies {
                slots: 0b01,
                excluded: 0b10
            }
        );
        assert_eq!(
            entry(100),
            abi::CgroupPolicies {
                slots: 0,
                excluded: 0b01
            }
        );
        assert_eq!(e.cgroup_capacity, 2 + 5);
        let g = e.cgroup_globs[0];
        assert_eq!((g.slot, g.exclude), (1, 1));
        assert_eq!((g.parent_len, g.prefix_len, g.suffix_len), (13, 7, 6));
        assert_eq!(&g.parent[..14], b"/system.slice\0");
        assert_eq!(&g.suffix[..7], b".scope\0");

        p.cgroup_selectors.excluded[0].policies = vec![42];
        assert!(matches!(
            compile(&p),
            Err(PlanError::UnknownPolicy { policy: 42, .. })
        ));
    }

    /// `/etc/shadow` (rule 7, deny read) and `*.pem` under /etc (rule 8).
    fn small() -> KernelPlan {
        KernelPlan {
            cgroup_selectors: Default::default(),
            policies: vec![policy(10, Mode::Enforce), policy(11, Mode::Audit)],
            cgroups: vec![CgroupPolicies {
                cgroup_id: 99,
                policies: vec![10, 11],
            }],
            file_matcher: PathMatcherEntries {
                edges: vec![Edge::new(1, b"etc", 2), Edge::new(2, b"shadow", 3)],
                wildcards: vec![],
                accepts: vec![Accept {
                    state: 3,
                    rules: vec![7],
                }],
                suffixes: vec![SuffixAccept::new(2, b".pem", vec![8, 9])],
            },
            exec_matcher: PathMatcherEntries::default(),
            rules: vec![
                rule(7, 10, Action::Deny, ops::READ),
                rule(8, 11, Action::Kill, ops::WRITE),
                rule(9, 10, Action::Audit, ops::APPEND),
            ],
            cgroup_headroom: Some(5),
            network: NetworkPlan::default(),
            process_events: false,
            kernel: crate::kernel_ops::KernelOpsPlan::default(),
            binaries: BinaryFilters::default(),
            exec_mechanism: ExecMechanism::Lsm,
            rate_limit: 0,
            self_guard: None,
            pods: None,
        }
    }

    fn with_binaries() -> KernelPlan {
        let mut p = small();
        p.binaries.matcher = PathMatcherEntries {
            edges: vec![Edge::new(1, b"usr", 2), Edge::new(2, b"sshd", 3)],
            wildcards: vec![],
            accepts: vec![Accept {
                state: 3,
                rules: vec![0, 5],
            }],
            suffixes: vec![],
        };
        p.binaries.rules.insert(
            7,
            RuleBinaries {
                except: 1 << 5,
                ..RuleBinaries::default()
            },
        );
        p
    }

    #[test]
    fn binary_filters_become_a_matcher_and_rule_masks() {
        let e = compile(&with_binaries()).unwrap();
        assert!(e.hooks.binaries);
        assert!(!compile(&small()).unwrap().hooks.binaries);
        // Every copy of rule 7 carries its masks; the others none.
        for r in e.rule_list.iter().filter(|r| r.slot != u32::MAX) {
            let want = if r.id == 7 { 1 << 5 } else { 0 };
            assert_eq!((r.from_sets, r.except_sets), (0, want), "{r:?}");
        }
        // The binaries automaton: matcher 4, its accept list holding set ids.
        let bin_edges: Vec<_> = e
            .edges
            .iter()
            .filter(|(k, _)| k.matcher == abi::MATCHER_BINARY)
            .collect();
        assert_eq!(bin_edges.len(), 2);
        let (_, st) = e
            .states
            .iter()
            .find(|(k, _)| k.matcher == abi::MATCHER_BINARY && k.state == 3)
            .unwrap();
        let off = st.list_off as usize;
        let ids: Vec<u32> = e.rule_list[off..off + st.list_len as usize]
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, vec![0, 5]);
        // Set entries belong to no policy: no fail-closed ops from them.
        assert_eq!(e.policies[0].1.deny_ops[0], ops::READ);
        assert!(e.rule_uids.is_empty());
    }

    #[test]
    fn exec_process_filters_go_on_every_copy_of_the_rule_and_uids_into_their_map() {
        let mut p = with_binaries();
        p.binaries.rules.insert(
            7,
            RuleBinaries {
                parent: 1 << 2,
                ancestor: 1 << 3,
                uids: vec![0, 1000],
                ..RuleBinaries::default()
            },
        );
        let e = compile(&p).unwrap();
        assert!(e.hooks.binaries);
        for r in e.rule_list.iter().filter(|r| r.slot != u32::MAX) {
            let want = if r.id == 7 {
                (1 << 2, 1 << 3, 1)
            } else {
                (0, 0, 0)
            };
            assert_eq!(
                (r.parent_sets, r.ancestor_sets, r.uid_filter),
                want,
                "{r:?}"
            );
        }
        let uids: Vec<(u32, u32)> = e
            .rule_uids
            .iter()
            .map(|(k, _)| (k.rule_id, k.uid))
            .collect();
        assert_eq!(uids, [(7, 0), (7, 1000)]);

        // A uid alone needs no binary sets: the binary programs stay detached.
        p.binaries.rules.insert(
            7,
            RuleBinaries {
                uids: vec![0],
                ..RuleBinaries::default()
            },
        );
        let e = compile(&p).unwrap();
        assert!(!e.hooks.binaries);
        assert_eq!(e.rule_uids.len(), 1);
    }

    #[test]
    fn binary_filters_are_checked() {
        let mut p = with_binaries();
        p.binaries.matcher.accepts[0].rules.push(64);
        let err = compile(&p).unwrap_err().to_string();
        assert!(err.contains("binary set 64"), "{err}");

        let mut p = with_binaries();
        p.binaries.rules.insert(
            1234,
            RuleBinaries {
                from: 1,
                ..RuleBinaries::default()
            },
        );
        let err = compile(&p).unwrap_err().to_string();
        assert!(err.contains("rule 1234 has binary filters"), "{err}");
    }

    #[test]
    fn lays_out_a_small_plan() {
        let e = compile(&small()).unwrap();
        assert_eq!(
            e.hooks,
            Hooks {
                file_open: true,
                bprm_check_security: false,
                net_ops: 0,
                ..Hooks::default()
            }
        );
        assert_eq!(
            e.cgroups,
            vec![(
                99,
                abi::CgroupPolicies {
                    slots: 0b11,
                    excluded: 0
                }
            )]
        );
        assert_eq!(e.cgroup_capacity, 6);
        assert_eq!(e.edges.len(), 2);
        let (k, v) = &e.edges[1];
        assert_eq!(k.hash, path_hash(b"shadow"));
        assert_eq!((v.to, v.len, &v.name[..7]), (3, 6, &b"shadow\0"[..]));
        // Accept of state 3 first, then the suffix list.
        assert_eq!(e.rule_list.len(), 3);
        assert_eq!(e.rule_list[0].id, 7);
        assert_eq!(e.rule_list[0].ops, ops::READ);
        // Rule 8's kill is audit in its audit-mode policy (slot 1).
        assert_eq!(e.rule_list[1].slot, 1);
        assert_eq!(e.rule_list[1].action, abi::ACTION_AUDIT);
        let state2 = e.states.iter().find(|(k, _)| k.state == 2).unwrap().1;
        assert_eq!(state2.max_suffix, 4);
        let (_, sfx) = &e.suffixes[0];
        assert_eq!((sfx.list_off, sfx.list_len, sfx.len), (1, 2, 4));
        // Fail-closed ops per policy and class.
        let p0 = e.policies[0].1;
        assert_eq!(p0.deny_ops[0], ops::READ);
        assert_eq!(p0.audit_ops[0], ops::APPEND);
        let p1 = e.policies[1].1;
        assert_eq!((p1.deny_ops[0], p1.audit_ops[0]), (0, ops::WRITE));
    }

    #[test]
    fn exec_rules_carry_the_exec_op_and_need_the_exec_hook() {
        let mut p = small();
        p.exec_matcher.edges.push(Edge::new(1, b"bin", 2));
        p.exec_matcher.accepts.push(Accept {
            state: 2,
            rules: vec![7],
        });
        let e = compile(&p).unwrap();
        assert!(e.hooks.bprm_check_security);
        let last = e.rule_list.last().unwrap();
        assert_eq!(last.ops, abi::OP_EXEC);
        assert_eq!(e.policies[0].1.deny_ops[1], abi::OP_EXEC);
    }

    #[test]
    fn a_default_deny_needs_its_hook_and_is_audit_in_audit_mode() {
        let mut p = small();
        p.file_matcher = PathMatcherEntries::default();
        p.policies[1].exec_default = Action::Deny;
        let e = compile(&p).unwrap();
        assert_eq!(
            e.hooks,
            Hooks {
                file_open: false,
                bprm_check_security: true,
                net_ops: 0,
                ..Hooks::default()
            }
        );
        assert_eq!(
            e.policies[1].1.dflt,
            [
                abi::ACTION_ALLOW,
                abi::ACTION_AUDIT,
                abi::ACTION_ALLOW,
                abi::ACTION_ALLOW
            ]
        );
    }

    #[test]
    fn path_hooks_follow_the_file_rules_ops_and_the_file_default() {
        let mut p = small();
        p.rules[0].ops = ops::READ | ops::DELETE;
        p.rules[1].ops = ops::RENAME;
        let e = compile(&p).unwrap();
        // Rule 8 is a kill in an audit policy: audit, still reported.
        assert_eq!(e.hooks.path_ops, ops::DELETE | ops::RENAME);
        assert!(e.hooks.file_open);
        // An allow rule alone needs no hook.
        p.rules[0].action = Action::Allow;
        p.rules[1].ops = ops::WRITE;
        assert_eq!(compile(&p).unwrap().hooks.path_ops, 0);
        // A file default deny covers every file operation.
        p.policies[0].file_default = Action::Deny;
        assert_eq!(
            compile(&p).unwrap().hooks.path_ops,
            crate::path_hooks::PATH_OPS
        );
    }

    #[test]
    fn more_than_64_policies_is_an_error() {
        let mut p = KernelPlan {
            cgroup_selectors: Default::default(),
            policies: (0..65).map(|i| policy(i, Mode::Enforce)).collect(),
            ..KernelPlan::default()
        };
        assert_eq!(compile(&p).unwrap_err(), PlanError::TooManyPolicies(65));
        p.policies.pop();
        assert!(compile(&p).is_ok());
    }

    #[test]
    fn rejects_inconsistent_plans() {
        let mut p = small();
        p.rules.push(rule(7, 10, Action::Deny, 0));
        assert_eq!(compile(&p).unwrap_err(), PlanError::DuplicateRule(7));

        let mut p = small();
        p.rules[0].policy = 3;
        assert!(matches!(
            compile(&p),
            Err(PlanError::UnknownPolicy { policy: 3, .. })
        ));

        let mut p = small();
        p.file_matcher.accepts[0].rules.push(42);
        assert!(matches!(
            compile(&p),
            Err(PlanError::UnknownRule { rule: 42, .. })
        ));

        let mut p = small();
        p.cgroups[0].policies.push(77);
        assert!(matches!(
            compile(&p),
            Err(PlanError::UnknownPolicy { policy: 77, .. })
        ));

        let mut p = small();
        p.cgroups.push(p.cgroups[0].clone());
        assert_eq!(compile(&p).unwrap_err(), PlanError::DuplicateCgroup(99));
    }

    #[test]
    fn rejects_bad_matcher_entries() {
        let bad = |f: fn(&mut PathMatcherEntries)| {
            let mut p = small();
            f(&mut p.file_matcher);
            matches!(compile(&p), Err(PlanError::Matcher { .. }))
        };
        // A hash that is not the segment's (a drifted hash function).
        assert!(bad(|m| m.edges[0].hash ^= 1));
        assert!(bad(|m| m.edges.push(Edge::new(1, b"etc", 5))));
        assert!(bad(|m| m.edges.push(Edge::new(1, b"a/b", 5))));
        assert!(bad(|m| m.edges.push(Edge::new(1, b"", 5))));
        assert!(bad(|m| m.edges.push(Edge::new(1, &[b'x'; 256], 5))));
        assert!(bad(|m| m.edges.push(Edge::new(0, b"x", 5))));
        assert!(bad(|m| m.suffixes.push(SuffixAccept::new(
            1,
            b"pem",
            vec![]
        ))));
        assert!(bad(|m| m.wildcards.extend([
            Wildcard { from: 1, to: 2 },
            Wildcard { from: 1, to: 3 }
        ])));
        assert!(bad(|m| m.accepts.push(Accept {
            state: 3,
            rules: vec![7]
        })));
        // A 255-byte component is fine.
        assert!(!bad(|m| m.edges.push(Edge::new(1, &[b'x'; 255], 5))));
    }

    fn net_rule(id: u32, policy: u32, action: Action, ports: &[(u16, u16)]) -> NetRule {
        NetRule {
            id,
            policy,
            action,
            ops: net::CONNECT,
            families: net::ALL_FAMILIES,
            protocols: net::TCP,
            ports: ports.to_vec(),
        }
    }

    fn prefix(text: &str, len: u8, rules: &[u32]) -> NetPrefix {
        NetPrefix {
            addr: text.parse().unwrap(),
            prefix: len,
            rules: rules.to_vec(),
        }
    }

    /// 10.0.0.0/8 (rule 20, deny 22 and 80-90) inside 0.0.0.0/0 (rule 21,
    /// audit), fd00::/8 (rule 22 in the audit-mode policy).
    fn with_network() -> KernelPlan {
        let mut p = small();
        p.network = NetworkPlan {
            rules: vec![
                net_rule(20, 10, Action::Deny, &[(22, 22), (80, 90)]),
                net_rule(21, 10, Action::Audit, &[]),
                net_rule(22, 11, Action::Kill, &[]),
            ],
            v4: vec![
                prefix("0.0.0.0", 0, &[21]),
                prefix("10.0.0.0", 8, &[20, 21]),
            ],
            v6: vec![prefix("fd00::", 8, &[22])],
            defaults: vec![NetworkDefault {
                policy: 11,
                action: Action::Deny,
            }],
            ..NetworkPlan::default()
        };
        p
    }

    #[test]
    fn network_rules_carry_their_binary_sets_on_every_copy() {
        let mut p = with_network();
        p.binaries = with_binaries().binaries;
        p.binaries.rules.insert(
            21,
            RuleBinaries {
                from: 1 << 3,
                ..RuleBinaries::default()
            },
        );
        let e = compile(&p).unwrap();
        // Rule 21 is listed under two prefixes: both copies are filtered.
        let copies: Vec<_> = e.net_rules.iter().filter(|r| r.id == 21).collect();
        assert_eq!(copies.len(), 2);
        assert!(copies
            .iter()
            .all(|r| (r.from_sets, r.except_sets) == (1 << 3, 0)));
        assert!(e
            .net_rules
            .iter()
            .filter(|r| r.id != 21)
            .all(|r| r.from_sets | r.except_sets == 0));
    }

    #[test]
    fn lays_out_network_tries_rules_and_ports() {
        let e = compile(&with_network()).unwrap();
        // A default deny needs every operation's hook.
        assert_eq!(e.hooks.net_ops, net::ALL_OPS);
        assert_eq!(e.net_v4.len(), 2);
        assert_eq!(
            e.net_v4[0],
            (
                0,
                [0; 4],
                abi::NetList {
                    list_off: 0,
                    list_len: 1
                }
            )
        );
        assert_eq!(e.net_v4[1].0, 8);
        assert_eq!(e.net_v4[1].1, [10, 0, 0, 0]);
        assert_eq!(
            e.net_v4[1].2,
            abi::NetList {
                list_off: 1,
                list_len: 2
            }
        );
        let (len, key, list) = e.net_v6[0];
        assert_eq!((len, key[0], list.list_off), (8, 0xfd, 3));
        // Rule 20's ports are written once; the copies refer to them.
        assert_eq!(
            e.net_ports,
            vec![
                abi::PortRange { lo: 22, hi: 22 },
                abi::PortRange { lo: 80, hi: 90 }
            ]
        );
        let r20 = e.net_rules[1];
        assert_eq!((r20.id, r20.ports_off, r20.ports_len), (20, 0, 2));
        assert_eq!(r20.action, abi::ACTION_DENY);
        // Rule 22's kill is audit in its audit-mode policy, and so is the default.
        let r22 = e.net_rules[3];
        assert_eq!((r22.id, r22.slot, r22.action), (22, 1, abi::ACTION_AUDIT));
        assert_eq!(
            e.policies[1].1.dflt[abi::CLASS_NET as usize],
            abi::ACTION_AUDIT
        );
        assert_eq!(
            e.policies[0].1.dflt[abi::CLASS_NET as usize],
            abi::ACTION_ALLOW
        );
    }

    #[test]
    fn network_hooks_follow_the_rules_ops() {
        let mut p = with_network();
        p.network.defaults.clear();
        p.network.rules[0].ops = net::BIND;
        assert_eq!(compile(&p).unwrap().hooks.net_ops, net::BIND | net::CONNECT);
        p.network = NetworkPlan::default();
        assert_eq!(compile(&p).unwrap().hooks.net_ops, 0);
    }

    #[test]
    fn rejects_bad_network_entries() {
        let bad = |f: fn(&mut NetworkPlan)| {
            let mut p = with_network();
            f(&mut p.network);
            compile(&p).unwrap_err()
        };
        assert!(
            matches!(bad(|n| n.v4.push(prefix("10.1.0.0", 8, &[20]))), PlanError::Network(m) if m.contains("host bits"))
        );
        assert!(matches!(
            bad(|n| n.v4.push(prefix("10.0.0.0", 33, &[20]))),
            PlanError::Network(_)
        ));
        assert!(
            matches!(bad(|n| n.v4.push(prefix("10.0.0.0", 8, &[20]))), PlanError::Network(m) if m.contains("twice"))
        );
        assert!(
            matches!(bad(|n| n.v4.push(prefix("fd00::", 8, &[20]))), PlanError::Network(m) if m.contains("family"))
        );
        assert!(
            matches!(bad(|n| n.v6.push(prefix("::ffff:10.0.0.0", 104, &[20]))), PlanError::Network(m) if m.contains("IPv4-mapped"))
        );
        assert!(matches!(
            bad(|n| n.v6.push(prefix("fe80::", 10, &[99]))),
            PlanError::UnknownRule { rule: 99, .. }
        ));
        assert!(
            matches!(bad(|n| n.rules[0].ports.push((10, 9))), PlanError::Network(m) if m.contains("empty"))
        );
        assert!(matches!(bad(|n| n.rules[0].ops = 0), PlanError::Network(_)));
        assert!(matches!(
            bad(|n| n.rules[0].families = 4),
            PlanError::Network(_)
        ));
        assert!(matches!(
            bad(|n| n.rules[0].policy = 77),
            PlanError::UnknownPolicy { policy: 77, .. }
        ));
        assert_eq!(bad(|n| n.rules[1].id = 20), PlanError::DuplicateRule(20));
        // A network rule id may not reuse a file rule's (records carry one id).
        assert_eq!(bad(|n| n.rules[1].id = 7), PlanError::DuplicateRule(7));
        assert!(matches!(
            bad(|n| n.defaults.push(NetworkDefault {
                policy: 11,
                action: Action::Allow
            })),
            PlanError::Network(_)
        ));
        assert!(matches!(
            bad(|n| n.defaults[0].policy = 5),
            PlanError::UnknownPolicy { policy: 5, .. }
        ));
    }
}
