//! Enrichment: what the kernel's pid, tgid and cgroup id say about a
//! process, filled into an event's `process`, `cgroup`, `container` and
//! `kubernetes` fields.
//!
//! - [`cgroup_path`]: workload identity (container, runtime, pod, QoS,
//!   systemd unit) from a cgroup2 path; pure.
//! - [`cgroups`]: cgroup id to path and workload, cached and bounded.
//! - [`process_table`]: the bounded process table, fed by a scan of `/proc`
//!   and by fork/exec/exit events.
//! - [`users`]: uid to user name from `/etc/passwd`.
//! - [`Enricher`]: puts them together for one event.
//!
//! Everything here runs on the daemon's event loop thread: `&mut self`, no
//! locks. A lookup that hits the table does not allocate; the event's own
//! fields (owned strings) are what costs.

pub mod cgroup_path;
pub mod cgroups;
pub mod process_table;
pub mod users;

pub use cgroup_path::{ContainerRef, Qos, Runtime, Workload};
pub use cgroups::{CgroupCache, CgroupInfo, CgroupStats};
pub use process_table::{
    AncestorInfo, BootInfo, ExecEvent, NewProcess, ProcessEntry, ProcessTable, ScanReport,
    TableConfig, TableStats,
};
pub use users::UserDb;

use siem_export::event::{Ancestor, ByteText, Cgroup, Container, Kubernetes};
use siem_export::SecurityEvent;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Clone, Debug)]
pub struct EnrichConfig {
    /// How many ancestors events carry (parent first).
    pub ancestors_depth: usize,
    pub table: TableConfig,
}

impl Default for EnrichConfig {
    fn default() -> Self {
        EnrichConfig {
            ancestors_depth: 5,
            table: TableConfig::default(),
        }
    }
}

/// What [`Enricher::enrich`] found.
#[derive(Clone, Debug, Default)]
pub struct Enriched {
    /// The process was in the table (or could be read from `/proc`).
    pub process: bool,
    /// The event's cgroup, with its workload (pod uid, QoS, container).
    pub cgroup: Option<Arc<CgroupInfo>>,
}

/// Fills events from the process table and the cgroup cache.
pub struct Enricher {
    table: ProcessTable,
    ancestors_depth: usize,
    /// Pod uid to (namespace, pod name), from whoever knows them (the
    /// Kubernetes API, the CRI): without both, `kubernetes` stays unset.
    pod_names: HashMap<String, (String, String)>,
    /// The kubelet's pod log directory, where an unknown pod is looked up once (a miss is
    /// remembered as empty names).
    pod_logs_dir: Option<std::path::PathBuf>,
}

/// Pods remembered at most; past it the names are forgotten and looked up again (deleted
/// pods' names would otherwise pile up in a long-running daemon).
const MAX_POD_NAMES: usize = 16_384;

impl Enricher {
    /// Reads the boot id, `/etc/passwd` and the cgroup2 tree, and scans
    /// `/proc` for what already runs.
    pub fn start(cfg: EnrichConfig) -> anyhow::Result<(Self, ScanReport)> {
        let mut table = ProcessTable::open(cfg.table)?;
        let report = table.scan_proc()?;
        Ok((Self::with_table(table, cfg.ancestors_depth), report))
    }

    pub fn with_table(table: ProcessTable, ancestors_depth: usize) -> Self {
        Enricher {
            table,
            ancestors_depth,
            pod_names: HashMap::new(),
            pod_logs_dir: None,
        }
    }

    pub fn table(&self) -> &ProcessTable {
        &self.table
    }

    pub fn into_table(self) -> ProcessTable {
        self.table
    }

    pub fn set_ancestors_depth(&mut self, depth: usize) {
        self.ancestors_depth = depth;
    }

    /// For the kernel's process events: `on_fork`, `on_exec`, `on_exit`.
    pub fn table_mut(&mut self) -> &mut ProcessTable {
        &mut self.table
    }

    /// Names a pod, so that its events get a `kubernetes` object.
    pub fn set_pod_name(&mut self, pod_uid: &str, namespace: &str, name: &str) {
        if namespace.is_empty() || name.is_empty() {
            return;
        }
        self.pod_names.insert(
            pod_uid.to_string(),
            (namespace.to_string(), name.to_string()),
        );
    }

