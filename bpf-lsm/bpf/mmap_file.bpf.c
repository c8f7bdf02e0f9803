// SPDX-License-Identifier: GPL-2.0-only
/*
 * lsm/mmap_file: `mmap_exec`, a file-backed mapping with PROT_EXEC (this is
 * also how the kernel maps a program and ld.so its libraries). prot is the
 * protection the kernel applies (READ_IMPLIES_EXEC included).
 */
#include "include/common.h"
#include "include/path_hooks.h"

#define ENF_PROT_EXEC 0x4

SEC("lsm/mmap_file")
int BPF_PROG(enf_mmap_file, struct file *file, unsigned long reqprot, unsigned long prot,
	     unsigned long flags, int ret)
{
	if (ret != 0)
		return enf_prior_verdict(ret);
	if (!file || !(prot & ENF_PROT_EXEC))
		return 0;
	return enf_path_check(ENF_OP_MMAP_EXEC, BPF_CORE_READ(file, f_path.mnt),
			      BPF_CORE_READ(file, f_path.dentry), NULL, NULL);
}
