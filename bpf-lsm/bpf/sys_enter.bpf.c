// SPDX-License-Identifier: GPL-2.0-only
/*
 * tp_btf/sys_enter: system call rules by x86_64 number. A tracepoint cannot
 * refuse the call: `kill` sends SIGKILL before the call runs (the signal is
 * pending when the task returns to user space, so the call itself still
 * completes), `audit` records it. 32-bit (ia32) calls have other numbers and
 * are not decided.
 */
#include "include/common.h"
#include "include/kernel_ops.h"

/* TS_COMPAT in thread_info.status: the task is in a 32-bit system call. */
#define ENF_TS_COMPAT 0x0002

SEC("tp_btf/sys_enter")
int BPF_PROG(enf_sys_enter, struct pt_regs *regs, long id)
{
	struct task_struct *task;

	if (id < 0)
		return 0;
	task = bpf_get_current_task_btf();
	if (BPF_CORE_READ(task, thread_info.status) & ENF_TS_COMPAT)
		return 0;
	enf_kernel_verdict_path(ENF_KERNEL_SYSCALL, (__u32)id, 0, 0, NULL);
	return 0;
}
