/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The shared body of the path and mmap hooks: resolve the path(s) the
 * operation touches (dentry_path.h), decide each against the file matcher
 * with the operation's ENF_OP_* bit, keep the most restrictive decision,
 * report anything but an allow as an enf_path_event, and return the verdict.
 *
 * An operation with two paths (rename: source and destination; link: the
 * new name and the existing file) is decided on each: either one matching a
 * deny rule denies. An operation that is two file operations (a symlink is
 * `create` and `link` of its new name) is decided as each: the stricter
 * wins, as policy-lang's evaluator decides them one by one. A symlink is
 * also decided as `symlink_to` on the path its target names
 * (symlink_target.h), which no class default covers.
 */
#ifndef ENFORCER_PATH_HOOKS_H
#define ENFORCER_PATH_HOOKS_H

#include "common.h"
#include "maps.h"
#include "ratelimit.h"
#include "decide.h"
#include "dentry_path.h"
#include "guard.h"
#include "symlink_target.h"

/* The record is assembled here; `second` holds the second path while it is
 * decided (the matcher reads a path from byte 0 of its buffer). */
struct enf_path_scratch {
	struct enf_path_event ev;
	char slack[ENF_PATH_SLACK];
	char second[ENF_PATH_MAX + ENF_PATH_SLACK];
	struct enf_decision first;   /* the first path's decision while the second is decided */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct enf_path_scratch);
} enf_path_scratch SEC(".maps");

/* Keeps the stricter of two decisions in d (on a tie, the first). */
static __always_inline void enf_decision_merge(struct enf_decision *d,
					       const struct enf_decision *x)
{
	if (x->action > d->action)
		*d = *x;
}

/* Decides every op bit of `ops` (at most two are ever set) on one path. */
static __always_inline void enf_decide_ops(const char *path, __u32 len, bool resolved, __u32 ops,
					   __u64 slots, struct enf_decision *d)
{
	struct enf_decision x;
	__u32 low = ops & -ops;

	if (enf_decide(path, len, resolved, ENF_CLASS_FILE, low, slots, d))
		d->action = ENF_ACTION_ALLOW;
	if (ops == low)
		return;
	if (enf_decide(path, len, resolved, ENF_CLASS_FILE, ops & ~low, slots, &x))
		return;
	enf_decision_merge(d, &x);
}

/*
 * The path a new symlink's `target` names, for the symlink created as
 * (mnt, dentry), into s->second. Returns its length, or 0 when it cannot be
 * worked out.
 *
 * A global function, so the verifier checks it once on its own and the hook
 * sees only its result: inlined, the normaliser's bpf_loop made Linux 6.12
 * (which compares the states after a callback loop exactly) take minutes to
 * load path_symlink. Hence scalar arguments, the path in map memory, and the
 * decision left to the hook (its stack and this one's share 512 bytes).
 */
__noinline int enf_symlink_to(__u64 mnt, __u64 dentry, __u64 target)
{
	struct enf_path_scratch *s;
	__u32 zero = 0;
	long n;

	s = bpf_map_lookup_elem(&enf_path_scratch, &zero);
	if (!s)
		return 0;
	n = enf_symlink_target((struct vfsmount *)mnt, (struct dentry *)dentry,
			       (const char *)target, s->second);
	if (n <= 0) {
		enf_count(ENF_STAT_PATH_UNRESOLVED);
		return 0;
	}
	return (__u32)n & (ENF_PATH_MAX - 1);
}

/*
 * Decides file operation(s) `ops` on (mnt, dentry), and on (mnt2, dentry2)
 * when dentry2 is not NULL, or `symlink_to` on the path a new symlink's `target`
 * names when that is not NULL. Returns the hook's verdict: 0 or -EPERM.
 */
static __always_inline int enf_path_check_target(__u32 ops, struct vfsmount *mnt,
						 struct dentry *dentry, struct vfsmount *mnt2,
						 struct dentry *dentry2, const char *target)
{
	struct enf_cgroup_policies *scope;
	struct enf_path_scratch *s;
	struct enf_decision d, d2;
	__u32 zero = 0, flags = 0, len = 0, len2 = 0;
	__u64 cgroup_id, slots;
	bool resolved, resolved2 = true;
	long n;

