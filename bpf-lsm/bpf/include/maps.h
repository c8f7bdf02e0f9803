/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Maps shared by the hook programs. Sizes here are defaults: the loader sets
 * max_entries from the plan, so no rule count is capped by this file. */
#ifndef ENFORCER_MAPS_H
#define ENFORCER_MAPS_H

#include "abi.h"

/* Verdict records for user space. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} enf_events SEC(".maps");

/* cgroup2 id -> scope: the cgroups a plan applies to. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, struct enf_cgroup_scope);
} enf_scoped_cgroups SEC(".maps");

/* Counters the kernel side keeps for user space (ENF_STAT_*). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ENF_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} enf_stats SEC(".maps");

static __always_inline void enf_count(__u32 stat)
{
	__u64 *v = bpf_map_lookup_elem(&enf_stats, &stat);

	if (v)
		*v += 1;
}

/* Scratch space for one file event (too big for the 512-byte stack). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct enf_file_event);
} enf_file_scratch SEC(".maps");

#endif /* ENFORCER_MAPS_H */
