//! cgroup ids (what the kernel reports) to cgroup paths and the workload
//! they name. The cgroup2 tree is walked once at start; a miss is resolved
//! from the task's `/proc/<pid>/cgroup` (one read and one `stat`), and only
//! when that fails by walking the tree again, at most once per
//! [`CgroupCache::min_walk_interval`]. Each cgroup's path is parsed into a
//! [`Workload`] once, when it enters the cache, never per event.

use super::cgroup_path::{self, Workload};
use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One cgroup: its id, its path below the cgroup2 mount, and what the path
/// says about the workload. Shared by every process in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupInfo {
    pub id: u64,
    /// `/system.slice/nginx.service`; `/` for the root.
    pub path: Box<[u8]>,
    pub workload: Workload,
}

impl CgroupInfo {
    pub fn new(id: u64, path: &[u8]) -> Self {
        let workload = cgroup_path::parse(&String::from_utf8_lossy(path));
        CgroupInfo {
            id,
            path: path.into(),
            workload,
        }
    }
}

/// Counters for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupStats {
    pub hits: u64,
    pub misses: u64,
    /// Misses resolved from `/proc/<pid>/cgroup`.
    pub resolved_from_proc: u64,
    pub walks: u64,
    /// Misses left unresolved (walk rate-limited, or the cgroup is gone).
    pub unresolved: u64,
    /// Entries dropped because the cache was full.
    pub evictions: u64,
}

#[derive(Debug)]
pub struct CgroupCache {
    root: Option<PathBuf>,
    by_id: HashMap<u64, Arc<CgroupInfo>>,
    max_entries: usize,
    last_walk: Option<Instant>,
    /// Walks on misses are at least this far apart.
    pub min_walk_interval: Duration,
    pub stats: CgroupStats,
}

impl CgroupCache {
    /// A cache over the cgroup2 tree mounted at `root` (`None`: no tree, only
    /// what is inserted). Does not walk yet.
    pub fn new(root: Option<PathBuf>, max_entries: usize) -> Self {
        CgroupCache {
            root,
            by_id: HashMap::new(),
            max_entries: max_entries.max(16),
            last_walk: None,
            min_walk_interval: Duration::from_secs(1),
            stats: CgroupStats::default(),
        }
    }

    /// Where cgroup2 is mounted, from `/proc/self/mountinfo`.
    pub fn find_root() -> Option<PathBuf> {
        let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        bpf_lsm::probe::parse_mountinfo(&text)
            .into_iter()
            .find(|m| m.fs_type == "cgroup2")
            .map(|m| PathBuf::from(m.mount_point))
    }

    pub fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// A cached cgroup. Does not allocate or touch the file system.
    pub fn get(&self, id: u64) -> Option<&Arc<CgroupInfo>> {
        self.by_id.get(&id)
    }

    /// The cached entry for `id`, or a new one for `path`.
    pub fn intern(&mut self, id: u64, path: &[u8]) -> Arc<CgroupInfo> {
        if let Some(c) = self.by_id.get(&id) {
            if *c.path == *path {
                return Arc::clone(c);
            }
        }
        self.make_room();
        let info = Arc::new(CgroupInfo::new(id, path));
        self.by_id.insert(id, Arc::clone(&info));
        info
    }

    /// The id of the cgroup at `path` (below the mount): its inode number.
    pub fn id_of(&self, path: &[u8]) -> Option<u64> {
        let root = self.root.as_ref()?;
        let rel = std::ffi::OsStr::from_bytes(path.strip_prefix(b"/").unwrap_or(path));
        std::fs::metadata(root.join(rel)).ok().map(|m| m.ino())
    }

