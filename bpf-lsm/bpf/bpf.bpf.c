// SPDX-License-Identifier: GPL-2.0-only
/* lsm/bpf: the `bpf` kernel operation, every bpf() command. (Linux 6.15
 * added a fourth argument; 6.1 to 6.14 have these three.) */
#include "include/common.h"
#include "include/kernel_ops.h"
#include "include/guard.h"

SEC("lsm/bpf")
int BPF_PROG(enf_bpf, int cmd, union bpf_attr *attr, unsigned int size, int ret)
{
	__u64 cgroup_id;

	if (ret != 0)
		return enf_prior_verdict(ret);
	/* Self-protection: commands that reach existing objects by pin or id,
	 * or detach them, are refused to tasks under enforcement. */
	switch (cmd) {
	case BPF_OBJ_GET:
	case BPF_PROG_GET_FD_BY_ID:
	case BPF_MAP_GET_FD_BY_ID:
	case BPF_LINK_GET_FD_BY_ID:
	case BPF_PROG_DETACH:
	case BPF_LINK_DETACH:
		if (enf_guard_daemon() && enf_in_scope(&cgroup_id))
			return enf_guard_refuse(ENF_GUARD_BPF, (__u32)cmd, 0, cgroup_id);
		break;
	default:
		break;
	}
	return enf_kernel_op(ENF_KOP_BPF, (__u32)cmd, 0);
}
