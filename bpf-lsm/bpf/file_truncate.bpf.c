// SPDX-License-Identifier: GPL-2.0-only
/*
 * lsm/file_truncate (Linux 6.2+): `truncate` by ftruncate(2) and
 * open(O_TRUNC). The loader attaches it only where the kernel has the hook.
 */
#include "include/common.h"
#include "include/path_hooks.h"

SEC("lsm/file_truncate")
int BPF_PROG(enf_file_truncate, struct file *file, int ret)
{
	if (ret != 0)
		return enf_prior_verdict(ret);
	return enf_path_check(ENF_OP_TRUNCATE, BPF_CORE_READ(file, f_path.mnt),
			      BPF_CORE_READ(file, f_path.dentry), NULL, NULL);
}
