//! Verdicts as a person and a program read them: one line on stdout, and one
//! event in the native export schema (siem-export) per line in
//! `<state-dir>/events.jsonl`.

use crate::config::EventLogConfig;
use bpf_lsm::events::{Header, Record};
use bpf_lsm::plan::Action;
use siem_export::event::{
    AddressFamily, ByteText, Cgroup, Direction, EventClass, ExecTarget, FileTarget, NetworkTarget,
    Process, Protocol, Target,
};
use siem_export::sink::{FsyncPolicy, RotationHold};
use siem_export::{FileSink, FileSinkConfig, SecurityEvent, Severity, Sink, Timestamp};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// Converts kernel timestamps (CLOCK_BOOTTIME) to wall-clock time. The
/// offset is taken once: a wall-clock step later shifts times, never order.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    realtime_minus_boottime_ns: i128,
}

impl Clock {
    pub fn now() -> anyhow::Result<Self> {
        use nix::time::{clock_gettime, ClockId};
        let ns = |t: nix::sys::time::TimeSpec| {
            i128::from(t.tv_sec()) * 1_000_000_000 + i128::from(t.tv_nsec())
        };
        let real = ns(clock_gettime(ClockId::CLOCK_REALTIME)?);
        let boot = ns(clock_gettime(ClockId::CLOCK_BOOTTIME)?);
        Ok(Clock {
            realtime_minus_boottime_ns: real - boot,
        })
    }

    pub fn wall(&self, ktime_ns: u64) -> Timestamp {
        let unix = i128::from(ktime_ns) + self.realtime_minus_boottime_ns;
        Timestamp::from_unix_nanos(i64::try_from(unix).unwrap_or(i64::MAX))
    }
}

/// What events say about a rule: from the compiled plan, or an ad-hoc rule.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RuleInfo {
    /// `policy/rule`, or the ad-hoc rule as given.
    pub label: String,
    pub policy: Option<String>,
    pub rule: String,
    pub message: String,
    pub severity: Severity,
    pub tags: Vec<String>,
}

impl RuleInfo {
    pub fn adhoc(label: String) -> Self {
        RuleInfo {
            rule: label.clone(),
            message: format!("{label}: matched"),
            label,
            policy: None,
            severity: Severity::High,
            tags: Vec::new(),
        }
    }
}

/// Rule and policy ids as the kernel reports them, to names (kept in a pinned generation's
/// manifest, `pinning.rs`).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Names {
    pub rules: HashMap<u32, RuleInfo>,
    pub policies: HashMap<u32, String>,
}

fn severity(s: policy_lang::model::Severity) -> Severity {
    use policy_lang::model::Severity as S;
    match s {
        S::Info => Severity::Info,
        S::Low => Severity::Low,
        S::Medium => Severity::Medium,
        S::High => Severity::High,
        S::Critical => Severity::Critical,
    }
}

impl Names {
    pub fn of(plan: &policy_lang::Plan) -> Self {
        let policies: HashMap<u32, String> = plan
            .policies
            .iter()
            .map(|p| (p.id, p.name.clone()))
            .collect();
        let rules = plan
            .rules
            .iter()
            .map(|r| {
                let policy = policies.get(&r.policy).cloned();
                let info = RuleInfo {
                    label: format!("{}/{}", policy.as_deref().unwrap_or("?"), r.name),
                    policy,
                    rule: r.name.clone(),
                    message: r.message.clone(),
                    severity: severity(r.severity),
                    tags: r.tags.clone(),
                };
                (r.id, info)
            })
            .collect();
        Names { rules, policies }
    }

    fn rule(&self, h: &Header) -> Option<&RuleInfo> {
        match h.rule_id {
            Some(bpf_lsm::abi::RULE_SELF) => Some(crate::self_guard::rule_info()),
            id => id.and_then(|id| self.rules.get(&id)),
        }
    }