	cgroup_id = bpf_get_current_cgroup_id();
	scope = bpf_map_lookup_elem(&enf_cgroup_policies, &cgroup_id);
	if (!scope || !scope->slots)
		return 0;
	slots = scope->slots;

	s = bpf_map_lookup_elem(&enf_path_scratch, &zero);
	if (!s)
		return 0;

	n = enf_dentry_path(mnt, dentry, s->ev.paths);
	resolved = n > 0;
	if (resolved)
		len = (__u32)n & (ENF_PATH_MAX - 1);
	else
		enf_count(ENF_STAT_PATH_UNRESOLVED);
	enf_decide_ops(s->ev.paths, len, resolved, ops, slots, &d);
	/* With a second path, the first decision waits in map memory, which the
	 * verifier does not track: each outcome of the first decision would
	 * otherwise be explored through the whole second one (on 6.12 that made
	 * rename, link and symlink the slowest programs to load). */
	if (dentry2 || target)
		s->first = d;

	if (dentry2) {
		n = enf_dentry_path(mnt2, dentry2, s->second);
		resolved2 = n > 0;
		if (resolved2)
			len2 = (__u32)n & (ENF_PATH_MAX - 1);
		else
			enf_count(ENF_STAT_PATH_UNRESOLVED);
		enf_decide_ops(s->second, len2, resolved2, ops, slots, &d2);
		d = s->first;
		enf_decision_merge(&d, &d2);
	} else if (target) {
		len2 = (__u32)enf_symlink_to(enf_scalar(mnt), enf_scalar(dentry),
					     enf_scalar(target)) & (ENF_PATH_MAX - 1);
		resolved2 = len2 > 0;
		enf_decide_ops(s->second, len2, resolved2, ENF_OP_SYMLINK_TO, slots, &d2);
		d = s->first;
		enf_decision_merge(&d, &d2);
	}
	/* Self-protection wins over any policy: the enforcer's directories. */
	if ((resolved && enf_guarded_path(s->ev.paths, len)) ||
	    ((dentry2 || target) && resolved2 && enf_guarded_path(s->second, len2)))
		enf_guard_decision(&d);
	if (d.action == ENF_ACTION_ALLOW)
		return 0;

	flags = d.flags;
	if (!resolved || !resolved2)
		flags |= ENF_FLAG_PATH_UNRESOLVED;
	if (d.action == ENF_ACTION_KILL && bpf_send_signal(SIGKILL) == 0)
		flags |= ENF_FLAG_KILLED;
	enf_fill_header(&s->ev.hdr, ENF_EVENT_PATH, enf_verdict_of(d.action), cgroup_id, d.rule_id,
			d.policy_id, flags);
	s->ev.op = target ? ops | ENF_OP_SYMLINK_TO : ops;
	s->ev.path_len = len;
	s->ev.path2_len = len2;
	s->ev.has_path2 = (dentry2 || target) ? 1 : 0;
	/* The second path follows the first. enf_masked: len2 is masked where it
	 * is set, and the compiler would drop this mask as redundant, which the
	 * verifier cannot see. */
	if (len2 && bpf_probe_read_kernel(s->ev.paths + (len & (ENF_PATH_MAX - 1)),
					  enf_masked(len2, ENF_PATH_MAX - 1), s->second))
		s->ev.path2_len = 0;
	enf_emit(&s->ev.hdr, offsetof(struct enf_path_event, paths) + (len & (ENF_PATH_MAX - 1)) +
				     (s->ev.path2_len & (ENF_PATH_MAX - 1)));

	return d.action >= ENF_ACTION_DENY ? -EPERM : 0;
}

static __always_inline int enf_path_check(__u32 ops, struct vfsmount *mnt, struct dentry *dentry,
					  struct vfsmount *mnt2, struct dentry *dentry2)
{
	return enf_path_check_target(ops, mnt, dentry, mnt2, dentry2, NULL);
}

#endif /* ENFORCER_PATH_HOOKS_H */