    /// Names pods from the kubelet's pod log directory (`<namespace>_<name>_<uid>`).
    pub fn set_pod_logs_dir(&mut self, dir: std::path::PathBuf) {
        self.pod_logs_dir = Some(dir);
    }

    fn look_up_pod(&mut self, uid: &str) {
        let Some(dir) = &self.pod_logs_dir else {
            return;
        };
        if self.pod_names.contains_key(uid) {
            return;
        }
        if self.pod_names.len() >= MAX_POD_NAMES {
            self.pod_names.clear();
        }
        let names = crate::pod_logs::lookup(dir, uid)
            .map(|p| (p.namespace, p.name))
            .unwrap_or_default();
        self.pod_names.insert(uid.to_string(), names);
    }

    pub fn forget_pod(&mut self, pod_uid: &str) {
        self.pod_names.remove(pod_uid);
    }

    /// Fills what `ev` lacks from the process `tgid` (the kernel's
    /// `pid`, i.e. the process id) and the cgroup `cgroup_id` (0: use the
    /// process's). Fields already set are kept: the kernel's word wins.
    /// `ev.process` is filled only when present (it holds the kernel's
    /// uid, gid and comm). Exited entries past their grace period are
    /// removed first, by `ev.kernel_ns`.
    pub fn enrich(&mut self, ev: &mut SecurityEvent, tgid: u32, cgroup_id: u64) -> Enriched {
        if let Some(ns) = ev.kernel_ns {
            self.table.expire(ns);
        }
        let depth = self.ancestors_depth;
        let mut out = Enriched::default();
        let mut entry_cgroup = None;
        if let Some(entry) = self.table.lookup_or_load(tgid) {
            out.process = true;
            entry_cgroup = entry.cgroup.clone();
            if let Some(p) = ev.process.as_mut() {
                fill_process(p, entry);
            }
        }
        if let Some(p) = ev.process.as_mut() {
            if p.user.is_none() {
                p.user = self.table.users().name(p.uid).map(|n| n.to_string());
            }
            if out.process && p.ancestors.is_empty() && depth > 0 {
                let ancestors = &mut p.ancestors;
                self.table.for_each_ancestor(tgid, depth, |a| {
                    ancestors.push(Ancestor {
                        pid: a.pid,
                        exe: a.exe.as_deref().map(ByteText::new),
                        exec_id: Some(a.exec_id.to_string()),
                    })
                });
            }
        }

        let cgroup_id = match (cgroup_id, ev.cgroup.as_ref()) {
            (0, Some(c)) => c.id,
            (id, _) => id,
        };
        let info = match (cgroup_id, entry_cgroup) {
            (0, c) => c,
            (id, Some(c)) if c.id == id => Some(c),
            (id, _) => {
                let proc_root = self.table.config().proc_root.clone();
                self.table.cgroups_mut().resolve(id, tgid, &proc_root)
            }
        };
        if let Some(info) = &info {
            match ev.cgroup.as_mut() {
                Some(c) if c.id == info.id || c.id == 0 => {
                    c.id = info.id;
                    if c.path.is_none() {
                        c.path = Some(ByteText::new(&*info.path));
                    }
                }
                Some(_) => {}
                None => {
                    ev.cgroup = Some(Cgroup {
                        id: info.id,
                        path: Some(ByteText::new(&*info.path)),
                    })
                }
            }
            let w = &info.workload;
            if ev.container.is_none() {
                ev.container = w.container.as_ref().map(|c| Container {
                    id: c.id.clone(),
                    runtime: c.runtime.map(|r| r.as_str().to_string()),
                });
            }
            if ev.kubernetes.is_none() {
                if let Some(uid) = &w.pod_uid {
                    self.look_up_pod(uid);
                    ev.kubernetes = self
                        .pod_names
                        .get(uid)
                        .filter(|(ns, name)| !ns.is_empty() && !name.is_empty())
                        .map(|(ns, name)| Kubernetes {
                            namespace: ns.clone(),
                            pod_name: name.clone(),
                            pod_uid: Some(uid.clone()),
                            qos: w.qos,
                        });
                }
            }
        }
        if info.is_none() && ev.cgroup.is_none() && cgroup_id != 0 {
            ev.cgroup = Some(Cgroup {
                id: cgroup_id,
                path: None,
            });
        }
        out.cgroup = info;
        out
    }
}

