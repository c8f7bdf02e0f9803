//! End-to-end tests of `enforcer run --policy`: a policy file compiled, scoped to a cgroup
//! path, enforced by the kernel, and its verdicts read back with `enforcer events query`.

use std::fs;
use std::process::{Command, Stdio};

use anyhow::{ensure, Context, Result};

use super::cgroup::Cgroup;
use super::command::{capture, Captured};
use super::enforcer_process::query_events as query;
use super::enforcer_process::Enforcer;
use super::Test;

pub const TESTS: &[Test] = &[
    Test::new(
        "policy_file_is_enforced_in_its_cgroup",
        policy_file_is_enforced_in_its_cgroup,
    ),
    Test::new(
        "audit_flag_turns_denies_into_audits",
        audit_flag_turns_denies_into_audits,
    ),
    Test::new(
        "verdicts_are_enriched_from_the_process_table",
        verdicts_are_enriched_from_the_process_table,
    ),
    Test::new(
        "embedded_library_blocks_exec_from_tmp",
        embedded_library_blocks_exec_from_tmp,
    ),
    Test::new("a_restart_keeps_the_store", a_restart_keeps_the_store),
];

const DIR: &str = "/tmp/e2e-policy-run";

fn policy(cgroup: &str) -> String {
    format!(
        "policies:
  - name: e2e
    select: {{cgroups: [/{cgroup}]}}
    mode: enforce
    rules:
      - name: no-secret
        message: the secret was read
        severity: critical
        tags: [T1005]
        action: deny
        file: {{path: {DIR}/secret, ops: [read]}}
      - name: no-tools
        message: a tool from the tools folder was run
        action: deny
        exec: {{path: [{DIR}/tools/**]}}
      - name: no-dropped-binaries
        message: a binary from the drop folder was run
        action: deny
        file: {{path: [{DIR}/drop/**], ops: [exec]}}
"
    )
}

fn setup(cgroup: &str) -> Result<String> {
    let _ = fs::remove_dir_all(DIR);
    fs::create_dir_all(format!("{DIR}/tools")).context("creating the fixture")?;
    fs::write(format!("{DIR}/secret"), "s3cret\n")?;
    fs::copy("/bin/busybox", format!("{DIR}/tools/echo"))?;
    fs::create_dir_all(format!("{DIR}/drop"))?;
    fs::copy("/bin/busybox", format!("{DIR}/drop/echo"))?;
    let path = format!("{DIR}/policy.yaml");
    fs::write(&path, policy(cgroup))?;
    Ok(path)
}

fn run_in(cg: &Cgroup, program: &str, args: &[&str]) -> Result<Captured> {
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null());
    cg.run(&mut cmd)
}

/// Runs `program` in `cg` expecting the kernel to refuse the exec: std's spawn reports the
/// child's failed execve as the error of the spawn itself.
fn exec_refused(cg: &Cgroup, program: &str, args: &[&str]) -> Result<()> {
    match run_in(cg, program, args) {
        Err(e) => {
            let text = format!("{e:#}");
            ensure!(
                text.contains("Operation not permitted"),
                "exec failed otherwise: {text}"
            );
            Ok(())
        }
        Ok(ran) => anyhow::bail!("exec of {program} was not refused: {ran}"),
    }
}

fn policy_file_is_enforced_in_its_cgroup() -> Result<()> {
    let cg = Cgroup::create("e2e-policy-run")?;
    let policy = setup("e2e-policy-run")?;
    let enforcer = Enforcer::start(&["--policy", &policy])?;
    // Created after the policy loaded: covered through the kernel's inheritance.
    let child = Cgroup::create("e2e-policy-run/late-child")?;

    let read_inside = run_in(&cg, "cat", &[&format!("{DIR}/secret")])?;
    let read_outside = capture(Command::new("cat").arg(format!("{DIR}/secret")))?;
    let exec_child = exec_refused(&child, &format!("{DIR}/tools/echo"), &["hi"]);
    let exec_outside = capture(Command::new(format!("{DIR}/tools/echo")).arg("hi"))?;
    // The file operation `exec`: decided when the kernel opens the program to run it.
    let dropped = exec_refused(&cg, &format!("{DIR}/drop/echo"), &["hi"]);
    // Reading the same file is not running it.
    let dropped_read = run_in(&cg, "cat", &[&format!("{DIR}/drop/echo")])?;
    let state = enforcer.state_dir().to_path_buf();
    let log = enforcer.log().unwrap_or_default();
    let status = enforcer.stop()?;
    ensure!(status.success(), "enforcer exited with {status}: {log}");

    ensure!(
        !read_inside.status.success() && read_inside.stderr.contains("Operation not permitted"),
        "read inside: {read_inside}"
    );
    ensure!(
        read_outside.status.success() && read_outside.stdout == "s3cret\n",
        "{read_outside}"
    );
    exec_child.context("exec in the cgroup created after load")?;
    dropped.context("exec of a file under a file rule with `ops: [exec]`")?;
    ensure!(
        dropped_read.status.success(),
        "reading the dropped binary must work: {dropped_read}"
    );
    ensure!(
        exec_outside.status.success() && exec_outside.stdout == "hi\n",
        "{exec_outside}"
    );

    let denied = query(&state, &["--verdict", "denied"])?;
    let by_rule = |rule: &str| denied.iter().find(|e| e["rule"] == rule).cloned();
    let secret =
        by_rule("no-secret").with_context(|| format!("no no-secret event: {denied:#?}"))?;
    ensure!(
        secret["policy"] == "e2e" && secret["severity"] == "critical",
        "{secret}"
    );
    ensure!(
        secret["target"]["file"]["path"] == format!("{DIR}/secret").as_str(),
        "{secret}"
    );
    ensure!(secret["cgroup"]["id"] == cg.id()?, "{secret}");
    let exec = by_rule("no-tools").with_context(|| format!("no no-tools event: {denied:#?}"))?;
    ensure!(exec["class"] == "exec", "{exec}");
    ensure!(
        exec["cgroup"]["id"] == child.id()?,
        "the late child's id: {exec}"
    );
    Ok(())
}

fn audit_flag_turns_denies_into_audits() -> Result<()> {
    let cg = Cgroup::create("e2e-policy-audit")?;
    let policy = setup("e2e-policy-audit")?;
    let enforcer = Enforcer::start(&["--policy", &policy, "--mode", "audit"])?;
    let read = run_in(&cg, "cat", &[&format!("{DIR}/secret")])?;
    let state = enforcer.state_dir().to_path_buf();
    ensure!(enforcer.stop()?.success(), "enforcer did not stop cleanly");
    ensure!(
        read.status.success() && read.stdout == "s3cret\n",
        "audit must allow: {read}"
    );
    let audited = query(&state, &["--verdict", "audited", "--rule", "no-secret"])?;
    ensure!(audited.len() == 1, "expected one audit event: {audited:#?}");
    Ok(())
}

/// A shell that stays alive after its open is denied: the event carries its exe, argv,
/// exec id, ancestors and cgroup path, read from the process table.
fn verdicts_are_enriched_from_the_process_table() -> Result<()> {
    let cg = Cgroup::create("e2e-policy-enrich")?;
    let policy = setup("e2e-policy-enrich")?;
    let enforcer = Enforcer::start(&["--policy", &policy])?;
    // `; true` keeps the shell from exec-ing its last command, so its argv stays its own.
    let script = format!("read x < {DIR}/secret; sleep 2; true");
    let mut shell = Command::new("/bin/sh");
    shell
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = cg.spawn(&mut shell)?;
    let pid = child.id();
    let out = child.wait_with_output().context("waiting for the shell")?;
    let state = enforcer.state_dir().to_path_buf();
    ensure!(enforcer.stop()?.success(), "enforcer did not stop cleanly");
    ensure!(
        out.status.success(),
        "the shell itself must survive the denied read"
    );
    let events = query(&state, &["--rule", "no-secret", "--pid", &pid.to_string()])?;
    let e = events
        .first()
        .with_context(|| format!("no event for pid {pid}"))?;
    let p = &e["process"];
    ensure!(p["exe"] == "/bin/busybox", "exe: {e}");
    ensure!(
        p["argv"][0] == "/bin/sh" && p["argv"][1] == "-c",
        "argv: {e}"
    );
    ensure!(
        p["exec_id"].as_str().is_some_and(|s| !s.is_empty()),
        "exec_id: {e}"
    );
    // The guest's busybox image has no /etc/passwd; where there is one, uid 0 is named.
    if std::path::Path::new("/etc/passwd").exists() {
        ensure!(p["user"] == "root", "user: {e}");
    }
    let ancestors = p["ancestors"].as_array().context("no ancestors")?;
    ensure!(
        ancestors.iter().any(|a| a["exe"]
            .as_str()
            .is_some_and(|x| x.ends_with("enforcer-e2e"))),
        "the test binary is an ancestor: {e}"
    );
    ensure!(
        e["cgroup"]["path"] == "/e2e-policy-enrich",
        "cgroup path: {e}"
    );
    Ok(())
}

/// The default policy set, with no flags: a program copied to /dev/shm does not run.
fn embedded_library_blocks_exec_from_tmp() -> Result<()> {
    fs::create_dir_all("/dev/shm").ok();
    fs::copy("/bin/busybox", "/dev/shm/e2e-payload").context("copying the payload")?;
    let cg = Cgroup::create("e2e-embedded")?;
    let enforcer = Enforcer::start(&[])?;
    let payload = exec_refused(&cg, "/dev/shm/e2e-payload", &["echo", "pwned"]);
    let allowed = run_in(&cg, "/bin/busybox", &["echo", "fine"])?;
    let state = enforcer.state_dir().to_path_buf();
    ensure!(enforcer.stop()?.success(), "enforcer did not stop cleanly");
    let _ = fs::remove_file("/dev/shm/e2e-payload");
    payload.context("exec from /dev/shm")?;
    ensure!(
        allowed.status.success() && allowed.stdout == "fine\n",
        "{allowed}"
    );
    let denied = query(&state, &["--rule", "exec-from-tmp"])?;
    ensure!(
        denied
            .iter()
            .any(|e| e["target"]["exec"]["path"] == "/dev/shm/e2e-payload"),
        "{denied:#?}"
    );
    Ok(())
}

/// The event store outlives the daemon: a second `enforcer run` on the same state directory
/// finds the first run's verdicts and adds its own.
fn a_restart_keeps_the_store() -> Result<()> {
    let cg = Cgroup::create("e2e-policy-restart")?;
    let policy = setup("e2e-policy-restart")?;
    let first = Enforcer::start(&["--policy", &policy])?;
    let state = first.state_dir().to_path_buf();
    let read = run_in(&cg, "cat", &[&format!("{DIR}/secret")])?;
    ensure!(
        !read.status.success(),
        "first run: the read was not refused: {read}"
    );
    let log = first.log().unwrap_or_default();
    ensure!(
        first.stop()?.success(),
        "first run did not stop cleanly: {log}"
    );
    let before = query(&state, &["--verdict", "denied", "--rule", "no-secret"])?;
    ensure!(before.len() == 1, "first run stored: {before:#?}");

    let second = Enforcer::start_in(&state, &["--policy", &policy])?;
    let read = run_in(&cg, "cat", &[&format!("{DIR}/secret")])?;
    ensure!(
        !read.status.success(),
        "second run: the read was not refused: {read}"
    );
    let log = second.log().unwrap_or_default();
    ensure!(
        second.stop()?.success(),
        "second run did not stop cleanly: {log}"
    );
    let after = query(&state, &["--verdict", "denied", "--rule", "no-secret"])?;
    ensure!(
        after.len() == 2,
        "after the restart the store holds: {after:#?}"
    );
    ensure!(
        after.iter().any(|e| e["id"] == before[0]["id"]),
        "the first run's event is gone: {after:#?}"
    );
    ensure!(after[0]["id"] != after[1]["id"], "{after:#?}");
    Ok(())
}
