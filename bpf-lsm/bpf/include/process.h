/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Shared logic of the process tracepoints (process_*.bpf.c): the scope check
 * and the records that feed user space's process table. Only tasks in a
 * cgroup with policies are reported, so a process out of scope costs one
 * hash lookup.
 */
#ifndef ENFORCER_PROCESS_H
#define ENFORCER_PROCESS_H

#include "common.h"
#include "maps.h"

/* An exec record is assembled here (8 KiB: too big for the stack). The
 * union also puts the fork and exit records, built on the stack, in the
 * object's BTF, where the ABI layout test finds them. */
union enf_proc_record {
	struct enf_proc_exec_event exec;
	struct enf_proc_fork_event fork;
	struct enf_proc_exit_event exit;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, union enf_proc_record);
} enf_proc_scratch SEC(".maps");

/* The policy slots of cgroup `id`, 0 when it has none. */
static __always_inline __u64 enf_proc_scope(__u64 id)
{
	struct enf_cgroup_policies *scope = bpf_map_lookup_elem(&enf_cgroup_policies, &id);

	return scope ? scope->slots : 0;
}

/* The cgroup2 id of a task other than current (a fork's child). */
static __always_inline __u64 enf_task_cgroup_id(struct task_struct *t)
{
	return BPF_CORE_READ(t, cgroups, dfl_cgrp, kn, id);
}

static __always_inline void enf_proc_output(void *rec, __u64 size)
{
	if (bpf_ringbuf_output(&enf_events, rec, size, 0))
		enf_count(ENF_STAT_RINGBUF_DROPS);
}

#endif /* ENFORCER_PROCESS_H */
