//! The kernel class (privileged operations, capabilities, system calls), driven directly
//! through `bpf_lsm::Loaded::apply`: each operation is done for real by a child process, inside
//! or outside a target cgroup, and the test asserts what the kernel did (EPERM, success, SIGKILL)
//! and the record that reached user space.
//!
//! The child does nothing but the operation: between fork and exec (the std `Command`
//! machinery's `pre_exec`) it joins the cgroup, makes the raw system calls and `_exit`s with the
//! errno of the last one (0: success), so no program of the guest has to support the operation.

use std::ffi::CString;
use std::fs::{self, File};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command};

use anyhow::{bail, ensure, Context, Result};
use bpf_lsm::{
    kops, Action, CgroupPolicies, EventRing, KernelDefault, KernelKey, KernelKeyRules, KernelOp,
    KernelOpRule, KernelOpsPlan, KernelPlan, KernelPolicy, KernelRecord, KernelSubject, Loaded,
    Mode, Record,
};

use super::cgroup::{spawn_fn, Cgroup};
use super::hand_plan::{load, records};
use super::Test;

pub const TESTS: &[Test] = &[
    Test::new("mount_and_umount", mount_and_umount),
    Test::new("ptrace_attach_and_traceme", ptrace_attach_and_traceme),
    Test::new("bpf_syscall", bpf_syscall),
    Test::new("module_load_by_file_and_memory", module_load),
    Test::new("kexec_by_file_and_memory", kexec),
    Test::new("setuid_and_setgid_root", setuid_and_setgid_root),
    Test::new("userns_create", userns_create),
    Test::new("raw_and_packet_sockets", raw_and_packet_sockets),
    Test::new("perf_event_open", perf_event_open),
    Test::new("keyctl", keyctl),
    Test::new("capability", capability),
    Test::new("syscall_kill_and_audit", syscall_kill_and_audit),
    Test::new(
        "audit_mode_allows_and_records",
        audit_mode_allows_and_records,
    ),
    Test::new("kill_action_on_an_operation", kill_action_on_an_operation),
    Test::new("kernel_default_deny", kernel_default_deny),
    Test::new("only_needed_hooks_attach", only_needed_hooks_attach),
];

const POLICY: u32 = 5;
const EPERM: i32 = libc::EPERM;
/// x86_64 `getppid`, a call nothing else in the test child makes.
const SYS_GETPPID: u32 = 110;
const CAP_SYS_ADMIN: u32 = 21;

/// One rule of the test policy: (id, action, keys).
struct R(u32, Action, Vec<KernelKey>);

fn plan(cg: &Cgroup, mode: Mode, rules: &[R], default: Option<Action>) -> Result<KernelPlan> {
    let mut keys: Vec<KernelKeyRules> = Vec::new();
    for R(id, _, ks) in rules {
        for k in ks {
            match keys.iter_mut().find(|e| e.key == *k) {
                Some(e) => e.rules.push(*id),
                None => keys.push(KernelKeyRules {
                    key: *k,
                    rules: vec![*id],
                }),
            }
        }
    }
    Ok(KernelPlan {
        cgroup_selectors: Default::default(),
        policies: vec![KernelPolicy {
            id: POLICY,
            mode,
            file_default: Action::Allow,
            exec_default: Action::Allow,
        }],
        cgroups: vec![CgroupPolicies {
            cgroup_id: cg.id()?,
            policies: vec![POLICY],
        }],
        kernel: KernelOpsPlan {
            rules: rules
                .iter()
                .map(|R(id, action, _)| KernelOpRule {
                    id: *id,
                    policy: POLICY,
                    action: *action,
                })
                .collect(),
            keys,
            defaults: default
                .map(|action| KernelDefault {
                    policy: POLICY,
                    action,
                })
                .into_iter()
                .collect(),
        },
        ..KernelPlan::default()
    })
}

fn kernel_records(ring: &mut EventRing) -> Result<Vec<KernelRecord>> {
    Ok(records(ring)?
        .into_iter()
        .filter_map(|r| match r {
            Record::Kernel(k) => Some(k),
            _ => None,
        })
        .collect())
}

