//! The kernel class of a [`KernelPlan`](crate::plan::KernelPlan): privileged
//! operations (one LSM hook each), capability checks (`lsm/capable`) and system
//! calls (`tp_btf/sys_enter`), and their translation into map entries.
//!
//! # Map layout
//! - `enf_kernel_lists` (hash): (what, id) -> (offset, length) into
//!   `enf_kernel_rules`, where what is an operation (id: one [`kops`] bit), a
//!   capability (id: `CAP_*` number) or a system call (id: x86_64 number).
//! - `enf_kernel_rules` (array): every key's rules concatenated, each a whole
//!   `enf_rule` (id, slot, effective action; ops unused).
//! - `enf_policies[slot].dflt[3]`: the policy's kernel default, which covers the
//!   operations, not capability checks or system calls.
//!
//! Only the hooks of the operations in use are attached: `capable` only with a
//! capability rule, `sys_enter` only with a system call rule.

use crate::abi;
use crate::plan::{Action, Mode, PlanError, MAX_LIST_LEN};
use std::collections::{HashMap, HashSet};

/// Kernel operation bits: bit i is the i-th operation of policy-lang's
/// `KernelOp` list, so its masks pass through unchanged.
pub mod kops {
    pub const MOUNT: u32 = crate::abi::KOP_MOUNT;
    pub const UMOUNT: u32 = crate::abi::KOP_UMOUNT;
    pub const PTRACE: u32 = crate::abi::KOP_PTRACE;
    pub const BPF: u32 = crate::abi::KOP_BPF;
    pub const MODULE_LOAD: u32 = crate::abi::KOP_MODULE_LOAD;
    pub const KEXEC: u32 = crate::abi::KOP_KEXEC;
    pub const SETUID_ROOT: u32 = crate::abi::KOP_SETUID_ROOT;
    pub const SETGID_ROOT: u32 = crate::abi::KOP_SETGID_ROOT;
    pub const USERNS_CREATE: u32 = crate::abi::KOP_USERNS_CREATE;
    pub const RAW_SOCKET: u32 = crate::abi::KOP_RAW_SOCKET;
    pub const PACKET_SOCKET: u32 = crate::abi::KOP_PACKET_SOCKET;
    pub const PERF_EVENT_OPEN: u32 = crate::abi::KOP_PERF_EVENT_OPEN;
    pub const KEYCTL: u32 = crate::abi::KOP_KEYCTL;
    /// Every operation.
    pub const ALL: u32 = crate::abi::KOP_ALL;
}

/// Highest capability number a rule may name (the kernel has 41 today; the
/// room above is for newer kernels).
pub const MAX_CAPABILITY: u32 = 63;
/// System call numbers are below this.
pub const MAX_SYSCALL: u32 = 1024;

/// What a kernel-class rule is keyed by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KernelKey {
    /// One [`kops`] bit.
    Op(u32),
    /// A capability number (`CAP_SYS_ADMIN` is 21).
    Capability(u32),
    /// An x86_64 system call number.
    Syscall(u32),
}

impl KernelKey {
    fn abi(self) -> abi::KernelKey {
        let (what, id) = match self {
            KernelKey::Op(op) => (abi::KERNEL_OP, op),
            KernelKey::Capability(c) => (abi::KERNEL_CAPABILITY, c),
            KernelKey::Syscall(s) => (abi::KERNEL_SYSCALL, s),
        };
        abi::KernelKey { what, id }
    }
}

/// One kernel-class rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelOpRule {
    /// Reported back in records; unique across every class of the plan.
    pub id: u32,
    pub policy: u32,
    /// A system call rule cannot be `Deny` (the tracepoint cannot refuse).
    pub action: Action,
}

/// A key and the rules it matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelKeyRules {
    pub key: KernelKey,
    /// [`KernelOpRule::id`]s.
    pub rules: Vec<u32>,
}

/// A policy's kernel default: what a kernel operation (not a capability
/// check or system call) no allow rule of the policy matched gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelDefault {
    pub policy: u32,
    pub action: Action,
}

/// The kernel class of a plan.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelOpsPlan {
    pub rules: Vec<KernelOpRule>,
    pub keys: Vec<KernelKeyRules>,
    pub defaults: Vec<KernelDefault>,
}

/// The kernel-class hooks a plan needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelHooks {
    /// [`kops`] bits some rule or default decides.
    pub ops: u32,
    /// `lsm/capable`: some capability rule.
    pub capable: bool,
    /// `tp_btf/sys_enter`: some system call rule.
    pub sys_enter: bool,
}

impl KernelHooks {
    pub fn any(&self) -> bool {
        self.ops != 0 || self.capable || self.sys_enter
    }
}

