//! Map sizes and estimated kernel memory of a plan.

use crate::matcher::PathMatcher;
use crate::plan::{MapSize, Maps};

/// Per-element overhead of a BPF hash map element (`htab_elem` header, rounded).
const HASH_OVERHEAD: u64 = 48;
/// Per-node overhead of an LPM trie node.
const LPM_OVERHEAD: u64 = 40;

fn round8(x: u32) -> u64 {
    u64::from(x).div_ceil(8) * 8
}

fn size(map: &str, kind: &str, entries: usize, key_size: u32, value_size: u32) -> MapSize {
    let entries = entries as u64;
    let per = match kind {
        "array" => round8(value_size),
        "lpm_trie" => round8(key_size) + round8(value_size) + LPM_OVERHEAD,
        _ => round8(key_size) + round8(value_size) + HASH_OVERHEAD,
    };
    MapSize {
        map: map.to_owned(),
        kind: kind.to_owned(),
        entries,
        key_size,
        value_size,
        bytes: entries * per,
    }
}

fn matcher(name: &str, m: &PathMatcher, out: &mut Vec<MapSize>) -> usize {
    // (state u32, pad, hash u64) -> (next state u32, component bytes up to NAME_MAX)
    out.push(size(
        &format!("{name}_edges"),
        "hash",
        m.edges.len(),
        16,
        4 + 256,
    ));
    out.push(size(
        &format!("{name}_wildcards"),
        "array",
        m.states as usize + 1,
        4,
        4,
    ));
    // state -> (offset, length) into `rule_lists`
    out.push(size(
        &format!("{name}_accepts"),
        "hash",
        m.accepts.len(),
        4,
        8,
    ));
    out.push(size(
        &format!("{name}_suffixes"),
        "hash",
        m.suffixes.len(),
        16,
        8,
    ));
    m.accepts.iter().map(|a| a.tags.len()).sum::<usize>()
        + m.suffixes.iter().map(|s| s.tags.len()).sum::<usize>()
}

/// One entry per BPF map the loader creates, with its size.
pub fn sizes(maps: &Maps, rules: usize, policies: usize) -> Vec<MapSize> {
    let mut out = Vec::new();
    out.push(size("policies", "array", policies, 4, 16));
    out.push(size("rules", "array", rules, 4, 64));
    let mut list_len = 0;
    list_len += matcher("file", &maps.file_paths, &mut out);
    list_len += matcher("exec", &maps.exec_paths, &mut out);
    list_len += matcher("binaries", &maps.binaries, &mut out);
    list_len += matcher("cgroups", &maps.cgroups, &mut out);
    out.push(size(
        "cgroup_globs",
        "array",
        maps.cgroup_globs.len(),
        4,
        800,
    ));
    list_len += maps.net_v4.iter().map(|e| e.rules.len()).sum::<usize>();
    list_len += maps.net_v6.iter().map(|e| e.rules.len()).sum::<usize>();
    out.push(size("net_v4", "lpm_trie", maps.net_v4.len(), 8, 8));
    out.push(size("net_v6", "lpm_trie", maps.net_v6.len(), 20, 8));
    list_len += maps.kernel_ops.iter().map(|e| e.rules.len()).sum::<usize>();
    list_len += maps
        .capabilities
        .iter()
        .map(|e| e.rules.len())
        .sum::<usize>();
    list_len += maps.syscalls.iter().map(|e| e.rules.len()).sum::<usize>();
    out.push(size("kernel_ops", "array", 16, 4, 8));
    out.push(size("capabilities", "array", 64, 4, 8));
    out.push(size("syscalls", "hash", maps.syscalls.len(), 4, 8));
    out.push(size("rule_lists", "array", list_len, 4, 4));
    out
}