    /// `id`'s cgroup: cached, else from `/proc/<pid>/cgroup` of a task in
    /// it (`pid` 0: none known), else by walking the tree again if the last
    /// walk is at least `min_walk_interval` old.
    pub fn resolve(&mut self, id: u64, pid: u32, proc_root: &Path) -> Option<Arc<CgroupInfo>> {
        if let Some(c) = self.by_id.get(&id) {
            self.stats.hits += 1;
            return Some(Arc::clone(c));
        }
        self.stats.misses += 1;
        if pid != 0 {
            if let Some(path) = read_proc_cgroup(&proc_root.join(pid.to_string())) {
                if self.id_of(&path) == Some(id) {
                    self.stats.resolved_from_proc += 1;
                    return Some(self.intern(id, &path));
                }
            }
        }
        let due = self
            .last_walk
            .is_none_or(|t| t.elapsed() >= self.min_walk_interval);
        if due && self.root.is_some() {
            self.walk();
            if let Some(c) = self.by_id.get(&id) {
                return Some(Arc::clone(c));
            }
        }
        self.stats.unresolved += 1;
        None
    }

    /// Walks the whole cgroup2 tree and caches every cgroup (up to the
    /// cache's bound). Returns how many cgroups were seen.
    pub fn walk(&mut self) -> usize {
        self.last_walk = Some(Instant::now());
        self.stats.walks += 1;
        let Some(root) = self.root.clone() else {
            return 0;
        };
        let mut seen = 0;
        let mut stack: Vec<(PathBuf, Vec<u8>)> = vec![(root, b"/".to_vec())];
        while let Some((dir, rel)) = stack.pop() {
            let Ok(meta) = std::fs::metadata(&dir) else {
                continue;
            };
            seen += 1;
            let id = meta.ino();
            if self.by_id.get(&id).is_none_or(|c| *c.path != *rel) {
                if self.by_id.len() >= self.max_entries {
                    continue;
                }
                self.by_id.insert(id, Arc::new(CgroupInfo::new(id, &rel)));
            }
            let Ok(children) = std::fs::read_dir(&dir) else {
                continue;
            };
            for child in children.flatten() {
                if !child.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let name = child.file_name();
                let mut child_rel = rel.clone();
                if child_rel != b"/" {
                    child_rel.push(b'/');
                }
                child_rel.extend_from_slice(name.as_bytes());
                stack.push((child.path(), child_rel));
            }
        }
        seen
    }

    /// Keeps the cache under its bound: drops what no process entry holds,
    /// then, if that is not enough, everything (it refills on demand).
    fn make_room(&mut self) {
        if self.by_id.len() < self.max_entries {
            return;
        }
        let before = self.by_id.len();
        self.by_id.retain(|_, c| Arc::strong_count(c) > 1);
        if self.by_id.len() >= self.max_entries * 3 / 4 {
            self.by_id.clear();
        }
        self.stats.evictions += (before - self.by_id.len()) as u64;
    }
}

/// The cgroup2 path of a process from `<proc_pid>/cgroup` (the `0::` line).
pub fn read_proc_cgroup(proc_pid: &Path) -> Option<Vec<u8>> {
    let bytes = std::fs::read(proc_pid.join("cgroup")).ok()?;
    parse_proc_cgroup(&bytes)
}

