/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Kubernetes namespace selectors, decided in the kernel so that no container
 * of a selected namespace runs a single instruction uncovered (the order the
 * kubelet follows is in abi.h, above struct enf_pod_uid):
 *
 * - cgroup_inherit.bpf.c records each new pod cgroup by its uid
 *   (enf_pod_record_cgroup);
 * - pod_logs.bpf.c, at the mkdir of `<namespace>_<pod>_<uid>` in the pod log
 *   directory, gives that pod cgroup its namespace's slots
 *   (enf_pod_classify).
 *
 * Both are off (return at once) unless the loader wrote the pod log
 * directory's inode into enf_config.
 */
#ifndef ENFORCER_PODS_H
#define ENFORCER_PODS_H

#include "common.h"
#include "maps.h"
#include "ratelimit.h"

#define ENF_POD_NAME_BYTES 256
#define ENF_POD_NAME_MASK (ENF_POD_NAME_BYTES - 1)
#define ENF_CGROUP_NAME_BYTES 128
#define ENF_CGROUP_NAME_MASK (ENF_CGROUP_NAME_BYTES - 1)

static __always_inline struct enf_config *enf_pods_config(void)
{
	__u32 zero = 0;
	struct enf_config *c = bpf_map_lookup_elem(&enf_config, &zero);

	if (!c || c->pod_logs_ino == 0)
		return NULL;
	return c;
}

/* Copies the `len` (32 or 36) uid bytes at buf[start..] into `key`,
 * lowercase, `_` read as `-`; false when a byte is no uid byte. */
static __always_inline bool enf_pod_uid_copy(const char *buf, __u32 mask, __u32 start, __u32 len,
					     struct enf_pod_uid *key)
{
	for (__u32 i = 0; i < ENF_POD_UID_LEN; i++) {
		char c;

		if (i >= len)
			break;
		c = buf[(start + i) & mask];
		if (c == '_')
			c = '-';
		else if (c >= 'A' && c <= 'F')
			c = c - 'A' + 'a';
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || c == '-'))
			return false;
		key->uid[i] = c;
	}
	return true;
}

static __always_inline bool enf_is_pod_prefix(const char *buf, __u32 mask, __u32 at)
{
	return buf[at & mask] == 'p' && buf[(at + 1) & mask] == 'o' && buf[(at + 2) & mask] == 'd';
}

/* The uid of a pod cgroup's name: `pod<uid>` (cgroupfs driver) or
 * `...-pod<uid_>.slice` (systemd driver), the uid 36 bytes or 32. */
static __always_inline bool enf_pod_cgroup_uid(const char *buf, __u32 len, struct enf_pod_uid *key)
{
	const __u32 mask = ENF_CGROUP_NAME_MASK;
	__u32 end = len;

	if (len > 6 && buf[(len - 6) & mask] == '.' && buf[(len - 5) & mask] == 's' &&
	    buf[(len - 4) & mask] == 'l' && buf[(len - 3) & mask] == 'i' &&
	    buf[(len - 2) & mask] == 'c' && buf[(len - 1) & mask] == 'e') {
		end = len - 6;
		for (__u32 uid_len = 36; uid_len >= 32; uid_len -= 4) {
			if (end < uid_len + 4)
				continue;
			if (buf[(end - uid_len - 4) & mask] == '-' &&
			    enf_is_pod_prefix(buf, mask, end - uid_len - 3))
				return enf_pod_uid_copy(buf, mask, end - uid_len, uid_len, key);
		}
		return false;
	}
	if ((len == 39 || len == 35) && enf_is_pod_prefix(buf, mask, 0))
		return enf_pod_uid_copy(buf, mask, 3, len - 3, key);
	return false;
}

