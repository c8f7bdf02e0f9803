/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * `from` / `except_from`: a rule with binary filters applies only to a task
 * whose executable is (from) or is not (except_from) in one of the rule's
 * binary sets. The task's sets live in the task storage map enf_task_bins,
 * set at exec (binary_exec.bpf.c), copied at fork (binary_fork.bpf.c) and
 * backfilled by user space for processes that ran before the plan loaded.
 * Exec rules' `parent` and `ancestor` check the same sets on the processes
 * above the task (enf_lineage_check), and `uid` its real uid.
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

/* The walk up the process tree: processes are decided by their thread group
 * leader (a thread's sets are its process's; user space backfills leaders
 * where thread pidfds are missing). Kernel threads have no executable: in no
 * set, and known. */
struct enf_lineage {
	struct task_struct *task;      /* the process whose parent comes next */
	__u64 parent;                  /* the parent's sets */
	__u64 ancestors;               /* union of the ancestors' sets so far */
	__u32 parent_unknown;
	__u32 unknown;                 /* an ancestor's sets are unknown */
	__u32 done;                    /* reached the top */
	__u32 parent_only;
};

#define ENF_PF_KTHREAD 0x00200000
/* Processes deep: a longer chain is not walked to its end and counts as
 * unknown (deny rules apply, fail closed). */
#define ENF_MAX_ANCESTORS 4096

static long enf_lineage_step(__u32 i, void *ctx)
{
	struct enf_lineage *l = ctx;
	struct task_struct *t = l->task, *p, *leader;
	struct enf_task_bins *b;
	__u64 sets = 0;
	__u32 unknown = 0;

	if (!t)
		goto top;
	p = t->real_parent;
	/* The idle task is its own parent; nothing is above it. */
	if (!p || p == t || p->pid == 0)
		goto top;
	leader = p->group_leader;
	if (!leader)
		goto top;
	if (!(leader->flags & ENF_PF_KTHREAD)) {
		b = bpf_task_storage_get(&enf_task_bins, leader, 0, 0);
		if (b && b->known)
			sets = b->sets;
		else
			unknown = 1;
	}
	if (i == 0) {
		l->parent = sets;
		l->parent_unknown = unknown;
	}
	l->ancestors |= sets;
	l->unknown |= unknown;
	l->task = leader;
	/* init: the processes above it belong to no process tree of ours. */
	if (l->parent_only || leader->pid == 1)
		goto top;
	return 0;
top:
	l->done = 1;
	return 1;
}

#define ENF_LINEAGE_MATCH 1
#define ENF_LINEAGE_UNKNOWN 2

/*
 * Whether the current task's parent process is in one of `parent_sets` (0:
 * no condition) and some ancestor process in one of `ancestor_sets`:
 * ENF_LINEAGE_MATCH, or ENF_LINEAGE_UNKNOWN when a process it needed has
 * unknown sets. A global function: the verifier checks its loop once per
 * program, not at every rule check that inlines it.
 */
__noinline int enf_lineage_check(__u64 parent_sets, __u64 ancestor_sets)
{
	struct enf_lineage l = {};
	bool ok = true;

	l.task = bpf_get_current_task_btf();
	l.parent_only = ancestor_sets ? 0 : 1;
	bpf_loop(ENF_MAX_ANCESTORS, enf_lineage_step, &l, 0);
	if (parent_sets) {
		if (l.parent_unknown || !l.done)
			return ENF_LINEAGE_UNKNOWN;
		ok = (l.parent & parent_sets) != 0;
	}
	if (ancestor_sets) {
		if (l.unknown || !l.done)
			return ENF_LINEAGE_UNKNOWN;
		ok = ok && (l.ancestors & ancestor_sets) != 0;
	}
	return ok ? ENF_LINEAGE_MATCH : 0;
}

/* `parent` / `ancestor` of an exec rule. An unknown lineage is handled as an
 * unknown binary: deny, kill and audit rules apply (flagged), allow rules do
 * not. */
static __always_inline bool enf_lineage_applies(struct enf_hits *h, const struct enf_rule *r)
{
	int l;

	if (!(r->parent_sets | r->ancestor_sets))
		return true;
	l = enf_lineage_check(r->parent_sets, r->ancestor_sets);
	if (l & ENF_LINEAGE_UNKNOWN) {
		if (r->action == ENF_ACTION_ALLOW)
			return false;
		h->binary_unknown = 1;
		enf_count(ENF_STAT_BINARY_UNKNOWN);
		return true;
	}
	return (l & ENF_LINEAGE_MATCH) != 0;
}

/* Whether an exec rule's `uid` lets it apply to the current task (its real
 * uid, as records report it). */
static __always_inline bool enf_uid_applies(const struct enf_rule *r)
{
	struct enf_rule_uid key = {};

	if (!r->uid_filter)
		return true;
	key.rule_id = r->id;
	key.uid = (__u32)bpf_get_current_uid_gid();
	return bpf_map_lookup_elem(&enf_rule_uids, &key) != NULL;
}

static __always_inline bool enf_binary_applies(struct enf_hits *h, const struct enf_rule *r)
{
	return enf_binary_sets_apply(h, r->action, r->from_sets, r->except_sets) &&
	       enf_uid_applies(r) && enf_lineage_applies(h, r);
}

#endif /* ENFORCER_BINARY_SETS_H */
