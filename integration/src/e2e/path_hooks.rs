//! End-to-end tests of the path and mmap hooks (create, delete, rename, link, chmod, chown,
//! truncate, mmap_exec): real operations by busybox and by raw syscalls inside and outside a
//! scoped cgroup, what the kernel did (EPERM or success), and the records it sent. Plans are
//! applied with `bpf_lsm::Loaded::apply` as in `kernel_plan`; one test goes through
//! `enforcer run --policy` for the names in the exported event.

use std::ffi::CString;
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, ensure, Context, Result};
use bpf_lsm::plan::ops;
use bpf_lsm::{Action, EventRing, KernelPlan, KernelRule, Mode, PathRecord, Record};
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{mkdirat, Mode as FileMode};

use super::cgroup::Cgroup;
use super::command::{capture, Captured};
use super::enforcer_process::Enforcer;
use super::hand_plan::{self, load, records, Auto};
use super::Test;

pub const TESTS: &[Test] = &[
    Test::new("create_is_denied_inside_only", create_is_denied_inside_only),
    Test::new("delete_is_denied_inside_only", delete_is_denied_inside_only),
    Test::new("rename_checks_both_paths", rename_checks_both_paths),
    Test::new(
        "link_checks_the_new_name_and_the_target",
        link_checks_the_new_name_and_the_target,
    ),
    Test::new(
        "chmod_and_chown_by_path_and_descriptor",
        chmod_and_chown_by_path_and_descriptor,
    ),
    Test::new(
        "chmod_setting_setuid_or_setgid_is_its_own_op",
        chmod_setting_setuid_or_setgid_is_its_own_op,
    ),
    Test::new(
        "truncate_by_path_descriptor_and_open",
        truncate_by_path_descriptor_and_open,
    ),
    Test::new("mmap_exec_and_mprotect", mmap_exec_and_mprotect),
    Test::new("audit_mode_logs_and_allows", audit_mode_logs_and_allows),
    Test::new(
        "default_deny_and_kill_as_for_file_open",
        default_deny_and_kill_as_for_file_open,
    ),
    Test::new("child_cgroup_created_later", child_cgroup_created_later),
    Test::new(
        "evasions_resolve_to_the_protected_path",
        evasions_resolve_to_the_protected_path,
    ),
    Test::new(
        "path_longer_than_path_max_fails_closed",
        path_longer_than_path_max_fails_closed,
    ),
    Test::new("only_needed_hooks_attach", only_needed_hooks_attach),
    Test::new(
        "daemon_reports_policy_rule_and_both_paths",
        daemon_reports_policy_rule_and_both_paths,
    ),
];

const EPERM: i32 = libc::EPERM;
const RULE: u32 = 200;
const POLICY: u32 = 9;

/// A one-policy plan: rule `RULE + i` is `(action, ops)` on `dirs[i]/**`, applied to `cg`.
fn plan(cg: &Cgroup, mode: Mode, rules: &[(&str, Action, u32)]) -> Result<KernelPlan> {
    let mut a = Auto::new();
    let mut krules = Vec::new();
    for (i, (dir, action, ops)) in rules.iter().enumerate() {
        let id = RULE + i as u32;
        a.recursive(dir, &[id]);
        krules.push(KernelRule {
            id,
            policy: POLICY,
            action: *action,
            ops: *ops,
        });
    }
    hand_plan::file_plan(cg, POLICY, mode, a.m, krules)
}

fn path_records(ring: &mut EventRing) -> Result<Vec<PathRecord>> {
    Ok(records(ring)?
        .into_iter()
        .filter_map(|r| match r {
            Record::Path(p) => Some(p),
            _ => None,
        })
        .collect())
}

/// A fresh `/tmp/ph-<name>` with the given files (directories end in `/`).
fn fixture(name: &str, entries: &[&str]) -> Result<String> {
    let dir = format!("/tmp/ph-{name}");
    let _ = Command::new("umount").arg(format!("{dir}/bind")).output();
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).with_context(|| format!("creating {dir}"))?;
    for e in entries {
        let path = format!("{dir}/{e}");
        if let Some(d) = path.strip_suffix('/') {
            fs::create_dir_all(d)?;
        } else {
            if let Some(parent) = Path::new(&path).parent() {
                fs::create_dir_all(parent)?;
            }
            fs::write(&path, format!("{e}\n"))?;
        }
    }
    Ok(dir)
}

/// A busybox command inside `cg` (or outside), with the pid the kernel reports.
fn run(cg: Option<&Cgroup>, args: &[&str]) -> Result<(u32, Captured)> {
    let mut cmd = Command::new(args[0]);
    cmd.args(&args[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = match cg {
        Some(cg) => cg.spawn(&mut cmd)?,
        None => cmd.spawn().with_context(|| format!("starting {args:?}"))?,
    };
    let pid = child.id();
    let out = child.wait_with_output().context("waiting")?;
    Ok((
        pid,
        Captured {
            command: args.join(" "),
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        },
    ))
}

fn denied(c: &Captured) -> Result<()> {
    ensure!(
        !c.status.success() && c.stderr.contains("Operation not permitted"),
        "expected EPERM: {c}"
    );
    Ok(())
}

fn allowed(c: &Captured) -> Result<()> {
    ensure!(c.status.success(), "expected success: {c}");
    Ok(())
}

/// Denied inside `cg`: the pid of the process that was.
fn deny_in(cg: &Cgroup, args: &[&str]) -> Result<u32> {
    let (pid, c) = run(Some(cg), args)?;
    denied(&c).with_context(|| args.join(" "))?;
    Ok(pid)
}

fn allow(cg: Option<&Cgroup>, args: &[&str]) -> Result<()> {
    allowed(&run(cg, args)?.1).with_context(|| args.join(" "))
}

fn c(path: &str) -> Result<CString> {
    CString::new(path).context("a path with a NUL")
}

/// The errno of the last failed libc call.
fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)
}

