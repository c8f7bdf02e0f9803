//! User-space writes to the task storage map `enf_task_bins`: the binary sets
//! of processes that ran before the plan loaded (the kernel sets them at exec
//! and fork only). A task storage map is keyed by a pidfd from user space.

use crate::abi;
use std::os::fd::{AsRawFd, BorrowedFd};

const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_NOEXIST: u64 = 1;

/// The `bpf_attr` layout of BPF_MAP_*_ELEM commands.
#[repr(C)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// Writes `bins` for the process of `pidfd` unless it has an entry: one the
/// kernel set meanwhile (an exec or fork after the programs attached) is
/// newer than what user space read from /proc, so it is kept. Returns
/// whether the entry was written.
pub(crate) fn write_noexist(
    map: BorrowedFd<'_>,
    pidfd: BorrowedFd<'_>,
    bins: &abi::TaskBins,
) -> std::io::Result<bool> {
    let key: i32 = pidfd.as_raw_fd();
    let attr = ElemAttr {
        map_fd: u32::try_from(map.as_raw_fd()).unwrap_or(u32::MAX),
        _pad: 0,
        key: std::ptr::addr_of!(key) as u64,
        value: std::ptr::from_ref(bins) as u64,
        flags: BPF_NOEXIST,
    };
    // SAFETY: attr points at live key and value buffers of the map's key and
    // value sizes (int and struct enf_task_bins) for the duration of the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_UPDATE_ELEM,
            std::ptr::addr_of!(attr),
            std::mem::size_of::<ElemAttr>(),
        )
    };
    if rc == 0 {
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EEXIST) {
        Ok(false)
    } else {
        Err(err)
    }
}
