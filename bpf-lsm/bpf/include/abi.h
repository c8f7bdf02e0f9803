/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The kernel/user ABI of the enforcer: every struct that crosses the boundary
 * (ring-buffer records and map keys/values) is defined here, once. The Rust
 * mirror lives in bpf-lsm/src/abi.rs and a test checks it against the BTF of
 * the compiled objects (size and every field offset).
 *
 * Rules: fixed-width types only, explicit padding, no bitfields, and a new
 * field goes at the end of a struct together with an ENF_ABI_VERSION bump.
 */
#ifndef ENFORCER_ABI_H
#define ENFORCER_ABI_H

#define ENF_ABI_VERSION 9

/* Paths are matched up to PATH_MAX: no 200- or 256-byte truncation. */
#define ENF_PATH_MAX 4096
#define ENF_COMM_LEN 16
/* Longest path component (NAME_MAX); edge and suffix entries carry it,
 * zero-padded to ENF_NAME_BYTES. */
#define ENF_NAME_MAX 255
#define ENF_NAME_BYTES 256

/* Event kinds (enf_event_header.kind). */
#define ENF_EVENT_FILE_OPEN 1
#define ENF_EVENT_EXEC 2
#define ENF_EVENT_NET 3
/* Process records (tp_btf/sched_process_*): not verdicts, they feed user
 * space's process table. Their verdict is ENF_VERDICT_ALLOW and their rule
 * and policy ids are NONE. */
#define ENF_EVENT_PROC_EXEC 6
#define ENF_EVENT_PROC_FORK 7
#define ENF_EVENT_PROC_EXIT 8
/* A path or mmap hook's verdict (create, delete, rename, link, chmod, chown,
 * truncate, mmap_exec): enf_path_event. */
#define ENF_EVENT_PATH 4
/* A kernel-class verdict: a privileged operation, a capability check or a
 * system call (enf_kernel_event). */
#define ENF_EVENT_KERNEL 5

/* Verdicts (enf_event_header.verdict). */
#define ENF_VERDICT_ALLOW 0
#define ENF_VERDICT_DENY 1
#define ENF_VERDICT_AUDIT 2
#define ENF_VERDICT_KILL 3

/* Event flags (enf_event_header.flags). */
/* The path could not be resolved completely (too long or unreachable): a
 * deny rule fails closed and says so with this flag. */
#define ENF_FLAG_PATH_UNRESOLVED (1u << 0)
/* The policy's default posture decided (rule_id is ENF_RULE_NONE). */
#define ENF_FLAG_DEFAULT (1u << 1)
/* SIGKILL was sent to the acting process. */
#define ENF_FLAG_KILLED (1u << 2)
/* A network record: the address was IPv4-mapped IPv6 (::ffff:a.b.c.d) and was
 * decided, and is reported, as the IPv4 address. */
#define ENF_FLAG_V4_MAPPED (1u << 3)
/* A network record: decided by a cgroup socket program (the fallback without
 * BPF LSM), not by an LSM hook. */
#define ENF_FLAG_CGROUP_HOOK (1u << 4)
/* A rule with `from`/`except_from` met a task whose executable is unknown
 * (it ran before the plan loaded and was not found by the backfill, or its
 * path did not resolve at exec): a deny/kill/audit rule applied, failing
 * closed, since neither `from` nor `except_from` could be checked. */
#define ENF_FLAG_BINARY_UNKNOWN (1u << 5)
/* An exec record of the fallback without BPF LSM (tp_btf/sched_process_exec):
 * the exec itself succeeded; a deny or kill rule killed the process before
 * its first instruction (ENF_FLAG_KILLED says the signal was sent). */
#define ENF_FLAG_EXEC_FALLBACK (1u << 6)
/* An exec record: the executable is a memfd (a file on the kernel's internal
 * shmem or hugetlbfs mount, with no link); the exec matcher was walked with
 * the reserved path ENF_MEMFD_PATH, the record has the memfd's own name. */
#define ENF_FLAG_MEMFD (1u << 7)

