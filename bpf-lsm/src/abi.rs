//! Rust mirror of `bpf/include/abi.h`. Every struct is `#[repr(C)]` with the
//! same fields in the same order; `tests::layout_matches_object_btf` reads
//! the BTF of the compiled objects and checks size and offset of every field,
//! so the two cannot drift apart silently.

/// Bumped whenever a struct below changes; records carry it.
pub const ABI_VERSION: u32 = 9;
pub const PATH_MAX: usize = 4096;
pub const COMM_LEN: usize = 16;
pub const NAME_MAX: usize = 255;
pub const NAME_BYTES: usize = 256;

pub const EVENT_FILE_OPEN: u16 = 1;
pub const EVENT_EXEC: u16 = 2;
pub const EVENT_NET: u16 = 3;
pub const EVENT_PROC_EXEC: u16 = 6;
pub const EVENT_PROC_FORK: u16 = 7;
pub const EVENT_PROC_EXIT: u16 = 8;

pub const ARGS_MAX: usize = 4096;
pub const PROC_ARGS_TRUNCATED: u32 = 1 << 0;
pub const PROC_ARGS_UNREAD: u32 = 1 << 1;
pub const PROC_PATH_UNREAD: u32 = 1 << 2;
pub const PROC_CWD_UNRESOLVED: u32 = 1 << 3;
pub const EVENT_PATH: u16 = 4;
pub const EVENT_KERNEL: u16 = 5;

pub const VERDICT_ALLOW: u16 = 0;
pub const VERDICT_DENY: u16 = 1;
pub const VERDICT_AUDIT: u16 = 2;
pub const VERDICT_KILL: u16 = 3;

pub const FLAG_PATH_UNRESOLVED: u32 = 1 << 0;
pub const FLAG_DEFAULT: u32 = 1 << 1;
pub const FLAG_KILLED: u32 = 1 << 2;
pub const FLAG_V4_MAPPED: u32 = 1 << 3;
pub const FLAG_CGROUP_HOOK: u32 = 1 << 4;
/// A rule with `from`/`except_from` met a task of unknown executable and
/// applied, failing closed (deny, kill, audit rules; allow rules do not).
pub const FLAG_BINARY_UNKNOWN: u32 = 1 << 5;
/// An exec record of the fallback without BPF LSM (`tp_btf/sched_process_exec`):
/// the exec succeeded and a deny or kill rule killed the process before it ran.
pub const FLAG_EXEC_FALLBACK: u32 = 1 << 6;
/// An exec record whose executable is a memfd (matched as the path `/memfd:`).
pub const FLAG_MEMFD: u32 = 1 << 7;

pub const RULE_NONE: u32 = u32::MAX;
/// `rule_id` and `policy_id` of a self-protection refusal (no policy's).
pub const RULE_SELF: u32 = 0xffff_fffe;
pub const POLICY_SELF: u32 = 0xffff_fffe;
pub const POLICY_NONE: u32 = u32::MAX;

pub const ACTION_ALLOW: u32 = 0;
pub const ACTION_AUDIT: u32 = 1;
pub const ACTION_DENY: u32 = 2;
pub const ACTION_KILL: u32 = 3;

pub const CLASS_FILE: u32 = 0;
pub const CLASS_EXEC: u32 = 1;
pub const CLASS_NET: u32 = 2;
pub const CLASS_KERNEL: u32 = 3;
pub const CLASSES: usize = 4;
/// The matcher of executable paths (`EdgeKey::matcher`): its lists hold
/// binary-set ids. Not a class.
pub const MATCHER_BINARY: u32 = 4;
/// The matcher of cgroup paths, walked at cgroup creation: one list entry per selector
/// pattern, `Rule::slot` its policy, `Rule::ops` [`SELECT_EXCLUDE`] for an exclusion.
pub const MATCHER_CGROUP: u32 = 5;
pub const SELECT_EXCLUDE: u32 = 1;
/// Binary sets per plan: a task's sets are one u64.
pub const MAX_BINARY_SETS: usize = 64;

