//! Delivery through the outbox and dispatcher to real HTTP servers on
//! loopback: batching, signatures, retries, dead letters, faults.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use siem_export::config::{SinkConfig, SinkKind, SinkRuntime};
use siem_export::dispatcher::{send_test_event, Dispatcher};
use siem_export::event::Verdict;
use siem_export::net::elasticsearch::ElasticsearchConfig;
use siem_export::net::splunk::{HecAckConfig, SplunkHecConfig};
use siem_export::net::webhook::WebhookConfig;
use siem_export::net::{HttpTimeouts, JsonFormat, TlsConfig};
use siem_export::outbox::{Outbox, OutboxConfig};
use siem_export::retry::RetryPolicy;
use siem_export::secret::SecretSource;
use siem_export::{EventFilter, Severity};
use support::{event, events, Action, Receiver, Response};

const SECRET_A: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SECRET_B: &str = "whsec_c2Vjb25kLXNlY3JldC1mb3Itcm90YXRpb24=";

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        base_ms: 50,
        cap_ms: 400,
        ..RetryPolicy::default()
    }
}

fn webhook(dir: &tempfile::TempDir, name: &str, url: String, max_events: usize) -> SinkConfig {
    let mut secrets = Vec::new();
    for (i, s) in [SECRET_A, SECRET_B].iter().enumerate() {
        let p = dir.path().join(format!("secret{i}"));
        std::fs::write(&p, format!("{s}\n")).unwrap();
        secrets.push(SecretSource::File(p));
    }
    let mut w = WebhookConfig::new(url);
    w.secrets = secrets;
    w.headers.insert("x-tenant".into(), "blue".into());
    w.timeouts = HttpTimeouts {
        connect_ms: 1000,
        request_ms: 3000,
    };
    let mut c = SinkConfig {
        name: name.into(),
        kind: SinkKind::Webhook(w),
        filter: EventFilter::all(),
        batch: Default::default(),
        retry: fast_retry(),
    };
    c.batch.max_events = max_events;
    c.batch.max_delay_ms = 50;
    c
}

fn start(dir: &tempfile::TempDir, sinks: Vec<SinkRuntime>) -> Dispatcher {
    let names: Vec<&str> = sinks.iter().map(|s| s.name.as_str()).collect();
    let outbox = Outbox::open(
        &dir.path().join("outbox.db"),
        &names,
        OutboxConfig::default(),
    )
    .unwrap();
    Dispatcher::start(Arc::new(outbox), sinks).unwrap()
}

