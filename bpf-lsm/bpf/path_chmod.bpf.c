// SPDX-License-Identifier: GPL-2.0-only
/*
 * lsm/path_chmod: `chmod` (chmod, fchmod, fchmodat).
 */
#include "include/common.h"
#include "include/path_hooks.h"

SEC("lsm/path_chmod")
int BPF_PROG(enf_path_chmod, const struct path *path, umode_t mode, int ret)
{
	if (ret != 0)
		return enf_prior_verdict(ret);
	return enf_path_check(ENF_OP_CHMOD, BPF_CORE_READ(path, mnt), BPF_CORE_READ(path, dentry),
			      NULL, NULL);
}
