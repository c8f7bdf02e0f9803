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
