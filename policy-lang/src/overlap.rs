//! Rules that can never change a verdict (shadowed), rules that contradict each other, and
//! rules that have no effect under the policy's defaults.

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::model::*;
use crate::pattern::PathPattern;
use std::collections::HashMap;

/// Past this many pairwise comparisons per policy the analysis stops, with a warning.
const MAX_PAIR_CHECKS: usize = 20_000_000;

fn texts(ps: &Patterns) -> Vec<&str> {
    let mut v: Vec<&str> = ps.iter().map(|p| p.value.text.as_str()).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Every pattern in `b` is covered by some pattern in `a` (empty `a` means "any").
fn patterns_cover(a: &Patterns, b: &Patterns) -> bool {
    a.is_empty()
        || (!b.is_empty()
            && b.iter()
                .all(|pb| a.iter().any(|pa| pa.value.covers(&pb.value))))
}

fn same_patterns(a: &Patterns, b: &Patterns) -> bool {
    texts(a) == texts(b)
}

/// `a` restricts binaries no more than `b` does.
fn binaries_cover(a: &BinaryFilter, b: &BinaryFilter) -> bool {
    let from_ok = a.from.is_empty() || (!b.from.is_empty() && patterns_cover(&a.from, &b.from));
    let except_ok = a.except_from.is_empty() || same_patterns(&a.except_from, &b.except_from);
    from_ok && except_ok
}

fn subset(a: u32, b: u32) -> bool {
    a & b == a
}

fn sorted<T: Ord + Clone>(v: &[T]) -> Vec<T> {
    let mut v = v.to_vec();
    v.sort();
    v.dedup();
    v
}

fn contains_all<T: Ord + Clone>(a: &[T], b: &[T]) -> bool {
    let a = sorted(a);
    b.iter().all(|x| a.binary_search(x).is_ok())
}

/// Does `a` match every operation `b` matches? Conservative: false when unsure.
pub fn covers(a: &Match, b: &Match) -> bool {
    match (a, b) {
        (Match::File(a), Match::File(b)) => {
            subset(b.ops, a.ops)
                && patterns_cover(&a.paths, &b.paths)
                && binaries_cover(&a.binaries, &b.binaries)
        }
        (Match::Exec(a), Match::Exec(b)) => {
            patterns_cover(&a.paths, &b.paths)
                && patterns_cover(&a.parent, &b.parent)
                && patterns_cover(&a.ancestor, &b.ancestor)
                && (a.uids.is_empty() || (!b.uids.is_empty() && contains_all(&a.uids, &b.uids)))
        }
        (Match::Network(a), Match::Network(b)) => {
            subset(b.ops, a.ops)
                && subset(b.families, a.families)
                && subset(b.protocols, a.protocols)
                && (a.cidrs.is_empty()
                    || (!b.cidrs.is_empty()
                        && b.cidrs
                            .iter()
                            .all(|cb| a.cidrs.iter().any(|ca| ca.value.covers(&cb.value)))))
                && (a.ports.is_empty()
                    || (!b.ports.is_empty()
                        && b.ports
                            .iter()
                            .all(|pb| a.ports.iter().any(|pa| pa.lo <= pb.lo && pb.hi <= pa.hi))))
                && binaries_cover(&a.binaries, &b.binaries)
        }
        (Match::Kernel(a), Match::Kernel(b)) => {
            contains_all(&a.ops, &b.ops)
                && contains_all(&a.capabilities, &b.capabilities)
                && contains_all(&a.syscalls, &b.syscalls)
                && binaries_cover(&a.binaries, &b.binaries)
        }
        _ => false,
    }
}

/// Rules with wildcards (or no path at all) may cover anything; exact rules only rules
/// that share one of their paths. This keeps the check near-linear for big allowlists.
fn exact_paths(m: &Match) -> Option<Vec<&PathPattern>> {
    let ps = match m {
        Match::File(f) => &f.paths,
        Match::Exec(e) => &e.paths,
        _ => return None,
    };
    ps.iter()
        .all(|p| p.value.is_exact())
        .then(|| ps.iter().map(|p| &p.value).collect())
}

fn rank(a: Action) -> u8 {
    match a {
        Action::Allow => 0,
        Action::Alert => 1,
        Action::Audit => 2,
        Action::Deny => 3,
        Action::Kill => 4,
    }
}

pub fn check_policy(p: &Policy, diags: &mut Diagnostics) {
    for r in &p.rules {
        if let (Action::Allow, Some(class)) = (r.action, r.matcher.class()) {
            let no_default = matches!(&r.matcher, Match::Kernel(k) if k.ops.is_empty());
            if p.defaults.get(class) == Posture::Allow || no_default {
                let d = Diagnostic::warning(
                    "W0403",
                    r.action_span,
                    format!("`allow` rule `{}` has no effect: nothing here is denied by default, and deny beats allow", r.name),
                );
                let d = if no_default {
                    d.with_note(
                        "the `kernel` default applies to `ops`, not to capabilities or syscalls",
                    )
                } else {
                    d.with_help(format!(
                        "set `defaults: {{{}: deny}}` to make this policy an allowlist",
                        class.name()
                    ))
                };
                diags.push(d);
            }
        }
    }
    let mut by_path: HashMap<(&str, Option<Class>), Vec<usize>> = HashMap::new();
    let mut broad: Vec<usize> = Vec::new();
    let mut checks = 0usize;
    for (j, b) in p.rules.iter().enumerate() {
        if b.matcher.class().is_none() {
            continue;
        }
        let exact_b = exact_paths(&b.matcher);
        let mut candidates: Vec<usize> = broad.clone();
        if let Some(paths) = &exact_b {
            for path in paths {
                if let Some(v) = by_path.get(&(path.text.as_str(), b.matcher.class())) {
                    candidates.extend(v);
                }
            }
            candidates.sort_unstable();
            candidates.dedup();
        }
        checks += candidates.len();
        if checks > MAX_PAIR_CHECKS {
            diags.push(Diagnostic::warning(
                "W0404",
                p.span,
                format!(
                    "policy `{}` has too many wildcard rules to check for shadowed rules",
                    p.name
                ),
            ));
            return;
        }
        for i in candidates {
            let a = &p.rules[i];
            if !covers(&a.matcher, &b.matcher) {
                continue;
            }
            if rank(a.action) >= rank(b.action) {
                diags.push(
                    Diagnostic::warning(
                        "W0401",
                        b.span,
                        format!(
                            "rule `{}` is shadowed by rule `{}` and never changes a verdict",
                            b.name, a.name
                        ),
                    )
                    .with_note(format!(
                        "`{}` (line {}) matches everything this rule matches, with `{}`",
                        a.name,
                        a.span.line,
                        a.action.name()
                    )),
                );
            } else if covers(&b.matcher, &a.matcher) {
                diags.push(
                    Diagnostic::warning(
                        "W0402",
                        b.span,
                        format!(
                            "rules `{}` and `{}` match the same operations with `{}` and `{}`; `{}` wins",
                            a.name, b.name, a.action.name(), b.action.name(), b.action.name()
                        ),
                    )
                    .with_help("remove one of them; file order never changes a verdict"),
                );
            }
            break;
        }
        match exact_b {
            Some(paths) => {
                for path in paths {
                    by_path
                        .entry((path.text.as_str(), b.matcher.class()))
                        .or_default()
                        .push(j);
                }
            }
            None => broad.push(j),
        }
    }
}
