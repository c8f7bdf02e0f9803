//! Records of the path and mmap hooks (`enf_path_event`): create, delete,
//! rename, link, chmod, chown, truncate and mmap_exec verdicts, with one path
//! or, for rename and link, two.

use crate::abi::{self, PathEvent};
use crate::events::{DecodeError, Header};
use core::mem::offset_of;

/// A path or mmap hook's decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathRecord {
    pub header: Header,
    /// `plan::ops` bits decided: one operation, or `create | link` for a
    /// symlink.
    pub op: u32,
    /// The path operated on (rename: the source; link: the new name). Empty
    /// when it could not be resolved.
    pub path: Vec<u8>,
    /// Rename: the destination; link: the existing file linked to. `None`
    /// for operations on one path; empty when it could not be resolved.
    pub path2: Option<Vec<u8>>,
}

/// policy-lang's names of the file operations, by bit.
const OP_NAMES: [(u32, &str); 15] = [
    (abi::OP_READ, "read"),
    (abi::OP_WRITE, "write"),
    (abi::OP_APPEND, "append"),
    (abi::OP_CREATE, "create"),
    (abi::OP_DELETE, "delete"),
    (abi::OP_RENAME, "rename"),
    (abi::OP_LINK, "link"),
    (abi::OP_CHMOD, "chmod"),
    (abi::OP_CHOWN, "chown"),
    (abi::OP_TRUNCATE, "truncate"),
    (abi::OP_EXEC, "exec"),
    (abi::OP_MMAP_EXEC, "mmap_exec"),
    (abi::OP_CHMOD_SETUID, "chmod_setuid"),
    (abi::OP_CHMOD_SETGID, "chmod_setgid"),
    (abi::OP_SYMLINK_TO, "symlink_to"),
];

/// The operations the path hooks report.
const PATH_OPS: u32 = abi::OP_CREATE
    | abi::OP_DELETE
    | abi::OP_RENAME
    | abi::OP_LINK
    | abi::OP_CHMOD
    | abi::OP_CHMOD_SETUID
    | abi::OP_CHMOD_SETGID
    | abi::OP_SYMLINK_TO
    | abi::OP_CHOWN
    | abi::OP_TRUNCATE
    | abi::OP_MMAP_EXEC;

impl PathRecord {
    /// The operation's name(s), `+`-joined: `delete`, `create+link`.
    pub fn op_name(&self) -> String {
        op_names(self.op)
    }
}

/// `create+link` for a mask of file operation bits.
pub fn op_names(ops: u32) -> String {
    OP_NAMES
        .iter()
        .filter(|(bit, _)| ops & bit != 0)
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join("+")
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_ne_bytes(a)
}

