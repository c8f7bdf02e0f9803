// SPDX-License-Identifier: GPL-2.0-only
/*
 * cgroup/bind4 and cgroup/bind6: the bind decision of net.h for kernels
 * without BPF LSM, attached to the selected cgroups (their subtrees run
 * them). 1 allows, 0 denies with EPERM.
 */
#include "include/common.h"
#include "include/net.h"

SEC("cgroup/bind4")
int enf_cg_bind4(struct bpf_sock_addr *ctx)
{
	return enf_net_cgroup(ctx, ENF_NET_BIND, false);
}

SEC("cgroup/bind6")
int enf_cg_bind6(struct bpf_sock_addr *ctx)
{
	return enf_net_cgroup(ctx, ENF_NET_BIND, true);
}
