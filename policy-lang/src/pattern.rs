//! Path patterns: the syntax, which of them the kernel can evaluate, and a user-space glob
//! matcher for the rest (cgroup selectors and explicitly downgraded rules).

use serde::{Deserialize, Serialize};

/// Longest path the kernel resolves (PATH_MAX).
pub const PATH_MAX: usize = 4096;
/// Longest single path component (NAME_MAX).
pub const NAME_MAX: usize = 255;

/// One `/`-separated piece of a pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "text")]
pub enum Segment {
    /// Matches exactly this component.
    Literal(String),
    /// `*`: any single component.
    Star,
    /// `**`: zero or more components.
    AnyDepth,
    /// `*.ext` as the last component: any name ending in `.ext` (kept with its dot).
    Suffix(String),
    /// Anything else (`?`, `[...]`, `*` inside a name): only user space can evaluate it.
    Glob(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PathPattern {
    pub text: String,
    pub segments: Vec<Segment>,
}

/// Why a pattern was rejected. The message is shown to the user as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError {
    pub message: String,
    pub help: Option<String>,
}

fn err(message: impl Into<String>, help: Option<&str>) -> PatternError {
    PatternError {
        message: message.into(),
        help: help.map(str::to_owned),
    }
}

fn has_glob_chars(s: &str) -> bool {
    s.contains(['*', '?', '[', ']', '{', '}'])
}

impl PathPattern {
    pub fn parse(text: &str) -> Result<PathPattern, PatternError> {
        if text.is_empty() {
            return Err(err("empty path pattern", None));
        }
        if text.len() > PATH_MAX {
            return Err(err(
                format!(
                    "path pattern is {} bytes, longer than PATH_MAX ({PATH_MAX})",
                    text.len()
                ),
                None,
            ));
        }
        let mut body = if let Some(rest) = text.strip_prefix('/') {
            rest.to_owned()
        } else if text.starts_with('*') {
            // `*.so` and `**/id_rsa` mean "at any depth".
            format!("**/{text}")
        } else {
            return Err(err(
                format!("path pattern `{text}` is not absolute"),
                Some(
                    "paths are matched after the kernel resolves them; start the pattern with `/`",
                ),
            ));
        };
        if body.ends_with('/') {
            // `/etc/` is the directory and everything below it.
            body.push_str("**");
        }
        let mut segments: Vec<Segment> = Vec::new();
        let parts: Vec<&str> = if body.is_empty() {
            Vec::new()
        } else {
            body.split('/').collect()
        };
        let count = parts.len();
        for (i, part) in parts.into_iter().enumerate() {
            let last = i + 1 == count;
            let seg =
                match part {
                    "" => {
                        return Err(err(
                            format!("path pattern `{text}` has an empty component (`//`)"),
                            Some("resolved paths never contain `//`; remove the extra `/`"),
                        ))
                    }
                    "." | ".." => return Err(err(
                        format!("path pattern `{text}` contains `{part}`"),
                        Some("the kernel matches resolved paths, which never contain `.` or `..`"),
                    )),
                    "**" => Segment::AnyDepth,
                    "*" => Segment::Star,
                    p if p.len() > NAME_MAX => {
                        return Err(err(
                            format!(
                                "path component is {} bytes, longer than NAME_MAX ({NAME_MAX})",
                                p.len()
                            ),
                            None,
                        ))
                    }
                    p if !has_glob_chars(p) => Segment::Literal(p.to_owned()),
                    p => match p.strip_prefix('*') {
                        Some(ext) if last && ext.starts_with('.') && !has_glob_chars(ext) => {
                            Segment::Suffix(ext.to_owned())
                        }
                        _ => Segment::Glob(p.to_owned()),
                    },
                };
            // `**/**` is the same as `**`.
            if seg == Segment::AnyDepth && segments.last() == Some(&Segment::AnyDepth) {
                continue;
            }
            segments.push(seg);
        }
        Ok(PathPattern {
            text: text.to_owned(),
            segments,
        })
    }

    /// True when the kernel's segment matcher can evaluate this pattern exactly.
    pub fn kernel_evaluable(&self) -> bool {
        !self.segments.iter().any(|s| matches!(s, Segment::Glob(_)))
    }

