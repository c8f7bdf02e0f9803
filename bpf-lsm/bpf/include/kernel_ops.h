/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The kernel class: privileged operations (one LSM hook file each), capability
 * checks (lsm/capable) and system calls (tp_btf/sys_enter).
 *
 * An operation is a key (what, id): (ENF_KERNEL_OP, one ENF_KOP_* bit),
 * (ENF_KERNEL_CAPABILITY, CAP_*) or (ENF_KERNEL_SYSCALL, number). The key's
 * rules are one hash lookup away; each is checked for its policy, then
 * decide.h's per-policy precedence runs for ENF_CLASS_KERNEL. The class
 * default covers operations only, as policy-lang's evaluator says.
 *
 * Capability checks and system calls are frequent: a task in no scoped
 * cgroup costs one hash lookup, a key without rules one more, and nothing is
 * decided or reported then.
 */
#ifndef ENFORCER_KERNEL_OPS_H
#define ENFORCER_KERNEL_OPS_H

#include "common.h"
#include "maps.h"
#include "ratelimit.h"
#include "binary_sets.h"
#include "decide.h"

/* The record is assembled here (too big for the stack; also puts its type in
 * the BTF for the layout test). */
struct enf_kernel_scratch {
	struct enf_kernel_event ev;
	char slack[ENF_PATH_SLACK];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct enf_kernel_scratch);
} enf_kernel_scratch SEC(".maps");

struct enf_kernel_match {
	struct enf_hits *hits;
	__u64 slots;
	__u32 off;
	__u32 len;
};

static long enf_kernel_step(__u32 i, void *data)
{
	struct enf_kernel_match *m = data;
	struct enf_rule *r;
	__u32 idx, slot;

	if (i >= m->len)
		return 1;
	idx = m->off + i;
	r = bpf_map_lookup_elem(&enf_kernel_rules, &idx);
	if (!r)
		return 1;
	slot = r->slot & (ENF_MAX_POLICIES - 1);
	if ((m->slots & (1ULL << slot)) && enf_binary_applies(m->hits, r))
		enf_hits_add(m->hits, slot, r->action, r->id);
	return 0;
}

/* The policy slots of the current task's cgroup; 0 when none apply. */
static __always_inline __u64 enf_kernel_slots(__u64 *cgroup_id)
{
	struct enf_cgroup_policies *scope;

	*cgroup_id = bpf_get_current_cgroup_id();
	scope = bpf_map_lookup_elem(&enf_cgroup_policies, cgroup_id);
	return scope ? scope->slots : 0;
}

/* Decides (what, id) for a task whose policies are `slots`. Returns nonzero
 * when nothing can have decided (no rule for the key and, for capabilities
 * and system calls, no default), so that `d` is "allow". */
static __always_inline int enf_kernel_decide(__u32 what, __u32 id, __u64 slots,
					     struct enf_decision *d)
{
	struct enf_kernel_key k = { .what = what, .id = id };
	struct enf_kernel_match m = { .slots = slots };
	struct enf_kernel_list *l;
	bool no_default = what != ENF_KERNEL_OP;

	l = bpf_map_lookup_elem(&enf_kernel_lists, &k);
	if ((!l || !l->list_len) && no_default) {
		d->action = ENF_ACTION_ALLOW;
		return 1;
	}
	m.hits = enf_decide_begin(d);
	if (!m.hits)
		return 1;
	if (l && l->list_len) {
		m.off = l->list_off;
		m.len = l->list_len;
		bpf_loop(m.len, enf_kernel_step, &m, 0);
	}
	enf_decide_policies_ex(m.hits, ENF_CLASS_KERNEL, 0, slots, false, no_default, d);
	return 0;
}

/* Fills and sends the record of a decision other than allow. `path` (may be
 * NULL) is resolved with bpf_d_path only then; the hook must be one where the
 * helper is allowed. */
static __always_inline void enf_kernel_report(__u32 what, __u32 id, __u64 arg, __u64 arg2,
					      struct path *path, const struct enf_decision *d,
					      __u64 cgroup_id, __u32 flags)
{
	struct enf_kernel_scratch *s;
	__u32 zero = 0, path_len = 0;
	long n;

	s = bpf_map_lookup_elem(&enf_kernel_scratch, &zero);
	if (!s)
		return;
	if (path) {
		n = bpf_d_path(path, s->ev.path, ENF_PATH_MAX);
		if (n > 0)
			/* bpf_d_path counts the terminating NUL. */
			path_len = (__u32)(n - 1) & (ENF_PATH_MAX - 1);
	}
	enf_fill_header(&s->ev.hdr, ENF_EVENT_KERNEL, enf_verdict_of(d->action), cgroup_id,
			d->rule_id, d->policy_id, flags | d->flags);
	s->ev.what = what;
	s->ev.id = id;
	s->ev.arg = arg;
	s->ev.arg2 = arg2;
	s->ev.path_len = path_len;
	s->ev._pad = 0;
	enf_emit(&s->ev.hdr,
		 offsetof(struct enf_kernel_event, path) + (path_len & (ENF_PATH_MAX - 1)));
}

/* Decides, reports and kills for one operation; returns what the hook
 * returns (LSM: 0 or -EPERM). */
static __always_inline int enf_kernel_verdict_path(__u32 what, __u32 id, __u64 arg, __u64 arg2,
						   struct path *path)
{
	struct enf_decision d;
	__u64 cgroup_id, slots = enf_kernel_slots(&cgroup_id);
	__u32 flags = 0;

	if (!slots)
		return 0;
	if (enf_kernel_decide(what, id, slots, &d))
		return 0;
	if (d.action == ENF_ACTION_ALLOW)
		return 0;
	if (d.action == ENF_ACTION_KILL && bpf_send_signal(SIGKILL) == 0)
		flags |= ENF_FLAG_KILLED;
	enf_kernel_report(what, id, arg, arg2, path, &d, cgroup_id, flags);
	return d.action >= ENF_ACTION_DENY ? -EPERM : 0;
}

/* A named operation (one ENF_KOP_* bit) without a path. */
static __always_inline int enf_kernel_op(__u32 op, __u64 arg, __u64 arg2)
{
	return enf_kernel_verdict_path(ENF_KERNEL_OP, op, arg, arg2, NULL);
}

#endif /* ENFORCER_KERNEL_OPS_H */
