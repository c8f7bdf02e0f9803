//! The reference evaluator: the kernel's decision, computed in user space from the same
//! plan entries the loader puts in the BPF maps (the path automaton, the LPM prefixes,
//! the per-rule checks), with the same precedence.
//!
//! Precedence, per policy: `kill` beats `deny` beats the default `deny` beats `audit` beats
//! `allow`; an `allow` rule only exempts from the default. Across the policies selecting a
//! workload the most restrictive verdict wins. Ties name the rule declared first (the first
//! policy, then the first rule in it), as the kernel does: the order of files and rules never
//! changes a verdict, only which of several equal rules an event names.

use crate::condition::{self, Compiled};
use crate::event::{exec_match_path, KernelEvent, Operation, OwnedEvent};
use crate::matcher::PathIndex;
use crate::model::{Class, Family, FileOp, KernelOp, Posture, Protocol};
use crate::net::{addr_bits, canonical};
use crate::plan::{Enforcement, LpmEntry, Plan, PlanPolicy, PlanRule};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::IpAddr;

/// What happens to the operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Allow,
    Audit,
    Deny,
    Kill,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Audit => "audit",
            Verdict::Deny => "deny",
            Verdict::Kill => "kill",
        }
    }
}

/// The decision for one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub verdict: Verdict,
    /// `policy/rule`, or `policy/default` when a default posture decided; None when
    /// nothing matched.
    pub rule: Option<String>,
    pub enforcement: Option<Enforcement>,
    /// `policy/rule` of every alert rule whose condition holds.
    pub alerts: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("user-space rule {rule}: {source}")]
    Condition {
        rule: u32,
        source: condition::CompileError,
    },
}

struct Lpm {
    entries: HashMap<(u128, u8), Vec<u32>>,
    /// Prefix lengths present, longest first.
    lengths: Vec<u8>,
}

impl Lpm {
    fn new(es: &[LpmEntry]) -> Lpm {
        let mut lengths: Vec<u8> = es.iter().map(|e| e.cidr.prefix).collect();
        lengths.sort_unstable_by(|a, b| b.cmp(a));
        lengths.dedup();
        Lpm {
            entries: es
                .iter()
                .map(|e| ((e.cidr.key_bits(), e.cidr.prefix), e.rules.clone()))
                .collect(),
            lengths,
        }
    }

    /// The longest matching prefix's rules, as `BPF_MAP_TYPE_LPM_TRIE` returns them.
    fn lookup(&self, bits: u128) -> &[u32] {
        for &len in &self.lengths {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len))
            };
            if let Some(r) = self.entries.get(&(bits & mask, len)) {
                return r;
            }
        }
        &[]
    }
}

/// A plan loaded for evaluation.
pub struct Evaluator<'p> {
    plan: &'p Plan,
    file: PathIndex,
    exec: PathIndex,
    binaries: PathIndex,
    v4: Lpm,
    v6: Lpm,
    kernel_ops: HashMap<KernelOp, Vec<u32>>,
    capabilities: HashMap<u32, Vec<u32>>,
    syscalls: HashMap<u32, Vec<u32>>,
    userspace: Vec<(u32, Compiled)>,
}

/// `path` and every cgroup above it, `/` last.
fn cgroup_and_ancestors(path: &str) -> impl Iterator<Item = &str> {
    let mut next = Some(path);
    std::iter::from_fn(move || {
        let current = next?;
        next = match current.rfind('/') {
            _ if current == "/" => None,
            Some(0) => Some("/"),
            Some(i) => Some(&current[..i]),
            None => None,
        };
        Some(current)
    })
}

/// Does the policy select this workload? (The daemon's cgroup resolution.) A cgroup pattern
/// selects (or excludes) the cgroups it matches and everything below them: a cgroup created
/// below a selected one inherits its policies in the kernel, so one that already exists is
/// treated the same.
pub fn selects(p: &PlanPolicy, ev: &OwnedEvent) -> bool {
    let s = &p.select;
    let labels_match = |want: &[(String, String)]| {
        ev.pod.as_ref().is_some_and(|pod| {
            want.iter()
                .all(|(k, v)| pod.labels.iter().any(|(pk, pv)| pk == k && pv == v))
        })
    };
    let matches = |patterns: &[crate::pattern::PathPattern]| {
        cgroup_and_ancestors(&ev.cgroup).any(|c| patterns.iter().any(|pat| pat.matches(c)))
    };
    let excluded = matches(&s.exclude_cgroups)
        || ev
            .pod
            .as_ref()
            .is_some_and(|pod| s.exclude_namespaces.contains(&pod.namespace))
        || (!s.exclude_labels.is_empty() && labels_match(&s.exclude_labels));
    if excluded {
        return false;
    }
    let k8s = (!s.namespaces.is_empty() || !s.labels.is_empty())
        && ev
            .pod
            .as_ref()
            .is_some_and(|pod| s.namespaces.is_empty() || s.namespaces.contains(&pod.namespace))
        && labels_match(&s.labels);
    s.host || matches(&s.cgroups) || k8s
}