    fn policy(&self, h: &Header) -> Option<&str> {
        match h.policy_id {
            Some(bpf_lsm::abi::POLICY_SELF) => Some(crate::self_guard::POLICY),
            id => id.and_then(|id| self.policies.get(&id)).map(String::as_str),
        }
    }

    /// `policy/rule`, `policy/default`, or `?` for what the plan does not name.
    fn label(&self, h: &Header) -> String {
        match (self.rule(h), self.policy(h)) {
            (Some(r), _) => r.label.clone(),
            (None, Some(p)) if h.by_default() => format!("{p}/default"),
            (None, Some(p)) => p.to_string(),
            (None, None) if h.path_unresolved() => "unresolved-path".into(),
            (None, None) => "?".into(),
        }
    }
}

fn verdict(a: Action) -> siem_export::event::Verdict {
    use siem_export::event::Verdict as V;
    match a {
        Action::Allow => V::Allowed,
        Action::Audit => V::Audited,
        Action::Deny => V::Denied,
        Action::Kill => V::Killed,
    }
}

/// The acting task of a record, before enrichment.
pub fn process(h: &Header) -> Process {
    Process {
        pid: h.tid,
        tgid: h.pid,
        ppid: None,
        uid: h.uid,
        gid: h.gid,
        user: None,
        comm: ByteText::new(h.comm.as_bytes()),
        exe: None,
        argv: Vec::new(),
        argv_truncated: false,
        cwd: None,
        exec_id: None,
        start_time: None,
        ancestors: Vec::new(),
    }
}

/// The tag of an event decided by the exec fallback of a kernel without BPF LSM.
pub const EXEC_FALLBACK_TAG: &str = "enforcement:killed_at_exec";

/// The export event for one kernel verdict.
pub fn security_event(record: &Record, names: &Names, host: &str, clock: &Clock) -> SecurityEvent {
    let h = record.header();
    let path_op;
    let kernel_op;
    let (class, operation) = match record {
        Record::FileOpen(_) => (EventClass::File, "open"),
        Record::Exec(_) => (EventClass::Exec, "exec"),
        Record::Net(n) => (EventClass::Network, n.op.name()),
        // Not verdicts: the daemon feeds them to the process table (process_feed.rs).
        Record::ProcExec(_) => (EventClass::Process, "exec"),
        Record::ProcFork(_) => (EventClass::Process, "fork"),
        Record::ProcExit(_) => (EventClass::Process, "exit"),
        Record::Path(p) => {
            path_op = p.op_name();
            (EventClass::File, path_op.as_str())
        }
        Record::Kernel(k) => {
            kernel_op = crate::kernel_record::operation(k);
            (EventClass::Kernel, kernel_op.as_str())
        }
    };
    let rule = names.rule(h);
    let mut ev = SecurityEvent::new(
        clock.wall(h.ktime_ns),
        host,
        verdict(h.action),
        class,
        operation,
        rule.map_or(Severity::High, |r| r.severity),
    );
    ev.kernel_ns = Some(h.ktime_ns);
    ev.suppressed = u64::from(h.suppressed);
    ev.policy = names
        .policy(h)
        .map(String::from)
        .or_else(|| rule.and_then(|r| r.policy.clone()));
    ev.rule = rule
        .map(|r| r.rule.clone())
        .or_else(|| h.by_default().then(|| "default".to_string()));
    ev.tags = rule.map(|r| r.tags.clone()).unwrap_or_default();
    ev.message = match (rule, h.path_unresolved(), h.by_default()) {
        (_, true, _) => format!("{operation} of a path that could not be resolved: failed closed"),
        (Some(r), false, _) => r.message.clone(),
        (None, false, true) => format!("{operation} not allowed by the policy's default posture"),
        (None, false, false) => format!("{operation} matched the policy"),
    };
    if h.binary_unknown() {
        ev.message.push_str(
            " (the acting binary is unknown, so `from`/`except_from` could not be checked: \
             failed closed)",
        );
    }
    if h.memfd() {
        ev.message
            .push_str(" (the program was a memfd: in memory, with no file on disk)");
    }
    if h.exec_fallback() {
        // Without BPF LSM: say what happened instead of a refused exec.
        if h.killed() {
            ev.message.push_str(
                " (killed at exec, no BPF LSM: the exec succeeded and the process was killed \
                 before it ran)",
            );
            ev.tags.push(EXEC_FALLBACK_TAG.to_string());
        } else {
            ev.message
                .push_str(" (exec fallback, no BPF LSM: recorded after the exec)");
        }
    }
    if h.suppressed > 0 {
        ev.message.push_str(&format!(
            " ({} more like it since the last one were not reported: rate limit)",
            h.suppressed
        ));
    }
    ev.process = Some(process(h));
    ev.cgroup = Some(Cgroup {
        id: h.cgroup_id,
        path: None,
    });
    ev.target = Some(match record {
        Record::FileOpen(f) => Target::File(FileTarget {
            path: ByteText::new(f.path.clone()),
            flags: Some(f.f_flags),
            mode: None,
            operation: Some("open".into()),
            path_truncated: h.path_unresolved(),
            second_path: None,
        }),
        Record::Exec(e) => Target::Exec(ExecTarget {
            path: ByteText::new(e.path.clone()),
            argv: Vec::new(),
            argv_truncated: false,
        }),
        Record::Net(n) => network_target(n),
        Record::ProcExec(e) => Target::Exec(ExecTarget {
            path: ByteText::new(e.filename.clone()),
            argv: split_argv(&e.argv),
            argv_truncated: e.argv_truncated(),
        }),
        Record::ProcFork(_) | Record::ProcExit(_) => return ev,
        Record::Path(p) => Target::File(FileTarget {
            path: ByteText::new(p.path.clone()),
            flags: None,
            mode: None,
            operation: Some(operation.to_string()),
            path_truncated: h.path_unresolved(),
            second_path: p.path2.clone().map(ByteText::new),
        }),
        Record::Kernel(k) => crate::kernel_record::target(k),
    });
    ev
}

