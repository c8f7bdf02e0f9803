//! End-to-end tests of the process events (`tp_btf/sched_process_exec|fork|exit`) and of the
//! user-space `alert` rules they feed: a workload in a cgroup shaped like containerd's under
//! Kubernetes triggers a deny, an audit and an alert, and all three are in
//! `enforcer events query --format json` within a second, enriched from the process table
//! (ancestors, exec id) and the cgroup path (container id).

use std::fs;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};

use super::cgroup::Cgroup;
use super::enforcer_process::query_events;
use super::enforcer_process::Enforcer;
use super::Test;

pub const TESTS: &[Test] = &[Test::new(
    "deny_audit_and_alert_are_enriched_within_a_second",
    deny_audit_and_alert_are_enriched_within_a_second,
)];

const DIR: &str = "/tmp/e2e-proc";
const POD: &str = "pod0c8f4a5e-2b7d-4c1a-9e3f-5a6b7c8d9e0f";
const CONTAINER: &str = "4f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

const POLICY: &str = "policies:
  - name: e2e-proc
    select: {cgroups: [/kubepods]}
    mode: enforce
    rules:
      - name: no-secret
        message: the secret was read
        action: deny
        file: {path: /tmp/e2e-proc/secret, ops: [read]}
      - name: watch-config
        message: the config was read
        action: audit
        file: {path: /tmp/e2e-proc/config, ops: [read]}
      - name: web-shell
        message: a web server started a shell
        severity: critical
        tags: [T1505.003]
        action: alert
        condition: evt.class = exec and proc.name in (nginx, httpd) and exec.path regex '/(ba)?sh$'
";

