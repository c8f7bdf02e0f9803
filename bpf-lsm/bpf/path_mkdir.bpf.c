// SPDX-License-Identifier: GPL-2.0-only
/*
 * lsm/path_mkdir: `create` of a directory.
 */
#include "include/common.h"
#include "include/path_hooks.h"

SEC("lsm/path_mkdir")
int BPF_PROG(enf_path_mkdir, const struct path *dir, struct dentry *dentry, umode_t mode, int ret)
{
	if (ret != 0)
		return enf_prior_verdict(ret);
	return enf_path_check(ENF_OP_CREATE, BPF_CORE_READ(dir, mnt), dentry, NULL, NULL);
}
