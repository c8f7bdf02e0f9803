//! End-to-end delivery throughput and latency: events enqueued into the
//! SQLite outbox (WAL, synchronous=FULL), delivered by the dispatcher to a
//! webhook receiver on loopback (the tests' HTTP server), by batch size.
//!
//! `cargo bench -p siem-export --bench delivery`
//!
//! For each batch size: (1) throughput: 100,000 events enqueued as fast as
//! possible in chunks of 1,000, timed until the receiver has them all;
//! (2) latency: events offered at a steady 50,000/s for 3 s, and the time
//! from the start of their `enqueue` call to the receiver reading the
//! request, p50/p99/max.
//!
//! Throughput is printed per wall-clock second and per CPU-second of the
//! whole process (`getrusage`, user + system, all threads: the outbox, the
//! dispatcher and the receiver), which a shared machine does not distort.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use siem_export::config::{SinkConfig, SinkKind};
use siem_export::dispatcher::Dispatcher;
use siem_export::net::webhook::WebhookConfig;
use siem_export::outbox::{Outbox, OutboxConfig};
use siem_export::SecurityEvent;
use support::Receiver;

const CHUNK: usize = 1000;

fn id_positions(
    reqs: &[support::Request],
    index: &HashMap<String, usize>,
) -> Vec<(usize, Instant)> {
    let mut out = Vec::new();
    let pat = b"\"id\":\"";
    for r in reqs {
        let b = &r.body;
        let mut i = 0;
        while let Some(p) = b[i..].windows(pat.len()).position(|w| w == pat) {
            let s = i + p + pat.len();
            if let Ok(id) = std::str::from_utf8(&b[s..s + 26]) {
                if let Some(&n) = index.get(id) {
                    out.push((n, r.at));
                }
            }
            i = s + 26;
        }
    }
    out
}

async fn setup(batch: usize) -> (tempfile::TempDir, Receiver, Dispatcher) {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let mut cfg = SinkConfig {
        name: "hook".into(),
        kind: SinkKind::Webhook(WebhookConfig::new(rx.url("/in"))),
        filter: Default::default(),
        batch: Default::default(),
        retry: Default::default(),
    };
    cfg.batch.max_events = batch;
    cfg.batch.max_delay_ms = 50;
    let outbox = Outbox::open(
        &dir.path().join("outbox.db"),
        &["hook"],
        OutboxConfig::default(),
    )
    .unwrap();
    let d = Dispatcher::start(Arc::new(outbox), vec![cfg.build().unwrap()]).unwrap();
    (dir, rx, d)
}

fn make_events(n: usize, offset: u64) -> (Vec<SecurityEvent>, HashMap<String, usize>) {
    let evs: Vec<SecurityEvent> = (0..n as u64)
        .map(|i| support::event(offset + i, siem_export::event::Verdict::Denied))
        .collect();
    let index = evs
        .iter()
        .enumerate()
        .map(|(i, e)| (e.id.to_string(), i))
        .collect();
    (evs, index)
}

/// CPU time (user + system) of this process so far, all threads.
fn process_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// (events per wall second, events per CPU-second of the process).
async fn throughput(batch: usize) -> (f64, f64) {
    let (_dir, rx, d) = setup(batch).await;
    let n = 100_000;
    let (evs, _) = make_events(n, 0);
    let start = Instant::now();
    let cpu0 = process_cpu();
    for chunk in evs.chunks(CHUNK) {
        d.enqueue(chunk.to_vec()).await.unwrap();
    }
    let ok = rx
        .wait_for(Duration::from_secs(120), |st| {
            st.accepted.len() * batch >= n
        })
        .await;
    // Exact: the outbox is empty once the last batch was acknowledged.
    loop {
        let s = d.stats().await.unwrap();
        if s.sinks[0].queued == 0 && s.sinks[0].in_flight == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let el = start.elapsed();
    let cpu = process_cpu().saturating_sub(cpu0);
    assert!(ok);
    d.shutdown(Duration::from_secs(5)).await;
    (n as f64 / el.as_secs_f64(), n as f64 / cpu.as_secs_f64())
}

async fn latency(batch: usize, rate: usize, secs: u64) -> (Duration, Duration, Duration, usize) {
    let (_dir, rx, d) = setup(batch).await;
    let n = rate * secs as usize;
    let (evs, index) = make_events(n, 1_000_000);
    let mut sent_at = vec![Instant::now(); n];
    let start = Instant::now();
    let per_chunk = Duration::from_secs_f64(CHUNK as f64 / rate as f64);
    for (c, chunk) in evs.chunks(CHUNK).enumerate() {
        let due = start + per_chunk * c as u32;
        tokio::time::sleep_until(due.into()).await;
        let t = Instant::now();
        for s in &mut sent_at[c * CHUNK..c * CHUNK + chunk.len()] {
            *s = t;
        }
        d.enqueue(chunk.to_vec()).await.unwrap();
    }
    loop {
        let s = d.stats().await.unwrap();
        if s.sinks[0].queued == 0 && s.sinks[0].in_flight == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    d.shutdown(Duration::from_secs(5)).await;
    let got = id_positions(&rx.accepted(), &index);
    let mut lat: Vec<Duration> = got
        .iter()
        .map(|(i, at)| at.saturating_duration_since(sent_at[*i]))
        .collect();
    lat.sort();
    let q = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    (q(0.50), q(0.99), *lat.last().unwrap(), lat.len())
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        println!("delivery to one webhook receiver on loopback, outbox with synchronous=FULL");
        for batch in [100, 500, 2000] {
            let (eps, per_cpu) = throughput(batch).await;
            let (p50, p99, max, n) = latency(batch, 50_000, 3).await;
            println!(
                "batch {batch:>5}: {eps:>9.0} events/s wall, {per_cpu:>9.0} events/CPU-s | at 50,000/s offered: p50 {:>7.1} ms, p99 {:>7.1} ms, max {:>7.1} ms ({n} events)",
                p50.as_secs_f64() * 1e3,
                p99.as_secs_f64() * 1e3,
                max.as_secs_f64() * 1e3
            );
        }
    });
}
