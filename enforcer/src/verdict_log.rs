//! Verdicts as a person and a program read them: one line on stdout, and one
//! event in the native export schema (siem-export) per line in
//! `<state-dir>/events.jsonl`.

use crate::config::EventLogConfig;
use bpf_lsm::{KernelEvent, Verdict};
use siem_export::event::{ByteText, Cgroup, EventClass, FileTarget, Process, Target};
use siem_export::sink::FsyncPolicy;
use siem_export::{FileSink, FileSinkConfig, SecurityEvent, Severity, Sink, Timestamp};
use std::path::Path;

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

/// The export event for one kernel verdict.
pub fn security_event(
    event: &KernelEvent,
    rule: Option<&str>,
    host: &str,
    clock: &Clock,
) -> SecurityEvent {
    match event {
        KernelEvent::FileOpen(f) => {
            let c = &f.common;
            let verdict = match c.verdict {
                Verdict::Allow => siem_export::event::Verdict::Allowed,
                Verdict::Deny => siem_export::event::Verdict::Denied,
                Verdict::Audit => siem_export::event::Verdict::Audited,
            };
            let mut ev = SecurityEvent::new(
                clock.wall(c.ktime_ns),
                host,
                verdict,
                EventClass::File,
                "open",
                Severity::High,
            );
            ev.kernel_ns = Some(c.ktime_ns);
            ev.rule = rule.map(String::from);
            ev.message = match (c.verdict, f.path_unresolved()) {
                (_, true) => {
                    "open of a file whose path could not be resolved (failed closed)".into()
                }
                (Verdict::Deny, false) => "open denied by rule".into(),
                _ => "open matched a rule (audit: allowed)".into(),
            };
            ev.process = Some(Process {
                pid: c.tid,
                tgid: c.pid,
                ppid: None,
                uid: c.uid,
                gid: c.gid,
                user: None,
                comm: ByteText::new(c.comm.as_bytes()),
                exe: None,
                argv: Vec::new(),
                argv_truncated: false,
                cwd: None,
                exec_id: None,
                start_time: None,
                ancestors: Vec::new(),
            });
            ev.cgroup = Some(Cgroup {
                id: c.cgroup_id,
                path: None,
            });
            ev.target = Some(Target::File(FileTarget {
                path: ByteText::new(f.path.clone()),
                flags: Some(f.f_flags),
                mode: None,
                operation: Some("open".into()),
                path_truncated: f.path_unresolved(),
            }));
            ev
        }
    }
}

/// One line for a terminal.
pub fn human(event: &KernelEvent, rule: Option<&str>) -> String {
    match event {
        KernelEvent::FileOpen(f) => {
            let c = &f.common;
            let verdict = match c.verdict {
                Verdict::Allow => "allow",
                Verdict::Deny => "DENY ",
                Verdict::Audit => "audit",
            };
            let path = if f.path_unresolved() {
                "<unresolved path>".to_string()
            } else {
                ByteText::new(f.path.clone()).to_string()
            };
            format!(
                "{verdict} file_open {path} pid={} comm={} uid={} cgroup={} rule={}",
                c.pid,
                c.comm,
                c.uid,
                c.cgroup_id,
                rule.unwrap_or("?")
            )
        }
    }
}

/// `<state-dir>/events.jsonl`, synced after every verdict: a verdict that
/// was printed is on disk.
pub struct VerdictLog {
    sink: FileSink,
}

impl VerdictLog {
    pub fn open(path: &Path, settings: &EventLogConfig) -> anyhow::Result<Self> {
        let mut cfg = FileSinkConfig::new(path);
        cfg.fsync = FsyncPolicy::EveryBatch;
        cfg.max_bytes = settings.max_file_bytes;
        cfg.keep = settings.keep_files;
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
    use bpf_lsm::events::{Common, FileOpenEvent};

    fn deny(path: &[u8]) -> KernelEvent {
        KernelEvent::FileOpen(FileOpenEvent {
            common: Common {
                verdict: Verdict::Deny,
                ktime_ns: 5_000_000_000,
                cgroup_id: 99,
                pid: 10,
                tid: 11,
                uid: 0,
                gid: 0,
                rule_id: 0,
                flags: 0,
                comm: "cat".into(),
            },
            f_flags: 0,
            f_mode: 1,
            path: path.to_vec(),
        })
    }

    #[test]
    fn a_kernel_deny_becomes_a_denied_file_event() {
        let clock = Clock {
            realtime_minus_boottime_ns: 1_700_000_000_000_000_000,
        };
        let ev = security_event(&deny(b"/etc/shadow"), Some("r1"), "h", &clock);
        let json = serde_json::to_value(&ev).unwrap();
        assert_eq!(json["verdict"], "denied");
        assert_eq!(json["class"], "file");
        assert_eq!(json["process"]["tgid"], 10);
        assert_eq!(json["process"]["pid"], 11);
        assert_eq!(json["cgroup"]["id"], 99);
        assert_eq!(json["target"]["file"]["path"], "/etc/shadow");
        assert_eq!(json["rule"], "r1");
        assert_eq!(json["kernel_ns"], 5_000_000_000u64);
        assert!(json["time"]
            .as_str()
            .unwrap()
            .starts_with("2023-11-14T22:13:25"));
    }

    #[test]
    fn the_log_round_trips_through_the_export_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut log = VerdictLog::open(&path, &EventLogConfig::default()).unwrap();
        let clock = Clock::now().unwrap();
        log.append(&security_event(&deny(b"/tmp/\xffodd"), None, "h", &clock))
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
    fn human_lines_name_verdict_path_pid_and_cgroup() {
        let line = human(&deny(b"/etc/shadow"), Some("r1"));
        assert_eq!(
            line,
            "DENY  file_open /etc/shadow pid=10 comm=cat uid=0 cgroup=99 rule=r1"
        );
    }
}
