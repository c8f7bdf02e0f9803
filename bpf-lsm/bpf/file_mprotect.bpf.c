// SPDX-License-Identifier: GPL-2.0-only
/*
 * lsm/file_mprotect: `mmap_exec` when mprotect adds PROT_EXEC to a
 * file-backed mapping that was not executable (an executable one was decided
 * at mmap).
 */
#include "include/common.h"
#include "include/path_hooks.h"

#define ENF_PROT_EXEC 0x4
#define ENF_VM_EXEC 0x4

SEC("lsm/file_mprotect")
int BPF_PROG(enf_file_mprotect, struct vm_area_struct *vma, unsigned long reqprot,
	     unsigned long prot, int ret)
{
	struct file *file;

	if (ret != 0)
		return enf_prior_verdict(ret);
	if (!(prot & ENF_PROT_EXEC))
		return 0;
	if (BPF_CORE_READ(vma, vm_flags) & ENF_VM_EXEC)
		return 0;
	file = BPF_CORE_READ(vma, vm_file);
	if (!file)
		return 0;
	return enf_path_check(ENF_OP_MMAP_EXEC, BPF_CORE_READ(file, f_path.mnt),
			      BPF_CORE_READ(file, f_path.dentry), NULL, NULL);
}