/* rule_id / policy_id of a record no rule / no policy decided. */
#define ENF_RULE_NONE 0xffffffffu
#define ENF_POLICY_NONE 0xffffffffu
/* rule_id / policy_id of a self-protection refusal (guard.h): no policy's. */
#define ENF_RULE_SELF 0xfffffffeu
#define ENF_POLICY_SELF 0xfffffffeu

/* Rule actions, least to most restrictive: the order is the precedence. */
#define ENF_ACTION_ALLOW 0
#define ENF_ACTION_AUDIT 1
#define ENF_ACTION_DENY 2
#define ENF_ACTION_KILL 3
#define ENF_ACTIONS 4

/* Operation classes, each with its own matcher and default posture. */
#define ENF_CLASS_FILE 0
#define ENF_CLASS_EXEC 1
#define ENF_CLASS_NET 2
/* Kernel operations: its default covers the named operations only, not
 * capability checks or system calls. */
#define ENF_CLASS_KERNEL 3
/* A power of two: class indexes are masked with ENF_CLASSES - 1. */
#define ENF_CLASSES 4
/* The matcher of executable paths (enf_edge_key.matcher): its accept lists
 * hold binary-set ids (enf_rule.id), not rules. Not a class. */
#define ENF_MATCHER_BINARY 4
/* The matcher of cgroup paths, walked when a cgroup is created: its lists
 * hold one entry per selector pattern, enf_rule.slot the policy and
 * enf_rule.ops ENF_SELECT_EXCLUDE for an `exclude` pattern. Not a class. */
#define ENF_MATCHER_CGROUP 5
#define ENF_SELECT_EXCLUDE 1
/* Binary sets per plan: a task's sets are one u64. */
#define ENF_MAX_BINARY_SETS 64

/* File operation bits (enf_rule.ops, enf_file_event.access): bit i is the
 * i-th operation of policy-lang's FileOp list, so its masks pass through. */
#define ENF_OP_READ (1u << 0)
#define ENF_OP_WRITE (1u << 1)
#define ENF_OP_APPEND (1u << 2)
#define ENF_OP_CREATE (1u << 3)
#define ENF_OP_DELETE (1u << 4)
#define ENF_OP_RENAME (1u << 5)
#define ENF_OP_LINK (1u << 6)
#define ENF_OP_CHMOD (1u << 7)
#define ENF_OP_CHOWN (1u << 8)
#define ENF_OP_TRUNCATE (1u << 9)
#define ENF_OP_EXEC (1u << 10)
#define ENF_OP_MMAP_EXEC (1u << 11)
/* A chmod whose new mode sets S_ISUID / S_ISGID: decided instead of CHMOD
 * (a plain `chmod` rule holds these bits too). */
#define ENF_OP_CHMOD_SETUID (1u << 12)
#define ENF_OP_CHMOD_SETGID (1u << 13)
/* A new symlink whose target names the path (symlink_target.h); no class
 * default covers it. */
#define ENF_OP_SYMLINK_TO (1u << 14)

/* Network operation bits (enf_net_rule.ops, enf_net_event.op): bit i is the
 * i-th operation of policy-lang's NetOp list. */
#define ENF_NET_CONNECT (1u << 0)
#define ENF_NET_BIND (1u << 1)
#define ENF_NET_LISTEN (1u << 2)
#define ENF_NET_SEND (1u << 3)
/* Address family bits (enf_net_rule.families): policy-lang's Family order. */
#define ENF_FAMILY_IPV4 (1u << 0)
#define ENF_FAMILY_IPV6 (1u << 1)
/* Protocol bits (enf_net_rule.protocols): policy-lang's Protocol order. A
 * socket of another protocol matches no rule (only defaults apply to it). */
#define ENF_PROTO_TCP (1u << 0)
#define ENF_PROTO_UDP (1u << 1)

/* Kernel operation bits (enf_kernel_event.id for ENF_KERNEL_OP, and the
 * hooks a plan needs): bit i is the i-th operation of policy-lang's KernelOp
 * list. */
