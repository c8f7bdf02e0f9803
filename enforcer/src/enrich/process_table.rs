//! The process table: what the daemon knows about every process, fed by a
//! scan of `/proc` at start and by the kernel's fork, exec and exit events.
//!
//! Keyed by process id (the tgid). Bounded: past `max_entries`, exited
//! entries go first, oldest exit first, then the least recently used live
//! ones, a batch at a time. An exited entry otherwise stays for
//! `exit_grace`, so that events still in flight when the exit arrives are
//! enriched. Strings many processes share (executables, working
//! directories, user names, cgroups) are stored once.
//!
//! Looking a pid up is one hash lookup and never allocates; only a miss
//! reads `/proc/<pid>` ([`ProcessTable::lookup_or_load`]).
//!
//! Exec ids: a hash of (boot id, start time in clock ticks, pid, exec time)
//! in 22 characters of base64url. The boot id makes them unique across
//! reboots, the start time across pid reuse. The exec time is the kernel
//! time of the `execve` the table saw, 0 for an image found by a scan or
//! inherited at fork: a scan gives the same process the same id every time,
//! and every exec the table sees gets a new one. (A process that exec'd
//! before the daemon started is known by its scan id.)

use super::cgroups::{self, CgroupCache, CgroupInfo};
use super::users::UserDb;
use siem_export::Timestamp;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::io::Read;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How long a pid whose `/proc` entry could not be read is not read again.
const NEGATIVE_TTL_NS: u64 = 1_000_000_000;
const NEGATIVE_MAX: usize = 4096;

#[derive(Clone, Debug)]
pub struct TableConfig {
    /// At most this many processes are kept.
    pub max_entries: usize,
    /// An exited process is kept this long after its exit event.
    pub exit_grace: Duration,
    /// `argv` is kept up to this many bytes (NUL separators included).
    pub max_argv_bytes: usize,
    pub proc_root: PathBuf,
    pub passwd_path: PathBuf,
    /// The cgroup2 mount; `None`: found in `/proc/self/mountinfo`.
    pub cgroup_root: Option<PathBuf>,
    /// Bound of the cgroup id cache.
    pub max_cgroups: usize,
}

impl Default for TableConfig {
    fn default() -> Self {
        TableConfig {
            max_entries: 32_768,
            exit_grace: Duration::from_secs(5),
            max_argv_bytes: 2048,
            proc_root: PathBuf::from("/proc"),
            passwd_path: PathBuf::from("/etc/passwd"),
            cgroup_root: None,
            max_cgroups: 65_536,
        }
    }
}

/// What this boot is: the id exec ids are made from, and the clocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootInfo {
    /// `/proc/sys/kernel/random/boot_id` as 16 bytes.
    pub boot_id: [u8; 16],
    /// Nanoseconds per clock tick (`/proc/<pid>/stat` start times).
    pub ns_per_tick: u64,
    /// CLOCK_REALTIME minus CLOCK_BOOTTIME, taken once.
    pub wall_minus_boot_ns: i128,
}

impl BootInfo {
    pub fn read(proc_root: &Path) -> anyhow::Result<Self> {
        use anyhow::Context;
        use nix::time::{clock_gettime, ClockId};
        let path = proc_root.join("sys/kernel/random/boot_id");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading `{}`", path.display()))?;
        let boot_id = parse_boot_id(&text)
            .with_context(|| format!("`{}` is not a UUID: {text:?}", path.display()))?;
        let ns = |t: nix::sys::time::TimeSpec| {
            i128::from(t.tv_sec()) * 1_000_000_000 + i128::from(t.tv_nsec())
        };
        let real = ns(clock_gettime(ClockId::CLOCK_REALTIME)?);
        let boot = ns(clock_gettime(ClockId::CLOCK_BOOTTIME)?);
        Ok(BootInfo {
            boot_id,
            ns_per_tick: 1_000_000_000 / procfs::ticks_per_second().max(1),
            wall_minus_boot_ns: real - boot,
        })
    }

    /// The exec id of the image `exec_ns` (0: found by a scan or inherited
    /// at fork) of the process `pid` started at `start_ticks`.
    pub fn exec_id(&self, pid: u32, start_ticks: u64, exec_ns: u64) -> String {
        let (lo, hi) = self.boot_id.split_at(8);
        let word = |b: &[u8]| {
            let mut w = [0u8; 8];
            w.copy_from_slice(b);
            u64::from_le_bytes(w)
        };
        let h = mix128(&[word(lo), word(hi), start_ticks, u64::from(pid), exec_ns]);
        base64url(&h.to_le_bytes())
    }

