// SPDX-License-Identifier: GPL-2.0-only
/* lsm/capable: capability rules by capability number. Called for every
 * capability check, so a task outside the scoped cgroups costs one lookup
 * and a capability without rules one more (kernel_ops.h). */
#include "include/common.h"
#include "include/kernel_ops.h"

SEC("lsm/capable")
int BPF_PROG(enf_capable, const struct cred *cred, struct user_namespace *ns, int cap,
	     unsigned int opts, int ret)
{
	if (ret != 0)
		return enf_prior_verdict(ret);
	return enf_kernel_verdict_path(ENF_KERNEL_CAPABILITY, (__u32)cap, opts, 0, NULL);
}
