/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The target of a new symlink as the path it names: a relative target is
 * joined to the link's directory, then `.`, `..` and repeated `/` are removed
 * (lexically, like realpath -s: a symlink among the target's own components
 * is not followed, as the kernel has not resolved anything yet). So that
 * `ln -s ../../etc/shadow` is decided as `/etc/shadow`. Reading through the
 * link is decided on the resolved path anyway, by file_open.
 */
#ifndef ENFORCER_SYMLINK_TARGET_H
#define ENFORCER_SYMLINK_TARGET_H

#include "common.h"
#include "dentry_path.h"

#define ENF_TARGET_RAW (2 * ENF_PATH_MAX)
/* Components deep: a path of ENF_PATH_MAX bytes has at most half as many. */
#define ENF_TARGET_DEPTH (ENF_PATH_MAX / 2)

/* The normaliser's counters. They live in the scratch map value, not on
 * the stack: the verifier never tracks map memory, so each bpf_loop callback
 * iteration reads them as unknown values. From Linux 6.7 the verifier checks
 * a callback until its states converge, which constants stepping through a
 * loop (`clen++` after `clen == 0`) delay; up to 6.6 it checks a callback
 * once, with the first call's state, and values known there would have their
 * other branches removed as dead. (The caller, enf_symlink_to in
 * path_hooks.h, is a global function for the 6.12 verifier's sake too.) */
struct enf_tnorm {
	__u32 raw_len;
	__u32 olen;   /* bytes of out, `/a/b` (the root: 0) */
	__u32 clen;   /* bytes of the component being read, at out[olen + 1..] */
	__u32 depth;
	__u32 failed;
};

/* Kernel-internal scratch (not ABI). */
struct enf_target_scratch {
	char raw[ENF_TARGET_RAW];          /* `<link's dir>/<target>` or `<target>` */
	__u16 starts[ENF_TARGET_DEPTH];    /* per kept component: the output length before it */
	struct enf_tnorm t;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct enf_target_scratch);
} enf_target_scratch SEC(".maps");

/* `v & mask`, the mask kept: after a bounds check the compiler would drop it
 * as redundant, and the verifier (which checked a copy) needs it. */
static __always_inline __u32 enf_masked(__u32 v, __u32 mask)
{
	barrier_var(v);
	return v & mask;
}

#define ENF_OUT(x, i) ((x)->out[enf_masked((i), ENF_PATH_MAX - 1)])

/* bpf_loop's context must be on the stack: pointers only, the state is in
 * the map value. */
struct enf_tnorm_ctx {
	struct enf_target_scratch *s;
	char *out;
};

/* One byte of raw per iteration; the byte after its end ends the last
 * component. */
static long enf_tnorm_step(__u32 i, void *ctx)
{
	struct enf_tnorm_ctx *x = ctx;
	struct enf_target_scratch *s = x->s;
	struct enf_tnorm *t = &s->t;
	__u32 at;
	char c;

	if (i > t->raw_len)
		return 1;
	c = i == t->raw_len ? '/' : s->raw[enf_masked(i, ENF_TARGET_RAW - 1)];
	if (c != '/') {
		at = t->olen + 1 + t->clen;
		/* The result must fit a path (ENF_PATH_MAX - 1 bytes). */
		if (at >= ENF_PATH_MAX - 1) {
			t->failed = 1;
			return 1;
		}
		if (t->clen == 0)
			ENF_OUT(x, t->olen) = '/';
		ENF_OUT(x, at) = c;
		t->clen++;
		return 0;
	}
	if (t->clen == 0)
		return 0;
	if (t->clen == 1 && ENF_OUT(x, t->olen + 1) == '.') {
		t->clen = 0;
		return 0;
	}
	if (t->clen == 2 && ENF_OUT(x, t->olen + 1) == '.' && ENF_OUT(x, t->olen + 2) == '.') {
		t->clen = 0;
		/* `..` of the root is the root. */
		if (t->depth == 0)
			return 0;
		t->depth--;
		t->olen = s->starts[enf_masked(t->depth, ENF_TARGET_DEPTH - 1)];
		return 0;
	}
	if (t->depth >= ENF_TARGET_DEPTH) {
		t->failed = 1;
		return 1;
	}
	s->starts[enf_masked(t->depth, ENF_TARGET_DEPTH - 1)] = (__u16)t->olen;
	t->depth++;
	t->olen += 1 + t->clen;
	t->clen = 0;
	return 0;
}

/*
 * Writes the path `target` names, for a symlink created as (mnt, dentry), to
 * out[0..len) (ENF_PATH_MAX bytes plus the matcher's slack). Returns len, or
 * -1 when it cannot be worked out (the directory unresolved, or the result
 * longer than a path).
 */
static __always_inline long enf_symlink_target(struct vfsmount *mnt, struct dentry *dentry,
					       const char *target, char *out)
{
	struct enf_target_scratch *s;
	struct enf_tnorm_ctx x;
	__u32 zero = 0, dir_len = 0;
	long n;

	s = bpf_map_lookup_elem(&enf_target_scratch, &zero);
	if (!s || !target)
		return -1;
	if (bpf_probe_read_kernel(&s->raw[0], 1, target))
		return -1;
	if (s->raw[0] != '/') {
		/* Relative: after the link's directory. */
		n = enf_dentry_path(mnt, BPF_CORE_READ(dentry, d_parent), s->raw);
		if (n <= 0)
			return -1;
		dir_len = (__u32)n & (ENF_PATH_MAX - 1);
		s->raw[dir_len & (ENF_TARGET_RAW - 1)] = '/';
		dir_len += 1;
	}
	n = bpf_probe_read_kernel_str(s->raw + (dir_len & (ENF_PATH_MAX - 1)), ENF_PATH_MAX,
				      target);
	if (n <= 0)
		return -1;
	s->t = (struct enf_tnorm){ .raw_len = dir_len + (__u32)(n - 1) };
	x.s = s;
	x.out = out;
	bpf_loop(ENF_TARGET_RAW + 1, enf_tnorm_step, &x, 0);
	if (s->t.failed)
		return -1;
	if (s->t.olen == 0) {
		out[0] = '/';
		return 1;
	}
	return s->t.olen & (ENF_PATH_MAX - 1);
}

#endif /* ENFORCER_SYMLINK_TARGET_H */
