// SPDX-License-Identifier: GPL-2.0-only
/*
 * lsm/ptrace_access_check: the `ptrace` kernel operation by the tracer.
 * ptrace_may_access() also guards many /proc reads (PTRACE_MODE_READ); only
 * attach-mode checks are `ptrace` (PTRACE_ATTACH/SEIZE, /proc/PID/mem
 * writes), so that a denied ptrace does not break `ps`.
 */
#include "include/common.h"
#include "include/kernel_ops.h"
#include "include/guard.h"

#define ENF_PTRACE_MODE_ATTACH 0x02

SEC("lsm/ptrace_access_check")
int BPF_PROG(enf_ptrace_access_check, struct task_struct *child, unsigned int mode, int ret)
{
	int guarded;

	if (ret != 0)
		return enf_prior_verdict(ret);
	if (!(mode & ENF_PTRACE_MODE_ATTACH))
		return 0;
	guarded = enf_guard_task(child, ENF_GUARD_PTRACE, mode);
	if (guarded <= 0)
		return guarded;
	return enf_kernel_op(ENF_KOP_PTRACE, (__u32)BPF_CORE_READ(child, tgid), mode);
}
