//! `from` / `except_from` enforced in the kernel: the acting task's binary sets, set at exec,
//! inherited at fork and backfilled for processes that ran before the plan loaded. Copies of
//! busybox under other paths stand for the listed binaries: busybox dispatches on the base name
//! of argv[0], so `/opt/auth/cat` is `cat` and `/opt/auth/sh` is `sh`.

use std::fs;
use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{ensure, Context, Result};

use super::cgroup::Cgroup;
use super::command::{capture, Captured};
use super::enforcer_process::query_events as query;
use super::enforcer_process::Enforcer;
use super::Test;

pub const TESTS: &[Test] = &[
    Test::new(
        "except_from_and_from_pick_the_acting_binary",
        except_from_and_from_pick_the_acting_binary,
    ),
    Test::new(
        "a_forked_child_inherits_and_an_exec_drops_the_exception",
        a_forked_child_inherits_and_an_exec_drops_the_exception,
    ),
    Test::new(
        "processes_started_before_the_load_are_backfilled",
        processes_started_before_the_load_are_backfilled,
    ),
    Test::new(
        "network_except_from_lets_one_binary_connect",
        network_except_from_lets_one_binary_connect,
    ),
    Test::new(
        "exec_parent_ancestor_and_uid_are_decided_in_the_kernel",
        exec_parent_ancestor_and_uid_are_decided_in_the_kernel,
    ),
];

const DIR: &str = "/tmp/e2e-bin";
const AUTH: &str = "/opt/auth";
const TOOLS: &str = "/opt/tools";

fn policy(cgroup: &str) -> String {
    format!(
        "policies:
  - name: e2e-bin
    select: {{cgroups: [/{cgroup}]}}
    mode: enforce
    rules:
      - name: shadow-except-auth
        message: the shadow file was read by a binary that is not an authentication one
        action: deny
        file: {{path: {DIR}/shadow, ops: [read], except_from: [{AUTH}/cat, {AUTH}/sh]}}
      - name: data-not-by-tools
        message: a tool read the data file
        action: deny
        file: {{path: {DIR}/data, ops: [read], from: [{TOOLS}/cat]}}
"
    )
}

fn setup(cgroup: &str) -> Result<String> {
    let _ = fs::remove_dir_all(DIR);
    fs::create_dir_all(DIR).context("creating the fixture")?;
    fs::write(format!("{DIR}/shadow"), "root:x\n")?;
    fs::write(format!("{DIR}/data"), "d4ta\n")?;
    for dir in [AUTH, TOOLS] {
        fs::create_dir_all(dir)?;
    }
    for bin in [
        format!("{AUTH}/cat"),
        format!("{AUTH}/sh"),
        format!("{TOOLS}/cat"),
    ] {
        if !std::path::Path::new(&bin).exists() {
            fs::copy("/bin/busybox", &bin).with_context(|| format!("copying busybox to {bin}"))?;
        }
    }
    let path = format!("{DIR}/policy.yaml");
    fs::write(&path, policy(cgroup))?;
    Ok(path)
}

fn run_in(cg: &Cgroup, program: &str, args: &[&str]) -> Result<Captured> {
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null());
    cg.run(&mut cmd)
}

fn denied(c: &Captured) -> bool {
    !c.status.success() && c.stderr.contains("Operation not permitted")
}

