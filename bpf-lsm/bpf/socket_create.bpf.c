// SPDX-License-Identifier: GPL-2.0-only
/* lsm/socket_create: `raw_socket` (SOCK_RAW in AF_INET or AF_INET6) and
 * `packet_socket` (AF_PACKET, any type). The kernel's own sockets pass. */
#include "include/common.h"
#include "include/kernel_ops.h"

#define ENF_AF_INET 2
#define ENF_AF_INET6 10
#define ENF_AF_PACKET 17
#define ENF_SOCK_RAW 3
#define ENF_SOCK_TYPE_MASK 0xf

SEC("lsm/socket_create")
int BPF_PROG(enf_socket_create, int family, int type, int protocol, int kern, int ret)
{
	__u32 op;

	if (ret != 0)
		return enf_prior_verdict(ret);
	if (kern)
		return 0;
	if (family == ENF_AF_PACKET)
		op = ENF_KOP_PACKET_SOCKET;
	else if ((family == ENF_AF_INET || family == ENF_AF_INET6) &&
		 (type & ENF_SOCK_TYPE_MASK) == ENF_SOCK_RAW)
		op = ENF_KOP_RAW_SOCKET;
	else
		return 0;
	return enf_kernel_op(op, (__u32)family,
			     ((__u64)(__u32)protocol << 32) | (__u32)(type & ENF_SOCK_TYPE_MASK));
}