pub const OP_READ: u32 = 1 << 0;
pub const OP_WRITE: u32 = 1 << 1;
pub const OP_APPEND: u32 = 1 << 2;
pub const OP_CREATE: u32 = 1 << 3;
pub const OP_DELETE: u32 = 1 << 4;
pub const OP_RENAME: u32 = 1 << 5;
pub const OP_LINK: u32 = 1 << 6;
pub const OP_CHMOD: u32 = 1 << 7;
pub const OP_CHOWN: u32 = 1 << 8;
pub const OP_TRUNCATE: u32 = 1 << 9;
pub const OP_EXEC: u32 = 1 << 10;
pub const OP_MMAP_EXEC: u32 = 1 << 11;
/// A chmod whose new mode sets S_ISUID / S_ISGID (decided instead of OP_CHMOD).
pub const OP_CHMOD_SETUID: u32 = 1 << 12;
pub const OP_CHMOD_SETGID: u32 = 1 << 13;
/// A new symlink whose target names the path; no class default covers it.
pub const OP_SYMLINK_TO: u32 = 1 << 14;

pub const NET_CONNECT: u32 = 1 << 0;
pub const NET_BIND: u32 = 1 << 1;
pub const NET_LISTEN: u32 = 1 << 2;
pub const NET_SEND: u32 = 1 << 3;
pub const FAMILY_IPV4: u32 = 1 << 0;
pub const FAMILY_IPV6: u32 = 1 << 1;
pub const PROTO_TCP: u32 = 1 << 0;
pub const PROTO_UDP: u32 = 1 << 1;

/// Kernel operation bits (`ENF_KOP_*`): bit i is the i-th operation of
/// policy-lang's `KernelOp` list.
pub const KOP_MOUNT: u32 = 1 << 0;
pub const KOP_UMOUNT: u32 = 1 << 1;
pub const KOP_PTRACE: u32 = 1 << 2;
pub const KOP_BPF: u32 = 1 << 3;
pub const KOP_MODULE_LOAD: u32 = 1 << 4;
pub const KOP_KEXEC: u32 = 1 << 5;
pub const KOP_SETUID_ROOT: u32 = 1 << 6;
pub const KOP_SETGID_ROOT: u32 = 1 << 7;
pub const KOP_USERNS_CREATE: u32 = 1 << 8;
pub const KOP_RAW_SOCKET: u32 = 1 << 9;
pub const KOP_PACKET_SOCKET: u32 = 1 << 10;
pub const KOP_PERF_EVENT_OPEN: u32 = 1 << 11;
pub const KOP_KEYCTL: u32 = 1 << 12;
pub const KOP_ALL: u32 = (1 << 13) - 1;

/// What a kernel-class key or record is about ([`KernelKey::what`]).
pub const KERNEL_OP: u32 = 0;
pub const KERNEL_CAPABILITY: u32 = 1;
pub const KERNEL_SYSCALL: u32 = 2;
/// Self-protection: `id` is a `GUARD_*`.
pub const KERNEL_GUARD: u32 = 3;
/// A signal to the enforcer (arg: its pid, arg2: the signal).
pub const GUARD_SIGNAL: u32 = 1;
/// A ptrace attach to the enforcer (arg: its pid, arg2: the PTRACE_MODE_* bits).
pub const GUARD_PTRACE: u32 = 2;
/// A bpf() command reaching objects by pin or id (arg: the command).
pub const GUARD_BPF: u32 = 3;
/// Protected directories at most (`enf_guard_dirs`).
pub const GUARD_DIRS: u32 = 4;

/// Address families of [`NetEvent::family`] (Linux values).
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

pub const MAX_POLICIES: usize = 64;

pub const STATE_DEAD: u32 = 0;
pub const STATE_START: u32 = 1;

pub const STAT_RINGBUF_DROPS: u32 = 0;
pub const STAT_PATH_UNRESOLVED: u32 = 1;
pub const STAT_INHERIT_FAILED: u32 = 2;
pub const STAT_INHERITED: u32 = 3;
/// Rule matches with `from`/`except_from` on a task of unknown executable.
pub const STAT_BINARY_UNKNOWN: u32 = 4;
/// Execs and forks whose binary sets could not be stored (the task is unknown).
pub const STAT_BINARY_STORE_FAILED: u32 = 5;
/// Verdict records the rate limit did not send (the verdicts applied).
pub const STAT_RATE_SUPPRESSED: u32 = 6;
/// Pod log directories of a selected namespace created for a pod whose cgroup the kernel had
/// not seen (the pod is not covered by the namespace).
pub const STAT_POD_UNKNOWN: u32 = 7;
pub const STAT_MAX: u32 = 8;