/// Runs `op` (raw syscalls, no allocation) in a child process that first joins `cg`; returns
/// the child's pid and the errno `op` returned (0: it succeeded).
fn syscall_in(cg: Option<&Cgroup>, op: fn(&[CString]) -> i32, args: &[&str]) -> Result<(u32, i32)> {
    let args: Vec<CString> = args.iter().map(|a| c(a)).collect::<Result<_>>()?;
    let procs = match cg {
        Some(cg) => Some(
            fs::OpenOptions::new()
                .write(true)
                .open(cg.path().join("cgroup.procs"))
                .context("opening cgroup.procs")?,
        ),
        None => None,
    };
    let procs_fd = procs.as_ref().map(|f| f.as_raw_fd());
    let mut cmd = Command::new("true");
    cmd.stdin(Stdio::null());
    // SAFETY: the closure runs between fork and exec and only makes raw syscalls on memory
    // allocated before the fork; `_exit` ends the child without running anything else.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(fd) = procs_fd {
                // "0" moves the writing process.
                if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    libc::_exit(200);
                }
            }
            let e = op(&args);
            if e != 0 {
                libc::_exit(e);
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("spawning the syscall child")?;
    let pid = child.id();
    let status = child.wait()?;
    drop(procs);
    match status.code() {
        Some(200) => bail!("the child could not join the cgroup"),
        Some(code) => Ok((pid, code)),
        None => bail!("the child died of signal {:?}", status.signal()),
    }
}

/// `op` on `args` (in `cg` when given) ends with errno `want` (0: success); the child's pid.
fn errno_in(
    cg: Option<&Cgroup>,
    op: fn(&[CString]) -> i32,
    args: &[&str],
    want: i32,
    what: &str,
) -> Result<u32> {
    expect_errno(syscall_in(cg, op, args)?, want, what)
}

fn expect_errno(got: (u32, i32), want: i32, what: &str) -> Result<u32> {
    ensure!(got.1 == want, "{what}: errno {} (want {want})", got.1);
    Ok(got.0)
}

/// The records of `ops`, as (pid, op, path, second path).
fn summary(rs: &[PathRecord]) -> Vec<(u32, u32, String, Option<String>)> {
    rs.iter()
        .map(|r| {
            (
                r.header.pid,
                r.op,
                String::from_utf8_lossy(&r.path).into_owned(),
                r.path2
                    .as_ref()
                    .map(|p| String::from_utf8_lossy(p).into_owned()),
            )
        })
        .collect()
}

/// Every record is a deny by `rule` of our policy in `cg`.
fn all_denied_by(rs: &[PathRecord], rule: u32, cg: &Cgroup) -> Result<()> {
    let id = cg.id()?;
    for r in rs {
        let h = &r.header;
        ensure!(
            h.action == Action::Deny
                && h.rule_id == Some(rule)
                && h.policy_id == Some(POLICY)
                && h.cgroup_id == id
                && !h.path_unresolved(),
            "{r:?}"
        );
    }
    Ok(())
}

fn expect_records(
    ring: &mut EventRing,
    rule: u32,
    cg: &Cgroup,
    want: &[(u32, u32, &str, Option<&str>)],
) -> Result<()> {
    let rs = path_records(ring)?;
    all_denied_by(&rs, rule, cg)?;
    let got = summary(&rs);
    let want: Vec<(u32, u32, String, Option<String>)> = want
        .iter()
        .map(|(pid, op, p, p2)| (*pid, *op, p.to_string(), p2.map(str::to_string)))
        .collect();
    ensure!(got == want, "records:\n got {got:#?}\nwant {want:#?}");
    Ok(())
}

fn create_is_denied_inside_only() -> Result<()> {
    let dir = fixture("create", &["prot/", "free/"])?;
    let prot = format!("{dir}/prot");
    let cg = Cgroup::create("ph-create")?;
    let (_l, mut ring) = load(&plan(
        &cg,
        Mode::Enforce,
        &[(&prot, Action::Deny, ops::CREATE)],
    )?)?;

    let mkdir = deny_in(&cg, &["mkdir", &format!("{prot}/d")])?;
    // open(O_CREAT) of a new file goes through path_mknod.
    let touch = deny_in(&cg, &["touch", &format!("{prot}/f")])?;
    let mknod = deny_in(&cg, &["mknod", &format!("{prot}/fifo"), "p"])?;
    let symlink = deny_in(&cg, &["ln", "-s", "/etc/passwd", &format!("{prot}/s")])?;
    // Elsewhere inside, and the same outside, all fine.
    allow(Some(&cg), &["mkdir", &format!("{dir}/free/d")])?;
    allow(Some(&cg), &["touch", &format!("{dir}/free/f")])?;
    allow(None, &["mkdir", &format!("{prot}/d")])?;
    allow(None, &["touch", &format!("{prot}/f")])?;
    allow(None, &["mknod", &format!("{prot}/fifo"), "p"])?;
    allow(None, &["ln", "-s", "/etc/passwd", &format!("{prot}/s")])?;
    // Opening an existing file with O_CREAT creates nothing.
    allow(Some(&cg), &["touch", &format!("{prot}/f")])?;

    // A symlink's records name the target's decision too.
    let sym = ops::CREATE | ops::LINK | ops::SYMLINK_TO;
    expect_records(
        &mut ring,
        RULE,
        &cg,
        &[
            (mkdir, ops::CREATE, &format!("{prot}/d"), None),
            (touch, ops::CREATE, &format!("{prot}/f"), None),
            (mknod, ops::CREATE, &format!("{prot}/fifo"), None),
            (symlink, sym, &format!("{prot}/s"), Some("/etc/passwd")),
        ],
    )
}

