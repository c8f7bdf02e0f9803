//! User-space `alert` rules: the plan's conditions (policy-lang's `condition::Compiled`,
//! regexes and all) evaluated by the daemon on each exec the kernel reports and on each
//! verdict event. An alert that fires is an event of its own, with verdict `alerted` and its
//! rule's message, severity and tags, on the same way as a verdict: events.jsonl, the store,
//! export.
//!
//! Scope: a rule applies to the processes its policy selects. The kernel says which policies
//! apply to a cgroup (`enf_cgroup_policies`: a set of policy slots, the kernel plan's policy
//! order); an exec record carries that set, a verdict's is looked up by its cgroup id.
//!
//! The event a condition sees follows policy-lang's model (`OwnedEvent`): the acting process
//! (for an exec, the caller: its image before the exec, with its ancestors) and the
//! operation.

use crate::verdict_log::RuleInfo;
use siem_export::event::{EventId, Verdict};
use siem_export::SecurityEvent;

pub use enforcer::alert_rules::AlertRules;

/// The event of alert `rule` firing on `base`: the same process, workload and target, a
/// new id, verdict `alerted`, and the rule's names, message, severity and tags.
pub fn alert_event(base: &SecurityEvent, rule: &RuleInfo) -> SecurityEvent {
    let mut ev = base.clone();
    ev.id = EventId::generate(ev.time);
    ev.verdict = Verdict::Alerted;
    ev.policy = rule.policy.clone();
    ev.rule = Some(rule.rule.clone());
    ev.message = if rule.message.is_empty() {
        format!("alert `{}` fired", rule.label)
    } else {
        rule.message.clone()
    };
    ev.severity = rule.severity;
    ev.tags = rule.tags.clone();
    ev
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::verdict_log::Names;
    use bpf_lsm::Record;
    use enforcer::alert_rules::{operations, owned_event};
    use policy_lang::event::Operation;
    use policy_lang::model::FileOp;
    use policy_lang::plan::Plan;
    use policy_lang::KernelFeatures;
    use siem_export::event::{Ancestor, ByteText, Cgroup, Container, EventClass};
    use siem_export::{Severity, Timestamp};

    fn plan(yaml: &str) -> Plan {
        let set = policy_lang::load_sources([("p.yaml", yaml)]).unwrap();
        policy_lang::compile(&set, &KernelFeatures::full()).unwrap()
    }

    const POLICIES: &str = r#"
policies:
  - name: web
    select: {cgroups: ["/kubepods/**"]}
    mode: enforce
    rules:
      - name: web-shell
        message: shell spawned by a web server
        severity: critical
        tags: [T1505.003]
        action: alert
        condition: proc.name in (sh, bash) and proc.parent regex '.*/(nginx|httpd)$' and evt.class = exec
      - name: curl-pipe
        action: alert
        condition: proc.cmdline regex 'curl .*\|\s*(ba)?sh'
  - name: files
    select: {host: true}
    mode: enforce
    rules:
      - name: secrets
        action: alert
        condition: file.path startswith /etc/secret and file.op = write
"#;

    fn base(exe: &str, argv: &[&str], parent: &str) -> SecurityEvent {
        let mut ev = SecurityEvent::new(
            Timestamp::from_unix_nanos(1_700_000_000_000_000_000),
            "h",
            Verdict::Audited,
            EventClass::Exec,
            "exec",
            Severity::High,
        );
        ev.process = Some(siem_export::event::Process {
            pid: 10,
            tgid: 10,
            ppid: Some(9),
            uid: 33,
            gid: 33,
            user: None,
            comm: ByteText::new(b"sh"),
            exe: Some(ByteText::new(exe.as_bytes())),
            argv: argv.iter().map(|a| ByteText::new(a.as_bytes())).collect(),
            argv_truncated: false,
            cwd: None,
            exec_id: Some("x".into()),
            start_time: None,
            ancestors: vec![Ancestor {
                pid: 9,
                exe: Some(ByteText::new(parent.as_bytes())),
                exec_id: Some("y".into()),
            }],
        });
        ev.cgroup = Some(Cgroup {
            id: 7,
            path: Some(ByteText::new(
                b"/kubepods/burstable/pod1/cri-containerd-ab.scope",
            )),
        });
        ev.container = Some(Container {
            id: "ab".into(),
            runtime: Some("containerd".into()),
        });
        ev
    }

    #[test]
    fn fires_by_condition_and_policy_scope() {
        let p = plan(POLICIES);
        let rules = AlertRules::new(&p, vec![0, 1]).unwrap();
        assert_eq!(rules.len(), 3);
        let exec = |path: &str| Operation::Exec {
            path: path.into(),
            cmdline: String::new(),
        };
        let ev = base("/bin/sh", &["sh", "-c", "id"], "/usr/sbin/nginx");
        let o = owned_event(&ev, exec("/usr/bin/id"));
        assert_eq!(o.process.ancestors, vec!["/usr/sbin/nginx".to_string()]);
        assert_eq!(o.container_id.as_deref(), Some("ab"));
        // Both policies' slots: web-shell fires.
        assert_eq!(rules.fired(0b11, &o), vec![0]);
        // Only the `files` policy's slot: out of web-shell's scope.
        assert!(rules.fired(0b10, &o).is_empty());
        // Not under a web server.
        let o = owned_event(&base("/bin/sh", &["sh"], "/usr/sbin/sshd"), exec("/bin/id"));
        assert!(rules.fired(0b11, &o).is_empty());
        // The regex on the command line.
        let o = owned_event(
            &base(
                "/bin/bash",
                &["bash", "-c", "curl http://x | sh"],
                "/sbin/init",
            ),
            exec("/usr/bin/curl"),
        );
        assert_eq!(rules.fired(0b11, &o), vec![1]);
    }

    /// The daemon's path (class and scope filter, the lazy view of the event) decides as
    /// the owned event does, on every class and scope.
    #[test]
    fn the_lazy_view_decides_as_the_owned_event() {
        let p = plan(POLICIES);
        let rules = AlertRules::new(&p, vec![0, 1]).unwrap();
        let file = |op: FileOp, path: &str| Operation::File {
            op,
            path: path.into(),
        };
        let events = [
            base("/bin/sh", &["sh", "-c", "id"], "/usr/sbin/nginx"),
            base(
                "/bin/bash",
                &["bash", "-c", "curl http://x | sh"],
                "/sbin/init",
            ),
            base("/bin/sh", &["sh"], "/usr/sbin/sshd"),
        ];
        let ops = [
            Operation::Exec {
                path: "/usr/bin/id".into(),
                cmdline: String::new(),
            },
            file(FileOp::Write, "/etc/secret/key"),
            file(FileOp::Read, "/etc/secret/key"),
        ];
        let mut fired = 0;
        for ev in &events {
            for slots in [0b00, 0b01, 0b10, 0b11] {
                for op in &ops {
                    let want = rules.fired(slots, &owned_event(ev, op.clone()));
                    fired += want.len();
                    assert_eq!(rules.fired_on(slots, ev, std::slice::from_ref(op)), want);
                }
                let mut o = owned_event(ev, ops[0].clone());
                let want = rules.fired_any(slots, &mut o, ops.to_vec());
                assert_eq!(rules.fired_on(slots, ev, &ops), want);
            }
        }
        // Not vacuous: every rule fires somewhere.
        assert!(fired >= 3);
        // A file record reaches only the `files` rule, and not at all out of its scope.
        assert_eq!(rules.classes(0b01), policy_lang::event::class::ALL);
        assert_eq!(rules.classes(0b10), policy_lang::event::class::FILE);
    }

    fn rec_of(access: u32) -> bpf_lsm::FileRecord {
        bpf_lsm::FileRecord {
            header: bpf_lsm::Header {
                action: bpf_lsm::Action::Audit,
                ktime_ns: 1,
                cgroup_id: 7,
                pid: 10,
                tid: 10,
                uid: 0,
                gid: 0,
                rule_id: None,
                policy_id: None,
                flags: 0,
                comm: "sh".into(),
                suppressed: 0,
            },
            f_flags: 2,
            f_mode: 3,
            access,
            path: b"/etc/secret/key".to_vec(),
        }
    }

    #[test]
    fn a_verdict_is_one_operation_per_access_bit() {
        let p = plan(POLICIES);
        let rules = AlertRules::new(&p, vec![0, 1]).unwrap();
        let rec = rec_of(FileOp::Read.bit() | FileOp::Write.bit());
        let ops = operations(&Record::FileOpen(rec));
        assert_eq!(ops.len(), 2);
        let ev = base("/bin/sh", &["sh"], "/sbin/init");
        let mut o = owned_event(&ev, ops[0].clone());
        assert_eq!(rules.fired_any(0b10, &mut o, ops.clone()), vec![2]);
        assert!(rules.fired_any(0b01, &mut o, ops).is_empty());
        let rec = Record::FileOpen(rec_of(FileOp::Read.bit() | FileOp::Write.bit()));
        assert_eq!(rules.fired_record(0b10, &rec, &ev), vec![2]);
        assert!(rules.fired_record(0b01, &rec, &ev).is_empty());
        // Read only: the rule wants a write.
        let rec = Record::FileOpen(rec_of(FileOp::Read.bit()));
        assert!(rules.fired_record(0b11, &rec, &ev).is_empty());
    }

    #[test]
    fn an_alert_event_carries_its_rule() {
        let p = plan(POLICIES);
        let names = Names::of(&p);
        let ev = base("/bin/sh", &["sh"], "/usr/sbin/nginx");
        let a = alert_event(&ev, &names.rules[&0]);
        assert_eq!(a.verdict, Verdict::Alerted);
        assert_ne!(a.id, ev.id);
        assert_eq!(a.policy.as_deref(), Some("web"));
        assert_eq!(a.rule.as_deref(), Some("web-shell"));
        assert_eq!(a.message, "shell spawned by a web server");
        assert_eq!(a.severity, Severity::Critical);
        assert_eq!(a.tags, vec!["T1505.003".to_string()]);
        assert_eq!(a.process, ev.process);
        assert_eq!(a.container, ev.container);
    }
}
