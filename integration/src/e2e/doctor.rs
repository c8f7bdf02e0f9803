//! End-to-end tests of `enforcer doctor` on a kernel with BPF LSM active.

use std::process::Command;

use anyhow::{ensure, Context, Result};

use super::command::capture;
use super::Test;
use crate::guest_rootfs::GUEST_ENFORCER;

pub const TESTS: &[Test] = &[
    Test::new(
        "reports_bpf_lsm_enforcement_available",
        reports_bpf_lsm_enforcement_available,
    ),
    Test::new(
        "text_report_ends_with_the_verdict",
        text_report_ends_with_the_verdict,
    ),
];

fn reports_bpf_lsm_enforcement_available() -> Result<()> {
    let out = capture(Command::new(GUEST_ENFORCER).args(["doctor", "--json"]))?;
    let report: serde_json::Value = serde_json::from_str(&out.stdout)
        .with_context(|| format!("doctor printed no JSON: {out}"))?;
    ensure!(
        out.code() == Some(0),
        "doctor must exit 0 with BPF LSM: {out}"
    );
    ensure!(
        report["enforcement"] == "bpf_lsm",
        "enforcement: {}",
        report["enforcement"]
    );
    ensure!(
        report["bpf_lsm"] == true && report["btf"] == true && report["ringbuf"] == true,
        "{report}"
    );
    let checks = report["checks"].as_array().context("no checks")?;
    for name in ["btf", "lsm_list", "bpf_lsm_load", "ringbuf", "cgroup2"] {
        let check = checks
            .iter()
            .find(|c| c["name"] == name)
            .with_context(|| format!("no check {name}"))?;
        ensure!(check["status"] == "ok", "{name}: {check}");
    }
    ensure!(
        report["lsm_active"]
            .as_array()
            .is_some_and(|l| l.iter().any(|x| x == "bpf")),
        "{report}"
    );
    Ok(())
}

fn text_report_ends_with_the_verdict() -> Result<()> {
    let out = capture(Command::new(GUEST_ENFORCER).arg("doctor"))?;
    let last = out.stdout.lines().last().unwrap_or_default();
    ensure!(
        last.starts_with("enforcement: BPF LSM enforcement available"),
        "{out}"
    );
    Ok(())
}
