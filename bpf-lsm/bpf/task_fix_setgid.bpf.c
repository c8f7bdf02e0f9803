// SPDX-License-Identifier: GPL-2.0-only
/*
 * lsm/task_fix_setgid: `setgid_root`, as task_fix_setuid.bpf.c for groups: a
 * process whose effective gid is not 0 gains gid 0 as its real, effective,
 * saved or filesystem gid.
 */
#include "include/common.h"
#include "include/kernel_ops.h"

SEC("lsm/task_fix_setgid")
int BPF_PROG(enf_task_fix_setgid, struct cred *new, const struct cred *old, int flags, int ret)
{
	__u32 o_gid, o_egid, o_sgid, o_fsgid, n_gid, n_egid, n_sgid, n_fsgid;

	if (ret != 0)
		return enf_prior_verdict(ret);
	o_egid = BPF_CORE_READ(old, egid.val);
	if (o_egid == 0)
		return 0;
	o_gid = BPF_CORE_READ(old, gid.val);
	o_sgid = BPF_CORE_READ(old, sgid.val);
	o_fsgid = BPF_CORE_READ(old, fsgid.val);
	n_gid = BPF_CORE_READ(new, gid.val);
	n_egid = BPF_CORE_READ(new, egid.val);
	n_sgid = BPF_CORE_READ(new, sgid.val);
	n_fsgid = BPF_CORE_READ(new, fsgid.val);
	if (!((n_gid == 0 && o_gid != 0) || n_egid == 0 || (n_sgid == 0 && o_sgid != 0) ||
	      (n_fsgid == 0 && o_fsgid != 0)))
		return 0;
	return enf_kernel_op(ENF_KOP_SETGID_ROOT, n_egid, o_egid);
}
