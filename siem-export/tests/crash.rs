//! The dispatcher process is killed with SIGKILL in the middle of a batch
//! and started again: every event arrives, none twice after de-duplication
//! by id.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{events, Receiver};

fn worker_binary() -> PathBuf {
    // target/<profile>/deps/crash-<hash> -> target/<profile>/examples/outbox_worker
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    profile_dir.join("examples").join("outbox_worker")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_batch_then_restart_loses_nothing() {
    let bin = worker_binary();
    if !bin.exists() {
        // `cargo test` builds examples; a filtered build may not have.
        let st = Command::new(env!("CARGO"))
            .args(["build", "-p", "siem-export", "--example", "outbox_worker"])
            .status()
            .unwrap();
        assert!(st.success());
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("outbox.db");
    let rx = Receiver::start().await;
    // Every answer takes a while, so a kill lands while a batch is in flight.
    rx.state.lock().unwrap().delay = Duration::from_millis(150);
    const N: u64 = 400;

    let mut child = Command::new(&bin)
        .arg(&db)
        .arg(rx.url("/in"))
        .arg(N.to_string())
        .arg("--enqueue")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until a few batches were accepted and another one is being held.
    let mid_batch = rx
        .wait_for(Duration::from_secs(20), |st| {
            st.accepted.len() >= 3 && st.received.len() > st.accepted.len()
        })
        .await;
    assert!(mid_batch, "the worker never got going");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = rx.accepted_ids().len();
    assert!(before < N as usize, "killed before the end ({before})");
    let in_flight_at_kill = rx.received().len() - rx.accepted().len();
    assert!(in_flight_at_kill >= 1);

    rx.state.lock().unwrap().delay = Duration::ZERO;
    let started = Instant::now();
    let out = tokio::task::spawn_blocking({
        let bin = bin.clone();
        let db = db.clone();
        let url = rx.url("/in");
        move || {
            Command::new(&bin)
                .arg(&db)
                .arg(url)
                .arg(N.to_string())
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(started.elapsed() < Duration::from_secs(30));

    let ids = rx.accepted_ids();
    let unique: HashSet<String> = ids.iter().cloned().collect();
    let want: HashSet<String> = events(0..N).iter().map(|e| e.id.to_string()).collect();
    assert_eq!(unique, want, "every event arrived");
    // The batch held at the kill may have been delivered by the receiver
    // (it answers late) and is sent again: duplicates exist only there.
    assert!(
        ids.len() - unique.len() <= 25 * in_flight_at_kill,
        "{} duplicates",
        ids.len() - unique.len()
    );
}