/// How the child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// `_exit(errno)` of the operation: 0 is success.
    Errno(i32),
    Signal(i32),
}

/// The operations, with everything they need prepared before the fork (the child only makes
/// system calls: no allocation between fork and exec).
#[derive(Clone)]
enum Op {
    Mount {
        target: CString,
    },
    Umount {
        target: CString,
    },
    PtraceSeize {
        pid: i32,
    },
    PtraceTraceme,
    BpfMapCreate,
    FinitModule {
        fd: RawFd,
    },
    InitModule,
    KexecFileLoad {
        fd: RawFd,
    },
    KexecLoad,
    SetuidRoot,
    SetgidRoot,
    UnshareUser,
    Socket {
        family: i32,
        kind: i32,
        protocol: i32,
    },
    PerfEventOpen,
    AddKey,
    Sethostname {
        name: CString,
    },
    Getppid,
}

fn errno_of(ret: libc::c_long) -> i32 {
    if ret < 0 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)
    } else {
        0
    }
}

/// Does `op` with raw system calls; returns the errno of the last one (0: success).
fn perform(op: &Op) -> i32 {
    let empty = c"".as_ptr();
    // SAFETY: raw system calls on buffers and C strings prepared before the fork (alive in the
    // child's copy of the memory) or on the stack.
    unsafe {
        match op {
            Op::Mount { target } => {
                let r = libc::mount(
                    c"none".as_ptr(),
                    target.as_ptr(),
                    c"tmpfs".as_ptr(),
                    0,
                    std::ptr::null(),
                );
                let e = errno_of(r.into());
                if e == 0 {
                    libc::umount2(target.as_ptr(), libc::MNT_DETACH);
                }
                e
            }
            Op::Umount { target } => errno_of(libc::umount2(target.as_ptr(), 0).into()),
            Op::PtraceSeize { pid } => errno_of(libc::ptrace(
                libc::PTRACE_SEIZE,
                *pid,
                std::ptr::null_mut::<libc::c_void>(),
                std::ptr::null_mut::<libc::c_void>(),
            )),
            Op::PtraceTraceme => errno_of(libc::ptrace(
                libc::PTRACE_TRACEME,
                0,
                std::ptr::null_mut::<libc::c_void>(),
                std::ptr::null_mut::<libc::c_void>(),
            )),
            Op::BpfMapCreate => {
                // map_type ARRAY (2), key 4 bytes, value 4 bytes, 1 entry.
                let mut attr = [0u32; 32];
                attr[0] = 2;
                attr[1] = 4;
                attr[2] = 4;
                attr[3] = 1;
                errno_of(libc::syscall(
                    libc::SYS_bpf,
                    0, // BPF_MAP_CREATE
                    attr.as_mut_ptr(),
                    std::mem::size_of_val(&attr),
                ))
            }
            Op::FinitModule { fd } => {
                errno_of(libc::syscall(libc::SYS_finit_module, *fd, empty, 0))
            }
            Op::InitModule => {
                // Longer than an ELF header, so that the kernel gets to its LSM check.
                let image = [0u8; 256];
                errno_of(libc::syscall(
                    libc::SYS_init_module,
                    image.as_ptr(),
                    image.len(),
                    empty,
                ))
            }
            Op::KexecFileLoad { fd } => errno_of(libc::syscall(
                libc::SYS_kexec_file_load,
                *fd,
                -1,
                1, // the command line's length, with its NUL
                empty,
                4, // KEXEC_FILE_NO_INITRAMFS
            )),
            // No segments: unloads a loaded image (there is none) when allowed.
            Op::KexecLoad => errno_of(libc::syscall(
                libc::SYS_kexec_load,
                0,
                0,
                std::ptr::null::<libc::c_void>(),
                0,
            )),
            Op::SetuidRoot => {
                let e = errno_of(libc::syscall(libc::SYS_setresuid, 1000, 1000, 0));
                if e != 0 {
                    return 100 + e;
                }
                errno_of(libc::syscall(libc::SYS_setuid, 0))
            }
            Op::SetgidRoot => {
                let e = errno_of(libc::syscall(libc::SYS_setresgid, 1000, 1000, 0));
                if e != 0 {
                    return 100 + e;
                }
                errno_of(libc::syscall(libc::SYS_setgid, 0))
            }
            Op::UnshareUser => errno_of(libc::unshare(libc::CLONE_NEWUSER).into()),
            Op::Socket {
                family,
                kind,
                protocol,
            } => errno_of(libc::socket(*family, *kind, *protocol).into()),
            Op::PerfEventOpen => {
                // PERF_TYPE_SOFTWARE (1), size 64, PERF_COUNT_SW_CPU_CLOCK (0), disabled,
                // exclude_kernel, exclude_hv.
                let mut attr = [0u64; 16];
                attr[0] = 1 | (64 << 32);
                attr[5] = 1 | (1 << 5) | (1 << 6);
                errno_of(libc::syscall(
                    libc::SYS_perf_event_open,
                    attr.as_mut_ptr(),
                    0,
                    -1,
                    -1,
                    0,
                ))
            }
            Op::AddKey => errno_of(libc::syscall(
                libc::SYS_add_key,
                c"user".as_ptr(),
                c"enforcer-e2e".as_ptr(),
                c"x".as_ptr(),
                1,
                -2, // KEY_SPEC_PROCESS_KEYRING
            )),
            Op::Sethostname { name } => {
                errno_of(libc::sethostname(name.as_ptr(), name.as_bytes().len()).into())
            }
            Op::Getppid => errno_of(libc::syscall(libc::SYS_getppid)),
        }
    }
}

