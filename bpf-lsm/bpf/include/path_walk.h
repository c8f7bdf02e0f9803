/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The path matcher: walks a resolved path one component at a time through
 * policy-lang's automaton (matcher.rs, whose PathIndex::lookup is the
 * reference walk: this must match it bit for bit).
 *
 * For each component: look (state, FNV-1a(component)) up in enf_edges and
 * compare the bytes; without a matching edge follow the state's wildcard;
 * without either the walk is dead. On the last component, before stepping,
 * every suffix starting at a '.' is looked up as (state, FNV-1a(suffix)) in
 * enf_suffixes. The last state's accept list plus the suffix lists are the
 * matching rules; each one is handed to enf_hit().
 *
 * Loops are bpf_loop callbacks (verified once, run up to ENF_PATH_MAX times)
 * or small bounded loops, which both 6.1 and 6.12 accept.
 */
#ifndef ENFORCER_PATH_WALK_H
#define ENFORCER_PATH_WALK_H

#include "common.h"
#include "maps.h"
#include "path_hash.h"
#include "binary_sets.h"

#define ENF_NAME_WORDS (ENF_NAME_BYTES / 8)

/* What a rule match is checked against. */
struct enf_match_ctx {
	struct enf_hits *hits;
	__u64 slots;     /* the acting task's policies; ENF_MATCHER_CGROUP: the
			  * policies whose exclusions matched */
	__u32 class;     /* ENF_CLASS_*, ENF_MATCHER_BINARY or ENF_MATCHER_CGROUP */
	__u32 access;    /* ENF_OP_* of the operation (file class) */
	__u64 sets;      /* ENF_MATCHER_BINARY: the binary sets matched;
			  * ENF_MATCHER_CGROUP: the policies whose selectors matched */
};

/* Records one matching rule if its policy applies and its ops cover the
 * operation. Per (action, slot) the lowest rule id is kept for the record. */
static __always_inline void enf_hit(struct enf_match_ctx *m, const struct enf_rule *r)
{
	__u32 slot = r->slot & (ENF_MAX_POLICIES - 1);

	if (m->class == ENF_MATCHER_BINARY) {
		/* The executable's walk: list entries are binary-set ids. */
		m->sets |= 1ULL << (r->id & (ENF_MAX_BINARY_SETS - 1));
		return;
	}
	if (m->class == ENF_MATCHER_CGROUP) {
		/* A new cgroup's walk: list entries are selector patterns. */
		if (r->ops & ENF_SELECT_EXCLUDE)
			m->slots |= 1ULL << slot;
		else
			m->sets |= 1ULL << slot;
		return;
	}
	/* Only the hooks' walks record hits; the check keeps a verifier that no
	 * longer knows the class (6.1, in bpf_loop callbacks) off the NULL. */
	if (!m->hits)
		return;
	if (!(m->slots & (1ULL << slot)))
		return;
	if (m->class == ENF_CLASS_FILE && !(r->ops & m->access))
		return;
	if (!enf_binary_applies(m->hits, r))
		return;
	enf_hits_add(m->hits, slot, r->action, r->id);
}

struct enf_list_ctx {
	struct enf_match_ctx *m;
	__u32 off;
	__u32 len;
};

static long enf_list_step(__u32 i, void *data)
{
	struct enf_list_ctx *l = data;
	struct enf_rule *r;
	__u32 idx;

	if (i >= l->len)
		return 1;
	idx = l->off + i;
	r = bpf_map_lookup_elem(&enf_rule_list, &idx);
	if (!r)
		return 1;
	enf_hit(l->m, r);
	return 0;
}

/* Hands every rule of enf_rule_list[off..off+len) to enf_hit(). Lists have
 * no length cap beyond bpf_loop's 2^23 iterations (checked by the loader). */
