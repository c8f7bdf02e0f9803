// SPDX-License-Identifier: GPL-2.0-only
/*
 * tp_btf/cgroup_mkdir and cgroup_rmdir: a new cgroup2 child of a cgroup with
 * policies gets its parent's policies in the kernel, at creation, so a new
 * container is covered from its first instruction; a removed cgroup's entry
 * goes (cgroup ids are never reused). Both run under cgroup_mutex, before
 * anything can be moved into the new cgroup. With Kubernetes namespace
 * selectors, a new pod cgroup is also remembered by its uid (pods.h).
 */
#include "include/common.h"
#include "include/maps.h"
#include "include/pods.h"

/* Only the default (v2) hierarchy: v1 hierarchies number their kernfs nodes
 * separately, so their ids could alias a cgroup2 id. */
static __always_inline bool enf_on_cgroup2(struct cgroup *cgrp)
{
	return BPF_CORE_READ(cgrp, root, hierarchy_id) == 0;
}

SEC("tp_btf/cgroup_mkdir")
int BPF_PROG(enf_cgroup_mkdir, struct cgroup *cgrp, const char *path)
{
	struct enf_cgroup_policies *parent;
	__u64 id, parent_id;
	long err;

	if (!enf_on_cgroup2(cgrp))
		return 0;
	id = BPF_CORE_READ(cgrp, kn, id);
	enf_pod_record_cgroup(cgrp, id);
	parent_id = BPF_CORE_READ(cgrp, self.parent, cgroup, kn, id);
	parent = bpf_map_lookup_elem(&enf_cgroup_policies, &parent_id);
	if (!parent)
		return 0;
	/* NOEXIST: an entry the loader wrote for this id wins. */
	err = bpf_map_update_elem(&enf_cgroup_policies, &id, parent, BPF_NOEXIST);
	if (err == 0)
		enf_count(ENF_STAT_INHERITED);
	else if (err != -EEXIST)
		enf_count(ENF_STAT_INHERIT_FAILED);
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
