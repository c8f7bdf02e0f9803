//! The `kernel` rule class from the compiled `Plan` to `bpf_lsm::KernelOpsPlan`: operations,
//! capabilities and system calls keyed to their rules, each rule with the action policy-lang
//! says the kernel takes (so `kill` on a system call is the tracepoint's SIGKILL, and an audit
//! policy only records), and the per-policy kernel default.

use bpf_lsm::plan::Action;
use bpf_lsm::{KernelDefault, KernelKey, KernelKeyRules, KernelOpRule, KernelOpsPlan};
use policy_lang::model::{Class, KernelOp, Posture};
use policy_lang::plan::{ClassDefault, Enforcement, Plan, PlanRule};
use policy_lang::KernelFeatures;

/// What the kernel programs do for a kernel-class rule or default enforced as `e`.
fn kernel_action(e: Enforcement) -> Option<Action> {
    match e {
        Enforcement::LsmDeny => Some(Action::Deny),
        Enforcement::LsmDenyAndKill | Enforcement::TracepointKill => Some(Action::Kill),
        Enforcement::KernelAudit => Some(Action::Audit),
        Enforcement::Allow => Some(Action::Allow),
        Enforcement::CgroupSockDeny
        | Enforcement::KillAtExec
        | Enforcement::UserspaceAudit
        | Enforcement::UserspaceAlert
        | Enforcement::Unenforced => None,
    }
}

/// What a kernel-class rule needs that this build or kernel lacks (empty: nothing).
pub fn rule_needs(r: &PlanRule, k: &KernelFeatures) -> Vec<String> {
    let mut needs = Vec::new();
    if !k.bpf_lsm {
        needs.push(
            "BPF LSM (kernel operations, capabilities and system calls are decided and \
             recorded by the LSM and tp_btf programs, which this kernel does not load)"
                .to_string(),
        );
    }
    if r.ops & KernelOp::UsernsCreate.bit() != 0 && !k.lsm_userns_create {
        needs.push("the `userns_create` LSM hook (Linux 6.1 or later)".into());
    }
    if kernel_action(r.enforcement).is_none() {
        needs.push(format!(
            "a kernel mechanism for `{}`",
            r.enforcement.describe()
        ));
    }
    needs
}

/// Why `defaults: {kernel: deny}` cannot be loaded here, if it cannot.
pub fn default_gap(d: &ClassDefault, k: &KernelFeatures) -> Option<String> {
    if !k.bpf_lsm {
        return Some(
            "`defaults: {kernel: deny}` needs BPF LSM: the kernel operations are decided in \
             LSM hooks"
                .into(),
        );
    }
    if !k.lsm_userns_create {
        return Some(
            "`defaults: {kernel: deny}` covers `userns_create`, which needs the `userns_create` \
             LSM hook (Linux 6.1 or later)"
                .into(),
        );
    }
    match d.enforcement.and_then(kernel_action) {
        Some(_) => None,
        None => Some(format!(
            "`defaults: {{kernel: deny}}` is enforced as {:?}, which the kernel programs cannot do",
            d.enforcement
        )),
    }
}

fn keyed(key: KernelKey, rules: &[u32], known: &[u32]) -> KernelKeyRules {
    KernelKeyRules {
        key,
        rules: rules
            .iter()
            .copied()
            .filter(|id| known.contains(id))
            .collect(),
    }
}

