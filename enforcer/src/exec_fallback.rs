//! Exec rules on a kernel without BPF LSM: `tp_btf/sched_process_exec` (`enf_exec_fallback`)
//! matches the new executable with the exec matcher and kills the process before it runs
//! (policy-lang's `killed_at_exec`), or records it (`audited in the kernel`). Which exec rules
//! and defaults it takes, and what the daemon says about them.

use policy_lang::model::Class;
use policy_lang::plan::{ClassDefault, Enforcement, Plan, PlanRule};
use policy_lang::KernelFeatures;

/// The enforcements the fallback program carries out.
fn carried_out(e: Enforcement) -> bool {
    matches!(
        e,
        Enforcement::KillAtExec | Enforcement::KernelAudit | Enforcement::Allow
    )
}

/// Whether the fallback can run at all on `kernel`: a `tp_btf` program that sends SIGKILL.
pub fn available(kernel: &KernelFeatures) -> bool {
    !kernel.bpf_lsm && kernel.tp_btf && kernel.bpf_send_signal
}

/// Whether the exec rule `r` is enforced by the fallback on `kernel`.
pub fn takes_rule(r: &PlanRule, kernel: &KernelFeatures) -> bool {
    available(kernel) && r.class == Some(Class::Exec) && carried_out(r.enforcement)
}

/// Whether the exec default `d` is enforced by the fallback on `kernel`.
pub fn takes_default(d: &ClassDefault, kernel: &KernelFeatures) -> bool {
    available(kernel) && d.class == Class::Exec && d.enforcement.is_some_and(carried_out)
}

/// One log line per exec rule the fallback kills at, saying what that means.
pub fn notes(plan: &Plan) -> Vec<String> {
    plan.rules
        .iter()
        .filter(|r| takes_rule(r, &plan.kernel) && r.enforcement == Enforcement::KillAtExec)
        .map(|r| {
            format!(
                "exec rule `{}` runs without BPF LSM: the exec succeeds at the system call and \
                 the process is killed (SIGKILL from tp_btf/sched_process_exec) before it runs \
                 its first instruction",
                r.name
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel_apply::tests::compile_without_lsm;

    #[test]
    fn deny_and_kill_exec_rules_are_killed_at_exec_and_audit_stays_audit() {
        let plan = compile_without_lsm(
            "policies: [{name: p, select: {host: true}, mode: enforce, rules: [
  {name: d, action: deny, allow_downgrade: true, exec: {path: /usr/bin/nc}},
  {name: k, action: kill, exec: {path: /usr/bin/ncat}},
  {name: a, action: audit, exec: {path: /usr/bin/curl}}]}]",
        );
        let e: Vec<Enforcement> = plan.rules.iter().map(|r| r.enforcement).collect();
        assert_eq!(
            e,
            [
                Enforcement::KillAtExec,
                Enforcement::KillAtExec,
                Enforcement::KernelAudit
            ]
        );
        assert!(plan.rules.iter().all(|r| takes_rule(r, &plan.kernel)));
        assert_eq!(notes(&plan).len(), 2);
        let without_tp = KernelFeatures {
            tp_btf: false,
            ..plan.kernel
        };
        assert!(!takes_rule(&plan.rules[0], &without_tp));
    }
}
