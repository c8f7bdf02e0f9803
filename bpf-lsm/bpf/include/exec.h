/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What the two exec programs share: lsm/bprm_check_security (BPF LSM) and
 * tp_btf/sched_process_exec (enf_exec_fallback, kernels without it) find the
 * task's policies and scratch the same way and send the same record.
 */
#ifndef ENFORCER_EXEC_H
#define ENFORCER_EXEC_H

#include "common.h"
#include "maps.h"
#include "decide.h"
#include "ratelimit.h"

/* The scratch for the current task's exec record, with its cgroup and policy
 * slots; NULL when no policy applies to the task. */
static __always_inline struct enf_exec_scratch *enf_exec_begin(__u64 *cgroup_id, __u64 *slots)
{
	struct enf_cgroup_policies *scope;
	__u32 zero = 0;

	*cgroup_id = bpf_get_current_cgroup_id();
	scope = bpf_map_lookup_elem(&enf_cgroup_policies, cgroup_id);
	if (!scope || !scope->slots)
		return NULL;
	*slots = scope->slots;
	return bpf_map_lookup_elem(&enf_exec_scratch, &zero);
}

/* Sends the record of `d` for the path already in s->ev.path. */
static __always_inline void enf_exec_report(struct enf_exec_scratch *s, __u16 verdict,
					    __u64 cgroup_id, const struct enf_decision *d,
					    __u32 flags, __u32 path_len)
{
	enf_fill_header(&s->ev.hdr, ENF_EVENT_EXEC, verdict, cgroup_id, d->rule_id, d->policy_id,
			flags);
	s->ev.path_len = path_len;
	s->ev._pad = 0;
	enf_emit(&s->ev.hdr,
		 offsetof(struct enf_exec_event, path) + (path_len & (ENF_PATH_MAX - 1)));
}

#endif /* ENFORCER_EXEC_H */
