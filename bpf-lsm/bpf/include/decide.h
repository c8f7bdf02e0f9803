/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The decision for one operation, mirroring policy-lang's eval.rs
 * (Evaluator::decide_one):
 *
 * - per policy that applies to the task: a kill rule matched -> kill; else a
 *   deny rule -> deny; else the class's default deny unless an allow rule
 *   matched -> the default's action; else an audit rule -> audit; else none;
 * - across policies the most restrictive wins (kill > deny > audit > allow).
 *
 * Audit-mode policies reach here with their deny/kill rules and defaults
 * already turned into audit by the loader, as the plan compiler does.
 * Ties between rules of equal action are reported as the lowest policy slot,
 * then the lowest rule id (eval.rs picks by name; the verdict is the same).
 */
#ifndef ENFORCER_DECIDE_H
#define ENFORCER_DECIDE_H

#include "common.h"
#include "maps.h"
#include "path_walk.h"
#include "inode_alias.h"

struct enf_decision {
	__u32 action;     /* ENF_ACTION_* */
	__u32 rule_id;    /* ENF_RULE_NONE when a default or a failed resolve decided */
	__u32 policy_id;  /* ENF_POLICY_NONE when nothing decided */
	__u32 flags;      /* ENF_FLAG_DEFAULT */
};

struct enf_decide_ctx {
	struct enf_hits *hits;
	struct enf_decision *d;
	__u64 slots;
	__u32 class;
	__u32 access;
	__u32 unresolved;  /* no path: every deny/audit rule may have matched */
	__u32 no_default;  /* the class default does not cover this operation */
};

/* The verdict of policy slot i; the strongest so far is kept in ctx->d. */
static long enf_decide_step(__u32 i, void *data)
{
	struct enf_decide_ctx *c = data;
	__u32 slot = i & (ENF_MAX_POLICIES - 1);
	/* The lookup key is a copy: a spilled u32 comes back unbounded on 6.1,
	 * and slot indexes the hit arrays below. */
	__u32 key = slot;
	__u64 bit = 1ULL << slot;
	struct enf_policy *p;
	__u32 action = ENF_ACTION_ALLOW, rule = ENF_RULE_NONE, flags = 0, cls;
	struct enf_hits *h = c->hits;

	if (i >= ENF_MAX_POLICIES)
		return 1;
	if (!(c->slots & bit))
		return 0;
	p = bpf_map_lookup_elem(&enf_policies, &key);
	if (!p)
		return 0;
	cls = c->class & (ENF_CLASSES - 1);

	if (c->unresolved) {
		/* Fail closed: deny and audit rules count as matched, allow rules
		 * cannot be proven to, and nobody is killed on a guess. */
		if (p->deny_ops[cls] & c->access)
			action = ENF_ACTION_DENY;
		else if (!c->no_default && p->dflt[cls] != ENF_ACTION_ALLOW) {
			action = p->dflt[cls];
			flags = ENF_FLAG_DEFAULT;
		} else if (p->audit_ops[cls] & c->access)
			action = ENF_ACTION_AUDIT;
	} else if (h->slots[ENF_ACTION_KILL] & bit) {
		action = ENF_ACTION_KILL;
		rule = h->rule[ENF_ACTION_KILL][slot];
	} else if (h->slots[ENF_ACTION_DENY] & bit) {
		action = ENF_ACTION_DENY;
		rule = h->rule[ENF_ACTION_DENY][slot];
	} else if (!c->no_default && p->dflt[cls] != ENF_ACTION_ALLOW &&
		   !(h->slots[ENF_ACTION_ALLOW] & bit)) {
		action = p->dflt[cls];
		flags = ENF_FLAG_DEFAULT;
	} else if (h->slots[ENF_ACTION_AUDIT] & bit) {
		action = ENF_ACTION_AUDIT;
		rule = h->rule[ENF_ACTION_AUDIT][slot];
	}

	/* Strictly greater: on a tie the lower slot, seen first, stays. */
	if (action > c->d->action) {
		c->d->action = action & (ENF_ACTIONS - 1);
		c->d->rule_id = rule;
		c->d->policy_id = p->id;
		c->d->flags = flags;
	}
	return 0;
}