#define ENF_KOP_MOUNT (1u << 0)
#define ENF_KOP_UMOUNT (1u << 1)
#define ENF_KOP_PTRACE (1u << 2)
#define ENF_KOP_BPF (1u << 3)
#define ENF_KOP_MODULE_LOAD (1u << 4)
#define ENF_KOP_KEXEC (1u << 5)
#define ENF_KOP_SETUID_ROOT (1u << 6)
#define ENF_KOP_SETGID_ROOT (1u << 7)
#define ENF_KOP_USERNS_CREATE (1u << 8)
#define ENF_KOP_RAW_SOCKET (1u << 9)
#define ENF_KOP_PACKET_SOCKET (1u << 10)
#define ENF_KOP_PERF_EVENT_OPEN (1u << 11)
#define ENF_KOP_KEYCTL (1u << 12)
#define ENF_KOP_ALL ((1u << 13) - 1)

/* What a kernel-class key or record is about (enf_kernel_key.what). */
#define ENF_KERNEL_OP 0          /* id: one ENF_KOP_* bit */
#define ENF_KERNEL_CAPABILITY 1  /* id: the capability number (CAP_*) */
#define ENF_KERNEL_SYSCALL 2     /* id: the x86_64 system call number */
#define ENF_KERNEL_GUARD 3       /* id: ENF_GUARD_* (self-protection) */

/* What self-protection refused (enf_kernel_event.id with ENF_KERNEL_GUARD). */
#define ENF_GUARD_SIGNAL 1       /* arg: the enforcer's pid, arg2: the signal */
#define ENF_GUARD_PTRACE 2       /* arg: the enforcer's pid, arg2: PTRACE_MODE_* */
#define ENF_GUARD_BPF 3          /* arg: the bpf() command */

/* A cgroup's policies are a u64 set of slots. */
#define ENF_MAX_POLICIES 64

/* The automaton's fixed states (policy-lang's matcher: 0 dead, 1 start). */
#define ENF_STATE_DEAD 0
#define ENF_STATE_START 1

/* Indexes into the per-CPU `enf_stats` array. */
#define ENF_STAT_RINGBUF_DROPS 0
#define ENF_STAT_PATH_UNRESOLVED 1
/* A new cgroup under a scoped one could not inherit (map full): uncovered. */
#define ENF_STAT_INHERIT_FAILED 2
/* Cgroups that inherited their parent's policies at mkdir. */
#define ENF_STAT_INHERITED 3
/* A rule with `from`/`except_from` met a task of unknown executable. */
#define ENF_STAT_BINARY_UNKNOWN 4
/* A fork or exec could not store the task's binary sets (storage busy or
 * out of memory): the task is unknown, rules fail closed for it. */
#define ENF_STAT_BINARY_STORE_FAILED 5
/* Verdict records the rate limit did not send (the verdict itself applied). */
#define ENF_STAT_RATE_SUPPRESSED 6
/* A pod log directory of a selected namespace was created for a pod whose
 * cgroup the kernel had not seen: the pod is not covered by the namespace. */
#define ENF_STAT_POD_UNKNOWN 7
#define ENF_STAT_MAX 8

/* Common head of every ring-buffer record. */
struct enf_event_header {
	__u32 abi_version;
	__u16 kind;
	__u16 verdict;
	__u64 ktime_ns;   /* bpf_ktime_get_boot_ns() */
	__u64 cgroup_id;  /* cgroup2 id of the acting task */
	__u32 pid;        /* tgid: the pid user space sees */
	__u32 tid;
	__u32 uid;
	__u32 gid;
	__u32 rule_id;    /* the deciding rule's id, or ENF_RULE_NONE */
	__u32 flags;      /* ENF_FLAG_* */
	char comm[ENF_COMM_LEN];
	__u32 policy_id;  /* the deciding policy's id, or ENF_POLICY_NONE */
	__u32 suppressed; /* records of the same (cgroup, policy, rule) the rate
			   * limit did not send since the last one sent */
};

