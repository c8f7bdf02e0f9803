//! Settings of the kernel side that come from the daemon, not from the policies: the rate
//! limit of verdict records (config) and self-protection (self_guard.rs). Applied to every
//! plan the daemon loads.

use bpf_lsm::plan::KernelPlan;

/// Default of the config's `event_rate_limit`: verdict records per second per (cgroup, rule).
pub const DEFAULT_EVENT_RATE_LIMIT: u32 = 100;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelSettings {
    /// Verdict records per second per (cgroup, policy, rule) the kernel sends; 0: no limit.
    pub rate_limit: u32,
    /// What self-protection guards; `None` where BPF LSM programs cannot attach (the guard
    /// is made of them).
    pub guard: Option<bpf_lsm::guard::SelfGuard>,
}

impl KernelSettings {
    /// Writes the settings into a plan before it is loaded.
    pub fn apply(&self, plan: &mut KernelPlan) {
        plan.rate_limit = self.rate_limit;
        plan.self_guard.clone_from(&self.guard);
    }
}
