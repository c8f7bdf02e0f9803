//! Event store throughput and query latency.
//!
//! `cargo bench -p enforcer --bench store`
//!
//! Persists `STORE_BENCH_ROWS` (default 1,000,000) realistic events in
//! batches into a fresh store in a temporary directory, printing events/s
//! per batch size, then measures query latency on the full store and one
//! retention pass. A plain loop rather than a benchmark framework: a few
//! numbers are all we track.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // bench code: a panic is a failure

use std::time::{Duration, Instant};

use enforcer::store::{self, Order, Query, Retention, Store};
use siem_export::event::{
    ByteText, Cgroup, Container, EventClass, FileTarget, Kubernetes, Process, Target, Verdict,
};
use siem_export::{EventId, SecurityEvent, Severity, Timestamp};

const T0: i64 = 1_750_000_000_000_000_000;

/// How events spread over processes and pods.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Spread {
    /// Consecutive events come from different processes and pods (event
    /// `i` from process `i % 5000`, pod `i % 200`): every batch touches
    /// thousands of places in the pid and container indexes. Worst case.
    RoundRobin,
    /// Processes emit bursts of 20 events (process `(i / 20) % 5000`, pod
    /// `(i / 20) % 200`), as a shell loop or a scanner does.
    Bursts,
}

/// A file-open verdict as the daemon builds it, spread over 200 pods, 5000
/// processes, 40 rules; 1 in 10 denied, 1 in 50 killed, the rest audited
/// or alerted. One event per millisecond of event time.
fn event(i: u64) -> SecurityEvent {
    event_with(i, Spread::Bursts)
}

fn event_with(i: u64, spread: Spread) -> SecurityEvent {
    let src = match spread {
        Spread::RoundRobin => i,
        Spread::Bursts => i / 20,
    };
    let time = Timestamp::from_unix_nanos(T0 + i64::try_from(i).unwrap() * 1_000_000);
    let verdict = match i % 50 {
        0 => Verdict::Killed,
        n if n % 10 == 1 => Verdict::Denied,
        n if n % 2 == 0 => Verdict::Audited,
        _ => Verdict::Alerted,
    };
    let mut ev = SecurityEvent::new(
        time,
        "worker-3",
        verdict,
        EventClass::File,
        "open",
        Severity::High,
    );
    ev.id = EventId::from_time_and_tail(time, u128::from(i) * 7 + 1);
    ev.kernel_ns = Some(86_400_000_000_000 + i * 1_000);
    ev.policy = Some(format!("policy-{}", i % 4));
    ev.rule = Some(format!("rule-{}", i % 40));
    ev.message = "open of /etc/shadow matched a rule".into();
    ev.tags = vec!["T1003.008".into()];
    let pod = src % 200;
    ev.process = Some(Process {
        pid: u32::try_from(10_000 + src % 5_000).unwrap(),
        tgid: u32::try_from(10_000 + src % 5_000).unwrap(),
        ppid: Some(1),
        uid: 33,
        gid: 33,
        user: None,
        comm: ByteText::new(b"python3".to_vec()),
        exe: Some(ByteText::new(b"/usr/bin/python3.12".to_vec())),
        argv: Vec::new(),
        argv_truncated: false,
        cwd: None,
        exec_id: Some(format!("d29ya2VyLTM6ODY0MDAxMjM0NTY3ODk6{}", src % 5_000)),
        start_time: None,
        ancestors: Vec::new(),
    });
    ev.cgroup = Some(Cgroup {
        id: 8_000 + pod,
        path: Some(ByteText::new(
            format!("/kubepods.slice/kubepods-burstable.slice/cri-containerd-{pod:012x}.scope")
                .into_bytes(),
        )),
    });
    ev.container = Some(Container {
        id: format!("{pod:012x}3b1f9c0d2e4a"),
        runtime: Some("containerd".into()),
    });
    ev.kubernetes = Some(Kubernetes {
        namespace: format!("ns-{}", pod % 10),
        pod_name: format!("web-{pod}"),
        pod_uid: None,
        qos: None,
    });
    ev.target = Some(Target::File(FileTarget {
        path: ByteText::new(format!("/etc/secret-{}", i % 100).into_bytes()),
        flags: Some(0),
        mode: None,
        operation: Some("read".into()),
        path_truncated: false,
        second_path: None,
    }));
    ev
}

