// SPDX-License-Identifier: GPL-2.0-only
/*
 * tp_btf/sched_process_fork: a new task (process or thread) runs the same
 * executable as its parent until it execs, so it gets the parent's binary
 * sets. It fires before the child first runs. A parent without an entry
 * leaves the child unknown too.
 */
#include "include/common.h"
#include "include/maps.h"

SEC("tp_btf/sched_process_fork")
int BPF_PROG(enf_binary_fork, struct task_struct *parent, struct task_struct *child)
{
	struct enf_task_bins *p, *c;

	p = bpf_task_storage_get(&enf_task_bins, parent, 0, 0);
	if (!p)
		return 0;
	c = bpf_task_storage_get(&enf_task_bins, child, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!c) {
		/* On 6.12 tracing programs give up on a busy storage lock. */
		enf_count(ENF_STAT_BINARY_STORE_FAILED);
		return 0;
	}
	c->sets = p->sets;
	c->known = p->known;
	return 0;
}
