//! Inodes of the file matcher's literal paths, so that another name of the
//! same file (a hard link) is matched by the path's rules (`inode_alias.h`).
//!
//! A literal path is a walk from the start state over literal edges only to
//! a state with an accept list: exactly the state the kernel's walk reaches
//! for that path, since a literal edge wins over a wildcard. Each such path
//! that is a regular file at load time (a symlink is followed, as the open
//! would be) is listed as `(dev, ino) -> state`. A file created or replaced
//! later (for instance by a rename) has another inode: it is covered by its
//! path only, until the next load.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;

use crate::abi;
use crate::plan::PathMatcherEntries;

/// Literal paths looked at, at most; the rest are covered by their path only
/// (a warning says how many were left out).
pub const MAX_LITERAL_PATHS: usize = 65_536;

/// Bytes of a path the kernel can open.
const PATH_MAX: usize = 4096;

/// The literal paths of `m` with their accepting state, at most `cap`, and
/// whether some were left out.
pub fn literal_paths(m: &PathMatcherEntries, cap: usize) -> (Vec<(Vec<u8>, u32)>, bool) {
    let mut edges: HashMap<u32, Vec<(&[u8], u32)>> = HashMap::new();
    for e in &m.edges {
        edges
            .entry(e.from)
            .or_default()
            .push((e.segment.as_slice(), e.to));
    }
    for list in edges.values_mut() {
        list.sort();
    }
    let accepting: HashSet<u32> = m
        .accepts
        .iter()
        .filter(|a| !a.rules.is_empty())
        .map(|a| a.state)
        .collect();
    let mut out = Vec::new();
    let mut truncated = false;
    // Depth first; a state already on the path is not entered again (a
    // literal loop of a `**` state would never end).
    let mut stack: Vec<(u32, Vec<u8>, Vec<u32>)> = vec![(abi::STATE_START, Vec::new(), vec![])];
    while let Some((state, path, on_path)) = stack.pop() {
        if !path.is_empty() && accepting.contains(&state) {
            if out.len() >= cap {
                truncated = true;
                break;
            }
            out.push((path.clone(), state));
        }
        let Some(next) = edges.get(&state) else {
            continue;
        };
        let mut seen = on_path;
        seen.push(state);
        for (segment, to) in next.iter().rev() {
            if seen.contains(to) || path.len() + 1 + segment.len() >= PATH_MAX {
                continue;
            }
            let mut p = path.clone();
            p.push(b'/');
            p.extend_from_slice(segment);
            stack.push((*to, p, seen.clone()));
        }
    }
    (out, truncated)
}

/// The kernel's dev_t (`MKDEV`) of a device number as stat reports it.
pub fn kernel_dev(st_dev: u64) -> u32 {
    let major = libc::major(st_dev);
    let minor = libc::minor(st_dev);
    (major << 20) | (minor & 0xf_ffff)
}

/// The `enf_file_inodes` entries of `m`: the literal paths that are regular
/// files now. When two of them are one inode, the first in path order keeps
/// it (a warning names both).
pub fn entries(m: &PathMatcherEntries) -> Vec<(abi::InodeKey, u32)> {
    use std::os::unix::ffi::OsStrExt;
    let (paths, truncated) = literal_paths(m, MAX_LITERAL_PATHS);
    if truncated {
        tracing::warn!(
            "the file matcher has more than {MAX_LITERAL_PATHS} literal paths; \
             the rest are matched by their path only, not by inode (hard links to them are not covered)"
        );
    }
    let mut by_inode: HashMap<abi::InodeKey, (Vec<u8>, u32)> = HashMap::new();
    let mut out = Vec::new();
    for (path, state) in paths {
        let Ok(meta) = std::fs::metadata(std::ffi::OsStr::from_bytes(&path)) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let key = abi::InodeKey {
            ino: meta.ino(),
            dev: kernel_dev(meta.dev()),
            _pad: 0,
        };
        match by_inode.get(&key) {
            Some((first, s)) if *s != state => tracing::warn!(
                "`{}` and `{}` are one file with different rules; \
                 its other names get the rules of `{}` only",
                String::from_utf8_lossy(first),
                String::from_utf8_lossy(&path),
                String::from_utf8_lossy(first)
            ),
            Some(_) => {}
            None => {
                by_inode.insert(key, (path, state));
                out.push((key, state));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Accept, Edge, Wildcard};

    fn m() -> PathMatcherEntries {
        // /etc/shadow (2 -> 3, accept), /etc/*/x (wildcard, not literal),
        // /a/** loop: 4 -a-> 5, 5 -b-> 5 accepting.
        PathMatcherEntries {
            edges: vec![
                Edge::new(1, b"etc", 2),
                Edge::new(2, b"shadow", 3),
                Edge::new(6, b"x", 7),
                Edge::new(1, b"a", 5),
                Edge::new(5, b"b", 5),
            ],
            wildcards: vec![Wildcard { from: 2, to: 6 }],
            accepts: vec![
                Accept {
                    state: 3,
                    rules: vec![10],
                },
                Accept {
                    state: 7,
                    rules: vec![11],
                },
                Accept {
                    state: 5,
                    rules: vec![12],
                },
            ],
            suffixes: vec![],
        }
    }

    #[test]
    fn literal_paths_follow_only_literal_edges() {
        let (paths, truncated) = literal_paths(&m(), 100);
        assert!(!truncated);
        let paths: Vec<(String, u32)> = paths
            .into_iter()
            .map(|(p, s)| (String::from_utf8(p).unwrap(), s))
            .collect();
        // /etc/*/x is behind a wildcard; the b loop is not entered twice.
        assert_eq!(
            paths,
            vec![("/a".to_string(), 5), ("/etc/shadow".to_string(), 3)]
        );
    }

    #[test]
    fn literal_paths_stop_at_the_cap() {
        let (paths, truncated) = literal_paths(&m(), 1);
        assert!(truncated);
        assert_eq!(paths.len(), 1);
    }

    #[test]
    fn kernel_dev_is_mkdev() {
        assert_eq!(kernel_dev(libc::makedev(8, 1)), (8 << 20) | 1);
        assert_eq!(kernel_dev(libc::makedev(259, 300)), (259 << 20) | 300);
    }

    #[test]
    fn entries_list_existing_regular_files_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let segs: Vec<Vec<u8>> = file
            .components()
            .skip(1)
            .map(|c| c.as_os_str().as_encoded_bytes().to_vec())
            .collect();
        let mut edges = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            edges.push(Edge::new(i as u32 + 1, s, i as u32 + 2));
        }
        let last = segs.len() as u32 + 1;
        let mut missing = segs.clone();
        missing.pop();
        let m = PathMatcherEntries {
            edges: {
                let mut e = edges.clone();
                // A sibling that does not exist, and the directory itself.
                e.push(Edge::new(last - 1, b"missing", 100));
                e
            },
            wildcards: vec![],
            accepts: vec![
                Accept {
                    state: last,
                    rules: vec![1],
                },
                Accept {
                    state: 100,
                    rules: vec![2],
                },
                Accept {
                    state: last - 1,
                    rules: vec![3],
                },
            ],
            suffixes: vec![],
        };
        let meta = std::fs::metadata(&file).unwrap();
        assert_eq!(
            entries(&m),
            vec![(
                abi::InodeKey {
                    ino: meta.ino(),
                    dev: kernel_dev(meta.dev()),
                    _pad: 0
                },
                last
            )]
        );
    }
}
