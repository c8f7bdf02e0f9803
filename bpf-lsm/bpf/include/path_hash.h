/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Hashing of resolved paths for map lookups. Paths are up to ENF_PATH_MAX
 * bytes, too long to be map keys, so rules are keyed by a 64-bit FNV-1a hash
 * of the path bytes (bpf-lsm/src/path_hash.rs computes the same in user
 * space, and a test pins both to the same vectors).
 */
#ifndef ENFORCER_PATH_HASH_H
#define ENFORCER_PATH_HASH_H

#include "abi.h"

#define ENF_FNV_OFFSET 0xcbf29ce484222325ULL
#define ENF_FNV_PRIME 0x100000001b3ULL

struct enf_hash_ctx {
	const char *buf;
	__u32 len;
	__u64 hash;
};

static long enf_hash_step(__u32 i, void *data)
{
	struct enf_hash_ctx *ctx = data;

	if (i >= ctx->len)
		return 1;
	/* The mask keeps the index provably inside the ENF_PATH_MAX buffer. */
	ctx->hash ^= (__u8)ctx->buf[i & (ENF_PATH_MAX - 1)];
	ctx->hash *= ENF_FNV_PRIME;
	return 0;
}

/* FNV-1a over buf[0..len). len is clamped to ENF_PATH_MAX. */
static __always_inline __u64 enf_path_hash(const char *buf, __u32 len)
{
	struct enf_hash_ctx ctx = {
		.buf = buf,
		.len = len > ENF_PATH_MAX ? ENF_PATH_MAX : len,
		.hash = ENF_FNV_OFFSET,
	};

	bpf_loop(ENF_PATH_MAX, enf_hash_step, &ctx, 0);
	return ctx.hash;
}

#endif /* ENFORCER_PATH_HASH_H */
