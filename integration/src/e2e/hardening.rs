//! Default-deny hardening end to end (docs/hardening.md): a small service runs in a cgroup
//! under the shipped template in audit mode, `enforcer learn` writes the allowlist from what
//! it did, and in enforce mode with that allowlist the service runs unhindered while anything
//! else from its cgroup is refused, and a process outside the cgroup is untouched.

use std::fs;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use super::cgroup::Cgroup;
use super::command::{capture, Captured};
use super::enforcer_process::query_events as query;
use super::enforcer_process::Enforcer;
use super::Test;
use crate::guest_rootfs::GUEST_ENFORCER;

pub const TESTS: &[Test] = &[Test::new(
    "audit_learn_enforce_with_the_template",
    audit_learn_enforce_with_the_template,
)
.with_timeout(600)];

const TEMPLATE: &str = include_str!("../../../rules/templates/default-deny-namespace.yaml");
const DIR: &str = "/tmp/e2e-hardening";
const CGROUP: &str = "e2e-hardening";

/// The service: runs its own tool (a program of its own, by path), busybox applets by their
/// paths (links to /bin/busybox: the kernel sees the resolved path), writes its own files and
/// connects to its backend. Each iteration that got through all of it is appended to `good`,
/// one that did not to `bad`.
const SERVICE: &str = r#"
D=$1; PORT=$2; CAT=$3; NC=$4; SLEEP=$5; i=0
while [ ! -e $D/stop ]; do
  if $D/app/bin/date > $D/app/data/out.$((i % 4)) \
     && $CAT $D/app/data/out.$((i % 4)) >> $D/app/log/service.log \
     && $NC -w 3 127.0.0.1 $PORT < /dev/null > /dev/null; then
    echo $i >> $D/app/log/good
  else
    echo $i >> $D/app/log/bad
  fi
  i=$((i + 1))
  $SLEEP 0.2
done
"#;

/// The full path of a busybox applet link (`busybox --list-full` puts them in several
/// directories).
fn applet(name: &str) -> Result<String> {
    ["/bin", "/usr/bin", "/sbin", "/usr/sbin"]
        .iter()
        .map(|d| format!("{d}/{name}"))
        .find(|p| Path::new(p).exists())
        .with_context(|| format!("no `{name}` applet in the guest"))
}

/// Accepts connections on loopback and closes them at once, for the rest of the run.
fn serve() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("listening on loopback")?;
    let port = l.local_addr()?.port();
    std::thread::spawn(move || {
        for stream in l.incoming() {
            drop(stream);
        }
    });
    Ok(port)
}

fn setup() -> Result<()> {
    let _ = fs::remove_dir_all(DIR);
    for d in ["app/bin", "app/data", "app/log", "unlisted", "elsewhere"] {
        fs::create_dir_all(format!("{DIR}/{d}")).with_context(|| format!("creating {d}"))?;
    }
    // The service's own program, and one nobody listed: the same bytes under other paths
    // (exec rules name paths).
    fs::copy("/bin/busybox", format!("{DIR}/app/bin/date"))?;
    fs::copy("/bin/busybox", format!("{DIR}/unlisted/date"))?;
    fs::write(format!("{DIR}/app/service.sh"), SERVICE)?;
    Ok(())
}

fn lines(path: &str) -> usize {
    fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

/// The service in `cg` until [`stop_service`]: `/bin/sh` started inside the cgroup.
fn start_service(cg: &Cgroup, port: u16) -> Result<Child> {
    let _ = fs::remove_file(format!("{DIR}/stop"));
    let mut cmd = Command::new("/bin/sh");
    let err = fs::File::create(format!("{DIR}/service.err"))?;
    cmd.arg(format!("{DIR}/app/service.sh"))
        .arg(DIR)
        .arg(port.to_string())
        .args([applet("cat")?, applet("nc")?, applet("sleep")?])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err);
    cg.spawn(&mut cmd)
}

fn stop_service(mut child: Child) -> Result<()> {
    fs::write(format!("{DIR}/stop"), "")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    bail!("the service did not stop within 30 s")
}

