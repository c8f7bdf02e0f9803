//! The evaluation half of user-space `alert` rules, shared by the daemon and the pipeline
//! benchmark: the plan's conditions (policy-lang's `condition::Compiled`, regexes and all)
//! compiled once, scoped by the kernel's policy slots, the event a condition sees, and the
//! operations of a kernel record. The alert events themselves are made in the binary's
//! `alerts` module.

use bpf_lsm::{NetOp as KNetOp, Record};
use policy_lang::condition::{CompileError, Compiled};
use policy_lang::event::{KernelEvent, Operation, OwnedEvent, Pod, Process};
use policy_lang::model::{FileOp, NetOp, Protocol};
use policy_lang::plan::{Enforcement, Plan};
use siem_export::SecurityEvent;

/// An alert rule whose condition does not compile.
#[derive(Debug, thiserror::Error)]
#[error(
    "compiling the condition of alert rule `{rule}` failed; fix the condition in its policy file"
)]
pub struct AlertRuleError {
    pub rule: String,
    #[source]
    pub source: CompileError,
}

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
    pub fn new(plan: &Plan, slots: Vec<u32>) -> Result<Self, AlertRuleError> {
        let mut rules = Vec::new();
        for u in &plan.userspace {
            let Some(r) = plan.rules.iter().find(|r| r.id == u.rule) else {
                continue;
            };
            if r.enforcement != Enforcement::UserspaceAlert {
                continue;
            }
            let condition = Compiled::new(&u.condition).map_err(|source| AlertRuleError {
                rule: r.name.clone(),
                source,
            })?;
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

/// argv as one command line, the arguments joined by spaces: `proc.cmdline` and
/// `exec.cmdline` read it.
pub fn command_line(argv: &[siem_export::event::ByteText]) -> String {
    argv.iter().map(lossy).collect::<Vec<_>>().join(" ")
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
            cmdline: p.map(|p| command_line(&p.argv)).unwrap_or_default(),
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
                // Not an operation policies name: no alert condition sees it.
                bpf_lsm::KernelSubject::SelfProtection(_) => return Vec::new(),
            };
            vec![Operation::Kernel(event)]
        }
        Record::ProcExec(_) | Record::ProcFork(_) | Record::ProcExit(_) => Vec::new(),
    }
}