/// `struct enf_event_header`: the head of every ring-buffer record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventHeader {
    pub abi_version: u32,
    pub kind: u16,
    pub verdict: u16,
    pub ktime_ns: u64,
    pub cgroup_id: u64,
    pub pid: u32,
    pub tid: u32,
    pub uid: u32,
    pub gid: u32,
    pub rule_id: u32,
    pub flags: u32,
    pub comm: [u8; COMM_LEN],
    pub policy_id: u32,
    /// Records of the same (cgroup, policy, rule) the rate limit did not
    /// send since the last one sent.
    pub suppressed: u32,
}

/// `struct enf_config`: settings of the whole plan (`enf_config`, key 0).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Verdict records per second per (cgroup, policy, rule); 0: no limit.
    pub rate_limit: u32,
    /// Self-protection: the enforcer's pid (tgid); 0: off.
    pub daemon_tgid: u32,
    /// Self-protection: the super block `s_dev` (kernel encoding, `major << 20 | minor`) of
    /// the enforcer's executable, whose tasks may use the enforcer's directories.
    pub daemon_exe_dev: u32,
    /// 1: the kernel walks a new cgroup's path through [`MATCHER_CGROUP`].
    pub cgroup_selectors: u32,
    /// ... and its inode number; 0: no task is exempt by its executable.
    pub daemon_exe_ino: u64,
    /// Kubernetes namespace selectors: the kubelet's pod log directory (`s_dev`, kernel
    /// encoding) ...
    pub pod_logs_dev: u32,
    pub _pad2: u32,
    /// ... and its inode number; 0: namespace selectors are off.
    pub pod_logs_ino: u64,
    /// Entries of `enf_cgroup_globs` in use.
    pub cgroup_globs: u32,
    pub _pad3: u32,
}

/// Entries of `enf_cgroup_globs` at most.
pub const MAX_CGROUP_GLOBS: usize = 64;

/// `struct enf_cgroup_glob`: a cgroup selector pattern `PARENT/PREFIX*SUFFIX`, checked when a
/// cgroup is created.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CgroupGlob {
    pub slot: u32,
    /// 1: an `exclude` pattern.
    pub exclude: u32,
    /// 0: the root cgroup.
    pub parent_len: u32,
    pub prefix_len: u32,
    pub suffix_len: u32,
    pub _pad: u32,
    pub parent: [u8; NAME_BYTES],
    pub prefix: [u8; NAME_BYTES],
    pub suffix: [u8; NAME_BYTES],
}

pub const POD_UID_LEN: usize = 36;
pub const K8S_NAME_LEN: usize = 64;

/// `struct enf_pod_uid`: key of `enf_pod_cgroups`, the uid lowercase with dashes, a 32-digit
/// static pod hash zero-padded.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PodUid {
    pub uid: [u8; POD_UID_LEN],
}

impl Default for PodUid {
    fn default() -> Self {
        PodUid {
            uid: [0; POD_UID_LEN],
        }
    }
}

/// `struct enf_k8s_name`: key of `enf_k8s_namespaces`, zero-padded.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct K8sName {
    pub name: [u8; K8S_NAME_LEN],
}

/// `struct enf_k8s_namespace`: a pod of the namespace gets `(existing | add) & !remove`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct K8sNamespace {
    pub add: u64,
    pub remove: u64,
}

/// `struct enf_guard_dir`: a directory self-protection guards.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuardDir {
    /// Bytes of `path`, no trailing `/`.
    pub len: u32,
    pub _pad: u32,
    pub path: [u8; NAME_BYTES],
}

impl Default for GuardDir {
    fn default() -> Self {
        GuardDir {
            len: 0,
            _pad: 0,
            path: [0; NAME_BYTES],
        }
    }
}

/// `struct enf_file_event`. On the ring buffer only the first `path_len`
/// bytes of `path` are present.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FileEvent {
    pub hdr: EventHeader,
    pub f_flags: u32,
    pub f_mode: u32,
    pub path_len: u32,
    pub access: u32,
    pub path: [u8; PATH_MAX],
}

/// `struct enf_exec_event`, sent like [`FileEvent`].
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExecEvent {
    pub hdr: EventHeader,
    pub path_len: u32,
    pub _pad: u32,
    pub path: [u8; PATH_MAX],
}