/// Waits until `good` has grown by `n` lines (or anything reached `bad`).
fn wait_good(n: usize) -> Result<usize> {
    let good = format!("{DIR}/app/log/good");
    let start = lines(&good);
    let deadline = Instant::now() + Duration::from_secs(120);
    while lines(&good) < start + n {
        let bad = fs::read_to_string(format!("{DIR}/app/log/bad")).unwrap_or_default();
        ensure!(
            bad.is_empty(),
            "service iterations failed: {bad:?}; its stderr: {:?}",
            fs::read_to_string(format!("{DIR}/service.err")).unwrap_or_default()
        );
        ensure!(
            Instant::now() < deadline,
            "the service made {} good iterations in 120 s, {n} expected",
            lines(&good) - start
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(lines(&good) - start)
}

fn run(cg: Option<&Cgroup>, program: &str, args: &[&str]) -> Result<Captured> {
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null());
    match cg {
        Some(cg) => cg.run(&mut cmd),
        None => capture(&mut cmd),
    }
}

/// The three things the allowlist does not cover, from `cg` (or from outside any policy):
/// a program nobody listed, a write elsewhere, a connection elsewhere. Returns their results.
fn outsiders(cg: Option<&Cgroup>, other_port: u16) -> Result<[Result<Captured>; 3]> {
    let exec = run(cg, &format!("{DIR}/unlisted/date"), &["+%s"]);
    let write = run(
        cg,
        "/bin/sh",
        &["-c", &format!("echo x > {DIR}/elsewhere/file")],
    );
    let connect = run(
        cg,
        &applet("nc")?,
        &["-w", "3", "127.0.0.1", &other_port.to_string()],
    );
    Ok([exec, write, connect])
}

fn refused(what: &str, r: &Result<Captured>) -> Result<()> {
    match r {
        // std reports the child's failed execve as the error of the spawn.
        Err(e) => ensure!(
            format!("{e:#}").contains("Operation not permitted"),
            "{what}: failed otherwise: {e:#}"
        ),
        Ok(c) => ensure!(
            !c.status.success() && c.stderr.contains("Operation not permitted"),
            "{what}: expected EPERM: {c}"
        ),
    }
    Ok(())
}

fn fine(what: &str, r: &Result<Captured>) -> Result<()> {
    match r {
        Err(e) => bail!("{what}: {e:#}"),
        Ok(c) => ensure!(c.status.success(), "{what}: expected success: {c}"),
    }
    Ok(())
}

fn audit_learn_enforce_with_the_template() -> Result<()> {
    setup()?;
    let cg = Cgroup::create(CGROUP)?;
    let port = serve()?;
    let other_port = serve()?;

    // 1. The template, selecting the service's cgroup, in audit mode.
    let policy = TEMPLATE.replace("[/hardened.slice/**]", &format!("[/{CGROUP}/**]"));
    ensure!(
        policy != TEMPLATE,
        "the template's selector changed: update this test"
    );
    let policy_path = format!("{DIR}/hardened.yaml");
    fs::write(&policy_path, &policy)?;
    let audit = Enforcer::start(&["--policy", &policy_path])?;
    let service = start_service(&cg, port)?;
    // Two full rounds of its four data files: each is created (round one) and truncated by
    // `>` (round two) while audited, so learning sees every operation the service does.
    let audited_run = wait_good(10);
    stop_service(service)?;
    let audit_state = audit.state_dir().to_path_buf();
    let audit_log = audit.log().unwrap_or_default();
    ensure!(
        audit.stop()?.success(),
        "the audit enforcer failed: {audit_log}"
    );
    audited_run.context("in audit mode nothing may be refused")?;
    let audited = query(
        &audit_state,
        &["--verdict", "audited", "--policy", "hardened"],
    )?;
    ensure!(
        audited.iter().all(|e| e["rule"] == "default"),
        "audit events other than the default posture's: {audited:#?}"
    );
    for class in ["exec", "file", "network"] {
        ensure!(
            audited.iter().any(|e| e["class"] == class),
            "no audited {class} event: {audited:#?}"
        );
    }

    // 2. Learn: the allowlist merged into the policy file.
    let learned_path = format!("{DIR}/learned.yaml");
    let learn = capture(
        Command::new(GUEST_ENFORCER)
            .args([
                "learn",
                "--policy",
                "hardened",
                "--since",
                "1h",
                "--state-dir",
            ])
            .arg(&audit_state)
            .args(["--from-policy", &policy_path, "--output", &learned_path]),
    )?
    .success()
    .context("enforcer learn")?;
    let learned = fs::read_to_string(&learned_path)?;
    for expected in [
        format!("- {DIR}/app/bin/date  # "),
        "- /bin/busybox  # ".to_string(),
        format!("- {DIR}/app/data/**  # 4 paths, "),
        format!("- {DIR}/app/log/service.log  # "),
        "- 127.0.0.1/32  # ".to_string(),
        format!("ports: [{port}]"),
    ] {
        ensure!(
            learned.contains(&expected),
            "`{expected}` is not in the learned policy ({learn}):\n{learned}"
        );
    }
    ensure!(
        !learned.contains(&format!("ports: [{other_port}]")) && !learned.contains("unlisted"),
        "learned what the service never did:\n{learned}"
    );
    capture(Command::new(GUEST_ENFORCER).args(["policy", "check", &learned_path]))?
        .success()
        .context("policy check of the learned file")?;

    // 3. Reviewed: switch to enforce, restart with it.
    ensure!(
        learned.matches("\n    mode: audit\n").count() == 1,
        "one `mode: audit` line expected:\n{learned}"
    );
    let enforced = learned.replace("\n    mode: audit\n", "\n    mode: enforce\n");
    let enforced_path = format!("{DIR}/enforced.yaml");
    fs::write(&enforced_path, &enforced)?;
    let _ = fs::remove_file(format!("{DIR}/app/log/good"));
    let enforcer = Enforcer::start(&["--policy", &enforced_path])?;
    let service = start_service(&cg, port)?;
    let enforced_run = wait_good(8);
    let inside = outsiders(Some(&cg), other_port)?;
    let outside = outsiders(None, other_port)?;
    let still_good = wait_good(2);
    stop_service(service)?;
    let state = enforcer.state_dir().to_path_buf();
    let log = enforcer.log().unwrap_or_default();
    ensure!(enforcer.stop()?.success(), "the enforcer failed: {log}");

    let good = enforced_run.context("the service under the learned allowlist")?;
    still_good.context("the service after the refusals")?;
    ensure!(good >= 8, "{good} good iterations");
    let [exec, write, connect] = &inside;
    refused("an unlisted program in the cgroup", exec)?;
    refused("a write elsewhere from the cgroup", write)?;
    refused("a connection elsewhere from the cgroup", connect)?;
    let [exec, write, connect] = &outside;
    fine("the unlisted program outside the cgroup", exec)?;
    fine("the write elsewhere outside the cgroup", write)?;
    fine("the connection elsewhere outside the cgroup", connect)?;

    // What reached user space: exactly the three refusals, by the default posture.
    let denied = query(&state, &["--verdict", "denied"])?;
    let unlisted = format!("{DIR}/unlisted/date");
    let elsewhere = format!("{DIR}/elsewhere/file");
    let is_exec = |e: &serde_json::Value| e["target"]["exec"]["path"] == unlisted.as_str();
    let is_write = |e: &serde_json::Value| e["target"]["file"]["path"] == elsewhere.as_str();
    let is_connect =
        |e: &serde_json::Value| e["target"]["network"]["dst_port"] == u64::from(other_port);
    for (what, found) in [
        ("exec", denied.iter().any(is_exec)),
        ("write", denied.iter().any(is_write)),
        ("connect", denied.iter().any(is_connect)),
    ] {
        ensure!(found, "no denied {what} event: {denied:#?}");
    }
    ensure!(
        denied.iter().all(|e| e["policy"] == "hardened"
            && e["rule"] == "default"
            && (is_exec(e) || is_write(e) || is_connect(e))),
        "the service itself was denied something: {denied:#?}"
    );
    Ok(())
}
