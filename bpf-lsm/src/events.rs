//! Decoding of ring-buffer records into typed events. Records come from the
//! kernel, but a decoder that trusts its input is one bad ABI bump away from
//! a crash: every length and enum is checked, and a malformed record is an
//! error the caller counts and skips.

use crate::abi::{self, EventHeader, FileEvent};
use core::mem::{offset_of, size_of};

/// What the kernel decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Allow,
    Deny,
    Audit,
}

/// The fields every record carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Common {
    pub verdict: Verdict,
    /// Nanoseconds since boot (CLOCK_BOOTTIME).
    pub ktime_ns: u64,
    pub cgroup_id: u64,
    pub pid: u32,
    pub tid: u32,
    pub uid: u32,
    pub gid: u32,
    pub rule_id: u32,
    pub flags: u32,
    pub comm: String,
}

/// A `file_open` verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileOpenEvent {
    pub common: Common,
    pub f_flags: u32,
    pub f_mode: u32,
    /// The resolved path as the kernel saw it: bytes, since Linux paths need
    /// not be UTF-8. Empty when the path could not be resolved.
    pub path: Vec<u8>,
}

impl FileOpenEvent {
    /// The path could not be resolved completely, and the open was decided
    /// without it (fail closed).
    pub fn path_unresolved(&self) -> bool {
        self.common.flags & abi::FLAG_PATH_UNRESOLVED != 0
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelEvent {
    FileOpen(FileOpenEvent),
}

impl KernelEvent {
    pub fn common(&self) -> &Common {
        match self {
            KernelEvent::FileOpen(e) => &e.common,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {len} bytes is shorter than the {need} bytes of its fixed part")]
    Short { len: usize, need: usize },
    #[error("record has abi version {found}, this enforcer speaks version {expected}")]
    AbiVersion { found: u32, expected: u32 },
    #[error("record has unknown event kind {0}")]
    UnknownKind(u16),
    #[error("record has unknown verdict {0}")]
    UnknownVerdict(u16),
    #[error("record says its path has {claimed} bytes but carries {present}")]
    PathLength { claimed: usize, present: usize },
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(&b[off..off + 2]);
    u16::from_ne_bytes(a)
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_ne_bytes(a)
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_ne_bytes(a)
}

fn decode_header(b: &[u8]) -> Result<(u16, Common), DecodeError> {
    let need = size_of::<EventHeader>();
    if b.len() < need {
        return Err(DecodeError::Short { len: b.len(), need });
    }
    let version = u32_at(b, offset_of!(EventHeader, abi_version));
    if version != abi::ABI_VERSION {
        return Err(DecodeError::AbiVersion {
            found: version,
            expected: abi::ABI_VERSION,
        });
    }
    let verdict = match u16_at(b, offset_of!(EventHeader, verdict)) {
        abi::VERDICT_ALLOW => Verdict::Allow,
        abi::VERDICT_DENY => Verdict::Deny,
        abi::VERDICT_AUDIT => Verdict::Audit,
        other => return Err(DecodeError::UnknownVerdict(other)),
    };
    let comm_off = offset_of!(EventHeader, comm);
    let comm_bytes = &b[comm_off..comm_off + abi::COMM_LEN];
    let comm_end = comm_bytes
        .iter()
        .position(|&c| c == 0)
        .unwrap_or(abi::COMM_LEN);
    let common = Common {
        verdict,
        ktime_ns: u64_at(b, offset_of!(EventHeader, ktime_ns)),
        cgroup_id: u64_at(b, offset_of!(EventHeader, cgroup_id)),
        pid: u32_at(b, offset_of!(EventHeader, pid)),
        tid: u32_at(b, offset_of!(EventHeader, tid)),
        uid: u32_at(b, offset_of!(EventHeader, uid)),
        gid: u32_at(b, offset_of!(EventHeader, gid)),
        rule_id: u32_at(b, offset_of!(EventHeader, rule_id)),
        flags: u32_at(b, offset_of!(EventHeader, flags)),
        comm: String::from_utf8_lossy(&comm_bytes[..comm_end]).into_owned(),
    };
    Ok((u16_at(b, offset_of!(EventHeader, kind)), common))
}

/// Decodes one ring-buffer record.
pub fn decode(record: &[u8]) -> Result<KernelEvent, DecodeError> {
    let (kind, common) = decode_header(record)?;
    match kind {
        abi::EVENT_FILE_OPEN => {
            let need = abi::FILE_EVENT_PATH_OFFSET;
            if record.len() < need {
                return Err(DecodeError::Short {
                    len: record.len(),
                    need,
                });
            }
            let claimed = u32_at(record, offset_of!(FileEvent, path_len)) as usize;
            let present = record.len() - need;
            if claimed > present || claimed > abi::PATH_MAX {
                return Err(DecodeError::PathLength { claimed, present });
            }
            Ok(KernelEvent::FileOpen(FileOpenEvent {
                common,
                f_flags: u32_at(record, offset_of!(FileEvent, f_flags)),
                f_mode: u32_at(record, offset_of!(FileEvent, f_mode)),
                path: record[need..need + claimed].to_vec(),
            }))
        }
        other => Err(DecodeError::UnknownKind(other)),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a file record the way the kernel lays it out.
    pub(crate) fn file_record(verdict: u16, path: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; abi::FILE_EVENT_PATH_OFFSET];
        let put32 =
            |b: &mut Vec<u8>, off: usize, v: u32| b[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        put32(
            &mut b,
            offset_of!(EventHeader, abi_version),
            abi::ABI_VERSION,
        );
        b[offset_of!(EventHeader, kind)..][..2]
            .copy_from_slice(&abi::EVENT_FILE_OPEN.to_ne_bytes());
        b[offset_of!(EventHeader, verdict)..][..2].copy_from_slice(&verdict.to_ne_bytes());
        b[offset_of!(EventHeader, ktime_ns)..][..8].copy_from_slice(&123u64.to_ne_bytes());
        b[offset_of!(EventHeader, cgroup_id)..][..8].copy_from_slice(&4242u64.to_ne_bytes());
        put32(&mut b, offset_of!(EventHeader, pid), 77);
        put32(&mut b, offset_of!(EventHeader, tid), 78);
        put32(&mut b, offset_of!(EventHeader, rule_id), 5);
        b[offset_of!(EventHeader, comm)..][..3].copy_from_slice(b"cat");
        put32(&mut b, offset_of!(FileEvent, f_flags), 0o100);
        put32(&mut b, offset_of!(FileEvent, path_len), path.len() as u32);
        b.extend_from_slice(path);
        b
    }

    #[test]
    fn decodes_a_file_open_deny() {
        let ev = decode(&file_record(abi::VERDICT_DENY, b"/etc/shadow")).unwrap();
        let KernelEvent::FileOpen(f) = ev;
        assert_eq!(f.common.verdict, Verdict::Deny);
        assert_eq!(f.common.pid, 77);
        assert_eq!(f.common.tid, 78);
        assert_eq!(f.common.cgroup_id, 4242);
        assert_eq!(f.common.rule_id, 5);
        assert_eq!(f.common.comm, "cat");
        assert_eq!(f.f_flags, 0o100);
        assert_eq!(f.path, b"/etc/shadow");
        assert!(!f.path_unresolved());
    }

    #[test]
    fn keeps_non_utf8_paths_as_bytes() {
        let ev = decode(&file_record(abi::VERDICT_AUDIT, b"/tmp/\xff\xfe")).unwrap();
        let KernelEvent::FileOpen(f) = ev;
        assert_eq!(f.path, b"/tmp/\xff\xfe");
    }

    #[test]
    fn rejects_truncated_and_inconsistent_records() {
        let good = file_record(abi::VERDICT_DENY, b"/etc/shadow");
        for len in 0..abi::FILE_EVENT_PATH_OFFSET {
            assert!(
                matches!(decode(&good[..len]), Err(DecodeError::Short { .. })),
                "len {len}"
            );
        }
        // Claims more path bytes than the record carries.
        let short = &good[..good.len() - 1];
        assert!(matches!(decode(short), Err(DecodeError::PathLength { .. })));
    }

    #[test]
    fn rejects_unknown_versions_kinds_and_verdicts() {
        let mut r = file_record(abi::VERDICT_DENY, b"/x");
        r[offset_of!(EventHeader, verdict)] = 9;
        assert_eq!(decode(&r), Err(DecodeError::UnknownVerdict(9)));
        let mut r = file_record(abi::VERDICT_DENY, b"/x");
        r[offset_of!(EventHeader, kind)] = 99;
        assert_eq!(decode(&r), Err(DecodeError::UnknownKind(99)));
        let mut r = file_record(abi::VERDICT_DENY, b"/x");
        r[offset_of!(EventHeader, abi_version)] = 0;
        assert!(matches!(decode(&r), Err(DecodeError::AbiVersion { .. })));
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        // A cheap deterministic sweep; the fuzz target goes further.
        let good = file_record(abi::VERDICT_DENY, b"/etc/shadow");
        let mut seed = 0x1234_5678u32;
        for _ in 0..20_000 {
            let mut r = good.clone();
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let i = seed as usize % r.len();
            r[i] = (seed >> 8) as u8;
            let cut = (seed >> 16) as usize % (r.len() + 1);
            let _ = decode(&r[..cut]);
        }
    }
}