fn except_from_and_from_pick_the_acting_binary() -> Result<()> {
    let cg = Cgroup::create("e2e-bin-pick")?;
    let policy = setup("e2e-bin-pick")?;
    let enforcer = Enforcer::start(&["--policy", &policy])?;
    let shadow = format!("{DIR}/shadow");
    let data = format!("{DIR}/data");
    // /bin/cat is busybox: not an authentication binary.
    let plain_shadow = run_in(&cg, "/bin/busybox", &["cat", &shadow])?;
    let auth_shadow = run_in(&cg, &format!("{AUTH}/cat"), &[&shadow])?;
    let tool_data = run_in(&cg, &format!("{TOOLS}/cat"), &[&data])?;
    let plain_data = run_in(&cg, "/bin/busybox", &["cat", &data])?;
    let auth_data = run_in(&cg, &format!("{AUTH}/cat"), &[&data])?;
    // Outside the policy's cgroup nothing applies, whatever the binary.
    let tool_outside = capture(Command::new(format!("{TOOLS}/cat")).arg(&data))?;
    let state = enforcer.state_dir().to_path_buf();
    let log = enforcer.log().unwrap_or_default();
    let status = enforcer.stop()?;
    ensure!(status.success(), "enforcer exited with {status}: {log}");

    ensure!(
        denied(&plain_shadow),
        "busybox cat of the shadow file: {plain_shadow}"
    );
    ensure!(
        auth_shadow.status.success() && auth_shadow.stdout == "root:x\n",
        "the except_from binary must read it: {auth_shadow}"
    );
    ensure!(
        denied(&tool_data),
        "the `from` binary must be denied: {tool_data}"
    );
    ensure!(
        plain_data.status.success() && plain_data.stdout == "d4ta\n",
        "a binary not in `from`: {plain_data}"
    );
    ensure!(auth_data.status.success(), "{auth_data}");
    ensure!(tool_outside.status.success(), "{tool_outside}");

    let events = query(&state, &["--verdict", "denied"])?;
    let by_rule = |rule: &str| -> Vec<serde_json::Value> {
        events
            .iter()
            .filter(|e| e["rule"] == rule)
            .cloned()
            .collect()
    };
    let shadow_events = by_rule("shadow-except-auth");
    ensure!(
        shadow_events.len() == 1,
        "one shadow denial (busybox cat), none for the auth binary: {events:#?}"
    );
    ensure!(
        shadow_events[0]["target"]["file"]["path"] == shadow.as_str(),
        "{}",
        shadow_events[0]
    );
    // A known binary: the denial is the rule's, not a fail-closed guess.
    ensure!(
        !shadow_events[0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("unknown"),
        "{}",
        shadow_events[0]
    );
    ensure!(
        by_rule("data-not-by-tools").len() == 1,
        "one data denial (the tool): {events:#?}"
    );
    Ok(())
}

fn a_forked_child_inherits_and_an_exec_drops_the_exception() -> Result<()> {
    let cg = Cgroup::create("e2e-bin-fork")?;
    let policy = setup("e2e-bin-fork")?;
    let enforcer = Enforcer::start(&["--policy", &policy])?;
    let shadow = format!("{DIR}/shadow");
    // `( ... )` forks a subshell that runs the `read` builtin without an exec: the child reads.
    // The trailing `echo` keeps the shell from running the subshell in its own process.
    let forked = format!("(read l < {shadow} && echo \"got $l\"); echo done");
    let auth_fork = run_in(&cg, &format!("{AUTH}/sh"), &["-c", &forked])?;
    let plain_fork = run_in(&cg, "/bin/busybox", &["sh", "-c", &forked])?;
    // An explicit path is exec'd (not run as a built-in applet): the child becomes
    // /bin/busybox and loses the exception of the shell that started it.
    let exec_other = run_in(
        &cg,
        &format!("{AUTH}/sh"),
        &["-c", &format!("/bin/busybox cat {shadow}; echo done")],
    )?;
    let log = enforcer.log().unwrap_or_default();
    let status = enforcer.stop()?;
    ensure!(status.success(), "enforcer exited with {status}: {log}");

    ensure!(
        auth_fork.stdout.contains("got root:x") && auth_fork.stdout.contains("done"),
        "the forked child of the auth shell must read: {auth_fork}"
    );
    ensure!(
        !plain_fork.stdout.contains("got") && plain_fork.stderr.contains("Operation not permitted"),
        "the forked child of busybox sh must not: {plain_fork}"
    );
    ensure!(
        !exec_other.stdout.contains("root:x")
            && exec_other.stderr.contains("Operation not permitted"),
        "after an exec of another binary the exception is gone: {exec_other}"
    );
    Ok(())
}

fn processes_started_before_the_load_are_backfilled() -> Result<()> {
    let cg = Cgroup::create("e2e-bin-backfill")?;
    let policy = setup("e2e-bin-backfill")?;
    let shadow = format!("{DIR}/shadow");
    let go = format!("{DIR}/go");
    let c_go = std::ffi::CString::new(go.clone())?;
    // SAFETY: a valid NUL-terminated path and a mode.
    ensure!(
        unsafe { libc::mkfifo(c_go.as_ptr(), 0o600) } == 0,
        "mkfifo {go}: {}",
        std::io::Error::last_os_error()
    );
    // Both shells block on the fifo until the enforcer is up, then read in their own process
    // (a builtin): they exec'd before the programs were attached.
    let script = format!("read x < {go}; read l < {shadow} && echo \"got $l\"; echo done");
    let spawn = |program: &str, args: &[&str]| {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .arg("-c")
            .arg(&script)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cg.spawn(&mut cmd)
    };
    let auth = spawn(&format!("{AUTH}/sh"), &[])?;
    let plain = spawn("/bin/busybox", &["sh"])?;

    let enforcer = Enforcer::start(&["--policy", &policy])?;
    {
        let mut fifo = fs::OpenOptions::new()
            .write(true)
            .open(&go)
            .context("opening the fifo")?;
        // One line per reader; both opened the fifo before the writer did.
        fifo.write_all(b"go\ngo\n")?;
    }
    let auth = auth.wait_with_output()?;
    let plain = plain.wait_with_output()?;
    let log = enforcer.log().unwrap_or_default();
    let status = enforcer.stop()?;
    ensure!(status.success(), "enforcer exited with {status}: {log}");

    let auth_out = String::from_utf8_lossy(&auth.stdout);
    let plain_out = String::from_utf8_lossy(&plain.stdout);
    let plain_err = String::from_utf8_lossy(&plain.stderr);
    ensure!(
        auth_out.contains("got root:x"),
        "the auth shell started before the load must be known (backfilled): {auth_out} {} \
         log: {log}",
        String::from_utf8_lossy(&auth.stderr)
    );
    ensure!(
        !plain_out.contains("got") && plain_err.contains("Operation not permitted"),
        "the plain shell started before the load: {plain_out} {plain_err}"
    );
    ensure!(
        log.contains("binary sets of running processes written"),
        "no backfill in the log: {log}"
    );
    Ok(())
}

/// A network rule with `except_from` (LSM hooks: socket_connect reads the acting task's binary
/// sets): the listed copy of busybox `nc` connects, busybox itself is denied, and outside the
/// policy's cgroup both connect.
fn network_except_from_lets_one_binary_connect() -> Result<()> {
    const ADDR: &str = "127.0.0.7";
    let listener = std::net::TcpListener::bind((ADDR, 0)).context("listening on 127.0.0.7")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        // Accepted and closed at once, so that `nc` exits.
        for stream in listener.incoming() {
            drop(stream);
        }
    });
    let cgroup = "e2e-bin-net";
    let cg = Cgroup::create(cgroup)?;
    setup(cgroup)?;
    let auth_nc = format!("{AUTH}/nc");
    if !std::path::Path::new(&auth_nc).exists() {
        fs::copy("/bin/busybox", &auth_nc).context("copying busybox to the auth nc")?;
    }
    let policy = format!("{DIR}/net-policy.yaml");
    fs::write(
        &policy,
        format!(
            "policies:
  - name: e2e-bin-net
    select: {{cgroups: [/{cgroup}]}}
    mode: enforce
    rules:
      - name: connect-except-auth
        message: a binary other than the authentication nc connected
        action: deny
        network: {{ops: [connect], protocol: tcp, cidr: [{ADDR}/32], ports: [{port}], except_from: [{auth_nc}]}}
"
        ),
    )?;
    let enforcer = Enforcer::start(&["--policy", &policy])?;
    let port_arg = port.to_string();
    let nc_args = ["-w", "3", ADDR, port_arg.as_str()];
    let auth = run_in(&cg, &auth_nc, &nc_args)?;
    let mut plain_args = vec!["nc"];
    plain_args.extend_from_slice(&nc_args);
    let plain = run_in(&cg, "/bin/busybox", &plain_args)?;
    let outside = capture(
        Command::new("/bin/busybox")
            .args(&plain_args)
            .stdin(Stdio::null()),
    )?;
    let state = enforcer.state_dir().to_path_buf();
    let log = enforcer.log().unwrap_or_default();
    let status = enforcer.stop()?;
    ensure!(status.success(), "enforcer exited with {status}: {log}");

    ensure!(
        auth.status.success(),
        "the except_from nc must connect: {auth}"
    );
    ensure!(denied(&plain), "busybox nc must be denied: {plain}");
    ensure!(outside.status.success(), "outside the cgroup: {outside}");
    let events = query(&state, &["--verdict", "denied"])?;
    ensure!(
        events.len() == 1
            && events[0]["rule"] == "connect-except-auth"
            && events[0]["target"]["network"]["dst_ip"] == ADDR
            && events[0]["target"]["network"]["dst_port"] == port,
        "one denial, of busybox nc: {events:#?}"
    );
    Ok(())
}