/* A file_open verdict. Only the first path_len bytes of path are sent: the
 * record on the ring buffer is offsetof(path) + path_len bytes long. */
struct enf_file_event {
	struct enf_event_header hdr;
	__u32 f_flags;   /* open flags (O_*) */
	__u32 f_mode;    /* FMODE_* */
	__u32 path_len;  /* bytes of path, without the NUL; 0 when unresolved */
	__u32 access;    /* ENF_OP_* bits the open asked for */
	char path[ENF_PATH_MAX];
};

/* An exec verdict (bprm_check_security), sent like enf_file_event. */
struct enf_exec_event {
	struct enf_event_header hdr;
	__u32 path_len;
	__u32 _pad;
	char path[ENF_PATH_MAX];
};

/* A path or mmap hook's verdict. The paths are sent back to back: the
 * record is offsetof(paths) + path_len + path2_len bytes long. */
struct enf_path_event {
	struct enf_event_header hdr;
	__u32 op;        /* ENF_OP_* bits decided (a symlink: CREATE | LINK) */
	__u32 path_len;  /* bytes of the first path; 0 when unresolved */
	__u32 path2_len; /* bytes of the second path; 0 when none or unresolved */
	__u32 has_path2; /* 1: rename (the destination) or link (the existing
			  * file) has a second path */
	char paths[2 * ENF_PATH_MAX];
};

/* Value of `enf_cgroup_policies` (key: cgroup2 id): the policy slots that
 * apply to tasks in the cgroup, and those that exclude it or a cgroup above
 * it. A new child cgroup starts from its parent's, adds the policies whose
 * selectors match its path and takes away those that exclude it. */
struct enf_cgroup_policies {
	__u64 slots;
	__u64 excluded;
};

/* Value of `enf_policies` (array, key: slot). Actions are effective: the
 * loader has already made deny/kill audit for an audit-mode policy. */
struct enf_policy {
	__u32 id;                      /* the plan's policy id, for records */
	__u32 dflt[ENF_CLASSES];       /* ENF_ACTION_* when no allow rule matched;
					* ALLOW: no default deny */
	__u32 deny_ops[ENF_CLASSES];   /* ops of deny/kill rules: an unresolved
					* path fails closed for these */
	__u32 audit_ops[ENF_CLASSES];  /* ops of audit rules, likewise */
	__u32 _pad;
};

/* Key of `enf_edges` and `enf_suffixes`: (matcher, state, FNV-1a of the
 * component or of the suffix). */
struct enf_edge_key {
	__u32 matcher;                 /* ENF_CLASS_* */
	__u32 state;
	__u64 hash;
};

/* Value of `enf_edges`. The name is compared after the hash lookup so that
 * a crafted component cannot pass for a policy one by hash collision. */
struct enf_edge {
	__u32 to;
	__u32 len;                     /* bytes of name, 1..=ENF_NAME_MAX */
	char name[ENF_NAME_BYTES];     /* zero-padded: compared 8 bytes at a time */
};

/* Value of `enf_suffixes`: the rules of the `*.ext` patterns open from the
 * state before the last component. */
struct enf_suffix {
	__u32 list_off;                /* rules: enf_rule_list[list_off..+list_len] */
	__u32 list_len;
	__u32 len;                     /* bytes of name (the suffix with its dot) */
	__u32 _pad;
	char name[ENF_NAME_BYTES];
};

/* Key of `enf_states`. */
struct enf_state_key {
	__u32 matcher;
	__u32 state;
};

/* Key of `enf_file_inodes`: an inode as the kernel names it. dev is the
 * kernel's dev_t of its super block (major << 20 | minor), not stat's st_dev. */
struct enf_inode_key {
	__u64 ino;
	__u32 dev;
	__u32 _pad;
};

/* Value of `enf_states`: what a state has besides literal edges. States
 * with none of it have no entry. */
struct enf_state {
	__u32 wildcard;                /* next state for any other component; 0: none */
	__u32 list_off;                /* accepting: enf_rule_list[list_off..+list_len] */
	__u32 list_len;
	__u32 max_suffix;              /* longest suffix entry from here; 0: none */
};

