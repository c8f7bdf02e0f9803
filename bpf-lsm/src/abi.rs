//! Rust mirror of `bpf/include/abi.h`. Every struct is `#[repr(C)]` with the
//! same fields in the same order; `tests::layout_matches_object_btf` reads
//! the BTF of the compiled objects and checks size and offset of every field,
//! so the two cannot drift apart silently.

/// Bumped whenever a struct below changes; records carry it.
pub const ABI_VERSION: u32 = 1;
pub const PATH_MAX: usize = 4096;
pub const COMM_LEN: usize = 16;

pub const EVENT_FILE_OPEN: u16 = 1;

pub const VERDICT_ALLOW: u16 = 0;
pub const VERDICT_DENY: u16 = 1;
pub const VERDICT_AUDIT: u16 = 2;

pub const MODE_ENFORCE: u32 = 0;
pub const MODE_AUDIT: u32 = 1;

pub const FLAG_PATH_UNRESOLVED: u32 = 1 << 0;

pub const STAT_RINGBUF_DROPS: u32 = 0;
pub const STAT_PATH_UNRESOLVED: u32 = 1;
pub const STAT_MAX: u32 = 8;

/// `struct enf_event_header`: the head of every ring-buffer record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventHeader {
    pub abi_version: u32,
    pub kind: u16,
    pub verdict: u16,
    pub ktime_ns: u64,
    pub cgroup_id: u64,
    pub pid: u32,
    pub tid: u32,
    pub uid: u32,
    pub gid: u32,
    pub rule_id: u32,
    pub flags: u32,
    pub comm: [u8; COMM_LEN],
}

/// `struct enf_file_event`. On the ring buffer only the first `path_len`
/// bytes of `path` are present.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FileEvent {
    pub hdr: EventHeader,
    pub f_flags: u32,
    pub f_mode: u32,
    pub path_len: u32,
    pub _pad: u32,
    pub path: [u8; PATH_MAX],
}

/// `struct enf_cgroup_scope`: value of `enf_scoped_cgroups`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupScope {
    pub mode: u32,
    pub _pad: u32,
}

/// `struct enf_path_rule`: value of `enf_file_exact`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathRule {
    pub rule_id: u32,
    pub path_len: u32,
}

// SAFETY: plain-old-data structs of integers and byte arrays with explicit
// padding fields, so every byte pattern is valid and none is uninitialised.
unsafe impl aya::Pod for CgroupScope {}
// SAFETY: as above.
unsafe impl aya::Pod for PathRule {}