pub(crate) fn decode_path(record: &[u8], header: Header) -> Result<PathRecord, DecodeError> {
    let fixed = abi::PATH_EVENT_PATHS_OFFSET;
    if record.len() < fixed {
        return Err(DecodeError::Short {
            len: record.len(),
            need: fixed,
        });
    }
    let op = u32_at(record, offset_of!(PathEvent, op));
    if op == 0 || op & !PATH_OPS != 0 {
        return Err(DecodeError::PathOp(op));
    }
    let len = u32_at(record, offset_of!(PathEvent, path_len)) as usize;
    let len2 = u32_at(record, offset_of!(PathEvent, path2_len)) as usize;
    let has2 = u32_at(record, offset_of!(PathEvent, has_path2)) != 0;
    let present = record.len() - fixed;
    let claimed = len.saturating_add(len2);
    if len >= abi::PATH_MAX || len2 >= abi::PATH_MAX || claimed != present || (!has2 && len2 != 0) {
        return Err(DecodeError::PathLength { claimed, present });
    }
    let paths = &record[fixed..];
    Ok(PathRecord {
        header,
        op,
        path: paths[..len].to_vec(),
        path2: has2.then(|| paths[len..].to_vec()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::EventHeader;
    use crate::events::{decode_record, Record};
    use crate::plan::Action;

    fn record(op: u32, path: &[u8], path2: Option<&[u8]>, flags: u32) -> Vec<u8> {
        let mut b = vec![0u8; abi::PATH_EVENT_PATHS_OFFSET];
        let put32 =
            |b: &mut Vec<u8>, off: usize, v: u32| b[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        put32(
            &mut b,
            offset_of!(EventHeader, abi_version),
            abi::ABI_VERSION,
        );
        b[offset_of!(EventHeader, kind)..][..2].copy_from_slice(&abi::EVENT_PATH.to_ne_bytes());
        b[offset_of!(EventHeader, verdict)..][..2]
            .copy_from_slice(&abi::VERDICT_DENY.to_ne_bytes());
        b[offset_of!(EventHeader, cgroup_id)..][..8].copy_from_slice(&99u64.to_ne_bytes());
        put32(&mut b, offset_of!(EventHeader, pid), 7);
        put32(&mut b, offset_of!(EventHeader, rule_id), 3);
        put32(&mut b, offset_of!(EventHeader, policy_id), 1);
        put32(&mut b, offset_of!(EventHeader, flags), flags);
        put32(&mut b, offset_of!(PathEvent, op), op);
        put32(&mut b, offset_of!(PathEvent, path_len), path.len() as u32);
        put32(
            &mut b,
            offset_of!(PathEvent, path2_len),
            path2.map_or(0, |p| p.len() as u32),
        );
        put32(
            &mut b,
            offset_of!(PathEvent, has_path2),
            u32::from(path2.is_some()),
        );
        b.extend_from_slice(path);
        if let Some(p) = path2 {
            b.extend_from_slice(p);
        }
        b
    }

    #[test]
    fn decodes_one_and_two_path_records() {
        let r = decode_record(&record(abi::OP_DELETE, b"/srv/x", None, 0)).unwrap();
        let Record::Path(p) = r else { panic!("{r:?}") };
        assert_eq!(p.header.action, Action::Deny);
        assert_eq!((p.header.pid, p.header.cgroup_id), (7, 99));
        assert_eq!((p.header.rule_id, p.header.policy_id), (Some(3), Some(1)));
        assert_eq!(p.path, b"/srv/x");
        assert_eq!(p.path2, None);
        assert_eq!(p.op_name(), "delete");

        let r = decode_record(&record(abi::OP_RENAME, b"/a", Some(b"/etc/shadow"), 0)).unwrap();
        let Record::Path(p) = r else { panic!("{r:?}") };
        assert_eq!(p.path, b"/a");
        assert_eq!(p.path2.as_deref(), Some(&b"/etc/shadow"[..]));

        let sym = decode_record(&record(abi::OP_CREATE | abi::OP_LINK, b"/l", None, 0)).unwrap();
        let Record::Path(p) = sym else {
            panic!("{sym:?}")
        };
        assert_eq!(p.op_name(), "create+link");

        // An unresolved second path is present and empty.
        let r = decode_record(&record(
            abi::OP_LINK,
            b"/l",
            Some(b""),
            abi::FLAG_PATH_UNRESOLVED,
        ))
        .unwrap();
        let Record::Path(p) = r else { panic!("{r:?}") };
        assert!(p.header.path_unresolved());
        assert_eq!(p.path2.as_deref(), Some(&b""[..]));
    }

    #[test]
    fn rejects_malformed_path_records() {
        // An op outside the path hooks' set.
        assert_eq!(
            decode_record(&record(abi::OP_READ, b"/x", None, 0)),
            Err(DecodeError::PathOp(abi::OP_READ))
        );
        assert_eq!(
            decode_record(&record(0, b"/x", None, 0)),
            Err(DecodeError::PathOp(0))
        );
        // Lengths that do not add up.
        let mut r = record(abi::OP_CHMOD, b"/x", None, 0);
        r.push(b'y');
        assert!(matches!(
            decode_record(&r),
            Err(DecodeError::PathLength { .. })
        ));
        let r = record(abi::OP_CHMOD, b"/xyz", None, 0);
        assert!(matches!(
            decode_record(&r[..r.len() - 1]),
            Err(DecodeError::PathLength { .. })
        ));
        // A second length without a second path.
        let mut r = record(abi::OP_CHMOD, b"/x", Some(b"/y"), 0);
        r[offset_of!(PathEvent, has_path2)..][..4].copy_from_slice(&0u32.to_ne_bytes());
        assert!(matches!(
            decode_record(&r),
            Err(DecodeError::PathLength { .. })
        ));
        // Short of the fixed part.
        assert!(matches!(
            decode_record(&record(abi::OP_CHMOD, b"", None, 0)[..abi::PATH_EVENT_PATHS_OFFSET - 1]),
            Err(DecodeError::Short { .. })
        ));
    }

    #[test]
    fn never_panics_on_arbitrary_path_records() {
        let base = record(abi::OP_RENAME, b"/a/b", Some(b"/c"), 0);
        for cut in 0..base.len() {
            let _ = decode_record(&base[..cut]);
        }
        for i in abi::PATH_EVENT_PATHS_OFFSET - 16..abi::PATH_EVENT_PATHS_OFFSET {
            let mut r = base.clone();
            r[i] = 0xff;
            let _ = decode_record(&r);
        }
    }
}