/*
 * Decides an operation of `class` on `path` (len bytes; resolved == false
 * when bpf_d_path failed) for a task whose policies are `slots`.
 */
/* The per-CPU match set, cleared, and `d` reset to "nothing decided". */
static __always_inline struct enf_hits *enf_decide_begin(struct enf_decision *d)
{
	struct enf_hits *h;
	__u32 zero = 0;

	d->action = ENF_ACTION_ALLOW;
	d->rule_id = ENF_RULE_NONE;
	d->policy_id = ENF_POLICY_NONE;
	d->flags = 0;

	h = bpf_map_lookup_elem(&enf_hits, &zero);
	if (!h)
		return NULL;
	/* Only the masks need clearing: a rule entry is read only under its bit. */
	h->slots[0] = 0;
	h->slots[1] = 0;
	h->slots[2] = 0;
	h->slots[3] = 0;
	h->binary_unknown = 0;
	return h;
}

/* Decides per policy and across policies from the matches in `h`; with
 * `no_default` the class's default posture is left out (capability checks
 * and system calls are not covered by the kernel default). */
static __always_inline void enf_decide_policies_ex(struct enf_hits *h, __u32 class, __u32 access,
						   __u64 slots, bool unresolved, bool no_default,
						   struct enf_decision *d)
{
	struct enf_decide_ctx c = {
		.hits = h,
		.d = d,
		.slots = slots,
		.class = class,
		.access = access,
		.unresolved = unresolved,
		.no_default = no_default,
	};

	bpf_loop(ENF_MAX_POLICIES, enf_decide_step, &c, 0);
	if (h->binary_unknown && d->action != ENF_ACTION_ALLOW)
		d->flags |= ENF_FLAG_BINARY_UNKNOWN;
}

/* Decides per policy and across policies from the matches in `h`. */
static __always_inline void enf_decide_policies(struct enf_hits *h, __u32 class, __u32 access,
						__u64 slots, bool unresolved,
						struct enf_decision *d)
{
	enf_decide_policies_ex(h, class, access, slots, unresolved, false, d);
}

/* With `file` (a file open), the opened inode's rules are matched too. */
static __always_inline int enf_decide_file(struct file *file, const char *path, __u32 len,
					   bool resolved, __u32 class, __u32 access, __u64 slots,
					   struct enf_decision *d)
{
	struct enf_match_ctx m = { .slots = slots, .class = class, .access = access };
	struct enf_hits *h = enf_decide_begin(d);

	if (!h)
		return -1;
	m.hits = h;
	if (resolved)
		enf_walk_path(path, len, &m);
	if (file)
		enf_hit_inode(file, &m);
	/* A symlink's target is decided by the rules that name it only. */
	enf_decide_policies_ex(h, class, access, slots, !resolved,
			       class == ENF_CLASS_FILE && access == ENF_OP_SYMLINK_TO, d);
	return 0;
}

static __always_inline int enf_decide(const char *path, __u32 len, bool resolved, __u32 class,
				      __u32 access, __u64 slots, struct enf_decision *d)
{
	return enf_decide_file(NULL, path, len, resolved, class, access, slots, d);
}

static __always_inline __u16 enf_verdict_of(__u32 action)
{
	switch (action) {
	case ENF_ACTION_KILL:
		return ENF_VERDICT_KILL;
	case ENF_ACTION_DENY:
		return ENF_VERDICT_DENY;
	case ENF_ACTION_AUDIT:
		return ENF_VERDICT_AUDIT;
	default:
		return ENF_VERDICT_ALLOW;
	}
}

#endif /* ENFORCER_DECIDE_H */
