// SPDX-License-Identifier: GPL-2.0-only
/*
 * lsm/path_link: `link` (a hard link), decided on the new name and on the
 * existing file, so that a rule on /etc/shadow covers a new link to it. Both
 * are on the same mount (the kernel refuses a link across mounts first).
 */
#include "include/common.h"
#include "include/path_hooks.h"

SEC("lsm/path_link")
int BPF_PROG(enf_path_link, struct dentry *old_dentry, const struct path *new_dir,
	     struct dentry *new_dentry, int ret)
{
	struct vfsmount *mnt;

	if (ret != 0)
		return enf_prior_verdict(ret);
	mnt = BPF_CORE_READ(new_dir, mnt);
	return enf_path_check(ENF_OP_LINK, mnt, new_dentry, mnt, old_dentry);
}