/* Value of `enf_rule_list` (array): every accept list, concatenated. A rule
 * is copied into each list it is on, so a match costs one lookup. */
struct enf_rule {
	__u32 id;                      /* the plan's rule id, for records */
	__u32 slot;                    /* its policy's slot */
	__u32 action;                  /* ENF_ACTION_*, effective */
	__u32 ops;                     /* ENF_OP_* (file rules); exec rules: unused */
	__u64 from_sets;               /* binary sets of `from`: the rule applies only
					* to a task in one of them; 0: any task */
	__u64 except_sets;             /* `except_from`: not to a task in one of them */
	__u64 parent_sets;             /* exec `parent`: only when the task's parent
					* process is in one of them; 0: any */
	__u64 ancestor_sets;           /* exec `ancestor`: only when some ancestor
					* process is in one of them; 0: any */
	__u32 uid_filter;              /* exec `uid`: 1: only for the real uids
					* enf_rule_uids lists under this rule's id */
	__u32 _pad;
};

/* Key of `enf_rule_uids` (hash, value unused): a uid an exec rule's `uid`
 * lists. */
struct enf_rule_uid {
	__u32 rule_id;
	__u32 uid;
};

/* Value of the task storage map `enf_task_bins`: the binary sets the task's
 * executable is in. Set at exec, copied at fork, written by user space
 * (key: a pidfd) for processes that ran before the plan loaded. */
struct enf_task_bins {
	__u64 sets;
	__u32 known;                   /* 1: sets is the executable's */
	__u32 _pad;
};

/* A network verdict (connect, bind, listen, send), sent whole. */
struct enf_net_event {
	struct enf_event_header hdr;
	__u32 op;                      /* one ENF_NET_* bit */
	__u16 family;                  /* AF_INET (2) or AF_INET6 (10), as decided */
	__u16 protocol;                /* IPPROTO_* of the socket (6 TCP, 17 UDP, ...) */
	__u16 port;                    /* host byte order */
	__u16 _pad;
	__u32 _pad2;
	__u8 addr[16];                 /* network byte order; AF_INET: the first 4 bytes */
};

/* Keys of the LPM tries `enf_net_v4` and `enf_net_v6`. */
struct enf_lpm_v4_key {
	__u32 prefixlen;
	__u8 addr[4];                  /* network byte order */
};

struct enf_lpm_v6_key {
	__u32 prefixlen;
	__u8 addr[16];
};

/* Value of both tries: the rules of the longest matching prefix and of every
 * shorter prefix covering it, enf_net_rules[list_off..+list_len]. */
struct enf_net_list {
	__u32 list_off;
	__u32 list_len;
};

/* Value of `enf_net_rules` (array): every prefix's list, concatenated. */
struct enf_net_rule {
	__u32 id;
	__u32 slot;
	__u32 action;                  /* ENF_ACTION_*, effective */
	__u32 ops;                     /* ENF_NET_* */
	__u32 families;                /* ENF_FAMILY_* */
	__u32 protocols;               /* ENF_PROTO_* */
	__u32 ports_off;               /* enf_net_ports[ports_off..+ports_len]; */
	__u32 ports_len;               /* 0: any port */
	__u64 from_sets;               /* as in enf_rule (LSM hooks only: the cgroup */
	__u64 except_sets;             /* programs cannot read task storage) */
};

/* Value of `enf_net_ports` (array): inclusive port ranges, host byte order. */
struct enf_port_range {
	__u16 lo;
	__u16 hi;
};

/* argv bytes a process exec record carries at most (NUL separators
 * included); longer command lines are cut and flagged. */
#define ENF_ARGS_MAX 4096