/// Starts a child that does `op` (in `cg` when given) and exits; returns it unwaited.
fn spawn_op(cg: Option<&Cgroup>, op: &Op) -> Result<Child> {
    let op = op.clone();
    spawn_fn(cg, move || perform(&op))
}

/// Runs `op` and returns (how it ended, its pid).
fn run_op(cg: Option<&Cgroup>, op: &Op) -> Result<(End, u32)> {
    let mut child = spawn_op(cg, op)?;
    let pid = child.id();
    let status = child.wait().context("waiting for the operation's child")?;
    let end = match (status.code(), status.signal()) {
        (Some(code), _) => End::Errno(code),
        (None, Some(sig)) => End::Signal(sig),
        _ => bail!("child ended with {status}"),
    };
    Ok((end, pid))
}

/// `op` fails with EPERM inside `cg`; returns the child's pid.
fn denied_inside(cg: &Cgroup, op: &Op, what: &str) -> Result<u32> {
    let (end, pid) = run_op(Some(cg), op)?;
    ensure!(
        end == End::Errno(EPERM),
        "{what} inside the cgroup: expected EPERM, got {end:?}"
    );
    Ok(pid)
}

/// `op` succeeds inside `cg` (audit, or not covered).
fn allowed_inside(cg: &Cgroup, op: &Op, what: &str) -> Result<u32> {
    let (end, pid) = run_op(Some(cg), op)?;
    ensure!(
        end == End::Errno(0),
        "{what} inside the cgroup: expected success, got {end:?}"
    );
    Ok(pid)
}

/// Outside the cgroup the kernel decides as if the enforcer were not there: `expect` is
/// success (0) or the kernel's own error for a bogus input; never EPERM.
fn outside(op: &Op, what: &str, expect: &[i32]) -> Result<()> {
    let (end, _) = run_op(None, op)?;
    match end {
        End::Errno(e) if expect.contains(&e) => Ok(()),
        _ => bail!("{what} outside the cgroup: expected errno {expect:?}, got {end:?}"),
    }
}

/// The record of `pid`'s `subject`, checked for cgroup, policy, rule and verdict.
fn record_of<'a>(
    rs: &'a [KernelRecord],
    pid: u32,
    subject: KernelSubject,
    cg: &Cgroup,
    rule: Option<u32>,
    action: Action,
) -> Result<&'a KernelRecord> {
    let r = rs
        .iter()
        .find(|r| r.header.pid == pid && r.subject == subject)
        .with_context(|| format!("no record of {subject:?} by pid {pid} in {rs:#?}"))?;
    ensure!(
        r.header.cgroup_id == cg.id()?
            && r.header.policy_id == Some(POLICY)
            && r.header.rule_id == rule
            && r.header.action == action,
        "{r:#?}"
    );
    Ok(r)
}

