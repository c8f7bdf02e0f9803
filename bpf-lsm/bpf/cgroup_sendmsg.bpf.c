// SPDX-License-Identifier: GPL-2.0-only
/*
 * cgroup/sendmsg4 and cgroup/sendmsg6: the sendmsg decision of net.h for kernels
 * without BPF LSM, attached to the selected cgroups (their subtrees run
 * them). 1 allows, 0 denies with EPERM.
 */
#include "include/common.h"
#include "include/net.h"

SEC("cgroup/sendmsg4")
int enf_cg_sendmsg4(struct bpf_sock_addr *ctx)
{
	return enf_net_cgroup(ctx, ENF_NET_SEND, false);
}

SEC("cgroup/sendmsg6")
int enf_cg_sendmsg6(struct bpf_sock_addr *ctx)
{
	return enf_net_cgroup(ctx, ENF_NET_SEND, true);
}
