/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The network matcher and decision, shared by the LSM hooks (socket_connect,
 * socket_bind, socket_listen, socket_sendmsg) and the cgroup socket programs
 * of the fallback (cgroup/connect4|6, bind4|6, sendmsg4|6).
 *
 * An operation is (op, family, protocol, address, port). An IPv4-mapped IPv6
 * address (::ffff:a.b.c.d) is folded to IPv4 first, as policy-lang's
 * evaluator does. The address is looked up in the family's LPM trie; the
 * value lists every rule of the longest matching prefix and of the shorter
 * prefixes covering it, so one lookup yields every candidate. Each candidate
 * is checked for its policy, op, family, protocol and port ranges, then the
 * per-policy decision of decide.h runs for the network class.
 */
#ifndef ENFORCER_NET_H
#define ENFORCER_NET_H

#include "common.h"
#include "maps.h"
#include "ratelimit.h"
#include "decide.h"
#include "binary_sets.h"
#include <bpf/bpf_endian.h>

#define ENF_AF_UNSPEC 0
#define ENF_AF_INET 2
#define ENF_AF_INET6 10
#define ENF_IPPROTO_TCP 6
#define ENF_IPPROTO_UDP 17
#define ENF_IPPROTO_UDPLITE 136
#define ENF_IPPROTO_MPTCP 262
/* The shortest sockaddr_in6 the kernel accepts (SIN6_LEN_RFC2133). */
#define ENF_SIN6_MIN_LEN 24

/* One network operation. */
struct enf_net_op {
	__u32 op;        /* ENF_NET_* */
	__u16 family;    /* ENF_AF_INET or ENF_AF_INET6 */
	__u16 protocol;  /* IPPROTO_* of the socket */
	__u16 port;      /* host byte order */
	__u16 _pad;
	__u32 flags;     /* ENF_FLAG_V4_MAPPED */
	__u8 addr[16];   /* network byte order; AF_INET: the first 4 bytes */
};

/* TCP and MPTCP (TCP on the wire) are `tcp`; UDP and UDP-Lite are `udp`. */
static __always_inline __u32 enf_proto_bit(__u16 protocol)
{
	switch (protocol) {
	case ENF_IPPROTO_TCP:
	case ENF_IPPROTO_MPTCP:
		return ENF_PROTO_TCP;
	case ENF_IPPROTO_UDP:
	case ENF_IPPROTO_UDPLITE:
		return ENF_PROTO_UDP;
	default:
		return 0;
	}
}

/* ::ffff:a.b.c.d becomes a.b.c.d (AF_INET), as policy-lang folds it. */
static __always_inline void enf_net_fold_mapped(struct enf_net_op *o)
{
	__u32 w0, w1, w2;

	if (o->family != ENF_AF_INET6)
		return;
	__builtin_memcpy(&w0, &o->addr[0], 4);
	__builtin_memcpy(&w1, &o->addr[4], 4);
	__builtin_memcpy(&w2, &o->addr[8], 4);
	if (w0 || w1 || w2 != bpf_htonl(0x0000ffff))
		return;
	__builtin_memcpy(&o->addr[0], &o->addr[12], 4);
	__builtin_memset(&o->addr[4], 0, 12);
	o->family = ENF_AF_INET;
	o->flags |= ENF_FLAG_V4_MAPPED;
}

struct enf_net_match {
	struct enf_hits *hits;
	__u64 slots;
	__u32 op;
	__u32 family_bit;
	__u32 proto_bit;
	__u32 off;        /* the candidate list */
	__u32 len;
	__u32 ports_off;  /* the port ranges of the rule being checked */
	__u32 ports_len;
	__u16 port;
	__u16 port_hit;
};

static long enf_port_step(__u32 i, void *data)
{
	struct enf_net_match *m = data;
	struct enf_port_range *r;
	__u32 idx;

	if (i >= m->ports_len)
		return 1;
	idx = m->ports_off + i;
	r = bpf_map_lookup_elem(&enf_net_ports, &idx);
	if (!r)
		return 1;
	if (r->lo <= m->port && m->port <= r->hi) {
		m->port_hit = 1;
		return 1;
	}
	return 0;
}

/* One candidate rule. `bins`, a constant per caller, checks `from` /
 * `except_from`: only the LSM hooks may read task storage. */
