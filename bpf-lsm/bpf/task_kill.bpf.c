// SPDX-License-Identifier: GPL-2.0-only
/*
 * lsm/task_kill: self-protection only. A signal from a task under
 * enforcement to the enforcer is refused (guard.h). Signals sent by the
 * kernel itself do not reach this hook.
 */
#include "include/common.h"
#include "include/guard.h"

SEC("lsm/task_kill")
int BPF_PROG(enf_task_kill, struct task_struct *p, struct kernel_siginfo *info, int sig,
	     const struct cred *cred, int ret)
{
	int guarded;

	if (ret != 0)
		return enf_prior_verdict(ret);
	guarded = enf_guard_task(p, ENF_GUARD_SIGNAL, (__u32)sig);
	return guarded > 0 ? 0 : guarded;
}
