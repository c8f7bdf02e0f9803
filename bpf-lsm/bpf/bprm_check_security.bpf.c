// SPDX-License-Identifier: GPL-2.0-only
/*
 * lsm/bprm_check_security: decides an exec by the resolved path of the file
 * being executed against the exec matcher. Runs once per binary handler
 * round, so a script's interpreter is checked too. (The file class's `exec`
 * operation is decided in file_open, on the exec open of the same file.)
 * A memfd is decided as the reserved path `/memfd:` (memfd.h), whatever its
 * name; its record keeps the name and says ENF_FLAG_MEMFD.
 */
#include "include/common.h"
#include "include/maps.h"
#include "include/decide.h"
#include "include/exec.h"
#include "include/memfd.h"

SEC("lsm/bprm_check_security")
int BPF_PROG(enf_bprm_check, struct linux_binprm *bprm, int ret)
{
	struct enf_exec_scratch *s;
	struct enf_decision d;
	__u32 flags, path_len = 0;
	__u64 cgroup_id, slots = 0;
	struct file *file;
	bool resolved, memfd;
	long n;

	if (ret != 0)
		return enf_prior_verdict(ret);

	s = enf_exec_begin(&cgroup_id, &slots);
	if (!s)
		return 0;

	/* A direct load keeps the verifier's trusted-pointer type bpf_d_path
	 * wants (bprm->file is a trusted field since 6.4; plain BTF on 6.1). */
	file = bprm->file;
	/* The helper takes a non-const path; it only reads it. */
	n = file ? bpf_d_path((struct path *)&file->f_path, s->ev.path, ENF_PATH_MAX) : -1;
	resolved = n > 0;
	if (resolved)
		path_len = (__u32)(n - 1) & (ENF_PATH_MAX - 1);
	else
		enf_count(ENF_STAT_PATH_UNRESOLVED);

	if (enf_decide_exec(file, s->ev.path, path_len, resolved, slots, &d, &memfd))
		return 0;
	if (d.action == ENF_ACTION_ALLOW)
		return 0;
	if (memfd) {
		/* Decided as what it is; the record has its name. */
		resolved = true;
		n = bpf_d_path((struct path *)&file->f_path, s->ev.path, ENF_PATH_MAX);
		path_len = n > 0 ? (__u32)(n - 1) & (ENF_PATH_MAX - 1) : 0;
	}

	flags = d.flags | (resolved ? 0 : ENF_FLAG_PATH_UNRESOLVED) | (memfd ? ENF_FLAG_MEMFD : 0);
	if (d.action == ENF_ACTION_KILL && bpf_send_signal(SIGKILL) == 0)
		flags |= ENF_FLAG_KILLED;
	enf_exec_report(s, enf_verdict_of(d.action), cgroup_id, &d, flags, path_len);

	return d.action >= ENF_ACTION_DENY ? -EPERM : 0;
}