fn op(o: KernelOp) -> KernelKey {
    KernelKey::Op(o.bit())
}

/// A cgroup named `name` and a loaded plan with one enforced deny rule `id` on `ops` for it.
fn deny_rule(name: &str, id: u32, ops: &[KernelOp]) -> Result<(Cgroup, Loaded, EventRing)> {
    let cg = Cgroup::create(name)?;
    let keys = ops.iter().map(|&o| op(o)).collect();
    let (loaded, ring) = load(&plan(
        &cg,
        Mode::Enforce,
        &[R(id, Action::Deny, keys)],
        None,
    )?)?;
    Ok((cg, loaded, ring))
}

/// `op` fails with EPERM inside `cg` and ends in one of `outside_ok` outside it; returns the
/// inside child's pid.
fn denied_inside_not_outside(cg: &Cgroup, op: &Op, what: &str, outside_ok: &[i32]) -> Result<u32> {
    let pid = denied_inside(cg, op, what)?;
    outside(op, what, outside_ok)?;
    Ok(pid)
}

/// The deny record of `pid`'s kernel operation `o` under rule `id` in `cg`.
fn denied_record<'a>(
    rs: &'a [KernelRecord],
    pid: u32,
    o: KernelOp,
    cg: &Cgroup,
    id: u32,
) -> Result<&'a KernelRecord> {
    record_of(rs, pid, KernelSubject::Op(o), cg, Some(id), Action::Deny)
}

fn mount_and_umount() -> Result<()> {
    let cg = Cgroup::create("kops-mount")?;
    let dir = "/tmp/kops-mnt";
    fs::create_dir_all(dir)?;
    let target = CString::new(dir)?;
    let (loaded, mut ring) = load(&plan(
        &cg,
        Mode::Enforce,
        &[R(
            1,
            Action::Deny,
            vec![op(KernelOp::Mount), op(KernelOp::Umount)],
        )],
        None,
    )?)?;
    for p in ["enf_sb_mount", "enf_move_mount", "enf_sb_umount"] {
        ensure!(loaded.attached().contains(&p), "{:?}", loaded.attached());
    }
    let mount = Op::Mount {
        target: target.clone(),
    };
    let pid = denied_inside_not_outside(&cg, &mount, "mount", &[0])?;
    // A tmpfs mounted outside cannot be unmounted inside.
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "none", dir])
        .status()?;
    ensure!(mounted.success(), "mount -t tmpfs none {dir}");
    let umount = Op::Umount { target };
    let upid = denied_inside_not_outside(&cg, &umount, "umount", &[0])?;
    let rs = kernel_records(&mut ring)?;
    let r = denied_record(&rs, pid, KernelOp::Mount, &cg, 1)?;
    ensure!(r.path == dir.as_bytes() && r.arg == 0, "{r:#?}");
    denied_record(&rs, upid, KernelOp::Umount, &cg, 1)?;
    Ok(())
}

fn ptrace_attach_and_traceme() -> Result<()> {
    let (cg, loaded, mut ring) = deny_rule("kops-ptrace", 2, &[KernelOp::Ptrace])?;
    for p in ["enf_ptrace_access_check", "enf_ptrace_traceme"] {
        ensure!(loaded.attached().contains(&p), "{:?}", loaded.attached());
    }
    let mut target = Command::new("sleep").arg("30").spawn()?;
    let tpid = target.id();
    let seize = Op::PtraceSeize {
        pid: i32::try_from(tpid)?,
    };
    let result = (|| -> Result<(u32, u32)> {
        let pid = denied_inside_not_outside(&cg, &seize, "PTRACE_SEIZE", &[0])?;
        // Reading another process's /proc files is not ptrace.
        let status = cg.run(Command::new("cat").arg(format!("/proc/{tpid}/stat")))?;
        ensure!(status.status.success(), "{status}");
        let me = denied_inside_not_outside(&cg, &Op::PtraceTraceme, "PTRACE_TRACEME", &[0])?;
        Ok((pid, me))
    })();
    let _ = target.kill();
    let _ = target.wait();
    let (pid, me) = result?;
    let rs = kernel_records(&mut ring)?;
    let r = denied_record(&rs, pid, KernelOp::Ptrace, &cg, 2)?;
    ensure!(r.arg == u64::from(tpid) && r.arg2 != 0, "{r:#?}");
    let r = denied_record(&rs, me, KernelOp::Ptrace, &cg, 2)?;
    ensure!(
        r.arg == u64::from(std::process::id()) && r.arg2 == 0,
        "{r:#?}"
    );
    Ok(())
}

