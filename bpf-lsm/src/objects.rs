//! The BPF objects compiled from `bpf/*.bpf.c` by `build.rs`, embedded in
//! the binary so that a deployed enforcer is one file.

include!(concat!(env!("OUT_DIR"), "/objects.rs"));

/// Looks an embedded object up by name: `enforcer` (every hook) or `probe`.
pub fn by_name(name: &str) -> Option<&'static [u8]> {
    ALL.iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| *bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_object_is_an_elf_bpf_object() {
        assert!(!ALL.is_empty());
        for (name, bytes) in ALL {
            assert_eq!(&bytes[..4], b"\x7fELF", "{name} is not ELF");
            // e_machine at offset 18: EM_BPF = 247.
            assert_eq!(
                u16::from_le_bytes([bytes[18], bytes[19]]),
                247,
                "{name} is not BPF"
            );
        }
        assert!(by_name("enforcer").is_some());
        assert!(by_name("probe").is_some());
        assert!(by_name("nonexistent").is_none());
    }
}
