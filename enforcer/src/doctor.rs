//! `enforcer doctor`: what this kernel lets the enforcer do, and what the
//! enforcer does about what is missing.

use crate::exit_code;
use bpf_lsm::{probe_kernel, CheckStatus, KernelReport};
use serde::Serialize;

/// How much enforcement this kernel allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Enforcement {
    /// Every rule class is enforced in BPF LSM hooks.
    BpfLsm,
    /// Network rules through cgroup hooks, exec through SIGKILL, the rest audit.
    Degraded,
    /// The enforcer cannot run here.
    Unavailable,
}

impl Enforcement {
    pub fn of(r: &KernelReport) -> Self {
        let base = r.btf && r.ringbuf && r.cgroup2_mount.is_some();
        if base && r.bpf_lsm {
            Enforcement::BpfLsm
        } else if base && (r.cgroup_sock_addr || r.tracepoints) {
            Enforcement::Degraded
        } else {
            Enforcement::Unavailable
        }
    }

    pub fn exit_code(self) -> u8 {
        match self {
            Enforcement::BpfLsm => exit_code::OK,
            Enforcement::Degraded => exit_code::DEGRADED,
            Enforcement::Unavailable => exit_code::ERROR,
        }
    }
}

/// What the enforcer does when a check is not `ok`.
fn consequence(check: &str) -> &'static str {
    match check {
        "btf" => "CO-RE programs cannot be relocated without kernel BTF: the enforcer cannot run",
        "lsm_list" | "bpf_lsm_load" => {
            "no blocking in LSM hooks: network rules fall back to cgroup/connect hooks, exec \
             denies to SIGKILL at exec, other rules become audit-only; try policies against a \
             kernel with BPF LSM with `cargo xtask vm run`"
        }
        "lsm_cgroup" => "none: scoping uses the cgroup-id map, which every kernel here supports",
        "kprobes" => {
            "rules that need a kernel function without an LSM hook or tracepoint are refused"
        }
        "tp_btf" => {
            "the process tree uses raw tracepoints instead; without BPF LSM, exec rules have no \
             kill-at-exec fallback (tp_btf/sched_process_exec): neither enforced nor recorded"
        }
        "tracepoints" => "no process tree from the kernel: enrichment relies on /proc scans",
        "bpf_override_return" => "none: denials go through LSM hooks, not return overrides",
        "bpf_send_signal" => {
            "`kill` actions deny without SIGKILL; without BPF LSM, exec rules are neither \
             enforced nor recorded"
        }
        "ringbuf" => "verdicts cannot reach user space: the enforcer cannot run",
        "cgroup_sock_addr" => "no network enforcement where BPF LSM is missing",
        "cgroup2" => "workloads cannot be scoped by cgroup: the enforcer cannot run",
        "bpffs" => "`enforcer run` mounts bpffs at /sys/fs/bpf",
        "lsm_userns_create" => "user-namespace rules are refused (the hook arrived in Linux 6.1)",
        _ => "",
    }
}

#[derive(Serialize)]
struct JsonCheck<'a> {
    #[serde(flatten)]
    check: &'a bpf_lsm::Check,
    #[serde(skip_serializing_if = "str::is_empty")]
    consequence: &'static str,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    enforcement: Enforcement,
    #[serde(flatten)]
    report: &'a KernelReport,
    /// Replaces the report's own list: each check with its consequence.
    checks: Vec<JsonCheck<'a>>,
}

pub fn run(json: bool) -> anyhow::Result<u8> {
    if !nix::unistd::geteuid().is_root() {
        anyhow::bail!("`enforcer doctor` needs root to load probe programs: run it with sudo");
    }
    let report = probe_kernel();
    let enforcement = Enforcement::of(&report);
    if json {
        let checks = report
            .checks
            .iter()
            .map(|c| JsonCheck {
                check: c,
                consequence: if c.status == CheckStatus::Ok {
                    ""
                } else {
                    consequence(c.name)
                },
            })
            .collect();
        let out = JsonReport {
            enforcement,
            report: &report,
            checks,
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", render(&report, enforcement));
    }
    Ok(enforcement.exit_code())
}

pub fn render(report: &KernelReport, enforcement: Enforcement) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "kernel {}", report.kernel_release);
    for c in &report.checks {
        let mark = match c.status {
            CheckStatus::Ok => "ok     ",
            CheckStatus::Missing => "missing",
            CheckStatus::Error => "error  ",
        };
        let _ = writeln!(out, "  {mark} {:<20} {}", c.name, c.detail);
        if c.status != CheckStatus::Ok {
            let _ = writeln!(out, "          {:<20} -> {}", "", consequence(c.name));
        }
    }
    let verdict = match enforcement {
        Enforcement::BpfLsm => {
            "BPF LSM enforcement available: every rule class is enforced in the kernel"
        }
        Enforcement::Degraded => {
            "degraded: BPF LSM programs cannot be used on this kernel; network rules are enforced \
             through cgroup hooks, exec denies through SIGKILL at exec, the rest is audit-only"
        }
        Enforcement::Unavailable => {
            "unavailable: the enforcer cannot run on this kernel (see above)"
        }
    };
    let _ = writeln!(out, "enforcement: {verdict}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(bpf_lsm: bool, sock_addr: bool) -> KernelReport {
        KernelReport {
            btf: true,
            ringbuf: true,
            bpf_lsm,
            cgroup_sock_addr: sock_addr,
            cgroup2_mount: Some("/sys/fs/cgroup".into()),
            ..KernelReport::default()
        }
    }

    #[test]
    fn classifies_kernels() {
        assert_eq!(Enforcement::of(&report(true, true)), Enforcement::BpfLsm);
        assert_eq!(Enforcement::of(&report(false, true)), Enforcement::Degraded);
        assert_eq!(
            Enforcement::of(&report(false, false)),
            Enforcement::Unavailable
        );
        let mut no_cgroup = report(true, true);
        no_cgroup.cgroup2_mount = None;
        assert_eq!(Enforcement::of(&no_cgroup), Enforcement::Unavailable);
    }

    #[test]
    fn exit_codes_follow_the_documented_contract() {
        assert_eq!(Enforcement::BpfLsm.exit_code(), 0);
        assert_eq!(Enforcement::Degraded.exit_code(), 3);
        assert_eq!(Enforcement::Unavailable.exit_code(), 1);
    }

    #[test]
    fn every_missing_check_says_what_happens() {
        for name in [
            "btf",
            "lsm_list",
            "bpf_lsm_load",
            "lsm_cgroup",
            "kprobes",
            "tp_btf",
            "tracepoints",
            "bpf_override_return",
            "bpf_send_signal",
            "ringbuf",
            "cgroup_sock_addr",
            "cgroup2",
            "bpffs",
        ] {
            assert!(!consequence(name).is_empty(), "{name}");
        }
    }
}
