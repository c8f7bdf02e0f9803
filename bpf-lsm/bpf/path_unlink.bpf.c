// SPDX-License-Identifier: GPL-2.0-only
/*
 * lsm/path_unlink: `delete` of a file.
 */
#include "include/common.h"
#include "include/path_hooks.h"

SEC("lsm/path_unlink")
int BPF_PROG(enf_path_unlink, const struct path *dir, struct dentry *dentry, int ret)
{
	if (ret != 0)
		return enf_prior_verdict(ret);
	return enf_path_check(ENF_OP_DELETE, BPF_CORE_READ(dir, mnt), dentry, NULL, NULL);
}