static __always_inline long enf_net_step_body(__u32 i, void *data, bool bins)
{
	struct enf_net_match *m = data;
	struct enf_net_rule *r;
	__u32 idx, slot;

	if (i >= m->len)
		return 1;
	idx = m->off + i;
	r = bpf_map_lookup_elem(&enf_net_rules, &idx);
	if (!r)
		return 1;
	slot = r->slot & (ENF_MAX_POLICIES - 1);
	if (!(m->slots & (1ULL << slot)))
		return 0;
	if (!(r->ops & m->op) || !(r->families & m->family_bit) || !(r->protocols & m->proto_bit))
		return 0;
	if (r->ports_len) {
		m->ports_off = r->ports_off;
		m->ports_len = r->ports_len;
		m->port_hit = 0;
		bpf_loop(r->ports_len, enf_port_step, m, 0);
		if (!m->port_hit)
			return 0;
	}
	if (bins && !enf_binary_sets_apply(m->hits, r->action, r->from_sets, r->except_sets))
		return 0;
	enf_hits_add(m->hits, slot, r->action, r->id);
	return 0;
}

static long enf_net_step(__u32 i, void *data)
{
	return enf_net_step_body(i, data, false);
}

static long enf_net_step_bins(__u32 i, void *data)
{
	return enf_net_step_body(i, data, true);
}

/* Decides `o` (already folded) for a task whose policies are `slots`; `bins`
 * (LSM hooks) applies the rules' binary filters. */
static __always_inline int enf_net_decide(struct enf_net_op *o, __u64 slots, bool bins,
					  struct enf_decision *d)
{
	struct enf_net_match m = {
		.slots = slots,
		.op = o->op,
		.proto_bit = enf_proto_bit(o->protocol),
		.port = o->port,
	};
	struct enf_net_list *l;

	m.hits = enf_decide_begin(d);
	if (!m.hits)
		return -1;
	if (o->family == ENF_AF_INET) {
		struct enf_lpm_v4_key k = { .prefixlen = 32 };

		__builtin_memcpy(k.addr, o->addr, 4);
		m.family_bit = ENF_FAMILY_IPV4;
		l = bpf_map_lookup_elem(&enf_net_v4, &k);
	} else {
		struct enf_lpm_v6_key k = { .prefixlen = 128 };

		__builtin_memcpy(k.addr, o->addr, 16);
		m.family_bit = ENF_FAMILY_IPV6;
		l = bpf_map_lookup_elem(&enf_net_v6, &k);
	}
	if (l && l->list_len) {
		m.off = l->list_off;
		m.len = l->list_len;
		if (bins)
			bpf_loop(m.len, enf_net_step_bins, &m, 0);
		else
			bpf_loop(m.len, enf_net_step, &m, 0);
	}
	enf_decide_policies(m.hits, ENF_CLASS_NET, o->op, slots, false, d);
	return 0;
}

/* Sends the record of a decision other than allow. */
static __always_inline void enf_net_report(const struct enf_net_op *o, const struct enf_decision *d,
					   __u64 cgroup_id, __u32 flags)
{
	struct enf_net_event *ev;
	__u32 zero = 0;

	ev = bpf_map_lookup_elem(&enf_net_scratch, &zero);
	if (!ev)
		return;
	enf_fill_header(&ev->hdr, ENF_EVENT_NET, enf_verdict_of(d->action), cgroup_id, d->rule_id,
			d->policy_id, flags | d->flags | o->flags);
	ev->op = o->op;
	ev->family = o->family;
	ev->protocol = o->protocol;
	ev->port = o->port;
	ev->_pad = 0;
	ev->_pad2 = 0;
	__builtin_memcpy(ev->addr, o->addr, 16);
	enf_emit(&ev->hdr, sizeof(*ev));
}

/* The policies of the current task's cgroup; 0 when none apply. */
static __always_inline __u64 enf_current_slots(__u64 *cgroup_id)
{
	struct enf_cgroup_policies *scope;

	*cgroup_id = bpf_get_current_cgroup_id();
	scope = bpf_map_lookup_elem(&enf_cgroup_policies, cgroup_id);
	return scope ? scope->slots : 0;
}

/* --- the LSM side ------------------------------------------------------- */

/* Fills `o` from a socket address the kernel copied in (connect, bind,
 * sendmsg). Returns nonzero when there is nothing to decide: not an inet
 * socket, another address family, or an address too short (the kernel
 * refuses those itself). */
