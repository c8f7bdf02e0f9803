//! The kernel's path matcher: a deterministic automaton over path components.
//!
//! The kernel walks a resolved path one component at a time, hashing each component and
//! looking up `(state, hash)`; when there is no entry it follows the state's wildcard edge.
//! On the last component it also looks up `(state, hash(suffix))` for every suffix that
//! starts at a `.` (extension patterns). The final state's accept list plus any suffix
//! accepts are the matching tags (rule ids, or binary-set ids). Edge and suffix entries
//! carry the component bytes, which the program compares after the hash lookup. [`PathIndex`] is the same
//! walk in user space, over the same entries, so the reference evaluator cannot drift.

use crate::pattern::{components, PathPattern, Segment};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// State 0 is "no match possible"; the walk starts in state 1.
pub const DEAD: u32 = 0;
pub const START: u32 = 1;

/// A bound on automaton size: a pathological pattern set is an error, not an OOM.
pub const MAX_STATES: usize = 1_000_000;

/// FNV-1a, 64 bit: what the BPF programs compute for each component.
pub fn segment_hash(s: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in s {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathEdge {
    pub from: u32,
    /// The component text (for `--explain` and debugging; the kernel uses `hash`).
    pub segment: String,
    pub hash: u64,
    pub to: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WildcardEdge {
    pub from: u32,
    pub to: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accept {
    pub state: u32,
    pub tags: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuffixAccept {
    /// The state before the last component.
    pub state: u32,
    pub suffix: String,
    pub hash: u64,
    pub tags: Vec<u32>,
}

/// The map entries of one path matcher.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathMatcher {
    pub states: u32,
    pub edges: Vec<PathEdge>,
    pub wildcards: Vec<WildcardEdge>,
    pub accepts: Vec<Accept>,
    pub suffixes: Vec<SuffixAccept>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MatcherError {
    #[error("the path patterns need more than {MAX_STATES} matcher states")]
    TooManyStates,
    #[error("pattern `{0}` cannot be evaluated in the kernel")]
    NotKernelEvaluable(String),
    #[error("path components `{0}` and `{1}` have the same hash")]
    HashCollision(String, String),
}

/// A position in one pattern: the index of the next segment to match.
type Pos = (u32, u16);

struct Builder<'p> {
    pats: Vec<(&'p [Segment], u32)>,
}

impl Builder<'_> {
    fn seg(&self, (p, i): Pos) -> Option<&Segment> {
        self.pats
            .get(p as usize)
            .and_then(|(s, _)| s.get(usize::from(i)))
    }

    fn len(&self, p: u32) -> usize {
        self.pats.get(p as usize).map_or(0, |(s, _)| s.len())
    }

    fn tag(&self, p: u32) -> u32 {
        self.pats.get(p as usize).map_or(0, |(_, t)| *t)
    }

    /// `**` also matches zero components.
    fn closure(&self, mut set: Vec<Pos>) -> Vec<Pos> {
        let mut i = 0;
        while i < set.len() {
            let pos = set[i];
            if self.seg(pos) == Some(&Segment::AnyDepth) {
                set.push((pos.0, pos.1 + 1));
            }
            i += 1;
        }
        set.sort_unstable();
        set.dedup();
        set
    }
}

/// Builds the matcher for (pattern, tag) pairs. Every pattern must be kernel-evaluable.
pub fn build(patterns: &[(&PathPattern, u32)]) -> Result<PathMatcher, MatcherError> {
    for (p, _) in patterns {
        if !p.kernel_evaluable() {
            return Err(MatcherError::NotKernelEvaluable(p.text.clone()));
        }
    }
    let b = Builder {
        pats: patterns
            .iter()
            .map(|(p, t)| (p.segments.as_slice(), *t))
            .collect(),
    };
    let mut m = PathMatcher::default();
    let mut ids: HashMap<Vec<Pos>, u32> = HashMap::new();
    let mut queue: Vec<Vec<Pos>> = Vec::new();
    let start = b.closure(
        (0..u32::try_from(b.pats.len()).unwrap_or(u32::MAX))
            .map(|p| (p, 0))
            .collect(),
    );
    ids.insert(start.clone(), START);
    queue.push(start);
    let mut hashes: HashMap<u64, String> = HashMap::new();
    let mut next_id = START;
    let mut qi = 0;
    while qi < queue.len() {
        let set = std::mem::take(&mut queue[qi]);
        qi += 1;
        let Some(&id) = ids.get(&set) else { continue };
        let mut accept = BTreeSet::new();
        let mut suffixes: BTreeMap<&str, BTreeSet<u32>> = BTreeMap::new();
        let mut literal: BTreeMap<&str, Vec<Pos>> = BTreeMap::new();
        let mut wild: Vec<Pos> = Vec::new();
        for &pos in &set {
            match b.seg(pos) {
                None if usize::from(pos.1) == b.len(pos.0) => {
                    accept.insert(b.tag(pos.0));
                }
                None => {}
                Some(Segment::Literal(l)) => literal.entry(l).or_default().push((pos.0, pos.1 + 1)),
                Some(Segment::Star) => wild.push((pos.0, pos.1 + 1)),
                Some(Segment::AnyDepth) => wild.push(pos),
                Some(Segment::Suffix(ext)) => {
                    suffixes.entry(ext).or_default().insert(b.tag(pos.0));
                }
                Some(Segment::Glob(_)) => {}
            }
        }
        let mut intern =
            |target: Vec<Pos>, ids: &mut HashMap<Vec<Pos>, u32>, queue: &mut Vec<Vec<Pos>>| {
                if let Some(&t) = ids.get(&target) {
                    return Ok(t);
                }
                if ids.len() >= MAX_STATES {
                    return Err(MatcherError::TooManyStates);
                }
                next_id += 1;
                ids.insert(target.clone(), next_id);
                queue.push(target);
                Ok(next_id)
            };
        for (seg, mut targets) in literal {
            targets.extend_from_slice(&wild);
            let to = intern(b.closure(targets), &mut ids, &mut queue)?;
            let hash = segment_hash(seg.as_bytes());
            check_collision(&mut hashes, hash, seg)?;
            m.edges.push(PathEdge {
                from: id,
                segment: seg.to_owned(),
                hash,
                to,
            });
        }
        if !wild.is_empty() {
            let to = intern(b.closure(wild), &mut ids, &mut queue)?;
            m.wildcards.push(WildcardEdge { from: id, to });
        }
        if !accept.is_empty() {
            m.accepts.push(Accept {
                state: id,
                tags: accept.into_iter().collect(),
            });
        }
        for (suffix, tags) in suffixes {
            let hash = segment_hash(suffix.as_bytes());
            check_collision(&mut hashes, hash, suffix)?;
            m.suffixes.push(SuffixAccept {
                state: id,
                suffix: suffix.to_owned(),
                hash,
                tags: tags.into_iter().collect(),
            });
        }
    }
    m.states = next_id;
    Ok(m)
}

fn check_collision(
    seen: &mut HashMap<u64, String>,
    hash: u64,
    s: &str,
) -> Result<(), MatcherError> {
    match seen.get(&hash) {
        Some(prev) if prev != s => Err(MatcherError::HashCollision(prev.clone(), s.to_owned())),
        Some(_) => Ok(()),
        None => {
            seen.insert(hash, s.to_owned());
            Ok(())
        }
    }
}

/// The matcher loaded into lookup tables, as the kernel maps hold it.
#[derive(Debug, Clone, Default)]
pub struct PathIndex {
    edges: HashMap<(u32, u64), (String, u32)>,
    wildcards: HashMap<u32, u32>,
    accepts: HashMap<u32, Vec<u32>>,
    suffixes: HashMap<(u32, u64), (String, Vec<u32>)>,
}

impl PathIndex {
    pub fn new(m: &PathMatcher) -> PathIndex {
        PathIndex {
            edges: m
                .edges
                .iter()
                .map(|e| ((e.from, e.hash), (e.segment.clone(), e.to)))
                .collect(),
            wildcards: m.wildcards.iter().map(|w| (w.from, w.to)).collect(),
            accepts: m
                .accepts
                .iter()
                .map(|a| (a.state, a.tags.clone()))
                .collect(),
            suffixes: m
                .suffixes
                .iter()
                .map(|s| ((s.state, s.hash), (s.suffix.clone(), s.tags.clone())))
                .collect(),
        }
    }

    /// Calls `found` with every tag whose pattern matches `path`, exactly as the BPF walk.
    pub fn lookup(&self, path: &str, mut found: impl FnMut(u32)) {
        let mut state = START;
        let mut comps = components(path).peekable();
        while let Some(c) = comps.next() {
            if comps.peek().is_none() && !self.suffixes.is_empty() {
                for (i, _) in c.match_indices('.') {
                    let tail = c.get(i..).unwrap_or("");
                    match self.suffixes.get(&(state, segment_hash(tail.as_bytes()))) {
                        Some((suffix, tags)) if suffix == tail => {
                            tags.iter().for_each(|&t| found(t))
                        }
                        _ => {}
                    }
                }
            }
            // The entry holds the component's bytes and the program compares them, so a name
            // crafted to collide with a policy component is not mistaken for it.
            let edge = match self.edges.get(&(state, segment_hash(c.as_bytes()))) {
                Some((seg, to)) if seg == c => Some(*to),
                _ => None,
            };
            state = match edge.or_else(|| self.wildcards.get(&state).copied()) {
                Some(s) => s,
                None => return,
            };
        }
        if let Some(tags) = self.accepts.get(&state) {
            tags.iter().for_each(|&t| found(t));
        }
    }

    pub fn matches(&self, path: &str) -> Vec<u32> {
        let mut v = Vec::new();
        self.lookup(path, |t| v.push(t));
        v.sort_unstable();
        v.dedup();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(pats: &[&str]) -> (Vec<PathPattern>, PathIndex) {
        let ps: Vec<PathPattern> = pats
            .iter()
            .map(|p| PathPattern::parse(p).unwrap())
            .collect();
        let pairs: Vec<(&PathPattern, u32)> = ps.iter().zip(0u32..).collect();
        let m = build(&pairs).unwrap();
        (ps, PathIndex::new(&m))
    }

    #[test]
    fn agrees_with_the_pattern_semantics() {
        let pats = [
            "/etc/shadow",
            "/etc/**",
            "/usr/lib/*.so",
            "*.pem",
            "/proc/*/mem",
            "/home/**/.ssh/id_rsa",
            "/tmp/*",
            "/",
        ];
        let (ps, idx) = index(&pats);
        let paths = [
            "/",
            "/etc",
            "/etc/shadow",
            "/etc/ssl/x.pem",
            "/usr/lib/libc.so",
            "/usr/lib/x/libc.so",
            "/proc/1/mem",
            "/proc/1/maps",
            "/home/a/b/.ssh/id_rsa",
            "/home/.ssh/id_rsa",
            "/tmp/x",
            "/tmp/x/y",
            "/var/key.pem",
            "/var/.pem",
        ];
        for path in paths {
            let expected: Vec<u32> = ps
                .iter()
                .zip(0u32..)
                .filter(|(p, _)| p.matches(path))
                .map(|(_, i)| i)
                .collect();
            assert_eq!(idx.matches(path), expected, "path {path}");
        }
    }

    #[test]
    fn a_colliding_component_is_not_mistaken_for_the_policy_one() {
        let ps = [PathPattern::parse("/etc/shadow").unwrap()];
        let mut m = build(&[(&ps[0], 7)]).unwrap();
        // Pretend `evil` hashes like `etc`: the stored bytes still tell them apart.
        for e in &mut m.edges {
            if e.segment == "etc" {
                e.hash = segment_hash(b"evil");
            }
        }
        let idx = PathIndex::new(&m);
        assert!(idx.matches("/evil/shadow").is_empty());
    }

    #[test]
    fn long_paths_match() {
        let deep = format!("/data/{}", vec!["d"; 2000].join("/"));
        assert!(deep.len() > 4000);
        let (_, idx) = index(&["/data/**"]);
        assert_eq!(idx.matches(&deep), vec![0]);
    }
}
