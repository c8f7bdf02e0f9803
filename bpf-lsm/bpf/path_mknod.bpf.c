// SPDX-License-Identifier: GPL-2.0-only
/*
 * lsm/path_mknod: `create` of a file, FIFO, socket or device node; also
 * called for open(O_CREAT) of a file that does not exist yet (may_o_create).
 * The new name is a negative dentry under dir.
 */
#include "include/common.h"
#include "include/path_hooks.h"

SEC("lsm/path_mknod")
int BPF_PROG(enf_path_mknod, const struct path *dir, struct dentry *dentry, umode_t mode,
	     unsigned int dev, int ret)
{
	if (ret != 0)
		return enf_prior_verdict(ret);
	return enf_path_check(ENF_OP_CREATE, BPF_CORE_READ(dir, mnt), dentry, NULL, NULL);
}
