//! `from` / `except_from` in the kernel: the plan's binaries matcher and the
//! binary sets of each filtered rule ([`binary_filters`]), and the backfill
//! of processes that ran before the plan loaded ([`backfill`]): the kernel
//! learns a task's binary sets at exec and fork only, so user space reads
//! `/proc/<pid>/exe` of every process that exists at load and writes its sets
//! through a pidfd, never over an entry the kernel set meanwhile.

use bpf_lsm::plan::{BinaryFilters, KernelPlan, RuleBinaries};
use bpf_lsm::{abi, Loaded};
use policy_lang::matcher::PathIndex;
use policy_lang::Plan;
use std::collections::HashSet;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};

/// Why the plan's binary sets do not fit the kernel, if they do not: a task's
/// sets are one u64.
pub fn too_many_sets(plan: &Plan) -> Option<String> {
    let n = plan.maps.binary_sets.len();
    (n > abi::MAX_BINARY_SETS).then(|| {
        format!(
            "the policies use {n} distinct `from`/`except_from` lists; the kernel tracks at most \
             {} per plan: share lists between rules (identical lists count once)",
            abi::MAX_BINARY_SETS
        )
    })
}

fn mask(set: Option<u32>) -> u64 {
    match set {
        Some(id) if (id as usize) < abi::MAX_BINARY_SETS => 1u64 << id,
        _ => 0,
    }
}

/// The binary filters of the rules `k` holds (file, exec, network and kernel
/// rules; network rules with filters are refused before this without BPF LSM).
pub fn binary_filters(plan: &Plan, k: &KernelPlan) -> BinaryFilters {
    let in_kernel: HashSet<u32> = k
        .rules
        .iter()
        .map(|r| r.id)
        .chain(k.kernel.rules.iter().map(|r| r.id))
        .chain(k.network.rules.iter().map(|r| r.id))
        .collect();
    let rules: std::collections::BTreeMap<u32, RuleBinaries> = plan
        .rules
        .iter()
        .filter(|r| in_kernel.contains(&r.id))
        .map(|r| {
            (
                r.id,
                RuleBinaries {
                    from: mask(r.from_set),
                    except: mask(r.except_set),
                    parent: mask(r.parent_set),
                    ancestor: mask(r.ancestor_set),
                    uids: r.uids.clone(),
                },
            )
        })
        .filter(|(_, b)| b.any())
        .collect();
    if rules.is_empty() {
        return BinaryFilters::default();
    }
    BinaryFilters {
        matcher: crate::kernel_apply::entries(&plan.maps.binaries),
        rules,
    }
}

/// What [`backfill`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Backfill {
    /// Tasks whose sets were written.
    pub written: usize,
    /// Tasks the kernel had set already (an exec or fork after the attach).
    pub kept: usize,
    /// Tasks skipped: kernel threads, tasks gone meanwhile, threads of a
    /// kernel without thread pidfds (before 6.9). They stay unknown, so a
    /// filtered deny rule applies to them (fail closed).
    pub skipped: usize,
}

/// PIDFD_THREAD (Linux 6.9): a pidfd of one thread, not of the process.
const PIDFD_THREAD: libc::c_uint = libc::O_EXCL as libc::c_uint;

fn pidfd_open(tid: i32, thread: bool) -> Option<OwnedFd> {
    let flags = if thread { PIDFD_THREAD } else { 0 };
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, tid, flags) };
    let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: the kernel just returned this fd, owned by nobody else.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn numeric_entries(dir: &str) -> Vec<i32> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Writes the binary sets of every task that exists now (twice over
/// `/proc`, so that a child forked by a not yet written parent during the
/// first pass is seen by the second). The pidfd is opened before the exe is
/// read: if the pid is reused in between, the write fails on the dead task
/// instead of labelling the new one.
pub fn backfill(plan: &Plan, loaded: &Loaded) -> Backfill {
    let index = PathIndex::new(&plan.maps.binaries);
    let mut done = Backfill::default();
    let mut seen: HashSet<i32> = HashSet::new();
    for _ in 0..2 {
        for pid in numeric_entries("/proc") {
            for tid in numeric_entries(&format!("/proc/{pid}/task")) {
                if !seen.insert(tid) {
                    continue;
                }
                let Some(fd) = pidfd_open(tid, tid != pid) else {
                    done.skipped += 1;
                    continue;
                };
                let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/task/{tid}/exe")) else {
                    // Kernel threads have no executable.
                    done.skipped += 1;
                    continue;
                };
                let Some(exe) = exe.to_str() else {
                    done.skipped += 1;
                    continue;
                };
                let sets = index
                    .matches(exe)
                    .into_iter()
                    .fold(0u64, |acc, id| acc | mask(Some(id)));
                match loaded.backfill_binaries(fd.as_fd(), sets) {
                    Ok(true) => done.written += 1,
                    Ok(false) => done.kept += 1,
                    Err(_) => done.skipped += 1,
                }
            }
        }
    }
    done
}
