/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Maps shared by the hook programs, which are built into one object so they
 * share them. Sizes here are defaults: the loader sets max_entries from the
 * plan, so no rule, state or cgroup count is capped by this file. */
#ifndef ENFORCER_MAPS_H
#define ENFORCER_MAPS_H

#include "abi.h"

/* Verdict records for user space. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} enf_events SEC(".maps");

/* cgroup2 id -> policy slots. Filled by the loader, extended by
 * cgroup_inherit.bpf.c when a child of a listed cgroup is created. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, struct enf_cgroup_policies);
} enf_cgroup_policies SEC(".maps");

/* Kubernetes namespace selectors (pods.h): pod uid -> the pod cgroup's id,
 * recorded when the pod cgroup is created and needed until the pod's log
 * directory is (LRU: a pod deleted long ago makes room); and namespace name ->
 * the slots its pods get. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1);
	__type(key, struct enf_pod_uid);
	__type(value, __u64);
} enf_pod_cgroups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, struct enf_k8s_name);
	__type(value, struct enf_k8s_namespace);
} enf_k8s_namespaces SEC(".maps");

/* Policy slot -> its defaults and fail-closed ops. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ENF_MAX_POLICIES);
	__type(key, __u32);
	__type(value, struct enf_policy);
} enf_policies SEC(".maps");

/* The path automata of both classes (key.matcher = ENF_CLASS_*). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, struct enf_edge_key);
	__type(value, struct enf_edge);
} enf_edges SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, struct enf_state_key);
	__type(value, struct enf_state);
} enf_states SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, struct enf_edge_key);
	__type(value, struct enf_suffix);
} enf_suffixes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct enf_rule);
} enf_rule_list SEC(".maps");

/* Inodes of the file matcher's literal paths that existed at load time ->
 * their accepting state, so that another name of the file (a hard link)
 * matches the same rules (inode_alias.h). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, struct enf_inode_key);
	__type(value, __u32);
} enf_file_inodes SEC(".maps");

/* Network rules: longest-prefix tries per family -> a list of rules in
 * enf_net_rules, whose port ranges are in enf_net_ports. An IPv4-mapped IPv6
 * address is looked up in the v4 trie. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct enf_lpm_v4_key);
	__type(value, struct enf_net_list);
} enf_net_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct enf_lpm_v6_key);
	__type(value, struct enf_net_list);
} enf_net_v6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct enf_net_rule);
} enf_net_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct enf_port_range);
} enf_net_ports SEC(".maps");

/* Kernel-class rules: (what, id) -> a list in enf_kernel_rules. A key with
 * no entry has no rule: only the kernel default may apply (to operations). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, struct enf_kernel_key);
	__type(value, struct enf_kernel_list);
} enf_kernel_lists SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct enf_rule);
} enf_kernel_rules SEC(".maps");

/* The uids of exec rules with `uid` (binary_sets.h); sized by the loader. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, struct enf_rule_uid);
	__type(value, __u8);
} enf_rule_uids SEC(".maps");

/* Per task: the binary sets its executable is in (binary_sets.h). Task
 * storage lives and dies with the task: no size to set, nothing to reap. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct enf_task_bins);
} enf_task_bins SEC(".maps");

/* Counters the kernel side keeps for user space (ENF_STAT_*). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ENF_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} enf_stats SEC(".maps");

static __always_inline void enf_count(__u32 stat)
{
	__u64 *v = bpf_map_lookup_elem(&enf_stats, &stat);

	if (v)
		*v += 1;
}

/* The walk reads a component 8 bytes at a time, so the path buffers have this
 * much room after them for the last word's read. */
#define ENF_PATH_SLACK 8

/* Scratch space for one record (too big for the 512-byte stack). */
struct enf_file_scratch {
	struct enf_file_event ev;
	char slack[ENF_PATH_SLACK];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct enf_file_scratch);
} enf_file_scratch SEC(".maps");

/* Cgroup selector patterns `PARENT/PREFIX*SUFFIX` (cgroup_inherit); the first
 * enf_config.cgroup_globs entries are in use. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ENF_MAX_CGROUP_GLOBS);
	__type(key, __u32);
	__type(value, struct enf_cgroup_glob);
} enf_cgroup_globs SEC(".maps");

/* A new cgroup's path, walked through the cgroup selectors (cgroup_inherit). */
struct enf_cgroup_path {
	char path[ENF_PATH_MAX];
	char slack[ENF_PATH_SLACK];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct enf_cgroup_path);
} enf_cgroup_path SEC(".maps");

struct enf_exec_scratch {
	struct enf_exec_event ev;
	char slack[ENF_PATH_SLACK];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct enf_exec_scratch);
} enf_exec_scratch SEC(".maps");

/* A network record is assembled here (also puts its type in the BTF). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct enf_net_event);
} enf_net_scratch SEC(".maps");

/* Matches of one decision, per action: the policy slots with a match and,
 * per slot, the lowest matching rule id (kernel-internal, not ABI). */
struct enf_hits {
	__u64 slots[ENF_ACTIONS];
	__u32 rule[ENF_ACTIONS][ENF_MAX_POLICIES];
	__u32 binary_unknown;  /* a filtered rule applied to an unknown binary */
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct enf_hits);
} enf_hits SEC(".maps");

/* Records that rule `id` of policy `slot` matched with `action`; per
 * (action, slot) the lowest rule id is kept for the record. */
static __always_inline void enf_hits_add(struct enf_hits *h, __u32 slot, __u32 action, __u32 id)
{
	__u64 bit;

	slot &= ENF_MAX_POLICIES - 1;
	action &= ENF_ACTIONS - 1;
	bit = 1ULL << slot;
	if (!(h->slots[action] & bit) || id < h->rule[action][slot])
		h->rule[action][slot] = id;
	h->slots[action] |= bit;
}

#endif /* ENFORCER_MAPS_H */