/// `struct enf_path_event`: a path or mmap hook's verdict. On the ring
/// buffer only `path_len + path2_len` bytes of `paths` are present, the
/// second path right after the first.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PathEvent {
    pub hdr: EventHeader,
    pub op: u32,
    pub path_len: u32,
    pub path2_len: u32,
    pub has_path2: u32,
    pub paths: [u8; 2 * PATH_MAX],
}

/// `struct enf_cgroup_policies`: value of `enf_cgroup_policies`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupPolicies {
    pub slots: u64,
    /// The policies that exclude the cgroup or a cgroup above it: a child created later
    /// does not get them back from a pattern that matches it.
    pub excluded: u64,
}

/// `struct enf_policy`: value of `enf_policies`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    pub id: u32,
    pub dflt: [u32; CLASSES],
    pub deny_ops: [u32; CLASSES],
    pub audit_ops: [u32; CLASSES],
    pub _pad: u32,
}

/// `struct enf_edge_key`: key of `enf_edges` and `enf_suffixes`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct EdgeKey {
    pub matcher: u32,
    pub state: u32,
    pub hash: u64,
}

/// `struct enf_edge`: value of `enf_edges`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edge {
    pub to: u32,
    pub len: u32,
    pub name: [u8; NAME_BYTES],
}

/// `struct enf_suffix`: value of `enf_suffixes`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Suffix {
    pub list_off: u32,
    pub list_len: u32,
    pub len: u32,
    pub _pad: u32,
    pub name: [u8; NAME_BYTES],
}

/// `struct enf_state_key`: key of `enf_states`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct StateKey {
    pub matcher: u32,
    pub state: u32,
}

/// `struct enf_inode_key`: key of `enf_file_inodes` (value: a file matcher
/// state). `dev` is the kernel's dev_t (`major << 20 | minor`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct InodeKey {
    pub ino: u64,
    pub dev: u32,
    pub _pad: u32,
}

/// `struct enf_state`: value of `enf_states`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct State {
    pub wildcard: u32,
    pub list_off: u32,
    pub list_len: u32,
    pub max_suffix: u32,
}

/// `struct enf_rule`: value of `enf_rule_list`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rule {
    pub id: u32,
    pub slot: u32,
    pub action: u32,
    pub ops: u32,
    /// Binary sets of `from` (bit = set id); 0: any task.
    pub from_sets: u64,
    /// Binary sets of `except_from`; 0: none.
    pub except_sets: u64,
    /// Binary sets of an exec rule's `parent`; 0: any parent.
    pub parent_sets: u64,
    /// Binary sets of an exec rule's `ancestor`; 0: any ancestry.
    pub ancestor_sets: u64,
    /// 1: the rule applies only to the real uids [`RuleUid`] lists under its id.
    pub uid_filter: u32,
    pub _pad: u32,
}

/// `struct enf_rule_uid`: key of `enf_rule_uids`, a uid an exec rule's `uid` lists.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleUid {
    pub rule_id: u32,
    pub uid: u32,
}

/// `struct enf_task_bins`: value of the task storage map `enf_task_bins`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskBins {
    pub sets: u64,
    /// 1: `sets` is the executable's.
    pub known: u32,
    pub _pad: u32,
}

/// `struct enf_net_event`: a network verdict, sent whole.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetEvent {
    pub hdr: EventHeader,
    pub op: u32,
    pub family: u16,
    pub protocol: u16,
    pub port: u16,
    pub _pad: u16,
    pub _pad2: u32,
    pub addr: [u8; 16],
}

/// `struct enf_kernel_event`: a kernel-class verdict. On the ring buffer
/// only the first `path_len` bytes of `path` are present.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct KernelOpEvent {
    pub hdr: EventHeader,
    pub what: u32,
    pub id: u32,
    pub arg: u64,
    pub arg2: u64,
    pub path_len: u32,
    pub _pad: u32,
    pub path: [u8; PATH_MAX],
}

/// `struct enf_kernel_key`: key of `enf_kernel_lists`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KernelKey {
    pub what: u32,
    pub id: u32,
}

/// `struct enf_kernel_list`: value of `enf_kernel_lists`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelList {
    pub list_off: u32,
    pub list_len: u32,
}

/// `struct enf_lpm_v4_key`: key of `enf_net_v4`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LpmV4Key {
    pub prefixlen: u32,
    pub addr: [u8; 4],
}

