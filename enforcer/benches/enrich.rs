//! Enrichment throughput and the process table's memory.
//!
//! `cargo bench -p enforcer --bench enrich`
//!
//! Builds a table of 10,000 live processes (a tree, 50 executables, 200 pod
//! cgroups), then enriches `ENRICH_BENCH_EVENTS` (default 2,000,000)
//! synthetic file-open events from uniformly random processes, as the
//! daemon builds them from kernel records, and prints events/s on one core
//! with and without enrichment, and allocations per event. Memory: peak RSS
//! (VmHWM) with the table built, for realistic command lines and for every
//! command line at the table's bound. Also the rate of fork/exec/exit
//! events and of a real `/proc` scan. A plain loop rather than a benchmark
//! framework: a few numbers are all we track.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // bench code: a panic is a failure

use enforcer::enrich::{
    BootInfo, CgroupCache, Enricher, ExecEvent, NewProcess, ProcessTable, TableConfig, UserDb,
};
use siem_export::event::{ByteText, Cgroup, EventClass, FileTarget, Process, Target, Verdict};
use siem_export::{SecurityEvent, Severity, Timestamp};
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
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

const PROCS: u32 = 10_000;
const PODS: u64 = 200;
/// Above pid_max (2^22): never a real process, so nothing is read from /proc.
const BASE: u32 = 5_000_000;

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn pod_path(i: u64) -> String {
    format!(
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{:08x}_0a44_4c1e_9d2f_{:012x}.slice/cri-containerd-{:064x}.scope",
        i, i, i
    )
}

/// 10,000 processes: process i's parent is i/4 (a tree 7 levels deep).
/// `worst`: every argv at the bound, a distinct executable and cwd each.
fn build(worst: bool) -> ProcessTable {
    let boot = BootInfo::read(std::path::Path::new("/proc")).unwrap();
    let cfg = TableConfig {
        proc_root: "/nonexistent-proc".into(),
        ..TableConfig::default()
    };
    let max_argv = cfg.max_argv_bytes;
    let mut cgroups = CgroupCache::new(None, cfg.max_cgroups);
    let pods: Vec<_> = (0..PODS)
        .map(|i| cgroups.intern(1000 + i, pod_path(i).as_bytes()))
        .collect();
    let mut t = ProcessTable::with_parts(cfg, boot, UserDb::open("/etc/passwd"), cgroups);
    for i in 0..PROCS {
        let exe = if worst {
            format!("/opt/app-{i}/bin/server-binary-with-a-longer-name")
        } else {
            format!("/usr/bin/tool-{}", i % 50)
        };
        let cwd = if worst {
            format!("/srv/instances/{i}/work")
        } else {
            format!("/srv/app-{}", i % 20)
        };
        let argv: Vec<u8> = if worst {
            vec![b'a'; max_argv]
        } else if i % 20 == 0 {
            // A JVM-sized command line now and then.
            let mut a = b"java\0-Xmx2g\0-cp\0".to_vec();
            a.extend(std::iter::repeat_n(b'j', 1400));
            a.extend_from_slice(b"\0com.example.Main\0");
            a
        } else {
            format!(
                "tool-{}\0--config\0/etc/app/config-{i}.yaml\0--workers\04\0",
                i % 50
            )
            .into_bytes()
        };
        t.insert(NewProcess {
            pid: BASE + i,
            ppid: if i == 0 { 0 } else { BASE + i / 4 },
            start_ticks: 1000 + u64::from(i),
            exec_ns: 0,
            exe: Some(exe.as_bytes()),
            argv: &argv,
            argv_truncated: false,
            cwd: Some(cwd.as_bytes()),
            uid: if i % 3 == 0 { 0 } else { 33 },
            gid: 33,
            cgroup: Some(pods[(i as usize) % pods.len()].clone()),
        });
    }
    assert_eq!(t.len(), PROCS as usize);
    t
}

