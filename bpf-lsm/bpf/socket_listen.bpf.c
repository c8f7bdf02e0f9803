// SPDX-License-Identifier: GPL-2.0-only
/*
 * lsm/socket_listen: decides a listen by the socket's local address and port
 * (port 0 when it is not bound yet: the kernel binds it after this hook).
 */
#include "include/common.h"
#include "include/net.h"

SEC("lsm/socket_listen")
int BPF_PROG(enf_socket_listen, struct socket *sock, int backlog, int ret)
{
	struct enf_net_op o;
	struct sock *sk;
	__u64 cgroup_id, slots;
	__u16 family;

	if (ret != 0)
		return enf_prior_verdict(ret);
	slots = enf_current_slots(&cgroup_id);
	if (!slots)
		return 0;
	sk = BPF_CORE_READ(sock, sk);
	if (!sk)
		return 0;
	__builtin_memset(&o, 0, sizeof(o));
	o.op = ENF_NET_LISTEN;
	family = BPF_CORE_READ(sk, __sk_common.skc_family);
	o.protocol = BPF_CORE_READ(sk, sk_protocol);
	o.port = BPF_CORE_READ(sk, __sk_common.skc_num);
	if (family == ENF_AF_INET) {
		__u32 a = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);

		o.family = ENF_AF_INET;
		__builtin_memcpy(o.addr, &a, 4);
	} else if (family == ENF_AF_INET6) {
		o.family = ENF_AF_INET6;
		BPF_CORE_READ_INTO(&o.addr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		enf_net_fold_mapped(&o);
	} else {
		return 0;
	}
	return enf_net_lsm_verdict(&o, slots, cgroup_id);
}
