// SPDX-License-Identifier: GPL-2.0-only
/*
 * lsm/inode_mkdir, attached only for Kubernetes namespace selectors: the
 * kubelet's mkdir of a pod's log directory gives the pod's cgroup its
 * namespace's policies (pods.h). It never refuses: a mkdir is decided by the
 * path programs.
 */
#include "include/common.h"
#include "include/pods.h"

SEC("lsm/inode_mkdir")
int BPF_PROG(enf_pod_log_mkdir, struct inode *dir, struct dentry *dentry, umode_t mode, int ret)
{
	if (ret != 0)
		return enf_prior_verdict(ret);
	enf_pod_classify(dir, dentry);
	return 0;
}
