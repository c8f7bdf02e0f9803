//! Test-only helper for the crash test (`tests/crash.rs`): a dispatcher
//! with one webhook sink over an outbox, run as its own process so the test
//! can `kill -9` it mid-batch.
//!
//! `outbox_worker DB URL COUNT [--enqueue]`: with `--enqueue`, stores events
//! 0..COUNT first (the same deterministic ids as the tests' `support::event`);
//! then delivers until the outbox is empty and exits 0.

use std::sync::Arc;
use std::time::Duration;

use siem_export::config::{SinkConfig, SinkKind};
use siem_export::dispatcher::Dispatcher;
use siem_export::event::{EventClass, Verdict};
use siem_export::net::webhook::WebhookConfig;
use siem_export::outbox::{Outbox, OutboxConfig};
use siem_export::retry::RetryPolicy;
use siem_export::{EventFilter, EventId, SecurityEvent, Severity, Timestamp};

fn event(n: u64) -> SecurityEvent {
    let t = Timestamp::from_unix_nanos(1_750_000_000_000_000_000 + n as i64 * 1_000_000);
    let mut ev = SecurityEvent::new(
        t,
        "node-a",
        Verdict::Denied,
        EventClass::File,
        "open",
        Severity::High,
    );
    ev.id = EventId::from_time_and_tail(t, u128::from(n) + 1);
    ev.policy = Some("baseline".into());
    ev.rule = Some("no-shadow-read".into());
    ev.message = format!("event {n}");
    ev
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (db, url, count) = match args.as_slice() {
        [_, db, url, count, ..] => (db.clone(), url.clone(), count.parse::<u64>()?),
        _ => return Err("usage: outbox_worker DB URL COUNT [--enqueue]".into()),
    };
    let outbox = Arc::new(Outbox::open(
        db.as_ref(),
        &["hook"],
        OutboxConfig::default(),
    )?);
    let mut cfg = SinkConfig {
        name: "hook".into(),
        kind: SinkKind::Webhook(WebhookConfig::new(url)),
        filter: EventFilter::all(),
        batch: Default::default(),
        retry: RetryPolicy {
            base_ms: 50,
            cap_ms: 500,
            ..RetryPolicy::default()
        },
    };
    cfg.batch.max_events = 25;
    cfg.batch.max_delay_ms = 20;
    let d = Dispatcher::start(Arc::clone(&outbox), vec![cfg.build()?])?;
    if args.iter().any(|a| a == "--enqueue") {
        let events: Vec<SecurityEvent> = (0..count).map(event).collect();
        for chunk in events.chunks(100) {
            d.enqueue(chunk.to_vec()).await?;
        }
        println!("enqueued");
    }
    loop {
        let s = d.stats().await?;
        if s.sinks.iter().all(|s| s.queued == 0 && s.in_flight == 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    d.shutdown(Duration::from_secs(5)).await;
    println!("drained");
    Ok(())
}
