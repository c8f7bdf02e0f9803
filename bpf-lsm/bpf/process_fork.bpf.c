// SPDX-License-Identifier: GPL-2.0-only
/*
 * tp_btf/sched_process_fork: a task in scope started a new process. Threads
 * (CLONE_THREAD) are not processes and are not reported. The child's cgroup
 * decides the scope: with CLONE_INTO_CGROUP it need not be the parent's.
 */
#include "include/process.h"

SEC("tp_btf/sched_process_fork")
int BPF_PROG(enf_proc_fork, struct task_struct *parent, struct task_struct *child)
{
	struct enf_proc_fork_event ev = {};
	__u64 cgroup_id;
	__u32 pid;

	pid = BPF_CORE_READ(child, pid);
	if (pid != BPF_CORE_READ(child, tgid))
		return 0;
	cgroup_id = enf_task_cgroup_id(child);
	if (!enf_proc_scope(cgroup_id))
		return 0;
	enf_fill_header(&ev.hdr, ENF_EVENT_PROC_FORK, ENF_VERDICT_ALLOW, cgroup_id, ENF_RULE_NONE,
			ENF_POLICY_NONE, 0);
	ev.parent_pid = BPF_CORE_READ(parent, tgid);
	ev.child_pid = pid;
	ev.child_start_ns = BPF_CORE_READ(child, start_boottime);
	enf_proc_output(&ev, sizeof(ev));
	return 0;
}
