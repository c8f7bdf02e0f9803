//! The exec fallback for kernels without BPF LSM (`ExecMechanism::KillAtExec`,
//! `tp_btf/sched_process_exec`), forced on kernels that have BPF LSM: the program must pass
//! the verifier of every supported kernel, and it kills a denied program before its first
//! instruction while the exec itself succeeds. The host test
//! `enforcer/tests/exec_fallback_host.rs` runs it where it is really needed.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;

use anyhow::{ensure, Result};
use bpf_lsm::plan::ExecMechanism;
use bpf_lsm::{Action, Record};

use super::cgroup::Cgroup;
use super::command::capture;
use super::hand_plan::{load, records};
use super::kernel_plan::{busybox_copy, exec_plan, fixture, RULE};
use super::Test;

pub const TESTS: &[Test] = &[Test::new(
    "deny_kills_before_the_first_instruction",
    deny_kills_before_the_first_instruction,
)];

/// `busybox-copy sh -c 'echo ran > marker'`: the marker exists only if the program ran.
fn write_marker(bin: &str, marker: &str) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(["sh", "-c", &format!("echo ran > {marker}")]);
    cmd
}

fn deny_kills_before_the_first_instruction() -> Result<()> {
    let dir = fixture("exec-fallback", &[])?;
    let bad = busybox_copy(&dir, "busybox-bad")?;
    let script = format!("{dir}/script");
    let script_marker = format!("{dir}/script-ran");
    fs::write(
        &script,
        format!("#!/bin/busybox sh\necho ran > {script_marker}\n"),
    )?;
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755))?;
    let cg = Cgroup::create("exec-fallback")?;

    let mut plan = exec_plan(&cg, &bad, Action::Deny)?;
    plan.exec_mechanism = ExecMechanism::KillAtExec;
    let (loaded, mut ring) = load(&plan)?;
    let hooks = loaded.attached();
    ensure!(
        hooks.contains(&"enf_exec_fallback") && !hooks.contains(&"enf_bprm_check"),
        "{hooks:?}"
    );

    let inside = format!("{dir}/inside");
    let status = cg.spawn(&mut write_marker(&bad, &inside))?.wait()?;
    ensure!(
        status.signal() == Some(9),
        "inside: the exec succeeds, then SIGKILL: {status:?}"
    );
    ensure!(!Path::new(&inside).exists(), "the killed program ran");
    let outside = format!("{dir}/outside");
    let c = capture(&mut write_marker(&bad, &outside))?;
    ensure!(
        c.status.success() && Path::new(&outside).exists(),
        "outside: {c}"
    );
    let rs = records(&mut ring)?;
    ensure!(rs.len() == 1, "{rs:#?}");
    let Record::Exec(e) = &rs[0] else {
        anyhow::bail!("not an exec record: {rs:#?}")
    };
    let h = &e.header;
    ensure!(
        h.action == Action::Kill
            && h.killed()
            && h.exec_fallback()
            && h.rule_id == Some(RULE)
            && e.path == bad.as_bytes(),
        "{e:#?}"
    );
    drop(loaded);

    // A script: the kernel runs its interpreter; the rule names the script.
    let mut plan = exec_plan(&cg, &script, Action::Kill)?;
    plan.exec_mechanism = ExecMechanism::KillAtExec;
    let (_loaded, mut ring) = load(&plan)?;
    let status = cg.spawn(&mut Command::new(&script))?.wait()?;
    ensure!(status.signal() == Some(9), "script: {status:?}");
    ensure!(!Path::new(&script_marker).exists(), "the killed script ran");
    let rs = records(&mut ring)?;
    ensure!(
        rs.len() == 1 && rs[0].header().exec_fallback() && rs[0].header().killed(),
        "{rs:#?}"
    );
    Ok(())
}