fn delete_is_denied_inside_only() -> Result<()> {
    let dir = fixture("delete", &["prot/f", "prot/sub/", "free/f"])?;
    let prot = format!("{dir}/prot");
    let cg = Cgroup::create("ph-delete")?;
    let (_l, mut ring) = load(&plan(
        &cg,
        Mode::Enforce,
        &[(&prot, Action::Deny, ops::DELETE)],
    )?)?;

    let rm = deny_in(&cg, &["rm", &format!("{prot}/f")])?;
    let rmdir = deny_in(&cg, &["rmdir", &format!("{prot}/sub")])?;
    allow(Some(&cg), &["rm", &format!("{dir}/free/f")])?;
    // Not a delete: creating is fine.
    allow(Some(&cg), &["touch", &format!("{prot}/new")])?;
    allow(None, &["rm", &format!("{prot}/f")])?;
    allow(None, &["rmdir", &format!("{prot}/sub")])?;
    expect_records(
        &mut ring,
        RULE,
        &cg,
        &[
            (rm, ops::DELETE, &format!("{prot}/f"), None),
            (rmdir, ops::DELETE, &format!("{prot}/sub"), None),
        ],
    )
}

fn rename_checks_both_paths() -> Result<()> {
    let dir = fixture("rename", &["prot/f", "free/g", "free/h"])?;
    let prot = format!("{dir}/prot");
    let free = format!("{dir}/free");
    let cg = Cgroup::create("ph-rename")?;
    let (_l, mut ring) = load(&plan(
        &cg,
        Mode::Enforce,
        &[(&prot, Action::Deny, ops::RENAME)],
    )?)?;

    // The protected file moved away, and another file moved onto it.
    let away = deny_in(&cg, &["mv", &format!("{prot}/f"), &format!("{free}/f")])?;
    let onto = deny_in(&cg, &["mv", &format!("{free}/g"), &format!("{prot}/f")])?;
    allow(
        Some(&cg),
        &["mv", &format!("{free}/h"), &format!("{free}/h2")],
    )?;
    ensure!(
        fs::read_to_string(format!("{prot}/f"))? == "prot/f\n",
        "the protected file changed"
    );
    allow(None, &["mv", &format!("{prot}/f"), &format!("{free}/f")])?;
    expect_records(
        &mut ring,
        RULE,
        &cg,
        &[
            (
                away,
                ops::RENAME,
                &format!("{prot}/f"),
                Some(&format!("{free}/f")),
            ),
            (
                onto,
                ops::RENAME,
                &format!("{free}/g"),
                Some(&format!("{prot}/f")),
            ),
        ],
    )
}