pub fn parse_proc_cgroup(bytes: &[u8]) -> Option<Vec<u8>> {
    bytes
        .split(|&b| b == b'\n')
        .find_map(|line| line.strip_prefix(b"0::"))
        .map(<[u8]>::to_vec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrich::cgroup_path::Runtime;

    #[test]
    fn reads_the_unified_line_of_proc_cgroup() {
        let v2 = b"0::/system.slice/nginx.service\n";
        assert_eq!(
            parse_proc_cgroup(v2).as_deref(),
            Some(&b"/system.slice/nginx.service"[..])
        );
        let hybrid = b"12:pids:/user.slice\n1:name=systemd:/user.slice/session-1.scope\n0::/user.slice/session-1.scope\n";
        assert_eq!(
            parse_proc_cgroup(hybrid).as_deref(),
            Some(&b"/user.slice/session-1.scope"[..])
        );
        assert_eq!(parse_proc_cgroup(b"3:cpu:/x\n"), None);
    }

    #[test]
    fn walks_a_tree_and_resolves_ids_to_paths_and_workloads() {
        let dir = tempfile::tempdir().unwrap();
        let id = "a0b1c2d3e4f5061728394a5b6c7d8e9f00112233445566778899aabbccddeeff";
        let scope = dir.path().join(format!("system.slice/docker-{id}.scope"));
        std::fs::create_dir_all(&scope).unwrap();
        let ino = std::fs::metadata(&scope).unwrap().ino();
        let mut cache = CgroupCache::new(Some(dir.path().to_path_buf()), 100);
        assert_eq!(cache.walk(), 3);
        let got = cache.resolve(ino, 0, Path::new("/nonexistent")).unwrap();
        assert_eq!(
            &*got.path,
            format!("/system.slice/docker-{id}.scope").as_bytes()
        );
        let c = got.workload.container.as_ref().unwrap();
        assert_eq!((c.id.as_str(), c.runtime), (id, Some(Runtime::Docker)));
        assert_eq!(cache.stats.hits, 1);
        let root_ino = std::fs::metadata(dir.path()).unwrap().ino();
        assert_eq!(&*cache.get(root_ino).unwrap().path, b"/");
        assert_eq!(
            cache.id_of(b"/system.slice"),
            Some(
                std::fs::metadata(dir.path().join("system.slice"))
                    .unwrap()
                    .ino()
            )
        );

        // A cgroup created after the walk: found by the next walk, which a
        // miss triggers at most once per interval.
        let late = dir.path().join("system.slice/late.service");
        std::fs::create_dir(&late).unwrap();
        let late_ino = std::fs::metadata(&late).unwrap().ino();
        cache.min_walk_interval = Duration::from_secs(3600);
        assert!(cache
            .resolve(late_ino, 0, Path::new("/nonexistent"))
            .is_none());
        assert_eq!(cache.stats.unresolved, 1);
        cache.min_walk_interval = Duration::ZERO;
        let got = cache
            .resolve(late_ino, 0, Path::new("/nonexistent"))
            .unwrap();
        assert_eq!(got.workload.systemd_unit.as_deref(), Some("late.service"));
        assert_eq!(cache.stats.walks, 2);
    }

    #[test]
    fn resolves_a_miss_from_proc_pid_cgroup() {
        let dir = tempfile::tempdir().unwrap();
        let cg = dir.path().join("cg");
        std::fs::create_dir_all(cg.join("system.slice/web.service")).unwrap();
        let ino = std::fs::metadata(cg.join("system.slice/web.service"))
            .unwrap()
            .ino();
        let proc_root = dir.path().join("proc");
        std::fs::create_dir_all(proc_root.join("42")).unwrap();
        std::fs::write(
            proc_root.join("42/cgroup"),
            "0::/system.slice/web.service\n",
        )
        .unwrap();
        let mut cache = CgroupCache::new(Some(cg), 100);
        cache.min_walk_interval = Duration::from_secs(3600);
        cache.last_walk = Some(Instant::now());
        let got = cache.resolve(ino, 42, &proc_root).unwrap();
        assert_eq!(got.workload.systemd_unit.as_deref(), Some("web.service"));
        assert_eq!(cache.stats.resolved_from_proc, 1);
        assert_eq!(cache.stats.walks, 0);
    }

    #[test]
    fn stays_bounded_and_keeps_what_processes_hold() {
        let mut cache = CgroupCache::new(None, 16);
        let held: Vec<_> = (0..4).map(|i| cache.intern(i, b"/held")).collect();
        for i in 100..200 {
            cache.intern(i, b"/x.service");
            assert!(cache.len() <= 16);
        }
        assert!(cache.stats.evictions > 0);
        for h in &held {
            assert!(cache.get(h.id).is_some(), "held entry {} was dropped", h.id);
        }
    }
}