fn deny_audit_and_alert_are_enriched_within_a_second() -> Result<()> {
    let _ = fs::remove_dir_all(DIR);
    fs::create_dir_all(DIR).context("creating the fixture")?;
    fs::write(format!("{DIR}/secret"), "s3cret\n")?;
    fs::write(format!("{DIR}/config"), "listen 80;\n")?;
    // A directory created just now, which only the kernel's exec record can name as the
    // cats' cwd: the shell `cd`s into it after the enforcer's /proc scan.
    fs::create_dir_all(format!("{DIR}/fresh-cwd"))?;
    // A "web server": busybox under another name, run as its `sh` applet (argv[0]).
    fs::copy("/bin/busybox", format!("{DIR}/nginx"))?;
    let policy = format!("{DIR}/policy.yaml");
    fs::write(&policy, POLICY)?;

    // Dropped in reverse order: the container's cgroup first.
    let _kubepods = Cgroup::create("kubepods")?;
    let _qos = Cgroup::create("kubepods/burstable")?;
    let _pod = Cgroup::create(&format!("kubepods/burstable/{POD}"))?;
    let cg = Cgroup::create(&format!(
        "kubepods/burstable/{POD}/cri-containerd-{CONTAINER}.scope"
    ))?;
    let enforcer = Enforcer::start(&["--policy", &policy])?;

    // nginx runs a shell (the alert), which reads the secret (denied) and the config
    // (audited). Absolute paths make busybox exec them rather than run its applets in
    // place; `; true` keeps each shell from exec-ing its last command.
    let script = format!(
        "/bin/sh -c 'cd {DIR}/fresh-cwd && /bin/cat {DIR}/secret; /bin/cat {DIR}/config; true'; true"
    );
    let mut web = Command::new(format!("{DIR}/nginx"));
    web.arg0("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cg.spawn(&mut web)?;
    let web_pid = child.id();
    let out = child
        .wait_with_output()
        .context("waiting for the workload")?;
    let acted = Instant::now();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    ensure!(
        stderr.contains("Operation not permitted"),
        "the secret must be denied: {stdout} {stderr}"
    );
    ensure!(
        stdout.contains("listen 80;") && !stdout.contains("s3cret"),
        "the config is audited, not denied: {stdout} {stderr}"
    );

    // All three, polled with a deadline of one second after the action.
    let state = enforcer.state_dir().to_path_buf();
    let find = |events: &[serde_json::Value], verdict: &str, rule: &str| {
        events
            .iter()
            .find(|e| e["verdict"] == verdict && e["rule"] == rule)
            .cloned()
    };
    let mut events = Vec::new();
    let mut found = (None, None, None);
    while Instant::now() < acted + Duration::from_secs(1) {
        events = query_events(&state, &[])?;
        found = (
            find(&events, "denied", "no-secret"),
            find(&events, "audited", "watch-config"),
            find(&events, "alerted", "web-shell"),
        );
        if found.0.is_some() && found.1.is_some() && found.2.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let waited = acted.elapsed();
    let log = enforcer.log().unwrap_or_default();
    let status = enforcer.stop()?;
    ensure!(status.success(), "enforcer exited with {status}: {log}");
    let (Some(denied), Some(audited), Some(alert)) = found else {
        anyhow::bail!(
            "not all of deny, audit and alert within 1 s ({} ms): {events:#?}\nlog:\n{log}",
            waited.as_millis()
        );
    };

    for e in [&denied, &audited, &alert] {
        let p = &e["process"];
        ensure!(
            p["exec_id"].as_str().is_some_and(|s| !s.is_empty()),
            "exec id: {e}"
        );
        let ancestors = p["ancestors"].as_array().context("no ancestors")?;
        ensure!(
            ancestors
                .iter()
                .any(|a| a["exe"] == format!("{DIR}/nginx").as_str()),
            "nginx is an ancestor: {e}"
        );
        ensure!(
            ancestors
                .iter()
                .all(|a| a["exec_id"].as_str().is_some_and(|s| !s.is_empty())),
            "every ancestor has an exec id: {e}"
        );
        ensure!(e["container"]["id"] == CONTAINER, "container id: {e}");
        ensure!(
            e["cgroup"]["path"]
                .as_str()
                .is_some_and(|p| p.ends_with(&format!("/cri-containerd-{CONTAINER}.scope"))),
            "cgroup path: {e}"
        );
    }
    // The reads are by the two cats, children of the shell nginx started.
    for e in [&denied, &audited] {
        ensure!(e["process"]["exe"] == "/bin/cat", "exe: {e}");
        ensure!(e["process"]["argv"][0] == "/bin/cat", "argv: {e}");
        ensure!(
            e["process"]["cwd"] == format!("{DIR}/fresh-cwd").as_str(),
            "cwd from the exec record: {e}"
        );
        ensure!(
            e["process"]["ancestors"][0]["exe"] == "/bin/sh",
            "parent: {e}"
        );
    }
    ensure!(
        denied["target"]["file"]["path"] == format!("{DIR}/secret").as_str(),
        "{denied}"
    );
    ensure!(
        audited["target"]["file"]["path"] == format!("{DIR}/config").as_str(),
        "{audited}"
    );
    // The alert: nginx's child (still nginx until the exec) ran /bin/sh.
    ensure!(
        alert["policy"] == "e2e-proc"
            && alert["class"] == "exec"
            && alert["severity"] == "critical"
            && alert["message"] == "a web server started a shell"
            && alert["tags"][0] == "T1505.003",
        "alert: {alert}"
    );
    ensure!(alert["target"]["exec"]["path"] == "/bin/sh", "{alert}");
    ensure!(alert["target"]["exec"]["argv"][0] == "/bin/sh", "{alert}");
    ensure!(
        alert["process"]["exe"] == format!("{DIR}/nginx").as_str(),
        "{alert}"
    );
    ensure!(
        alert["process"]["ancestors"][0]["pid"] == web_pid,
        "nginx is the parent: {alert}"
    );
    // One alert: the shell's own execs (the cats) are not by a web server.
    let alerts = events.iter().filter(|e| e["verdict"] == "alerted").count();
    ensure!(alerts == 1, "one alert expected: {events:#?}");
    Ok(())
}