fn link_checks_the_new_name_and_the_target() -> Result<()> {
    let dir = fixture("link", &["prot/shadow", "free/f"])?;
    let prot = format!("{dir}/prot");
    let free = format!("{dir}/free");
    let cg = Cgroup::create("ph-link")?;
    let (_l, mut ring) = load(&plan(
        &cg,
        Mode::Enforce,
        &[(&prot, Action::Deny, ops::LINK | ops::SYMLINK_TO)],
    )?)?;

    // A hard link elsewhere to the protected file: the rule on the target decides.
    let hard = deny_in(
        &cg,
        &["ln", &format!("{prot}/shadow"), &format!("{free}/copy")],
    )?;
    // A hard link into the protected directory.
    let into = deny_in(&cg, &["ln", &format!("{free}/f"), &format!("{prot}/l")])?;
    // A symlink in it is a link too.
    let sym = deny_in(&cg, &["ln", "-s", "/etc/passwd", &format!("{prot}/s")])?;
    // A symlink elsewhere pointing at the protected file, however the target is written:
    // absolute, relative with `..`, with `.` and doubled slashes.
    let sym_abs = deny_in(
        &cg,
        &["ln", "-s", &format!("{prot}/shadow"), &format!("{free}/s1")],
    )?;
    let sym_rel = deny_in(&cg, &["ln", "-s", "../prot/shadow", &format!("{free}/s2")])?;
    let sym_odd = deny_in(
        &cg,
        &[
            "ln",
            "-s",
            &format!("{free}/./..//prot/./shadow"),
            &format!("{free}/s3"),
        ],
    )?;
    // `..` above the root stays at the root.
    let above = format!("../../../../../../../..{prot}/shadow");
    let sym_above = deny_in(&cg, &["ln", "-s", &above, &format!("{free}/s4")])?;
    // Symlinks to other files, relative or not, are fine.
    allow(Some(&cg), &["ln", "-s", "f", &format!("{free}/ok1")])?;
    allow(
        Some(&cg),
        &["ln", "-s", "../free/f", &format!("{free}/ok2")],
    )?;
    allow(
        Some(&cg),
        &["ln", "-s", "/etc/passwd", &format!("{free}/ok3")],
    )?;
    // A name that only starts like the protected directory.
    allow(
        Some(&cg),
        &["ln", "-s", "../prot-not/x", &format!("{free}/ok4")],
    )?;
    allow(
        None,
        &["ln", "-s", "../prot/shadow", &format!("{free}/outside")],
    )?;
    allow(
        Some(&cg),
        &["ln", &format!("{free}/f"), &format!("{free}/f2")],
    )?;
    allow(
        None,
        &["ln", &format!("{prot}/shadow"), &format!("{free}/copy")],
    )?;
    expect_records(
        &mut ring,
        RULE,
        &cg,
        &[
            (
                hard,
                ops::LINK,
                &format!("{free}/copy"),
                Some(&format!("{prot}/shadow")),
            ),
            (
                into,
                ops::LINK,
                &format!("{prot}/l"),
                Some(&format!("{free}/f")),
            ),
            (
                sym,
                ops::CREATE | ops::LINK | ops::SYMLINK_TO,
                &format!("{prot}/s"),
                Some("/etc/passwd"),
            ),
            (
                sym_abs,
                ops::CREATE | ops::LINK | ops::SYMLINK_TO,
                &format!("{free}/s1"),
                Some(&format!("{prot}/shadow")),
            ),
            (
                sym_rel,
                ops::CREATE | ops::LINK | ops::SYMLINK_TO,
                &format!("{free}/s2"),
                Some(&format!("{prot}/shadow")),
            ),
            (
                sym_odd,
                ops::CREATE | ops::LINK | ops::SYMLINK_TO,
                &format!("{free}/s3"),
                Some(&format!("{prot}/shadow")),
            ),
            (
                sym_above,
                ops::CREATE | ops::LINK | ops::SYMLINK_TO,
                &format!("{free}/s4"),
                Some(&format!("{prot}/shadow")),
            ),
        ],
    )
}

/// Opens `path` with `flags` and runs `f` on the descriptor (raw system calls only: this runs
/// between fork and exec); the errno of the call that failed, or 0.
fn on_fd(path: &CString, flags: i32, f: impl Fn(i32) -> libc::c_int) -> i32 {
    // SAFETY: a NUL-terminated path that outlives the call; the descriptor is closed by `_exit`.
    let fd = unsafe { libc::open(path.as_ptr(), flags) };
    if fd < 0 || f(fd) != 0 {
        return errno();
    }
    0
}

fn do_fchmod(a: &[CString]) -> i32 {
    // SAFETY: a descriptor this process just opened.
    on_fd(&a[0], libc::O_RDONLY, |fd| unsafe {
        libc::fchmod(fd, 0o600)
    })
}

fn do_fchmodat(a: &[CString]) -> i32 {
    // SAFETY: a directory descriptor this process just opened and a NUL-terminated name.
    on_fd(&a[0], libc::O_RDONLY | libc::O_DIRECTORY, |dir| unsafe {
        libc::fchmodat(dir, a[1].as_ptr(), 0o600, 0)
    })
}

fn do_fchown(a: &[CString]) -> i32 {
    // SAFETY: a descriptor this process just opened.
    on_fd(&a[0], libc::O_RDONLY, |fd| unsafe {
        libc::fchown(fd, 1, 1)
    })
}

fn chmod_and_chown_by_path_and_descriptor() -> Result<()> {
    let dir = fixture("chmod", &["prot/f", "free/f", "own/f"])?;
    let prot = format!("{dir}/prot");
    let own = format!("{dir}/own");
    let cg = Cgroup::create("ph-chmod")?;
    let (_l, mut ring) = load(&plan(
        &cg,
        Mode::Enforce,
        &[
            (&prot, Action::Deny, ops::CHMOD),
            (&own, Action::Deny, ops::CHOWN),
        ],
    )?)?;
    let f = format!("{prot}/f");

    let chmod = deny_in(&cg, &["chmod", "600", &f])?;
    let fchmod = errno_in(Some(&cg), do_fchmod, &[&f], EPERM, "fchmod")?;
    let fchmodat = errno_in(Some(&cg), do_fchmodat, &[&prot, "f"], EPERM, "fchmodat")?;
    let chown = deny_in(&cg, &["chown", "1:1", &format!("{own}/f")])?;
    let fchown = errno_in(
        Some(&cg),
        do_fchown,
        &[&format!("{own}/f")],
        EPERM,
        "fchown",
    )?;
    // chown is not chmod and the other way round; outside, all fine.
    allow(Some(&cg), &["chown", "1:1", &f])?;
    allow(Some(&cg), &["chmod", "600", &format!("{own}/f")])?;
    allow(Some(&cg), &["chmod", "600", &format!("{dir}/free/f")])?;
    errno_in(None, do_fchmod, &[&f], 0, "fchmod outside")?;
    allow(None, &["chown", "2:2", &format!("{own}/f")])?;

    let rs = path_records(&mut ring)?;
    let got = summary(&rs);
    let own_f = format!("{own}/f");
    let want = vec![
        (chmod, ops::CHMOD, f.clone(), None),
        (fchmod, ops::CHMOD, f.clone(), None),
        (fchmodat, ops::CHMOD, f.clone(), None),
        (chown, ops::CHOWN, own_f.clone(), None),
        (fchown, ops::CHOWN, own_f, None),
    ];
    ensure!(got == want, "records:\n got {got:#?}\nwant {want:#?}");
    all_denied_by(&rs[..3], RULE, &cg)?;
    all_denied_by(&rs[3..], RULE + 1, &cg)
}

