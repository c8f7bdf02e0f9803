//! The process table and the enricher against this host's real `/proc`:
//! child processes started here must be found with the right executable,
//! arguments, working directory, parent and ancestry.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use enforcer::enrich::{EnrichConfig, Enricher, NewProcess, ProcessTable, TableConfig, UserDb};
use siem_export::event::{ByteText, Cgroup, EventClass, Process, Verdict};
use siem_export::{SecurityEvent, Severity, Timestamp};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::BufRead;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Counts this thread's allocations, to show that table lookups make none.
struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|n| n.set(n.get() + 1));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

/// `sh -c 'sleep 30 7 & echo $!; wait'` in `cwd`: the shell is our child,
/// sleep its child. Killed (both) on drop.
struct Tree {
    sh: Child,
    sleep: u32,
}

impl Tree {
    fn start(cwd: &Path) -> Tree {
        let mut sh = Command::new("sh")
            .args(["-c", "sleep 30 7 & echo $!; wait"])
            .current_dir(cwd)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(sh.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let sleep: u32 = line.trim().parse().unwrap();
        // Wait until the child has exec'd sleep.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read(format!("/proc/{sleep}/cmdline"))
            .is_ok_and(|c| c.starts_with(b"sleep\0"))
        {
            assert!(Instant::now() < deadline, "sleep did not start");
            std::thread::sleep(Duration::from_millis(5));
        }
        Tree { sh, sleep }
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.sleep as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.sh.kill();
        let _ = self.sh.wait();
    }
}

fn in_path(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap()
        .canonicalize()
        .unwrap()
}

fn table() -> ProcessTable {
    let mut t = ProcessTable::open(TableConfig::default()).unwrap();
    let report = t.scan_proc().unwrap();
    assert!(report.loaded > 2, "{report:?}");
    t
}

fn my_ruid() -> u32 {
    nix::unistd::getuid().as_raw()
}

#[test]
fn a_scan_finds_children_with_exe_argv_cwd_parent_and_ancestry() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().canonicalize().unwrap();
    let tree = Tree::start(&cwd);
    let mut t = table();
    let me = std::process::id();

    let e = t.lookup_or_load(tree.sleep).unwrap().clone();
    assert_eq!(e.pid, tree.sleep);
    assert_eq!(e.ppid, tree.sh.id());
    assert_eq!(
        e.exe.as_deref(),
        Some(in_path("sleep").as_os_str().as_encoded_bytes())
    );
    assert_eq!(e.argv().collect::<Vec<_>>(), [&b"sleep"[..], b"30", b"7"]);
    assert!(!e.argv_truncated);
    assert_eq!(e.cwd.as_deref(), Some(cwd.as_os_str().as_encoded_bytes()));
    assert_eq!(e.uid, my_ruid());
    assert_eq!(
        e.user.as_deref(),
        UserDb::open("/etc/passwd").name(my_ruid()).map(|s| &**s)
    );
    assert!(e.start_ticks > 0 && e.exec_ns == 0 && !e.is_exited());
    let started = e.start_time.unix_nanos();
    let now = Timestamp::now().unix_nanos();
    assert!(
        (now - started).abs() < 120_000_000_000,
        "start time {} vs now {}",
        e.start_time.to_rfc3339(),
        Timestamp::now().to_rfc3339()
    );

    // sleep -> sh -> this test process -> ...
    let anc = t.ancestors(tree.sleep, 3);
    let pids: Vec<u32> = anc.iter().map(|a| a.pid).collect();
    assert_eq!(pids[..2], [tree.sh.id(), me], "{pids:?}");
    assert_eq!(
        anc[0].exe.as_deref(),
        Some(in_path("sh").as_os_str().as_encoded_bytes())
    );
    assert_eq!(
        anc[1].exe.as_deref(),
        Some(
            std::env::current_exe()
                .unwrap()
                .as_os_str()
                .as_encoded_bytes()
        )
    );
    assert_eq!(anc[1].exec_id, t.peek(me).unwrap().exec_id);
    assert_eq!(t.ancestors(tree.sleep, 1).len(), 1);

    // The cgroup: the path /proc says, the id of that directory.
    let cg = e.cgroup.as_ref().unwrap();
    let text = std::fs::read_to_string(format!("/proc/{}/cgroup", tree.sleep)).unwrap();
    let path = text.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
    assert_eq!(&*cg.path, path.as_bytes());
    if let Some(root) = t.cgroups().root() {
        let rel = path.trim_start_matches('/');
        assert_eq!(cg.id, std::fs::metadata(root.join(rel)).unwrap().ino());
    }
}

