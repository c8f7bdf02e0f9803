//! Decoding of ring-buffer records into typed events. Records come from the
//! kernel, but a decoder that trusts its input is one bad ABI bump away from
//! a crash: every length and enum is checked, and a malformed record is an
//! error the caller counts and skips.

use crate::abi::{
    self, EventHeader, ExecEvent, FileEvent, NetEvent, ProcExecEvent, ProcExitEvent, ProcForkEvent,
};
pub use crate::path_events::PathRecord;
use crate::plan::Action;
use core::mem::{offset_of, size_of};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What the kernel decided, as the first (`file_open`-only) API reports it:
/// a kill is reported as `Deny`. [`decode_record`] has the full picture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Allow,
    Deny,
    Audit,
}

/// The fields every record carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Common {
    pub verdict: Verdict,
    /// Nanoseconds since boot (CLOCK_BOOTTIME).
    pub ktime_ns: u64,
    pub cgroup_id: u64,
    pub pid: u32,
    pub tid: u32,
    pub uid: u32,
    pub gid: u32,
    pub rule_id: u32,
    pub flags: u32,
    pub comm: String,
}

/// A `file_open` verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileOpenEvent {
    pub common: Common,
    pub f_flags: u32,
    pub f_mode: u32,
    /// The resolved path as the kernel saw it: bytes, since Linux paths need
    /// not be UTF-8. Empty when the path could not be resolved.
    pub path: Vec<u8>,
}

/// `pub fn name(&self) -> bool` for each bit of a flags field, so that
/// every record type reads its flags the same way.
macro_rules! flag_accessors {
    ($outer:ident . $field:ident : $($(#[$doc:meta])* $name:ident => $bit:path;)+) => {
        $(
            $(#[$doc])*
            pub fn $name(&self) -> bool {
                self.$outer.$field & $bit != 0
            }
        )+
    };
    ($field:ident : $($(#[$doc:meta])* $name:ident => $bit:path;)+) => {
        $(
            $(#[$doc])*
            pub fn $name(&self) -> bool {
                self.$field & $bit != 0
            }
        )+
    };
}

impl FileOpenEvent {
    flag_accessors!(common.flags:
        /// The path could not be resolved completely, and the open was decided
        /// without it (fail closed).
        path_unresolved => abi::FLAG_PATH_UNRESOLVED;
    );
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelEvent {
    FileOpen(FileOpenEvent),
}

impl KernelEvent {
    pub fn common(&self) -> &Common {
        match self {
            KernelEvent::FileOpen(e) => &e.common,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {len} bytes is shorter than the {need} bytes of its fixed part")]
    Short { len: usize, need: usize },
    #[error("record has abi version {found}, this enforcer speaks version {expected}")]
    AbiVersion { found: u32, expected: u32 },
    #[error("record has unknown event kind {0}")]
    UnknownKind(u16),
    #[error("record has unknown verdict {0}")]
    UnknownVerdict(u16),
    #[error("record says its path has {claimed} bytes but carries {present}")]
    PathLength { claimed: usize, present: usize },
    #[error("network record of {len} bytes; it has {expected}")]
    NetLength { len: usize, expected: usize },
    #[error("network record has address family {0}")]
    NetFamily(u16),
    #[error("network record has operation bits {0:#x}")]
    NetOp(u32),
    #[error("process {what} record of {len} bytes; it has {expected}")]
    ProcLength {
        what: &'static str,
        len: usize,
        expected: usize,
    },
    #[error(
        "process exec record says it has {path} path, {args} argv and {cwd} cwd bytes but \
         carries {present}"
    )]
    ProcExecLength {
        path: usize,
        args: usize,
        cwd: usize,
        present: usize,
    },
    #[error("path record has operation bits {0:#x}")]
    PathOp(u32),
    #[error(
        "kernel record is about {what}/{id}, which is no operation, capability or system call"
    )]
    KernelSubject { what: u32, id: u32 },
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(&b[off..off + 2]);
    u16::from_ne_bytes(a)
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_ne_bytes(a)
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_ne_bytes(a)
}

/// The fields every record carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// What was done: `Allow` is never reported, `Audit` was allowed.
    pub action: Action,
    /// Nanoseconds since boot (CLOCK_BOOTTIME).
    pub ktime_ns: u64,
    pub cgroup_id: u64,
    pub pid: u32,
    pub tid: u32,
    pub uid: u32,
    pub gid: u32,
    /// The deciding rule; `None` when a policy's default posture decided or
    /// a path that could not be resolved failed closed.
    pub rule_id: Option<u32>,
    /// The deciding policy.
    pub policy_id: Option<u32>,
    pub flags: u32,
    pub comm: String,
    /// Records of the same (cgroup, policy, rule) the kernel's rate limit
    /// did not send since the last one sent (0 for process records).
    pub suppressed: u32,
}

impl Header {
    flag_accessors!(flags:
        /// The path could not be resolved, and the operation was decided without
        /// it (fail closed).
        path_unresolved => abi::FLAG_PATH_UNRESOLVED;
        /// A rule with `from`/`except_from` applied to a task whose executable
        /// was unknown (it ran before the plan loaded and was not backfilled, or
        /// its path did not resolve at exec): the rule failed closed.
        binary_unknown => abi::FLAG_BINARY_UNKNOWN;
        /// The policy's default posture decided.
        by_default => abi::FLAG_DEFAULT;
        /// SIGKILL was sent to the process.
        killed => abi::FLAG_KILLED;
        /// Decided by the exec fallback of a kernel without BPF LSM: the exec
        /// succeeded at the system call, and the process was killed before its
        /// first instruction (when [`Header::killed`]).
        exec_fallback => abi::FLAG_EXEC_FALLBACK;
        /// The executable was a memfd (an unlinked file on the kernel's internal
        /// mount): the exec matcher was walked with the path `/memfd:`.
        memfd => abi::FLAG_MEMFD;
    );
}

/// A `file_open` decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRecord {
    pub header: Header,
    pub f_flags: u32,
    pub f_mode: u32,
    /// `plan::ops` bits the open asked for.
    pub access: u32,
    /// The resolved path (bytes: Linux paths need not be UTF-8); empty when
    /// it could not be resolved.
    pub path: Vec<u8>,
}

/// A `bprm_check_security` (exec) decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecRecord {
    pub header: Header,
    /// The resolved path of the file executed (or of a script's interpreter).
    pub path: Vec<u8>,
}

/// A network operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetOp {
    Connect,
    Bind,
    Listen,
    Send,
}

impl NetOp {
    pub fn name(self) -> &'static str {
        match self {
            NetOp::Connect => "connect",
            NetOp::Bind => "bind",
            NetOp::Listen => "listen",
            NetOp::Send => "send",
        }
    }
}