/// The server whose descendants the lineage rules watch, and the programs they run (busybox
/// copies: `/opt/web/sh` is a shell, `/opt/lineage/true` is `true`).
const WEB_SH: &str = "/opt/web/sh";
const LINEAGE: &str = "/opt/lineage";
/// A user id nothing else runs as.
const TEST_UID: u32 = 4242;

/// Exec rules with `parent`, `ancestor` and `uid`: the kernel walks the process tree (parent
/// and every ancestor by their binary sets) and reads the real uid at the exec.
fn exec_parent_ancestor_and_uid_are_decided_in_the_kernel() -> Result<()> {
    let cgroup = "e2e-bin-lineage";
    let cg = Cgroup::create(cgroup)?;
    fs::create_dir_all("/opt/web")?;
    fs::create_dir_all(LINEAGE)?;
    for bin in [
        WEB_SH.to_string(),
        format!("{LINEAGE}/true"),
        format!("{LINEAGE}/echo"),
        format!("{LINEAGE}/id"),
    ] {
        if !std::path::Path::new(&bin).exists() {
            fs::copy("/bin/busybox", &bin).with_context(|| format!("copying busybox to {bin}"))?;
        }
    }
    fs::create_dir_all(DIR)?;
    let policy = format!("{DIR}/lineage.yaml");
    fs::write(
        &policy,
        format!(
            "policies:
  - name: e2e-lineage
    select: {{cgroups: [/{cgroup}]}}
    mode: enforce
    rules:
      - name: child-of-web
        action: deny
        exec: {{path: {LINEAGE}/true, parent: [{WEB_SH}]}}
      - name: below-web
        action: deny
        exec: {{path: {LINEAGE}/echo, ancestor: [{WEB_SH}]}}
      - name: as-test-user
        action: deny
        exec: {{path: {LINEAGE}/id, uid: [{TEST_UID}]}}
"
        ),
    )?;
    let enforcer = Enforcer::start(&["--policy", &policy])?;
    // `; echo rc=$?` keeps the shell from exec'ing its last command itself: the program runs in
    // a forked child of the shell, whose parent is that shell.
    let true_then_rc = format!("{LINEAGE}/true; echo rc=$?");
    let echo_then_rc = format!("{LINEAGE}/echo hi; echo rc=$?");
    let nested = format!("/bin/sh -c '{echo_then_rc}'; /bin/sh -c '{true_then_rc}'");
    let web_true = run_in(&cg, WEB_SH, &["-c", &true_then_rc])?;
    let sh_true = run_in(&cg, "/bin/sh", &["-c", &true_then_rc])?;
    // Below the server through another shell: an ancestor, not the parent.
    let web_nested = run_in(&cg, WEB_SH, &["-c", &nested])?;
    let sh_nested = run_in(&cg, "/bin/sh", &["-c", &nested])?;
    let id_then_rc = format!("{LINEAGE}/id -u; echo rc=$?");
    let id_as_user = {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", &id_then_rc]).stdin(Stdio::null());
        std::os::unix::process::CommandExt::uid(&mut cmd, TEST_UID);
        cg.run(&mut cmd)?
    };
    let id_as_root = run_in(&cg, "/bin/sh", &["-c", &id_then_rc])?;
    // Outside the policy's cgroup nothing applies.
    let outside = capture(Command::new(WEB_SH).args(["-c", &true_then_rc]))?;
    let state = enforcer.state_dir().to_path_buf();
    let log = enforcer.log().unwrap_or_default();
    let status = enforcer.stop()?;
    ensure!(status.success(), "enforcer exited with {status}: {log}");

    let refused = |c: &Captured, what: &str| -> Result<()> {
        ensure!(
            c.stdout.contains("rc=126") && !c.stdout.contains("rc=0"),
            "{what} must be refused: {c}"
        );
        Ok(())
    };
    refused(&web_true, "`true` as a child of the server")?;
    ensure!(
        sh_true.stdout.contains("rc=0"),
        "`true` from /bin/sh: {sh_true}"
    );
    // Nested: `echo` is below the server (refused), `true`'s parent is /bin/sh (runs).
    ensure!(
        web_nested.stdout.contains("rc=126") && web_nested.stdout.contains("rc=0"),
        "below the server, echo must be refused and true must run: {web_nested}"
    );
    ensure!(
        !web_nested.stdout.contains("hi"),
        "echo ran below the server: {web_nested}"
    );
    ensure!(
        sh_nested.stdout.matches("rc=0").count() == 2 && sh_nested.stdout.contains("hi"),
        "with no server above, both run: {sh_nested}"
    );
    refused(&id_as_user, &format!("`id` as uid {TEST_UID}"))?;
    ensure!(
        id_as_root.stdout == "0\nrc=0\n",
        "`id` as root: {id_as_root}"
    );
    ensure!(
        outside.stdout.contains("rc=0"),
        "outside the cgroup: {outside}"
    );

    let events = query(&state, &["--verdict", "denied"])?;
    for (rule, want) in [("child-of-web", 1), ("below-web", 1), ("as-test-user", 1)] {
        let n = events.iter().filter(|e| e["rule"] == rule).count();
        ensure!(
            n == want,
            "{n} denied events of `{rule}`, expected {want}: {events:?}"
        );
    }
    Ok(())
}
