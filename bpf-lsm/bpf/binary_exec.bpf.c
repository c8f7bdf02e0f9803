// SPDX-License-Identifier: GPL-2.0-only
/*
 * lsm/bprm_committed_creds: an exec succeeded (the hook runs past the point
 * of no return only), so the task's binary sets become those of the new
 * executable: its resolved path walked through the binaries matcher. The
 * hook is one where bpf_d_path is allowed on 6.1 and 6.12. For a script,
 * bprm->file is the interpreter, as /proc/<pid>/exe says.
 */
#include "include/common.h"
#include "include/maps.h"
#include "include/path_walk.h"

struct enf_bin_scratch {
	char path[ENF_PATH_MAX];
	char slack[ENF_PATH_SLACK];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct enf_bin_scratch);
} enf_bin_scratch SEC(".maps");

SEC("lsm/bprm_committed_creds")
int BPF_PROG(enf_binary_exec, struct linux_binprm *bprm)
{
	struct enf_match_ctx m = { .class = ENF_MATCHER_BINARY };
	struct enf_bin_scratch *s;
	struct enf_task_bins *b;
	struct file *file;
	__u32 zero = 0;
	long n = -1;

	s = bpf_map_lookup_elem(&enf_bin_scratch, &zero);
	/* Never dereferenced by the binary walk; a valid pointer keeps the
	 * verifier's view of enf_hit()'s other branch sound. */
	m.hits = bpf_map_lookup_elem(&enf_hits, &zero);
	file = bprm->file;
	if (s && m.hits && file) {
		/* The helper takes a non-const path; it only reads it. */
		n = bpf_d_path((struct path *)&file->f_path, s->path, ENF_PATH_MAX);
		if (n > 0)
			enf_walk_path(s->path, (__u32)(n - 1) & (ENF_PATH_MAX - 1), &m);
	}
	if (n <= 0)
		enf_count(ENF_STAT_PATH_UNRESOLVED);

	/* Always written: the previous image's sets must not survive the exec.
	 * Unresolved: unknown, so filtered rules fail closed. */
	b = bpf_task_storage_get(&enf_task_bins, bpf_get_current_task_btf(), 0,
				 BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!b) {
		enf_count(ENF_STAT_BINARY_STORE_FAILED);
		return 0;
	}
	b->sets = n > 0 ? m.sets : 0;
	b->known = n > 0;
	return 0;
}
