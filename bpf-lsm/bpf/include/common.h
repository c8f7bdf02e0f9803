/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
#ifndef ENFORCER_COMMON_H
#define ENFORCER_COMMON_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "abi.h"

/* Every object is GPL: bpf_d_path and bpf_send_signal need it. Defined here,
 * once per object, since the hook files are built together. */
char LICENSE[] SEC("license") = "GPL";

#define EPERM 1
#define EEXIST 17
#define SIGKILL 9
#define MAX_ERRNO 4095

/*
 * What an LSM program returns when an earlier BPF program on the same hook
 * already decided. Since 6.12 the verifier checks that LSM programs return
 * a value in [-MAX_ERRNO, 0]; `ret` comes from the context, so its range is
 * unknown to the verifier and must be clamped before it is passed on.
 */
static __always_inline int enf_prior_verdict(int ret)
{
	if (ret < 0 && ret >= -MAX_ERRNO)
		return ret;
	return -EPERM;
}

static __always_inline void enf_fill_header(struct enf_event_header *h, __u16 kind,
					    __u16 verdict, __u64 cgroup_id, __u32 rule_id,
					    __u32 policy_id, __u32 flags)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 uid_gid = bpf_get_current_uid_gid();

	h->abi_version = ENF_ABI_VERSION;
	h->kind = kind;
	h->verdict = verdict;
	h->ktime_ns = bpf_ktime_get_boot_ns();
	h->cgroup_id = cgroup_id;
	h->pid = pid_tgid >> 32;
	h->tid = (__u32)pid_tgid;
	h->uid = (__u32)uid_gid;
	h->gid = uid_gid >> 32;
	h->rule_id = rule_id;
	h->flags = flags;
	h->policy_id = policy_id;
	h->suppressed = 0;
	bpf_get_current_comm(h->comm, sizeof(h->comm));
}

#endif /* ENFORCER_COMMON_H */