    /// A pattern of whole names ending in a name with one `*` inside it
    /// (`/system.slice/docker-*.scope`): the parent path (`/system.slice`, empty for `/`), and
    /// the text before and after the `*`. The kernel evaluates this form for new cgroups.
    pub fn name_glob(&self) -> Option<(String, &str, &str)> {
        let (Segment::Glob(last), parents) = self.segments.split_last()? else {
            return None;
        };
        if last.matches('*').count() != 1 || last.contains(['?', '[', ']', '{', '}', '\\']) {
            return None;
        }
        let mut parent = String::new();
        for s in parents {
            let Segment::Literal(name) = s else {
                return None;
            };
            parent.push('/');
            parent.push_str(name);
        }
        let (prefix, suffix) = last.split_once('*')?;
        Some((parent, prefix, suffix))
    }

    /// True for a pattern without any wildcard (one exact path).
    pub fn is_exact(&self) -> bool {
        self.segments
            .iter()
            .all(|s| matches!(s, Segment::Literal(_)))
    }

    /// Matches a resolved absolute path. Used for user-space evaluation only; the kernel
    /// plan has its own matcher (see `matcher.rs`), and tests check that the two agree.
    ///
    /// A set-of-positions simulation: linear in path length times pattern length, however
    /// many `**` the pattern has, and allocation-free for patterns under 128 components.
    pub fn matches(&self, path: &str) -> bool {
        if self.segments.len() < 128 {
            simulate::<u128>(&self.segments, path)
        } else {
            simulate::<Vec<bool>>(&self.segments, path)
        }
    }

    /// Conservatively: does every path matched by `other` also match `self`?
    pub fn covers(&self, other: &PathPattern) -> bool {
        if self.segments == other.segments {
            return true;
        }
        if other.is_exact() {
            return self.matches(&other.text);
        }
        // `/a/**` covers any pattern that starts with the literal components `/a/`.
        if let Some((Segment::AnyDepth, prefix)) = self.segments.split_last() {
            if prefix.iter().all(|s| matches!(s, Segment::Literal(_))) {
                return other.segments.len() >= prefix.len()
                    && other.segments.iter().zip(prefix).all(|(a, b)| a == b);
            }
        }
        false
    }
}

/// The components of a resolved path (`/a/b` -> `a`, `b`).
pub fn components(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|c| !c.is_empty())
}

/// A set of pattern positions.
trait Positions: Clone {
    fn empty(len: usize) -> Self;
    fn has(&self, i: usize) -> bool;
    fn add(&mut self, i: usize);
    fn none(&self) -> bool;
}

impl Positions for u128 {
    fn empty(_: usize) -> Self {
        0
    }
    fn has(&self, i: usize) -> bool {
        self & (1u128 << i) != 0
    }
    fn add(&mut self, i: usize) {
        *self |= 1u128 << i;
    }
    fn none(&self) -> bool {
        *self == 0
    }
}

impl Positions for Vec<bool> {
    fn empty(len: usize) -> Self {
        vec![false; len + 1]
    }
    fn has(&self, i: usize) -> bool {
        self.get(i).copied().unwrap_or(false)
    }
    fn add(&mut self, i: usize) {
        if let Some(b) = self.get_mut(i) {
            *b = true;
        }
    }
    fn none(&self) -> bool {
        !self.iter().any(|b| *b)
    }
}

/// Adds the positions reachable by letting `**` match nothing.
fn close<P: Positions>(segs: &[Segment], p: &mut P) {
    for (i, s) in segs.iter().enumerate() {
        if p.has(i) && *s == Segment::AnyDepth {
            p.add(i + 1);
        }
    }
}

fn simulate<P: Positions>(segs: &[Segment], path: &str) -> bool {
    let n = segs.len();
    let mut cur = P::empty(n);
    cur.add(0);
    close(segs, &mut cur);
    for comp in components(path) {
        let mut next = P::empty(n);
        for (i, s) in segs.iter().enumerate() {
            if !cur.has(i) {
                continue;
            }
            match s {
                Segment::AnyDepth => next.add(i),
                s if segment_matches(s, comp) => next.add(i + 1),
                _ => {}
            }
        }
        close(segs, &mut next);
        if next.none() {
            return false;
        }
        cur = next;
    }
    cur.has(n)
}

