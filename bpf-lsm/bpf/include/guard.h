/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Self-protection: a task under enforcement (its cgroup has policies) may not
 * signal or ptrace-attach the enforcer, reach BPF objects by pin or id, or
 * read, write, create, delete or rename anything below the enforcer's
 * directories (its state directory and its bpffs pin directory). On only
 * when the loader wrote the enforcer's pid (enf_config.daemon_tgid); the
 * enforcer's own threads are never refused. A refusal is reported with
 * rule and policy ENF_RULE_SELF / ENF_POLICY_SELF.
 *
 * The enforcer's own CLI (status, events query, unload) must reach the
 * directories from an admin's shell, which a host-wide policy covers: a task
 * whose executable is the daemon's executable file (same inode on the same
 * super block, enf_config.daemon_exe_*) passes the directory checks. Only
 * those: signals, ptrace and bpf commands stay refused. A copy of the binary
 * is another inode and stays refused.
 */
#ifndef ENFORCER_GUARD_H
#define ENFORCER_GUARD_H

#include "common.h"
#include "maps.h"
#include "ratelimit.h"
#include "kernel_ops.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ENF_GUARD_DIRS);
	__type(key, __u32);
	__type(value, struct enf_guard_dir);
} enf_guard_dirs SEC(".maps");

/* The cgroup2 root's id (its kernfs node is the first). Tasks there are the
 * host's own (init, which stops services; an admin on a host without
 * systemd): never guarded, so that a host-wide policy leaves the enforcer
 * manageable. */
#define ENF_ROOT_CGROUP_ID 1

/* The enforcer's pid when self-protection is on and the current task is
 * neither the enforcer nor in the root cgroup; 0 otherwise. */
static __always_inline __u32 enf_guard_daemon(void)
{
	__u32 zero = 0, tgid;
	struct enf_config *c = bpf_map_lookup_elem(&enf_config, &zero);

	if (!c || !c->daemon_tgid || bpf_get_current_cgroup_id() == ENF_ROOT_CGROUP_ID)
		return 0;
	tgid = bpf_get_current_pid_tgid() >> 32;
	return tgid == c->daemon_tgid ? 0 : c->daemon_tgid;
}

/* Whether the current task runs the enforcer's executable: mm->exe_file is
 * the same inode (number and super block) as the daemon's. Kernel threads
 * have no mm: the reads give 0, which never matches a configured inode. */
static __always_inline bool enf_guard_daemon_exe(void)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u32 zero = 0;
	struct enf_config *c = bpf_map_lookup_elem(&enf_config, &zero);
	struct inode *inode;

	if (!c || !c->daemon_exe_ino)
		return false;
	inode = BPF_CORE_READ(task, mm, exe_file, f_inode);
	if (!inode)
		return false;
	return BPF_CORE_READ(inode, i_ino) == c->daemon_exe_ino &&
	       BPF_CORE_READ(inode, i_sb, s_dev) == c->daemon_exe_dev;
}

struct enf_guard_walk {
	const char *path;
	__u32 len;
	__u32 hit;
};

/* Whether the path is dir `i` or below it. The comparison is the matcher's
 * (path_walk.h): 8 bytes at a time against the zero-padded name. */
static long enf_guard_step(__u32 i, void *data)
{
	struct enf_guard_walk *w = data;
	struct enf_guard_dir *d;
	__u32 key = i, n;

	d = bpf_map_lookup_elem(&enf_guard_dirs, &key);
	if (!d)
		return 1;
	n = d->len;
	if (!n || n > ENF_NAME_MAX || n > w->len || !enf_name_eq(w->path, 0, n, d->path))
		return 0;
	if (n == w->len || w->path[n & (ENF_NAME_BYTES - 1)] == '/') {
		w->hit = 1;
		return 1;
	}
	return 0;
}

/* Whether a resolved path (len bytes, in a buffer of ENF_PATH_MAX bytes and
 * ENF_PATH_SLACK more) is protected from the current task, a task under
 * enforcement that does not run the enforcer's executable. */
static __always_inline bool enf_guarded_path(const char *path, __u32 len)
{
	struct enf_guard_walk w = { .path = path, .len = len };

	if (!len || !enf_guard_daemon())
		return false;
	bpf_loop(ENF_GUARD_DIRS, enf_guard_step, &w, 0);
	return w.hit && !enf_guard_daemon_exe();
}

/* The decision of a self-protection refusal. */
static __always_inline void enf_guard_decision(struct enf_decision *d)
{
	d->action = ENF_ACTION_DENY;
	d->rule_id = ENF_RULE_SELF;
	d->policy_id = ENF_POLICY_SELF;
	d->flags = 0;
}

/* Whether the current task is under enforcement. */
static __always_inline bool enf_in_scope(__u64 *cgroup_id)
{
	struct enf_cgroup_policies *scope;

	*cgroup_id = bpf_get_current_cgroup_id();
	scope = bpf_map_lookup_elem(&enf_cgroup_policies, cgroup_id);
	return scope && scope->slots;
}

/* Refuses and reports a self-protection kernel operation (ENF_GUARD_*). */
static __always_inline int enf_guard_refuse(__u32 id, __u64 arg, __u64 arg2, __u64 cgroup_id)
{
	struct enf_decision d;

	enf_guard_decision(&d);
	enf_kernel_report(ENF_KERNEL_GUARD, id, arg, arg2, NULL, &d, cgroup_id, 0);
	return -EPERM;
}

/* A signal or an attach-mode ptrace to `target` from a task under
 * enforcement: refused (-EPERM) when target is the enforcer; 1: not guarded. */
static __always_inline int enf_guard_task(struct task_struct *target, __u32 id, __u64 arg2)
{
	__u32 daemon = enf_guard_daemon();
	__u64 cgroup_id;

	if (!daemon || BPF_CORE_READ(target, tgid) != (int)daemon || !enf_in_scope(&cgroup_id))
		return 1;
	return enf_guard_refuse(id, daemon, arg2, cgroup_id);
}

#endif /* ENFORCER_GUARD_H */
