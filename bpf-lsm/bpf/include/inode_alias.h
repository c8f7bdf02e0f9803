/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * A file open is matched by its path and by its inode: a rule's literal path
 * that existed at load time has its inode in enf_file_inodes, so a hard link
 * (another name, same inode) gets that path's rules too. Both go to the one
 * hit set, so the policy's usual precedence decides.
 */
#ifndef ENFORCER_INODE_ALIAS_H
#define ENFORCER_INODE_ALIAS_H

#include "common.h"
#include "maps.h"
#include "decide.h"

/* Adds the rules of the accepting state the opened inode is listed with. */
static __always_inline void enf_hit_inode(struct file *file, struct enf_match_ctx *m)
{
	struct enf_inode_key key = {};
	struct enf_state_key sk = { .matcher = ENF_CLASS_FILE };
	struct enf_state *st;
	__u32 *state;

	key.ino = BPF_CORE_READ(file, f_inode, i_ino);
	key.dev = BPF_CORE_READ(file, f_inode, i_sb, s_dev);
	state = bpf_map_lookup_elem(&enf_file_inodes, &key);
	if (!state)
		return;
	sk.state = *state;
	st = bpf_map_lookup_elem(&enf_states, &sk);
	if (st)
		enf_hit_list(m, st->list_off, st->list_len);
}

/* enf_decide for a file open: the path walk plus the inode's rules. */
static __always_inline int enf_decide_open(struct file *file, const char *path, __u32 len,
					   bool resolved, __u32 access, __u64 slots,
					   struct enf_decision *d)
{
	struct enf_match_ctx m = { .slots = slots, .class = ENF_CLASS_FILE, .access = access };
	struct enf_hits *h = enf_decide_begin(d);

	if (!h)
		return -1;
	m.hits = h;
	if (resolved)
		enf_walk_path(path, len, &m);
	enf_hit_inode(file, &m);
	enf_decide_policies(h, ENF_CLASS_FILE, access, slots, !resolved, d);
	return 0;
}

#endif /* ENFORCER_INODE_ALIAS_H */