    /// Wall-clock time of a CLOCK_BOOTTIME instant.
    pub fn wall(&self, boot_ns: u64) -> Timestamp {
        let unix = i128::from(boot_ns) + self.wall_minus_boot_ns;
        Timestamp::from_unix_nanos(i64::try_from(unix).unwrap_or(i64::MAX))
    }

    pub fn ticks(&self, boot_ns: u64) -> u64 {
        boot_ns / self.ns_per_tick.max(1)
    }
}

fn parse_boot_id(text: &str) -> Option<[u8; 16]> {
    let hex: Vec<u8> = text.trim().bytes().filter(|&b| b != b'-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

/// A fixed 128-bit mix (two splitmix64 lanes). Not cryptographic; exec ids
/// only need accidental collisions to be negligible. Changing it changes
/// every exec id, so a test pins its output.
fn mix128(words: &[u64]) -> u128 {
    fn splitmix(mut x: u64) -> u64 {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }
    let mut a: u64 = 0x6578_6563_2d69_6421; // "exec-id!"
    let mut b: u64 = 0x0123_4567_89ab_cdef;
    for &w in words {
        a = splitmix(a ^ w);
        b = splitmix(b.rotate_left(23) ^ w ^ a);
    }
    (u128::from(splitmix(a ^ b)) << 64) | u128::from(splitmix(b ^ 0x5bd1_e995))
}

fn base64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// One process in the table.
#[derive(Clone, Debug)]
pub struct ProcessEntry {
    pub pid: u32,
    /// 0 when unknown.
    pub ppid: u32,
    pub exec_id: Arc<str>,
    pub exe: Option<Arc<[u8]>>,
    /// Each argument followed by a NUL.
    argv: Box<[u8]>,
    pub argv_truncated: bool,
    pub cwd: Option<Arc<[u8]>>,
    pub uid: u32,
    pub gid: u32,
    pub user: Option<Arc<str>>,
    /// Clock ticks since boot, as in `/proc/<pid>/stat`.
    pub start_ticks: u64,
    /// When the current image started: the exec's time, or the process's
    /// start for an image found by a scan or inherited at fork.
    pub start_time: Timestamp,
    /// Kernel time (ns since boot) of the exec that made this image; 0 when
    /// not seen.
    pub exec_ns: u64,
    pub cgroup: Option<Arc<CgroupInfo>>,
    /// Kernel time of the exit event, once it arrived.
    pub exited_ns: Option<u64>,
    last_used: u64,
}

impl ProcessEntry {
    pub fn argv(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let body = self.argv.strip_suffix(b"\0").unwrap_or(&self.argv);
        body.split(|&b| b == 0)
            .take(if self.argv.is_empty() { 0 } else { usize::MAX })
    }

    pub fn is_exited(&self) -> bool {
        self.exited_ns.is_some()
    }
}

/// A process to put into the table, as read from `/proc` or built from an
/// event. Byte strings are borrowed; the table copies (and shares) them.
#[derive(Clone, Debug, Default)]
pub struct NewProcess<'a> {
    pub pid: u32,
    pub ppid: u32,
    pub start_ticks: u64,
    /// Kernel time of the exec that made this image; 0: not seen (scan).
    pub exec_ns: u64,
    pub exe: Option<&'a [u8]>,
    /// `/proc/<pid>/cmdline` form: each argument NUL-terminated (the last
    /// terminator may be missing).
    pub argv: &'a [u8],
    pub argv_truncated: bool,
    pub cwd: Option<&'a [u8]>,
    pub uid: u32,
    pub gid: u32,
    pub cgroup: Option<Arc<CgroupInfo>>,
}

/// What an exec event says. `None` fields are read from `/proc/<pid>`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ExecEvent<'a> {
    /// Kernel time of the exec (ns since boot).
    pub time_ns: u64,
    pub ppid: Option<u32>,
    pub exe: Option<&'a [u8]>,
    /// `cmdline` form, each argument NUL-terminated.
    pub argv: Option<&'a [u8]>,
    pub argv_truncated: bool,
    pub cwd: Option<&'a [u8]>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// One ancestor, parent first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AncestorInfo {
    pub pid: u32,
    pub exe: Option<Arc<[u8]>>,
    pub exec_id: Arc<str>,
}

/// Counters for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    /// `lookup_or_load` calls that found nothing in the table.
    pub misses: u64,
    /// Processes read from `/proc` (scan and misses).
    pub loads: u64,
    /// `/proc/<pid>` reads that failed (the process was gone).
    pub load_failures: u64,
    /// Misses answered by the negative cache without reading `/proc`.
    pub negative_hits: u64,
    /// Exited entries removed after their grace period.
    pub expired: u64,
    /// Entries evicted because the table was full: exited ones ...
    pub evicted_exited: u64,
    /// ... and live ones (least recently used first).
    pub evicted_live: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScanReport {
    pub loaded: usize,
    pub failed: usize,
}