/// A chmod whose new mode has S_ISUID is decided as `chmod_setuid` (and S_ISGID as
/// `chmod_setgid`), not as a plain chmod: a rule on `chmod_setuid` alone refuses `chmod 4755`
/// and `chmod 6755` (each bit is decided) and lets `chmod 2755` and `chmod 755` through.
fn chmod_setting_setuid_or_setgid_is_its_own_op() -> Result<()> {
    let dir = fixture("setid", &["prot/f", "prot/g"])?;
    let prot = format!("{dir}/prot");
    let cg = Cgroup::create("ph-setid")?;
    let (_l, mut ring) = load(&plan(
        &cg,
        Mode::Enforce,
        &[(&prot, Action::Deny, ops::CHMOD_SETUID)],
    )?)?;
    let (f, g) = (format!("{prot}/f"), format!("{prot}/g"));

    let setuid = deny_in(&cg, &["chmod", "4755", &f])?;
    let both = deny_in(&cg, &["chmod", "6755", &g])?;
    allow(Some(&cg), &["chmod", "2755", &f])?;
    allow(Some(&cg), &["chmod", "755", &f])?;
    allow(None, &["chmod", "4755", &f])?;
    let mode = fs::metadata(&g)?.permissions().mode() & 0o7777;
    ensure!(mode != 0o6755, "g's mode was changed to {mode:o}");

    let rs = path_records(&mut ring)?;
    let got = summary(&rs);
    let want = vec![
        (setuid, ops::CHMOD_SETUID, f, None),
        (both, ops::CHMOD_SETUID | ops::CHMOD_SETGID, g, None),
    ];
    ensure!(got == want, "records:\n got {got:#?}\nwant {want:#?}");
    all_denied_by(&rs, RULE, &cg)
}

fn do_truncate(a: &[CString]) -> i32 {
    // SAFETY: as above.
    if unsafe { libc::truncate(a[0].as_ptr(), 1) } != 0 {
        return errno();
    }
    0
}

fn do_ftruncate(a: &[CString]) -> i32 {
    // SAFETY: a descriptor this process just opened.
    on_fd(&a[0], libc::O_WRONLY, |fd| unsafe {
        libc::ftruncate(fd, 1)
    })
}

fn do_open_trunc(a: &[CString]) -> i32 {
    // SAFETY: as above.
    if unsafe { libc::open(a[0].as_ptr(), libc::O_WRONLY | libc::O_TRUNC) } < 0 {
        return errno();
    }
    0
}

fn truncate_by_path_descriptor_and_open() -> Result<()> {
    let dir = fixture("truncate", &["prot/f", "free/f"])?;
    let prot = format!("{dir}/prot");
    let f = format!("{prot}/f");
    let cg = Cgroup::create("ph-truncate")?;
    let (_l, mut ring) = load(&plan(
        &cg,
        Mode::Enforce,
        &[(&prot, Action::Deny, ops::TRUNCATE)],
    )?)?;

    let mut pids = Vec::new();
    for (what, op) in [
        ("truncate", do_truncate as fn(&[CString]) -> i32),
        ("ftruncate", do_ftruncate),
        ("open(O_TRUNC)", do_open_trunc),
    ] {
        pids.push(errno_in(Some(&cg), op, &[&f], EPERM, what)?);
        errno_in(
            Some(&cg),
            op,
            &[&format!("{dir}/free/f")],
            0,
            &format!("{what} elsewhere"),
        )?;
    }
    ensure!(
        fs::read_to_string(&f)? == "prot/f\n",
        "the file was truncated"
    );
    // A write without O_TRUNC is not a truncate.
    allow(Some(&cg), &["sh", "-c", &format!("echo more >> {f}")])?;
    errno_in(None, do_ftruncate, &[&f], 0, "ftruncate outside")?;
    let want: Vec<(u32, u32, &str, Option<&str>)> = pids
        .iter()
        .map(|p| (*p, ops::TRUNCATE, f.as_str(), None))
        .collect();
    expect_records(&mut ring, RULE, &cg, &want)
}

/// Opens `path` read-only and maps one private page of it with `prot`: the mapping, or the
/// errno of the call that failed.
fn map_page(path: &CString, prot: i32) -> Result<*mut libc::c_void, i32> {
    // SAFETY: as above; the mapping is private and never touched.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_RDONLY);
        if fd < 0 {
            return Err(errno());
        }
        let p = libc::mmap(std::ptr::null_mut(), 4096, prot, libc::MAP_PRIVATE, fd, 0);
        if p == libc::MAP_FAILED {
            return Err(errno());
        }
        Ok(p)
    }
}

fn do_mmap_exec(a: &[CString]) -> i32 {
    match map_page(&a[0], libc::PROT_READ | libc::PROT_EXEC) {
        Ok(_) => 0,
        Err(e) => e,
    }
}

