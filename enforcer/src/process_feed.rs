//! The kernel's process records in the daemon. Fork, exec and exit keep the process table
//! current (fork adds the child, exec replaces the image, its argv and exec id, exit marks
//! the process exited for eviction after the grace period); they are not verdicts and are
//! not written as events. Each exec also runs the `alert` rules, as does each verdict.

use crate::alerts::{self, AlertRules};
use crate::metrics::DaemonMetrics;
use crate::verdict_log::{self, Clock, Names};
use bpf_lsm::{Action, Loaded, ProcExecRecord, Record};
use enforcer::enrich::{Enricher, ExecEvent};
use policy_lang::event::Operation;
use siem_export::event::{ByteText, Cgroup, EventClass, ExecTarget, Target, Verdict};
use siem_export::{SecurityEvent, Severity};
use std::collections::HashMap;

/// What alerts are made with.
pub struct Feed<'a> {
    pub host: &'a str,
    pub clock: &'a Clock,
    pub names: &'a Names,
    pub alerts: &'a AlertRules,
    pub metrics: &'a DaemonMetrics,
    /// The kernel reports every exec in scope (the process tracepoints are attached).
    pub exec_records: bool,
}

/// Applies one process record to the table; returns the alerts an exec fired.
pub fn on_process(record: &Record, enricher: &mut Enricher, f: &Feed) -> Vec<SecurityEvent> {
    match record {
        Record::ProcFork(r) => {
            f.metrics.count_process_event("fork");
            enricher
                .table_mut()
                .on_fork(r.parent_pid, r.child_pid, r.child_start_ns);
            Vec::new()
        }
        Record::ProcExit(r) => {
            f.metrics.count_process_event("exit");
            enricher
                .table_mut()
                .on_exit(r.header.pid, r.header.ktime_ns);
            Vec::new()
        }
        Record::ProcExec(r) => {
            f.metrics.count_process_event("exec");
            on_exec(r, enricher, f)
        }
        _ => Vec::new(),
    }
}

fn on_exec(r: &ProcExecRecord, enricher: &mut Enricher, f: &Feed) -> Vec<SecurityEvent> {
    let h = &r.header;
    // The name given to execve; relative (or unread) ones are taken from /proc/<pid>/exe.
    let absolute = r.filename.first() == Some(&b'/');
    // The caller, as the table knows it before the exec: the acting process of the exec
    // (policy-lang's model), with its ancestors, exec id and workload.
    let base = (!f.alerts.is_empty()).then(|| {
        let mut ev = SecurityEvent::new(
            f.clock.wall(h.ktime_ns),
            f.host,
            Verdict::Alerted,
            EventClass::Exec,
            "exec",
            Severity::High,
        );
        ev.kernel_ns = Some(h.ktime_ns);
        ev.process = Some(verdict_log::process(h));
        ev.cgroup = Some(Cgroup {
            id: h.cgroup_id,
            path: None,
        });
        enricher.enrich(&mut ev, h.pid, h.cgroup_id);
        ev
    });
    enricher.table_mut().on_exec(
        h.pid,
        &ExecEvent {
            time_ns: h.ktime_ns,
            ppid: Some(r.ppid),
            exe: absolute.then_some(&r.filename[..]),
            argv: (!r.argv_unread()).then_some(&r.argv[..]),
            argv_truncated: r.argv_truncated(),
            cwd: r.cwd.as_deref(),
            uid: Some(h.uid),
            gid: Some(h.gid),
        },
    );
    let Some(mut base) = base else {
        return Vec::new();
    };
    let path: Vec<u8> = if absolute {
        r.filename.clone()
    } else {
        enricher
            .table()
            .peek(h.pid)
            .and_then(|e| e.exe.as_deref().map(<[u8]>::to_vec))
            .unwrap_or_else(|| r.filename.clone())
    };
    let argv = verdict_log::split_argv(&r.argv);
    let cmdline = enforcer::alert_rules::command_line(&argv);
    base.target = Some(Target::Exec(ExecTarget {
        path: ByteText::new(path.clone()),
        argv,
        argv_truncated: r.argv_truncated(),
    }));
    let op = Operation::Exec {
        path: String::from_utf8_lossy(&path).into_owned(),
        cmdline,
    };
    fire(&base, &f.alerts.fired_on(r.slots, &base, &[op]), f)
}

/// The alerts a verdict event fires. An allowed (audited) exec is left to its exec record,
/// which the kernel also sends when the process tracepoints run: one alert per exec.
pub fn on_verdict(
    record: &Record,
    event: &SecurityEvent,
    slots: u64,
    f: &Feed,
) -> Vec<SecurityEvent> {
    if f.alerts.is_empty() || slots == 0 {
        return Vec::new();
    }
    if f.exec_records && matches!(record, Record::Exec(e) if e.header.action == Action::Audit) {
        return Vec::new();
    }
    fire(event, &f.alerts.fired_record(slots, record, event), f)
}

fn fire(base: &SecurityEvent, rules: &[u32], f: &Feed) -> Vec<SecurityEvent> {
    rules
        .iter()
        .filter_map(|id| f.names.rules.get(id))
        .map(|info| {
            f.metrics.count_alert();
            alerts::alert_event(base, info)
        })
        .collect()
}

/// The policy slots of cgroups, from the kernel's map, cached: a cgroup's entry is written
/// once (by the loader, or at mkdir by inheritance) and goes with the cgroup, whose id is
/// never reused. Bounded: past `MAX` entries the cache starts over.
#[derive(Default)]
pub struct SlotCache {
    slots: HashMap<u64, u64>,
}

impl SlotCache {
    const MAX: usize = 16_384;

    /// The slots of `cgroup_id` (0: in no policy's scope, or the map could not be read).
    pub fn get(&mut self, loaded: &Loaded, cgroup_id: u64) -> u64 {
        if let Some(s) = self.slots.get(&cgroup_id) {
            return *s;
        }
        match loaded.cgroup_policy_slots(cgroup_id) {
            Ok(Some(s)) => {
                if self.slots.len() >= Self::MAX {
                    self.slots.clear();
                }
                self.slots.insert(cgroup_id, s);
                s
            }
            Ok(None) => 0,
            Err(e) => {
                tracing::debug!(error = %e, cgroup_id, "reading a cgroup's policies failed");
                0
            }
        }
    }
}

/// One line for a terminal.
pub fn human(ev: &SecurityEvent) -> String {
    let p = ev.process.as_ref();
    format!(
        "ALERT {} {} pid={} exe={} cgroup={} rule={}/{}",
        ev.operation,
        match &ev.target {
            Some(Target::Exec(t)) => t.path.to_string(),
            Some(Target::File(t)) => t.path.to_string(),
            _ => String::new(),
        },
        p.map_or(0, |p| p.tgid),
        p.and_then(|p| p.exe.as_ref())
            .map_or_else(|| "?".to_string(), ToString::to_string),
        ev.cgroup.as_ref().map_or(0, |c| c.id),
        ev.policy.as_deref().unwrap_or("?"),
        ev.rule.as_deref().unwrap_or("?"),
    )
}