/* enf_proc_exec_event.proc_flags */
/* argv was longer than ENF_ARGS_MAX - 1 bytes and is cut. */
#define ENF_PROC_ARGS_TRUNCATED (1u << 0)
/* argv could not be read from the new image's memory (args_len is 0). */
#define ENF_PROC_ARGS_UNREAD (1u << 1)
/* The file name did not fit in ENF_PATH_MAX bytes, or could not be read. */
#define ENF_PROC_PATH_UNREAD (1u << 2)
/* The working directory (fs->pwd) did not resolve (too long, unreachable
 * or unreadable): cwd_len is 0 and user space knows no cwd from the record. */
#define ENF_PROC_CWD_UNRESOLVED (1u << 3)

/* A process exec'd (tp_btf/sched_process_exec). The header is the task
 * after the exec (pid, tid, uid, gid, comm of the new image; ktime_ns is
 * the exec time). data holds path_len bytes of the file name as given to
 * execve (relative when the caller gave a relative one) followed by
 * args_len bytes of argv, each argument NUL-terminated as in
 * /proc/<pid>/cmdline, followed by cwd_len bytes of the working directory
 * (absolute, no NUL; resolved as dentry_path.h resolves paths). Only
 * offsetof(data) + path_len + args_len + cwd_len bytes are sent. data has
 * room for the cwd after the largest path and argv. */
struct enf_proc_exec_event {
	struct enf_event_header hdr;
	__u64 start_ns;       /* task->start_boottime: ns since boot */
	__u64 slots;          /* policy slots of the task's cgroup */
	__u32 ppid;           /* real_parent's tgid */
	__u32 path_len;
	__u32 args_len;
	__u32 proc_flags;     /* ENF_PROC_* */
	__u32 cwd_len;        /* 0 when unresolved (ENF_PROC_CWD_UNRESOLVED) */
	__u32 _pad;
	char data[ENF_PATH_MAX + ENF_ARGS_MAX + ENF_PATH_MAX];
};

/* A new process (not a thread) was forked (tp_btf/sched_process_fork). The
 * header is the parent's but for cgroup_id, which is the child's. */
struct enf_proc_fork_event {
	struct enf_event_header hdr;
	__u32 parent_pid;     /* tgid */
	__u32 child_pid;      /* tgid of the new process */
	__u64 child_start_ns; /* child->start_boottime */
};

/* The last thread of a process exited (tp_btf/sched_process_exit). The
 * header's pid is the process's tgid. */
struct enf_proc_exit_event {
	struct enf_event_header hdr;
	__u32 exit_code;      /* wait status: (status << 8) | signal */
	__u32 _pad;
};

/* A kernel-class verdict, sent like enf_file_event: the record is
 * offsetof(path) + path_len bytes long. What arg and arg2 hold per
 * operation:
 * - mount: arg the mount flags (0 for move_mount), arg2 0 for mount(2) and 1
 *   for move_mount(2); path the mount point (mount(2) only);
 * - umount: arg the umount flags;
 * - ptrace: arg the tracee's pid and arg2 the PTRACE_MODE_* bits (attach),
 *   or arg the tracer's pid and arg2 0 (PTRACE_TRACEME);
 * - bpf: arg the bpf() command;
 * - module_load, kexec: arg the kernel_read_file_id (arg2 0; path the file)
 *   or the kernel_load_data_id (arg2 1);
 * - setuid_root, setgid_root: arg the new effective id, arg2 the old one;
 * - raw_socket, packet_socket: arg the address family, arg2 the type in the
 *   low 32 bits and the protocol in the high 32 bits;
 * - perf_event_open: arg the event type, arg2 its config;
 * - keyctl: arg the KEY_ALLOC_* flags;
 * - capabilities: arg the CAP_OPT_* options; system calls: nothing. */
struct enf_kernel_event {
	struct enf_event_header hdr;
	__u32 what;                    /* ENF_KERNEL_* */
	__u32 id;                      /* ENF_KOP_* bit, capability or syscall number */
	__u64 arg;
	__u64 arg2;
	__u32 path_len;                /* bytes of path; 0: no path */
	__u32 _pad;
	char path[ENF_PATH_MAX];
};

/* Key of `enf_kernel_lists`. */
struct enf_kernel_key {
	__u32 what;                    /* ENF_KERNEL_* */
	__u32 id;                      /* ENF_KOP_* bit, capability or syscall number */
};

