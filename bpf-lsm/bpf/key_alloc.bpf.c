// SPDX-License-Identifier: GPL-2.0-only
/* lsm/key_alloc: the `keyctl` kernel operation, at the creation of a key or
 * keyring (add_key, keyctl, request_key, and keyrings made on demand). */
#include "include/common.h"
#include "include/kernel_ops.h"

SEC("lsm/key_alloc")
int BPF_PROG(enf_key_alloc, struct key *key, const struct cred *cred, unsigned long flags, int ret)
{
	if (ret != 0)
		return enf_prior_verdict(ret);
	/* The key has no serial yet (it is given one after this hook). */
	return enf_kernel_op(ENF_KOP_KEYCTL, flags, 0);
}
