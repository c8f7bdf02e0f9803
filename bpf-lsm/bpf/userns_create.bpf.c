// SPDX-License-Identifier: GPL-2.0-only
/* lsm/userns_create (Linux 6.1+): the `userns_create` kernel operation
 * (unshare or clone with CLONE_NEWUSER). */
#include "include/common.h"
#include "include/kernel_ops.h"

SEC("lsm/userns_create")
int BPF_PROG(enf_userns_create, const struct cred *cred, int ret)
{
	if (ret != 0)
		return enf_prior_verdict(ret);
	return enf_kernel_op(ENF_KOP_USERNS_CREATE, 0, 0);
}
