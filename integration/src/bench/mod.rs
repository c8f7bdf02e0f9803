//! Kernel-side microbenchmarks, run inside the test VM by `enforcer-e2e microbench` (which
//! `cargo xtask vm bench` boots): open+close, execve, connect and executable mmap, each in a
//! worker process placed in a cgroup, under one configuration after the other in the same
//! boot:
//!
//! - `none`: no enforcer, nothing of ours loaded;
//! - `empty`: empty BPF LSM programs on `file_open`, `bprm_check_security`, `socket_connect`
//!   and `mmap_file` (bpf-lsm's `bench_empty` object): the cost of the mechanism itself;
//! - `enforcer-N`: `/bin/enforcer run` with a generated policy of N rules selecting the cgroup;
//! - `apparmor`: the worker confined by an AppArmor profile that denies one file.
//!
//! Each worker first opens the file the policies deny and reports whether it was refused, so a
//! configuration whose policy was not in force is a failure, not a figure. Nothing here asserts
//! a time: the figures are reported, judged by people.

pub mod ops;
pub mod policy;
pub mod report;

// The guest side needs the BPF objects; the host side (`cargo xtask vm bench`) only the
// constants and the report.
#[cfg(feature = "guest")]
mod driver;
#[cfg(feature = "guest")]
pub use driver::*;

/// The cgroup the workers run in (a child of the cgroup2 root).
pub const CGROUP: &str = "enforcer-bench";
/// The benchmark's files: `file` is opened, `denied` is what every policy denies.
pub const DIR: &str = "/tmp/enforcer-bench";
/// Where the guest image has AppArmor's parser (`cargo xtask vm bench` puts it there).
pub const APPARMOR_PARSER: &str = "/sbin/apparmor_parser";
/// The worker subcommand of the binary that runs the driver.
pub const WORKER_COMMAND: &str = "microbench-worker";
/// Where the JSON is written in the guest by `cargo xtask vm bench`.
pub const GUEST_REPORT: &str = "/tmp/enforcer-bench.json";
