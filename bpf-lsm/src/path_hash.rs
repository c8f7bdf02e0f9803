//! The path hash the kernel programs compute (`bpf/include/path_hash.h`):
//! 64-bit FNV-1a over the bytes of the resolved path. Map entries are keyed
//! by it, so both sides must agree bit for bit; the vectors below pin it.

const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

/// Hash of a path as the kernel sees it (no trailing NUL).
pub fn path_hash(path: &[u8]) -> u64 {
    path.iter()
        .fold(OFFSET, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_published_fnv1a_vectors() {
        assert_eq!(path_hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(path_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(path_hash(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn distinguishes_paths_that_differ_in_one_byte() {
        assert_ne!(path_hash(b"/etc/shadow"), path_hash(b"/etc/shadoW"));
        assert_ne!(path_hash(b"/etc/shadow"), path_hash(b"/etc/shadow/"));
    }
}
