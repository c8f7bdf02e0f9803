//! Enrichment throughput and the process table's memory.
//!
//! `cargo bench -p enforcer --bench enrich`
//!
//! Builds a table of 10,000 live processes (a tree, 50 executables, 200 pod
//! cgroups), then enriches `ENRICH_BENCH_EVENTS` (default 2,000,000)
//! synthetic file-open events from uniformly random processes, as the
//! daemon builds them from kernel records, and prints events/s on one core
//! with and without enrichment, and allocations per event. The whole
//! pipeline: ring-buffer records (laid out as the kernel writes them)
//! decoded, built into events, enriched, and run through the `alert` rules
//! of the shipped rule library (compiled as the daemon compiles them); and
//! exec events through the same rules, where every condition is evaluated. Memory: peak RSS
//! (VmHWM) with the table built, for realistic command lines and for every
//! command line at the table's bound. Also the rate of fork/exec/exit
//! events and of a real `/proc` scan. A plain loop rather than a benchmark
//! framework: a few numbers are all we track.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // bench code: a panic is a failure

use bpf_lsm::abi::{self, EventHeader, FileEvent};
use bpf_lsm::Record;
use enforcer::alert_rules::AlertRules;
use enforcer::enrich::{
    BootInfo, CgroupCache, Enricher, ExecEvent, NewProcess, ProcessTable, TableConfig, UserDb,
};
use policy_lang::event::Operation;
use policy_lang::model::FileOp;
use siem_export::event::{ByteText, Cgroup, EventClass, FileTarget, Process, Target, Verdict};
use siem_export::{SecurityEvent, Severity, Timestamp};
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::mem::offset_of;
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
    let (t0, c0) = (Instant::now(), cpu());
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
    println!(
        "    ({:.0} events per CPU-second of this thread)",
        n as f64 / cpu().saturating_sub(c0).as_secs_f64()
    );
    (n as f64 / secs, per_event)
}

/// This thread's CPU time: on a shared machine wall time also counts other
/// processes' turns; CPU time does not.
fn cpu() -> std::time::Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map_or(std::time::Duration::ZERO, std::time::Duration::from)
}

/// A file-open audit record as the kernel writes it on the ring buffer.
fn file_record(pid: u32, cgroup_id: u64, ktime_ns: u64, path: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; abi::FILE_EVENT_PATH_OFFSET];
    let mut put = |off: usize, bytes: &[u8]| b[off..off + bytes.len()].copy_from_slice(bytes);
    put(
        offset_of!(EventHeader, abi_version),
        &abi::ABI_VERSION.to_ne_bytes(),
    );
    put(
        offset_of!(EventHeader, kind),
        &abi::EVENT_FILE_OPEN.to_ne_bytes(),
    );
    put(
        offset_of!(EventHeader, verdict),
        &abi::VERDICT_AUDIT.to_ne_bytes(),
    );
    put(offset_of!(EventHeader, ktime_ns), &ktime_ns.to_ne_bytes());
    put(offset_of!(EventHeader, cgroup_id), &cgroup_id.to_ne_bytes());
    put(offset_of!(EventHeader, pid), &pid.to_ne_bytes());
    put(offset_of!(EventHeader, tid), &pid.to_ne_bytes());
    put(offset_of!(EventHeader, uid), &33u32.to_ne_bytes());
    put(offset_of!(EventHeader, gid), &33u32.to_ne_bytes());
    put(offset_of!(EventHeader, rule_id), &3u32.to_ne_bytes());
    put(offset_of!(EventHeader, policy_id), &0u32.to_ne_bytes());
    put(offset_of!(EventHeader, comm), b"tool");
    put(offset_of!(FileEvent, f_flags), &0u32.to_ne_bytes());
    put(
        offset_of!(FileEvent, access),
        &FileOp::Read.bit().to_ne_bytes(),
    );
    put(
        offset_of!(FileEvent, path_len),
        &u32::try_from(path.len()).unwrap().to_ne_bytes(),
    );
    b.extend_from_slice(path);
    b
}

/// The `alert` rules of the shipped library, compiled as the daemon compiles
/// them for a BPF LSM kernel, with every policy in scope (the worst case:
/// every rule's condition is evaluated), and the slot mask that says so.
fn library_alert_rules() -> (AlertRules, u64) {
    let set =
        policy_lang::load_sources(rules::files()).unwrap_or_else(|e| panic!("{}", e.render()));
    let plan = policy_lang::compile(&set, &policy_lang::KernelFeatures::full())
        .unwrap_or_else(|d| panic!("{}", policy_lang::render_all(&d, &set.sources)));
    let slots: Vec<u32> = plan.policies.iter().map(|p| p.id).collect();
    assert!(slots.len() <= 64, "more policies than kernel slots");
    let mask = if slots.len() == 64 {
        u64::MAX
    } else {
        (1u64 << slots.len()) - 1
    };
    (AlertRules::new(&plan, slots).unwrap(), mask)
}

