// SPDX-License-Identifier: GPL-2.0-only
/* lsm/sb_mount: the `mount` kernel operation (mount(2), including remounts,
 * bind and move mounts through it), with the mount point in the record. */
#include "include/common.h"
#include "include/kernel_ops.h"

SEC("lsm/sb_mount")
int BPF_PROG(enf_sb_mount, const char *dev_name, const struct path *path, const char *type,
	     unsigned long flags, void *data, int ret)
{
	if (ret != 0)
		return enf_prior_verdict(ret);
	/* The helper takes a non-const path; it only reads it. */
	return enf_kernel_verdict_path(ENF_KERNEL_OP, ENF_KOP_MOUNT, flags, 0, (struct path *)path);
}