/// The kernel class of `plan` (whose gaps the caller has already refused).
pub fn kernel_ops_plan(plan: &Plan) -> KernelOpsPlan {
    let rules: Vec<KernelOpRule> = plan
        .rules
        .iter()
        .filter(|r| r.class == Some(Class::Kernel))
        .filter_map(|r| {
            Some(KernelOpRule {
                id: r.id,
                policy: r.policy,
                action: kernel_action(r.enforcement)?,
            })
        })
        .collect();
    let known: Vec<u32> = rules.iter().map(|r| r.id).collect();
    let m = &plan.maps;
    let keys = m
        .kernel_ops
        .iter()
        .map(|e| keyed(KernelKey::Op(e.key.bit()), &e.rules, &known))
        .chain(
            m.capabilities
                .iter()
                .map(|e| keyed(KernelKey::Capability(e.key), &e.rules, &known)),
        )
        .chain(
            m.syscalls
                .iter()
                .map(|e| keyed(KernelKey::Syscall(e.key), &e.rules, &known)),
        )
        .filter(|e| !e.rules.is_empty())
        .collect();
    let defaults = plan
        .policies
        .iter()
        .filter_map(|p| {
            let d = p.defaults.iter().find(|d| d.class == Class::Kernel)?;
            let action = match d.posture {
                Posture::Allow => Action::Allow,
                Posture::Deny => d.enforcement.and_then(kernel_action)?,
            };
            (action != Action::Allow).then_some(KernelDefault {
                policy: p.id,
                action,
            })
        })
        .collect();
    KernelOpsPlan {
        rules,
        keys,
        defaults,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel_apply::{kernel_plan, CgroupNode};
    use bpf_lsm::kops;

    fn compile_for(yaml: &str, k: &KernelFeatures) -> Plan {
        let set = policy_lang::load_sources([("p.yaml", yaml)])
            .unwrap_or_else(|e| panic!("{}", e.render()));
        policy_lang::compile(&set, k).unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn root() -> Vec<CgroupNode> {
        vec![CgroupNode {
            path: "/".into(),
            id: 1,
        }]
    }

    const POLICY: &str = "
policies:
  - name: no-escape
    select: {host: true}
    mode: enforce
    defaults: {kernel: deny}
    rules:
      - name: privileged
        action: deny
        kernel:
          ops: [mount, module_load]
          capabilities: [CAP_SYS_ADMIN]
      - name: bpf-ok
        action: allow
        kernel: {ops: [bpf]}
      - name: unshare
        action: kill
        kernel: {syscalls: [unshare], ops: [userns_create]}
      - name: watch
        action: audit
        kernel: {syscalls: [setns]}
  - name: observe
    select: {host: true}
    mode: audit
    rules:
      - name: ptrace
        action: kill
        kernel: {ops: [ptrace]}
";

    #[test]
    fn kernel_rules_become_keys_rules_and_defaults() {
        let plan = compile_for(POLICY, &KernelFeatures::full());
        let k = kernel_plan(&plan, &root()).unwrap().kernel;
        let action = |name: &str| {
            let id = plan.rules.iter().find(|r| r.name == name).unwrap().id;
            k.rules.iter().find(|r| r.id == id).unwrap().action
        };
        assert_eq!(action("privileged"), Action::Deny);
        assert_eq!(action("bpf-ok"), Action::Allow);
        // A syscall rule's kill is the tracepoint's SIGKILL; its operation is killed too.
        assert_eq!(action("unshare"), Action::Kill);
        assert_eq!(action("watch"), Action::Audit);
        // An audit-mode policy records only.
        assert_eq!(action("ptrace"), Action::Audit);
        let key = |key: KernelKey| k.keys.iter().find(|e| e.key == key).map(|e| e.rules.len());
        assert_eq!(key(KernelKey::Op(kops::MOUNT)), Some(1));
        assert_eq!(key(KernelKey::Op(kops::MODULE_LOAD)), Some(1));
        assert_eq!(key(KernelKey::Capability(21)), Some(1));
        assert_eq!(key(KernelKey::Syscall(272)), Some(1));
        assert_eq!(key(KernelKey::Syscall(308)), Some(1));
        assert_eq!(key(KernelKey::Op(kops::USERNS_CREATE)), Some(1));
        assert_eq!(key(KernelKey::Op(kops::KEXEC)), None);
        assert_eq!(
            k.defaults,
            vec![KernelDefault {
                policy: 0,
                action: Action::Deny
            }]
        );
    }

    #[test]
    fn refuses_what_the_kernel_cannot_do() {
        // policy-lang refuses this for such a kernel (E0804); a plan that says its kernel has
        // no `userns_create` hook is refused here too.
        let mut plan = compile_for(
            POLICY.split("  - name: observe").next().unwrap(),
            &KernelFeatures::full(),
        );
        plan.kernel.lsm_userns_create = false;
        let gaps = kernel_plan(&plan, &root()).unwrap_err();
        let text: Vec<String> = gaps.iter().map(ToString::to_string).collect();
        assert!(
            text.iter()
                .any(|t| t
                    .starts_with("`no-escape`: `defaults: {kernel: deny}` covers `userns_create`")),
            "{text:#?}"
        );
        assert!(
            text.iter()
                .any(|t| t.starts_with("`no-escape/unshare`: needs the `userns_create` LSM hook")),
            "{text:#?}"
        );
        let plan = compile_for(
            "
policies:
  - name: p
    select: {host: true}
    mode: enforce
    rules:
      - name: sshd-only
        action: deny
        kernel: {ops: [ptrace], except_from: [/usr/sbin/sshd]}
",
            &KernelFeatures::full(),
        );
        // Binary filters on kernel rules are enforced (binary_filters.rs): no gap.
        let k = kernel_plan(&plan, &root()).unwrap();
        let id = plan.rules[0].id;
        assert_eq!(k.binaries.rules[&id].from, 0);
        assert_eq!(k.binaries.rules[&id].except.count_ones(), 1);
    }
}
