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

/* Kernel-internal scratch (not ABI). */
struct enf_target_scratch {
	char raw[ENF_TARGET_RAW];          /* `<link's dir>/<target>` or `<target>` */
	__u16 starts[ENF_TARGET_DEPTH];    /* per kept component: the output length before it */
	/* Never written, so always 0; the verifier cannot know that. Up to
	 * Linux 6.6 it checks a bpf_loop callback once, with the state of the
	 * first call: the walk's counters start from these, not from constants,
	 * or the branches taken only in later calls would be removed as dead. */
	__u32 zero;
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

#define ENF_OUT(t, i) ((t)->out[enf_masked((i), ENF_PATH_MAX - 1)])

struct enf_tnorm {
	char *raw;
	__u16 *starts;
	char *out;
	__u32 raw_len;
	__u32 olen;   /* bytes of out, `/a/b` (the root: 0) */
	__u32 clen;   /* bytes of the component being read, at out[olen + 1..] */
	__u32 depth;
	__u32 failed;
};

/* One byte of raw per iteration; the byte after its end ends the last
 * component. */
static long enf_tnorm_step(__u32 i, void *ctx)
{
	struct enf_tnorm *t = ctx;
	__u32 at;
	char c;

	if (i > t->raw_len)
		return 1;
	c = i == t->raw_len ? '/' : t->raw[enf_masked(i, ENF_TARGET_RAW - 1)];
	if (c != '/') {
		at = t->olen + 1 + t->clen;
		/* The result must fit a path (ENF_PATH_MAX - 1 bytes). */
		if (at >= ENF_PATH_MAX - 1) {
			t->failed = 1;
			return 1;
		}
		if (t->clen == 0)
			ENF_OUT(t, t->olen) = '/';
		ENF_OUT(t, at) = c;
		t->clen++;
		return 0;
	}
	if (t->clen == 0)
		return 0;
	if (t->clen == 1 && ENF_OUT(t, t->olen + 1) == '.') {
		t->clen = 0;
		return 0;
	}
	if (t->clen == 2 && ENF_OUT(t, t->olen + 1) == '.' && ENF_OUT(t, t->olen + 2) == '.') {
		t->clen = 0;
		/* `..` of the root is the root. */
		if (t->depth == 0)
			return 0;
		t->depth--;
		t->olen = t->starts[enf_masked(t->depth, ENF_TARGET_DEPTH - 1)];
		return 0;
	}
	if (t->depth >= ENF_TARGET_DEPTH) {
		t->failed = 1;
		return 1;
	}
	t->starts[enf_masked(t->depth, ENF_TARGET_DEPTH - 1)] = (__u16)t->olen;
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
	struct enf_tnorm t = {};
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
	t.raw = s->raw;
	t.starts = s->starts;
	t.out = out;
	t.olen = s->zero;
	t.clen = s->zero;
	t.depth = s->zero;
	t.failed = s->zero;
	t.raw_len = dir_len + (__u32)(n - 1);
	bpf_loop(ENF_TARGET_RAW + 1, enf_tnorm_step, &t, 0);
	if (t.failed)
		return -1;
	if (t.olen == 0) {
		out[0] = '/';
		return 1;
	}
	return t.olen & (ENF_PATH_MAX - 1);
}

#endif /* ENFORCER_SYMLINK_TARGET_H */