fn segment_matches(seg: &Segment, comp: &str) -> bool {
    match seg {
        Segment::Literal(l) => l == comp,
        Segment::Star => true,
        Segment::AnyDepth => true,
        Segment::Suffix(ext) => comp.ends_with(ext.as_str()),
        Segment::Glob(g) => glob_component(g.as_bytes(), comp.as_bytes()),
    }
}

/// Shell-style matching of one component: `*`, `?`, `[abc]`, `[a-z]`, `[!a]`.
pub fn glob_component(pat: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        if p < pat.len() {
            match pat[p] {
                b'*' => {
                    star = Some((p, i));
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    i += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = class_match(pat, p, s[i]) {
                        if matched {
                            p = next;
                            i += 1;
                            continue;
                        }
                    } else if s[i] == b'[' {
                        p += 1;
                        i += 1;
                        continue;
                    }
                }
                c if c == s[i] => {
                    p += 1;
                    i += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, si)) => {
                p = sp + 1;
                i = si + 1;
                star = Some((sp, si + 1));
            }
            None => return false,
        }
    }
    pat[p..].iter().all(|&c| c == b'*')
}

/// Matches `c` against the class starting at `pat[start] == b'['`; returns (matched, index
/// after the class), or None when the class is not closed.
fn class_match(pat: &[u8], start: usize, c: u8) -> Option<(bool, usize)> {
    let mut j = start + 1;
    let negate = matches!(pat.get(j), Some(b'!') | Some(b'^'));
    if negate {
        j += 1;
    }
    let mut matched = false;
    let mut first = true;
    while j < pat.len() {
        if pat[j] == b']' && !first {
            return Some((matched != negate, j + 1));
        }
        first = false;
        if j + 2 < pat.len() && pat[j + 1] == b'-' && pat[j + 2] != b']' {
            if pat[j] <= c && c <= pat[j + 2] {
                matched = true;
            }
            j += 3;
        } else {
            if pat[j] == c {
                matched = true;
            }
            j += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathPattern {
        PathPattern::parse(s).unwrap()
    }

    #[test]
    fn classifies_patterns() {
        assert!(p("/etc/shadow").is_exact());
        assert_eq!(p("/etc/").segments, p("/etc/**").segments);
        assert_eq!(
            p("*.so").segments,
            vec![Segment::AnyDepth, Segment::Suffix(".so".into())]
        );
        assert!(p("/proc/*/mem").kernel_evaluable());
        assert!(!p("/home/*/.ssh/id_*").kernel_evaluable());
        assert!(PathPattern::parse("etc/passwd").is_err());
        assert!(PathPattern::parse("/etc/../shadow").is_err());
        assert!(PathPattern::parse("/etc//shadow").is_err());
        assert!(PathPattern::parse(&format!("/{}", "a".repeat(300))).is_err());
    }

    #[test]
    fn matches_paths() {
        assert!(p("/etc/**").matches("/etc"));
        assert!(p("/etc/**").matches("/etc/ssh/sshd_config"));
        assert!(!p("/etc/**").matches("/etcetera"));
        assert!(p("*.so").matches("/usr/lib/libc.so"));
        assert!(p("/usr/lib/*.so").matches("/usr/lib/libc.so"));
        assert!(!p("/usr/lib/*.so").matches("/usr/lib/x/libc.so"));
        assert!(p("/proc/*/mem").matches("/proc/1/mem"));
        assert!(p("/home/*/.ssh/id_*").matches("/home/bob/.ssh/id_rsa"));
        assert!(p("/dev/tty[0-9]").matches("/dev/tty3"));
        assert!(!p("/dev/tty[!0-9]").matches("/dev/tty3"));
    }

    #[test]
    fn long_patterns_use_the_unbounded_set() {
        let pat = format!("/{}/**/x", vec!["d"; 200].join("/"));
        let path = format!("/{}/a/b/x", vec!["d"; 200].join("/"));
        assert!(p(&pat).matches(&path));
        assert!(!p(&pat).matches(&format!("{path}/y")));
    }

    #[test]
    fn coverage() {
        assert!(p("/etc/**").covers(&p("/etc/shadow")));
        assert!(p("/etc/**").covers(&p("/etc/ssh/*")));
        assert!(!p("/etc/shadow").covers(&p("/etc/**")));
    }
}
