// SPDX-License-Identifier: GPL-2.0-only
/*
 * lsm/file_open: deny (or audit) opening a file by its resolved path, for
 * tasks in a scoped cgroup only.
 */
#include "include/common.h"
#include "include/maps.h"
#include "include/path_hash.h"

char LICENSE[] SEC("license") = "GPL";

/* enf_path_hash(full resolved path) -> rule. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, struct enf_path_rule);
} enf_file_exact SEC(".maps");

SEC("lsm/file_open")
int BPF_PROG(enf_file_open, struct file *file, int ret)
{
	struct enf_cgroup_scope *scope;
	struct enf_path_rule *rule;
	struct enf_file_event *ev;
	__u32 zero = 0, flags = 0, rule_id = 0, path_len = 0;
	__u16 verdict;
	__u64 cgroup_id;
	long n;

	if (ret != 0)
		return enf_prior_verdict(ret);

	cgroup_id = bpf_get_current_cgroup_id();
	scope = bpf_map_lookup_elem(&enf_scoped_cgroups, &cgroup_id);
	if (!scope)
		return 0;

	ev = bpf_map_lookup_elem(&enf_file_scratch, &zero);
	if (!ev)
		return 0;

	/* The helper takes a non-const path; it only reads it. */
	n = bpf_d_path((struct path *)&file->f_path, ev->path, ENF_PATH_MAX);
	if (n <= 0) {
		/* Too long or unreachable: fail closed, since a rule for this
		 * path cannot be ruled out. */
		flags |= ENF_FLAG_PATH_UNRESOLVED;
		enf_count(ENF_STAT_PATH_UNRESOLVED);
	} else {
		/* bpf_d_path counts the terminating NUL. */
		path_len = (__u32)(n - 1) & (ENF_PATH_MAX - 1);
		rule = bpf_map_lookup_elem(&enf_file_exact,
					   &(__u64){ enf_path_hash(ev->path, path_len) });
		if (!rule || rule->path_len != path_len)
			return 0;
		rule_id = rule->rule_id;
	}

	verdict = scope->mode == ENF_MODE_AUDIT ? ENF_VERDICT_AUDIT : ENF_VERDICT_DENY;
	enf_fill_header(&ev->hdr, ENF_EVENT_FILE_OPEN, verdict, cgroup_id, rule_id, flags);
	ev->f_flags = BPF_CORE_READ(file, f_flags);
	ev->f_mode = BPF_CORE_READ(file, f_mode);
	ev->path_len = path_len;
	ev->_pad = 0;
	if (bpf_ringbuf_output(&enf_events, ev,
			       offsetof(struct enf_file_event, path) + (path_len & (ENF_PATH_MAX - 1)),
			       0))
		enf_count(ENF_STAT_RINGBUF_DROPS);

	return verdict == ENF_VERDICT_DENY ? -EPERM : 0;
}