fn fill_process(p: &mut siem_export::event::Process, e: &ProcessEntry) {
    if p.ppid.is_none() && e.ppid != 0 {
        p.ppid = Some(e.ppid);
    }
    if p.user.is_none() && p.uid == e.uid {
        p.user = e.user.as_deref().map(String::from);
    }
    if p.exe.is_none() {
        p.exe = e.exe.as_deref().map(ByteText::new);
    }
    if p.argv.is_empty() {
        p.argv = e.argv().map(ByteText::new).collect();
        p.argv_truncated = e.argv_truncated;
    }
    if p.cwd.is_none() {
        p.cwd = e.cwd.as_deref().map(ByteText::new);
    }
    if p.exec_id.is_none() {
        p.exec_id = Some(e.exec_id.to_string());
    }
    if p.start_time.is_none() {
        p.start_time = Some(e.start_time);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use siem_export::event::{EventClass, Process, QosClass, Verdict};
    use siem_export::{Severity, Timestamp};
    use std::path::PathBuf;

    const C1: &str = "3b1f9c0d2e4a5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8";
    const UID: &str = "5f1c2b7e-0a44-4c1e-9d2f-6b1a3e9c8d70";

    fn enricher() -> Enricher {
        let boot = BootInfo {
            boot_id: [7; 16],
            ns_per_tick: 10_000_000,
            wall_minus_boot_ns: 1_700_000_000_000_000_000,
        };
        let cfg = TableConfig {
            proc_root: PathBuf::from("/nonexistent-proc"),
            ..TableConfig::default()
        };
        let mut cgroups = CgroupCache::new(None, 64);
        let pod = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{C1}.scope",
            UID.replace('-', "_")
        );
        cgroups.intern(8842, pod.as_bytes());
        let cg = cgroups.get(8842).cloned();
        let mut t = ProcessTable::with_parts(
            cfg,
            boot,
            UserDb::from_entries([(0, "root".into()), (33, "www-data".into())]),
            cgroups,
        );
        t.insert(NewProcess {
            pid: 1,
            start_ticks: 1,
            exe: Some(b"/usr/bin/tini"),
            argv: b"tini\0",
            ..NewProcess::default()
        });
        t.insert(NewProcess {
            pid: 31200,
            ppid: 1,
            start_ticks: 100,
            exe: Some(b"/usr/local/bin/gunicorn"),
            argv: b"gunicorn\0app:app\0",
            uid: 33,
            gid: 33,
            ..NewProcess::default()
        });
        t.insert(NewProcess {
            pid: 31337,
            ppid: 31200,
            start_ticks: 200,
            exe: Some(b"/usr/bin/python3.12"),
            argv: b"python3\0-c\0import os\0",
            cwd: Some(b"/srv/app"),
            uid: 33,
            gid: 33,
            cgroup: cg,
            ..NewProcess::default()
        });
        Enricher::with_table(t, 5)
    }

    fn event(pid: u32, uid: u32) -> SecurityEvent {
        let mut ev = SecurityEvent::new(
            Timestamp::from_unix_nanos(1_700_000_000_000_000_000),
            "h",
            Verdict::Denied,
            EventClass::Exec,
            "exec",
            Severity::High,
        );
        ev.kernel_ns = Some(3_000_000_000);
        ev.process = Some(Process {
            pid,
            tgid: pid,
            ppid: None,
            uid,
            gid: uid,
            user: None,
            comm: ByteText::new("python3"),
            exe: None,
            argv: Vec::new(),
            argv_truncated: false,
            cwd: None,
            exec_id: None,
            start_time: None,
            ancestors: Vec::new(),
        });
        ev.cgroup = Some(Cgroup {
            id: 8842,
            path: None,
        });
        ev
    }

    #[test]
    fn fills_process_cgroup_and_container_from_the_table() {
        let mut en = enricher();
        let mut ev = event(31337, 33);
        let out = en.enrich(&mut ev, 31337, 8842);
        assert!(out.process);
        ev.validate().unwrap();
        let j = serde_json::to_value(&ev).unwrap();
        let p = &j["process"];
        assert_eq!(p["ppid"], 31200);
        assert_eq!(p["user"], "www-data");
        assert_eq!(p["exe"], "/usr/bin/python3.12");
        assert_eq!(p["argv"], serde_json::json!(["python3", "-c", "import os"]));
        assert_eq!(p["cwd"], "/srv/app");
        assert_eq!(
            p["exec_id"],
            en.table().peek(31337).unwrap().exec_id.as_ref()
        );
        assert_eq!(p["start_time"], "2023-11-14T22:13:22.000000000Z");
        assert_eq!(p["ancestors"][0]["pid"], 31200);
        assert_eq!(p["ancestors"][0]["exe"], "/usr/local/bin/gunicorn");
        assert_eq!(p["ancestors"][1]["pid"], 1);
        assert_eq!(p["ancestors"][1]["exe"], "/usr/bin/tini");
        assert!(p["ancestors"][1]["exec_id"].is_string());
        assert_eq!(p["ancestors"].as_array().unwrap().len(), 2);
        assert!(j["cgroup"]["path"]
            .as_str()
            .unwrap()
            .ends_with(&format!("cri-containerd-{C1}.scope")));
        assert_eq!(
            j["container"],
            serde_json::json!({"id": C1, "runtime": "containerd"})
        );
        // No pod name without the API: no `kubernetes`, but the caller gets
        // the pod uid and QoS.
        assert!(j.get("kubernetes").is_none());
        let w = &out.cgroup.unwrap().workload;
        assert_eq!(
            (w.pod_uid.as_deref(), w.qos),
            (Some(UID), Some(QosClass::Burstable))
        );
    }

    #[test]
    fn named_pods_get_a_kubernetes_object() {
        let mut en = enricher();
        en.set_pod_name(UID, "shop", "web-7d9f8c6b5-x2x4q");
        let mut ev = event(31337, 33);
        en.enrich(&mut ev, 31337, 8842);
        ev.validate().unwrap();
        let k = ev.kubernetes.unwrap();
        assert_eq!(
            (k.namespace.as_str(), k.pod_name.as_str()),
            ("shop", "web-7d9f8c6b5-x2x4q")
        );
        assert_eq!(
            (k.pod_uid.as_deref(), k.qos),
            (Some(UID), Some(QosClass::Burstable))
        );
    }

    #[test]
    fn keeps_what_the_kernel_said_and_names_a_changed_uid() {
        let mut en = enricher();
        let mut ev = event(31337, 0);
        if let Some(p) = ev.process.as_mut() {
            p.exe = Some(ByteText::new("/kernel/said"));
        }
        en.enrich(&mut ev, 31337, 8842);
        let p = ev.process.unwrap();
        assert_eq!(p.exe.unwrap().as_bytes(), b"/kernel/said");
        assert_eq!(
            p.user.as_deref(),
            Some("root"),
            "the event's uid, not the table's"
        );
    }

    #[test]
    fn an_unknown_process_still_gets_its_user_and_cgroup() {
        let mut en = enricher();
        let mut ev = event(4_000_000, 33);
        let out = en.enrich(&mut ev, 4_000_000, 8842);
        assert!(!out.process);
        let p = ev.process.as_ref().unwrap();
        assert_eq!(p.user.as_deref(), Some("www-data"));
        assert!(p.exe.is_none() && p.ancestors.is_empty());
        assert!(ev.container.is_some());
        // An unknown cgroup id is kept as the kernel said it, without a
        // path, and the process's old cgroup is not taken for it.
        let mut ev = event(31337, 33);
        ev.cgroup = None;
        let out = en.enrich(&mut ev, 31337, 999);
        assert!(out.process && out.cgroup.is_none());
        assert_eq!(
            ev.cgroup,
            Some(Cgroup {
                id: 999,
                path: None
            })
        );
        assert!(ev.container.is_none());
    }

    #[test]
    fn depth_zero_means_no_ancestors() {
        let mut en = enricher();
        en.ancestors_depth = 0;
        let mut ev = event(31337, 33);
        en.enrich(&mut ev, 31337, 8842);
        assert!(ev.process.unwrap().ancestors.is_empty());
    }
}