/// Pids are small and dense; this spreads them over the hash's high bits
/// (which hashbrown's control bytes use) with one multiplication.
#[derive(Default, Clone, Copy)]
pub struct PidHasher(u64);

impl Hasher for PidHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0 ^ u64::from(n)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type PidMap<V> = HashMap<u32, V, BuildHasherDefault<PidHasher>>;

pub struct ProcessTable {
    cfg: TableConfig,
    boot: BootInfo,
    entries: PidMap<ProcessEntry>,
    exits: VecDeque<(u32, u64)>,
    strings: HashSet<Arc<[u8]>>,
    users: UserDb,
    cgroups: CgroupCache,
    failed: PidMap<u64>,
    tick: u64,
    now_ns: u64,
    pub stats: TableStats,
}

impl ProcessTable {
    /// A table for this host: reads the boot id, the passwd file and the
    /// cgroup2 tree. Does not scan `/proc` yet ([`ProcessTable::scan_proc`]).
    pub fn open(cfg: TableConfig) -> anyhow::Result<Self> {
        let boot = BootInfo::read(&cfg.proc_root)?;
        let users = UserDb::open(cfg.passwd_path.clone());
        let root = cfg.cgroup_root.clone().or_else(CgroupCache::find_root);
        let mut cgroups = CgroupCache::new(root, cfg.max_cgroups);
        cgroups.walk();
        Ok(Self::with_parts(cfg, boot, users, cgroups))
    }

    /// A table from given parts: no file is read here.
    pub fn with_parts(
        cfg: TableConfig,
        boot: BootInfo,
        users: UserDb,
        cgroups: CgroupCache,
    ) -> Self {
        ProcessTable {
            cfg,
            boot,
            entries: PidMap::default(),
            exits: VecDeque::new(),
            strings: HashSet::new(),
            users,
            cgroups,
            failed: PidMap::default(),
            tick: 0,
            now_ns: 0,
            stats: TableStats::default(),
        }
    }

    pub fn config(&self) -> &TableConfig {
        &self.cfg
    }
    pub fn boot(&self) -> &BootInfo {
        &self.boot
    }
    pub fn users(&self) -> &UserDb {
        &self.users
    }
    pub fn users_mut(&mut self) -> &mut UserDb {
        &mut self.users
    }
    pub fn cgroups(&self) -> &CgroupCache {
        &self.cgroups
    }
    pub fn cgroups_mut(&mut self) -> &mut CgroupCache {
        &mut self.cgroups
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    /// The latest kernel time the table was told about.
    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }

    /// The entry of `pid` without marking it used.
    pub fn peek(&self, pid: u32) -> Option<&ProcessEntry> {
        self.entries.get(&pid)
    }

    /// The entry of `pid`, marked as just used. Does not allocate.
    pub fn get(&mut self, pid: u32) -> Option<&ProcessEntry> {
        self.tick += 1;
        let tick = self.tick;
        let e = self.entries.get_mut(&pid)?;
        e.last_used = tick;
        Some(e)
    }

    /// The entry of `pid`; on a miss, reads `/proc/<pid>` (a process that
    /// started between the scan and its first event, or whose events were
    /// lost). A pid that could not be read is not tried again for a second
    /// of kernel time.
    pub fn lookup_or_load(&mut self, pid: u32) -> Option<&ProcessEntry> {
        if pid == 0 {
            return None;
        }
        if self.entries.contains_key(&pid) {
            return self.get(pid);
        }
        self.stats.misses += 1;
        if let Some(&t) = self.failed.get(&pid) {
            if self.now_ns.saturating_sub(t) < NEGATIVE_TTL_NS {
                self.stats.negative_hits += 1;
                return None;
            }
        }
        self.users.maybe_refresh();
        if self.load(pid).is_none() {
            if self.failed.len() >= NEGATIVE_MAX {
                self.failed.clear();
            }
            self.failed.insert(pid, self.now_ns);
            return None;
        }
        self.get(pid)
    }

    /// Reads every process in `/proc` into the table. A process already in
    /// the table with the same start time keeps its exec id.
    pub fn scan_proc(&mut self) -> anyhow::Result<ScanReport> {
        let mut report = ScanReport::default();
        self.users.maybe_refresh();
        let pids: Vec<u32> = procfs::process::all_processes_with_root(&self.cfg.proc_root)?
            .filter_map(|p| p.ok())
            .filter_map(|p| u32::try_from(p.pid()).ok())
            .collect();
        for pid in pids {
            match self.load(pid) {
                Some(()) => report.loaded += 1,
                None => report.failed += 1,
            }
        }
        Ok(report)
    }