/* At cgroup_mkdir: remembers a new pod cgroup by its uid. */
static __always_inline void enf_pod_record_cgroup(struct cgroup *cgrp, __u64 id)
{
	char buf[ENF_CGROUP_NAME_BYTES] = {};
	struct enf_pod_uid key = {};
	const char *name;
	long n;

	if (!enf_pods_config())
		return;
	name = BPF_CORE_READ(cgrp, kn, name);
	n = bpf_probe_read_kernel_str(buf, sizeof(buf), name);
	if (n <= 1)
		return;
	if (!enf_pod_cgroup_uid(buf, (__u32)(n - 1) & ENF_CGROUP_NAME_MASK, &key))
		return;
	bpf_map_update_elem(&enf_pod_cgroups, &key, &id, BPF_ANY);
}

/* Scratch for the directory name (too big for the stack with the rest). */
struct enf_pod_scratch {
	char name[ENF_POD_NAME_BYTES];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct enf_pod_scratch);
} enf_pod_scratch SEC(".maps");

/* At a mkdir in `dir`: when `dir` is the pod log directory and the new
 * directory's name is `<namespace>_<pod>_<uid>` of a namespace some policy
 * names, the pod's cgroup gets the namespace's slots. Never refuses. */
static __always_inline void enf_pod_classify(struct inode *dir, struct dentry *dentry)
{
	const __u32 mask = ENF_POD_NAME_MASK;
	struct enf_k8s_name ns_key = {};
	struct enf_pod_uid uid_key = {};
	struct enf_k8s_namespace *ns;
	struct enf_cgroup_policies *cur;
	struct enf_cgroup_policies next;
	struct enf_pod_scratch *s;
	struct enf_config *c;
	__u32 zero = 0, len, ns_len = 0, uid_len;
	__u64 *cgroup_id, id;
	long n;

	c = enf_pods_config();
	if (!c)
		return;
	if (BPF_CORE_READ(dir, i_ino) != c->pod_logs_ino ||
	    BPF_CORE_READ(dir, i_sb, s_dev) != c->pod_logs_dev)
		return;
	s = bpf_map_lookup_elem(&enf_pod_scratch, &zero);
	if (!s)
		return;
	n = bpf_probe_read_kernel_str(s->name, sizeof(s->name), BPF_CORE_READ(dentry, d_name.name));
	if (n <= 1)
		return;
	len = (__u32)(n - 1) & mask;

	/* The namespace: up to the first `_` (a DNS label has none). */
	for (__u32 i = 0; i < ENF_K8S_NAME_LEN; i++) {
		char ch = s->name[i & mask];

		if (i >= len || ch == '_') {
			ns_len = i;
			break;
		}
		ns_key.name[i] = ch;
	}
	if (ns_len == 0)
		return;
	ns = bpf_map_lookup_elem(&enf_k8s_namespaces, &ns_key);
	if (!ns)
		return;

	/* The uid: after the last `_` (a pod name has none either). */
	if (len > 37 && s->name[(len - 37) & mask] == '_')
		uid_len = 36;
	else if (len > 33 && s->name[(len - 33) & mask] == '_')
		uid_len = 32;
	else
		return;
	if (!enf_pod_uid_copy(s->name, mask, len - uid_len, uid_len, &uid_key))
		return;
	cgroup_id = bpf_map_lookup_elem(&enf_pod_cgroups, &uid_key);
	if (!cgroup_id) {
		enf_count(ENF_STAT_POD_UNKNOWN);
		return;
	}
	id = *cgroup_id;
	cur = bpf_map_lookup_elem(&enf_cgroup_policies, &id);
	/* The namespace's exclusions hold for the containers' cgroups made below
	 * too, whatever cgroup pattern matches them. */
	next.excluded = (cur ? cur->excluded : 0) | ns->remove;
	next.slots = ((cur ? cur->slots : 0) | ns->add) & ~next.excluded;
	if (next.slots || next.excluded) {
		if (bpf_map_update_elem(&enf_cgroup_policies, &id, &next, BPF_ANY))
			enf_count(ENF_STAT_INHERIT_FAILED);
	} else
		bpf_map_delete_elem(&enf_cgroup_policies, &id);
}

#endif /* ENFORCER_PODS_H */
