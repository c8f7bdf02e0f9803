//! Self-protection (`bpf/include/guard.h`): while a plan covers any cgroup, a task under
//! enforcement may not signal or ptrace-attach the enforcer, reach BPF objects by pin or id,
//! or touch the enforcer's directories. This module says what the loader writes and attaches
//! for it.

use crate::abi;
use crate::kernel_ops::kops;
use crate::plan::ops;

/// What self-protection guards; `KernelPlan::self_guard`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SelfGuard {
    /// The enforcer's pid (tgid): its threads are never refused, and signals and ptrace to it
    /// are.
    pub daemon_tgid: u32,
    /// Absolute directories (at most [`MAX_DIRS`], each at most [`abi::NAME_MAX`] bytes, no
    /// trailing `/`): a path at or below one is refused to tasks under enforcement, for every
    /// file operation, reads included.
    pub dirs: Vec<Vec<u8>>,
    /// The enforcer's executable file: a task running it (the same inode, not a copy) may use
    /// the directories, so that the CLI works from a covered shell. Signals, ptrace and bpf
    /// commands stay refused to it. `None`: no such exemption.
    pub daemon_exe: Option<ExeId>,
}

/// A file as the kernel names it: the `s_dev` of its super block and its inode number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExeId {
    /// `s_dev`, kernel encoding ([`kernel_dev`]).
    pub dev: u32,
    pub ino: u64,
}

impl ExeId {
    /// The identity of a file from its `stat` (`st_dev`, `st_ino`).
    pub fn from_stat(st_dev: u64, st_ino: u64) -> Self {
        Self {
            dev: kernel_dev(st_dev),
            ino: st_ino,
        }
    }
}

/// The kernel's `dev_t` (`major << 20 | minor`, what `s_dev` holds) of a device number as
/// `stat` reports it (glibc's encoding: the minor's low 8 bits, the major's low 12 bits at
/// bit 8, then the minor's and the major's high bits).
pub fn kernel_dev(st_dev: u64) -> u32 {
    let major = ((st_dev >> 8) & 0xfff) | ((st_dev >> 32) & !0xfff);
    let minor = (st_dev & 0xff) | ((st_dev >> 12) & !0xff);
    // The kernel keeps 12 bits of major and 20 of minor.
    (((major & 0xfff) << 20) | (minor & 0xf_ffff)) as u32
}

/// Directories self-protection takes at most.
pub const MAX_DIRS: usize = abi::GUARD_DIRS as usize;

/// File operations whose path programs self-protection attaches. Not `mmap_exec` (a mapping
/// needs an open file, and opens are guarded), not `chmod`/`chown` (the tasks it guards
/// against are root, whom file modes do not stop): each program costs load time.
pub const PATH_OPS: u32 = ops::CREATE | ops::DELETE | ops::RENAME | ops::LINK | ops::TRUNCATE;

/// Kernel operations whose programs self-protection attaches (ptrace attach, bpf commands).
pub const KERNEL_OPS: u32 = kops::PTRACE | kops::BPF;

/// The program of `lsm/task_kill` (self-protection only).
pub const TASK_KILL: &str = "enf_task_kill";

/// Why a [`SelfGuard`] cannot be loaded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GuardError {
    #[error(
        "self-protection takes at most {MAX_DIRS} directories, {0} were given: protect a common \
         parent instead"
    )]
    TooManyDirs(usize),
    #[error(
        "self-protection directory `{dir}` must be absolute, without a trailing `/`, and at most \
         {max} bytes long: choose a shorter state directory",
        max = abi::NAME_MAX
    )]
    BadDir { dir: String },
    #[error("self-protection needs the enforcer's pid; 0 is not one")]
    NoPid,
}

impl SelfGuard {
    /// The `enf_guard_dirs` entries, checked.
    pub fn entries(&self) -> Result<Vec<abi::GuardDir>, GuardError> {
        if self.daemon_tgid == 0 {
            return Err(GuardError::NoPid);
        }
        if self.dirs.len() > MAX_DIRS {
            return Err(GuardError::TooManyDirs(self.dirs.len()));
        }
        self.dirs
            .iter()
            .map(|d| {
                let ok = d.first() == Some(&b'/')
                    && d.len() >= 2
                    && d.last() != Some(&b'/')
                    && d.len() <= abi::NAME_MAX;
                if !ok {
                    return Err(GuardError::BadDir {
                        dir: String::from_utf8_lossy(d).into_owned(),
                    });
                }
                let mut e = abi::GuardDir {
                    len: u32::try_from(d.len()).unwrap_or(0),
                    ..abi::GuardDir::default()
                };
                e.path[..d.len()].copy_from_slice(d);
                Ok(e)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(dirs: &[&str]) -> SelfGuard {
        SelfGuard {
            daemon_tgid: 42,
            dirs: dirs.iter().map(|d| d.as_bytes().to_vec()).collect(),
            daemon_exe: None,
        }
    }

    #[test]
    fn stat_device_numbers_become_the_kernel_encoding() {
        // 8:1 (sda1): stat's 0x801, the kernel's 8 << 20 | 1.
        assert_eq!(kernel_dev(0x801), (8 << 20) | 1);
        // 0:45 (an anonymous super block, e.g. tmpfs).
        assert_eq!(kernel_dev(45), 45);
        // 259:300: a minor above 255 and a major above 255.
        let st = libc::makedev(259, 300);
        assert_eq!(kernel_dev(st), (259 << 20) | 300);
        assert_eq!(
            ExeId::from_stat(st, 12),
            ExeId {
                dev: (259 << 20) | 300,
                ino: 12
            }
        );
    }

    #[test]
    fn directories_become_zero_padded_entries() {
        let e = guard(&["/var/lib/enforcer", "/sys/fs/bpf/enforcer"])
            .entries()
            .unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].len, 17);
        assert_eq!(&e[0].path[..17], b"/var/lib/enforcer");
        assert!(e[0].path[17..].iter().all(|&b| b == 0));
    }

    #[test]
    fn bad_directories_are_refused() {
        for bad in ["relative", "/trailing/", "", "/"] {
            assert!(
                matches!(guard(&[bad]).entries(), Err(GuardError::BadDir { .. })),
                "{bad}"
            );
        }
        let long = format!("/{}", "x".repeat(abi::NAME_MAX));
        assert!(guard(&[&long]).entries().is_err());
        assert_eq!(
            guard(&["/a", "/b", "/c", "/d", "/e"]).entries(),
            Err(GuardError::TooManyDirs(5))
        );
        let no_pid = SelfGuard {
            daemon_tgid: 0,
            ..guard(&["/a"])
        };
        assert_eq!(no_pid.entries(), Err(GuardError::NoPid));
    }
}
