// SPDX-License-Identifier: GPL-2.0-only
/* lsm/bpf: the `bpf` kernel operation, every bpf() command. (Linux 6.15
 * added a fourth argument; 6.1 to 6.14 have these three.) */
#include "include/common.h"
#include "include/kernel_ops.h"

SEC("lsm/bpf")
int BPF_PROG(enf_bpf, int cmd, union bpf_attr *attr, unsigned int size, int ret)
{
	if (ret != 0)
		return enf_prior_verdict(ret);
	return enf_kernel_op(ENF_KOP_BPF, (__u32)cmd, 0);
}
