//! Verdicts as a person and a program read them: one line on stdout, and one
//! JSON object per line in `<state-dir>/events.jsonl`.

use anyhow::Context;
use bpf_lsm::{KernelEvent, Verdict};
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct VerdictRecord {
    pub verdict: Verdict,
    pub hook: &'static str,
    pub ktime_ns: u64,
    pub pid: u32,
    pub tid: u32,
    pub uid: u32,
    pub gid: u32,
    pub comm: String,
    pub cgroup_id: u64,
    pub rule_id: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Lossy UTF-8 of the kernel's bytes; `path_lossy` says when bytes were
    /// replaced.
    pub path: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub path_lossy: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub path_unresolved: bool,
    pub open_flags: u32,
}

impl VerdictRecord {
    pub fn from_kernel(event: &KernelEvent, rule: Option<&str>) -> Self {
        match event {
            KernelEvent::FileOpen(f) => {
                let c = &f.common;
                let path = String::from_utf8_lossy(&f.path).into_owned();
                VerdictRecord {
                    verdict: c.verdict,
                    hook: "file_open",
                    ktime_ns: c.ktime_ns,
                    pid: c.pid,
                    tid: c.tid,
                    uid: c.uid,
                    gid: c.gid,
                    comm: c.comm.clone(),
                    cgroup_id: c.cgroup_id,
                    rule_id: c.rule_id,
                    rule: rule.map(String::from),
                    path_lossy: std::str::from_utf8(&f.path).is_err(),
                    path,
                    path_unresolved: f.path_unresolved(),
                    open_flags: f.f_flags,
                }
            }
        }
    }

    /// One line for a terminal.
    pub fn human(&self) -> String {
        let verdict = match self.verdict {
            Verdict::Allow => "allow",
            Verdict::Deny => "DENY ",
            Verdict::Audit => "audit",
        };
        let path = if self.path_unresolved { "<unresolved path>" } else { &self.path };
        format!(
            "{verdict} {} {path} pid={} comm={} uid={} cgroup={} rule={}",
            self.hook,
            self.pid,
            self.comm,
            self.uid,
            self.cgroup_id,
            self.rule.as_deref().unwrap_or("?")
        )
    }
}

pub struct VerdictLog {
    path: PathBuf,
    out: BufWriter<File>,
}

impl VerdictLog {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening `{}`", path.display()))?;
        Ok(VerdictLog { path: path.to_path_buf(), out: BufWriter::new(file) })
    }

    pub fn append(&mut self, record: &VerdictRecord) -> anyhow::Result<()> {
        serde_json::to_writer(&mut self.out, record)?;
        self.out.write_all(b"\n")?;
        // A verdict must be on disk before the next one is read: a crash
        // loses nothing that was printed.
        self.out.flush().with_context(|| format!("writing `{}`", self.path.display()))
    }

    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.out.flush()?;
        self.out.get_ref().sync_all().with_context(|| format!("syncing `{}`", self.path.display()))
    }
}
