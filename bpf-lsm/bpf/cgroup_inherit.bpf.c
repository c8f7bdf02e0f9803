// SPDX-License-Identifier: GPL-2.0-only
/*
 * tp_btf/cgroup_mkdir and cgroup_rmdir: a new cgroup2 cgroup gets its policies
 * in the kernel, at creation, so a new container or a restarted service is
 * covered from its first instruction: its parent's policies, plus those whose
 * `cgroups` selectors match its path, minus those that exclude it or a cgroup
 * above it (the exclusions are inherited too). A removed cgroup's entry goes
 * (cgroup ids are never reused). Both run under cgroup_mutex, before anything
 * can be moved into the new cgroup. With Kubernetes namespace selectors, a new
 * pod cgroup is also remembered by its uid (pods.h).
 */
#include "include/common.h"
#include "include/maps.h"
#include "include/path_walk.h"
#include "include/pods.h"

/* Only the default (v2) hierarchy: v1 hierarchies number their kernfs nodes
 * separately, so their ids could alias a cgroup2 id. */
static __always_inline bool enf_on_cgroup2(struct cgroup *cgrp)
{
	return BPF_CORE_READ(cgrp, root, hierarchy_id) == 0;
}

struct enf_last_slash {
	const char *buf;
	__u32 len;
	__u32 last;
};

static long enf_last_slash_step(__u32 i, void *data)
{
	struct enf_last_slash *s = data;

	if (i >= s->len)
		return 1;
	if (s->buf[i & (ENF_PATH_MAX - 1)] == '/')
		s->last = i;
	return 0;
}

struct enf_glob_scan {
	const char *buf;
	struct enf_match_ctx *m;
	__u32 count;           /* patterns in use */
	__u32 len;             /* bytes of path */
	__u32 parent_len;      /* bytes before the '/' of the new cgroup's name */
};

/* Pattern i against the path: the parent's path equal, the name long enough
 * for prefix and suffix, both equal. */
static long enf_glob_step(__u32 i, void *data)
{
	struct enf_glob_scan *g = data;
	struct enf_cgroup_glob *p;
	__u32 key = i, name_start, name_len;
	__u64 bit;

	if (i >= g->count || i >= ENF_MAX_CGROUP_GLOBS)
		return 1;
	p = bpf_map_lookup_elem(&enf_cgroup_globs, &key);
	if (!p)
		return 1;
	name_start = g->parent_len + 1;
	name_len = g->len - name_start;
	if (p->parent_len != g->parent_len)
		return 0;
	if (p->parent_len && !enf_name_eq(g->buf, 0, p->parent_len, p->parent))
		return 0;
	if (name_len < p->prefix_len + p->suffix_len)
		return 0;
	if (p->prefix_len && !enf_name_eq(g->buf, name_start, p->prefix_len, p->prefix))
		return 0;
	if (p->suffix_len &&
	    !enf_name_eq(g->buf, g->len - p->suffix_len, p->suffix_len, p->suffix))
		return 0;
	bit = 1ULL << (p->slot & (ENF_MAX_POLICIES - 1));
	if (p->exclude)
		g->m->slots |= bit;
	else
		g->m->sets |= bit;
	return 0;
}

/* Matches the new cgroup's path (from the cgroup2 root, as the tracepoint
 * gives it) against the selectors, the automaton and the PARENT/PREFIX*SUFFIX
 * patterns: `sets` gets the policies that select it, `slots` those that
 * exclude it. */
static __always_inline void enf_cgroup_select(const char *path, struct enf_config *c,
					      struct enf_match_ctx *m)
{
	struct enf_cgroup_path *buf;
	__u32 zero = 0, len;
	long n;

	buf = bpf_map_lookup_elem(&enf_cgroup_path, &zero);
	if (!buf)
		return;
	n = bpf_probe_read_kernel_str(buf->path, sizeof(buf->path), path);
	if (n <= 1)
		return;
	len = (__u32)(n - 1);
	if (c->cgroup_selectors)
		enf_walk_path(buf->path, len, m);
	if (c->cgroup_globs) {
		struct enf_last_slash s = { .buf = buf->path, .len = len };
		struct enf_glob_scan g = {
			.buf = buf->path,
			.m = m,
			.count = c->cgroup_globs,
			.len = len,
		};

		bpf_loop(ENF_PATH_MAX, enf_last_slash_step, &s, 0);
		g.parent_len = s.last;
		if (g.parent_len < len)
			bpf_loop(ENF_MAX_CGROUP_GLOBS, enf_glob_step, &g, 0);
	}
}

SEC("tp_btf/cgroup_mkdir")
int BPF_PROG(enf_cgroup_mkdir, struct cgroup *cgrp, const char *path)
{
	struct enf_cgroup_policies next = {}, *parent;
	struct enf_match_ctx m = { .class = ENF_MATCHER_CGROUP };
	struct enf_config *c;
	__u64 id, parent_id;
	__u32 zero = 0;
	long err;

	if (!enf_on_cgroup2(cgrp))
		return 0;
	id = BPF_CORE_READ(cgrp, kn, id);
	enf_pod_record_cgroup(cgrp, id);
	parent_id = BPF_CORE_READ(cgrp, self.parent, cgroup, kn, id);
	parent = bpf_map_lookup_elem(&enf_cgroup_policies, &parent_id);
	if (parent) {
		next.slots = parent->slots;
		next.excluded = parent->excluded;
	}
	c = bpf_map_lookup_elem(&enf_config, &zero);
	if (c && (c->cgroup_selectors || c->cgroup_globs)) {
		enf_cgroup_select(path, c, &m);
		next.excluded |= m.slots;
		next.slots = (next.slots | m.sets) & ~next.excluded;
	}
	if (!next.slots && !next.excluded)
		return 0;
	/* NOEXIST: an entry the loader wrote for this id wins. */
	err = bpf_map_update_elem(&enf_cgroup_policies, &id, &next, BPF_NOEXIST);
	if (err == 0) {
		if (next.slots)
			enf_count(ENF_STAT_INHERITED);
	} else if (err != -EEXIST) {
		enf_count(ENF_STAT_INHERIT_FAILED);
	}
	return 0;
}

SEC("tp_btf/cgroup_rmdir")
int BPF_PROG(enf_cgroup_rmdir, struct cgroup *cgrp, const char *path)
{
	__u64 id;

	if (!enf_on_cgroup2(cgrp))
		return 0;
	id = BPF_CORE_READ(cgrp, kn, id);
	bpf_map_delete_elem(&enf_cgroup_policies, &id);
	return 0;
}
