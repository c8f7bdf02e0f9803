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
//! # Caps
//! At most [`MAX_POLICIES`] (64) policies per plan: a cgroup's policies are a
//! u64 bit set. More is an error ([`PlanError::TooManyPolicies`]), never a
//! silent truncation.

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
    pub const EXEC: u32 = crate::abi::OP_EXEC;
    /// Every file operation (`FileOp::ALL`: 12 of them).
    pub const ALL: u32 = (1 << 12) - 1;
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
    fn abi(self) -> u32 {
        match self {
            Action::Allow => abi::ACTION_ALLOW,
            Action::Audit => abi::ACTION_AUDIT,
            Action::Deny => abi::ACTION_DENY,
            Action::Kill => abi::ACTION_KILL,
        }
    }

    /// In an audit-mode policy nothing is denied: deny and kill are audit.
    fn effective(self, mode: Mode) -> Action {
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

/// Everything the kernel programs need.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelPlan {
    pub policies: Vec<KernelPolicy>,
    pub cgroups: Vec<CgroupPolicies>,
    pub file_matcher: PathMatcherEntries,
    pub exec_matcher: PathMatcherEntries,
    pub rules: Vec<KernelRule>,
    /// Room for cgroups created after load, which inherit in the kernel
    /// ([`DEFAULT_CGROUP_HEADROOM`] when `None`). When it runs out, a new
    /// cgroup is not covered and `KernelStats::inherit_failed` counts it.
    pub cgroup_headroom: Option<u32>,
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
}

/// The hooks a plan needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hooks {
    pub file_open: bool,
    pub bprm_check_security: bool,
}

/// The map entries of a plan, ready to write.
#[derive(Clone, Debug, Default)]
pub(crate) struct MapEntries {
    pub hooks: Hooks,
    pub cgroups: Vec<(u64, abi::CgroupPolicies)>,
    pub cgroup_capacity: u32,
    pub policies: Vec<(u32, abi::Policy)>,
    pub edges: Vec<(abi::EdgeKey, abi::Edge)>,
    pub states: Vec<(abi::StateKey, abi::State)>,
    pub suffixes: Vec<(abi::EdgeKey, abi::Suffix)>,
    pub rule_list: Vec<abi::Rule>,
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
        out.cgroups
            .push((cg.cgroup_id, abi::CgroupPolicies { slots: set }));
    }
    let headroom = plan.cgroup_headroom.unwrap_or(DEFAULT_CGROUP_HEADROOM);
    out.cgroup_capacity = u32_of(plan.cgroups.len()).saturating_add(headroom).max(1);

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
    };
    Ok(out)
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

    /// `/etc/shadow` (rule 7, deny read) and `*.pem` under /etc (rule 8).
    fn small() -> KernelPlan {
        KernelPlan {
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
        }
    }

    #[test]
    fn lays_out_a_small_plan() {
        let e = compile(&small()).unwrap();
        assert_eq!(
            e.hooks,
            Hooks {
                file_open: true,
                bprm_check_security: false
            }
        );
        assert_eq!(e.cgroups, vec![(99, abi::CgroupPolicies { slots: 0b11 })]);
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
                bprm_check_security: true
            }
        );
        assert_eq!(e.policies[1].1.dflt, [abi::ACTION_ALLOW, abi::ACTION_AUDIT]);
    }

    #[test]
    fn more_than_64_policies_is_an_error() {
        let mut p = KernelPlan {
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
}