/// Rule `id` denies kernel operation `kop` in a cgroup named `name`: `o` (which is that
/// operation, described by `what`) fails with EPERM inside and works outside. Returns its deny
/// record, for the caller's checks of the arguments.
fn one_op_denied(name: &str, id: u32, kop: KernelOp, o: &Op, what: &str) -> Result<KernelRecord> {
    let (cg, _loaded, mut ring) = deny_rule(name, id, &[kop])?;
    let pid = denied_inside_not_outside(&cg, o, what, &[0])?;
    let rs = kernel_records(&mut ring)?;
    denied_record(&rs, pid, kop, &cg, id).cloned()
}

fn bpf_syscall() -> Result<()> {
    let r = one_op_denied(
        "kops-bpf",
        3,
        KernelOp::Bpf,
        &Op::BpfMapCreate,
        "BPF_MAP_CREATE",
    )?;
    ensure!(r.arg == 0, "BPF_MAP_CREATE is command 0: {r:#?}");
    Ok(())
}

/// A file of garbage: the LSM hooks run before the kernel looks at the format.
fn bogus_file(path: &str) -> Result<File> {
    fs::write(path, [0x5au8; 4096])?;
    File::open(path).with_context(|| format!("opening {path}"))
}

fn module_load() -> Result<()> {
    let (cg, loaded, mut ring) = deny_rule("kops-module", 4, &[KernelOp::ModuleLoad])?;
    for p in ["enf_kernel_read_file", "enf_kernel_load_data"] {
        ensure!(loaded.attached().contains(&p), "{:?}", loaded.attached());
    }
    let path = "/tmp/kops-bogus.ko";
    let file = bogus_file(path)?;
    let finit = Op::FinitModule {
        fd: file.as_raw_fd(),
    };
    let by_file = denied_inside(&cg, &finit, "finit_module")?;
    // Outside: the kernel's own verdict on a file that is no module.
    outside(
        &finit,
        "finit_module",
        &[libc::ENOEXEC, libc::EINVAL, libc::EBADMSG],
    )?;
    let by_memory = denied_inside(&cg, &Op::InitModule, "init_module")?;
    outside(
        &Op::InitModule,
        "init_module",
        &[libc::ENOEXEC, libc::EINVAL, libc::EBADMSG],
    )?;
    let rs = kernel_records(&mut ring)?;
    let r = denied_record(&rs, by_file, KernelOp::ModuleLoad, &cg, 4)?;
    ensure!(
        r.arg == 2 && r.arg2 == 0 && r.path == path.as_bytes(),
        "READING_MODULE of the file: {r:#?}"
    );
    let r = denied_record(&rs, by_memory, KernelOp::ModuleLoad, &cg, 4)?;
    ensure!(r.arg == 2 && r.arg2 == 1, "LOADING_MODULE: {r:#?}");
    Ok(())
}

