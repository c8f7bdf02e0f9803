// SPDX-License-Identifier: GPL-2.0-only
/*
 * lsm/file_open: decides opening a file by its resolved path, and by its
 * inode (inode_alias.h), against the file matcher, for tasks in a cgroup
 * with policies.
 */
#include "include/common.h"
#include "include/maps.h"
#include "include/decide.h"
#include "include/ratelimit.h"
#include "include/guard.h"

#define O_APPEND 02000
/* Set in f_flags by the kernel's own opens for exec (binary, interpreter). */
#define ENF_FMODE_EXEC 0x20
#define ENF_FMODE_READ 0x1
#define ENF_FMODE_WRITE 0x2

/* The file operations an open asks for. An exec open is `exec`, not `read`,
 * as policy-lang models it; an append is also a write, so that a `write`
 * deny cannot be side-stepped with O_APPEND. */
static __always_inline __u32 enf_open_access(__u32 f_flags, __u32 f_mode)
{
	__u32 access = 0;

	if (f_flags & ENF_FMODE_EXEC)
		return ENF_OP_EXEC;
	if (f_mode & ENF_FMODE_READ)
		access |= ENF_OP_READ;
	if (f_mode & ENF_FMODE_WRITE) {
		access |= ENF_OP_WRITE;
		if (f_flags & O_APPEND)
			access |= ENF_OP_APPEND;
	}
	return access;
}

SEC("lsm/file_open")
int BPF_PROG(enf_file_open, struct file *file, int ret)
{
	struct enf_cgroup_policies *scope;
	struct enf_file_scratch *s;
	struct enf_decision d;
	__u32 zero = 0, flags, path_len = 0, access;
	__u64 cgroup_id;
	bool resolved;
	long n;

	if (ret != 0)
		return enf_prior_verdict(ret);

	cgroup_id = bpf_get_current_cgroup_id();
	scope = bpf_map_lookup_elem(&enf_cgroup_policies, &cgroup_id);
	if (!scope || !scope->slots)
		return 0;

	s = bpf_map_lookup_elem(&enf_file_scratch, &zero);
	if (!s)
		return 0;
	s->ev.f_flags = BPF_CORE_READ(file, f_flags);
	s->ev.f_mode = BPF_CORE_READ(file, f_mode);
	access = enf_open_access(s->ev.f_flags, s->ev.f_mode);

	/* The helper takes a non-const path; it only reads it. */
	n = bpf_d_path((struct path *)&file->f_path, s->ev.path, ENF_PATH_MAX);
	resolved = n > 0;
	if (resolved)
		/* bpf_d_path counts the terminating NUL. */
		path_len = (__u32)(n - 1) & (ENF_PATH_MAX - 1);
	else
		enf_count(ENF_STAT_PATH_UNRESOLVED);

	if (resolved && enf_guarded_path(s->ev.path, path_len))
		enf_guard_decision(&d);
	else if (enf_decide_file(file, s->ev.path, path_len, resolved, ENF_CLASS_FILE, access,
				 scope->slots, &d))
		return 0;
	if (d.action == ENF_ACTION_ALLOW)
		return 0;

	flags = d.flags | (resolved ? 0 : ENF_FLAG_PATH_UNRESOLVED);
	if (d.action == ENF_ACTION_KILL && bpf_send_signal(SIGKILL) == 0)
		flags |= ENF_FLAG_KILLED;
	enf_fill_header(&s->ev.hdr, ENF_EVENT_FILE_OPEN, enf_verdict_of(d.action), cgroup_id,
			d.rule_id, d.policy_id, flags);
	s->ev.path_len = path_len;
	s->ev.access = access;
	enf_emit(&s->ev.hdr,
		 offsetof(struct enf_file_event, path) + (path_len & (ENF_PATH_MAX - 1)));

	return d.action >= ENF_ACTION_DENY ? -EPERM : 0;
}
