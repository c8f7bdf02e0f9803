//! The kernel side of the enforcer: BPF programs written in C with CO-RE
//! (under `bpf/`, compiled by `build.rs` and embedded here), the kernel/user
//! ABI mirrored from `bpf/include/abi.h`, the aya loader, and the feature
//! probes `enforcer doctor` reports.
//!
//! This crate knows nothing of policies or YAML: it takes typed map entries
//! and hands back decoded kernel records.

pub mod abi;
pub mod bench;
pub mod events;
pub mod guard;
pub mod inode_alias;
pub mod kernel_ops;
pub mod loader;
pub mod objects;
pub mod path_events;
pub mod path_hash;
pub mod path_hooks;
pub mod pins;
pub mod plan;
pub mod pods;
pub mod probe;
mod task_binaries;

pub use events::{
    decode, decode_record, DecodeError, ExecRecord, FileOpenEvent, FileRecord, GuardOp, Header,
    KernelEvent, KernelOp, KernelRecord, KernelSubject, NetOp, NetRecord, PathRecord,
    ProcExecRecord, ProcExitRecord, ProcForkRecord, Record, Verdict,
};
pub use kernel_ops::{
    kops, KernelDefault, KernelHooks, KernelKey, KernelKeyRules, KernelOpRule, KernelOpsPlan,
};
pub use loader::{
    EventRing, FileOpenPlan, FileRule, KernelStats, LoadError, Loaded, Mode, ScopedCgroup,
};
pub use path_hash::path_hash;
pub use plan::{
    Accept, Action, BinaryFilters, CgroupPolicies, Edge, KernelPlan, KernelPolicy, KernelRule,
    NetMechanism, NetPrefix, NetRule, NetworkDefault, NetworkPlan, PathMatcherEntries, PlanError,
    RuleBinaries, SuffixAccept, Wildcard,
};
pub use probe::{probe_kernel, Check, CheckStatus, KernelReport};