/// `struct enf_lpm_v6_key`: key of `enf_net_v6`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LpmV6Key {
    pub prefixlen: u32,
    pub addr: [u8; 16],
}

/// `struct enf_net_list`: value of both tries.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetList {
    pub list_off: u32,
    pub list_len: u32,
}

/// `struct enf_net_rule`: value of `enf_net_rules`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetRule {
    pub id: u32,
    pub slot: u32,
    pub action: u32,
    pub ops: u32,
    pub families: u32,
    pub protocols: u32,
    pub ports_off: u32,
    pub ports_len: u32,
    /// `from` / `except_from` binary sets, as in [`Rule`].
    pub from_sets: u64,
    pub except_sets: u64,
}

/// `struct enf_port_range`: value of `enf_net_ports`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

/// `struct enf_proc_exec_event`: on the ring buffer only the first
/// `path_len + args_len + cwd_len` bytes of `data` are present.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ProcExecEvent {
    pub hdr: EventHeader,
    pub start_ns: u64,
    pub slots: u64,
    pub ppid: u32,
    pub path_len: u32,
    pub args_len: u32,
    pub proc_flags: u32,
    pub cwd_len: u32,
    pub _pad: u32,
    pub data: [u8; PATH_MAX + ARGS_MAX + PATH_MAX],
}

/// `struct enf_proc_fork_event`, sent whole.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcForkEvent {
    pub hdr: EventHeader,
    pub parent_pid: u32,
    pub child_pid: u32,
    pub child_start_ns: u64,
}

/// `struct enf_proc_exit_event`, sent whole.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcExitEvent {
    pub hdr: EventHeader,
    pub exit_code: u32,
    pub _pad: u32,
}

// SAFETY: plain-old-data structs of integers and byte arrays with explicit
// padding fields, so every byte pattern is valid and none is uninitialised.
unsafe impl aya::Pod for CgroupPolicies {}
// SAFETY: as above.
unsafe impl aya::Pod for Policy {}
// SAFETY: as above.
unsafe impl aya::Pod for EdgeKey {}
// SAFETY: as above.
unsafe impl aya::Pod for Edge {}
// SAFETY: as above.
unsafe impl aya::Pod for Suffix {}
// SAFETY: as above.
unsafe impl aya::Pod for StateKey {}
// SAFETY: as above.
unsafe impl aya::Pod for State {}
// SAFETY: as above.
unsafe impl aya::Pod for InodeKey {}
// SAFETY: as above.
unsafe impl aya::Pod for Rule {}
// SAFETY: as above.
unsafe impl aya::Pod for RuleUid {}
// SAFETY: repr(C), integers only, explicit padding.
unsafe impl aya::Pod for TaskBins {}
// SAFETY: as above.
unsafe impl aya::Pod for LpmV4Key {}
// SAFETY: as above.
unsafe impl aya::Pod for LpmV6Key {}
// SAFETY: as above.
unsafe impl aya::Pod for NetList {}
// SAFETY: as above.
unsafe impl aya::Pod for NetRule {}
// SAFETY: as above.
unsafe impl aya::Pod for PortRange {}
// SAFETY: as above.
unsafe impl aya::Pod for KernelKey {}
// SAFETY: as above.
unsafe impl aya::Pod for KernelList {}
// SAFETY: as above.
unsafe impl aya::Pod for Config {}
// SAFETY: `#[repr(C)]` plain data, every bit pattern valid, no padding (checked against the
// object's BTF).
unsafe impl aya::Pod for CgroupGlob {}
// SAFETY: as above.
unsafe impl aya::Pod for GuardDir {}
// SAFETY: as above.
unsafe impl aya::Pod for PodUid {}
// SAFETY: as above.
unsafe impl aya::Pod for K8sName {}
// SAFETY: as above.
unsafe impl aya::Pod for K8sNamespace {}