/// argv in `/proc/<pid>/cmdline` form (each argument NUL-terminated) as a list.
pub fn split_argv(argv: &[u8]) -> Vec<ByteText> {
    let body = argv.strip_suffix(b"\0").unwrap_or(argv);
    if argv.is_empty() {
        return Vec::new();
    }
    body.split(|&b| b == 0).map(ByteText::new).collect()
}

/// connect and send name the remote end, bind and listen the local one.
fn network_target(n: &bpf_lsm::NetRecord) -> Target {
    let (local, remote) = match n.op {
        bpf_lsm::NetOp::Connect | bpf_lsm::NetOp::Send => (None, Some((n.addr, n.port))),
        bpf_lsm::NetOp::Bind | bpf_lsm::NetOp::Listen => (Some((n.addr, n.port)), None),
    };
    Target::Network(NetworkTarget {
        family: if n.addr.is_ipv4() {
            AddressFamily::Ipv4
        } else {
            AddressFamily::Ipv6
        },
        protocol: match n.protocol {
            6 => Some(Protocol::Tcp),
            17 => Some(Protocol::Udp),
            _ => None,
        },
        direction: if remote.is_some() {
            Direction::Egress
        } else {
            Direction::Ingress
        },
        src_ip: local.map(|(a, _)| a),
        src_port: local.map(|(_, p)| p),
        dst_ip: remote.map(|(a, _)| a),
        dst_port: remote.map(|(_, p)| p),
        unix_path: None,
    })
}