/// The kernel-class map entries.
#[derive(Clone, Debug, Default)]
pub(crate) struct KernelEntries {
    pub lists: Vec<(abi::KernelKey, abi::KernelList)>,
    pub rules: Vec<abi::Rule>,
}

fn err(detail: String) -> PlanError {
    PlanError::Kernel(detail)
}

/// Lays out the kernel class; `taken` holds the rule ids of the other classes.
pub(crate) fn compile(
    k: &KernelOpsPlan,
    slots: &HashMap<u32, (u32, Mode)>,
    taken: &HashSet<u32>,
    policies: &mut [abi::Policy],
) -> Result<(KernelEntries, KernelHooks), PlanError> {
    let class = abi::CLASS_KERNEL as usize;
    let mut hooks = KernelHooks::default();
    let mut seen_default = HashSet::new();
    for d in &k.defaults {
        let &(slot, mode) = slots
            .get(&d.policy)
            .ok_or_else(|| PlanError::UnknownPolicy {
                what: "a kernel default".into(),
                policy: d.policy,
            })?;
        if !seen_default.insert(d.policy) {
            return Err(err(format!("policy {} has two kernel defaults", d.policy)));
        }
        if let Some(p) = policies.get_mut(slot as usize) {
            p.dflt[class] = d.action.effective(mode).abi();
        }
        if d.action != Action::Allow {
            hooks.ops = kops::ALL;
        }
    }
    let mut rules: HashMap<u32, (abi::Rule, Action)> = HashMap::new();
    for r in &k.rules {
        let &(slot, mode) = slots
            .get(&r.policy)
            .ok_or_else(|| PlanError::UnknownPolicy {
                what: format!("kernel rule {}", r.id),
                policy: r.policy,
            })?;
        if taken.contains(&r.id) {
            return Err(PlanError::DuplicateRule(r.id));
        }
        let entry = abi::Rule {
            id: r.id,
            slot,
            action: r.action.effective(mode).abi(),
            ops: 0,
            ..abi::Rule::default()
        };
        if rules.insert(r.id, (entry, r.action)).is_some() {
            return Err(PlanError::DuplicateRule(r.id));
        }
    }
    let mut out = KernelEntries::default();
    let mut keys = HashSet::new();
    for kr in &k.keys {
        match kr.key {
            KernelKey::Op(op) if op.count_ones() != 1 || op & !kops::ALL != 0 => {
                return Err(err(format!(
                    "operation key {op:#x} is not one operation bit"
                )))
            }
            KernelKey::Capability(c) if c > MAX_CAPABILITY => {
                return Err(err(format!(
                    "capability {c} is out of range (at most {MAX_CAPABILITY})"
                )))
            }
            KernelKey::Syscall(s) if s >= MAX_SYSCALL => {
                return Err(err(format!(
                    "system call {s} is out of range (below {MAX_SYSCALL})"
                )))
            }
            _ => {}
        }
        if !keys.insert(kr.key) {
            return Err(err(format!("{:?} is listed twice", kr.key)));
        }
        if kr.rules.len() > MAX_LIST_LEN {
            return Err(err(format!(
                "{:?} lists {} rules; at most {MAX_LIST_LEN}",
                kr.key,
                kr.rules.len()
            )));
        }
        let off = u32::try_from(out.rules.len()).unwrap_or(u32::MAX);
        for id in &kr.rules {
            let (r, action) = rules.get(id).ok_or_else(|| PlanError::UnknownRule {
                what: format!("kernel key {:?}", kr.key),
                rule: *id,
            })?;
            if matches!(kr.key, KernelKey::Syscall(_)) && *action == Action::Deny {
                return Err(err(format!(
                    "rule {id} denies a system call: the sys_enter tracepoint can only kill or \
                     audit"
                )));
            }
            out.rules.push(*r);
        }
        if kr.rules.is_empty() {
            continue;
        }
        out.lists.push((
            kr.key.abi(),
            abi::KernelList {
                list_off: off,
                list_len: u32::try_from(kr.rules.len()).unwrap_or(u32::MAX),
            },
        ));
        match kr.key {
            KernelKey::Op(op) => hooks.ops |= op,
            KernelKey::Capability(_) => hooks.capable = true,
            KernelKey::Syscall(_) => hooks.sys_enter = true,
        }
    }
    Ok((out, hooks))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{compile as compile_plan, KernelPlan, KernelPolicy};

    fn policy(id: u32, mode: Mode) -> KernelPolicy {
        KernelPolicy {
            id,
            mode,
            file_default: Action::Allow,
            exec_default: Action::Allow,
        }
    }

    fn rule(id: u32, policy: u32, action: Action) -> KernelOpRule {
        KernelOpRule { id, policy, action }
    }

    fn plan(kernel: KernelOpsPlan) -> KernelPlan {
        KernelPlan {
            cgroup_selectors: Default::default(),
            policies: vec![policy(1, Mode::Enforce), policy(2, Mode::Audit)],
            kernel,
            ..KernelPlan::default()
        }
    }

    #[test]
    fn lays_out_keys_rules_and_the_hooks_in_use() {
        let k = KernelOpsPlan {
            rules: vec![
                rule(10, 1, Action::Deny),
                rule(11, 2, Action::Kill),
                rule(12, 1, Action::Kill),
            ],
            keys: vec![
                KernelKeyRules {
                    key: KernelKey::Op(kops::MOUNT),
                    rules: vec![10, 11],
                },
                KernelKeyRules {
                    key: KernelKey::Syscall(272),
                    rules: vec![12],
                },
            ],
            defaults: vec![],
        };
        let e = compile_plan(&plan(k)).unwrap();
        assert_eq!(
            e.hooks.kernel,
            KernelHooks {
                ops: kops::MOUNT,
                capable: false,
                sys_enter: true
            }
        );
        assert!(!e.hooks.file_open && e.hooks.any());
        assert_eq!(
            e.kernel.lists,
            vec![
                (
                    abi::KernelKey {
                        what: abi::KERNEL_OP,
                        id: kops::MOUNT
                    },
                    abi::KernelList {
                        list_off: 0,
                        list_len: 2
                    }
                ),
                (
                    abi::KernelKey {
                        what: abi::KERNEL_SYSCALL,
                        id: 272
                    },
                    abi::KernelList {
                        list_off: 2,
                        list_len: 1
                    }
                ),
            ]
        );
        // Policy 2 is in audit mode: its kill is audit.
        let actions: Vec<(u32, u32, u32)> = e
            .kernel
            .rules
            .iter()
            .map(|r| (r.id, r.slot, r.action))
            .collect();
        assert_eq!(
            actions,
            vec![
                (10, 0, abi::ACTION_DENY),
                (11, 1, abi::ACTION_AUDIT),
                (12, 0, abi::ACTION_KILL)
            ]
        );
    }

    #[test]
    fn a_kernel_default_deny_attaches_every_operation_but_not_capable() {
        let k = KernelOpsPlan {
            defaults: vec![KernelDefault {
                policy: 2,
                action: Action::Deny,
            }],
            ..KernelOpsPlan::default()
        };
        let e = compile_plan(&plan(k)).unwrap();
        assert_eq!(e.hooks.kernel.ops, kops::ALL);
        assert!(!e.hooks.kernel.capable && !e.hooks.kernel.sys_enter);
        let dflt: Vec<u32> = e.policies.iter().map(|(_, p)| p.dflt[3]).collect();
        assert_eq!(dflt, vec![abi::ACTION_ALLOW, abi::ACTION_AUDIT]);
        // Nothing kernel-class: no kernel hook.
        let e = compile_plan(&plan(KernelOpsPlan::default())).unwrap();
        assert!(!e.hooks.kernel.any());
    }

    #[test]
    fn rejects_inconsistent_kernel_entries() {
        let bad = |k: KernelOpsPlan| compile_plan(&plan(k)).unwrap_err();
        let keyed = |key, rules: Vec<u32>, action| KernelOpsPlan {
            rules: vec![rule(1, 1, action)],
            keys: vec![KernelKeyRules { key, rules }],
            defaults: vec![],
        };
        assert!(matches!(
            bad(keyed(
                KernelKey::Op(kops::MOUNT | kops::BPF),
                vec![1],
                Action::Deny
            )),
            PlanError::Kernel(_)
        ));
        assert!(matches!(
            bad(keyed(KernelKey::Capability(64), vec![1], Action::Deny)),
            PlanError::Kernel(_)
        ));
        assert!(matches!(
            bad(keyed(KernelKey::Syscall(5000), vec![1], Action::Kill)),
            PlanError::Kernel(_)
        ));
        assert!(matches!(
            bad(keyed(KernelKey::Syscall(1), vec![1], Action::Deny)),
            PlanError::Kernel(_)
        ));
        assert_eq!(
            bad(keyed(KernelKey::Capability(21), vec![2], Action::Deny)),
            PlanError::UnknownRule {
                what: "kernel key Capability(21)".into(),
                rule: 2
            }
        );
        let mut twice = keyed(KernelKey::Op(kops::BPF), vec![1], Action::Deny);
        twice.rules.push(rule(1, 1, Action::Audit));
        assert_eq!(bad(twice), PlanError::DuplicateRule(1));
        let mut stranger = keyed(KernelKey::Op(kops::BPF), vec![1], Action::Deny);
        stranger.rules[0].policy = 9;
        assert!(matches!(bad(stranger), PlanError::UnknownPolicy { .. }));
    }
}