/* Value of `enf_kernel_lists`: the key's rules, enf_kernel_rules[list_off..
 * +list_len] (entries are struct enf_rule; ops unused). */
struct enf_kernel_list {
	__u32 list_off;
	__u32 list_len;
};

/* Value of `enf_config` (array, key 0): settings of the whole plan. */
struct enf_config {
	__u32 rate_limit;              /* verdict records per second per (cgroup,
					* policy, rule); 0: no limit */
	__u32 daemon_tgid;             /* self-protection: the enforcer's pid; 0: off */
	__u32 daemon_exe_dev;          /* the enforcer's executable: its super block's
					* s_dev (kernel encoding, major<<20 | minor) */
	__u32 cgroup_selectors;        /* 1: walk a new cgroup's path through
					* ENF_MATCHER_CGROUP */
	__u64 daemon_exe_ino;          /* ... and inode number; 0: no exemption */
	__u32 pod_logs_dev;            /* Kubernetes namespace selectors: the
					* kubelet's pod log directory (s_dev) */
	__u32 _pad2;
	__u64 pod_logs_ino;            /* ... and inode number; 0: off */
	__u32 cgroup_globs;            /* entries of enf_cgroup_globs in use */
	__u32 _pad3;
};

/* Cgroup selector patterns `PARENT/PREFIX*SUFFIX` (`enf_cgroup_globs`, array):
 * a new cgroup whose parent's path is `parent` and whose name starts with
 * `prefix` and ends with `suffix` (not overlapping) matches. */
#define ENF_MAX_CGROUP_GLOBS 64
struct enf_cgroup_glob {
	__u32 slot;                    /* the pattern's policy */
	__u32 exclude;                 /* 1: an `exclude` pattern */
	__u32 parent_len;              /* 0: the root cgroup */
	__u32 prefix_len;
	__u32 suffix_len;
	__u32 _pad;
	char parent[ENF_NAME_BYTES];   /* each zero-padded, at most ENF_NAME_MAX */
	char prefix[ENF_NAME_BYTES];
	char suffix[ENF_NAME_BYTES];
};

/* Protected directories (self-protection; `enf_guard_dirs`, array): a path
 * at or below one is refused to tasks under enforcement. */
#define ENF_GUARD_DIRS 4
struct enf_guard_dir {
	__u32 len;                     /* bytes of path, no trailing '/'; 0: unused */
	__u32 _pad;
	char path[ENF_NAME_BYTES];     /* at most ENF_NAME_MAX bytes, zero-padded */
};

/*
 * Kubernetes namespace selectors (pods.h). The kubelet creates a pod's cgroup
 * (`pod<uid>` or `kubepods[-<qos>]-pod<uid_>.slice`), then the pod's log
 * directory `<namespace>_<pod name>_<uid>` in its pod log directory, and only
 * then asks the runtime for the pod's containers: the kernel gives the pod
 * cgroup its namespace's policies at that mkdir, and the containers' cgroups
 * inherit them when they are created.
 */
#define ENF_POD_UID_LEN 36       /* a UUID; a static pod's 32-hex-digit hash is zero-padded */
#define ENF_K8S_NAME_LEN 64      /* a namespace name (a DNS label, at most 63), zero-padded */

/* Key of `enf_pod_cgroups` (LRU hash -> the pod cgroup's id): the pod uid,
 * lowercase, with dashes (the systemd driver writes underscores). */
struct enf_pod_uid {
	char uid[ENF_POD_UID_LEN];
};

/* Key of `enf_k8s_namespaces`. */
struct enf_k8s_name {
	char name[ENF_K8S_NAME_LEN];
};

/* Value of `enf_k8s_namespaces`: a pod of the namespace gets slots
 * (existing | add) & ~remove (`exclude: namespaces` removes). */
struct enf_k8s_namespace {
	__u64 add;
	__u64 remove;
};

#endif /* ENFORCER_ABI_H */