static __always_inline void enf_hit_list(struct enf_match_ctx *m, __u32 off, __u32 len)
{
	struct enf_list_ctx l = { .m = m, .off = off, .len = len };

	if (len)
		bpf_loop(len, enf_list_step, &l, 0);
}

struct enf_cmp_ctx {
	const char *buf;
	const __u64 *want;
	__u32 start;
	__u32 len;
	__u32 equal;
};

/* Word k of the comparison. The bytes past the component are masked off
 * (little-endian); the buffers have ENF_PATH_SLACK spare bytes so the last
 * read stays inside the map value. */
static long enf_cmp_step(__u32 k, void *data)
{
	struct enf_cmp_ctx *c = data;
	__u32 word = k & (ENF_NAME_WORDS - 1);
	__u32 off = word * 8;
	__u64 w;

	if (k >= ENF_NAME_WORDS || off >= c->len)
		return 1;
	w = *(const __u64 *)(c->buf + ((c->start + off) & (ENF_PATH_MAX - 1)));
	if (c->len - off < 8)
		w &= (1ULL << ((c->len - off) * 8)) - 1;
	if (w != c->want[word]) {
		c->equal = 0;
		return 1;
	}
	return 0;
}

/* buf[start..start+len) == name[0..len), name zero-padded to ENF_NAME_BYTES.
 * Inner loops are bpf_loop callbacks too, not unrolled loops: since 6.7
 * the verifier re-walks a callback until its state converges, and unrolled
 * branches inside it multiply past its limits. */
static __always_inline bool enf_name_eq(const char *buf, __u32 start, __u32 len,
					const char *name)
{
	struct enf_cmp_ctx c = {
		.buf = buf,
		.want = (const __u64 *)name,
		.start = start,
		.len = len,
		.equal = 1,
	};

	if (len == 0 || len > ENF_NAME_MAX)
		return false;
	bpf_loop(ENF_NAME_WORDS, enf_cmp_step, &c, 0);
	return c.equal;
}

struct enf_span_hash_ctx {
	const char *buf;
	__u32 start;
	__u32 len;
	__u64 hash;
};

static long enf_span_hash_step(__u32 i, void *data)
{
	struct enf_span_hash_ctx *h = data;

	if (i >= h->len)
		return 1;
	h->hash = (h->hash ^ (__u8)h->buf[(h->start + i) & (ENF_PATH_MAX - 1)]) * ENF_FNV_PRIME;
	return 0;
}

/* FNV-1a of buf[start..start+len), len <= ENF_NAME_MAX. */
static __always_inline __u64 enf_span_hash(const char *buf, __u32 start, __u32 len)
{
	struct enf_span_hash_ctx h = {
		.buf = buf,
		.start = start,
		.len = len,
		.hash = ENF_FNV_OFFSET,
	};

	bpf_loop(ENF_NAME_MAX, enf_span_hash_step, &h, 0);
	return h.hash;
}

struct enf_walk {
	const char *buf;       /* the resolved path, in a map value */
	struct enf_match_ctx *m;
	__u64 hash;            /* FNV-1a of the current component so far */
	__u32 len;             /* bytes of path */
	__u32 state;           /* 0: dead */
	__u32 start;           /* first byte of the current component */
	__u32 prev_state;      /* the state before the last component stepped */
	__u32 last_start;      /* the last component stepped */
	__u32 last_len;
	__u32 stepped;         /* a component was stepped (a flag, not a count:
				* the verifier's loop states converge) */
};

static __always_inline __u32 enf_next_state(struct enf_walk *w, __u32 start, __u32 len)
{
	struct enf_edge_key ek = { .matcher = w->m->class, .state = w->state, .hash = w->hash };
	struct enf_state_key sk = { .matcher = w->m->class, .state = w->state };
	struct enf_edge *e;
	struct enf_state *s;

	e = bpf_map_lookup_elem(&enf_edges, &ek);
	if (e && e->len == len && enf_name_eq(w->buf, start, len, e->name))
		return e->to;
	s = bpf_map_lookup_elem(&enf_states, &sk);
	return s ? s->wildcard : ENF_STATE_DEAD;
}

