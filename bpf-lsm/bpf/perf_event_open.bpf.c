// SPDX-License-Identifier: GPL-2.0-only
/* lsm/perf_event_open: the `perf_event_open` kernel operation, decided once
 * per call at PERF_SECURITY_OPEN (the later CPU/kernel/tracepoint checks of
 * the same call are not operations of their own). */
#include "include/common.h"
#include "include/kernel_ops.h"

#define ENF_PERF_SECURITY_OPEN 0

SEC("lsm/perf_event_open")
int BPF_PROG(enf_perf_event_open, struct perf_event_attr *attr, int type, int ret)
{
	if (ret != 0)
		return enf_prior_verdict(ret);
	if (type != ENF_PERF_SECURITY_OPEN)
		return 0;
	return enf_kernel_op(ENF_KOP_PERF_EVENT_OPEN, BPF_CORE_READ(attr, type),
			     BPF_CORE_READ(attr, config));
}