/// One line for a terminal.
pub fn human(record: &Record, names: &Names) -> String {
    let h = record.header();
    let verdict = match h.action {
        Action::Allow => "allow",
        Action::Audit => "audit",
        Action::Deny => "DENY ",
        Action::Kill => "KILL ",
    };
    let net_text;
    let path_op;
    let kernel_text;
    let kernel_op;
    let (hook, path) = match record {
        Record::Path(p) => {
            path_op = p.op_name();
            net_text = match &p.path2 {
                // rename: from -> to; link: new name -> existing file.
                Some(second) => [&p.path[..], b" -> ", &second[..]].concat(),
                None => p.path.clone(),
            };
            (path_op.as_str(), &net_text)
        }
        Record::FileOpen(f) => ("open", &f.path),
        Record::Exec(e) if h.exec_fallback() && h.killed() => {
            ("exec (fallback, killed at exec)", &e.path)
        }
        Record::Exec(e) => ("exec", &e.path),
        Record::Net(n) => {
            net_text = std::net::SocketAddr::new(n.addr, n.port)
                .to_string()
                .into_bytes();
            (n.op.name(), &net_text)
        }
        Record::ProcExec(e) => ("process exec", &e.filename),
        Record::ProcFork(f) => {
            net_text = format!("child={}", f.child_pid).into_bytes();
            ("process fork", &net_text)
        }
        Record::ProcExit(x) => {
            net_text = format!("status={:#x}", x.exit_code).into_bytes();
            ("process exit", &net_text)
        }
        Record::Kernel(k) => {
            kernel_op = crate::kernel_record::operation(k);
            kernel_text = crate::kernel_record::detail(k).into_bytes();
            (kernel_op.as_str(), &kernel_text)
        }
    };
    let path = if h.path_unresolved() {
        "<unresolved path>".to_string()
    } else {
        ByteText::new(path.clone()).to_string()
    };
    format!(
        "{verdict} {hook} {path} pid={} comm={} uid={} cgroup={} rule={}",
        h.pid,
        h.comm,
        h.uid,
        h.cgroup_id,
        names.label(h)
    )
}

/// The event log's name in the state directory.
pub const FILE_NAME: &str = "events.jsonl";

/// `<state-dir>/events.jsonl`, synced after every verdict: a verdict that
/// was printed is on disk. With export on it is also export's queue: the log
/// follower reads it, and `hold` keeps rotation from deleting what it has not
/// read.
pub struct VerdictLog {
    sink: FileSink,
}

impl VerdictLog {
    pub fn open(
        path: &Path,
        settings: &EventLogConfig,
        hold: Option<Arc<RotationHold>>,
    ) -> anyhow::Result<Self> {
        let mut cfg = FileSinkConfig::new(path);
        cfg.fsync = FsyncPolicy::EveryBatch;
        cfg.max_bytes = settings.max_file_bytes;
        cfg.keep = settings.keep_files;
        cfg.hold = hold;
        Ok(VerdictLog {
            sink: FileSink::open(cfg)?,
        })
    }

    pub fn append(&mut self, event: &SecurityEvent) -> anyhow::Result<()> {
        let report = self.sink.send(std::slice::from_ref(event));
        if let Some(d) = report.deliveries.iter().find(|d| !d.is_delivered()) {
            anyhow::bail!("recording a verdict in the event log failed: {d:?}");
        }
        Ok(())
    }