    /// Reads `/proc/<pid>` into the table.
    fn load(&mut self, pid: u32) -> Option<()> {
        let dir = self.cfg.proc_root.join(pid.to_string());
        let read = read_proc(&dir, self.cfg.max_argv_bytes);
        let Some(p) = read else {
            self.stats.load_failures += 1;
            return None;
        };
        self.stats.loads += 1;
        let cgroup = p.cgroup.as_deref().map(|path| {
            let id = self.cgroups.id_of(path).unwrap_or(0);
            self.cgroups.intern(id, path)
        });
        if let Some(old) = self.entries.get(&pid) {
            if old.start_ticks == p.start_ticks && !old.is_exited() {
                // The same process: keep what events told us (its exec id).
                return Some(());
            }
        }
        self.insert(NewProcess {
            pid,
            ppid: p.ppid,
            start_ticks: p.start_ticks,
            exec_ns: 0,
            exe: p.exe.as_deref(),
            argv: &p.argv,
            argv_truncated: p.argv_truncated,
            cwd: p.cwd.as_deref(),
            uid: p.uid,
            gid: p.gid,
            cgroup,
        });
        Some(())
    }

    /// Puts a process into the table, replacing any entry of its pid.
    pub fn insert(&mut self, p: NewProcess<'_>) -> &ProcessEntry {
        if !self.entries.contains_key(&p.pid) && self.entries.len() >= self.cfg.max_entries {
            self.evict_batch();
        }
        self.failed.remove(&p.pid);
        let (argv, cut) = bound_argv(p.argv, self.cfg.max_argv_bytes);
        let start_ns = if p.exec_ns != 0 {
            p.exec_ns
        } else {
            p.start_ticks.saturating_mul(self.boot.ns_per_tick)
        };
        self.tick += 1;
        let entry = ProcessEntry {
            pid: p.pid,
            ppid: p.ppid,
            exec_id: Arc::from(self.boot.exec_id(p.pid, p.start_ticks, p.exec_ns)),
            exe: p.exe.map(|b| self.intern(b)),
            argv,
            argv_truncated: p.argv_truncated || cut,
            cwd: p.cwd.map(|b| self.intern(b)),
            uid: p.uid,
            gid: p.gid,
            user: self.users.name(p.uid).cloned(),
            start_ticks: p.start_ticks,
            start_time: self.boot.wall(start_ns),
            exec_ns: p.exec_ns,
            cgroup: p.cgroup,
            exited_ns: None,
            last_used: self.tick,
        };
        self.prune_strings();
        let slot = self.entries.entry(p.pid);
        match slot {
            std::collections::hash_map::Entry::Occupied(mut o) => {
                o.insert(entry);
                o.into_mut()
            }
            std::collections::hash_map::Entry::Vacant(v) => v.insert(entry),
        }
    }

    /// A new process `child` forked by `parent`. `start_ns` is the child's
    /// start (`task->start_boottime`, ns since boot; with it the child's
    /// exec id equals the one a scan would give it). The child inherits the
    /// parent's image, working directory, user and cgroup.
    pub fn on_fork(&mut self, parent: u32, child: u32, start_ns: u64) {
        self.advance(start_ns);
        let start_ticks = self.boot.ticks(start_ns);
        let Some(pe) = self.lookup_or_load(parent).cloned() else {
            // Unknown parent: what /proc says about the child, else a bare
            // entry that keeps the ancestry.
            self.failed.remove(&child);
            if self.load(child).is_none() {
                self.insert(NewProcess {
                    pid: child,
                    ppid: parent,
                    start_ticks,
                    ..NewProcess::default()
                });
            }
            return;
        };
        let argv = pe.argv.clone();
        let e = self.insert(NewProcess {
            pid: child,
            ppid: parent,
            start_ticks,
            exec_ns: 0,
            exe: None,
            argv: &argv,
            argv_truncated: pe.argv_truncated,
            cwd: None,
            uid: pe.uid,
            gid: pe.gid,
            cgroup: pe.cgroup.clone(),
        });
        let pid = e.pid;
        if let Some(e) = self.entries.get_mut(&pid) {
            // Shared, not copied.
            e.exe = pe.exe;
            e.cwd = pe.cwd;
            e.user = pe.user;
        }
    }

