// SPDX-License-Identifier: GPL-2.0-only
/*
 * lsm/path_truncate: `truncate` by truncate(2); before Linux 6.2 also
 * ftruncate(2) and open(O_TRUNC), which moved to file_truncate.
 */
#include "include/common.h"
#include "include/path_hooks.h"

SEC("lsm/path_truncate")
int BPF_PROG(enf_path_truncate, const struct path *path, int ret)
{
	if (ret != 0)
		return enf_prior_verdict(ret);
	return enf_path_check(ENF_OP_TRUNCATE, BPF_CORE_READ(path, mnt),
			      BPF_CORE_READ(path, dentry), NULL, NULL);
}