fn effect(e: Enforcement) -> Option<Verdict> {
    match e {
        Enforcement::LsmDeny | Enforcement::CgroupSockDeny => Some(Verdict::Deny),
        Enforcement::LsmDenyAndKill | Enforcement::TracepointKill | Enforcement::KillAtExec => {
            Some(Verdict::Kill)
        }
        Enforcement::KernelAudit | Enforcement::UserspaceAudit => Some(Verdict::Audit),
        Enforcement::Allow => Some(Verdict::Allow),
        Enforcement::UserspaceAlert | Enforcement::Unenforced => None,
    }
}

impl<'p> Evaluator<'p> {
    pub fn new(plan: &'p Plan) -> Result<Self, EvalError> {
        let m = &plan.maps;
        let mut userspace = Vec::new();
        for u in &plan.userspace {
            let c = Compiled::new(&u.condition).map_err(|source| EvalError::Condition {
                rule: u.rule,
                source,
            })?;
            userspace.push((u.rule, c));
        }
        Ok(Evaluator {
            plan,
            file: PathIndex::new(&m.file_paths),
            exec: PathIndex::new(&m.exec_paths),
            binaries: PathIndex::new(&m.binaries),
            v4: Lpm::new(&m.net_v4),
            v6: Lpm::new(&m.net_v6),
            kernel_ops: m
                .kernel_ops
                .iter()
                .map(|e| (e.key, e.rules.clone()))
                .collect(),
            capabilities: m
                .capabilities
                .iter()
                .map(|e| (e.key, e.rules.clone()))
                .collect(),
            syscalls: m
                .syscalls
                .iter()
                .map(|e| (e.key, e.rules.clone()))
                .collect(),
            userspace,
        })
    }

