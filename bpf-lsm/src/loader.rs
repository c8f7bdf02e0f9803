//! Loads the embedded programs, fills their maps from typed entries, and
//! attaches them. Maps are filled before the program is attached, so the
//! first time it runs it already sees the whole plan.

use crate::abi::{self, CgroupScope, PathRule};
use crate::objects;
use crate::path_hash::path_hash;
use aya::maps::{HashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::{Lsm, ProgramError};
use aya::{Btf, Ebpf, EbpfLoader};

/// Enforce (deny) or audit (record what would be denied, allow it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Enforce,
    Audit,
}

/// A cgroup the plan applies to, by its cgroup2 id (the inode number of its
/// directory, which is what `bpf_get_current_cgroup_id()` returns).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopedCgroup {
    pub id: u64,
    pub mode: Mode,
}

/// Deny opening exactly this resolved path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRule {
    /// Reported back in events, so user space can name the rule.
    pub rule_id: u32,
    /// Absolute, resolved path as `d_path` renders it.
    pub path: Vec<u8>,
}

/// The typed map entries of the `file_open` program.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileOpenPlan {
    pub cgroups: Vec<ScopedCgroup>,
    pub rules: Vec<FileRule>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read the kernel's BTF (/sys/kernel/btf/vmlinux): {0}")]
    Btf(#[from] aya::BtfError),
    #[error("cannot load BPF object `{object}`: {source}")]
    Object {
        object: &'static str,
        #[source]
        source: aya::EbpfError,
    },
    #[error("BPF object `{0}` is not embedded in this build")]
    MissingObject(&'static str),
    #[error("program `{program}` is missing from its object")]
    MissingProgram { program: &'static str },
    #[error("map `{map}` is missing or has the wrong type: {detail}")]
    Map { map: &'static str, detail: String },
    #[error("the kernel refused program `{program}`: {io_error}\nverifier log:\n{verifier_log}")]
    Verifier {
        program: &'static str,
        io_error: std::io::Error,
        verifier_log: String,
    },
    #[error("program `{program}`: {source}")]
    Program {
        program: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("path `{path}` is {len} bytes long; the kernel resolves paths up to {max} bytes")]
    PathTooLong {
        path: String,
        len: usize,
        max: usize,
    },
}

impl LoadError {
    fn program(program: &'static str, err: ProgramError) -> Self {
        match err {
            ProgramError::LoadError {
                io_error,
                verifier_log,
            } => LoadError::Verifier {
                program,
                io_error,
                verifier_log: verifier_log.to_string(),
            },
            source => LoadError::Program { program, source },
        }
    }

    fn map(map: &'static str, detail: impl std::fmt::Display) -> Self {
        LoadError::Map {
            map,
            detail: detail.to_string(),
        }
    }

    /// The errno behind the failure, where there is one (EPERM when the
    /// kernel refuses LSM programs outright).
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            LoadError::Verifier { io_error, .. } => io_error.raw_os_error(),
            _ => None,
        }
    }
}

/// Counters the kernel programs keep (`enf_stats`), summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct KernelStats {
    /// Records lost because the ring buffer was full.
    pub ringbuf_drops: u64,
    /// Opens decided without a resolved path (failed closed).
    pub path_unresolved: u64,
}

/// The ring buffer verdicts arrive on.
pub type EventRing = RingBuf<MapData>;

/// Loaded and attached programs. Dropping it detaches them.
pub struct Loaded {
    ebpf: Ebpf,
}

const FILE_OPEN_OBJECT: &str = "file_open";
const FILE_OPEN_PROGRAM: &str = "enf_file_open";