static __always_inline int enf_net_from_sockaddr(struct socket *sock, struct sockaddr *address,
						 int addrlen, struct enf_net_op *o)
{
	struct sock *sk = BPF_CORE_READ(sock, sk);
	__u16 sk_family, sa_family = 0;

	if (!sk || !address)
		return -1;
	sk_family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (sk_family != ENF_AF_INET && sk_family != ENF_AF_INET6)
		return -1;
	o->protocol = BPF_CORE_READ(sk, sk_protocol);
	if (bpf_probe_read_kernel(&sa_family, sizeof(sa_family), &address->sa_family))
		return -1;
	/* An AF_INET socket binds AF_UNSPEC as INADDR_ANY (inet_bind). */
	if (sa_family == ENF_AF_UNSPEC && o->op == ENF_NET_BIND && sk_family == ENF_AF_INET)
		sa_family = ENF_AF_INET;
	if (sa_family == ENF_AF_INET) {
		struct sockaddr_in sin;

		if (addrlen < (int)sizeof(sin) ||
		    bpf_probe_read_kernel(&sin, sizeof(sin), address))
			return -1;
		o->family = ENF_AF_INET;
		o->port = bpf_ntohs(sin.sin_port);
		__builtin_memcpy(o->addr, &sin.sin_addr.s_addr, 4);
	} else if (sa_family == ENF_AF_INET6) {
		struct sockaddr_in6 sin6;

		/* The copy is a sockaddr_storage: reading all 28 bytes is safe. */
		if (addrlen < ENF_SIN6_MIN_LEN ||
		    bpf_probe_read_kernel(&sin6, sizeof(sin6), address))
			return -1;
		o->family = ENF_AF_INET6;
		o->port = bpf_ntohs(sin6.sin6_port);
		__builtin_memcpy(o->addr, sin6.sin6_addr.in6_u.u6_addr8, 16);
	} else {
		return -1;
	}
	enf_net_fold_mapped(o);
	return 0;
}

/* The LSM verdict for `o`: decides, reports, kills. */
static __always_inline int enf_net_lsm_verdict(struct enf_net_op *o, __u64 slots, __u64 cgroup_id)
{
	struct enf_decision d;
	__u32 flags = 0;

	if (enf_net_decide(o, slots, true, &d))
		return 0;
	if (d.action == ENF_ACTION_ALLOW)
		return 0;
	if (d.action == ENF_ACTION_KILL && bpf_send_signal(SIGKILL) == 0)
		flags |= ENF_FLAG_KILLED;
	enf_net_report(o, &d, cgroup_id, flags);
	return d.action >= ENF_ACTION_DENY ? -EPERM : 0;
}

/* connect, bind and sendmsg with an address, in LSM hooks. */
static __always_inline int enf_net_lsm_sockaddr(struct socket *sock, struct sockaddr *address,
						int addrlen, __u32 op)
{
	struct enf_net_op o;
	__u64 cgroup_id, slots = enf_current_slots(&cgroup_id);

	if (!slots)
		return 0;
	__builtin_memset(&o, 0, sizeof(o));
	o.op = op;
	if (enf_net_from_sockaddr(sock, address, addrlen, &o))
		return 0;
	return enf_net_lsm_verdict(&o, slots, cgroup_id);
}

/* --- the cgroup socket side (no BPF LSM) -------------------------------- */

/* The verdict of a cgroup/connect|bind|sendmsg 4|6 program: 1 allows, 0
 * denies (EPERM). `v6` is a constant per program: the context fields of the
 * other family are not readable. These hooks cannot kill: a kill rule denies. */
static __always_inline int enf_net_cgroup(struct bpf_sock_addr *ctx, __u32 op, bool v6)
{
	struct enf_net_op o;
	struct enf_decision d;
	__u64 cgroup_id, slots = enf_current_slots(&cgroup_id);

	if (!slots)
		return 1;
	__builtin_memset(&o, 0, sizeof(o));
	o.op = op;
	o.protocol = (__u16)ctx->protocol;
	o.port = bpf_ntohs((__u16)ctx->user_port);
	if (v6) {
		__u32 w[4];

		w[0] = ctx->user_ip6[0];
		w[1] = ctx->user_ip6[1];
		w[2] = ctx->user_ip6[2];
		w[3] = ctx->user_ip6[3];
		o.family = ENF_AF_INET6;
		__builtin_memcpy(o.addr, w, 16);
		enf_net_fold_mapped(&o);
	} else {
		__u32 a = ctx->user_ip4;

		o.family = ENF_AF_INET;
		__builtin_memcpy(o.addr, &a, 4);
	}
	if (enf_net_decide(&o, slots, false, &d))
		return 1;
	if (d.action == ENF_ACTION_ALLOW)
		return 1;
	enf_net_report(&o, &d, cgroup_id, ENF_FLAG_CGROUP_HOOK);
	return d.action >= ENF_ACTION_DENY ? 0 : 1;
}

#endif /* ENFORCER_NET_H */
