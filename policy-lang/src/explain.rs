//! `policy compile --explain`: the plan as text, per hook and per rule.

use crate::plan::Plan;
use std::fmt::Write as _;

fn human(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
    } else if bytes >= 1 << 10 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{bytes} B")
    }
}

/// Renders the plan for humans: kernel, hooks, per-policy defaults, per-rule enforcement,
/// map sizes and memory.
pub fn explain(plan: &Plan) -> String {
    let mut o = String::new();
    let k = &plan.kernel;
    let _ = writeln!(
        o,
        "kernel: bpf_lsm={} bpf_send_signal={} cgroup_sock_addr={} lsm_userns_create={}",
        k.bpf_lsm, k.bpf_send_signal, k.cgroup_sock_addr, k.lsm_userns_create
    );
    let _ = writeln!(o, "\nhooks ({}):", plan.hooks.len());
    for h in &plan.hooks {
        let _ = writeln!(o, "  {:<36} {}", h.program, h.why.join(", "));
    }
    for p in &plan.policies {
        let _ = writeln!(o, "\npolicy `{}` (mode {})", p.name, p.mode.name());
        for d in &p.defaults {
            let how = match (d.enforcement, &d.downgrade) {
                (Some(e), Some(why)) => format!(" -> {} (downgraded: {why})", e.describe()),
                (Some(e), None) => format!(" -> {}", e.describe()),
                _ => String::new(),
            };
            let _ = writeln!(
                o,
                "  default {:<8} {}{how}",
                d.class.name(),
                d.posture.name()
            );
        }
        for r in plan.rules.iter().filter(|r| r.policy == p.id) {
            let class = r.class.map_or("condition", |c| c.name());
            let _ = write!(
                o,
                "  rule {:<28} {:<9} {:<6} -> {}",
                format!("`{}`", r.name),
                class,
                r.action.name(),
                r.enforcement.describe()
            );
            if let Some(why) = &r.downgrade {
                let _ = write!(o, " (downgraded: {why})");
            }
            o.push('\n');
        }
    }
    let m = &plan.maps;
    let _ = writeln!(o, "\nentries:");
    for (name, pm) in [
        ("file", &m.file_paths),
        ("exec", &m.exec_paths),
        ("binaries", &m.binaries),
    ] {
        let _ = writeln!(
            o,
            "  {name:<9} {} states, {} edges, {} wildcard edges, {} accepts, {} suffixes",
            pm.states,
            pm.edges.len(),
            pm.wildcards.len(),
            pm.accepts.len(),
            pm.suffixes.len()
        );
    }
    let _ = writeln!(
        o,
        "  network   {} IPv4 prefixes, {} IPv6 prefixes",
        m.net_v4.len(),
        m.net_v6.len()
    );
    let _ = writeln!(
        o,
        "  kernel    {} operations, {} capabilities, {} syscalls",
        m.kernel_ops.len(),
        m.capabilities.len(),
        m.syscalls.len()
    );
    let _ = writeln!(o, "  userspace {} rules", plan.userspace.len());
    let _ = writeln!(o, "\nmaps:");
    for s in plan.sizes.iter().filter(|s| s.entries > 0) {
        let _ = writeln!(
            o,
            "  {:<20} {:<8} {:>8} entries  {:>10}",
            s.map,
            s.kind,
            s.entries,
            human(s.bytes)
        );
    }
    let _ = writeln!(o, "estimated kernel memory: {}", human(plan.memory_bytes));
    o
}