/// A network decision (connect, bind, listen or UDP send).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetRecord {
    pub header: Header,
    pub op: NetOp,
    /// The address as decided: an IPv4-mapped IPv6 address is reported as
    /// IPv4 ([`NetRecord::v4_mapped`] says so). The remote address for
    /// connect and send, the local one for bind and listen.
    pub addr: IpAddr,
    /// Host byte order (0 for a listen on a socket not bound yet).
    pub port: u16,
    /// IPPROTO_* of the socket (6 TCP, 17 UDP, ...).
    pub protocol: u16,
}

impl NetRecord {
    flag_accessors!(header.flags:
        /// The operation gave an IPv4-mapped IPv6 address.
        v4_mapped => abi::FLAG_V4_MAPPED;
        /// A cgroup socket program (no BPF LSM) decided, not an LSM hook.
        by_cgroup_hook => abi::FLAG_CGROUP_HOOK;
    );
}

/// A process exec'd (`tp_btf/sched_process_exec`): not a verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcExecRecord {
    /// The task after the exec; `ktime_ns` is the exec time.
    pub header: Header,
    /// `task->start_boottime`: when the process started, ns since boot.
    pub start_ns: u64,
    /// The policy slots of the task's cgroup (bit i: the plan's i-th policy).
    pub slots: u64,
    /// The real parent's process id.
    pub ppid: u32,
    /// The file name given to execve: relative when the caller gave a
    /// relative one; empty when it could not be read.
    pub filename: Vec<u8>,
    /// argv in `/proc/<pid>/cmdline` form (each argument NUL-terminated).
    pub argv: Vec<u8>,
    /// The working directory at the exec (absolute); `None` when the kernel
    /// could not resolve it.
    pub cwd: Option<Vec<u8>>,
    /// `abi::PROC_*` flags.
    pub proc_flags: u32,
}

impl ProcExecRecord {
    flag_accessors!(proc_flags:
        /// argv was longer than the record carries and is cut.
        argv_truncated => abi::PROC_ARGS_TRUNCATED;
        /// argv could not be read (the record has none).
        argv_unread => abi::PROC_ARGS_UNREAD;
    );
}

/// A new process (`tp_btf/sched_process_fork`); threads are not reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcForkRecord {
    /// The parent task, but `cgroup_id` is the child's.
    pub header: Header,
    pub parent_pid: u32,
    pub child_pid: u32,
    /// The child's `start_boottime`, ns since boot.
    pub child_start_ns: u64,
}

/// A process ended: its last thread exited (`tp_btf/sched_process_exit`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcExitRecord {
    /// `pid` is the process id; `ktime_ns` the exit time.
    pub header: Header,
    /// Wait status: `(status << 8) | signal`.
    pub exit_code: u32,
}

/// One decoded ring-buffer record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    FileOpen(FileRecord),
    Exec(ExecRecord),
    Net(NetRecord),
    ProcExec(ProcExecRecord),
    ProcFork(ProcForkRecord),
    ProcExit(ProcExitRecord),
    /// A path or mmap hook: create, delete, rename, link, chmod, chown,
    /// truncate, mmap_exec.
    Path(PathRecord),
    Kernel(KernelRecord),
}

impl Record {
    pub fn header(&self) -> &Header {
        match self {
            Record::FileOpen(r) => &r.header,
            Record::Exec(r) => &r.header,
            Record::Net(r) => &r.header,
            Record::ProcExec(r) => &r.header,
            Record::ProcFork(r) => &r.header,
            Record::ProcExit(r) => &r.header,
            Record::Path(r) => &r.header,
            Record::Kernel(r) => &r.header,
        }
    }

    /// A process record (exec, fork, exit) rather than a verdict.
    pub fn is_process(&self) -> bool {
        matches!(
            self,
            Record::ProcExec(_) | Record::ProcFork(_) | Record::ProcExit(_)
        )
    }
}

/// A privileged kernel operation, with policy-lang's `KernelOp` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KernelOp {
    Mount,
    Umount,
    Ptrace,
    Bpf,
    ModuleLoad,
    Kexec,
    SetuidRoot,
    SetgidRoot,
    UsernsCreate,
    RawSocket,
    PacketSocket,
    PerfEventOpen,
    Keyctl,
}

impl KernelOp {
    /// In bit order (`kernel_ops::kops`).
    pub const ALL: [KernelOp; 13] = [
        KernelOp::Mount,
        KernelOp::Umount,
        KernelOp::Ptrace,
        KernelOp::Bpf,
        KernelOp::ModuleLoad,
        KernelOp::Kexec,
        KernelOp::SetuidRoot,
        KernelOp::SetgidRoot,
        KernelOp::UsernsCreate,
        KernelOp::RawSocket,
        KernelOp::PacketSocket,
        KernelOp::PerfEventOpen,
        KernelOp::Keyctl,
    ];

    pub fn name(self) -> &'static str {
        match self {
            KernelOp::Mount => "mount",
            KernelOp::Umount => "umount",
            KernelOp::Ptrace => "ptrace",
            KernelOp::Bpf => "bpf",
            KernelOp::ModuleLoad => "module_load",
            KernelOp::Kexec => "kexec",
            KernelOp::SetuidRoot => "setuid_root",
            KernelOp::SetgidRoot => "setgid_root",
            KernelOp::UsernsCreate => "userns_create",
            KernelOp::RawSocket => "raw_socket",
            KernelOp::PacketSocket => "packet_socket",
            KernelOp::PerfEventOpen => "perf_event_open",
            KernelOp::Keyctl => "keyctl",
        }
    }

    /// Its `kernel_ops::kops` bit.
    pub fn bit(self) -> u32 {
        1 << (self as u32)
    }

    /// The operation of one `kops` bit.
    pub fn from_bit(bit: u32) -> Option<KernelOp> {
        KernelOp::ALL.iter().copied().find(|op| op.bit() == bit)
    }
}