fn kexec() -> Result<()> {
    let (cg, _loaded, mut ring) = deny_rule("kops-kexec", 5, &[KernelOp::Kexec])?;
    let path = "/tmp/kops-bogus-kernel";
    let file = bogus_file(path)?;
    let by_file = Op::KexecFileLoad {
        fd: file.as_raw_fd(),
    };
    let fpid = denied_inside_not_outside(
        &cg,
        &by_file,
        "kexec_file_load",
        &[libc::ENOEXEC, libc::EINVAL],
    )?;
    let mpid = denied_inside_not_outside(&cg, &Op::KexecLoad, "kexec_load", &[0])?;
    let rs = kernel_records(&mut ring)?;
    let r = denied_record(&rs, fpid, KernelOp::Kexec, &cg, 5)?;
    ensure!(
        r.arg == 3 && r.path == path.as_bytes(),
        "READING_KEXEC_IMAGE of the file: {r:#?}"
    );
    let r = denied_record(&rs, mpid, KernelOp::Kexec, &cg, 5)?;
    ensure!(r.arg == 3 && r.arg2 == 1, "LOADING_KEXEC_IMAGE: {r:#?}");
    Ok(())
}

fn setuid_and_setgid_root() -> Result<()> {
    let (cg, _loaded, mut ring) = deny_rule(
        "kops-setuid",
        6,
        &[KernelOp::SetuidRoot, KernelOp::SetgidRoot],
    )?;
    // Dropping to 1000 (saved id 0) is allowed; taking 0 back is not.
    let upid = denied_inside_not_outside(&cg, &Op::SetuidRoot, "setuid(0)", &[0])?;
    let gpid = denied_inside_not_outside(&cg, &Op::SetgidRoot, "setgid(0)", &[0])?;
    let rs = kernel_records(&mut ring)?;
    let r = denied_record(&rs, upid, KernelOp::SetuidRoot, &cg, 6)?;
    ensure!(r.arg == 0 && r.arg2 == 1000, "{r:#?}");
    let r = denied_record(&rs, gpid, KernelOp::SetgidRoot, &cg, 6)?;
    ensure!(r.arg == 0 && r.arg2 == 1000, "{r:#?}");
    // Only the gain of root is recorded, not the drop to 1000.
    ensure!(
        rs.iter().filter(|r| r.header.pid == upid).count() == 1,
        "{rs:#?}"
    );
    Ok(())
}

fn userns_create() -> Result<()> {
    one_op_denied(
        "kops-userns",
        7,
        KernelOp::UsernsCreate,
        &Op::UnshareUser,
        "unshare(CLONE_NEWUSER)",
    )?;
    Ok(())
}

fn raw_and_packet_sockets() -> Result<()> {
    let (cg, _loaded, mut ring) = deny_rule(
        "kops-socket",
        8,
        &[KernelOp::RawSocket, KernelOp::PacketSocket],
    )?;
    let raw = Op::Socket {
        family: libc::AF_INET,
        kind: libc::SOCK_RAW,
        protocol: libc::IPPROTO_ICMP,
    };
    let raw6 = Op::Socket {
        family: libc::AF_INET6,
        kind: libc::SOCK_RAW | libc::SOCK_CLOEXEC,
        protocol: libc::IPPROTO_ICMPV6,
    };
    let packet = Op::Socket {
        family: libc::AF_PACKET,
        kind: libc::SOCK_DGRAM,
        protocol: i32::from(0x0003u16.to_be()), // ETH_P_ALL
    };
    let udp = Op::Socket {
        family: libc::AF_INET,
        kind: libc::SOCK_DGRAM,
        protocol: 0,
    };
    let rpid = denied_inside_not_outside(&cg, &raw, "socket(AF_INET, SOCK_RAW)", &[0])?;
    denied_inside(&cg, &raw6, "socket(AF_INET6, SOCK_RAW)")?;
    // AF_PACKET may be a module the guest does not have: then the kernel says so outside.
    let ppid =
        denied_inside_not_outside(&cg, &packet, "socket(AF_PACKET)", &[0, libc::EAFNOSUPPORT])?;
    allowed_inside(&cg, &udp, "socket(AF_INET, SOCK_DGRAM)")?;
    let rs = kernel_records(&mut ring)?;
    let r = denied_record(&rs, rpid, KernelOp::RawSocket, &cg, 8)?;
    ensure!(
        r.arg == 2 && r.arg2 == (1u64 << 32 | 3),
        "AF_INET, SOCK_RAW, IPPROTO_ICMP: {r:#?}"
    );
    let r = denied_record(&rs, ppid, KernelOp::PacketSocket, &cg, 8)?;
    ensure!(r.arg == 17, "AF_PACKET: {r:#?}");
    Ok(())
}

