//! The project's development commands (`cargo xtask ...`) and the end-to-end suite that runs
//! inside a VM.
//!
//! Host side: [`workspace`] builds the binaries, [`kernel_cache`] fetches Debian's kernels,
//! [`guest_rootfs`] and [`guest_init`] assemble an [`initramfs`], [`qemu`] boots it and
//! [`guest_report`] reads what the guest printed; [`suite`], [`vm_run`] and [`test_pipeline`] are
//! the commands. Guest side (feature `guest`, on by default): `e2e` is the test harness run by
//! `/bin/enforcer-e2e`. `cargo xtask` builds without it, so that it can install the BPF
//! toolchain (which building bpf-lsm needs) on a fresh machine before anything needs it.

pub mod apt_sources;
pub mod bench;
pub mod conformance_table;
#[cfg(feature = "guest")]
pub mod e2e;
pub mod emulator;
pub mod guest_init;
pub mod guest_report;
pub mod guest_rootfs;
pub mod host_run;
pub mod initramfs;
pub mod kernel_cache;
pub mod prerequisites;
pub mod qemu;
pub mod replay_plan;
pub mod suite;
pub mod test_pipeline;
pub mod vm_bench;
pub mod vm_run;
pub mod workspace;
