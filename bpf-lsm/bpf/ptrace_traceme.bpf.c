// SPDX-License-Identifier: GPL-2.0-only
/* lsm/ptrace_traceme: the `ptrace` kernel operation by the tracee
 * (PTRACE_TRACEME), which ptrace_access_check does not see. */
#include "include/common.h"
#include "include/kernel_ops.h"

SEC("lsm/ptrace_traceme")
int BPF_PROG(enf_ptrace_traceme, struct task_struct *parent, int ret)
{
	if (ret != 0)
		return enf_prior_verdict(ret);
	return enf_kernel_op(ENF_KOP_PTRACE, (__u32)BPF_CORE_READ(parent, tgid), 0);
}
