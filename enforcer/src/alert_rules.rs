//! The evaluation half of user-space `alert` rules, shared by the daemon and the pipeline
//! benchmark: the plan's conditions (policy-lang's `condition::Compiled`, regexes and all)
//! compiled once, scoped by the kernel's policy slots, the event a condition sees, and the
//! operations of a kernel record. The alert events themselves are made in the binary's
//! `alerts` module.
//!
//! Per event, the daemon's path ([`AlertRules::fired_record`], [`AlertRules::fired_on`])
//! first drops the rules whose condition cannot hold on the event's class or whose policy
//! is out of scope, and only then looks at the event: through [`EventSubject`], which
//! computes a field (a lossy string, the joined command line, the ancestors) the first time
//! a condition reads it, so that no string is built that no rule reads.

use bpf_lsm::{NetOp as KNetOp, Record};
use policy_lang::condition::{CompileError, Compiled};
use policy_lang::event::{class, KernelEvent, Operation, OwnedEvent, Pod, Process, Subject};
use policy_lang::model::{FileOp, NetOp, Protocol};
use policy_lang::plan::{Enforcement, Plan};
use siem_export::SecurityEvent;
use std::borrow::Cow;
use std::cell::OnceCell;

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
    /// The kernel policy slots of its policy, as bits.
    scope: u64,
    /// The event classes its condition can hold on (`policy_lang::event::class`).
    classes: u8,
    condition: Compiled,
}

/// The plan's `alert` rules, compiled once.
pub struct AlertRules {
    rules: Vec<AlertRule>,
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
            let scope = slots
                .iter()
                .take(64)
                .enumerate()
                .filter(|(_, id)| **id == r.policy)
                .fold(0u64, |m, (slot, _)| m | 1u64 << slot);
            rules.push(AlertRule {
                id: r.id,
                scope,
                classes: condition.classes(),
                condition,
            });
        }
        Ok(AlertRules { rules })
    }

    /// No alert rules (ad-hoc `--deny-open` rules).
    pub fn none() -> Self {
        AlertRules { rules: Vec::new() }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// The rules (ids, in plan order) whose policy is among `slots` and whose condition
    /// holds on `ev`.
    pub fn fired(&self, slots: u64, ev: &OwnedEvent) -> Vec<u32> {
        self.rules
            .iter()
            .filter(|r| slots & r.scope != 0 && r.condition.eval(ev))
            .map(|r| r.id)
            .collect()
    }

    /// The event classes on which some rule in scope of `slots` can fire.
    pub fn classes(&self, slots: u64) -> u8 {
        self.rules
            .iter()
            .filter(|r| slots & r.scope != 0)
            .fold(0, |m, r| m | r.classes)
    }

    /// The rules (ids, in plan order, each at most once) whose policy is among `slots` and
    /// whose condition holds on one of `ops` of the enriched event `ev`. Same result as
    /// [`AlertRules::fired_any`] on [`owned_event`], without building it.
    pub fn fired_on(&self, slots: u64, ev: &SecurityEvent, ops: &[Operation]) -> Vec<u32> {
        let subject = EventSubject::new(ev);
        let mut out: Vec<u32> = Vec::new();
        for op in ops {
            let bit = op.class_bit();
            for r in &self.rules {
                if slots & r.scope != 0
                    && r.classes & bit != 0
                    && !out.contains(&r.id)
                    && r.condition.eval_on(&subject, op)
                {
                    out.push(r.id);
                }
            }
        }
        out
    }

    /// The rules that fire on verdict `record`, enriched as `ev`: [`AlertRules::fired_on`]
    /// over the record's [`operations`], which are not even built when no rule in scope
    /// can hold on the record's class.
    pub fn fired_record(&self, slots: u64, record: &Record, ev: &SecurityEvent) -> Vec<u32> {
        if self.classes(slots) & record_class(record) == 0 {
            return Vec::new();
        }
        self.fired_on(slots, ev, &operations(record))
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

/// The class bit of the operations of `record` (0: none, such as a process record).
fn record_class(record: &Record) -> u8 {
    match record {
        Record::FileOpen(_) | Record::Path(_) => class::FILE,
        Record::Exec(_) => class::EXEC,
        Record::Net(_) => class::NETWORK,
        Record::Kernel(_) => class::KERNEL,
        Record::ProcExec(_) | Record::ProcFork(_) | Record::ProcExit(_) => 0,
    }
}

/// What a condition sees of an enriched event (as [`owned_event`] builds it), borrowed:
/// each field is computed the first time a condition reads it and kept for the next.
pub struct EventSubject<'e> {
    ev: &'e SecurityEvent,
    exe: OnceCell<Cow<'e, str>>,
    cmdline: OnceCell<String>,
    ancestors: OnceCell<Vec<Cow<'e, str>>>,
    cgroup: OnceCell<Cow<'e, str>>,
}

impl<'e> EventSubject<'e> {
    pub fn new(ev: &'e SecurityEvent) -> Self {
        EventSubject {
            ev,
            exe: OnceCell::new(),
            cmdline: OnceCell::new(),
            ancestors: OnceCell::new(),
            cgroup: OnceCell::new(),
        }
    }

    fn process(&self) -> Option<&'e siem_export::event::Process> {
        self.ev.process.as_ref()
    }
}

impl Subject for EventSubject<'_> {
    fn exe(&self) -> &str {
        self.exe.get_or_init(|| {
            self.process()
                .and_then(|p| p.exe.as_ref())
                .map_or(Cow::Borrowed(""), |e| e.to_string_lossy())
        })
    }

    fn cmdline(&self) -> &str {
        self.cmdline.get_or_init(|| {
            self.process()
                .map(|p| command_line(&p.argv))
                .unwrap_or_default()
        })
    }

    fn uid(&self) -> u32 {
        self.process().map_or(0, |p| p.uid)
    }

    fn ancestor(&self, i: usize) -> Option<&str> {
        self.ancestors
            .get_or_init(|| {
                // An ancestor whose executable is unknown keeps its place, so that the
                // first is always the parent.
                self.process()
                    .map(|p| {
                        p.ancestors
                            .iter()
                            .map(|a| {
                                a.exe
                                    .as_ref()
                                    .map_or(Cow::Borrowed(""), |e| e.to_string_lossy())
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .get(i)
            .map(|a| a.as_ref())
    }

    fn cgroup(&self) -> &str {
        self.cgroup.get_or_init(|| {
            self.ev
                .cgroup
                .as_ref()
                .and_then(|c| c.path.as_ref())
                .map_or(Cow::Borrowed("/"), |p| p.to_string_lossy())
        })
    }

    fn container_id(&self) -> Option<&str> {
        self.ev.container.as_ref().map(|c| c.id.as_str())
    }

    fn pod(&self) -> Option<(&str, &str)> {
        self.ev
            .kubernetes
            .as_ref()
            .map(|k| (k.namespace.as_str(), k.pod_name.as_str()))
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
