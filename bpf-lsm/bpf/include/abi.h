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

#define ENF_ABI_VERSION 1

/* Paths are matched up to PATH_MAX: no 200- or 256-byte truncation. */
#define ENF_PATH_MAX 4096
#define ENF_COMM_LEN 16

/* Event kinds (enf_event_header.kind). */
#define ENF_EVENT_FILE_OPEN 1

/* Verdicts (enf_event_header.verdict). */
#define ENF_VERDICT_ALLOW 0
#define ENF_VERDICT_DENY 1
#define ENF_VERDICT_AUDIT 2

/* Modes (enf_cgroup_scope.mode). */
#define ENF_MODE_ENFORCE 0
#define ENF_MODE_AUDIT 1

/* Event flags (enf_event_header.flags). */
/* The path could not be resolved completely (too long or unreachable): a
 * deny rule fails closed and says so with this flag. */
#define ENF_FLAG_PATH_UNRESOLVED (1u << 0)

/* Indexes into the per-CPU `enf_stats` array. */
#define ENF_STAT_RINGBUF_DROPS 0
#define ENF_STAT_PATH_UNRESOLVED 1
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
	__u32 rule_id;    /* index into the loaded plan's rule table */
	__u32 flags;      /* ENF_FLAG_* */
	char comm[ENF_COMM_LEN];
};

/* A file_open verdict. Only the first path_len bytes of path are sent: the
 * record on the ring buffer is offsetof(path) + path_len bytes long. */
struct enf_file_event {
	struct enf_event_header hdr;
	__u32 f_flags;   /* open flags (O_*) */
	__u32 f_mode;    /* FMODE_* */
	__u32 path_len;  /* bytes of path, without the NUL; 0 when unresolved */
	__u32 _pad;
	char path[ENF_PATH_MAX];
};

/* Value of `enf_scoped_cgroups`: a cgroup the plan applies to. */
struct enf_cgroup_scope {
	__u32 mode;      /* ENF_MODE_* */
	__u32 _pad;
};

/* Value of `enf_file_exact`, keyed by enf_path_hash() of the full path. */
struct enf_path_rule {
	__u32 rule_id;
	__u32 path_len;  /* guards against a hash collision on length */
};

#endif /* ENFORCER_ABI_H */
