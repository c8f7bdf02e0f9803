// SPDX-License-Identifier: GPL-2.0-only
/*
 * Feature probes for `enforcer doctor`: minimal programs of each type the
 * enforcer relies on. A list in /sys/kernel/security/lsm can say `bpf` while
 * the kernel still refuses LSM programs, so only a real load (and attach)
 * tells. None of these decides anything.
 */
#include "include/common.h"


SEC("lsm/file_open")
int BPF_PROG(enf_probe_lsm, struct file *file, int ret)
{
	return ret ? enf_prior_verdict(ret) : 0;
}

/* BPF_LSM_CGROUP programs return 1 to allow. */
SEC("lsm_cgroup/file_open")
int BPF_PROG(enf_probe_lsm_cgroup, struct file *file)
{
	return 1;
}

SEC("kprobe/security_file_open")
int enf_probe_kprobe(struct pt_regs *ctx)
{
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(enf_probe_tp_btf, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	return 0;
}
