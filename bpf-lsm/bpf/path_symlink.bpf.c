// SPDX-License-Identifier: GPL-2.0-only
/*
 * lsm/path_symlink: a symlink's new name is both `create` and `link`, and
 * the path its target names is `symlink_to` (symlink_target.h), so that a
 * rule on /etc/shadow can refuse a new symlink to it.
 */
#include "include/common.h"
#include "include/path_hooks.h"

SEC("lsm/path_symlink")
int BPF_PROG(enf_path_symlink, const struct path *dir, struct dentry *dentry,
	     const char *old_name, int ret)
{
	if (ret != 0)
		return enf_prior_verdict(ret);
	return enf_path_check_target(ENF_OP_CREATE | ENF_OP_LINK, BPF_CORE_READ(dir, mnt), dentry,
				     NULL, NULL, old_name);
}