/// Byte offset of the path within a file record (the record's fixed part).
pub const FILE_EVENT_PATH_OFFSET: usize = core::mem::offset_of!(FileEvent, path);

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};
    use std::collections::HashMap;

    /// (struct name, size, [(field, offset)]) of one ABI struct.
    type Layout = (&'static str, usize, Vec<(&'static str, usize)>);

    fn rust_layouts() -> Vec<Layout> {
        vec![
            (
                "enf_event_header",
                size_of::<EventHeader>(),
                vec![
                    ("abi_version", offset_of!(EventHeader, abi_version)),
                    ("kind", offset_of!(EventHeader, kind)),
                    ("verdict", offset_of!(EventHeader, verdict)),
                    ("ktime_ns", offset_of!(EventHeader, ktime_ns)),
                    ("cgroup_id", offset_of!(EventHeader, cgroup_id)),
                    ("pid", offset_of!(EventHeader, pid)),
                    ("tid", offset_of!(EventHeader, tid)),
                    ("uid", offset_of!(EventHeader, uid)),
                    ("gid", offset_of!(EventHeader, gid)),
                    ("rule_id", offset_of!(EventHeader, rule_id)),
                    ("flags", offset_of!(EventHeader, flags)),
                    ("comm", offset_of!(EventHeader, comm)),
                ],
            ),
            (
                "enf_file_event",
                size_of::<FileEvent>(),
                vec![
                    ("hdr", offset_of!(FileEvent, hdr)),
                    ("f_flags", offset_of!(FileEvent, f_flags)),
                    ("f_mode", offset_of!(FileEvent, f_mode)),
                    ("path_len", offset_of!(FileEvent, path_len)),
                    ("_pad", offset_of!(FileEvent, _pad)),
                    ("path", offset_of!(FileEvent, path)),
                ],
            ),
            (
                "enf_cgroup_scope",
                size_of::<CgroupScope>(),
                vec![
                    ("mode", offset_of!(CgroupScope, mode)),
                    ("_pad", offset_of!(CgroupScope, _pad)),
                ],
            ),
            (
                "enf_path_rule",
                size_of::<PathRule>(),
                vec![
                    ("rule_id", offset_of!(PathRule, rule_id)),
                    ("path_len", offset_of!(PathRule, path_len)),
                ],
            ),
        ]
    }

    #[test]
    fn layout_matches_object_btf() {
        let mut seen = HashMap::new();
        for (object, bytes) in crate::objects::ALL {
            for (name, layout) in btf::structs(bytes) {
                seen.entry(name).or_insert_with(|| (object, layout));
            }
        }
        for (name, size, fields) in rust_layouts() {
            let (object, btf) = seen
                .get(name)
                .unwrap_or_else(|| panic!("struct {name} is in no object's BTF"));
            assert_eq!(btf.size as usize, size, "size of {name} (BTF of {object})");
            let btf_fields: Vec<(&str, usize)> = btf
                .members
                .iter()
                .map(|(n, off)| (n.as_str(), *off as usize / 8))
                .collect();
            assert_eq!(btf_fields, fields, "fields of {name} (BTF of {object})");
        }
    }

    /// Just enough of a BTF reader to list struct layouts: the section
    /// format is stable (Documentation/bpf/btf.rst) and aya-obj keeps its
    /// member lists private.
    mod btf {
        use object::{Object, ObjectSection};

        pub struct StructLayout {
            pub size: u32,
            /// (name, offset in bits)
            pub members: Vec<(String, u32)>,
        }

        fn u32_at(b: &[u8], off: usize) -> u32 {
            u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
        }

        fn name_at(strings: &[u8], off: u32) -> String {
            let s = &strings[off as usize..];
            let end = s.iter().position(|&c| c == 0).unwrap();
            String::from_utf8_lossy(&s[..end]).into_owned()
        }

        pub fn structs(elf: &[u8]) -> Vec<(String, StructLayout)> {
            let file = object::File::parse(elf).unwrap();
            let section = file.section_by_name(".BTF").expect("object has no .BTF");
            let data = section.data().unwrap();
            assert_eq!(u16::from_le_bytes([data[0], data[1]]), 0xeb9f, "BTF magic");
            let hdr_len = u32_at(data, 4) as usize;
            let type_off = hdr_len + u32_at(data, 8) as usize;
            let type_len = u32_at(data, 12) as usize;
            let str_off = hdr_len + u32_at(data, 16) as usize;
            let str_len = u32_at(data, 20) as usize;
            let types = &data[type_off..type_off + type_len];
            let strings = &data[str_off..str_off + str_len];

            let mut out = Vec::new();
            let mut pos = 0;
            while pos < types.len() {
                let name_off = u32_at(types, pos);
                let info = u32_at(types, pos + 4);
                let size = u32_at(types, pos + 8);
                let vlen = (info & 0xffff) as usize;
                let kind = (info >> 24) & 0x1f;
                let kind_flag = info >> 31 == 1;
                pos += 12;
                let extra = match kind {
                    1 | 14 | 17 => 4,          // int, var, decl_tag
                    3 => 12,                   // array
                    4 | 5 => vlen * 12,        // struct, union
                    6 | 13 => vlen * 8,        // enum, func_proto
                    15 | 19 => vlen * 12,      // datasec, enum64
                    2 | 7..=12 | 16 | 18 => 0, // ptr, fwd, typedef, cv, func, float, type_tag
                    other => panic!("unknown BTF kind {other}"),
                };
                if kind == 4 {
                    let members = (0..vlen)
                        .map(|i| {
                            let m = pos + i * 12;
                            let raw = u32_at(types, m + 8);
                            let bits = if kind_flag { raw & 0x00ff_ffff } else { raw };
                            (name_at(strings, u32_at(types, m)), bits)
                        })
                        .collect();
                    out.push((name_at(strings, name_off), StructLayout { size, members }));
                }
                pos += extra;
            }
            out
        }
    }
}
