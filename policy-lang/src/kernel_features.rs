//! What the target kernel can do, as reported by `enforcer doctor --json`. The plan (and
//! so the enforcement of every rule) depends on it.

use serde::{Deserialize, Serialize};

/// Kernel capabilities relevant to enforcement. Unknown fields are ignored and missing
/// ones are false, so an older or newer `doctor` output still loads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct KernelFeatures {
    /// BPF LSM programs can attach (`CONFIG_BPF_LSM` and `bpf` in the `lsm=` list).
    /// Without it, deny is only possible for network (cgroup hooks) and exec (SIGKILL).
    pub bpf_lsm: bool,
    /// kprobes are available (used for diagnostics, not for deny).
    pub kprobes: bool,
    /// `bpf_send_signal` helper: needed for `kill` and for exec deny without BPF LSM.
    pub bpf_send_signal: bool,
    /// BPF ring buffer for events (otherwise perf buffers).
    pub ringbuf: bool,
    /// cgroup/connect4|6, bind4|6, sendmsg4|6 and sock_create programs: network deny
    /// without BPF LSM.
    pub cgroup_sock_addr: bool,
    /// cgroup-scoped LSM programs (`BPF_LSM_CGROUP`).
    pub lsm_cgroup: bool,
    /// `bpf_d_path` works in the hooks we use (full resolved paths up to PATH_MAX).
    pub d_path: bool,
    /// The `userns_create` LSM hook (Linux 6.1+).
    pub lsm_userns_create: bool,
    /// BTF for the running kernel (CO-RE).
    pub btf: bool,
    /// `tp_btf` programs load (the process tracepoints: exec, fork and exit records feed
    /// the daemon's process table and its `alert` rules).
    pub tp_btf: bool,
}

impl KernelFeatures {
    /// A kernel with everything the enforcer can use.
    pub fn full() -> Self {
        KernelFeatures {
            bpf_lsm: true,
            kprobes: true,
            bpf_send_signal: true,
            ringbuf: true,
            cgroup_sock_addr: true,
            lsm_cgroup: true,
            d_path: true,
            lsm_userns_create: true,
            btf: true,
            tp_btf: true,
        }
    }

    /// Parses `enforcer doctor --json` output (a superset of these fields).
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_is_false_and_unknown_is_ignored() {
        let k = KernelFeatures::from_json(r#"{"bpf_lsm": true, "future_thing": 3}"#).unwrap();
        assert!(k.bpf_lsm);
        assert!(!k.ringbuf);
    }
}
