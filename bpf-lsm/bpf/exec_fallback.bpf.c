// SPDX-License-Identifier: GPL-2.0-only
/*
 * tp_btf/sched_process_exec as enf_exec_fallback: exec rules on a kernel
 * without BPF LSM. The exec has succeeded by the time this tracepoint runs
 * (the old image is gone), so nothing can be refused; a deny or kill rule
 * sends SIGKILL instead. The signal is pending before the task returns to
 * user space, so the new program never runs an instruction.
 *
 * The path is that of the file the kernel is about to run (for a script:
 * its interpreter, as bprm->file holds after the binfmt rounds). bpf_d_path
 * is not allowed in a tracepoint, so dentry_path.h resolves it. The script
 * itself is closed by now: when an interpreter took over, the absolute name
 * given to execve (bprm->filename) is decided too and the stricter decision
 * wins, so a rule on a script's path covers `/path/to/script` (a relative
 * name is not resolved here).
 */
#include "include/common.h"
#include "include/maps.h"
#include "include/decide.h"
#include "include/dentry_path.h"
#include "include/exec.h"
#include "include/memfd.h"

/* When an interpreter took over (bprm->interp was changed from the name given
 * to execve), decides the absolute name given to execve too; true when that
 * decision is stricter than `d`, which it then replaces. The dentry_path.h
 * buffer is free again once the executable's path is resolved. */
static __always_inline bool enf_exec_script_name(struct linux_binprm *bprm, __u64 slots,
						 struct enf_decision *d)
{
	struct enf_dpath_scratch *ds;
	const char *filename = BPF_CORE_READ(bprm, filename);
	struct enf_decision d2;
	__u32 zero = 0;
	long n;

	if (!filename || BPF_CORE_READ(bprm, interp) == filename)
		return false;
	ds = bpf_map_lookup_elem(&enf_dpath_scratch, &zero);
	if (!ds)
		return false;
	n = bpf_probe_read_kernel_str(ds->buf, ENF_PATH_MAX, filename);
	if (n <= 1 || ds->buf[0] != '/')
		return false;
	if (enf_decide(ds->buf, (__u32)(n - 1) & (ENF_PATH_MAX - 1), true, ENF_CLASS_EXEC,
		       ENF_OP_EXEC, slots, &d2))
		return false;
	if (d2.action <= d->action)
		return false;
	*d = d2;
	return true;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(enf_exec_fallback, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	struct enf_exec_scratch *s;
	struct enf_decision d;
	__u32 flags, path_len = 0;
	__u16 verdict;
	__u64 cgroup_id, slots = 0;
	struct file *file;
	bool resolved, memfd;
	long n = -1;

	s = enf_exec_begin(&cgroup_id, &slots);
	if (!s)
		return 0;

	file = BPF_CORE_READ(bprm, file);
	if (file)
		n = enf_dentry_path(BPF_CORE_READ(file, f_path.mnt), BPF_CORE_READ(file, f_path.dentry),
				    s->ev.path);
	resolved = n > 0;
	if (resolved)
		path_len = (__u32)n & (ENF_PATH_MAX - 1);
	else
		enf_count(ENF_STAT_PATH_UNRESOLVED);

	if (enf_decide_exec(file, s->ev.path, path_len, resolved, slots, &d, &memfd))
		return 0;
	if (memfd && d.action != ENF_ACTION_ALLOW) {
		/* As in bprm_check_security: decided as what it is, named for the
		 * record. A memfd's dentry is its own root (dentry_path.h would say
		 * `/`): the record has `/` and its name, `memfd:NAME`. */
		resolved = true;
		s->ev.path[0] = '/';
		n = bpf_probe_read_kernel_str(s->ev.path + 1, ENF_PATH_MAX - 1,
					      BPF_CORE_READ(file, f_path.dentry, d_name.name));
		path_len = n > 1 ? (__u32)n & (ENF_PATH_MAX - 1) : 1;
	}
	if (d.action < ENF_ACTION_KILL && enf_exec_script_name(bprm, slots, &d)) {
		/* The script's name decided: it is what the record names. */
		n = bpf_probe_read_kernel_str(s->ev.path, ENF_PATH_MAX, BPF_CORE_READ(bprm, filename));
		resolved = n > 1;
		path_len = resolved ? (__u32)(n - 1) & (ENF_PATH_MAX - 1) : 0;
	}
	if (d.action == ENF_ACTION_ALLOW)
		return 0;

	flags = d.flags | ENF_FLAG_EXEC_FALLBACK | (resolved ? 0 : ENF_FLAG_PATH_UNRESOLVED) |
		(memfd ? ENF_FLAG_MEMFD : 0);
	verdict = enf_verdict_of(d.action);
	/* Deny and kill both end the process here: it is the only way left. */
	if (d.action >= ENF_ACTION_DENY && bpf_send_signal(SIGKILL) == 0) {
		flags |= ENF_FLAG_KILLED;
		verdict = ENF_VERDICT_KILL;
	}
	enf_exec_report(s, verdict, cgroup_id, &d, flags, path_len);
	return 0;
}
