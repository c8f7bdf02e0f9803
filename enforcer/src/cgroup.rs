//! Naming cgroups: users give a cgroup2 path, the kernel speaks cgroup ids.

use anyhow::{bail, Context, Result};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// statfs(2) magic of cgroup2 (linux/magic.h).
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// Where cgroup2 is mounted: /sys/fs/cgroup on unified hosts,
/// /sys/fs/cgroup/unified on hybrid ones.
pub fn cgroup2_root() -> Result<PathBuf> {
    let text =
        std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    bpf_lsm::probe::parse_mountinfo(&text)
        .into_iter()
        .find(|m| m.fs_type == "cgroup2")
        .map(|m| PathBuf::from(m.mount_point))
        .context("no cgroup2 file system is mounted: mount one with `mount -t cgroup2 none /sys/fs/cgroup`")
}

/// A cgroup by path and id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cgroup {
    pub path: PathBuf,
    /// The cgroup2 id: the inode number of the cgroup's directory, which is
    /// what bpf_get_current_cgroup_id() returns for its tasks.
    pub id: u64,
}

/// Resolves `spec`, either an absolute path inside the cgroup2 mount or a
/// path relative to it (`system.slice/nginx.service`).
pub fn resolve(spec: &str) -> Result<Cgroup> {
    let path = if Path::new(spec).is_absolute() {
        PathBuf::from(spec)
    } else {
        cgroup2_root()?.join(spec)
    };
    let meta = std::fs::metadata(&path)
        .with_context(|| format!("cgroup `{}` does not exist", path.display()))?;
    if !meta.is_dir() {
        bail!("cgroup `{}` is not a directory", path.display());
    }
    let fs = nix::sys::statfs::statfs(&path)
        .with_context(|| format!("statfs of `{}`", path.display()))?;
    if fs.filesystem_type().0 != CGROUP2_SUPER_MAGIC {
        bail!(
            "`{}` is not in a cgroup2 file system (v1 cgroups cannot be scoped); \
             give a path below the cgroup2 mount",
            path.display()
        );
    }
    Ok(Cgroup {
        id: meta.ino(),
        path,
    })
}