async fn wait_drained(d: &Dispatcher, limit: Duration) -> bool {
    let end = std::time::Instant::now() + limit;
    while std::time::Instant::now() < end {
        let s = d.stats().await.unwrap();
        if s.sinks.iter().all(|s| s.queued == 0 && s.in_flight == 0) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

fn unique(ids: &[String]) -> HashSet<String> {
    ids.iter().cloned().collect()
}

fn all_ids(n: u64) -> HashSet<String> {
    events(0..n).iter().map(|e| e.id.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_batches_are_signed_and_complete() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let d = start(
        &dir,
        vec![webhook(&dir, "hook", rx.url("/in"), 40).build().unwrap()],
    );
    d.enqueue(events(0..100)).await.unwrap();
    assert!(wait_drained(&d, Duration::from_secs(10)).await);
    let reqs = rx.accepted();
    assert!(
        reqs.len() >= 3,
        "batched into several requests: {}",
        reqs.len()
    );
    for r in &reqs {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/in");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("x-tenant"), Some("blue"));
        assert!(r.header("webhook-id").unwrap().starts_with("msg_"));
        // Both rotation secrets verify; a wrong one does not.
        support::verify_webhook(SECRET_A, r).unwrap();
        support::verify_webhook(SECRET_B, r).unwrap();
        assert!(support::verify_webhook("whsec_d3Jvbmc=", r).is_err());
        assert_eq!(r.header("webhook-signature").unwrap().split(' ').count(), 2);
        let batch: Vec<serde_json::Value> = serde_json::from_slice(&r.body).unwrap();
        assert!(batch.len() <= 40);
    }
    let ids = rx.accepted_ids();
    assert_eq!(ids.len(), 100, "no duplicates without faults");
    assert_eq!(unique(&ids), all_ids(100));
    let m = d.metrics().snapshot();
    assert_eq!(m.enqueued, 100);
    assert_eq!(m.sinks[0].delivered, 100);
    assert_eq!(
        d.stats().await.unwrap().events,
        0,
        "delivered events are collected"
    );
    d.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_keep_the_webhook_id_and_honour_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    rx.push(Action::Reply(Response::status(500, "boom")));
    rx.push(Action::Reply(
        Response::status(429, "slow down").with_header("retry-after", "1"),
    ));
    rx.push(Action::Drop);
    let d = start(
        &dir,
        vec![webhook(&dir, "hook", rx.url("/in"), 100).build().unwrap()],
    );
    d.enqueue(events(0..10)).await.unwrap();
    assert!(wait_drained(&d, Duration::from_secs(15)).await);
    let reqs = rx.received();
    assert_eq!(reqs.len(), 4, "500, 429, dropped, accepted");
    let id0 = reqs[0].header("webhook-id").unwrap();
    assert!(
        reqs.iter().all(|r| r.header("webhook-id") == Some(id0)),
        "same batch, same id"
    );
    let waited = reqs[2].at - reqs[1].at;
    assert!(
        waited >= Duration::from_millis(950),
        "Retry-After: 1 honoured, waited {waited:?}"
    );
    for r in &reqs {
        support::verify_webhook(SECRET_A, r).unwrap();
    }
    assert_eq!(unique(&rx.accepted_ids()), all_ids(10));
    let m = d.metrics().snapshot();
    assert_eq!(m.sinks[0].retried, 30);
    assert_eq!(m.sinks[0].failed_batches, 3);
    let s = d.stats().await.unwrap();
    assert_eq!(s.sinks[0].retried, 30);
    assert_eq!(s.sinks[0].delivered, 10);
    d.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_are_dead_lettered_and_can_be_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let long = format!("bad request: {}", "x".repeat(2000));
    rx.push(Action::Reply(Response::status(400, &long)));
    let d = start(
        &dir,
        vec![webhook(&dir, "hook", rx.url("/in"), 100).build().unwrap()],
    );
    d.enqueue(events(0..5)).await.unwrap();
    assert!(wait_drained(&d, Duration::from_secs(10)).await);
    let dead = d.outbox().dead_letters(None, 100).unwrap();
    assert_eq!(dead.len(), 5);
    assert!(
        dead[0].reason.starts_with("HTTP 400: bad request: xxx"),
        "{}",
        dead[0].reason
    );
    assert_eq!(dead[0].reason.len(), "HTTP 400: ".len() + 512);
    assert_eq!(dead[0].sink, "hook");
    let s = d.stats().await.unwrap();
    assert_eq!((s.sinks[0].dead, s.events), (5, 5));
    assert!(rx.accepted().is_empty());

    assert_eq!(d.replay_dead(Some("hook".into())).await.unwrap(), 5);
    assert!(wait_drained(&d, Duration::from_secs(10)).await);
    assert_eq!(unique(&rx.accepted_ids()), all_ids(5));
    let s = d.stats().await.unwrap();
    assert_eq!((s.sinks[0].dead, s.sinks[0].replayed, s.events), (0, 5, 0));
    d.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_count_as_delivered_per_sink() {
    let dir = tempfile::tempdir().unwrap();
    let rx_all = Receiver::start().await;
    let rx_deny = Receiver::start().await;
    let mut only_deny = webhook(&dir, "deny-only", rx_deny.url("/d"), 100);
    only_deny.filter = EventFilter {
        verdicts: vec![Verdict::Denied],
        min_severity: Some(Severity::Medium),
        ..EventFilter::all()
    };
    let d = start(
        &dir,
        vec![
            webhook(&dir, "all", rx_all.url("/a"), 100).build().unwrap(),
            only_deny.build().unwrap(),
        ],
    );
    let mut evs = events(0..6);
    for e in evs.iter_mut().skip(3) {
        e.verdict = Verdict::Audited;
    }
    d.enqueue(evs.clone()).await.unwrap();
    assert!(wait_drained(&d, Duration::from_secs(10)).await);
    assert_eq!(rx_all.accepted_ids().len(), 6);
    let got = unique(&rx_deny.accepted_ids());
    let want: HashSet<String> = evs[..3].iter().map(|e| e.id.to_string()).collect();
    assert_eq!(got, want);
    let m = d.metrics().snapshot();
    assert_eq!((m.sinks[1].filtered, m.sinks[1].delivered), (3, 3));
    assert_eq!(d.stats().await.unwrap().events, 0);
    d.shutdown(Duration::from_secs(5)).await;
}

/// The receiver goes away for a while (and misbehaves around that), then
/// comes back: every event arrives, and after de-duplication by id none
/// twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_down_then_back_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut rx = Receiver::start().await;
    rx.state.lock().unwrap().delay = Duration::from_millis(5);
    let d = start(
        &dir,
        vec![webhook(&dir, "hook", rx.url("/in"), 50).build().unwrap()],
    );
    d.enqueue(events(0..200)).await.unwrap();
    rx.push(Action::Reply(
        Response::status(503, "").with_header("retry-after", "0"),
    ));
    rx.push(Action::Drop);
    rx.push(Action::Delay(Duration::from_millis(300), Response::ok()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    rx.stop().await;
    for chunk in 0..6 {
        d.enqueue(events(200 + chunk * 50..250 + chunk * 50))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let while_down = d.stats().await.unwrap().sinks[0].queued;
    assert!(
        while_down > 0,
        "events wait in the outbox while the receiver is down"
    );
    rx.restart().await;
    assert!(
        wait_drained(&d, Duration::from_secs(20)).await,
        "{:?}",
        d.stats().await
    );
    let ids = rx.accepted_ids();
    assert_eq!(unique(&ids), all_ids(500), "none lost");
    assert!(ids.len() >= 500);
    let m = d.metrics().snapshot();
    assert!(m.sinks[0].retried > 0);
    assert_eq!(m.sinks[0].dead_lettered, 0);
    d.shutdown(Duration::from_secs(5)).await;
}

/// Restarting the process: rows acknowledged stay delivered, rows that were
/// queued are delivered after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_dispatcher_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let mut rx = Receiver::start().await;
    rx.stop().await;
    {
        let d = start(
            &dir,
            vec![webhook(&dir, "hook", rx.url("/in"), 50).build().unwrap()],
        );
        d.enqueue(events(0..120)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        d.shutdown(Duration::from_secs(5)).await;
    }
    rx.restart().await;
    let d = start(
        &dir,
        vec![webhook(&dir, "hook", rx.url("/in"), 50).build().unwrap()],
    );
    assert!(wait_drained(&d, Duration::from_secs(10)).await);
    assert_eq!(unique(&rx.accepted_ids()), all_ids(120));
    d.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elasticsearch_retries_only_failed_items() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c2 = Arc::clone(&calls);
    rx.set_responder(move |req| {
        let first = c2.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
        let lines: Vec<&[u8]> = req.body.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
        let items: Vec<serde_json::Value> = lines
            .chunks(2)
            .enumerate()
            .map(|(i, pair)| {
                let action: serde_json::Value = serde_json::from_slice(pair[0]).unwrap();
                let id = action["create"]["_id"].clone();
                let status = match (first, i) {
                    (true, 0) => 201,
                    (true, 1) => 409,
                    (true, 2) => 429,
                    (true, 3) => 400,
                    (true, _) => 503,
                    (false, _) => 201,
                };
                let mut item = serde_json::json!({"_index": "logs-enforcer-default", "_id": id, "status": status});
                if status == 400 {
                    item["error"] = serde_json::json!({"type": "mapper_parsing_exception", "reason": "failed to parse"});
                }
                serde_json::json!({ "create": item })
            })
            .collect();
        Response::status(200, &serde_json::json!({"took": 1, "errors": first, "items": items}).to_string())
    });
    let mut es = ElasticsearchConfig::new(rx.url(""));
    es.username = Some("elastic".into());
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "changeme").unwrap();
    es.password = Some(SecretSource::File(pw));
    let cfg = SinkConfig {
        name: "es".into(),
        kind: SinkKind::Elasticsearch(es),
        filter: EventFilter::all(),
        batch: Default::default(),
        retry: fast_retry(),
    };
    let d = start(&dir, vec![cfg.build().unwrap()]);
    d.enqueue(events(0..6)).await.unwrap();
    assert!(wait_drained(&d, Duration::from_secs(10)).await);
    let reqs = rx.received();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].path, "/_bulk");
    assert_eq!(reqs[0].header("content-type"), Some("application/x-ndjson"));
    assert_eq!(
        reqs[0].header("authorization"),
        Some("Basic ZWxhc3RpYzpjaGFuZ2VtZQ==")
    );
    let first: Vec<serde_json::Value> = reqs[0]
        .body
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(first.len(), 12);
    let evs = events(0..6);
    assert_eq!(first[0]["create"]["_id"], evs[0].id.to_string().as_str());
    assert_eq!(
        first[1]["event"]["id"],
        evs[0].id.to_string().as_str(),
        "ECS by default"
    );
    // Only the 429 and 503 items were sent again.
    let second: Vec<serde_json::Value> = reqs[1]
        .body
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    let resent: Vec<&str> = second
        .iter()
        .step_by(2)
        .map(|a| a["create"]["_id"].as_str().unwrap())
        .collect();
    let want: Vec<String> = [2, 4, 5].iter().map(|&i| evs[i].id.to_string()).collect();
    assert_eq!(resent, want);
    let dead = d.outbox().dead_letters(None, 10).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, evs[3].id.to_string());
    assert!(dead[0].reason.contains("mapper_parsing_exception"));
    d.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splunk_hec_with_indexer_acknowledgement() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let polls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let p2 = Arc::clone(&polls);
    rx.set_responder(move |req| match req.path.as_str() {
        "/services/collector/event" => {
            Response::status(200, r#"{"text":"Success","code":0,"ackId":7}"#)
        }
        "/services/collector/ack" => {
            let n = p2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let indexed = n >= 2;
            Response::status(200, &format!(r#"{{"acks":{{"7":{indexed}}}}}"#))
        }
        _ => Response::status(404, "no such endpoint"),
    });
    let token = dir.path().join("token");
    std::fs::write(&token, "11111111-2222-3333-4444-555555555555\n").unwrap();
    let hec = SplunkHecConfig {
        url: rx.url(""),
        token: SecretSource::File(token),
        sourcetype: "enforcer:event".into(),
        source: None,
        index: Some("security".into()),
        format: JsonFormat::Ocsf,
        ack: Some(HecAckConfig {
            channel: Some("0f5a3d2c-1111-4222-8333-944444444444".into()),
            poll_ms: Some(50),
            timeout_ms: Some(5000),
        }),
        tls: TlsConfig::default(),
        timeouts: HttpTimeouts::default(),
    };
    let cfg = SinkConfig {
        name: "splunk".into(),
        kind: SinkKind::SplunkHec(hec),
        filter: EventFilter::all(),
        batch: Default::default(),
        retry: fast_retry(),
    };
    let d = start(&dir, vec![cfg.build().unwrap()]);
    d.enqueue(events(0..3)).await.unwrap();
    assert!(wait_drained(&d, Duration::from_secs(10)).await);
    let reqs = rx.received();
    let post = &reqs[0];
    assert_eq!(post.path, "/services/collector/event");
    assert_eq!(
        post.header("authorization"),
        Some("Splunk 11111111-2222-3333-4444-555555555555")
    );
    assert_eq!(
        post.header("x-splunk-request-channel"),
        Some("0f5a3d2c-1111-4222-8333-944444444444")
    );
    let objs: Vec<serde_json::Value> = serde_json::Deserializer::from_slice(&post.body)
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(objs.len(), 3);
    assert_eq!(objs[0]["host"], "node-a");
    assert_eq!(objs[0]["index"], "security");
    assert_eq!(
        objs[0]["event"]["metadata"]["uid"],
        events(0..1)[0].id.to_string().as_str()
    );
    assert_eq!(
        polls.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "polled until indexed"
    );
    assert_eq!(
        reqs.iter()
            .filter(|r| r.path == "/services/collector/event")
            .count(),
        1
    );
    assert_eq!(d.metrics().snapshot().sinks[0].delivered, 3);
    d.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_test_reports_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    rx.push(Action::Reply(Response::status(401, "invalid token")));
    let mut sink = webhook(&dir, "hook", rx.url("/in"), 10).build().unwrap();
    let r = send_test_event("hook", sink.sink.as_mut(), "node-a", Duration::from_secs(5)).await;
    assert_eq!(r.outcome, "permanent");
    assert_eq!(r.answer.as_deref(), Some("HTTP 401: invalid token"));
    let r = send_test_event("hook", sink.sink.as_mut(), "node-a", Duration::from_secs(5)).await;
    assert_eq!(r.outcome, "delivered");
    assert_eq!(r.answer.as_deref(), Some("HTTP 200: {}"));
    let got = rx.accepted_ids();
    assert_eq!(got, std::slice::from_ref(&r.event_id));
    let body: Vec<serde_json::Value> = serde_json::from_slice(&rx.accepted()[0].body).unwrap();
    assert_eq!(body[0]["operation"], "export-test");

    let mut rx2 = Receiver::start().await;
    let url = rx2.url("/in");
    rx2.stop().await;
    let mut down = webhook(&dir, "down", url, 10).build().unwrap();
    let r = send_test_event("down", down.sink.as_mut(), "node-a", Duration::from_secs(5)).await;
    assert_eq!(r.outcome, "retryable");
    assert!(
        r.reason.unwrap().starts_with("connect"),
        "connection refused is reported"
    );
    let _ = event(0, Verdict::Denied);
}
