//! Native JSON encoding throughput, single thread.
//!
//! `cargo bench -p siem-export --bench encode`
//!
//! A plain loop rather than a benchmark framework: one number (events/s)
//! is all we track, and it keeps the dependency tree small.

use std::hint::black_box;
use std::time::{Duration, Instant};

use siem_export::encode::{Encoder, Framing, NativeJson};
use siem_export::SecurityEvent;

const README: &str = include_str!("../README.md");

/// The README's first example: a fully populated exec event.
fn sample() -> Option<SecurityEvent> {
    let start = README.find("```json\n")? + "```json\n".len();
    let len = README[start..].find("\n```")?;
    SecurityEvent::from_json(&README.as_bytes()[start..start + len]).ok()
}

fn measure(label: &str, mut f: impl FnMut() -> usize) {
    // Warm up, then run for about two seconds.
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_millis(300) {
        f();
    }
    let mut events = 0usize;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        events += f();
    }
    let secs = start.elapsed().as_secs_f64();
    println!("{label:<28} {:>12.0} events/s", events as f64 / secs);
}

fn main() {
    let Some(ev) = sample() else {
        eprintln!("README example event missing or invalid");
        std::process::exit(1);
    };
    let mut buf = Vec::with_capacity(1 << 20);
    NativeJson.encode(&ev, &mut buf).ok();
    println!("bytes per event: {}", buf.len());

    measure("native-json encode", || {
        buf.clear();
        NativeJson.encode(black_box(&ev), &mut buf).ok();
        black_box(&buf);
        1
    });

    let batch = vec![ev.clone(); 256];
    measure("native-json batch of 256", || {
        buf.clear();
        let res = NativeJson.encode_batch(black_box(&batch), Framing::Lines, &mut buf);
        black_box(&buf);
        res.len()
    });

    let line = {
        let mut v = Vec::new();
        NativeJson.encode(&ev, &mut v).ok();
        v
    };
    measure("native-json decode+validate", || {
        black_box(SecurityEvent::from_json(black_box(&line)).is_ok());
        1
    });
}