/* One byte of the path; index len stands for a final '/'. Empty components
 * are skipped, as policy-lang's components() does. */
static long enf_walk_step(__u32 i, void *data)
{
	struct enf_walk *w = data;
	__u8 c;

	if (i > w->len)
		return 1;
	c = i < w->len ? (__u8)w->buf[i & (ENF_PATH_MAX - 1)] : '/';
	if (c != '/') {
		w->hash = (w->hash ^ c) * ENF_FNV_PRIME;
		return 0;
	}
	if (i > w->start) {
		w->prev_state = w->state;
		w->last_start = w->start;
		w->last_len = i - w->start;
		w->stepped = 1;
		w->state = enf_next_state(w, w->start, w->last_len);
		if (w->state == ENF_STATE_DEAD)
			return 1;
	}
	w->start = i + 1;
	w->hash = ENF_FNV_OFFSET;
	return 0;
}

struct enf_suffix_ctx {
	const char *buf;
	struct enf_match_ctx *m;
	__u32 state;           /* the state before the last component */
	__u32 from;            /* first byte a suffix may start at */
	__u32 end;             /* one past the last component */
};

/* A suffix candidate at byte from + i: if it starts with '.', hash it to the
 * end of the component and look it up. */
static long enf_suffix_step(__u32 i, void *data)
{
	struct enf_suffix_ctx *s = data;
	struct enf_edge_key key = { .matcher = s->m->class, .state = s->state };
	struct enf_suffix *suf;
	__u32 pos = s->from + i, len;

	if (pos >= s->end)
		return 1;
	if (s->buf[pos & (ENF_PATH_MAX - 1)] != '.')
		return 0;
	len = s->end - pos;
	key.hash = enf_span_hash(s->buf, pos, len);
	suf = bpf_map_lookup_elem(&enf_suffixes, &key);
	if (suf && suf->len == len && enf_name_eq(s->buf, pos, len, suf->name))
		enf_hit_list(s->m, suf->list_off, suf->list_len);
	return 0;
}

/* Walks buf[0..len) through the class's automaton and reports every matching
 * rule to enf_hit(). */
static __always_inline void enf_walk_path(const char *buf, __u32 len, struct enf_match_ctx *m)
{
	struct enf_walk w = {
		.buf = buf,
		.m = m,
		.hash = ENF_FNV_OFFSET,
		.len = len > ENF_PATH_MAX - 1 ? ENF_PATH_MAX - 1 : len,
		.state = ENF_STATE_START,
	};
	struct enf_state_key sk = { .matcher = m->class };
	struct enf_state *st;
	__u32 end;

	bpf_loop(ENF_PATH_MAX, enf_walk_step, &w, 0);

	/* Dead before the last component: nothing matches. The last component
	 * ends at len (d_path never ends in '/'). */
	end = w.last_start + w.last_len;
	if (w.state == ENF_STATE_DEAD && end != w.len)
		return;

	if (w.stepped) {
		sk.state = w.prev_state;
		st = bpf_map_lookup_elem(&enf_states, &sk);
		if (st && st->max_suffix) {
			struct enf_suffix_ctx s = {
				.buf = buf,
				.m = m,
				.state = w.prev_state,
				.end = end,
			};
			/* Only the last max_suffix bytes can start a listed suffix. */
			__u32 span = st->max_suffix < w.last_len ? st->max_suffix : w.last_len;

			s.from = end - span;
			bpf_loop(span, enf_suffix_step, &s, 0);
		}
	}

	if (w.state == ENF_STATE_DEAD)
		return;
	sk.state = w.state;
	st = bpf_map_lookup_elem(&enf_states, &sk);
	if (st)
		enf_hit_list(m, st->list_off, st->list_len);
}

#endif /* ENFORCER_PATH_WALK_H */
