// SPDX-License-Identifier: GPL-2.0-only
/*
 * lsm/path_chown: `chown` (chown, fchown, lchown, fchownat). kuid_t and
 * kgid_t are one-word structs passed by value: one context slot each.
 */
#include "include/common.h"
#include "include/path_hooks.h"

SEC("lsm/path_chown")
int BPF_PROG(enf_path_chown, const struct path *path, __u64 uid, __u64 gid, int ret)
{
	if (ret != 0)
		return enf_prior_verdict(ret);
	return enf_path_check(ENF_OP_CHOWN, BPF_CORE_READ(path, mnt), BPF_CORE_READ(path, dentry),
			      NULL, NULL);
}
