// SPDX-License-Identifier: GPL-2.0-only
/*
 * tp_btf/sched_process_exec: a task in scope exec'd. Reports the file name
 * and argv of the new image for user space's process table and its `alert`
 * rules. bpf_d_path is not allowed here, so the path is the name given to
 * execve (bprm->filename); user space reads /proc/<pid>/exe when it is
 * relative. The working directory is fs->pwd, resolved by dentry_path.h.
 */
#include "include/process.h"
#include "include/dentry_path.h"

SEC("tp_btf/sched_process_exec")
int BPF_PROG(enf_proc_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	union enf_proc_record *rec;
	struct enf_proc_exec_event *ev;
	__u64 cgroup_id, slots, arg_start, arg_end, n;
	__u32 zero = 0, path_len = 0, flags = 0, off, cwd_off, cwd_len = 0;
	const char *filename;
	long r;

	cgroup_id = bpf_get_current_cgroup_id();
	slots = enf_proc_scope(cgroup_id);
	if (!slots)
		return 0;
	rec = bpf_map_lookup_elem(&enf_proc_scratch, &zero);
	if (!rec)
		return 0;
	ev = &rec->exec;

	enf_fill_header(&ev->hdr, ENF_EVENT_PROC_EXEC, ENF_VERDICT_ALLOW, cgroup_id, ENF_RULE_NONE,
			ENF_POLICY_NONE, 0);
	ev->start_ns = BPF_CORE_READ(p, start_boottime);
	ev->slots = slots;
	ev->ppid = BPF_CORE_READ(p, real_parent, tgid);

	filename = BPF_CORE_READ(bprm, filename);
	r = bpf_probe_read_kernel_str(ev->data, ENF_PATH_MAX, filename);
	if (r > 0)
		path_len = (__u32)(r - 1) & (ENF_PATH_MAX - 1);
	else
		flags |= ENF_PROC_PATH_UNREAD;

	/* The new image's argv, as the kernel just copied it to its stack. */
	arg_start = BPF_CORE_READ(p, mm, arg_start);
	arg_end = BPF_CORE_READ(p, mm, arg_end);
	n = arg_end > arg_start ? arg_end - arg_start : 0;
	if (n > ENF_ARGS_MAX - 1) {
		n = ENF_ARGS_MAX - 1;
		flags |= ENF_PROC_ARGS_TRUNCATED;
	}
	n &= ENF_ARGS_MAX - 1;
	off = path_len & (ENF_PATH_MAX - 1);
	if (n && bpf_probe_read_user(&ev->data[off], n, (const void *)arg_start)) {
		n = 0;
		flags |= ENF_PROC_ARGS_UNREAD;
	}

	/* The cwd after argv: current is the task that exec'd, whose fs->root
	 * the walk stops at. The mask bounds the write for the verifier; the
	 * barrier keeps clang from dropping it as redundant. */
	cwd_off = off + (__u32)n;
	barrier_var(cwd_off);
	cwd_off &= ENF_PATH_MAX + ENF_ARGS_MAX - 1;
	r = enf_dentry_path(BPF_CORE_READ(p, fs, pwd.mnt), BPF_CORE_READ(p, fs, pwd.dentry),
			    &ev->data[cwd_off]);
	if (r > 0)
		cwd_len = (__u32)r & (ENF_PATH_MAX - 1);
	else
		flags |= ENF_PROC_CWD_UNRESOLVED;

	ev->path_len = path_len;
	ev->args_len = (__u32)n;
	ev->proc_flags = flags;
	ev->cwd_len = cwd_len;
	ev->_pad = 0;
	enf_proc_output(ev, offsetof(struct enf_proc_exec_event, data) + cwd_off + cwd_len);
	return 0;
}