    /// `pid` exec'd a new image. Fields the event lacks are read from
    /// `/proc/<pid>` (best effort: the process may be gone).
    pub fn on_exec(&mut self, pid: u32, ev: &ExecEvent<'_>) {
        self.advance(ev.time_ns);
        let known = self.entries.contains_key(&pid) || self.lookup_or_load(pid).is_some();
        let dir = self.cfg.proc_root.join(pid.to_string());
        let from_proc = |what: &str| {
            std::fs::read_link(dir.join(what))
                .ok()
                .map(|p| p.into_os_string().into_vec())
        };
        let exe: Option<Vec<u8>> = match ev.exe {
            Some(e) => Some(e.to_vec()),
            None => from_proc("exe"),
        };
        let (argv, argv_truncated) = match ev.argv {
            Some(a) => (a.to_vec(), ev.argv_truncated),
            None => read_cmdline(&dir, self.cfg.max_argv_bytes).unwrap_or_default(),
        };
        let old = if known {
            self.entries.get(&pid).cloned()
        } else {
            None
        };
        let cwd: Option<Vec<u8>> = match (ev.cwd, &old) {
            (Some(c), _) => Some(c.to_vec()),
            (None, Some(o)) if o.cwd.is_some() => o.cwd.as_deref().map(<[u8]>::to_vec),
            (None, _) => from_proc("cwd"),
        };
        let (start_ticks, ppid, uid, gid, cgroup) = match &old {
            Some(o) => (o.start_ticks, o.ppid, o.uid, o.gid, o.cgroup.clone()),
            None => (self.boot.ticks(ev.time_ns), 0, 0, 0, None),
        };
        self.insert(NewProcess {
            pid,
            ppid: ev.ppid.unwrap_or(ppid),
            start_ticks,
            exec_ns: ev.time_ns.max(1),
            exe: exe.as_deref(),
            argv: &argv,
            argv_truncated,
            cwd: cwd.as_deref(),
            uid: ev.uid.unwrap_or(uid),
            gid: ev.gid.unwrap_or(gid),
            cgroup,
        });
    }

    /// `pid` exited at `time_ns`: kept for the grace period, then removed.
    pub fn on_exit(&mut self, pid: u32, time_ns: u64) {
        self.advance(time_ns);
        if let Some(e) = self.entries.get_mut(&pid) {
            if e.exited_ns.is_none() {
                e.exited_ns = Some(time_ns);
                self.exits.push_back((pid, time_ns));
            }
        }
        self.expire(time_ns);
    }

    /// Removes exited entries whose grace period ended by `now_ns`. Cheap
    /// when nothing is due: call it on every event.
    pub fn expire(&mut self, now_ns: u64) {
        self.advance(now_ns);
        let grace = u64::try_from(self.cfg.exit_grace.as_nanos()).unwrap_or(u64::MAX);
        while let Some(&(pid, t)) = self.exits.front() {
            if t.saturating_add(grace) > self.now_ns {
                break;
            }
            self.exits.pop_front();
            if self
                .entries
                .get(&pid)
                .is_some_and(|e| e.exited_ns == Some(t))
            {
                self.entries.remove(&pid);
                self.stats.expired += 1;
            }
        }
    }

    /// Up to `depth` ancestors of `pid`, parent first; those missing from
    /// the table are read from `/proc`.
    pub fn ancestors(&mut self, pid: u32, depth: usize) -> Vec<AncestorInfo> {
        let mut out = Vec::with_capacity(depth.min(16));
        self.for_each_ancestor(pid, depth, |e| {
            out.push(AncestorInfo {
                pid: e.pid,
                exe: e.exe.clone(),
                exec_id: Arc::clone(&e.exec_id),
            })
        });
        out
    }

    /// Calls `f` with up to `depth` ancestors of `pid`, parent first.
    pub fn for_each_ancestor(&mut self, pid: u32, depth: usize, mut f: impl FnMut(&ProcessEntry)) {
        let mut cur = match self.lookup_or_load(pid) {
            Some(e) => e.ppid,
            None => return,
        };
        let mut seen = 0;
        while seen < depth && cur != 0 && cur != pid {
            let Some(e) = self.lookup_or_load(cur) else {
                break;
            };
            f(e);
            seen += 1;
            if e.ppid == e.pid {
                break;
            }
            cur = e.ppid;
        }
    }

    fn advance(&mut self, now_ns: u64) {
        self.now_ns = self.now_ns.max(now_ns);
    }

    fn intern(&mut self, bytes: &[u8]) -> Arc<[u8]> {
        if let Some(s) = self.strings.get(bytes) {
            return Arc::clone(s);
        }
        let s: Arc<[u8]> = Arc::from(bytes);
        self.strings.insert(Arc::clone(&s));
        s
    }

    fn prune_strings(&mut self) {
        if self.strings.len() > 2 * self.entries.len() + 1024 {
            self.strings.retain(|s| Arc::strong_count(s) > 1);
        }
    }

