/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * A file open is matched by its path and by its inode: a rule's literal path
 * that existed at load time has its inode in enf_file_inodes, so a hard link
 * (another name, same inode) gets that path's rules too. Both go to the one
 * hit set, so the policy's usual precedence decides (enf_decide_file in
 * decide.h).
 */
#ifndef ENFORCER_INODE_ALIAS_H
#define ENFORCER_INODE_ALIAS_H

#include "common.h"
#include "maps.h"
#include "path_walk.h"

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

#endif /* ENFORCER_INODE_ALIAS_H */