    fn rule(&self, id: u32) -> Option<&'p PlanRule> {
        self.plan.rules.get(id as usize)
    }

    fn name(&self, r: &PlanRule) -> String {
        let policy = self
            .plan
            .policies
            .get(r.policy as usize)
            .map_or("?", |p| p.name.as_str());
        format!("{policy}/{}", r.name)
    }

    /// The rule ids the kernel maps yield for this operation, before per-rule checks.
    fn candidates(&self, op: &Operation) -> Vec<u32> {
        match op {
            Operation::Exec { path, .. } => self.exec.matches(exec_match_path(path)),
            Operation::File { path, .. } => self.file.matches(path),
            Operation::Network { addr, .. } => {
                let bits = addr_bits(*addr);
                match canonical(*addr) {
                    IpAddr::V4(_) => self.v4.lookup(bits).to_vec(),
                    IpAddr::V6(_) => self.v6.lookup(bits).to_vec(),
                }
            }
            Operation::Kernel(KernelEvent::Op(o)) => {
                self.kernel_ops.get(o).cloned().unwrap_or_default()
            }
            Operation::Kernel(KernelEvent::Capability(c)) => {
                self.capabilities.get(c).cloned().unwrap_or_default()
            }
            Operation::Kernel(KernelEvent::Syscall(s)) => {
                self.syscalls.get(s).cloned().unwrap_or_default()
            }
        }
    }

    /// The per-rule checks the BPF program does after the map lookup.
    fn rule_applies(&self, r: &PlanRule, ev: &OwnedEvent, exe_sets: &[u32]) -> bool {
        let in_set = |set: Option<u32>, sets: &[u32]| set.is_none_or(|s| sets.contains(&s));
        if !in_set(r.from_set, exe_sets) {
            return false;
        }
        if r.except_set.is_some_and(|s| exe_sets.contains(&s)) {
            return false;
        }
        match &ev.op {
            Operation::Exec { .. } => {
                let parent_ok = r.parent_set.is_none_or(|s| {
                    ev.process
                        .ancestors
                        .first()
                        .is_some_and(|p| self.binaries.matches(p).contains(&s))
                });
                let ancestor_ok = r.ancestor_set.is_none_or(|s| {
                    ev.process
                        .ancestors
                        .iter()
                        .any(|p| self.binaries.matches(p).contains(&s))
                });
                parent_ok && ancestor_ok && (r.uids.is_empty() || r.uids.contains(&ev.process.uid))
            }
            Operation::File { op, .. } => r.ops & op.bit() != 0,
            Operation::Network {
                op,
                addr,
                port,
                protocol,
            } => {
                let fam = if canonical(*addr).is_ipv4() {
                    Family::Ipv4
                } else {
                    Family::Ipv6
                };
                r.ops & op.bit() != 0
                    && r.families & fam.bit() != 0
                    && r.protocols & protocol_bit(*protocol) != 0
                    && (r.ports.is_empty() || r.ports.iter().any(|p| p.contains(*port)))
            }
            Operation::Kernel(KernelEvent::Op(o)) => r.ops & o.bit() != 0,
            Operation::Kernel(_) => true,
        }
    }

    /// Decides one event. An exec is also a `file` operation `exec` on the executable
    /// (both are checked in `bprm_check_security`); the stricter of the two wins.
    pub fn decide(&self, ev: &OwnedEvent) -> Decision {
        let d = self.decide_one(ev);
        let Operation::Exec { path, .. } = &ev.op else {
            return d;
        };
        let mut as_file = ev.clone();
        as_file.op = Operation::File {
            op: FileOp::Exec,
            path: path.clone(),
        };
        let f = self.decide_one(&as_file);
        let file_wins = f.verdict > d.verdict
            || (f.verdict == d.verdict
                && f.rule.is_some()
                && (d.rule.is_none() || f.rule < d.rule));
        if file_wins {
            Decision {
                alerts: d.alerts,
                ..f
            }
        } else {
            d
        }
    }

    fn decide_one(&self, ev: &OwnedEvent) -> Decision {
        let in_scope: Vec<bool> = self.plan.policies.iter().map(|p| selects(p, ev)).collect();
        let scoped = |r: &PlanRule| in_scope.get(r.policy as usize).copied().unwrap_or(false);
        let exe_sets = self.binaries.matches(&ev.process.exe);
        let class = match &ev.op {
            Operation::Exec { .. } => Class::Exec,
            Operation::File { .. } => Class::File,
            Operation::Network { .. } => Class::Network,
            Operation::Kernel(_) => Class::Kernel,
        };
        // (policy, verdict, rule) contributions.
        let mut hits: Vec<(u32, Verdict, &PlanRule)> = Vec::new();
        for id in self.candidates(&ev.op) {
            let Some(r) = self.rule(id) else { continue };
            if r.class == Some(class) && scoped(r) && self.rule_applies(r, ev, &exe_sets) {
                if let Some(v) = effect(r.enforcement) {
                    hits.push((r.policy, v, r));
                }
            }
        }
        let mut alerts = Vec::new();
        for (id, cond) in &self.userspace {
            let Some(r) = self.rule(*id) else { continue };
            if !scoped(r) || !cond.eval(ev) {
                continue;
            }
            match r.enforcement {
                Enforcement::UserspaceAlert => alerts.push(self.name(r)),
                e if r.class == Some(class) => {
                    if let Some(v) = effect(e) {
                        hits.push((r.policy, v, r));
                    }
                }
                _ => {}
            }
        }
        alerts.sort();
        // The default posture covers named kernel operations, not capabilities or syscalls,
        // and file operations but a symlink's target.
        let default_applies = !matches!(
            ev.op,
            Operation::Kernel(KernelEvent::Capability(_) | KernelEvent::Syscall(_))
                | Operation::File {
                    op: FileOp::SymlinkTo,
                    ..
                }
        );
        let mut best: Option<(Verdict, String, Option<Enforcement>)> = None;
        let mut consider = |v: Verdict, name: String, e: Option<Enforcement>| {
            let better = match &best {
                None => true,
                // Strictly stricter: on a tie the policy declared first (seen first) stays.
                Some((bv, _, _)) => v > *bv,
            };
            if better {
                best = Some((v, name, e));
            }
        };
        for p in self
            .plan
            .policies
            .iter()
            .filter(|p| in_scope[p.id as usize])
        {
            let mine: Vec<&(u32, Verdict, &PlanRule)> =
                hits.iter().filter(|(pid, _, _)| *pid == p.id).collect();
            let top = |v: Verdict| {
                mine.iter()
                    .filter(|(_, hv, _)| *hv == v)
                    .min_by_key(|(_, _, r)| r.id)
                    .map(|(_, _, r)| (self.name(r), r.enforcement))
            };
            let decided = if let Some((n, e)) = top(Verdict::Kill) {
                Some((Verdict::Kill, n, Some(e)))
            } else if let Some((n, e)) = top(Verdict::Deny) {
                Some((Verdict::Deny, n, Some(e)))
            } else {
                let d = p.defaults.iter().find(|d| d.class == class);
                let allowed = mine.iter().any(|(_, v, _)| *v == Verdict::Allow);
                match d {
                    Some(d) if d.posture == Posture::Deny && default_applies && !allowed => {
                        d.enforcement.and_then(|e| {
                            effect(e).map(|v| (v, format!("{}/default", p.name), Some(e)))
                        })
                    }
                    _ => top(Verdict::Audit).map(|(n, e)| (Verdict::Audit, n, Some(e))),
                }
            };
            if let Some((v, n, e)) = decided {
                consider(v, n, e);
            }
        }
        match best {
            Some((verdict, rule, enforcement)) => Decision {
                verdict,
                rule: Some(rule),
                enforcement,
                alerts,
            },
            None => Decision {
                verdict: Verdict::Allow,
                rule: None,
                enforcement: None,
                alerts,
            },
        }
    }
}

fn protocol_bit(p: Protocol) -> u32 {
    p.bit()
}