/// What a kernel-class record is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelSubject {
    Op(KernelOp),
    /// A capability check, by number (`CAP_SYS_ADMIN` is 21).
    Capability(u32),
    /// A system call at entry, by x86_64 number.
    Syscall(u32),
    /// Self-protection refused an operation on the enforcer itself.
    SelfProtection(GuardOp),
}

/// What self-protection refused (`ENF_GUARD_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GuardOp {
    /// A signal to the enforcer (`arg`: its pid, `arg2`: the signal).
    Signal,
    /// A ptrace attach to the enforcer (`arg`: its pid, `arg2`: the mode bits).
    Ptrace,
    /// A bpf() command reaching objects by pin or id (`arg`: the command).
    Bpf,
}

impl GuardOp {
    pub fn name(self) -> &'static str {
        match self {
            GuardOp::Signal => "kill",
            GuardOp::Ptrace => "ptrace",
            GuardOp::Bpf => "bpf",
        }
    }

    fn from_id(id: u32) -> Option<GuardOp> {
        match id {
            abi::GUARD_SIGNAL => Some(GuardOp::Signal),
            abi::GUARD_PTRACE => Some(GuardOp::Ptrace),
            abi::GUARD_BPF => Some(GuardOp::Bpf),
            _ => None,
        }
    }
}

/// A kernel-class decision. What `arg` and `arg2` hold depends on the
/// operation (`enf_kernel_event` in abi.h): the tracee's pid for `ptrace`, the
/// address family and type for sockets, the read id for `module_load` and
/// `kexec`, the new and old effective id for `setuid_root`/`setgid_root`, the
/// command for `bpf`, ...
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelRecord {
    pub header: Header,
    pub subject: KernelSubject,
    pub arg: u64,
    pub arg2: u64,
    /// The file (`module_load`, `kexec` by file) or mount point (`mount`);
    /// empty when the operation has none or it could not be resolved.
    pub path: Vec<u8>,
}

fn decode_header(b: &[u8]) -> Result<(u16, Header), DecodeError> {
    let need = size_of::<EventHeader>();
    if b.len() < need {
        return Err(DecodeError::Short { len: b.len(), need });
    }
    let version = u32_at(b, offset_of!(EventHeader, abi_version));
    if version != abi::ABI_VERSION {
        return Err(DecodeError::AbiVersion {
            found: version,
            expected: abi::ABI_VERSION,
        });
    }
    let action = match u16_at(b, offset_of!(EventHeader, verdict)) {
        abi::VERDICT_ALLOW => Action::Allow,
        abi::VERDICT_DENY => Action::Deny,
        abi::VERDICT_AUDIT => Action::Audit,
        abi::VERDICT_KILL => Action::Kill,
        other => return Err(DecodeError::UnknownVerdict(other)),
    };
    let comm_off = offset_of!(EventHeader, comm);
    let comm_bytes = &b[comm_off..comm_off + abi::COMM_LEN];
    let comm_end = comm_bytes
        .iter()
        .position(|&c| c == 0)
        .unwrap_or(abi::COMM_LEN);
    let rule_id = u32_at(b, offset_of!(EventHeader, rule_id));
    let policy_id = u32_at(b, offset_of!(EventHeader, policy_id));
    let header = Header {
        action,
        ktime_ns: u64_at(b, offset_of!(EventHeader, ktime_ns)),
        cgroup_id: u64_at(b, offset_of!(EventHeader, cgroup_id)),
        pid: u32_at(b, offset_of!(EventHeader, pid)),
        tid: u32_at(b, offset_of!(EventHeader, tid)),
        uid: u32_at(b, offset_of!(EventHeader, uid)),
        gid: u32_at(b, offset_of!(EventHeader, gid)),
        rule_id: (rule_id != abi::RULE_NONE).then_some(rule_id),
        policy_id: (policy_id != abi::POLICY_NONE).then_some(policy_id),
        flags: u32_at(b, offset_of!(EventHeader, flags)),
        comm: String::from_utf8_lossy(&comm_bytes[..comm_end]).into_owned(),
        suppressed: u32_at(b, offset_of!(EventHeader, suppressed)),
    };
    Ok((u16_at(b, offset_of!(EventHeader, kind)), header))
}

/// The path of a record whose fixed part is `fixed` bytes and whose path
/// length field is at `len_off`.
fn path_of(record: &[u8], fixed: usize, len_off: usize) -> Result<Vec<u8>, DecodeError> {
    if record.len() < fixed {
        return Err(DecodeError::Short {
            len: record.len(),
            need: fixed,
        });
    }
    let claimed = u32_at(record, len_off) as usize;
    let present = record.len() - fixed;
    if claimed > present || claimed >= abi::PATH_MAX {
        return Err(DecodeError::PathLength { claimed, present });
    }
    Ok(record[fixed..fixed + claimed].to_vec())
}

/// Decodes one ring-buffer record.
pub fn decode_record(record: &[u8]) -> Result<Record, DecodeError> {
    let (kind, header) = decode_header(record)?;
    match kind {
        abi::EVENT_FILE_OPEN => {
            let path = path_of(
                record,
                abi::FILE_EVENT_PATH_OFFSET,
                offset_of!(FileEvent, path_len),
            )?;
            Ok(Record::FileOpen(FileRecord {
                header,
                f_flags: u32_at(record, offset_of!(FileEvent, f_flags)),
                f_mode: u32_at(record, offset_of!(FileEvent, f_mode)),
                access: u32_at(record, offset_of!(FileEvent, access)),
                path,
            }))
        }
        abi::EVENT_EXEC => {
            let path = path_of(
                record,
                abi::EXEC_EVENT_PATH_OFFSET,
                offset_of!(ExecEvent, path_len),
            )?;
            Ok(Record::Exec(ExecRecord { header, path }))
        }
        abi::EVENT_NET => decode_net(record, header).map(Record::Net),
        abi::EVENT_PROC_EXEC => decode_proc_exec(record, header).map(Record::ProcExec),
        abi::EVENT_PROC_FORK => {
            exact_len(record, "fork", size_of::<ProcForkEvent>())?;
            Ok(Record::ProcFork(ProcForkRecord {
                header,
                parent_pid: u32_at(record, offset_of!(ProcForkEvent, parent_pid)),
                child_pid: u32_at(record, offset_of!(ProcForkEvent, child_pid)),
                child_start_ns: u64_at(record, offset_of!(ProcForkEvent, child_start_ns)),
            }))
        }
        abi::EVENT_PROC_EXIT => {
            exact_len(record, "exit", size_of::<ProcExitEvent>())?;
            Ok(Record::ProcExit(ProcExitRecord {
                header,
                exit_code: u32_at(record, offset_of!(ProcExitEvent, exit_code)),
            }))
        }
        abi::EVENT_PATH => crate::path_events::decode_path(record, header).map(Record::Path),
        abi::EVENT_KERNEL => decode_kernel(record, header).map(Record::Kernel),
        other => Err(DecodeError::UnknownKind(other)),
    }
}

