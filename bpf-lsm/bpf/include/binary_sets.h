/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * `from` / `except_from`: a rule with binary filters applies only to a task
 * whose executable is (from) or is not (except_from) in one of the rule's
 * binary sets. The task's sets live in the task storage map enf_task_bins,
 * set at exec (binary_exec.bpf.c), copied at fork (binary_fork.bpf.c) and
 * backfilled by user space for processes that ran before the plan loaded.
 */
#ifndef ENFORCER_BINARY_SETS_H
#define ENFORCER_BINARY_SETS_H

#include "common.h"
#include "maps.h"

/* Whether rule `r` applies to the current task as far as its binary filters
 * go. A task of unknown executable cannot be checked: deny, kill and audit
 * rules apply (fail closed; the decision is flagged), allow rules do not. */
static __always_inline bool enf_binary_sets_apply(struct enf_hits *h, __u32 action, __u64 from,
						  __u64 except)
{
	struct enf_task_bins *b;

	if (!(from | except))
		return true;
	b = bpf_task_storage_get(&enf_task_bins, bpf_get_current_task_btf(), 0, 0);
	if (!b || !b->known) {
		if (action == ENF_ACTION_ALLOW)
			return false;
		h->binary_unknown = 1;
		enf_count(ENF_STAT_BINARY_UNKNOWN);
		return true;
	}
	if (from && !(b->sets & from))
		return false;
	return !(b->sets & except);
}

static __always_inline bool enf_binary_applies(struct enf_hits *h, const struct enf_rule *r)
{
	return enf_binary_sets_apply(h, r->action, r->from_sets, r->except_sets);
}

#endif /* ENFORCER_BINARY_SETS_H */