/// Decode + build + enrich + alert rules, per file-open record: what the
/// daemon's ring-buffer loop does before the event is written out.
/// Returns events/s (wall), events per CPU-second, allocations per event and
/// the alerts that fired.
fn pipeline(en: &mut Enricher, n: u64, rules: &AlertRules, slots: u64) -> (f64, f64, f64, u64) {
    let records: Vec<Vec<u8>> = (0..PROCS)
        .map(|i| {
            let path = format!("/srv/app-{}/data/file-{i}.json", i % 20);
            file_record(
                BASE + i,
                1000 + u64::from(i) % PODS,
                1_000_000_000,
                path.as_bytes(),
            )
        })
        .collect();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut fired = 0u64;
    let allocs = ALLOCS.load(Ordering::Relaxed);
    let (t0, c0) = (Instant::now(), cpu());
    for _ in 0..n {
        let raw = &records[(rng.next() % u64::from(PROCS)) as usize];
        let record = bpf_lsm::decode_record(black_box(raw)).unwrap();
        let Record::FileOpen(f) = &record else {
            panic!("not a file record")
        };
        let h = &f.header;
        let mut ev = base_event(h.pid, h.cgroup_id, h.ktime_ns);
        if let Some(siem_export::event::Target::File(t)) = &mut ev.target {
            t.path = ByteText::new(f.path.clone());
        }
        en.enrich(&mut ev, h.pid, h.cgroup_id);
        fired += rules.fired_record(slots, &record, &ev).len() as u64;
        black_box(&ev);
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu_secs = cpu().saturating_sub(c0).as_secs_f64();
    let per_event = (ALLOCS.load(Ordering::Relaxed) - allocs) as f64 / n as f64;
    (n as f64 / secs, n as f64 / cpu_secs, per_event, fired)
}

/// Exec events of enriched processes through the alert rules: every
/// condition of the library starts with an exec test, so here all of them
/// run, regexes included. One in eight command lines is one a rule is
/// written for.
fn exec_rules(en: &mut Enricher, n: u64, rules: &AlertRules, slots: u64) -> (f64, f64, u64) {
    const EXECS: &[(&str, &str)] = &[
        (
            "/usr/bin/python3.12",
            "python3 /srv/app/manage.py migrate --noinput",
        ),
        ("/usr/bin/curl", "curl -fsS http://10.0.0.1:8080/health"),
        (
            "/usr/bin/bash",
            "bash -c /srv/app/bin/entrypoint.sh --workers 4",
        ),
        ("/usr/bin/ls", "ls -la /srv/app/data"),
        ("/usr/bin/grep", "grep -r TODO /srv/app/src"),
        ("/usr/bin/ssh", "ssh -p 22 deploy@10.0.0.7 uptime"),
        (
            "/usr/bin/java",
            "java -Xmx2g -cp /opt/app/lib/app.jar com.example.Main",
        ),
        ("/usr/bin/find", "find / -name id_rsa -type f"),
    ];
    let mut rng = Rng(0x853c_49e6_748f_ea9b);
    let mut fired = 0u64;
    let (t0, c0) = (Instant::now(), cpu());
    for k in 0..n {
        let i = (rng.next() % u64::from(PROCS)) as u32;
        let mut ev = base_event(BASE + i, 1000 + u64::from(i) % PODS, 1_000_000_000 + k);
        en.enrich(&mut ev, BASE + i, 1000 + u64::from(i) % PODS);
        let (path, cmdline) = EXECS[(k % EXECS.len() as u64) as usize];
        let op = Operation::Exec {
            path: path.into(),
            cmdline: cmdline.into(),
        };
        fired += rules.fired_on(slots, &ev, &[op]).len() as u64;
    }
    (
        n as f64 / t0.elapsed().as_secs_f64(),
        n as f64 / cpu().saturating_sub(c0).as_secs_f64(),
        fired,
    )
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
    let (rules, slots) = library_alert_rules();
    assert!(
        rules.len() >= 9,
        "the library has {} alert rules",
        rules.len()
    );
    en.set_ancestors_depth(5);
    let (rate_p, cpu_p, allocs_p, fired_p) = pipeline(&mut en, n, &rules, slots);
    println!(
        "  decode + build + enrich + {} alert rules (file opens): {:>9.0} events/s, {:>9.0} events/CPU-s, {:.1} allocations/event ({fired_p} alerts)",
        rules.len(),
        rate_p,
        cpu_p,
        allocs_p
    );
    let (rate_x, cpu_x, fired_x) = exec_rules(&mut en, n / 4, &rules, slots);
    println!(
        "  build + enrich + {} alert rules (execs, every condition evaluated): {:>9.0} events/s, {:>9.0} events/CPU-s ({fired_x} alerts)",
        rules.len(),
        rate_x,
        cpu_x
    );
    // The find for keys fires one rule; one command line in eight is it.
    assert!(fired_x >= n / 4 / 8, "{fired_x} alerts");
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
