//! Kubernetes namespace selectors on a real kernel. The guest has no kubelet, so the test does
//! what the kubelet does to the file systems, in its order: the pod's cgroup, then the pod's
//! log directory `<namespace>_<pod>_<uid>`, then the container's cgroup, then the container's
//! process. The kernel has to give the pod its namespace's policies at the log directory's
//! mkdir; user space is not asked.

use std::fs;
use std::process::{Command, Stdio};

use anyhow::{ensure, Context, Result};

use super::cgroup::Cgroup;
use super::command::Captured;
use super::enforcer_process::query_events as query;
use super::enforcer_process::Enforcer;
use super::Test;

pub const TESTS: &[Test] = &[Test::new(
    "namespace_selectors_cover_running_and_new_pods",
    namespace_selectors_cover_running_and_new_pods,
)
.with_timeout(300)];

const DIR: &str = "/tmp/e2e-pods";
const LOGS: &str = "/tmp/e2e-pods/logs";

fn policy() -> String {
    format!(
        "policies:
  - name: web-namespace
    select: {{namespaces: [web]}}
    mode: enforce
    rules:
      - name: web-no-secret
        message: a pod of the web namespace read the secret
        action: deny
        file: {{path: {DIR}/secret, ops: [read]}}
  - name: pods-but-kube-system
    select: {{cgroups: [/kubepods.slice/**], exclude: {{namespaces: [kube-system]}}}}
    mode: enforce
    rules:
      - name: pods-no-other
        action: deny
        file: {{path: {DIR}/other, ops: [read]}}
"
    )
}

/// A pod as the kubelet lays it out: the pod cgroup, then (`log_dir`) the log directory, then
/// one container cgroup. The cgroups go when dropped, the container's first (field order).
struct Pod {
    container: Cgroup,
    _pod: Cgroup,
}

impl Pod {
    fn create(pod_cgroup: &str, log_dir: &str) -> Result<Self> {
        let pod = Cgroup::create(pod_cgroup)?;
        fs::create_dir(log_dir).with_context(|| format!("creating {log_dir}"))?;
        let container = Cgroup::create(&format!(
            "{pod_cgroup}/cri-containerd-{}.scope",
            "c".repeat(64)
        ))?;
        Ok(Pod {
            container,
            _pod: pod,
        })
    }

    fn cat(&self, file: &str) -> Result<Captured> {
        self.container.run(
            Command::new("/bin/cat")
                .arg(format!("{DIR}/{file}"))
                .stdin(Stdio::null()),
        )
    }
}

fn systemd_pod(qos: &str, uid: &str) -> String {
    let uid = uid.replace('-', "_");
    if qos.is_empty() {
        format!("kubepods.slice/kubepods-pod{uid}.slice")
    } else {
        format!("kubepods.slice/kubepods-{qos}.slice/kubepods-{qos}-pod{uid}.slice")
    }
}

const RUNNING: &str = "11111111-aaaa-4bbb-8ccc-000000000001";
const WEB: &str = "22222222-aaaa-4bbb-8ccc-000000000002";
const SHOP: &str = "33333333-aaaa-4bbb-8ccc-000000000003";
const SYSTEM: &str = "44444444-aaaa-4bbb-8ccc-000000000004";
/// A static pod: its uid is the 32 hex digits of its manifest's hash (cgroupfs driver here).
const STATIC: &str = "55555555aaaa4bbb8ccc000000000005";
const SPOOFED: &str = "66666666-aaaa-4bbb-8ccc-000000000006";

fn denied(c: &Captured) -> bool {
    !c.status.success() && c.stderr.contains("Operation not permitted")
}

fn read(c: &Captured) -> bool {
    c.status.success() && c.stdout == "x\n"
}

fn namespace_selectors_cover_running_and_new_pods() -> Result<()> {
    let _ = fs::remove_dir_all(DIR);
    fs::create_dir_all(LOGS)?;
    fs::write(format!("{DIR}/secret"), "x\n")?;
    fs::write(format!("{DIR}/other"), "x\n")?;
    fs::write(format!("{DIR}/policy.yaml"), policy())?;
    fs::write(
        format!("{DIR}/config.toml"),
        format!("pod_logs_dir = \"{LOGS}\"\n"),
    )?;
    let kubepods = Cgroup::create("kubepods.slice")?;
    let besteffort = Cgroup::create("kubepods.slice/kubepods-besteffort.slice")?;
    let burstable = Cgroup::create("kubepods.slice/kubepods-burstable.slice")?;
    let cgroupfs = Cgroup::create("kubepods")?;

    // A pod of the web namespace that runs before the enforcer starts.
    let running = Pod::create(
        &systemd_pod("besteffort", RUNNING),
        &format!("{LOGS}/web_shop-0_{RUNNING}"),
    )?;
    let enforcer = Enforcer::start(&[
        "--policy",
        &format!("{DIR}/policy.yaml"),
        "--config",
        &format!("{DIR}/config.toml"),
    ])?;

    // Pods created after the load, each in the kubelet's order.
    let web = Pod::create(
        &systemd_pod("burstable", WEB),
        &format!("{LOGS}/web_shop-1_{WEB}"),
    )?;
    let shop = Pod::create(
        &systemd_pod("", SHOP),
        &format!("{LOGS}/shop_cart-0_{SHOP}"),
    )?;
    let system = Pod::create(
        &systemd_pod("besteffort", SYSTEM),
        &format!("{LOGS}/kube-system_dns-0_{SYSTEM}"),
    )?;
    let static_pod = Pod::create(
        &format!("kubepods/pod{STATIC}"),
        &format!("{LOGS}/web_etcd-node1_{STATIC}"),
    )?;
    // A log directory made anywhere but the pod log directory names no pod.
    let spoofed = Pod::create(
        &systemd_pod("besteffort", SPOOFED),
        &format!("{DIR}/web_fake-0_{SPOOFED}"),
    )?;

    let results = [
        ("running web pod", &running, true, true),
        ("new web pod", &web, true, true),
        ("shop pod", &shop, false, true),
        ("kube-system pod", &system, false, false),
        ("static web pod (cgroupfs)", &static_pod, true, false),
        ("pod with a spoofed log directory", &spoofed, false, true),
    ]
    .into_iter()
    .map(|(what, pod, secret, other)| {
        Ok((what, pod.cat("secret")?, secret, pod.cat("other")?, other))
    })
    .collect::<Result<Vec<_>>>()?;
    let outside = super::command::capture(Command::new("/bin/cat").arg(format!("{DIR}/secret")))?;

    let state = enforcer.state_dir().to_path_buf();
    let log = enforcer.log().unwrap_or_default();
    let status = enforcer.stop()?;
    drop((running, web, shop, system, static_pod, spoofed));
    drop((besteffort, burstable, cgroupfs));
    drop(kubepods);
    ensure!(status.success(), "enforcer exited with {status}: {log}");

    for (what, secret, secret_denied, other, other_denied) in &results {
        for (file, got, want_denied) in [
            ("secret", secret, secret_denied),
            ("other", other, other_denied),
        ] {
            if *want_denied {
                ensure!(denied(got), "{what}: reading {file} must be denied: {got}");
            } else {
                ensure!(read(got), "{what}: reading {file} must be allowed: {got}");
            }
        }
    }
    ensure!(read(&outside), "outside every pod: {outside}");

    // The verdicts name the pod, from the same log directory.
    let events = query(&state, &["--verdict", "denied"])?;
    let secret_denials: Vec<_> = events
        .iter()
        .filter(|e| e["rule"] == "web-no-secret")
        .collect();
    ensure!(
        secret_denials.len() == 3,
        "one denial per web pod, got {}: {secret_denials:?}",
        secret_denials.len()
    );
    let new_web = secret_denials
        .iter()
        .find(|e| e["kubernetes"]["pod_uid"] == WEB)
        .with_context(|| format!("no denial names the new web pod: {secret_denials:?}"))?;
    ensure!(
        new_web["kubernetes"]["namespace"] == "web"
            && new_web["kubernetes"]["pod_name"] == "shop-1",
        "the new web pod's denial: {new_web}"
    );
    let _ = fs::remove_dir_all(DIR);
    Ok(())
}