impl Loaded {
    /// Loads `lsm/file_open` with the plan's entries and attaches it.
    pub fn file_open(plan: &FileOpenPlan) -> Result<Self, LoadError> {
        let btf = Btf::from_sys_fs()?;
        let bytes =
            objects::by_name(FILE_OPEN_OBJECT).ok_or(LoadError::MissingObject(FILE_OPEN_OBJECT))?;
        // Size the maps from the plan: no fixed cap on rules or cgroups.
        let rules = u32::try_from(plan.rules.len().max(1)).unwrap_or(u32::MAX);
        let cgroups = u32::try_from(plan.cgroups.len().max(1)).unwrap_or(u32::MAX);
        let mut ebpf = EbpfLoader::new()
            .btf(Some(&btf))
            .map_max_entries("enf_file_exact", rules)
            .map_max_entries("enf_scoped_cgroups", cgroups)
            .load(bytes)
            .map_err(|source| LoadError::Object {
                object: FILE_OPEN_OBJECT,
                source,
            })?;

        {
            let map = ebpf
                .map_mut("enf_file_exact")
                .ok_or(LoadError::map("enf_file_exact", "not in the object"))?;
            let mut exact: HashMap<_, u64, PathRule> =
                HashMap::try_from(map).map_err(|e| LoadError::map("enf_file_exact", e))?;
            for rule in &plan.rules {
                if rule.path.len() >= abi::PATH_MAX {
                    return Err(LoadError::PathTooLong {
                        path: String::from_utf8_lossy(&rule.path).into_owned(),
                        len: rule.path.len(),
                        max: abi::PATH_MAX - 1,
                    });
                }
                let value = PathRule {
                    rule_id: rule.rule_id,
                    path_len: rule.path.len() as u32,
                };
                exact
                    .insert(path_hash(&rule.path), value, 0)
                    .map_err(|e| LoadError::map("enf_file_exact", e))?;
            }
        }
        {
            let map = ebpf
                .map_mut("enf_scoped_cgroups")
                .ok_or(LoadError::map("enf_scoped_cgroups", "not in the object"))?;
            let mut scoped: HashMap<_, u64, CgroupScope> =
                HashMap::try_from(map).map_err(|e| LoadError::map("enf_scoped_cgroups", e))?;
            for cg in &plan.cgroups {
                let mode = match cg.mode {
                    Mode::Enforce => abi::MODE_ENFORCE,
                    Mode::Audit => abi::MODE_AUDIT,
                };
                scoped
                    .insert(cg.id, CgroupScope { mode, _pad: 0 }, 0)
                    .map_err(|e| LoadError::map("enf_scoped_cgroups", e))?;
            }
        }

        let program: &mut Lsm = ebpf
            .program_mut(FILE_OPEN_PROGRAM)
            .ok_or(LoadError::MissingProgram {
                program: FILE_OPEN_PROGRAM,
            })?
            .try_into()
            .map_err(|e| LoadError::program(FILE_OPEN_PROGRAM, e))?;
        program
            .load("file_open", &btf)
            .map_err(|e| LoadError::program(FILE_OPEN_PROGRAM, e))?;
        program
            .attach()
            .map_err(|e| LoadError::program(FILE_OPEN_PROGRAM, e))?;
        Ok(Loaded { ebpf })
    }

    /// Takes the ring buffer the programs report verdicts on. It can be
    /// taken once; the caller polls its fd (it implements `AsRawFd`).
    pub fn take_events(&mut self) -> Result<EventRing, LoadError> {
        let map = self
            .ebpf
            .take_map("enf_events")
            .ok_or(LoadError::map("enf_events", "already taken"))?;
        RingBuf::try_from(map).map_err(|e| LoadError::map("enf_events", e))
    }

    /// Reads the kernel-side counters.
    pub fn stats(&self) -> Result<KernelStats, LoadError> {
        let map = self
            .ebpf
            .map("enf_stats")
            .ok_or(LoadError::map("enf_stats", "not in the object"))?;
        let stats: PerCpuArray<_, u64> =
            PerCpuArray::try_from(map).map_err(|e| LoadError::map("enf_stats", e))?;
        let sum = |idx: u32| -> Result<u64, LoadError> {
            let values = stats
                .get(&idx, 0)
                .map_err(|e| LoadError::map("enf_stats", e))?;
            Ok(values.iter().sum())
        };
        Ok(KernelStats {
            ringbuf_drops: sum(abi::STAT_RINGBUF_DROPS)?,
            path_unresolved: sum(abi::STAT_PATH_UNRESOLVED)?,
        })
    }
}