    /// Frees a batch of slots: exited entries first (oldest exit first),
    /// then the least recently used live ones.
    fn evict_batch(&mut self) {
        let n = (self.cfg.max_entries / 64).max(1).min(self.entries.len());
        if n == 0 {
            return;
        }
        let mut order: Vec<((bool, u64), u32)> = self
            .entries
            .values()
            .map(|e| match e.exited_ns {
                Some(t) => ((false, t), e.pid),
                None => ((true, e.last_used), e.pid),
            })
            .collect();
        if n < order.len() {
            order.select_nth_unstable(n - 1);
        }
        for &((live, _), pid) in &order[..n] {
            self.entries.remove(&pid);
            if live {
                self.stats.evicted_live += 1;
            } else {
                self.stats.evicted_exited += 1;
            }
        }
    }
}

/// `argv` in the table's form (each argument NUL-terminated), cut to
/// `max` bytes; `true` when something was cut.
fn bound_argv(raw: &[u8], max: usize) -> (Box<[u8]>, bool) {
    if raw.is_empty() {
        return (Box::default(), false);
    }
    let terminated = raw.ends_with(b"\0");
    let len = raw.len() + usize::from(!terminated);
    if len <= max {
        let mut v = Vec::with_capacity(len);
        v.extend_from_slice(raw);
        if !terminated {
            v.push(0);
        }
        return (v.into_boxed_slice(), false);
    }
    if max == 0 {
        return (Box::default(), true);
    }
    let mut v = Vec::with_capacity(max);
    v.extend_from_slice(&raw[..max - 1]);
    v.push(0);
    (v.into_boxed_slice(), true)
}

/// What one `/proc/<pid>` says.
struct ProcRead {
    ppid: u32,
    start_ticks: u64,
    uid: u32,
    gid: u32,
    exe: Option<Vec<u8>>,
    argv: Vec<u8>,
    argv_truncated: bool,
    cwd: Option<Vec<u8>>,
    cgroup: Option<Vec<u8>>,
}

fn read_proc(dir: &Path, max_argv: usize) -> Option<ProcRead> {
    let p = procfs::process::Process::new_with_root(dir.to_path_buf()).ok()?;
    let stat = p.stat().ok()?;
    let status = p.status().ok();
    let bytes = |r: Result<PathBuf, _>| r.ok().map(|p: PathBuf| p.into_os_string().into_vec());
    let (argv, argv_truncated) = read_cmdline(dir, max_argv).unwrap_or_default();
    Some(ProcRead {
        ppid: u32::try_from(stat.ppid).unwrap_or(0),
        start_ticks: stat.starttime,
        uid: status.as_ref().map_or(0, |s| s.ruid),
        gid: status.as_ref().map_or(0, |s| s.rgid),
        exe: bytes(p.exe()),
        argv,
        argv_truncated,
        cwd: bytes(p.cwd()),
        cgroup: cgroups::read_proc_cgroup(dir),
    })
}

