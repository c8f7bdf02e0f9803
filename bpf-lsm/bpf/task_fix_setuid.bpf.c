// SPDX-License-Identifier: GPL-2.0-only
/*
 * lsm/task_fix_setuid: `setuid_root`. A process whose effective uid is not 0
 * gains uid 0: its real, effective, saved or filesystem uid becomes 0 where
 * it was not (setuid(0) with a saved uid of 0, setresuid, setfsuid). A root
 * process changing its ids is not `setuid_root`.
 */
#include "include/common.h"
#include "include/kernel_ops.h"

SEC("lsm/task_fix_setuid")
int BPF_PROG(enf_task_fix_setuid, struct cred *new, const struct cred *old, int flags, int ret)
{
	__u32 o_uid, o_euid, o_suid, o_fsuid, n_uid, n_euid, n_suid, n_fsuid;

	if (ret != 0)
		return enf_prior_verdict(ret);
	o_euid = BPF_CORE_READ(old, euid.val);
	if (o_euid == 0)
		return 0;
	o_uid = BPF_CORE_READ(old, uid.val);
	o_suid = BPF_CORE_READ(old, suid.val);
	o_fsuid = BPF_CORE_READ(old, fsuid.val);
	n_uid = BPF_CORE_READ(new, uid.val);
	n_euid = BPF_CORE_READ(new, euid.val);
	n_suid = BPF_CORE_READ(new, suid.val);
	n_fsuid = BPF_CORE_READ(new, fsuid.val);
	if (!((n_uid == 0 && o_uid != 0) || n_euid == 0 || (n_suid == 0 && o_suid != 0) ||
	      (n_fsuid == 0 && o_fsuid != 0)))
		return 0;
	return enf_kernel_op(ENF_KOP_SETUID_ROOT, n_euid, o_euid);
}
