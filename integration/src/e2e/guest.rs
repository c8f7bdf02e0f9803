//! The guest itself is what the other tests assume: BPF LSM active, the file systems mounted,
//! loopback up, and the helpers working.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;

use anyhow::{ensure, Context, Result};

use super::cgroup::{Cgroup, CGROUP2_ROOT};
use super::command::sh;
use super::enforcer_process::Enforcer;
use super::Test;

pub const TESTS: &[Test] = &[
    Test::new("bpf_lsm_active", bpf_lsm_active),
    Test::new("cgroup2_mounted", cgroup2_mounted),
    Test::new("bpffs_mounted", bpffs_mounted),
    Test::new("loopback_works", loopback_works),
    Test::new("cgroup_helper_places_child", cgroup_helper_places_child),
    Test::new("enforcer_ready_and_sigterm", enforcer_ready_and_sigterm),
];

fn bpf_lsm_active() -> Result<()> {
    let lsm = fs::read_to_string("/sys/kernel/security/lsm")
        .context("reading /sys/kernel/security/lsm (is securityfs mounted?)")?;
    ensure!(
        lsm.trim().split(',').any(|name| name == "bpf"),
        "`bpf` is not among the active LSMs: {lsm:?}"
    );
    Ok(())
}

/// The file system type mounted at `mount_point`, from /proc/self/mounts.
fn mounted_type(mount_point: &str) -> Result<Option<String>> {
    let mounts = fs::read_to_string("/proc/self/mounts").context("reading /proc/self/mounts")?;
    Ok(mounts.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(1) == Some(&mount_point)).then(|| fields.get(2).unwrap_or(&"").to_string())
    }))
}

fn cgroup2_mounted() -> Result<()> {
    let fs_type = mounted_type(CGROUP2_ROOT)?;
    ensure!(
        fs_type.as_deref() == Some("cgroup2"),
        "{CGROUP2_ROOT} is {fs_type:?}, not cgroup2"
    );
    let procs = fs::read_to_string(format!("{CGROUP2_ROOT}/cgroup.procs"))
        .context("reading the root cgroup's cgroup.procs")?;
    ensure!(
        procs
            .lines()
            .any(|pid| pid.trim() == std::process::id().to_string()),
        "this process is not in the root cgroup"
    );
    Ok(())
}

fn bpffs_mounted() -> Result<()> {
    let fs_type = mounted_type("/sys/fs/bpf")?;
    ensure!(
        fs_type.as_deref() == Some("bpf"),
        "/sys/fs/bpf is {fs_type:?}, not bpf"
    );
    Ok(())
}

/// Test servers run on loopback, the guest's only network.
fn loopback_works() -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding on 127.0.0.1")?;
    let address = listener.local_addr()?;
    let mut client = TcpStream::connect(address).context("connecting over loopback")?;
    let (mut server, _) = listener.accept()?;
    client.write_all(b"ping")?;
    let mut buffer = [0; 4];
    server.read_exact(&mut buffer)?;
    ensure!(&buffer == b"ping", "received {buffer:?}");
    Ok(())
}

fn cgroup_helper_places_child() -> Result<()> {
    let cgroup = Cgroup::create("e2e-guest-helper")?;
    let id = cgroup.id()?;
    ensure!(id > 1, "implausible cgroup id {id}");
    let output = cgroup
        .run(Command::new("cat").arg("/proc/self/cgroup"))?
        .success()?;
    ensure!(
        output.stdout.trim() == "0::/e2e-guest-helper",
        "the child is in {:?}",
        output.stdout.trim()
    );
    // A process spawned in the cgroup is listed there while it runs.
    let mut child = cgroup.spawn(Command::new("sleep").arg("30"))?;
    let pids = cgroup.pids()?;
    child.kill()?;
    child.wait()?;
    ensure!(
        pids == [child.id()],
        "cgroup.procs lists {pids:?}, expected [{}]",
        child.id()
    );
    // Processes outside stay outside.
    let outside = sh("cat /proc/self/cgroup")?.success()?;
    ensure!(
        outside.stdout.trim() == "0::/",
        "a process outside is in {:?}",
        outside.stdout.trim()
    );
    Ok(())
}

/// The contract every enforcer test relies on: `enforcer run` prints `enforcer ready` and exits
/// on SIGTERM.
fn enforcer_ready_and_sigterm() -> Result<()> {
    let mut enforcer = Enforcer::start(&[])?;
    ensure!(
        enforcer.is_running()?,
        "the enforcer exited right after `ready`"
    );
    let log = enforcer.log()?;
    let status = enforcer.stop()?;
    ensure!(
        status.success(),
        "the enforcer exited with {status} after SIGTERM; its log:\n{log}"
    );
    Ok(())
}