fn exact_len(record: &[u8], what: &'static str, expected: usize) -> Result<(), DecodeError> {
    if record.len() != expected {
        return Err(DecodeError::ProcLength {
            what,
            len: record.len(),
            expected,
        });
    }
    Ok(())
}

fn decode_proc_exec(record: &[u8], header: Header) -> Result<ProcExecRecord, DecodeError> {
    let fixed = abi::PROC_EXEC_DATA_OFFSET;
    if record.len() < fixed {
        return Err(DecodeError::Short {
            len: record.len(),
            need: fixed,
        });
    }
    let path = u32_at(record, offset_of!(ProcExecEvent, path_len)) as usize;
    let args = u32_at(record, offset_of!(ProcExecEvent, args_len)) as usize;
    let cwd = u32_at(record, offset_of!(ProcExecEvent, cwd_len)) as usize;
    let flags = u32_at(record, offset_of!(ProcExecEvent, proc_flags));
    let present = record.len() - fixed;
    // A resolved cwd is absolute; an unresolved one has no bytes.
    let unresolved = flags & abi::PROC_CWD_UNRESOLVED != 0;
    if path >= abi::PATH_MAX
        || args >= abi::ARGS_MAX
        || cwd >= abi::PATH_MAX
        || path + args + cwd != present
        || unresolved != (cwd == 0)
        || (cwd > 0 && record[fixed + path + args] != b'/')
    {
        return Err(DecodeError::ProcExecLength {
            path,
            args,
            cwd,
            present,
        });
    }
    let data = &record[fixed..];
    Ok(ProcExecRecord {
        header,
        start_ns: u64_at(record, offset_of!(ProcExecEvent, start_ns)),
        slots: u64_at(record, offset_of!(ProcExecEvent, slots)),
        ppid: u32_at(record, offset_of!(ProcExecEvent, ppid)),
        filename: data[..path].to_vec(),
        argv: data[path..path + args].to_vec(),
        cwd: (cwd > 0).then(|| data[path + args..].to_vec()),
        proc_flags: flags,
    })
}

fn decode_kernel(record: &[u8], header: Header) -> Result<KernelRecord, DecodeError> {
    use abi::KernelOpEvent as K;
    let path = path_of(
        record,
        abi::KERNEL_EVENT_PATH_OFFSET,
        offset_of!(K, path_len),
    )?;
    let what = u32_at(record, offset_of!(K, what));
    let id = u32_at(record, offset_of!(K, id));
    let subject = match what {
        abi::KERNEL_OP => KernelOp::from_bit(id).map(KernelSubject::Op),
        abi::KERNEL_CAPABILITY => Some(KernelSubject::Capability(id)),
        abi::KERNEL_SYSCALL => Some(KernelSubject::Syscall(id)),
        abi::KERNEL_GUARD => GuardOp::from_id(id).map(KernelSubject::SelfProtection),
        _ => None,
    }
    .ok_or(DecodeError::KernelSubject { what, id })?;
    Ok(KernelRecord {
        header,
        subject,
        arg: u64_at(record, offset_of!(K, arg)),
        arg2: u64_at(record, offset_of!(K, arg2)),
        path,
    })
}

fn decode_net(record: &[u8], header: Header) -> Result<NetRecord, DecodeError> {
    let expected = size_of::<NetEvent>();
    if record.len() != expected {
        return Err(DecodeError::NetLength {
            len: record.len(),
            expected,
        });
    }
    let op = match u32_at(record, offset_of!(NetEvent, op)) {
        abi::NET_CONNECT => NetOp::Connect,
        abi::NET_BIND => NetOp::Bind,
        abi::NET_LISTEN => NetOp::Listen,
        abi::NET_SEND => NetOp::Send,
        other => return Err(DecodeError::NetOp(other)),
    };
    let off = offset_of!(NetEvent, addr);
    let mut a = [0u8; 16];
    a.copy_from_slice(&record[off..off + 16]);
    let addr = match u16_at(record, offset_of!(NetEvent, family)) {
        abi::AF_INET => IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])),
        abi::AF_INET6 => IpAddr::V6(Ipv6Addr::from(a)),
        other => return Err(DecodeError::NetFamily(other)),
    };
    Ok(NetRecord {
        header,
        op,
        addr,
        port: u16_at(record, offset_of!(NetEvent, port)),
        protocol: u16_at(record, offset_of!(NetEvent, protocol)),
    })
}

