// SPDX-License-Identifier: GPL-2.0-only
/*
 * lsm/path_rename: `rename`, decided on the source and on the destination:
 * moving a protected file away and moving another file onto it are both
 * caught. RENAME_EXCHANGE moves both: the same two paths cover it.
 */
#include "include/common.h"
#include "include/path_hooks.h"

SEC("lsm/path_rename")
int BPF_PROG(enf_path_rename, const struct path *old_dir, struct dentry *old_dentry,
	     const struct path *new_dir, struct dentry *new_dentry, unsigned int flags, int ret)
{
	if (ret != 0)
		return enf_prior_verdict(ret);
	return enf_path_check(ENF_OP_RENAME, BPF_CORE_READ(old_dir, mnt), old_dentry,
			      BPF_CORE_READ(new_dir, mnt), new_dentry);
}