    pub fn flush(&mut self) -> anyhow::Result<()> {
        Ok(self.sink.flush()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bpf_lsm::events::FileRecord;

    fn header(action: Action, rule_id: Option<u32>, flags: u32) -> Header {
        Header {
            action,
            ktime_ns: 5_000_000_000,
            cgroup_id: 99,
            pid: 10,
            tid: 11,
            uid: 0,
            gid: 0,
            rule_id,
            policy_id: Some(0),
            flags,
            comm: "cat".into(),
            suppressed: 0,
        }
    }

    fn open(path: &[u8], h: Header) -> Record {
        Record::FileOpen(FileRecord {
            header: h,
            f_flags: 0,
            f_mode: 1,
            access: 1,
            path: path.to_vec(),
        })
    }

    fn names() -> Names {
        let set = policy_lang::load_sources([(
            "p.yaml",
            "policies:\n  - name: web\n    select: {host: true}\n    mode: enforce\n    rules:\n      \
             - name: r1\n        message: shadow read\n        severity: critical\n        \
             tags: [T1003.008]\n        action: deny\n        file: {path: /etc/shadow}\n",
        )])
        .unwrap();
        Names::of(&policy_lang::compile(&set, &policy_lang::KernelFeatures::full()).unwrap())
    }

    #[test]
    fn a_kernel_deny_becomes_a_denied_file_event_named_after_its_rule() {
        let clock = Clock {
            realtime_minus_boottime_ns: 1_700_000_000_000_000_000,
        };
        let ev = security_event(
            &open(b"/etc/shadow", header(Action::Deny, Some(0), 0)),
            &names(),
            "h",
            &clock,
        );
        let json = serde_json::to_value(&ev).unwrap();
        assert_eq!(json["verdict"], "denied");
        assert_eq!(json["class"], "file");
        assert_eq!(json["process"]["tgid"], 10);
        assert_eq!(json["process"]["pid"], 11);
        assert_eq!(json["cgroup"]["id"], 99);
        assert_eq!(json["target"]["file"]["path"], "/etc/shadow");
        assert_eq!(json["policy"], "web");
        assert_eq!(json["rule"], "r1");
        assert_eq!(json["message"], "shadow read");
        assert_eq!(json["severity"], "critical");
        assert_eq!(json["tags"][0], "T1003.008");
        assert_eq!(json["kernel_ns"], 5_000_000_000u64);
        assert!(json["time"]
            .as_str()
            .unwrap()
            .starts_with("2023-11-14T22:13:25"));
    }

    #[test]
    fn an_exec_killed_by_the_fallback_says_so() {
        let clock = Clock {
            realtime_minus_boottime_ns: 0,
        };
        let flags = bpf_lsm::abi::FLAG_EXEC_FALLBACK | bpf_lsm::abi::FLAG_KILLED;
        let record = Record::Exec(bpf_lsm::ExecRecord {
            header: header(Action::Kill, Some(0), flags),
            path: b"/usr/bin/nc".to_vec(),
        });
        let json = serde_json::to_value(security_event(&record, &names(), "h", &clock)).unwrap();
        assert_eq!(json["verdict"], "killed");
        assert_eq!(json["class"], "exec");
        assert!(json["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == EXEC_FALLBACK_TAG));
        assert!(json["message"]
            .as_str()
            .unwrap()
            .ends_with("the exec succeeded and the process was killed before it ran)"));
        assert!(human(&record, &names()).contains("exec (fallback, killed at exec) /usr/bin/nc"));
    }

    #[test]
    fn a_denied_memfd_exec_says_so() {
        let clock = Clock {
            realtime_minus_boottime_ns: 0,
        };
        let record = Record::Exec(bpf_lsm::ExecRecord {
            header: header(Action::Deny, Some(0), bpf_lsm::abi::FLAG_MEMFD),
            path: b"/memfd:x (deleted)".to_vec(),
        });
        let json = serde_json::to_value(security_event(&record, &names(), "h", &clock)).unwrap();
        assert_eq!(json["verdict"], "denied");
        assert!(json["message"]
            .as_str()
            .unwrap()
            .ends_with("(the program was a memfd: in memory, with no file on disk)"));
    }

    #[test]
    fn a_default_deny_names_the_policy_default() {
        let clock = Clock {
            realtime_minus_boottime_ns: 0,
        };
        let ev = security_event(
            &open(
                b"/srv/x",
                header(Action::Deny, None, bpf_lsm::abi::FLAG_DEFAULT),
            ),
            &names(),
            "h",
            &clock,
        );
        assert_eq!(ev.rule.as_deref(), Some("default"));
        assert_eq!(ev.policy.as_deref(), Some("web"));
        assert!(ev.message.contains("default posture"), "{}", ev.message);
    }

    #[test]
    fn the_log_round_trips_through_the_export_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut log = VerdictLog::open(&path, &EventLogConfig::default(), None).unwrap();
        let clock = Clock::now().unwrap();
        let record = open(b"/tmp/\xffodd", header(Action::Audit, None, 0));
        log.append(&security_event(&record, &Names::default(), "h", &clock))
            .unwrap();
        log.flush().unwrap();
        let text = std::fs::read(&path).unwrap();
        let back = SecurityEvent::from_json(text.strip_suffix(b"\n").unwrap()).unwrap();
        let Some(Target::File(f)) = back.target else {
            panic!("not a file event")
        };
        assert_eq!(f.path.as_bytes(), b"/tmp/\xffodd");
    }

    #[test]
    fn a_kernel_record_becomes_a_kernel_event() {
        let record = Record::Kernel(bpf_lsm::KernelRecord {
            header: header(Action::Deny, Some(0), 0),
            subject: bpf_lsm::KernelSubject::Op(bpf_lsm::KernelOp::Ptrace),
            arg: 42,
            arg2: 2,
            path: Vec::new(),
        });
        let clock = Clock {
            realtime_minus_boottime_ns: 0,
        };
        let json = serde_json::to_value(security_event(&record, &names(), "h", &clock)).unwrap();
        assert_eq!(json["class"], "kernel");
        assert_eq!(json["operation"], "ptrace");
        assert_eq!(json["verdict"], "denied");
        assert_eq!(json["target"]["kernel"]["operation"], "ptrace");
        assert_eq!(json["target"]["kernel"]["detail"], "target_pid=42 mode=0x2");
        assert_eq!(json["policy"], "web");
        assert_eq!(json["rule"], "r1");
        assert_eq!(
            human(&record, &names()),
            "DENY  ptrace target_pid=42 mode=0x2 pid=10 comm=cat uid=0 cgroup=99 rule=web/r1"
        );
    }

    #[test]
    fn human_lines_name_verdict_path_pid_cgroup_and_rule() {
        let line = human(
            &open(b"/etc/shadow", header(Action::Deny, Some(0), 0)),
            &names(),
        );
        assert_eq!(
            line,
            "DENY  open /etc/shadow pid=10 comm=cat uid=0 cgroup=99 rule=web/r1"
        );
    }

    #[test]
    fn a_rename_deny_carries_its_op_and_both_paths() {
        let record = Record::Path(bpf_lsm::PathRecord {
            header: header(Action::Deny, Some(0), 0),
            op: bpf_lsm::plan::ops::RENAME,
            path: b"/tmp/x".to_vec(),
            path2: Some(b"/etc/shadow".to_vec()),
        });
        let clock = Clock {
            realtime_minus_boottime_ns: 0,
        };
        let json = serde_json::to_value(security_event(&record, &names(), "h", &clock)).unwrap();
        assert_eq!(json["class"], "file");
        assert_eq!(json["operation"], "rename");
        assert_eq!(json["target"]["file"]["operation"], "rename");
        assert_eq!(json["target"]["file"]["path"], "/tmp/x");
        assert_eq!(json["target"]["file"]["second_path"], "/etc/shadow");
        assert_eq!(json["rule"], "r1");
        assert_eq!(
            human(&record, &names()),
            "DENY  rename /tmp/x -> /etc/shadow pid=10 comm=cat uid=0 cgroup=99 rule=web/r1"
        );
        // A one-path operation has no second path.
        let record = Record::Path(bpf_lsm::PathRecord {
            header: header(Action::Audit, Some(0), 0),
            op: bpf_lsm::plan::ops::CREATE | bpf_lsm::plan::ops::LINK,
            path: b"/srv/l".to_vec(),
            path2: None,
        });
        let json = serde_json::to_value(security_event(&record, &names(), "h", &clock)).unwrap();
        assert_eq!(json["operation"], "create+link");
        assert!(json["target"]["file"].get("second_path").is_none());
    }
}