fn perf_event_open() -> Result<()> {
    let r = one_op_denied(
        "kops-perf",
        9,
        KernelOp::PerfEventOpen,
        &Op::PerfEventOpen,
        "perf_event_open",
    )?;
    ensure!(
        r.arg == 1 && r.arg2 == 0,
        "PERF_TYPE_SOFTWARE, cpu-clock: {r:#?}"
    );
    Ok(())
}

fn keyctl() -> Result<()> {
    one_op_denied("kops-keyctl", 10, KernelOp::Keyctl, &Op::AddKey, "add_key")?;
    Ok(())
}

fn hostname() -> Result<CString> {
    let name = fs::read_to_string("/proc/sys/kernel/hostname")?;
    Ok(CString::new(name.trim_end())?)
}

fn capability() -> Result<()> {
    let cg = Cgroup::create("kops-cap")?;
    let (loaded, mut ring) = load(&plan(
        &cg,
        Mode::Enforce,
        &[R(
            11,
            Action::Deny,
            vec![KernelKey::Capability(CAP_SYS_ADMIN)],
        )],
        None,
    )?)?;
    ensure!(
        loaded.attached().contains(&"enf_capable"),
        "{:?}",
        loaded.attached()
    );
    let sethostname = Op::Sethostname { name: hostname()? };
    let pid = denied_inside(&cg, &sethostname, "sethostname (CAP_SYS_ADMIN)")?;
    outside(&sethostname, "sethostname", &[0])?;
    // Another capability is not covered.
    allowed_inside(&cg, &Op::SetuidRoot, "setresuid (CAP_SETUID)")?;
    let rs = kernel_records(&mut ring)?;
    record_of(
        &rs,
        pid,
        KernelSubject::Capability(CAP_SYS_ADMIN),
        &cg,
        Some(11),
        Action::Deny,
    )?;
    ensure!(
        rs.iter()
            .all(|r| r.subject == KernelSubject::Capability(CAP_SYS_ADMIN)),
        "{rs:#?}"
    );
    Ok(())
}

fn syscall_kill_and_audit() -> Result<()> {
    let cg = Cgroup::create("kops-syscall")?;
    let (loaded, mut ring) = load(&plan(
        &cg,
        Mode::Enforce,
        &[R(12, Action::Kill, vec![KernelKey::Syscall(SYS_GETPPID)])],
        None,
    )?)?;
    ensure!(
        loaded.attached().contains(&"enf_sys_enter") && !loaded.attached().contains(&"enf_capable"),
        "{:?}",
        loaded.attached()
    );
    let (end, pid) = run_op(Some(&cg), &Op::Getppid)?;
    ensure!(
        end == End::Signal(libc::SIGKILL),
        "getppid inside: expected SIGKILL, got {end:?}"
    );
    outside(&Op::Getppid, "getppid", &[0])?;
    let rs = kernel_records(&mut ring)?;
    let r = record_of(
        &rs,
        pid,
        KernelSubject::Syscall(SYS_GETPPID),
        &cg,
        Some(12),
        Action::Kill,
    )?;
    ensure!(r.header.killed(), "{r:#?}");
    drop(loaded);

    let (_loaded, mut ring) = load(&plan(
        &cg,
        Mode::Enforce,
        &[R(13, Action::Audit, vec![KernelKey::Syscall(SYS_GETPPID)])],
        None,
    )?)?;
    let pid = allowed_inside(&cg, &Op::Getppid, "getppid (audit)")?;
    let rs = kernel_records(&mut ring)?;
    let r = record_of(
        &rs,
        pid,
        KernelSubject::Syscall(SYS_GETPPID),
        &cg,
        Some(13),
        Action::Audit,
    )?;
    ensure!(!r.header.killed(), "{r:#?}");
    Ok(())
}

