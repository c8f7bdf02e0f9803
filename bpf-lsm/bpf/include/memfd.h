/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What a memfd is, decided by the file and not by its name: memfd_create()
 * puts the file on the kernel's internal shmem (or hugetlbfs) mount, which
 * kern_mount() marks as belonging to no mount namespace (MNT_NS_INTERNAL),
 * and the file has no link. Its name (`/memfd:NAME (deleted)`) is chosen by
 * the caller, so the exec matcher is walked with the reserved path
 * ENF_MEMFD_PATH instead (policy-lang's MEMFD_EXEC_PATH).
 */
#ifndef ENFORCER_MEMFD_H
#define ENFORCER_MEMFD_H

#include "common.h"
#include "decide.h"

/* fs/mount.h: MNT_NS_INTERNAL is ERR_PTR(-EINVAL), on 6.1 as on 6.12. */
#define ENF_MNT_NS_INTERNAL ((struct mnt_namespace *)(long)-22)
#define ENF_MEMFD_PATH "/memfd:"
#define ENF_MEMFD_PATH_LEN 7

static __always_inline bool enf_file_is_memfd(struct file *file)
{
	struct vfsmount *vmnt = BPF_CORE_READ(file, f_path.mnt);
	/* real_mount(): struct vfsmount is embedded in struct mount. */
	struct mount *mnt = (struct mount *)((char *)vmnt - bpf_core_field_offset(struct mount, mnt));

	if (!vmnt || BPF_CORE_READ(mnt, mnt_ns) != ENF_MNT_NS_INTERNAL)
		return false;
	/* __i_nlink: the writable alias of the const i_nlink. */
	return BPF_CORE_READ(file, f_inode, __i_nlink) == 0;
}

/* Puts the reserved path in `buf` (ENF_PATH_MAX bytes); returns its length. */
static __always_inline __u32 enf_memfd_path(char *buf)
{
	__builtin_memcpy(buf, ENF_MEMFD_PATH, ENF_MEMFD_PATH_LEN + 1);
	return ENF_MEMFD_PATH_LEN;
}

/* Decides the exec of `file` by its path in `buf` (path_len bytes; resolved),
 * or, when it is a memfd (*memfd), as ENF_MEMFD_PATH written over `buf`: the
 * caller resolves the memfd's own name again for the record. Returns
 * enf_decide's result. */
static __always_inline int enf_decide_exec(struct file *file, char *buf, __u32 path_len,
					   bool resolved, __u64 slots, struct enf_decision *d,
					   bool *memfd)
{
	*memfd = file && enf_file_is_memfd(file);
	if (*memfd)
		return enf_decide(buf, enf_memfd_path(buf), true, ENF_CLASS_EXEC, ENF_OP_EXEC,
				  slots, d);
	return enf_decide(buf, path_len, resolved, ENF_CLASS_EXEC, ENF_OP_EXEC, slots, d);
}

#endif /* ENFORCER_MEMFD_H */
