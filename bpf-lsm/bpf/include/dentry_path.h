/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Resolves (mount, dentry) to an absolute path without bpf_d_path, which the
 * kernel allows only in sleepable LSM hooks (file_open, mmap_file, ...), not
 * in the path_* hooks, file_mprotect or file_truncate.
 *
 * The walk follows d_parent up to the mount's root, crosses to the parent
 * mount at its mountpoint (struct mount: mnt_parent, mnt_mountpoint) and
 * stops at the task's fs->root, the root bpf_d_path uses too. Names are
 * written right to left into a per-CPU buffer, then moved to the front so
 * that the matcher (path_walk.h) reads the path from byte 0. A dentry that
 * does not exist yet (the new name of a create, rename or link) is a negative
 * dentry under its parent: it resolves the same way.
 *
 * One difference from d_path, on purpose: a bind mount of a directory (or
 * file) of the file system the task's root is on is walked on inside that
 * file system, so `/alias/x` of `mount --bind /protected /alias` resolves
 * to `/protected/x` and a rule on the original name covers the alias.
 *
 * A path longer than ENF_PATH_MAX - 1 bytes, deeper than the loop bound, or
 * with an unreadable component does not resolve: the caller fails closed.
 */
#ifndef ENFORCER_DENTRY_PATH_H
#define ENFORCER_DENTRY_PATH_H

#include "common.h"
#include "maps.h"

/* The right-to-left buffer: names land at [pos - len, pos) with pos below
 * ENF_PATH_MAX, and the verifier needs room for a full name past any masked
 * start, and for the final move's masked start plus its length. */
#define ENF_DPATH_BUF (2 * ENF_PATH_MAX)

struct enf_dpath_scratch {
	char buf[ENF_DPATH_BUF];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct enf_dpath_scratch);
} enf_dpath_scratch SEC(".maps");

struct enf_dwalk {
	char *buf;
	__u64 dentry;      /* current dentry (kernel pointer, read with CO-RE) */
	__u64 mnt;         /* its struct mount */
	__u64 root_dentry; /* the task's fs->root */
	__u64 root_mnt;    /* struct mount of fs->root.mnt */
	__u64 root_sb;     /* its super_block */
	__u32 pos;         /* first byte of the path written so far */
	__u32 done;
	__u32 failed;
};

/* A kernel pointer as a plain number: the walk only ever reads through it
 * with bpf_probe_read_kernel, and a hook argument's trusted pointer type
 * would otherwise follow it into the loop state (and forbid the arithmetic
 * of container_of). */
static __always_inline __u64 enf_scalar(const void *p)
{
	__u64 v = 0;

	bpf_probe_read_kernel(&v, sizeof(v), &p);
	return v;
}

static __always_inline __u64 enf_mount_of(__u64 vfsmount)
{
	/* container_of(v, struct mount, mnt), with the offset relocated. */
	return vfsmount - bpf_core_field_offset(struct mount, mnt);
}

static long enf_dwalk_step(__u32 i, void *data)
{
	struct enf_dwalk *w = data;
	struct dentry *d = (struct dentry *)w->dentry;
	struct mount *m = (struct mount *)w->mnt;
	struct dentry *parent, *mnt_root;
	const unsigned char *name;
	__u32 len, start;

	if (w->dentry == w->root_dentry && w->mnt == w->root_mnt) {
		w->done = 1;
		return 1;
	}
	parent = BPF_CORE_READ(d, d_parent);
	mnt_root = BPF_CORE_READ(m, mnt.mnt_root);
	if (!parent || !mnt_root) {
		w->failed = 1;
		return 1;
	}
	if (d == mnt_root || d == parent) {
		struct mount *up;

		/* The root of a bind mount of part of the root's file system:
		 * go on inside that file system, as if through the root mount. */
		if (d != parent && w->mnt != w->root_mnt &&
		    (__u64)BPF_CORE_READ(m, mnt.mnt_sb) == w->root_sb) {
			w->mnt = w->root_mnt;
			return 0;
		}
		up = BPF_CORE_READ(m, mnt_parent);
		/* The namespace's root mount, or the top of a file system not
		 * reachable from the root: the path is complete. */
		if (d != mnt_root || !up || (__u64)up == w->mnt) {
			w->done = 1;
			return 1;
		}
		w->dentry = (__u64)BPF_CORE_READ(m, mnt_mountpoint);
		w->mnt = (__u64)up;
		return 0;
	}

	len = BPF_CORE_READ(d, d_name.len);
	name = BPF_CORE_READ(d, d_name.name);
	if (len == 0 || len > ENF_NAME_MAX || w->pos < len + 1 || !name) {
		w->failed = 1;
		return 1;
	}
	start = w->pos - len;
	if (bpf_probe_read_kernel(w->buf + (start & (ENF_PATH_MAX - 1)), len, name)) {
		w->failed = 1;
		return 1;
	}
	w->pos = start - 1;
	w->buf[w->pos & (ENF_PATH_MAX - 1)] = '/';
	w->dentry = (__u64)parent;
	return 0;
}

/*
 * Resolves (mnt, dentry) into out[0..len) (out has ENF_PATH_MAX bytes at
 * least, plus the matcher's slack). Returns the length, or -1 when the path
 * cannot be resolved completely.
 */
static __always_inline long enf_dentry_path(struct vfsmount *mnt, struct dentry *dentry,
					    char *out)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct enf_dpath_scratch *s;
	struct vfsmount *root_vfs;
	struct enf_dwalk w = {};
	__u32 zero = 0, pos, len;

	s = bpf_map_lookup_elem(&enf_dpath_scratch, &zero);
	if (!s || !mnt || !dentry)
		return -1;
	root_vfs = BPF_CORE_READ(task, fs, root.mnt);
	w.buf = s->buf;
	w.dentry = enf_scalar(dentry);
	w.mnt = enf_mount_of(enf_scalar(mnt));
	w.root_dentry = (__u64)BPF_CORE_READ(task, fs, root.dentry);
	w.root_mnt = root_vfs ? enf_mount_of(enf_scalar(root_vfs)) : 0;
	w.root_sb = root_vfs ? (__u64)BPF_CORE_READ(root_vfs, mnt_sb) : 0;
	w.pos = ENF_PATH_MAX;

	/* A component per iteration, a mount crossing per iteration: a path
	 * of ENF_PATH_MAX bytes has fewer. */
	bpf_loop(ENF_PATH_MAX, enf_dwalk_step, &w, 0);
	if (w.failed || !w.done)
		return -1;
	pos = w.pos;
	if (pos == ENF_PATH_MAX) {
		/* The root itself. */
		pos -= 1;
		s->buf[pos & (ENF_PATH_MAX - 1)] = '/';
	}
	/* A path takes at most ENF_PATH_MAX - 1 bytes, as for d_path. */
	if (pos == 0)
		return -1;
	pos &= ENF_PATH_MAX - 1;
	len = ENF_PATH_MAX - pos;
	if (bpf_probe_read_kernel(out, len, s->buf + pos))
		return -1;
	return len;
}

#endif /* ENFORCER_DENTRY_PATH_H */