/// Decodes one ring-buffer record for the first, `file_open`-only API
/// ([`KernelEvent`]). An exec record is an `UnknownKind` error here: only
/// [`decode_record`] knows it; a kill is reported as `Deny`.
pub fn decode(record: &[u8]) -> Result<KernelEvent, DecodeError> {
    match decode_record(record)? {
        Record::FileOpen(f) => {
            let h = f.header;
            Ok(KernelEvent::FileOpen(FileOpenEvent {
                common: Common {
                    verdict: match h.action {
                        Action::Allow => Verdict::Allow,
                        Action::Audit => Verdict::Audit,
                        Action::Deny | Action::Kill => Verdict::Deny,
                    },
                    ktime_ns: h.ktime_ns,
                    cgroup_id: h.cgroup_id,
                    pid: h.pid,
                    tid: h.tid,
                    uid: h.uid,
                    gid: h.gid,
                    rule_id: h.rule_id.unwrap_or(abi::RULE_NONE),
                    flags: h.flags,
                    comm: h.comm,
                },
                f_flags: f.f_flags,
                f_mode: f.f_mode,
                path: f.path,
            }))
        }
        Record::Exec(_) => Err(DecodeError::UnknownKind(abi::EVENT_EXEC)),
        Record::Net(_) => Err(DecodeError::UnknownKind(abi::EVENT_NET)),
        Record::ProcExec(_) => Err(DecodeError::UnknownKind(abi::EVENT_PROC_EXEC)),
        Record::ProcFork(_) => Err(DecodeError::UnknownKind(abi::EVENT_PROC_FORK)),
        Record::ProcExit(_) => Err(DecodeError::UnknownKind(abi::EVENT_PROC_EXIT)),
        Record::Path(_) => Err(DecodeError::UnknownKind(abi::EVENT_PATH)),
        Record::Kernel(_) => Err(DecodeError::UnknownKind(abi::EVENT_KERNEL)),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a file record the way the kernel lays it out.
    pub(crate) fn file_record(verdict: u16, path: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; abi::FILE_EVENT_PATH_OFFSET];
        let put32 =
            |b: &mut Vec<u8>, off: usize, v: u32| b[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        put32(
            &mut b,
            offset_of!(EventHeader, abi_version),
            abi::ABI_VERSION,
        );
        b[offset_of!(EventHeader, kind)..][..2]
            .copy_from_slice(&abi::EVENT_FILE_OPEN.to_ne_bytes());
        b[offset_of!(EventHeader, verdict)..][..2].copy_from_slice(&verdict.to_ne_bytes());
        b[offset_of!(EventHeader, ktime_ns)..][..8].copy_from_slice(&123u64.to_ne_bytes());
        b[offset_of!(EventHeader, cgroup_id)..][..8].copy_from_slice(&4242u64.to_ne_bytes());
        put32(&mut b, offset_of!(EventHeader, pid), 77);
        put32(&mut b, offset_of!(EventHeader, tid), 78);
        put32(&mut b, offset_of!(EventHeader, rule_id), 5);
        b[offset_of!(EventHeader, comm)..][..3].copy_from_slice(b"cat");
        put32(&mut b, offset_of!(FileEvent, f_flags), 0o100);
        put32(&mut b, offset_of!(FileEvent, path_len), path.len() as u32);
        b.extend_from_slice(path);
        b
    }

    #[test]
    fn decodes_a_file_open_deny() {
        let ev = decode(&file_record(abi::VERDICT_DENY, b"/etc/shadow")).unwrap();
        let KernelEvent::FileOpen(f) = ev;
        assert_eq!(f.common.verdict, Verdict::Deny);
        assert_eq!(f.common.pid, 77);
        assert_eq!(f.common.tid, 78);
        assert_eq!(f.common.cgroup_id, 4242);
        assert_eq!(f.common.rule_id, 5);
        assert_eq!(f.common.comm, "cat");
        assert_eq!(f.f_flags, 0o100);
        assert_eq!(f.path, b"/etc/shadow");
        assert!(!f.path_unresolved());
    }

    #[test]
    fn keeps_non_utf8_paths_as_bytes() {
        let ev = decode(&file_record(abi::VERDICT_AUDIT, b"/tmp/\xff\xfe")).unwrap();
        let KernelEvent::FileOpen(f) = ev;
        assert_eq!(f.path, b"/tmp/\xff\xfe");
    }

    #[test]
    fn rejects_truncated_and_inconsistent_records() {
        let good = file_record(abi::VERDICT_DENY, b"/etc/shadow");
        for len in 0..abi::FILE_EVENT_PATH_OFFSET {
            assert!(
                matches!(decode(&good[..len]), Err(DecodeError::Short { .. })),
                "len {len}"
            );
        }
        // Claims more path bytes than the record carries.
        let short = &good[..good.len() - 1];
        assert!(matches!(decode(short), Err(DecodeError::PathLength { .. })));
    }

    #[test]
    fn rejects_unknown_versions_kinds_and_verdicts() {
        let mut r = file_record(abi::VERDICT_DENY, b"/x");
        r[offset_of!(EventHeader, verdict)] = 9;
        assert_eq!(decode(&r), Err(DecodeError::UnknownVerdict(9)));
        let mut r = file_record(abi::VERDICT_DENY, b"/x");
        r[offset_of!(EventHeader, kind)] = 99;
        assert_eq!(decode(&r), Err(DecodeError::UnknownKind(99)));
        let mut r = file_record(abi::VERDICT_DENY, b"/x");
        r[offset_of!(EventHeader, abi_version)] = 0;
        assert!(matches!(decode(&r), Err(DecodeError::AbiVersion { .. })));
    }

    /// Builds an exec record the way the kernel lays it out.
    fn exec_record(verdict: u16, rule_id: u32, flags: u32, path: &[u8]) -> Vec<u8> {
        let mut b = file_record(verdict, b"");
        b.truncate(abi::EXEC_EVENT_PATH_OFFSET);
        b[offset_of!(EventHeader, kind)..][..2].copy_from_slice(&abi::EVENT_EXEC.to_ne_bytes());
        b[offset_of!(EventHeader, rule_id)..][..4].copy_from_slice(&rule_id.to_ne_bytes());
        b[offset_of!(EventHeader, flags)..][..4].copy_from_slice(&flags.to_ne_bytes());
        b[offset_of!(EventHeader, policy_id)..][..4].copy_from_slice(&3u32.to_ne_bytes());
        b[offset_of!(ExecEvent, path_len)..][..4]
            .copy_from_slice(&(path.len() as u32).to_ne_bytes());
        b.extend_from_slice(path);
        b
    }

    #[test]
    fn decodes_an_exec_kill_with_its_rule_and_policy() {
        let r = exec_record(abi::VERDICT_KILL, 12, abi::FLAG_KILLED, b"/usr/bin/nc");
        let Record::Exec(e) = decode_record(&r).unwrap() else {
            panic!("not an exec record")
        };
        assert_eq!(e.header.action, Action::Kill);
        assert_eq!(e.header.rule_id, Some(12));
        assert_eq!(e.header.policy_id, Some(3));
        assert!(e.header.killed() && !e.header.by_default() && !e.header.path_unresolved());
        assert_eq!(e.path, b"/usr/bin/nc");
        // The file-only API does not know exec records.
        assert_eq!(decode(&r), Err(DecodeError::UnknownKind(abi::EVENT_EXEC)));
    }

    #[test]
    fn a_default_decision_has_no_rule() {
        let r = exec_record(
            abi::VERDICT_DENY,
            abi::RULE_NONE,
            abi::FLAG_DEFAULT,
            b"/bin/x",
        );
        let rec = decode_record(&r).unwrap();
        assert_eq!(rec.header().rule_id, None);
        assert!(rec.header().by_default());
    }

    #[test]
    fn decodes_file_records_with_access_and_kill() {
        let mut r = file_record(abi::VERDICT_KILL, b"/etc/shadow");
        r[offset_of!(FileEvent, access)..][..4].copy_from_slice(&abi::OP_READ.to_ne_bytes());
        let Record::FileOpen(f) = decode_record(&r).unwrap() else {
            panic!("not a file record")
        };
        assert_eq!(f.header.action, Action::Kill);
        assert_eq!(f.access, abi::OP_READ);
        assert_eq!(f.header.policy_id, Some(0));
        // The first API reports the kill as a deny.
        let KernelEvent::FileOpen(old) = decode(&r).unwrap();
        assert_eq!(old.common.verdict, Verdict::Deny);
    }

    #[test]
    fn rejects_malformed_exec_records() {
        let good = exec_record(abi::VERDICT_DENY, 1, 0, b"/bin/sh");
        for len in 0..abi::EXEC_EVENT_PATH_OFFSET {
            assert!(
                matches!(decode_record(&good[..len]), Err(DecodeError::Short { .. })),
                "len {len}"
            );
        }
        assert!(matches!(
            decode_record(&good[..good.len() - 1]),
            Err(DecodeError::PathLength { .. })
        ));
        // A length beyond PATH_MAX is rejected even if the bytes are there.
        let mut huge = exec_record(abi::VERDICT_DENY, 1, 0, &[b'a'; abi::PATH_MAX]);
        assert!(matches!(
            decode_record(&huge),
            Err(DecodeError::PathLength { .. })
        ));
        huge[offset_of!(ExecEvent, path_len)..][..4].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert!(matches!(
            decode_record(&huge),
            Err(DecodeError::PathLength { .. })
        ));
        let mut r = good.clone();
        r[offset_of!(EventHeader, verdict)] = 4;
        assert_eq!(decode_record(&r), Err(DecodeError::UnknownVerdict(4)));
    }

    #[test]
    fn exec_records_never_panic_on_arbitrary_bytes() {
        let good = exec_record(abi::VERDICT_DENY, 1, 0, b"/usr/bin/true");
        let mut seed = 0x9e37_79b9u32;
        for _ in 0..20_000 {
            let mut r = good.clone();
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let i = seed as usize % r.len();
            r[i] = (seed >> 8) as u8;
            let cut = (seed >> 16) as usize % (r.len() + 1);
            let _ = decode_record(&r[..cut]);
        }
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        // A cheap deterministic sweep; the fuzz target goes further.
        let good = file_record(abi::VERDICT_DENY, b"/etc/shadow");
        let mut seed = 0x1234_5678u32;
        for _ in 0..20_000 {
            let mut r = good.clone();
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let i = seed as usize % r.len();
            r[i] = (seed >> 8) as u8;
            let cut = (seed >> 16) as usize % (r.len() + 1);
            let _ = decode(&r[..cut]);
        }
    }

    /// Builds a network record the way the kernel lays it out.
    fn net_record(verdict: u16, op: u32, family: u16, addr: &[u8], port: u16) -> Vec<u8> {
        let mut b = file_record(verdict, b"");
        b.truncate(size_of::<EventHeader>());
        b.resize(size_of::<NetEvent>(), 0);
        b[offset_of!(EventHeader, kind)..][..2].copy_from_slice(&abi::EVENT_NET.to_ne_bytes());
        b[offset_of!(EventHeader, flags)..][..4]
            .copy_from_slice(&(abi::FLAG_V4_MAPPED | abi::FLAG_CGROUP_HOOK).to_ne_bytes());
        b[offset_of!(NetEvent, op)..][..4].copy_from_slice(&op.to_ne_bytes());
        b[offset_of!(NetEvent, family)..][..2].copy_from_slice(&family.to_ne_bytes());
        b[offset_of!(NetEvent, protocol)..][..2].copy_from_slice(&6u16.to_ne_bytes());
        b[offset_of!(NetEvent, port)..][..2].copy_from_slice(&port.to_ne_bytes());
        b[offset_of!(NetEvent, addr)..][..addr.len()].copy_from_slice(addr);
        b
    }

    #[test]
    fn decodes_network_records() {
        let r = net_record(
            abi::VERDICT_DENY,
            abi::NET_CONNECT,
            abi::AF_INET,
            &[127, 0, 0, 2],
            9,
        );
        let Record::Net(n) = decode_record(&r).unwrap() else {
            panic!("not a network record")
        };
        assert_eq!(n.op, NetOp::Connect);
        assert_eq!(n.addr, "127.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!((n.port, n.protocol), (9, 6));
        assert_eq!(n.header.action, Action::Deny);
        assert_eq!(n.header.rule_id, Some(5));
        assert!(n.v4_mapped() && n.by_cgroup_hook());
        let six: Ipv6Addr = "fd00::1".parse().unwrap();
        let r = net_record(
            abi::VERDICT_AUDIT,
            abi::NET_LISTEN,
            abi::AF_INET6,
            &six.octets(),
            0,
        );
        let Record::Net(n) = decode_record(&r).unwrap() else {
            panic!("not a network record")
        };
        assert_eq!((n.op, n.addr, n.port), (NetOp::Listen, IpAddr::V6(six), 0));
        assert_eq!(n.header.action, Action::Audit);
        // The first API does not know network records.
        assert_eq!(decode(&r), Err(DecodeError::UnknownKind(abi::EVENT_NET)));
    }

    #[test]
    fn rejects_malformed_network_records() {
        let good = net_record(
            abi::VERDICT_DENY,
            abi::NET_BIND,
            abi::AF_INET,
            &[10, 0, 0, 1],
            22,
        );
        assert!(decode_record(&good).is_ok());
        for len in 0..size_of::<EventHeader>() {
            assert!(matches!(
                decode_record(&good[..len]),
                Err(DecodeError::Short { .. })
            ));
        }
        for len in size_of::<EventHeader>()..good.len() {
            assert!(matches!(
                decode_record(&good[..len]),
                Err(DecodeError::NetLength { .. })
            ));
        }
        let mut long = good.clone();
        long.push(0);
        assert!(matches!(
            decode_record(&long),
            Err(DecodeError::NetLength { .. })
        ));
        for op in [0, 3, 1 << 4, u32::MAX] {
            let r = net_record(abi::VERDICT_DENY, op, abi::AF_INET, &[1, 2, 3, 4], 1);
            assert_eq!(decode_record(&r), Err(DecodeError::NetOp(op)));
        }
        for fam in [0, 1, 3, 11] {
            let r = net_record(abi::VERDICT_DENY, abi::NET_SEND, fam, &[1, 2, 3, 4], 1);
            assert_eq!(decode_record(&r), Err(DecodeError::NetFamily(fam)));
        }
        let mut r = good.clone();
        r[offset_of!(EventHeader, verdict)] = 7;
        assert_eq!(decode_record(&r), Err(DecodeError::UnknownVerdict(7)));
        let mut r = good.clone();
        r[offset_of!(EventHeader, abi_version)] = 2;
        assert!(matches!(
            decode_record(&r),
            Err(DecodeError::AbiVersion { .. })
        ));
        // Arbitrary corruption never panics.
        let mut seed = 0xdead_beefu32;
        for _ in 0..20_000 {
            let mut r = good.clone();
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let i = seed as usize % r.len();
            r[i] = (seed >> 8) as u8;
            let cut = (seed >> 16) as usize % (r.len() + 1);
            let _ = decode_record(&r[..cut]);
        }
    }

    fn proc_header(kind: u16, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        b[offset_of!(EventHeader, abi_version)..][..4]
            .copy_from_slice(&abi::ABI_VERSION.to_ne_bytes());
        b[offset_of!(EventHeader, kind)..][..2].copy_from_slice(&kind.to_ne_bytes());
        b[offset_of!(EventHeader, pid)..][..4].copy_from_slice(&300u32.to_ne_bytes());
        b[offset_of!(EventHeader, rule_id)..][..4].copy_from_slice(&abi::RULE_NONE.to_ne_bytes());
        b[offset_of!(EventHeader, policy_id)..][..4]
            .copy_from_slice(&abi::POLICY_NONE.to_ne_bytes());
        b
    }

    /// An exec record as the kernel lays it out; an empty `cwd` is an
    /// unresolved one (flagged).
    pub(crate) fn proc_exec_record(path: &[u8], argv: &[u8], cwd: &[u8], flags: u32) -> Vec<u8> {
        let flags = flags
            | if cwd.is_empty() {
                abi::PROC_CWD_UNRESOLVED
            } else {
                0
            };
        let mut b = proc_header(abi::EVENT_PROC_EXEC, abi::PROC_EXEC_DATA_OFFSET);
        let put32 =
            |b: &mut Vec<u8>, off: usize, v: u32| b[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        b[offset_of!(ProcExecEvent, start_ns)..][..8].copy_from_slice(&99u64.to_ne_bytes());
        b[offset_of!(ProcExecEvent, slots)..][..8].copy_from_slice(&0b101u64.to_ne_bytes());
        put32(&mut b, offset_of!(ProcExecEvent, ppid), 200);
        put32(
            &mut b,
            offset_of!(ProcExecEvent, path_len),
            path.len() as u32,
        );
        put32(
            &mut b,
            offset_of!(ProcExecEvent, args_len),
            argv.len() as u32,
        );
        put32(&mut b, offset_of!(ProcExecEvent, proc_flags), flags);
        put32(&mut b, offset_of!(ProcExecEvent, cwd_len), cwd.len() as u32);
        b.extend_from_slice(path);
        b.extend_from_slice(argv);
        b.extend_from_slice(cwd);
        b
    }

    /// Builds a kernel-class record the way the kernel lays it out.
    pub(crate) fn kernel_record(what: u32, id: u32, arg: u64, arg2: u64, path: &[u8]) -> Vec<u8> {
        use abi::KernelOpEvent as K;
        let mut b = file_record(abi::VERDICT_DENY, b"");
        b.truncate(size_of::<EventHeader>());
        b.resize(abi::KERNEL_EVENT_PATH_OFFSET, 0);
        b[offset_of!(EventHeader, kind)..][..2].copy_from_slice(&abi::EVENT_KERNEL.to_ne_bytes());
        b[offset_of!(EventHeader, policy_id)..][..4].copy_from_slice(&3u32.to_ne_bytes());
        b[offset_of!(K, what)..][..4].copy_from_slice(&what.to_ne_bytes());
        b[offset_of!(K, id)..][..4].copy_from_slice(&id.to_ne_bytes());
        b[offset_of!(K, arg)..][..8].copy_from_slice(&arg.to_ne_bytes());
        b[offset_of!(K, arg2)..][..8].copy_from_slice(&arg2.to_ne_bytes());
        b[offset_of!(K, path_len)..][..4].copy_from_slice(&(path.len() as u32).to_ne_bytes());
        b.extend_from_slice(path);
        b
    }

    #[test]
    fn decodes_process_records() {
        let r = proc_exec_record(
            b"/bin/sh",
            b"sh\0-c\0id\0",
            b"/srv/app dir",
            abi::PROC_ARGS_TRUNCATED,
        );
        let Ok(Record::ProcExec(e)) = decode_record(&r) else {
            panic!("not an exec record: {:?}", decode_record(&r));
        };
        assert!(Record::ProcExec(e.clone()).is_process());
        assert_eq!(e.header.pid, 300);
        assert_eq!(e.header.rule_id, None);
        assert_eq!(e.header.policy_id, None);
        assert_eq!((e.ppid, e.start_ns, e.slots), (200, 99, 0b101));
        assert_eq!(e.filename, b"/bin/sh");
        assert_eq!(e.argv, b"sh\0-c\0id\0");
        assert!(e.argv_truncated() && !e.argv_unread());
        assert_eq!(e.cwd.as_deref(), Some(&b"/srv/app dir"[..]));
        // An unresolved cwd is none, not an empty or a neighbouring value.
        let r = proc_exec_record(b"sh", b"sh\0", b"", 0);
        let Ok(Record::ProcExec(e)) = decode_record(&r) else {
            panic!("not an exec record: {:?}", decode_record(&r));
        };
        assert_eq!(
            (e.filename, e.argv, e.cwd),
            (b"sh".to_vec(), b"sh\0".to_vec(), None)
        );

        let mut f = proc_header(abi::EVENT_PROC_FORK, size_of::<ProcForkEvent>());
        f[offset_of!(ProcForkEvent, parent_pid)..][..4].copy_from_slice(&300u32.to_ne_bytes());
        f[offset_of!(ProcForkEvent, child_pid)..][..4].copy_from_slice(&301u32.to_ne_bytes());
        f[offset_of!(ProcForkEvent, child_start_ns)..][..8].copy_from_slice(&7u64.to_ne_bytes());
        assert_eq!(
            decode_record(&f).map(|r| match r {
                Record::ProcFork(f) => Some((f.parent_pid, f.child_pid, f.child_start_ns)),
                _ => None,
            }),
            Ok(Some((300, 301, 7)))
        );
        let mut x = proc_header(abi::EVENT_PROC_EXIT, size_of::<ProcExitEvent>());
        x[offset_of!(ProcExitEvent, exit_code)..][..4].copy_from_slice(&0x100u32.to_ne_bytes());
        assert_eq!(
            decode_record(&x).map(|r| match r {
                Record::ProcExit(x) => Some((x.header.pid, x.exit_code)),
                _ => None,
            }),
            Ok(Some((300, 0x100)))
        );
    }

    #[test]
    fn malformed_process_records_are_errors() {
        let good = proc_exec_record(b"/bin/sh", b"sh\0", b"/tmp", 0);
        // A cwd flagged unresolved yet present, or one that is not absolute.
        let mut flagged = good.clone();
        flagged[offset_of!(ProcExecEvent, proc_flags)..][..4]
            .copy_from_slice(&abi::PROC_CWD_UNRESOLVED.to_ne_bytes());
        let relative = proc_exec_record(b"/bin/sh", b"sh\0", b"tmp", 0);
        for bad in [&flagged, &relative] {
            assert!(matches!(
                decode_record(bad),
                Err(DecodeError::ProcExecLength { cwd: 4 | 3, .. })
            ));
        }
        // A length that does not add up, either way.
        assert!(matches!(
            decode_record(&good[..good.len() - 1]),
            Err(DecodeError::ProcExecLength { .. })
        ));
        let mut long = good.clone();
        long.push(0);
        assert!(matches!(
            decode_record(&long),
            Err(DecodeError::ProcExecLength { .. })
        ));
        assert!(matches!(
            decode_record(&good[..abi::PROC_EXEC_DATA_OFFSET - 1]),
            Err(DecodeError::Short { .. })
        ));
        let f = proc_header(abi::EVENT_PROC_FORK, size_of::<ProcForkEvent>() - 4);
        assert!(matches!(
            decode_record(&f),
            Err(DecodeError::ProcLength { what: "fork", .. })
        ));
        let x = proc_header(abi::EVENT_PROC_EXIT, size_of::<ProcExitEvent>() + 8);
        assert!(matches!(
            decode_record(&x),
            Err(DecodeError::ProcLength { what: "exit", .. })
        ));
        // Arbitrary corruption never panics.
        let mut seed = 0x1234_5678u32;
        for _ in 0..20_000 {
            let mut r = good.clone();
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let i = seed as usize % r.len();
            r[i] = (seed >> 8) as u8;
            let cut = (seed >> 16) as usize % (r.len() + 1);
            let _ = decode_record(&r[..cut]);
        }
    }

    #[test]
    fn decodes_kernel_records() {
        let r = kernel_record(abi::KERNEL_OP, abi::KOP_MODULE_LOAD, 2, 0, b"/tmp/x.ko");
        let Record::Kernel(k) = decode_record(&r).unwrap() else {
            panic!("not a kernel record")
        };
        assert_eq!(k.subject, KernelSubject::Op(KernelOp::ModuleLoad));
        assert_eq!((k.arg, k.arg2), (2, 0));
        assert_eq!(k.path, b"/tmp/x.ko");
        assert_eq!(k.header.action, Action::Deny);
        assert_eq!(k.header.pid, 77);
        assert_eq!(k.header.cgroup_id, 4242);
        assert_eq!(k.header.rule_id, Some(5));
        assert_eq!(k.header.policy_id, Some(3));

        let r = kernel_record(abi::KERNEL_CAPABILITY, 21, 0, 0, b"");
        let Record::Kernel(k) = decode_record(&r).unwrap() else {
            panic!("not a kernel record")
        };
        assert_eq!(k.subject, KernelSubject::Capability(21));
        assert!(k.path.is_empty());
        let r = kernel_record(abi::KERNEL_SYSCALL, 272, 0, 0, b"");
        let Record::Kernel(k) = decode_record(&r).unwrap() else {
            panic!("not a kernel record")
        };
        assert_eq!(k.subject, KernelSubject::Syscall(272));
        // Every operation bit names its policy-lang operation, in order.
        for (i, op) in KernelOp::ALL.iter().enumerate() {
            assert_eq!(op.bit(), 1 << i);
            assert_eq!(KernelOp::from_bit(1 << i), Some(*op));
        }
        assert_eq!(KernelOp::ALL.len() as u32, abi::KOP_ALL.count_ones());
    }

    #[test]
    fn rejects_malformed_kernel_records() {
        // Two bits, an unknown subject, a path longer than the record.
        for (what, id) in [(abi::KERNEL_OP, 3), (abi::KERNEL_OP, 1 << 13), (7, 1)] {
            let r = kernel_record(what, id, 0, 0, b"");
            assert_eq!(
                decode_record(&r),
                Err(DecodeError::KernelSubject { what, id })
            );
        }
        let r = kernel_record(abi::KERNEL_OP, abi::KOP_MOUNT, 0, 0, b"/mnt");
        assert!(matches!(
            decode_record(&r[..r.len() - 1]),
            Err(DecodeError::PathLength { .. })
        ));
        assert!(matches!(
            decode_record(&r[..abi::KERNEL_EVENT_PATH_OFFSET - 1]),
            Err(DecodeError::Short { .. })
        ));
        assert_eq!(decode(&r), Err(DecodeError::UnknownKind(abi::EVENT_KERNEL)));
    }
}
