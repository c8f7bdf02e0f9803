//! Pinning in bpffs, so that enforcement outlives the daemon: a generation's links (a pinned
//! bpf_link keeps its program attached with no process holding it), its ring buffer (records
//! made while no daemon runs wait there) and its counters. One directory per generation; what
//! a directory holds is told by the names of its files ([`LINK_PREFIX`], [`RING`], [`STATS`]).

use crate::loader::{read_stats, EventRing, KernelStats};
use aya::maps::{Map, MapData, PerCpuArray, RingBuf};
use std::path::{Path, PathBuf};

/// The ring buffer's pin, in a generation's directory.
pub const RING: &str = "enf_events";
/// The counters' pin.
pub const STATS: &str = "enf_stats";
/// Every link pin starts with this (then the program's name, and for a cgroup program the
/// index of its cgroup).
pub const LINK_PREFIX: &str = "link-";

#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("cannot pin `{}`: {detail} (is bpffs mounted there?)", path.display())]
    Pin { path: PathBuf, detail: String },
    #[error("cannot open the pinned map `{}`: {detail}", path.display())]
    Open { path: PathBuf, detail: String },
    #[error(
        "{left} link(s) of `{}` were still attached {waited_ms} ms after their pins were removed \
         (the kernel detaches them asynchronously): check with `enforcer status` or run \
         `enforcer unload` again",
        dir.display()
    )]
    StillAttached {
        dir: PathBuf,
        left: usize,
        waited_ms: u128,
    },
    #[error("cannot remove the pin `{}`: {source}", path.display())]
    Remove {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The name a link is pinned under: `link-<program>`, or `link-<program>-<i>` for the i-th
/// cgroup of a cgroup program.
pub fn link_name(program: &str, cgroup: Option<usize>) -> String {
    match cgroup {
        Some(i) => format!("{LINK_PREFIX}{program}-{i}"),
        None => format!("{LINK_PREFIX}{program}"),
    }
}

/// What one generation's directory holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Contents {
    /// Link pins, by file name.
    pub links: Vec<String>,
    /// Map pins (and anything else), by file name.
    pub maps: Vec<String>,
}

/// A generation pinned by an earlier daemon (or by this one), found by its directory.
#[derive(Clone, Debug)]
pub struct PinnedGeneration {
    dir: PathBuf,
}

impl PinnedGeneration {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        PinnedGeneration { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The pins in the directory (sorted); an unreadable directory holds nothing.
    pub fn contents(&self) -> Contents {
        let mut c = Contents::default();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return c;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(LINK_PREFIX) {
                c.links.push(name);
            } else {
                c.maps.push(name);
            }
        }
        c.links.sort();
        c.maps.sort();
        c
    }

    fn map(&self, name: &str) -> Result<MapData, PinError> {
        let path = self.dir.join(name);
        MapData::from_pin(&path).map_err(|e| PinError::Open {
            path,
            detail: e.to_string(),
        })
    }

    /// The generation's ring buffer, to read what its programs reported (also while no
    /// daemon ran: the consumer position is the kernel's, so nothing is read twice).
    pub fn events(&self) -> Result<EventRing, PinError> {
        let path = self.dir.join(RING);
        RingBuf::try_from(Map::RingBuf(self.map(RING)?)).map_err(|e| PinError::Open {
            path,
            detail: e.to_string(),
        })
    }

    /// The generation's kernel counters.
    pub fn stats(&self) -> Result<KernelStats, PinError> {
        let path = self.dir.join(STATS);
        let stats: PerCpuArray<_, u64> = PerCpuArray::try_from(Map::PerCpuArray(self.map(STATS)?))
            .map_err(|e| PinError::Open {
                path: path.clone(),
                detail: e.to_string(),
            })?;
        read_stats(&stats).map_err(|e| PinError::Open {
            path,
            detail: e.to_string(),
        })
    }

    /// The kernel ids of the generation's pinned links and of their programs (a pin that
    /// cannot be opened is left out).
    pub fn link_ids(&self) -> Vec<(u32, u32)> {
        self.contents()
            .links
            .iter()
            .filter_map(|name| {
                let link = aya::programs::links::PinnedLink::from_pin(self.dir.join(name)).ok()?;
                // The opened fd is dropped with `link`, so it keeps no reference.
                let info = aya::programs::links::FdLink::from(link).info().ok()?;
                Some((info.id(), info.program_id()))
            })
            .collect()
    }

    /// [`PinnedGeneration::remove`], then waits (up to `timeout`) until the kernel has
    /// released every link and freed its program. The last reference to a link is dropped
    /// asynchronously (a kernel work item detaches one hook after another), and a link's id
    /// goes before its program is detached; a program id that is gone means its hook no
    /// longer runs it. When this returns `Ok`, nothing of the generation runs.
    pub fn remove_and_wait(&self, timeout: std::time::Duration) -> Result<Contents, PinError> {
        let ids = self.link_ids();
        let removed = self.remove()?;
        let start = std::time::Instant::now();
        loop {
            let links: std::collections::HashSet<u32> = aya::programs::loaded_links()
                .filter_map(|l| l.ok().map(|l| l.id()))
                .collect();
            let programs: std::collections::HashSet<u32> = aya::programs::loaded_programs()
                .filter_map(|p| p.ok().map(|p| p.id()))
                .collect();
            let left = ids
                .iter()
                .filter(|(link, prog)| links.contains(link) || programs.contains(prog))
                .count();
            if left == 0 {
                return Ok(removed);
            }
            if start.elapsed() >= timeout {
                return Err(PinError::StillAttached {
                    dir: self.dir.clone(),
                    left,
                    waited_ms: start.elapsed().as_millis(),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Removes every pin and the directory: links first (with no process holding them, their
    /// programs are detached now), then the maps. A pin already gone is not an error. Returns
    /// what was removed.
    pub fn remove(&self) -> Result<Contents, PinError> {
        let c = self.contents();
        for name in c.links.iter().chain(&c.maps) {
            let path = self.dir.join(name);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(PinError::Remove { path, source }),
            }
        }
        match std::fs::remove_dir(&self.dir) {
            Ok(()) => Ok(c),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(c),
            Err(source) => Err(PinError::Remove {
                path: self.dir.clone(),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_names_say_program_and_cgroup() {
        assert_eq!(link_name("enf_file_open", None), "link-enf_file_open");
        assert_eq!(
            link_name("enf_cg_connect4", Some(2)),
            "link-enf_cg_connect4-2"
        );
    }

    #[test]
    fn contents_split_links_from_maps_and_remove_empties_the_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("gen-1");
        std::fs::create_dir(&dir).unwrap();
        for f in ["link-b", "enf_events", "link-a", "enf_stats"] {
            std::fs::write(dir.join(f), b"").unwrap();
        }
        let g = PinnedGeneration::new(&dir);
        let c = g.contents();
        assert_eq!(c.links, ["link-a", "link-b"]);
        assert_eq!(c.maps, ["enf_events", "enf_stats"]);
        assert_eq!(g.remove().unwrap(), c);
        assert!(!dir.exists());
        // Idempotent: nothing left is nothing removed.
        assert_eq!(g.remove().unwrap(), Contents::default());
    }
}