fn do_mprotect_exec(a: &[CString]) -> i32 {
    // A read-only mapping failing is not what the rule is about.
    let Ok(p) = map_page(&a[0], libc::PROT_READ) else {
        return 201;
    };
    // SAFETY: `p` is a page this process just mapped.
    if unsafe { libc::mprotect(p, 4096, libc::PROT_READ | libc::PROT_EXEC) } != 0 {
        return errno();
    }
    0
}

fn do_mmap_anon_exec(_: &[CString]) -> i32 {
    // SAFETY: as above.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_EXEC,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return errno();
    }
    0
}

fn mmap_exec_and_mprotect() -> Result<()> {
    let dir = fixture("mmap", &["prot/lib.so", "free/lib.so"])?;
    let prot = format!("{dir}/prot");
    let lib = format!("{prot}/lib.so");
    let cg = Cgroup::create("ph-mmap")?;
    let (_l, mut ring) = load(&plan(
        &cg,
        Mode::Enforce,
        &[(&prot, Action::Deny, ops::MMAP_EXEC)],
    )?)?;

    let mmap = errno_in(Some(&cg), do_mmap_exec, &[&lib], EPERM, "mmap")?;
    let mprotect = errno_in(Some(&cg), do_mprotect_exec, &[&lib], EPERM, "mprotect")?;
    let free = format!("{dir}/free/lib.so");
    errno_in(Some(&cg), do_mmap_exec, &[&free], 0, "mmap elsewhere")?;
    errno_in(
        Some(&cg),
        do_mprotect_exec,
        &[&free],
        0,
        "mprotect elsewhere",
    )?;
    errno_in(
        Some(&cg),
        do_mmap_anon_exec,
        &[],
        0,
        "anonymous exec mapping",
    )?;
    // Reading it is not mapping it executable.
    allow(Some(&cg), &["cat", &lib])?;
    errno_in(None, do_mmap_exec, &[&lib], 0, "mmap outside")?;
    expect_records(
        &mut ring,
        RULE,
        &cg,
        &[
            (mmap, ops::MMAP_EXEC, lib.as_str(), None),
            (mprotect, ops::MMAP_EXEC, lib.as_str(), None),
        ],
    )
}

fn audit_mode_logs_and_allows() -> Result<()> {
    let dir = fixture("audit", &["prot/f", "prot/g"])?;
    let prot = format!("{dir}/prot");
    let cg = Cgroup::create("ph-audit")?;
    let (_l, mut ring) = load(&plan(
        &cg,
        Mode::Audit,
        &[(&prot, Action::Deny, ops::DELETE | ops::RENAME)],
    )?)?;
    let (rm, c) = run(Some(&cg), &["rm", &format!("{prot}/f")])?;
    allowed(&c)?;
    let (mv, c) = run(
        Some(&cg),
        &["mv", &format!("{prot}/g"), &format!("{dir}/g")],
    )?;
    allowed(&c)?;
    ensure!(
        !Path::new(&format!("{prot}/f")).exists() && Path::new(&format!("{dir}/g")).exists(),
        "the audited operations did not happen"
    );
    let rs = path_records(&mut ring)?;
    let got = summary(&rs);
    let want = vec![
        (rm, ops::DELETE, format!("{prot}/f"), None),
        (
            mv,
            ops::RENAME,
            format!("{prot}/g"),
            Some(format!("{dir}/g")),
        ),
    ];
    ensure!(got == want, "records:\n got {got:#?}\nwant {want:#?}");
    for r in &rs {
        ensure!(
            r.header.action == Action::Audit && r.header.rule_id == Some(RULE),
            "{r:?}"
        );
    }
    Ok(())
}

fn default_deny_and_kill_as_for_file_open() -> Result<()> {
    let dir = fixture("dflt", &["ok/", "other/", "kill/f"])?;
    let cg = Cgroup::create("ph-dflt")?;
    // An allowlist: what busybox and its spawner need (every file operation, mmap_exec of
    // the program included), plus one directory for create; a kill rule for delete.
    let mut rules: Vec<(&str, Action, u32)> = [
        "/bin", "/sbin", "/usr", "/lib", "/lib64", "/etc", "/dev", "/proc",
    ]
    .iter()
    .map(|d| (*d, Action::Allow, ops::ALL))
    .collect();
    let ok = format!("{dir}/ok");
    let kill = format!("{dir}/kill");
    rules.push((ok.as_str(), Action::Allow, ops::CREATE));
    rules.push((kill.as_str(), Action::Kill, ops::DELETE));
    let mut p = plan(&cg, Mode::Enforce, &rules)?;
    p.policies[0].file_default = Action::Deny;
    let (_l, mut ring) = load(&p)?;

    allow(Some(&cg), &["mkdir", &format!("{ok}/d")])?;
    let other = deny_in(&cg, &["mkdir", &format!("{dir}/other/d")])?;
    // The default covers every file operation: a chmod in the allowed-for-create directory.
    let chmod = deny_in(&cg, &["chmod", "700", &format!("{ok}/d")])?;
    let (killed, c) = run(Some(&cg), &["rm", &format!("{kill}/f")])?;
    ensure!(c.status.signal() == Some(9), "expected SIGKILL: {c}");
    ensure!(
        Path::new(&format!("{kill}/f")).exists(),
        "the file was deleted"
    );
    allow(None, &["mkdir", &format!("{dir}/other/d")])?;

    let rs = path_records(&mut ring)?;
    let find = |pid: u32| {
        rs.iter()
            .find(|r| r.header.pid == pid)
            .with_context(|| format!("no record of pid {pid}: {rs:#?}"))
    };
    for pid in [other, chmod] {
        let r = find(pid)?;
        ensure!(
            r.header.action == Action::Deny
                && r.header.by_default()
                && r.header.rule_id.is_none()
                && r.header.policy_id == Some(POLICY),
            "{r:?}"
        );
    }
    let r = find(killed)?;
    let kill_rule = RULE + rules.len() as u32 - 1;
    ensure!(
        r.header.action == Action::Kill
            && r.header.killed()
            && r.header.rule_id == Some(kill_rule)
            && r.op == ops::DELETE,
        "{r:?}"
    );
    Ok(())
}

