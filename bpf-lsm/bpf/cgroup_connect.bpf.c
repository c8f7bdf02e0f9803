// SPDX-License-Identifier: GPL-2.0-only
/*
 * cgroup/connect4 and cgroup/connect6: the connect decision of net.h for kernels
 * without BPF LSM, attached to the selected cgroups (their subtrees run
 * them). 1 allows, 0 denies with EPERM.
 */
#include "include/common.h"
#include "include/net.h"

SEC("cgroup/connect4")
int enf_cg_connect4(struct bpf_sock_addr *ctx)
{
	return enf_net_cgroup(ctx, ENF_NET_CONNECT, false);
}

SEC("cgroup/connect6")
int enf_cg_connect6(struct bpf_sock_addr *ctx)
{
	return enf_net_cgroup(ctx, ENF_NET_CONNECT, true);
}
