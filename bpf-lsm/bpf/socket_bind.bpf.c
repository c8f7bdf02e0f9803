// SPDX-License-Identifier: GPL-2.0-only
/* lsm/socket_bind: decides a bind by the local address and port (net.h). */
#include "include/common.h"
#include "include/net.h"

SEC("lsm/socket_bind")
int BPF_PROG(enf_socket_bind, struct socket *sock, struct sockaddr *address, int addrlen, int ret)
{
	if (ret != 0)
		return enf_prior_verdict(ret);
	return enf_net_lsm_sockaddr(sock, address, addrlen, ENF_NET_BIND);
}
