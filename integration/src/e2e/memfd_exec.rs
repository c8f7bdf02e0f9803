//! Executing a memfd (fileless execution): `lsm/bprm_check_security` decides a memfd by what
//! the file is (an unlinked file on the kernel's internal mount), as the reserved path
//! `/memfd:`, whatever name it was given. The same busybox runs from its file and, copied into a
//! memfd, by `enforcer-e2e memfd-exec` (memfd_create + fexecve): only the memfd is refused, and
//! its record says it was a memfd and keeps its name. The exec fallback
//! (`tp_btf/sched_process_exec`, forced) kills the memfd at exec the same way.

use std::convert::Infallible;
use std::ffi::CString;
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use bpf_lsm::plan::ExecMechanism;
use bpf_lsm::{Action, Record};
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
use nix::unistd::fexecve;

use super::cgroup::Cgroup;
use super::command::capture;
use super::hand_plan::{load, records};
use super::kernel_plan::{busybox_copy, exec_plan, fixture, RULE};
use super::Test;
use crate::guest_rootfs::GUEST_E2E;

pub const TESTS: &[Test] = &[Test::new(
    "memfd_copy_denied_file_allowed",
    memfd_copy_denied_file_allowed,
)];

/// The path the kernel matches every memfd as (policy-lang's `MEMFD_EXEC_PATH`).
const MEMFD_PATH: &str = "/memfd:";
/// The name the helper gives its memfd.
const MEMFD_NAME: &str = "e2e-payload";

/// `enforcer-e2e memfd-exec PROGRAM ARGS...`: copies PROGRAM into a memfd and executes the
/// memfd, as fileless malware does; returns only when the exec failed.
pub fn exec_from_memfd(program: &str, args: &[String]) -> Result<Infallible> {
    let bytes = fs::read(program).with_context(|| format!("reading `{program}`"))?;
    let name = CString::new(MEMFD_NAME).context("memfd name")?;
    let fd = memfd_create(&name, MemFdCreateFlag::MFD_CLOEXEC).context("memfd_create")?;
    fs::write(format!("/proc/self/fd/{}", fd.as_raw_fd()), &bytes)
        .context("writing the program into the memfd")?;
    let argv = std::iter::once(program)
        .chain(args.iter().map(String::as_str))
        .map(CString::new)
        .collect::<Result<Vec<_>, _>>()
        .context("an argument with a NUL byte")?;
    let env: [CString; 0] = [];
    let errno = fexecve(fd.as_raw_fd(), &argv, &env).map_err(anyhow::Error::from);
    errno.context("fexecve of the memfd")
}

fn memfd_copy_denied_file_allowed() -> Result<()> {
    let dir = fixture("memfd", &[])?;
    let bin = busybox_copy(&dir, "busybox-memfd")?;
    let cg = Cgroup::create("memfd-exec")?;
    let memfd_run = || {
        let mut cmd = Command::new(GUEST_E2E);
        cmd.args(["memfd-exec", &bin, "echo", "ran"]);
        cmd
    };
    // The helper works: without a policy the memfd runs.
    let c = capture(&mut memfd_run())?;
    ensure!(
        c.status.success() && c.stdout.trim() == "ran",
        "no policy: {c}"
    );

    let (loaded, mut ring) = load(&exec_plan(&cg, MEMFD_PATH, Action::Deny)?)?;
    let c = cg.run(&mut memfd_run())?;
    ensure!(
        !c.status.success() && c.stderr.contains("EPERM") && !c.stdout.contains("ran"),
        "the memfd ran in the cgroup: {c}"
    );
    // The same program from its file, and the memfd outside the policy's cgroup.
    let c = cg.run(Command::new(&bin).args(["echo", "ran"]))?;
    ensure!(
        c.status.success() && c.stdout.trim() == "ran",
        "the file: {c}"
    );
    let c = capture(&mut memfd_run())?;
    ensure!(
        c.status.success() && c.stdout.trim() == "ran",
        "outside: {c}"
    );

    let rs = records(&mut ring)?;
    let execs: Vec<_> = rs
        .iter()
        .filter_map(|r| match r {
            Record::Exec(e) => Some(e),
            _ => None,
        })
        .collect();
    let [e] = execs.as_slice() else {
        bail!("one exec record expected: {rs:#?}")
    };
    let path = String::from_utf8_lossy(&e.path);
    ensure!(
        e.header.action == Action::Deny
            && e.header.rule_id == Some(RULE)
            && e.header.memfd()
            && path.starts_with(&format!("/memfd:{MEMFD_NAME}")),
        "{e:#?}"
    );
    drop(loaded);

    // The exec fallback (no BPF LSM) tells a memfd the same way, and kills it at exec.
    let mut plan = exec_plan(&cg, MEMFD_PATH, Action::Deny)?;
    plan.exec_mechanism = ExecMechanism::KillAtExec;
    let (_loaded, mut ring) = load(&plan)?;
    let c = cg.run(&mut memfd_run())?;
    ensure!(
        c.status.signal() == Some(9) && !c.stdout.contains("ran"),
        "fallback: the memfd ran: {c}"
    );
    let c = cg.run(Command::new(&bin).args(["echo", "ran"]))?;
    ensure!(c.status.success(), "fallback: the file: {c}");
    let rs = records(&mut ring)?;
    ensure!(
        matches!(rs.as_slice(), [Record::Exec(e)]
            if e.header.memfd() && e.header.exec_fallback() && e.header.killed()
                && String::from_utf8_lossy(&e.path).contains(MEMFD_NAME)),
        "fallback: {rs:#?}"
    );
    Ok(())
}
