// SPDX-License-Identifier: GPL-2.0-only
/* lsm/socket_connect: decides a connect by the destination address and port
 * (net.h), for tasks in a cgroup with policies. */
#include "include/common.h"
#include "include/net.h"

SEC("lsm/socket_connect")
int BPF_PROG(enf_socket_connect, struct socket *sock, struct sockaddr *address, int addrlen,
	     int ret)
{
	if (ret != 0)
		return enf_prior_verdict(ret);
	return enf_net_lsm_sockaddr(sock, address, addrlen, ENF_NET_CONNECT);
}
