// SPDX-License-Identifier: GPL-2.0-only
/*
 * tp_btf/sched_process_exit: a task in scope exits. Reported once per
 * process, by its last thread: signal->live has already been decremented
 * when the tracepoint fires, so it is 0 only for the last one. (Newer kernels
 * pass `group_dead` as a second argument; 6.1 does not.)
 */
#include "include/process.h"

SEC("tp_btf/sched_process_exit")
int BPF_PROG(enf_proc_exit, struct task_struct *p)
{
	struct enf_proc_exit_event ev = {};
	__u64 cgroup_id;

	if (BPF_CORE_READ(p, signal, live.counter) != 0)
		return 0;
	cgroup_id = bpf_get_current_cgroup_id();
	if (!enf_proc_scope(cgroup_id))
		return 0;
	enf_fill_header(&ev.hdr, ENF_EVENT_PROC_EXIT, ENF_VERDICT_ALLOW, cgroup_id, ENF_RULE_NONE,
			ENF_POLICY_NONE, 0);
	ev.exit_code = (__u32)BPF_CORE_READ(p, exit_code);
	enf_proc_output(&ev, sizeof(ev));
	return 0;
}
