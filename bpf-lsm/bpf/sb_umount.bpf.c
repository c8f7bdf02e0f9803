// SPDX-License-Identifier: GPL-2.0-only
/* lsm/sb_umount: the `umount` kernel operation. */
#include "include/common.h"
#include "include/kernel_ops.h"

SEC("lsm/sb_umount")
int BPF_PROG(enf_sb_umount, struct vfsmount *mnt, int flags, int ret)
{
	if (ret != 0)
		return enf_prior_verdict(ret);
	return enf_kernel_op(ENF_KOP_UMOUNT, (__u32)flags, 0);
}