fn audit_mode_allows_and_records() -> Result<()> {
    let cg = Cgroup::create("kops-audit")?;
    let (_loaded, mut ring) = load(&plan(
        &cg,
        Mode::Audit,
        &[
            R(14, Action::Deny, vec![op(KernelOp::UsernsCreate)]),
            R(15, Action::Kill, vec![KernelKey::Capability(CAP_SYS_ADMIN)]),
        ],
        None,
    )?)?;
    let upid = allowed_inside(&cg, &Op::UnshareUser, "unshare (audit mode)")?;
    let hpid = allowed_inside(
        &cg,
        &Op::Sethostname { name: hostname()? },
        "sethostname (audit mode)",
    )?;
    let rs = kernel_records(&mut ring)?;
    record_of(
        &rs,
        upid,
        KernelSubject::Op(KernelOp::UsernsCreate),
        &cg,
        Some(14),
        Action::Audit,
    )?;
    record_of(
        &rs,
        hpid,
        KernelSubject::Capability(CAP_SYS_ADMIN),
        &cg,
        Some(15),
        Action::Audit,
    )?;
    Ok(())
}

fn kill_action_on_an_operation() -> Result<()> {
    let cg = Cgroup::create("kops-kill")?;
    let (_loaded, mut ring) = load(&plan(
        &cg,
        Mode::Enforce,
        &[R(16, Action::Kill, vec![op(KernelOp::UsernsCreate)])],
        None,
    )?)?;
    let (end, pid) = run_op(Some(&cg), &Op::UnshareUser)?;
    // Denied, and SIGKILL ends the process before it can look at the error.
    ensure!(
        end == End::Signal(libc::SIGKILL),
        "unshare inside: expected SIGKILL, got {end:?}"
    );
    let rs = kernel_records(&mut ring)?;
    let r = record_of(
        &rs,
        pid,
        KernelSubject::Op(KernelOp::UsernsCreate),
        &cg,
        Some(16),
        Action::Kill,
    )?;
    ensure!(r.header.killed(), "{r:#?}");
    Ok(())
}

fn kernel_default_deny() -> Result<()> {
    let cg = Cgroup::create("kops-default")?;
    let (loaded, mut ring) = load(&plan(
        &cg,
        Mode::Enforce,
        &[R(17, Action::Allow, vec![op(KernelOp::Bpf)])],
        Some(Action::Deny),
    )?)?;
    // The default covers every operation: every operation hook, not capable or sys_enter.
    ensure!(
        loaded.attached().contains(&"enf_userns_create")
            && !loaded.attached().contains(&"enf_capable")
            && !loaded.attached().contains(&"enf_sys_enter"),
        "{:?}",
        loaded.attached()
    );
    let pid = denied_inside(&cg, &Op::UnshareUser, "unshare (default deny)")?;
    allowed_inside(&cg, &Op::BpfMapCreate, "bpf (allowed by a rule)")?;
    // Capability checks are not kernel operations: the default does not cover them.
    allowed_inside(
        &cg,
        &Op::Sethostname { name: hostname()? },
        "sethostname (default deny)",
    )?;
    let rs = kernel_records(&mut ring)?;
    let r = record_of(
        &rs,
        pid,
        KernelSubject::Op(KernelOp::UsernsCreate),
        &cg,
        None,
        Action::Deny,
    )?;
    ensure!(r.header.by_default(), "{r:#?}");
    ensure!(
        rs.len() == 1,
        "only the denied unshare is recorded: {rs:#?}"
    );
    Ok(())
}

fn only_needed_hooks_attach() -> Result<()> {
    let cg = Cgroup::create("kops-hooks")?;
    let (loaded, _ring) = load(&plan(
        &cg,
        Mode::Enforce,
        &[R(18, Action::Deny, vec![op(KernelOp::Ptrace)])],
        None,
    )?)?;
    let mut attached: Vec<&str> = loaded.attached().to_vec();
    attached.sort_unstable();
    ensure!(
        attached
            == [
                "enf_cgroup_mkdir",
                "enf_cgroup_rmdir",
                "enf_ptrace_access_check",
                "enf_ptrace_traceme"
            ],
        "{attached:?}"
    );
    ensure!(kops::ALL.count_ones() == 13);
    Ok(())
}
