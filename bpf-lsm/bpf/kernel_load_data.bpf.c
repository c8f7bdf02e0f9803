// SPDX-License-Identifier: GPL-2.0-only
/* lsm/kernel_load_data: `module_load` (init_module, from memory) and
 * `kexec` (kexec_load). */
#include "include/common.h"
#include "include/kernel_ops.h"

SEC("lsm/kernel_load_data")
int BPF_PROG(enf_kernel_load_data, enum kernel_load_data_id id, bool contents, int ret)
{
	__u32 op;

	if (ret != 0)
		return enf_prior_verdict(ret);
	if (id == LOADING_MODULE)
		op = ENF_KOP_MODULE_LOAD;
	else if (id == LOADING_KEXEC_IMAGE || id == LOADING_KEXEC_INITRAMFS)
		op = ENF_KOP_KEXEC;
	else
		return 0;
	return enf_kernel_op(op, (__u32)id, 1);
}
