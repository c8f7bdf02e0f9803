// SPDX-License-Identifier: GPL-2.0-only
/*
 * lsm/path_chmod: `chmod` (chmod, fchmod, fchmodat). `mode` is the new mode
 * as asked for: one that sets S_ISUID or S_ISGID is decided as those
 * operations (a plain `chmod` rule holds their bits too); with both bits,
 * each is decided and the stricter verdict wins.
 */
#include "include/common.h"
#include "include/path_hooks.h"

#define ENF_S_ISUID 04000
#define ENF_S_ISGID 02000

SEC("lsm/path_chmod")
int BPF_PROG(enf_path_chmod, const struct path *path, umode_t mode, int ret)
{
	__u32 ops = 0;

	if (ret != 0)
		return enf_prior_verdict(ret);
	if (mode & ENF_S_ISUID)
		ops |= ENF_OP_CHMOD_SETUID;
	if (mode & ENF_S_ISGID)
		ops |= ENF_OP_CHMOD_SETGID;
	if (!ops)
		ops = ENF_OP_CHMOD;
	return enf_path_check(ops, BPF_CORE_READ(path, mnt), BPF_CORE_READ(path, dentry), NULL,
			      NULL);
}
