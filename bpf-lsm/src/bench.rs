//! Support for the kernel-side benchmark (`cargo xtask vm bench`): the empty
//! programs of `bpf/bench_empty.bpf.c` attached on the enforcer's hooks, and
//! the list of LSM programs loaded in the kernel, so that a benchmark can say
//! which hooks each configuration had.

use aya::programs::{loaded_programs, Lsm, ProgramError};
use aya::{Btf, Ebpf, EbpfLoader};
use aya_obj::generated::bpf_prog_type;

use crate::objects;

/// The empty programs and the LSM hook each is attached to.
pub const EMPTY_PROGRAMS: &[(&str, &str)] = &[
    ("bench_file_open", "file_open"),
    ("bench_bprm", "bprm_check_security"),
    ("bench_sock_conn", "socket_connect"),
    ("bench_mmap_file", "mmap_file"),
];

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("cannot read the kernel's BTF (/sys/kernel/btf/vmlinux): {0}")]
    Btf(#[from] aya::BtfError),
    #[error("the `bench_empty` BPF object is not embedded in this build: rebuild bpf-lsm")]
    MissingObject,
    #[error("cannot load the `bench_empty` BPF object: {0}")]
    Object(#[from] aya::EbpfError),
    #[error("program `{program}` is missing from the `bench_empty` object")]
    MissingProgram { program: &'static str },
    #[error("program `{program}` on hook `{hook}`: {source}")]
    Program {
        program: &'static str,
        hook: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("listing the loaded BPF programs: {0}")]
    List(#[source] ProgramError),
}

/// The empty programs, attached until dropped (aya detaches a program's
/// links when the object is dropped).
pub struct EmptyPrograms {
    _ebpf: Ebpf,
}

impl std::fmt::Debug for EmptyPrograms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmptyPrograms").finish_non_exhaustive()
    }
}

impl EmptyPrograms {
    /// Loads and attaches every program of [`EMPTY_PROGRAMS`]. Needs root and
    /// a kernel with BPF LSM.
    pub fn attach() -> Result<Self, BenchError> {
        let btf = Btf::from_sys_fs()?;
        let bytes = objects::by_name("bench_empty").ok_or(BenchError::MissingObject)?;
        let mut ebpf = EbpfLoader::new().btf(Some(&btf)).load(bytes)?;
        for &(program, hook) in EMPTY_PROGRAMS {
            let error = |source| BenchError::Program {
                program,
                hook,
                source,
            };
            let lsm: &mut Lsm = ebpf
                .program_mut(program)
                .ok_or(BenchError::MissingProgram { program })?
                .try_into()
                .map_err(error)?;
            lsm.load(hook, &btf).map_err(error)?;
            lsm.attach().map_err(error)?;
        }
        Ok(Self { _ebpf: ebpf })
    }
}

/// The names of the LSM programs loaded in the kernel right now, sorted (as
/// the kernel keeps them: at most 15 bytes).
pub fn loaded_lsm_programs() -> Result<Vec<String>, BenchError> {
    let mut names = Vec::new();
    for info in loaded_programs() {
        let info = info.map_err(BenchError::List)?;
        if info.program_type() == bpf_prog_type::BPF_PROG_TYPE_LSM {
            names.push(String::from_utf8_lossy(info.name()).into_owned());
        }
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every program named here is in the object, in an `lsm/<hook>` section.
    #[test]
    fn the_object_has_every_empty_program() {
        let bytes = objects::by_name("bench_empty").unwrap();
        let object = aya_obj::Object::parse(bytes).unwrap();
        for (program, hook) in EMPTY_PROGRAMS {
            let found = object.programs.get(*program);
            assert!(found.is_some(), "{program} missing");
            assert!(
                matches!(&found.unwrap().section, aya_obj::ProgramSection::Lsm { .. }),
                "{program} is not an LSM program"
            );
            // Kernel program names are cut at 15 bytes: these must fit to be
            // recognisable in `loaded_lsm_programs`.
            assert!(program.len() <= 15, "{program} is longer than 15 bytes");
            assert!(!hook.is_empty());
        }
    }
}
