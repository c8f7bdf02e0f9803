// SPDX-License-Identifier: GPL-2.0-only
/*
 * lsm/socket_sendmsg: decides a UDP send with an explicit destination
 * (msg_name) by that address and port. A send on a connected UDP socket
 * without one goes to the peer decided at connect; TCP is covered by
 * connect. This is what cgroup/sendmsg4|6 see too.
 */
#include "include/common.h"
#include "include/net.h"

SEC("lsm/socket_sendmsg")
int BPF_PROG(enf_socket_sendmsg, struct socket *sock, struct msghdr *msg, int size, int ret)
{
	struct enf_net_op o;
	struct sockaddr *name;
	struct sock *sk;
	__u64 cgroup_id, slots;
	int namelen;

	if (ret != 0)
		return enf_prior_verdict(ret);
	slots = enf_current_slots(&cgroup_id);
	if (!slots)
		return 0;
	sk = BPF_CORE_READ(sock, sk);
	if (!sk || enf_proto_bit(BPF_CORE_READ(sk, sk_protocol)) != ENF_PROTO_UDP)
		return 0;
	name = BPF_CORE_READ(msg, msg_name);
	namelen = BPF_CORE_READ(msg, msg_namelen);
	if (!name || namelen <= 0)
		return 0;
	__builtin_memset(&o, 0, sizeof(o));
	o.op = ENF_NET_SEND;
	if (enf_net_from_sockaddr(sock, name, namelen, &o))
		return 0;
	return enf_net_lsm_verdict(&o, slots, cgroup_id);
}