fn child_cgroup_created_later() -> Result<()> {
    let dir = fixture("child", &["prot/f"])?;
    let prot = format!("{dir}/prot");
    let parent = Cgroup::create("ph-child")?;
    let (_l, mut ring) = load(&plan(
        &parent,
        Mode::Enforce,
        &[(&prot, Action::Deny, ops::DELETE)],
    )?)?;
    let child = Cgroup::create("ph-child/late")?;
    let pid = deny_in(&child, &["rm", &format!("{prot}/f")])?;
    let rs = path_records(&mut ring)?;
    ensure!(
        rs.len() == 1 && rs[0].header.pid == pid && rs[0].header.cgroup_id == child.id()?,
        "{rs:#?}"
    );
    Ok(())
}

fn evasions_resolve_to_the_protected_path() -> Result<()> {
    let dir = fixture("evade", &["prot/a", "prot/b", "prot/c", "prot/d", "bind/"])?;
    let prot = format!("{dir}/prot");
    let alias = format!("{dir}/alias");
    std::os::unix::fs::symlink(&prot, &alias)?;
    let cg = Cgroup::create("ph-evade")?;
    let (_l, mut ring) = load(&plan(
        &cg,
        Mode::Enforce,
        &[(&prot, Action::Deny, ops::DELETE | ops::CREATE)],
    )?)?;

    // `..` and a relative path from another directory.
    let mut rel = Command::new("rm");
    rel.current_dir(&dir).arg("./bind/../prot/../prot/a");
    denied(&cg.run(&mut rel)?)?;
    // A symlink to the directory.
    denied(&run(Some(&cg), &["rm", &format!("{alias}/b")])?.1)?;
    // A bind mount of the directory: the path inside the file system is decided.
    let bind = format!("{dir}/bind");
    capture(Command::new("mount").args(["--bind", &prot, &bind]))?.success()?;
    let via_bind = run(Some(&cg), &["rm", &format!("{bind}/c")]);
    let mkdir_bind = run(Some(&cg), &["mkdir", &format!("{bind}/new")]);
    let _ = capture(Command::new("umount").arg(&bind));
    denied(&via_bind?.1).context("rm through a bind mount")?;
    denied(&mkdir_bind?.1).context("mkdir through a bind mount")?;

    let rs = path_records(&mut ring)?;
    let paths: Vec<String> = summary(&rs).into_iter().map(|r| r.2).collect();
    let want: Vec<String> = ["a", "b", "c", "new"]
        .iter()
        .map(|f| format!("{prot}/{f}"))
        .collect();
    ensure!(paths == want, "resolved paths: {paths:#?}");
    all_denied_by(&rs, RULE, &cg)
}

/// `depth` nested directories `name` below `base` (mkdirat/openat one level at a time: the
/// whole path is longer than a syscall takes), a file `file` at the bottom; the descriptor of
/// the deepest directory and the length of the file's path.
fn deep_tree_fd(base: &str, name: &str, depth: usize) -> Result<(OwnedFd, usize)> {
    let _ = fs::remove_dir_all(base);
    fs::create_dir_all(base)?;
    let mut dir: OwnedFd = fs::File::open(base)?.into();
    for _ in 0..depth {
        mkdirat(
            Some(dir.as_raw_fd()),
            name,
            FileMode::from_bits_truncate(0o755),
        )
        .context("mkdirat")?;
        let raw = openat(
            Some(dir.as_raw_fd()),
            name,
            OFlag::O_DIRECTORY | OFlag::O_RDONLY,
            FileMode::empty(),
        )
        .context("openat")?;
        // SAFETY: openat returned a fresh descriptor that nothing else owns.
        dir = unsafe { OwnedFd::from_raw_fd(raw) };
    }
    for f in ["file", "file2"] {
        let raw = openat(
            Some(dir.as_raw_fd()),
            f,
            OFlag::O_CREAT | OFlag::O_WRONLY,
            FileMode::from_bits_truncate(0o644),
        )
        .context("creating a deep file")?;
        // SAFETY: as above.
        drop(unsafe { OwnedFd::from_raw_fd(raw) });
    }
    Ok((dir, base.len() + depth * (name.len() + 1) + "/file".len()))
}