#[test]
fn exec_ids_are_stable_across_scans_and_new_for_a_reused_pid() {
    let dir = tempfile::tempdir().unwrap();
    let tree = Tree::start(dir.path());
    let mut a = table();
    let mut b = table();
    let ea = a.lookup_or_load(tree.sleep).unwrap().clone();
    let eb = b.lookup_or_load(tree.sleep).unwrap().clone();
    assert_eq!(ea.exec_id, eb.exec_id);
    assert_eq!(ea.start_ticks, eb.start_ticks);
    // A second scan of the same table keeps it too.
    a.scan_proc().unwrap();
    assert_eq!(a.peek(tree.sleep).unwrap().exec_id, ea.exec_id);
    // Different processes, different ids.
    assert_ne!(a.peek(tree.sh.id()).unwrap().exec_id, ea.exec_id);

    // The pid is reused by a process started later.
    a.on_exit(tree.sleep, 1);
    let reused = a
        .insert(NewProcess {
            pid: tree.sleep,
            ppid: 1,
            start_ticks: ea.start_ticks + 1,
            exe: Some(b"/bin/other"),
            ..NewProcess::default()
        })
        .exec_id
        .clone();
    assert_ne!(reused, ea.exec_id);
    assert_eq!(
        a.boot().exec_id(tree.sleep, ea.start_ticks, 0),
        &*ea.exec_id,
        "exec ids are a function of (boot id, start, pid)"
    );
}

#[test]
fn a_process_started_after_the_scan_is_loaded_on_its_first_lookup() {
    let mut t = table();
    let dir = tempfile::tempdir().unwrap();
    let tree = Tree::start(dir.path());
    let misses = t.stats.misses;
    let e = t.lookup_or_load(tree.sleep).unwrap();
    assert_eq!(e.argv().next(), Some(&b"sleep"[..]));
    assert_eq!(t.stats.misses, misses + 1);
    assert!(t.lookup_or_load(tree.sleep).is_some());
    assert_eq!(t.stats.misses, misses + 1, "a hit is not a miss");
}

#[test]
fn uid_0_is_root() {
    assert_eq!(
        UserDb::open("/etc/passwd").name(0).map(|s| &**s),
        Some("root")
    );
}

#[test]
fn table_lookups_do_not_allocate() {
    let mut t = table();
    let me = std::process::id();
    assert!(t.lookup_or_load(me).is_some());
    let before = allocs();
    let mut found = 0;
    for _ in 0..10_000 {
        found += usize::from(t.lookup_or_load(me).is_some());
        found += usize::from(t.get(me).is_some());
        found += usize::from(t.peek(me).is_some());
    }
    assert_eq!(allocs() - before, 0);
    assert_eq!(found, 30_000);
}

#[test]
fn the_enricher_fills_an_event_for_a_real_process() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().canonicalize().unwrap();
    let tree = Tree::start(&cwd);
    let (mut en, report) = Enricher::start(EnrichConfig::default()).unwrap();
    assert!(report.loaded > 2);
    let cgroup_id = en
        .table()
        .peek(tree.sleep)
        .unwrap()
        .cgroup
        .as_ref()
        .unwrap()
        .id;

    let mut ev = SecurityEvent::new(
        Timestamp::now(),
        "h",
        Verdict::Audited,
        EventClass::File,
        "open",
        Severity::Low,
    );
    ev.process = Some(Process {
        pid: tree.sleep,
        tgid: tree.sleep,
        ppid: None,
        uid: my_ruid(),
        gid: nix::unistd::getgid().as_raw(),
        user: None,
        comm: ByteText::new("sleep"),
        exe: None,
        argv: Vec::new(),
        argv_truncated: false,
        cwd: None,
        exec_id: None,
        start_time: None,
        ancestors: Vec::new(),
    });
    ev.cgroup = Some(Cgroup {
        id: cgroup_id,
        path: None,
    });
    let out = en.enrich(&mut ev, tree.sleep, cgroup_id);
    assert!(out.process);
    ev.validate().unwrap();
    let p = ev.process.as_ref().unwrap();
    assert_eq!(p.ppid, Some(tree.sh.id()));
    assert_eq!(p.argv.len(), 3);
    assert_eq!(
        p.cwd.as_ref().unwrap().as_bytes(),
        cwd.as_os_str().as_encoded_bytes()
    );
    assert_eq!(
        p.exec_id.as_deref(),
        Some(&*en.table().peek(tree.sleep).unwrap().exec_id)
    );
    assert_eq!(p.ancestors[0].pid, tree.sh.id());
    assert_eq!(p.ancestors[1].pid, std::process::id());
    assert!(ev.cgroup.as_ref().unwrap().path.is_some());
    // Round trip through the native schema.
    let json = serde_json::to_vec(&ev).unwrap();
    assert_eq!(SecurityEvent::from_json(&json).unwrap(), ev);
}