/// This thread's CPU time (user + system): on a shared machine wall time
/// also counts other processes' turns; CPU time does not.
fn cpu() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map_or(Duration::ZERO, Duration::from)
}

/// Wall and CPU time of `f`.
fn timed<T>(wall: &mut Duration, cpu_time: &mut Duration, f: impl FnOnce() -> T) -> T {
    let (t, c) = (Instant::now(), cpu());
    let out = f();
    *wall += t.elapsed();
    *cpu_time += cpu().saturating_sub(c);
    out
}

fn rate(label: &str, n: u64, wall: Duration, cpu_time: Duration) {
    println!(
        "{label:<48} {:>9.0} events/s wall, {:>9.0} events/CPU-s ({n} events)",
        n as f64 / wall.as_secs_f64(),
        n as f64 / cpu_time.as_secs_f64()
    );
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let rows: u64 = std::env::var("STORE_BENCH_ROWS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();

    // Worst case first, on its own store.
    {
        let path = dir.path().join("round-robin.db");
        let mut store = Store::open(&path).unwrap();
        let n = (rows / 5).max(1_000);
        let (mut wall, mut cpu_time) = (Duration::ZERO, Duration::ZERO);
        for start in (0..n).step_by(1_000) {
            let batch: Vec<SecurityEvent> = (start..(start + 1_000).min(n))
                .map(|i| event_with(i, Spread::RoundRobin))
                .collect();
            timed(&mut wall, &mut cpu_time, || {
                store.insert_batch(&batch).unwrap()
            });
        }
        rate(
            "insert, round-robin processes, batches of 1000",
            n,
            wall,
            cpu_time,
        );
    }

    let path = store::path_in(dir.path());
    let mut store = Store::open(&path).unwrap();
    let bytes = serde_json::to_vec(&event(0)).unwrap().len();
    println!("rows: {rows}, native JSON bytes per event: {bytes}");

    // Insert throughput, generating events outside the timed section.
    let mut next = 0u64;
    let plan: [(usize, u64); 3] = [(100, rows / 20), (1_000, rows / 20), (10_000, 0)];
    for (batch_size, count) in plan {
        let count = if count == 0 { rows - next } else { count };
        let (mut wall, mut cpu_time) = (Duration::ZERO, Duration::ZERO);
        let mut done = 0u64;
        while done < count {
            let n = (count - done).min(batch_size as u64);
            let batch: Vec<SecurityEvent> = (next..next + n).map(event).collect();
            let out = timed(&mut wall, &mut cpu_time, || {
                store.insert_batch(&batch).unwrap()
            });
            assert_eq!(out.inserted as u64, n);
            next += n;
            done += n;
        }
        rate(
            &format!("insert, bursts, batches of {batch_size}"),
            count,
            wall,
            cpu_time,
        );
    }
    // Replays are no-ops.
    let replay: Vec<SecurityEvent> = (0..1_000).map(event).collect();
    let t = Instant::now();
    let out = store.insert_batch(&replay).unwrap();
    println!(
        "replay of 1000 stored events: {:>9.0} events/s ({} duplicates)",
        1_000.0 / t.elapsed().as_secs_f64(),
        out.duplicates
    );
    let stats = store.stats().unwrap();
    println!(
        "store: {} events, {:.0} MiB ({} bytes/event)",
        stats.events,
        stats.file_bytes as f64 / 1_048_576.0,
        stats.file_bytes / stats.events.max(1)
    );
    drop(store);

    // Query latency: a reader, as `enforcer events query` opens it.
    let reader = Store::open_read_only(&path).unwrap();
    let mid = Timestamp::from_unix_nanos(T0 + i64::try_from(rows / 2).unwrap() * 1_000_000);
    let minute = Timestamp::from_unix_nanos(mid.unix_nanos() + 60_000_000_000);
    let q = |f: &dyn Fn(&mut Query)| {
        let mut q = Query {
            limit: Some(100),
            ..Query::default()
        };
        f(&mut q);
        q
    };
    let cases: Vec<(&str, Query)> = vec![
        ("newest 100", q(&|_| {})),
        ("oldest 100", q(&|q| q.order = Order::OldestFirst)),
        (
            "verdict=killed, 100",
            q(&|q| q.verdict = vec![Verdict::Killed]),
        ),
        (
            "verdict=denied,killed, 100",
            q(&|q| q.verdict = vec![Verdict::Denied, Verdict::Killed]),
        ),
        ("policy, 100", q(&|q| q.policy = Some("policy-3".into()))),
        ("rule, 100", q(&|q| q.rule = Some("rule-17".into()))),
        (
            "container prefix, 100",
            q(&|q| q.container = Some("00000000002a".into())),
        ),
        ("pid, 100", q(&|q| q.pid = Some(12_345))),
        (
            "1-minute window mid-store, 100",
            q(&|q| {
                q.since = Some(mid);
                q.until = Some(minute);
            }),
        ),
        (
            "rule + window, all",
            q(&|q| {
                q.rule = Some("rule-3".into());
                q.since = Some(mid);
                q.until = Some(minute);
                q.limit = None;
            }),
        ),
        (
            "pid + verdict=killed, 100",
            q(&|q| {
                q.pid = Some(10_050);
                q.verdict = vec![Verdict::Killed];
            }),
        ),
    ];
    println!("query latency over {rows} rows (median / p99 of 50 runs):");
    for (label, query) in &cases {
        let mut times = Vec::with_capacity(50);
        let mut n = 0;
        for _ in 0..50 {
            let t = Instant::now();
            n = reader.query(query).unwrap().len();
            times.push(t.elapsed());
        }
        times.sort();
        println!(
            "  {label:<34} {:>8.2} ms / {:>8.2} ms  ({n} events)",
            percentile(&times, 0.5).as_secs_f64() * 1e3,
            percentile(&times, 0.99).as_secs_f64() * 1e3
        );
    }
    let t = Instant::now();
    let s = reader.stats().unwrap();
    println!(
        "  stats (count by verdict, span)     {:>8.2} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    drop(reader);

    // Retention: drop the oldest 10% by age, then shrink to 80% by size.
    let mut store = Store::open(&path).unwrap();
    let cut = Timestamp::from_unix_nanos(T0 + i64::try_from(rows / 10).unwrap() * 1_000_000);
    let newest = s.newest.unwrap();
    let age = Duration::from_nanos(u64::try_from(newest.unix_nanos() - cut.unix_nanos()).unwrap());
    let t = Instant::now();
    let r = store
        .enforce_retention(
            &Retention {
                max_age: Some(age),
                max_bytes: None,
            },
            newest,
        )
        .unwrap();
    println!(
        "retention by age: {} events deleted in {:.2} s ({:.0} events/s), {} -> {} MiB",
        r.deleted(),
        t.elapsed().as_secs_f64(),
        r.deleted() as f64 / t.elapsed().as_secs_f64(),
        r.bytes_before >> 20,
        r.bytes_after >> 20
    );
    let t = Instant::now();
    let r = store
        .enforce_retention(
            &Retention {
                max_age: None,
                max_bytes: Some(r.bytes_after / 10 * 8),
            },
            newest,
        )
        .unwrap();
    println!(
        "retention by size: {} events deleted ({} denied/killed) in {:.2} s, {} -> {} MiB",
        r.deleted(),
        r.deleted_by_size.denied + r.deleted_by_size.killed,
        t.elapsed().as_secs_f64(),
        r.bytes_before >> 20,
        r.bytes_after >> 20
    );
}