/// `/proc/<pid>/cmdline`, read up to `max` bytes (more is marked cut).
fn read_cmdline(dir: &Path, max: usize) -> Option<(Vec<u8>, bool)> {
    let f = std::fs::File::open(dir.join("cmdline")).ok()?;
    let mut buf = Vec::with_capacity(max.min(4096));
    f.take(u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1))
        .read_to_end(&mut buf)
        .ok()?;
    let cut = buf.len() > max;
    buf.truncate(max);
    Some((buf, cut))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boot() -> BootInfo {
        BootInfo {
            boot_id: *b"0123456789abcdef",
            ns_per_tick: 10_000_000,
            wall_minus_boot_ns: 1_700_000_000_000_000_000,
        }
    }

    fn table(max: usize) -> ProcessTable {
        let cfg = TableConfig {
            max_entries: max,
            exit_grace: Duration::from_secs(5),
            max_argv_bytes: 32,
            proc_root: PathBuf::from("/nonexistent-proc"),
            ..TableConfig::default()
        };
        ProcessTable::with_parts(
            cfg,
            boot(),
            UserDb::from_entries([(0, "root".to_string()), (1000, "alice".to_string())]),
            CgroupCache::new(None, 64),
        )
    }

    fn proc(pid: u32, ppid: u32, exe: &'static [u8]) -> NewProcess<'static> {
        NewProcess {
            pid,
            ppid,
            start_ticks: u64::from(pid) * 7,
            exe: Some(exe),
            argv: b"prog\0-x\0",
            cwd: Some(b"/srv"),
            uid: 1000,
            gid: 1000,
            ..NewProcess::default()
        }
    }

    #[test]
    fn exec_ids_are_pinned_unique_across_pid_reuse_and_new_on_exec() {
        let b = boot();
        let id = b.exec_id(4242, 123_456, 0);
        assert_eq!(id.len(), 22);
        assert!(
            id.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'),
            "{id}"
        );
        // Pinned: changing the mix changes every exec id in every SIEM.
        assert_eq!(id, b.exec_id(4242, 123_456, 0));
        assert_eq!(id, "KS6T-XqZlvfBtxBNIPm9zw", "exec id mix changed");
        assert_ne!(id, b.exec_id(4242, 123_457, 0), "pid reused later");
        assert_ne!(id, b.exec_id(4243, 123_456, 0));
        assert_ne!(id, b.exec_id(4242, 123_456, 99), "exec");
        let other_boot = BootInfo {
            boot_id: *b"0123456789abcdeF",
            ..b
        };
        assert_ne!(id, other_boot.exec_id(4242, 123_456, 0));
    }

    #[test]
    fn base64url_and_boot_ids() {
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
        assert_eq!(
            parse_boot_id("2f6b1c3e-8a0d-4c1e-9d2f-6b1a3e9c8d70\n"),
            Some([
                0x2f, 0x6b, 0x1c, 0x3e, 0x8a, 0x0d, 0x4c, 0x1e, 0x9d, 0x2f, 0x6b, 0x1a, 0x3e, 0x9c,
                0x8d, 0x70
            ])
        );
        assert_eq!(parse_boot_id("nope"), None);
    }

    #[test]
    fn argv_is_kept_in_bounds_and_marked_when_cut() {
        let (a, cut) = bound_argv(b"ls\0-l\0", 32);
        assert_eq!((&*a, cut), (&b"ls\0-l\0"[..], false));
        let (a, cut) = bound_argv(b"ls\0-l", 32);
        assert_eq!((&*a, cut), (&b"ls\0-l\0"[..], false));
        let (a, cut) = bound_argv(b"0123456789\0abcdef\0", 8);
        assert_eq!((&*a, cut), (&b"0123456\0"[..], true));
        let (a, cut) = bound_argv(b"", 8);
        assert_eq!((&*a, cut), (&b""[..], false));

        let mut t = table(10);
        let e = t.insert(NewProcess {
            argv: b"a\0\0c\0",
            ..proc(5, 1, b"/bin/x")
        });
        assert_eq!(e.argv().collect::<Vec<_>>(), [&b"a"[..], b"", b"c"]);
        let e = t.insert(NewProcess {
            argv: b"",
            ..proc(6, 1, b"/bin/x")
        });
        assert_eq!(e.argv().count(), 0);
        let long = [b'x'; 100];
        let e = t.insert(NewProcess {
            argv: &long,
            ..proc(7, 1, b"/bin/x")
        });
        assert!(e.argv_truncated);
        assert_eq!(e.argv().next().map(<[u8]>::len), Some(31));
    }

    #[test]
    fn entries_share_strings_and_resolve_user_names() {
        let mut t = table(10);
        t.insert(proc(10, 1, b"/usr/bin/python3"));
        t.insert(NewProcess {
            uid: 0,
            ..proc(11, 1, b"/usr/bin/python3")
        });
        let (a, b) = (t.peek(10).unwrap(), t.peek(11).unwrap());
        assert!(Arc::ptr_eq(
            a.exe.as_ref().unwrap(),
            b.exe.as_ref().unwrap()
        ));
        assert!(Arc::ptr_eq(
            a.cwd.as_ref().unwrap(),
            b.cwd.as_ref().unwrap()
        ));
        assert_eq!(a.user.as_deref(), Some("alice"));
        assert_eq!(b.user.as_deref(), Some("root"));
        assert_eq!(a.start_time, boot().wall(70 * 10_000_000));
    }

    #[test]
    fn fork_inherits_exec_replaces_and_ancestors_walk_up() {
        let mut t = table(100);
        t.insert(proc(1, 0, b"/sbin/init"));
        t.insert(proc(100, 1, b"/usr/sbin/sshd"));
        t.on_fork(100, 200, 5_000_000_000);
        let child = t.peek(200).unwrap().clone();
        assert_eq!(child.ppid, 100);
        assert_eq!(child.exe.as_deref(), Some(&b"/usr/sbin/sshd"[..]));
        assert_eq!(child.start_ticks, 500);
        assert_eq!(&*child.exec_id, boot().exec_id(200, 500, 0));
        assert_ne!(child.exec_id, t.peek(100).unwrap().exec_id);

        t.on_exec(
            200,
            &ExecEvent {
                time_ns: 5_001_000_000,
                exe: Some(b"/bin/bash"),
                argv: Some(b"bash\0-i\0"),
                ..ExecEvent::default()
            },
        );
        let e = t.peek(200).unwrap();
        assert_eq!(e.exe.as_deref(), Some(&b"/bin/bash"[..]));
        assert_eq!(e.argv().collect::<Vec<_>>(), [&b"bash"[..], b"-i"]);
        assert_eq!(e.cwd.as_deref(), Some(&b"/srv"[..]), "exec keeps the cwd");
        assert_eq!(
            (e.ppid, e.start_ticks, e.exec_ns),
            (100, 500, 5_001_000_000)
        );
        assert_ne!(e.exec_id, child.exec_id, "a new image, a new exec id");
        assert_eq!(e.start_time, boot().wall(5_001_000_000));
        assert_eq!(e.user.as_deref(), Some("alice"));

        t.on_fork(200, 300, 6_000_000_000);
        let anc = t.ancestors(300, 8);
        let pids: Vec<u32> = anc.iter().map(|a| a.pid).collect();
        assert_eq!(pids, [200, 100, 1]);
        assert_eq!(anc[0].exe.as_deref(), Some(&b"/bin/bash"[..]));
        assert_eq!(anc[1].exec_id, t.peek(100).unwrap().exec_id);
        assert_eq!(t.ancestors(300, 2).len(), 2);
        assert_eq!(t.ancestors(300, 0).len(), 0);
        assert!(t.ancestors(999, 4).is_empty());
    }

    #[test]
    fn a_fork_from_an_unknown_parent_keeps_the_ancestry() {
        let mut t = table(100);
        t.on_fork(4_000_000, 4_000_001, 1_000_000_000);
        let e = t.peek(4_000_001).unwrap();
        assert_eq!((e.ppid, e.exe.as_ref()), (4_000_000, None));
        assert!(t.stats.load_failures >= 1);
    }

    #[test]
    fn exits_stay_for_the_grace_period_then_go() {
        let mut t = table(100);
        t.insert(proc(10, 1, b"/bin/a"));
        t.insert(proc(11, 1, b"/bin/b"));
        t.on_exit(10, 1_000_000_000);
        assert!(t.peek(10).unwrap().is_exited());
        t.expire(5_999_999_999);
        assert!(t.peek(10).is_some(), "late events still enrich");
        t.expire(6_000_000_000);
        assert!(t.peek(10).is_none());
        assert!(t.peek(11).is_some());
        assert_eq!(t.stats.expired, 1);

        // The pid is reused before the old entry expired: the new process
        // is not removed by the old exit.
        t.on_exit(11, 7_000_000_000);
        t.insert(NewProcess {
            start_ticks: 999,
            ..proc(11, 1, b"/bin/c")
        });
        t.expire(20_000_000_000);
        assert_eq!(t.peek(11).unwrap().exe.as_deref(), Some(&b"/bin/c"[..]));
    }

    #[test]
    fn a_reused_pid_gets_a_new_exec_id() {
        let mut t = table(100);
        let old = t.insert(proc(77, 1, b"/bin/a")).exec_id.clone();
        t.on_exit(77, 1);
        let new = t
            .insert(NewProcess {
                start_ticks: 10_000,
                ..proc(77, 1, b"/bin/a")
            })
            .exec_id
            .clone();
        assert_ne!(old, new);
    }

    #[test]
    fn a_full_table_evicts_exited_first_then_least_recently_used() {
        let mut t = table(128);
        for pid in 1..=128 {
            t.insert(proc(pid, 0, b"/bin/x"));
        }
        // Exited: 5 and 6. Recently used: everything but 7 and 8.
        t.on_exit(5, 10);
        t.on_exit(6, 11);
        for pid in 9..=128 {
            t.get(pid);
        }
        t.get(1);
        t.get(2);
        t.get(3);
        t.get(4);
        t.insert(proc(1000, 0, b"/bin/y")); // evicts a batch of 2 (128 / 64)
        assert_eq!(t.len(), 127);
        assert!(t.peek(5).is_none() && t.peek(6).is_none());
        assert_eq!((t.stats.evicted_exited, t.stats.evicted_live), (2, 0));
        t.insert(proc(1001, 0, b"/bin/y"));
        t.insert(proc(1002, 0, b"/bin/y"));
        assert!(
            t.peek(7).is_none() && t.peek(8).is_none(),
            "least recently used"
        );
        assert_eq!(t.stats.evicted_live, 2);
        for pid in 2000..3000 {
            t.insert(proc(pid, 0, b"/bin/z"));
            assert!(t.len() <= 128);
        }
        assert!(t.peek(2999).is_some());
    }

    #[test]
    fn misses_are_counted_and_not_retried_at_once() {
        let mut t = table(100);
        assert!(t.lookup_or_load(4_100_000).is_none());
        assert!(t.lookup_or_load(4_100_000).is_none());
        assert_eq!(
            (t.stats.misses, t.stats.load_failures, t.stats.negative_hits),
            (2, 1, 1)
        );
        t.expire(2_000_000_000);
        assert!(t.lookup_or_load(4_100_000).is_none());
        assert_eq!(t.stats.load_failures, 2);
        assert!(t.lookup_or_load(0).is_none());
    }
}
