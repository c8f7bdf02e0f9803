// SPDX-License-Identifier: GPL-2.0-only
/* lsm/move_mount: the `mount` kernel operation through move_mount(2), which
 * attaches a mount (from fsmount(2) or open_tree(2)) without sb_mount. */
#include "include/common.h"
#include "include/kernel_ops.h"

SEC("lsm/move_mount")
int BPF_PROG(enf_move_mount, const struct path *from_path, const struct path *to_path, int ret)
{
	if (ret != 0)
		return enf_prior_verdict(ret);
	return enf_kernel_op(ENF_KOP_MOUNT, 0, 1);
}