/// Byte offset of the path within a file record (the record's fixed part).
pub const FILE_EVENT_PATH_OFFSET: usize = core::mem::offset_of!(FileEvent, path);
/// Byte offset of the path within an exec record.
pub const EXEC_EVENT_PATH_OFFSET: usize = core::mem::offset_of!(ExecEvent, path);
/// Byte offset of the file name and argv within a process exec record.
pub const PROC_EXEC_DATA_OFFSET: usize = core::mem::offset_of!(ProcExecEvent, data);
/// Byte offset of the paths within a path-hook record.
pub const PATH_EVENT_PATHS_OFFSET: usize = core::mem::offset_of!(PathEvent, paths);
/// Byte offset of the path within a kernel-class record.
pub const KERNEL_EVENT_PATH_OFFSET: usize = core::mem::offset_of!(KernelOpEvent, path);

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};
    use std::collections::HashMap;

    /// (struct name, size, [(field, offset)]) of one ABI struct.
    type Layout = (&'static str, usize, Vec<(&'static str, usize)>);

    macro_rules! layout {
        ($c:literal, $t:ty, [$($f:ident),* $(,)?]) => {
            ($c, size_of::<$t>(), vec![$((stringify!($f), offset_of!($t, $f))),*])
        };
    }

    fn rust_layouts() -> Vec<Layout> {
        vec![
            layout!(
                "enf_event_header",
                EventHeader,
                [
                    abi_version,
                    kind,
                    verdict,
                    ktime_ns,
                    cgroup_id,
                    pid,
                    tid,
                    uid,
                    gid,
                    rule_id,
                    flags,
                    comm,
                    policy_id,
                    suppressed
                ]
            ),
            layout!(
                "enf_config",
                Config,
                [
                    rate_limit,
                    daemon_tgid,
                    daemon_exe_dev,
                    cgroup_selectors,
                    daemon_exe_ino,
                    pod_logs_dev,
                    _pad2,
                    pod_logs_ino,
                    cgroup_globs,
                    _pad3
                ]
            ),
            layout!(
                "enf_cgroup_glob",
                CgroupGlob,
                [slot, exclude, parent_len, prefix_len, suffix_len, _pad, parent, prefix, suffix]
            ),
            layout!("enf_pod_uid", PodUid, [uid]),
            layout!("enf_k8s_name", K8sName, [name]),
            layout!("enf_k8s_namespace", K8sNamespace, [add, remove]),
            layout!("enf_guard_dir", GuardDir, [len, _pad, path]),
            layout!(
                "enf_file_event",
                FileEvent,
                [hdr, f_flags, f_mode, path_len, access, path]
            ),
            layout!("enf_exec_event", ExecEvent, [hdr, path_len, _pad, path]),
            layout!(
                "enf_path_event",
                PathEvent,
                [hdr, op, path_len, path2_len, has_path2, paths]
            ),
            layout!("enf_cgroup_policies", CgroupPolicies, [slots, excluded]),
            layout!("enf_policy", Policy, [id, dflt, deny_ops, audit_ops, _pad]),
            layout!("enf_edge_key", EdgeKey, [matcher, state, hash]),
            layout!("enf_edge", Edge, [to, len, name]),
            layout!("enf_suffix", Suffix, [list_off, list_len, len, _pad, name]),
            layout!("enf_state_key", StateKey, [matcher, state]),
            layout!("enf_inode_key", InodeKey, [ino, dev, _pad]),
            layout!(
                "enf_state",
                State,
                [wildcard, list_off, list_len, max_suffix]
            ),
            layout!(
                "enf_rule",
                Rule,
                [
                    id,
                    slot,
                    action,
                    ops,
                    from_sets,
                    except_sets,
                    parent_sets,
                    ancestor_sets,
                    uid_filter,
                    _pad
                ]
            ),
            layout!("enf_rule_uid", RuleUid, [rule_id, uid]),
            layout!("enf_task_bins", TaskBins, [sets, known, _pad]),
            layout!(
                "enf_net_event",
                NetEvent,
                [hdr, op, family, protocol, port, _pad, _pad2, addr]
            ),
            layout!("enf_lpm_v4_key", LpmV4Key, [prefixlen, addr]),
            layout!("enf_lpm_v6_key", LpmV6Key, [prefixlen, addr]),
            layout!("enf_net_list", NetList, [list_off, list_len]),
            layout!(
                "enf_net_rule",
                NetRule,
                [
                    id,
                    slot,
                    action,
                    ops,
                    families,
                    protocols,
                    ports_off,
                    ports_len,
                    from_sets,
                    except_sets
                ]
            ),
            layout!("enf_port_range", PortRange, [lo, hi]),
            layout!(
                "enf_proc_exec_event",
                ProcExecEvent,
                [hdr, start_ns, slots, ppid, path_len, args_len, proc_flags, cwd_len, _pad, data]
            ),
            layout!(
                "enf_proc_fork_event",
                ProcForkEvent,
                [hdr, parent_pid, child_pid, child_start_ns]
            ),
            layout!("enf_proc_exit_event", ProcExitEvent, [hdr, exit_code, _pad]),
            layout!(
                "enf_kernel_event",
                KernelOpEvent,
                [hdr, what, id, arg, arg2, path_len, _pad, path]
            ),
            layout!("enf_kernel_key", KernelKey, [what, id]),
            layout!("enf_kernel_list", KernelList, [list_off, list_len]),
        ]
    }

    #[test]
    fn layout_matches_object_btf() {
        let mut seen = HashMap::new();
        for (object, bytes) in crate::objects::ALL {
            for (name, layout) in btf::structs(bytes) {
                seen.entry(name).or_insert_with(|| (object, layout));
            }
        }
        for (name, size, fields) in rust_layouts() {
            let (object, btf) = seen
                .get(name)
                .unwrap_or_else(|| panic!("struct {name} is in no object's BTF"));
            assert_eq!(btf.size as usize, size, "size of {name} (BTF of {object})");
            let btf_fields: Vec<(&str, usize)> = btf
                .members
                .iter()
                .map(|(n, off)| (n.as_str(), *off as usize / 8))
                .collect();
            assert_eq!(btf_fields, fields, "fields of {name} (BTF of {object})");
        }
    }

    /// Just enough of a BTF reader to list struct layouts: the section
    /// format is stable (Documentation/bpf/btf.rst) and aya-obj keeps its
    /// member lists private.
    mod btf {
        use object::{Object, ObjectSection};

        pub struct StructLayout {
            pub size: u32,
            /// (name, offset in bits)
            pub members: Vec<(String, u32)>,
        }

        fn u32_at(b: &[u8], off: usize) -> u32 {
            u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
        }

        fn name_at(strings: &[u8], off: u32) -> String {
            let s = &strings[off as usize..];
            let end = s.iter().position(|&c| c == 0).unwrap();
            String::from_utf8_lossy(&s[..end]).into_owned()
        }

        pub fn structs(elf: &[u8]) -> Vec<(String, StructLayout)> {
            let file = object::File::parse(elf).unwrap();
            let section = file.section_by_name(".BTF").expect("object has no .BTF");
            let data = section.data().unwrap();
            assert_eq!(u16::from_le_bytes([data[0], data[1]]), 0xeb9f, "BTF magic");
            let hdr_len = u32_at(data, 4) as usize;
            let type_off = hdr_len + u32_at(data, 8) as usize;
            let type_len = u32_at(data, 12) as usize;
            let str_off = hdr_len + u32_at(data, 16) as usize;
            let str_len = u32_at(data, 20) as usize;
            let types = &data[type_off..type_off + type_len];
            let strings = &data[str_off..str_off + str_len];

            let mut out = Vec::new();
            let mut pos = 0;
            while pos < types.len() {
                let name_off = u32_at(types, pos);
                let info = u32_at(types, pos + 4);
                let size = u32_at(types, pos + 8);
                let vlen = (info & 0xffff) as usize;
                let kind = (info >> 24) & 0x1f;
                let kind_flag = info >> 31 == 1;
                pos += 12;
                let extra = match kind {
                    1 | 14 | 17 => 4,          // int, var, decl_tag
                    3 => 12,                   // array
                    4 | 5 => vlen * 12,        // struct, union
                    6 | 13 => vlen * 8,        // enum, func_proto
                    15 | 19 => vlen * 12,      // datasec, enum64
                    2 | 7..=12 | 16 | 18 => 0, // ptr, fwd, typedef, cv, func, float, type_tag
                    other => panic!("unknown BTF kind {other}"),
                };
                if kind == 4 {
                    let members = (0..vlen)
                        .map(|i| {
                            let m = pos + i * 12;
                            let raw = u32_at(types, m + 8);
                            let bits = if kind_flag { raw & 0x00ff_ffff } else { raw };
                            (name_at(strings, u32_at(types, m)), bits)
                        })
                        .collect();
                    out.push((name_at(strings, name_off), StructLayout { size, members }));
                }
                pos += extra;
            }
            out
        }
    }
}
