// SPDX-License-Identifier: GPL-2.0-only
/*
 * lsm/bprm_check_security: decides an exec by the resolved path of the file
 * being executed against the exec matcher. Runs once per binary handler
 * round, so a script's interpreter is checked too. (The file class's `exec`
 * operation is decided in file_open, on the exec open of the same file.)
 */
#include "include/common.h"
#include "include/maps.h"
#include "include/decide.h"
#include "include/ratelimit.h"

SEC("lsm/bprm_check_security")
int BPF_PROG(enf_bprm_check, struct linux_binprm *bprm, int ret)
{
	struct enf_cgroup_policies *scope;
	struct enf_exec_scratch *s;
	struct enf_decision d;
	__u32 zero = 0, flags, path_len = 0;
	__u64 cgroup_id;
	struct file *file;
	bool resolved;
	long n;

	if (ret != 0)
		return enf_prior_verdict(ret);

	cgroup_id = bpf_get_current_cgroup_id();
	scope = bpf_map_lookup_elem(&enf_cgroup_policies, &cgroup_id);
	if (!scope || !scope->slots)
		return 0;

	s = bpf_map_lookup_elem(&enf_exec_scratch, &zero);
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

	if (enf_decide(s->ev.path, path_len, resolved, ENF_CLASS_EXEC, ENF_OP_EXEC, scope->slots,
		       &d))
		return 0;
	if (d.action == ENF_ACTION_ALLOW)
		return 0;

	flags = d.flags | (resolved ? 0 : ENF_FLAG_PATH_UNRESOLVED);
	if (d.action == ENF_ACTION_KILL && bpf_send_signal(SIGKILL) == 0)
		flags |= ENF_FLAG_KILLED;
	enf_fill_header(&s->ev.hdr, ENF_EVENT_EXEC, enf_verdict_of(d.action), cgroup_id, d.rule_id,
			d.policy_id, flags);
	s->ev.path_len = path_len;
	s->ev._pad = 0;
	enf_emit(&s->ev.hdr,
		 offsetof(struct enf_exec_event, path) + (path_len & (ENF_PATH_MAX - 1)));

	return d.action >= ENF_ACTION_DENY ? -EPERM : 0;
}
