//! End-to-end tests of self-protection: a process in a cgroup under enforcement cannot signal
//! or ptrace the enforcer, reach BPF objects pinned below its bpffs directory (by pin or by
//! id), or read, write, delete or rename its state; the same operations from outside the
//! covered cgroups work. Each refusal is an event of rule `self-protection`. The daemon's own
//! executable (the CLI) may read the state from inside; a copy of it may not.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};

use super::cgroup::{spawn_fn, Cgroup};
use super::command::capture;
use super::enforcer_process::Enforcer;
use super::Test;
use crate::guest_rootfs::GUEST_ENFORCER;

pub const TESTS: &[Test] = &[Test::new(
    "guard_a_covered_process_cannot_tamper_with_the_enforcer",
    a_covered_process_cannot_tamper_with_the_enforcer,
)
.with_timeout(240)];

const DIR: &str = "/tmp/e2e-self-protection";
const CGROUP: &str = "e2e-self-protection";
/// The daemon's pin root in the suite (`ENFORCER_PIN_ROOT`), which the guard protects.
const PIN_DIR: &str = super::pinning::PIN_ROOT;
const PIN: &str = "/sys/fs/bpf/enforcer-e2e/e2e-self-protection";

const BPF_MAP_CREATE: i64 = 0;
const BPF_OBJ_PIN: i64 = 6;
const BPF_OBJ_GET: i64 = 7;
const BPF_MAP_GET_FD_BY_ID: i64 = 14;
const BPF_OBJ_GET_INFO_BY_FD: i64 = 15;

fn policy() -> String {
    format!(
        "policies:
  - name: e2e-guard
    select: {{cgroups: [/{CGROUP}]}}
    mode: enforce
    rules:
      - name: unrelated
        action: deny
        file: {{path: {DIR}/secret, ops: [read]}}
"
    )
}

/// The errno of a failed call (its return value is negative), else 0.
fn errno_of(ret: i64) -> i32 {
    if ret >= 0 {
        return 0;
    }
    std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)
}

fn bpf(cmd: i64, attr: &mut [u64; 16]) -> i64 {
    // SAFETY: a bpf_attr-sized buffer that outlives the call.
    unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), size_of_val(attr)) }
}

/// BPF_OBJ_GET of `path` (a NUL-terminated string); the fd, or a negative value.
fn obj_get(path: &CString) -> i64 {
    let mut attr = [0u64; 16];
    attr[0] = path.as_ptr() as u64;
    bpf(BPF_OBJ_GET, &mut attr)
}

fn map_get_fd_by_id(id: u32) -> i64 {
    let mut attr = [0u64; 16];
    attr[0] = u64::from(id);
    bpf(BPF_MAP_GET_FD_BY_ID, &mut attr)
}

/// An array map pinned at [`PIN`], created from outside the covered cgroup; returns its id.
fn pin_a_map() -> Result<u32> {
    fs::create_dir_all(PIN_DIR).with_context(|| format!("creating {PIN_DIR}"))?;
    let _ = fs::remove_file(PIN);
    let mut attr = [0u64; 16];
    // map_type ARRAY (2), key 4 bytes | value 4 bytes, 1 entry.
    attr[0] = 2 | (4 << 32);
    attr[1] = 4 | (1 << 32);
    let fd = bpf(BPF_MAP_CREATE, &mut attr);
    ensure!(
        fd >= 0,
        "creating a map: {}",
        std::io::Error::last_os_error()
    );
    let path = CString::new(PIN)?;
    let mut attr = [0u64; 16];
    attr[0] = path.as_ptr() as u64;
    attr[1] = fd as u64;
    ensure!(
        bpf(BPF_OBJ_PIN, &mut attr) == 0,
        "pinning the map: {}",
        std::io::Error::last_os_error()
    );
    // struct bpf_map_info: type, then id.
    let mut info = [0u32; 32];
    let mut attr = [0u64; 16];
    attr[0] = fd as u64 | ((size_of_val(&info) as u64) << 32);
    attr[1] = info.as_mut_ptr() as u64;
    ensure!(
        bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr) == 0,
        "reading the map's id: {}",
        std::io::Error::last_os_error()
    );
    // The pin keeps the map; the fd is not needed any more.
    // SAFETY: fd is ours and not used after this.
    unsafe { libc::close(fd as i32) };
    Ok(info[1])
}