/// A file-open verdict as the daemon builds it from a kernel record.
fn base_event(pid: u32, cgroup_id: u64, ns: u64) -> SecurityEvent {
    let mut ev = SecurityEvent::new(
        Timestamp::from_unix_nanos(1_750_000_000_000_000_000 + ns as i64),
        "worker-3",
        Verdict::Audited,
        EventClass::File,
        "open",
        Severity::Medium,
    );
    ev.kernel_ns = Some(ns);
    ev.policy = Some("baseline".into());
    ev.rule = Some("sensitive-read".into());
    ev.message = "read of a credential file".into();
    ev.process = Some(Process {
        pid,
        tgid: pid,
        ppid: None,
        uid: 33,
        gid: 33,
        user: None,
        comm: ByteText::new("tool"),
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
    ev.target = Some(Target::File(FileTarget {
        path: ByteText::new("/etc/shadow"),
        flags: Some(0),
        mode: None,
        operation: Some("read".into()),
        path_truncated: false,
        second_path: None,
    }));
    ev
}

fn run(en: &mut Enricher, n: u64, enrich: bool) -> (f64, f64) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let allocs = ALLOCS.load(Ordering::Relaxed);
    let t0 = Instant::now();
    for k in 0..n {
        let i = (rng.next() % u64::from(PROCS)) as u32;
        let mut ev = base_event(BASE + i, 1000 + u64::from(i) % PODS, 1_000_000_000 + k);
        if enrich {
            black_box(en.enrich(&mut ev, BASE + i, 1000 + u64::from(i) % PODS));
        }
        black_box(&ev);
    }
    let secs = t0.elapsed().as_secs_f64();
    let per_event = (ALLOCS.load(Ordering::Relaxed) - allocs) as f64 / n as f64;
    (n as f64 / secs, per_event)
}

fn main() {
    let n: u64 = std::env::var("ENRICH_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let rss0 = status_kib("VmRSS:");
    println!("baseline RSS before any table: {}", mib(rss0));

    // Memory: realistic table.
    let t0 = Instant::now();
    let table = build(false);
    println!(
        "table of {PROCS} live processes built in {:.1} ms; VmRSS {}, VmHWM {} (realistic argv: 95% ~60 B, 5% ~1.4 KiB)",
        t0.elapsed().as_secs_f64() * 1e3,
        mib(status_kib("VmRSS:")),
        mib(status_kib("VmHWM:"))
    );
    let mut en = Enricher::with_table(table, 5);

    // Sanity: one enriched event is complete.
    let mut ev = base_event(BASE + 9999, 1000 + 9999 % PODS, 1);
    en.enrich(&mut ev, BASE + 9999, 1000 + 9999 % PODS);
    ev.validate().unwrap();
    let p = ev.process.as_ref().unwrap();
    assert!(p.exe.is_some() && p.exec_id.is_some() && p.ancestors.len() == 5);
    assert!(ev.container.is_some());
    println!(
        "one enriched event: {} bytes of native JSON",
        serde_json::to_vec(&ev).unwrap().len()
    );

    let (base_rate, base_allocs) = run(&mut en, n, false);
    let (rate5, allocs5) = run(&mut en, n, true);
    en.set_ancestors_depth(0);
    let (rate0e, allocs0e) = run(&mut en, n, true);
    let enrich_only = |with: f64| 1.0 / (1.0 / with - 1.0 / base_rate);
    println!("{n} events from uniformly random processes of {PROCS}, one core:");
    println!(
        "  build event only:                 {:>9.0} events/s, {:.1} allocations/event",
        base_rate, base_allocs
    );
    println!(
        "  build + enrich, 5 ancestors:      {:>9.0} events/s, {:.1} allocations/event (enrich alone: {:.0} events/s)",
        rate5,
        allocs5,
        enrich_only(rate5)
    );
    println!(
        "  build + enrich, no ancestors:     {:>9.0} events/s, {:.1} allocations/event (enrich alone: {:.0} events/s)",
        rate0e,
        allocs0e,
        enrich_only(rate0e)
    );
    let stats = en.table().stats;
    assert_eq!(stats.misses, 0, "{stats:?}");

    // Process events: fork, exec, exit of short-lived children.
    let mut t = en.into_table();
    let m = 200_000u32;
    let t0 = Instant::now();
    for k in 0..m {
        let parent = BASE + k % PROCS;
        let child = BASE + PROCS + k;
        let ns = 2_000_000_000 + u64::from(k) * 1_000;
        t.on_fork(parent, child, ns);
        t.on_exec(
            child,
            &ExecEvent {
                time_ns: ns + 100,
                exe: Some(b"/usr/bin/curl"),
                argv: Some(b"curl\0-fsS\0http://10.0.0.1/health\0"),
                ..ExecEvent::default()
            },
        );
        t.on_exit(child, ns + 500);
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "fork + exec + exit: {:.0} processes/s ({:.0} process events/s); table {} entries after, {:?}",
        f64::from(m) / secs,
        3.0 * f64::from(m) / secs,
        t.len(),
        t.stats
    );
    drop(t);

    // Memory: worst case, every argv at the bound and nothing shared.
    let t = build(true);
    println!(
        "worst-case table (every argv at {} bytes, distinct exe and cwd): VmRSS {}, VmHWM {}",
        t.config().max_argv_bytes,
        mib(status_kib("VmRSS:")),
        mib(status_kib("VmHWM:"))
    );
    drop(t);

    // A real scan of this host's /proc.
    let mut real = ProcessTable::open(TableConfig::default()).unwrap();
    let t0 = Instant::now();
    let report = real.scan_proc().unwrap();
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "scan of this host's /proc: {} processes ({} vanished) in {:.1} ms ({:.0} processes/s); {} cgroups cached",
        report.loaded,
        report.failed,
        secs * 1e3,
        report.loaded as f64 / secs,
        real.cgroups().len()
    );
    println!(
        "peak RSS (VmHWM) of the whole run: {}",
        mib(status_kib("VmHWM:"))
    );
}