/// `rm <file>` run from inside `dir` (fchdir: no path needed).
fn rm_relative(dir: &OwnedFd, file: &str, cg: Option<&Cgroup>) -> Result<Captured> {
    let fd = dir.as_raw_fd();
    let mut cmd = Command::new("rm");
    cmd.arg(file);
    // SAFETY: fchdir is async-signal-safe; `dir` outlives the spawn.
    unsafe {
        cmd.pre_exec(move || nix::unistd::fchdir(fd).map_err(std::io::Error::from));
    }
    match cg {
        Some(cg) => cg.run(&mut cmd),
        None => capture(&mut cmd),
    }
}

fn path_longer_than_path_max_fails_closed() -> Result<()> {
    let (dir, len) = deep_tree_fd("/tmp/ph-too-long", &"e".repeat(200), 22)?;
    ensure!(len > 4096, "path is only {len} bytes");
    let prot = fixture("too-long-rule", &["prot/"])?;
    let cg = Cgroup::create("ph-too-long")?;
    let (_l, mut ring) = load(&plan(
        &cg,
        Mode::Enforce,
        &[(&format!("{prot}/prot"), Action::Deny, ops::DELETE)],
    )?)?;
    // The path does not fit in PATH_MAX: a delete fails closed inside, nothing applies outside.
    let inside = rm_relative(&dir, "file", Some(&cg))?;
    let outside = rm_relative(&dir, "file2", None)?;
    denied(&inside)?;
    allowed(&outside)?;
    let rs = path_records(&mut ring)?;
    ensure!(
        rs.len() == 1
            && rs[0].header.action == Action::Deny
            && rs[0].header.path_unresolved()
            && rs[0].header.rule_id.is_none()
            && rs[0].path.is_empty(),
        "{rs:#?}"
    );
    Ok(())
}

fn only_needed_hooks_attach() -> Result<()> {
    let cg = Cgroup::create("ph-hooks")?;
    let (loaded, _) = load(&plan(
        &cg,
        Mode::Enforce,
        &[("/tmp/ph-x", Action::Deny, ops::CREATE)],
    )?)?;
    let mut got = loaded.attached().to_vec();
    got.sort_unstable();
    ensure!(
        got == [
            "enf_cgroup_mkdir",
            "enf_cgroup_rmdir",
            "enf_file_open",
            "enf_path_mkdir",
            "enf_path_mknod",
            "enf_path_symlink"
        ],
        "{got:?}"
    );
    drop(loaded);
    // Truncate: file_truncate only on a kernel that has it (Linux 6.2+).
    let (loaded, _) = load(&plan(
        &cg,
        Mode::Enforce,
        &[("/tmp/ph-x", Action::Deny, ops::TRUNCATE)],
    )?)?;
    let got = loaded.attached();
    let has_file_truncate = fs::read("/sys/kernel/btf/vmlinux")
        .map(|b| b.windows(22).any(|w| w == b"bpf_lsm_file_truncate\0"))
        .unwrap_or(false);
    ensure!(
        got.contains(&"enf_path_truncate")
            && got.contains(&"enf_file_truncate") == has_file_truncate
            && !got.contains(&"enf_path_mknod"),
        "{got:?} (kernel has file_truncate: {has_file_truncate})"
    );
    Ok(())
}

fn daemon_reports_policy_rule_and_both_paths() -> Result<()> {
    let dir = fixture("daemon", &["prot/f", "prot/g"])?;
    let prot = format!("{dir}/prot");
    let cg = Cgroup::create("ph-daemon")?;
    let policy = format!("{dir}/policy.yaml");
    fs::write(
        &policy,
        format!(
            "policies:
  - name: ph
    select: {{cgroups: [/ph-daemon]}}
    mode: enforce
    rules:
      - name: keep-prot
        message: a protected file was moved or deleted
        action: deny
        file: {{path: [{prot}/**], ops: [delete, rename]}}
"
        ),
    )?;
    let enforcer = Enforcer::start(&["--policy", &policy])?;
    let rm = deny_in(&cg, &["rm", &format!("{prot}/f")]);
    let mv = deny_in(&cg, &["mv", &format!("{prot}/g"), &format!("{dir}/g")]);
    let state = enforcer.state_dir().to_path_buf();
    let log = enforcer.log().unwrap_or_default();
    let status = enforcer.stop()?;
    ensure!(
        status.success(),
        "enforcer exited with {status}; log:\n{log}"
    );
    let (rm, mv) = (rm?, mv?);
    let text = fs::read_to_string(state.join("events.jsonl")).context("reading events.jsonl")?;
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("parsing {l}")))
        .collect::<Result<_>>()?;
    ensure!(events.len() == 2, "{events:#?}");
    let (e, m) = (&events[0], &events[1]);
    for ev in [e, m] {
        ensure!(
            ev["verdict"] == "denied"
                && ev["class"] == "file"
                && ev["policy"] == "ph"
                && ev["rule"] == "keep-prot"
                && ev["cgroup"]["id"] == cg.id()?,
            "{ev}"
        );
    }
    ensure!(
        e["operation"] == "delete"
            && e["process"]["tgid"] == rm
            && e["target"]["file"]["path"] == format!("{prot}/f").as_str(),
        "{e}"
    );
    ensure!(
        m["operation"] == "rename"
            && m["process"]["tgid"] == mv
            && m["target"]["file"]["path"] == format!("{prot}/g").as_str()
            && m["target"]["file"]["second_path"] == format!("{dir}/g").as_str(),
        "{m}"
    );
    Ok(())
}