/// Runs `f` in a child forked into `cg` and returns what `f` returned: an errno, 0 for
/// success.
fn errno_in<F>(cg: &Cgroup, f: F) -> Result<i32>
where
    F: Fn() -> i32 + Send + Sync + 'static,
{
    let status = spawn_fn(Some(cg), f)?
        .wait()
        .context("waiting for the child")?;
    match status.code() {
        Some(code) => Ok(code),
        None => bail!("the child ended with signal {:?}", status.signal()),
    }
}

fn open_errno(path: &CString, flags: i32) -> i32 {
    // SAFETY: a NUL-terminated path.
    let fd = unsafe { libc::open(path.as_ptr(), flags, 0o600) };
    if fd >= 0 {
        // SAFETY: our own descriptor.
        unsafe { libc::close(fd) };
    }
    errno_of(fd.into())
}

fn c(path: &Path) -> Result<CString> {
    Ok(CString::new(path.as_os_str().as_encoded_bytes())?)
}

fn a_covered_process_cannot_tamper_with_the_enforcer() -> Result<()> {
    let _ = fs::remove_dir_all(DIR);
    fs::create_dir_all(DIR)?;
    let policy_path = format!("{DIR}/policy.yaml");
    fs::write(&policy_path, policy())?;
    let map_id = pin_a_map()?;
    let cg = Cgroup::create(CGROUP)?;
    let mut enforcer = Enforcer::start_with_timeout(
        &["--policy", &policy_path, "--self-protection"],
        super::enforcer_process::DEFAULT_READY_TIMEOUT * 4,
    )?;
    let pid = enforcer.pid().context("the enforcer's pid")? as i32;
    let state = enforcer.state_dir().to_path_buf();
    let status_json = c(&state.join("status.json"))?;
    let store = c(&state.join("events.db"))?;
    let moved = c(&state.join("moved"))?;
    let created = c(&state.join("created"))?;
    let pin = CString::new(PIN)?;

    let mut refused: Vec<(&str, i32)> = Vec::new();
    refused.push((
        "kill -9",
        // SAFETY: kill has no memory arguments.
        errno_in(&cg, move || {
            errno_of(unsafe { libc::kill(pid, libc::SIGKILL) }.into())
        })?,
    ));
    refused.push((
        "ptrace attach",
        errno_in(&cg, move || {
            // SAFETY: PTRACE_ATTACH takes no memory arguments.
            errno_of(unsafe { libc::ptrace(libc::PTRACE_ATTACH, pid, 0, 0) })
        })?,
    ));
    let p = pin.clone();
    refused.push(("BPF_OBJ_GET", errno_in(&cg, move || errno_of(obj_get(&p)))?));
    refused.push((
        "BPF_MAP_GET_FD_BY_ID",
        errno_in(&cg, move || errno_of(map_get_fd_by_id(map_id)))?,
    ));
    let p = pin.clone();
    refused.push((
        "open of the pin",
        errno_in(&cg, move || open_errno(&p, libc::O_RDONLY))?,
    ));
    let p = status_json.clone();
    refused.push((
        "read of status.json",
        errno_in(&cg, move || open_errno(&p, libc::O_RDONLY))?,
    ));
    let p = store.clone();
    refused.push((
        "write of the store",
        errno_in(&cg, move || open_errno(&p, libc::O_WRONLY | libc::O_APPEND))?,
    ));
    let p = created.clone();
    refused.push((
        "create in the state dir",
        errno_in(&cg, move || {
            open_errno(&p, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL)
        })?,
    ));
    let p = store.clone();
    refused.push((
        "delete of the store",
        // SAFETY: a NUL-terminated path.
        errno_in(&cg, move || {
            errno_of(unsafe { libc::unlink(p.as_ptr()) }.into())
        })?,
    ));
    let (from, to) = (status_json.clone(), moved.clone());
    refused.push((
        "rename in the state dir",
        errno_in(&cg, move || {
            // SAFETY: NUL-terminated paths.
            errno_of(unsafe { libc::rename(from.as_ptr(), to.as_ptr()) }.into())
        })?,
    ));
    // The daemon's own executable may read its store from the covered cgroup (the CLI from
    // an admin's shell); `cat` of the same file, and a copy of the binary, may not.
    let query_inside = cg.run(
        Command::new(GUEST_ENFORCER)
            .args(["events", "query", "--format", "json", "--state-dir"])
            .arg(&state),
    )?;
    let cat_inside = cg.run(Command::new("cat").arg(state.join("events.db")))?;
    let copy = Path::new(DIR).join("enforcer-copy");
    fs::copy(GUEST_ENFORCER, &copy).context("copying the enforcer binary")?;
    let copy_inside = cg.run(
        Command::new(&copy)
            .args(["events", "query", "--format", "json", "--state-dir"])
            .arg(&state),
    )?;
    let running = enforcer.is_running()?;

    // From outside every covered cgroup the same objects are reachable.
    // SAFETY: kill has no memory arguments.
    let signal_outside = errno_of(unsafe { libc::kill(pid, libc::SIGCONT) }.into());
    let read_outside = fs::read_to_string(state.join("status.json"));
    let get_outside = obj_get(&pin);
    if get_outside >= 0 {
        // SAFETY: our own descriptor.
        unsafe { libc::close(get_outside as i32) };
    }
    let by_id_outside = map_get_fd_by_id(map_id);
    if by_id_outside >= 0 {
        // SAFETY: our own descriptor.
        unsafe { libc::close(by_id_outside as i32) };
    }

    let log = enforcer.log().unwrap_or_default();
    let stopped = enforcer.stop()?;
    let _ = fs::remove_file(PIN);
    ensure!(running, "the enforcer died: {log}");
    ensure!(stopped.success(), "enforcer exited with {stopped}: {log}");
    let not_refused: Vec<_> = refused
        .iter()
        .filter(|(_, errno)| *errno != libc::EPERM)
        .collect();
    ensure!(
        not_refused.is_empty(),
        "not refused with EPERM (errno; 0: it worked): {not_refused:?}"
    );
    ensure!(
        signal_outside == 0,
        "SIGCONT from outside: errno {signal_outside}"
    );
    read_outside.context("reading status.json from outside")?;
    ensure!(get_outside >= 0, "BPF_OBJ_GET from outside failed");
    ensure!(
        by_id_outside >= 0,
        "BPF_MAP_GET_FD_BY_ID from outside failed"
    );
    ensure!(state.join("events.db").exists(), "the store is gone");
    let query_inside = query_inside
        .success()
        .context("the enforcer's own binary could not query the store from a covered cgroup")?;
    serde_json::from_str::<Vec<serde_json::Value>>(&query_inside.stdout)
        .with_context(|| format!("query in the covered cgroup printed no JSON: {query_inside}"))?;
    ensure!(
        !cat_inside.status.success() && cat_inside.stderr.contains("Operation not permitted"),
        "cat of the store in the covered cgroup was not refused with EPERM: {cat_inside}"
    );
    ensure!(
        !copy_inside.status.success(),
        "a copy of the enforcer binary read the store from a covered cgroup: {copy_inside}"
    );

    let out = capture(
        Command::new(GUEST_ENFORCER)
            .args(["events", "query", "--format", "json", "--limit", "0"])
            .args(["--rule", "self-protection", "--state-dir"])
            .arg(&state),
    )?
    .success()?;
    let events: Vec<serde_json::Value> = serde_json::from_str(&out.stdout)
        .with_context(|| format!("query printed no JSON: {out}"))?;
    ensure!(
        events
            .iter()
            .all(|e| e["policy"] == "enforcer" && e["verdict"] == "denied"),
        "{events:#?}"
    );
    let operations: BTreeSet<&str> = events
        .iter()
        .filter_map(|e| e["operation"].as_str())
        .collect();
    for op in ["kill", "ptrace", "bpf", "open", "delete", "rename"] {
        ensure!(
            operations.contains(op),
            "no self-protection event for `{op}`: {operations:?}"
        );
    }
    Ok(())
}
