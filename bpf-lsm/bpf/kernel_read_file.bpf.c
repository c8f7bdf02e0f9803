// SPDX-License-Identifier: GPL-2.0-only
/* lsm/kernel_read_file: `module_load` (finit_module) and `kexec`
 * (kexec_file_load: image and initramfs) by the file the kernel reads, which
 * the record names. Other reads (firmware, policies, certificates) pass. */
#include "include/common.h"
#include "include/kernel_ops.h"

SEC("lsm/kernel_read_file")
int BPF_PROG(enf_kernel_read_file, struct file *file, enum kernel_read_file_id id, bool contents,
	     int ret)
{
	__u32 op;

	if (ret != 0)
		return enf_prior_verdict(ret);
	if (id == READING_MODULE)
		op = ENF_KOP_MODULE_LOAD;
	else if (id == READING_KEXEC_IMAGE || id == READING_KEXEC_INITRAMFS)
		op = ENF_KOP_KEXEC;
	else
		return 0;
	return enf_kernel_verdict_path(ENF_KERNEL_OP, op, (__u32)id, 0,
				       (struct path *)&file->f_path);
}
