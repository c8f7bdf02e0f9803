// SPDX-License-Identifier: GPL-2.0-only
/*
 * Empty programs on the hooks the enforcer uses, for `cargo xtask vm bench`:
 * the cost of the BPF LSM mechanism itself (trampoline and program call)
 * with no lookup at all. Built as its own object (`bench_empty`), never
 * loaded by the enforcer.
 *
 * Each passes on an earlier program's verdict (clamped, as 6.12's verifier
 * requires) and otherwise allows: the same first step as every enforcer
 * program, so the comparison is like for like.
 */
#include "include/common.h"

SEC("lsm/file_open")
int BPF_PROG(bench_file_open, struct file *file, int ret)
{
	return ret ? enf_prior_verdict(ret) : 0;
}

SEC("lsm/bprm_check_security")
int BPF_PROG(bench_bprm, struct linux_binprm *bprm, int ret)
{
	return ret ? enf_prior_verdict(ret) : 0;
}

SEC("lsm/socket_connect")
int BPF_PROG(bench_sock_conn, struct socket *sock, struct sockaddr *address, int addrlen, int ret)
{
	return ret ? enf_prior_verdict(ret) : 0;
}

SEC("lsm/mmap_file")
int BPF_PROG(bench_mmap_file, struct file *file, unsigned long reqprot, unsigned long prot,
	     unsigned long flags, int ret)
{
	return ret ? enf_prior_verdict(ret) : 0;
}
