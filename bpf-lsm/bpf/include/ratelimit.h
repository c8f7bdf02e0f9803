/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Sending a verdict record, rate limited per (cgroup, policy, rule): at most
 * enf_config.rate_limit records per second per key, so that one looping
 * process cannot flood user space. Over the limit the verdict still applies
 * (the hook returns it); only the record is not sent: the key's count of
 * suppressed records grows, the next record sent for the key carries it
 * (enf_event_header.suppressed), and ENF_STAT_RATE_SUPPRESSED counts every
 * one of them.
 */
#ifndef ENFORCER_RATELIMIT_H
#define ENFORCER_RATELIMIT_H

#include "common.h"
#include "maps.h"

#define ENF_RATE_WINDOW_NS 1000000000ULL

/* Settings written by the loader (key 0). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct enf_config);
} enf_config SEC(".maps");

/* Kernel-internal (not ABI): the rate limit's key and window. */
struct enf_rate_key {
	__u64 cgroup_id;
	__u32 policy_id;
	__u32 rule_id;
};

struct enf_rate {
	__u64 window_ns;   /* start of the current one-second window */
	__u32 sent;        /* records sent in it */
	__u32 suppressed;  /* not sent since the last record sent for the key */
};

/* When full, the least recently used key is evicted: its pending suppressed
 * count is then carried by no record, but ENF_STAT_RATE_SUPPRESSED has it. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct enf_rate_key);
	__type(value, struct enf_rate);
} enf_rate SEC(".maps");

static __always_inline __u32 enf_rate_limit(void)
{
	__u32 zero = 0;
	struct enf_config *c = bpf_map_lookup_elem(&enf_config, &zero);

	return c ? c->rate_limit : 0;
}

/* The key's window state, created on first use; NULL when the map refuses. */
static __always_inline struct enf_rate *enf_rate_of(const struct enf_event_header *h)
{
	struct enf_rate_key k = {
		.cgroup_id = h->cgroup_id,
		.policy_id = h->policy_id,
		.rule_id = h->rule_id,
	};
	struct enf_rate fresh = { .window_ns = h->ktime_ns };
	struct enf_rate *r;

	r = bpf_map_lookup_elem(&enf_rate, &k);
	if (r)
		return r;
	bpf_map_update_elem(&enf_rate, &k, &fresh, BPF_NOEXIST);
	return bpf_map_lookup_elem(&enf_rate, &k);
}

/*
 * Sends the record `h` starts (size bytes, h filled by enf_fill_header) unless
 * its key is over the limit. The counts are atomic adds, so a record is
 * either sent or counted as suppressed exactly once, whichever CPU it runs
 * on; the window itself is approximate under races (a few more may pass).
 */
static __always_inline void enf_emit(struct enf_event_header *h, __u64 size)
{
	__u32 limit = enf_rate_limit(), pending = 0;
	struct enf_rate *r = NULL;

	if (limit) {
		r = enf_rate_of(h);
		if (r) {
			if (h->ktime_ns - r->window_ns >= ENF_RATE_WINDOW_NS) {
				r->window_ns = h->ktime_ns;
				r->sent = 0;
			}
			if (r->sent >= limit) {
				__sync_fetch_and_add(&r->suppressed, 1);
				enf_count(ENF_STAT_RATE_SUPPRESSED);
				return;
			}
			r->sent += 1;
			/* Taken by subtracting what was read: a count added meanwhile
			 * on another CPU stays for the next record. */
			pending = r->suppressed;
			if (pending)
				__sync_fetch_and_add(&r->suppressed, -pending);
		}
	}
	h->suppressed = pending;
	if (bpf_ringbuf_output(&enf_events, h, size, 0)) {
		enf_count(ENF_STAT_RINGBUF_DROPS);
		/* The record is lost: its suppressed count goes to the next one. */
		if (r && pending)
			__sync_fetch_and_add(&r->suppressed, pending);
	}
}

#endif /* ENFORCER_RATELIMIT_H */
