//! `enforcer learn`: from the events a policy would have denied (audit mode) to the allow
//! rules that would have permitted them, as a policy file to review.
//!
//! - [`Learned::from_events`] aggregates events: exec paths, file paths per operation, network
//!   endpoints per operation and protocol, each with a count and the first and last time.
//! - [`render_rules`] writes them as allow rules (YAML, sorted, with comments); the file
//!   heuristic (when several files of one directory become `dir/**`) is [`GlobOptions`].
//! - [`template_file`] wraps the rules in a policy header to fill in; [`merge::into_policy`]
//!   inserts them into an existing policy file instead.
//!
//! Only events decided by a policy's default posture (rule `default`) become allow rules: an
//! `allow` never overrides a `deny` rule, so events of deny rules are listed as comments for
//! review. The recipe is docs/hardening.md.

pub mod merge;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;

use policy_lang::model::{FileOp, NetOp, Protocol};
use siem_export::event::{EventClass, Target, Verdict};
use siem_export::{SecurityEvent, Timestamp};

/// The rule name the daemon gives events decided by a default posture.
pub const DEFAULT_RULE: &str = "default";

/// `open(2)` flags the file events carry (`FileTarget::flags`).
const O_ACCMODE: u32 = 0o3;
const O_WRONLY: u32 = 0o1;
const O_RDWR: u32 = 0o2;
const O_APPEND: u32 = 0o2000;
/// Set in `f_flags` by the kernel's own opens for exec (the binary, its interpreter).
const FMODE_EXEC: u32 = 0x20;

/// When file paths become a directory glob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GlobOptions {
    /// A directory with at least this many distinct entries seen (files or subdirectories
    /// with files below them) becomes `dir/**`.
    pub min_entries: usize,
    /// Only directories at least this deep (`/srv/app` is 2) are globbed, so `/tmp/**` or
    /// `/etc/**` is never suggested: there the exact paths are listed.
    pub min_depth: usize,
}

impl Default for GlobOptions {
    fn default() -> Self {
        GlobOptions {
            min_entries: 3,
            min_depth: 2,
        }
    }
}

/// How often something was seen, and when first and last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub count: u64,
    pub first: Timestamp,
    pub last: Timestamp,
}

impl Seen {
    fn new(t: Timestamp) -> Self {
        Seen {
            count: 1,
            first: t,
            last: t,
        }
    }

    fn add(&mut self, t: Timestamp) {
        self.count += 1;
        self.first = self.first.min(t);
        self.last = self.last.max(t);
    }

    fn merge(&mut self, o: &Seen) {
        self.count += o.count;
        self.first = self.first.min(o.first);
        self.last = self.last.max(o.last);
    }

    /// `12 events, 2025-05-14T09:26:53Z .. 2025-05-14T10:00:00Z`
    fn comment(&self) -> String {
        let events = if self.count == 1 { "event" } else { "events" };
        let (first, last) = (short(self.first), short(self.last));
        if first == last {
            format!("{} {events}, {first}", self.count)
        } else {
            format!("{} {events}, {first} .. {last}", self.count)
        }
    }
}

fn bump<K: Ord>(map: &mut BTreeMap<K, Seen>, key: K, t: Timestamp) {
    map.entry(key)
        .and_modify(|s| s.add(t))
        .or_insert_with(|| Seen::new(t));
}

/// UTC to the second: `2025-05-14T09:26:53Z`.
fn short(t: Timestamp) -> String {
    let full = t.to_rfc3339(); // nine fractional digits and `Z`
    match full.find('.') {
        Some(dot) => format!("{}Z", &full[..dot]),
        None => full,
    }
}

/// A network endpoint of one operation: what an allow rule names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NetKey {
    pub op: NetOp,
    /// `None`: the kernel reported a protocol the language has no name for; the rule then
    /// names none (both).
    pub protocol: Option<Protocol>,
}

/// What the events of one policy show, aggregated.
#[derive(Debug, Clone, Default)]
pub struct Learned {
    /// Events considered (decided by the default posture or by a rule).
    pub events: u64,
    pub span: Option<(Timestamp, Timestamp)>,
    /// Executable paths (exec class).
    pub exec: BTreeMap<String, Seen>,
    /// File paths per operation.
    pub file: BTreeMap<FileOp, BTreeMap<String, Seen>>,
    /// Per operation and protocol: address -> port -> seen.
    pub network: BTreeMap<NetKey, BTreeMap<IpAddr, BTreeMap<u16, Seen>>>,
    /// Events a rule (not the default posture) decided: `rule -> seen`. An allow rule cannot
    /// change their verdict.
    pub by_rule: BTreeMap<String, Seen>,
    /// Events that cannot become a rule, per reason.
    pub skipped: BTreeMap<String, Seen>,
    /// cgroup paths (or `id N`) the events came from, for the selector.
    pub cgroups: BTreeMap<String, Seen>,
}

/// The verdicts `learn` reads: what an audit-mode policy would have denied (`audited`), and
/// what an enforcing one did deny.
pub const VERDICTS: &[Verdict] = &[Verdict::Audited, Verdict::Denied, Verdict::Killed];

impl Learned {
    /// Adds the events of `policy` among `events` (others are ignored).
    pub fn add_events<'a>(
        &mut self,
        policy: &str,
        events: impl IntoIterator<Item = &'a SecurityEvent>,
    ) {
        for ev in events {
            if ev.policy.as_deref() == Some(policy) && VERDICTS.contains(&ev.verdict) {
                self.add(ev);
            }
        }
    }

    /// Aggregates the events of `policy`.
    pub fn from_events<'a>(
        policy: &str,
        events: impl IntoIterator<Item = &'a SecurityEvent>,
    ) -> Learned {
        let mut l = Learned::default();
        l.add_events(policy, events);
        l
    }

    fn add(&mut self, ev: &SecurityEvent) {
        let t = ev.time;
        self.events += 1;
        self.span = Some(match self.span {
            Some((a, b)) => (a.min(t), b.max(t)),
            None => (t, t),
        });
        if let Some(cg) = &ev.cgroup {
            let name = match &cg.path {
                Some(p) => p.escaped().into_owned(),
                None => format!("id {}", cg.id),
            };
            bump(&mut self.cgroups, name, t);
        }
        match ev.rule.as_deref() {
            Some(DEFAULT_RULE) => {}
            Some(rule) => return bump(&mut self.by_rule, rule.to_string(), t),
            None => return bump(&mut self.skipped, "events without a rule".into(), t),
        }
        match (&ev.class, &ev.target) {
            (EventClass::Exec, Some(Target::Exec(e))) => match policy_path(e.path.as_bytes()) {
                Some(p) => bump(&mut self.exec, p, t),
                None => bump(
                    &mut self.skipped,
                    "exec of a path that is not absolute".into(),
                    t,
                ),
            },
            (EventClass::File, Some(Target::File(f))) => {
                if f.path_truncated {
                    return bump(
                        &mut self.skipped,
                        "paths the kernel could not resolve".into(),
                        t,
                    );
                }
                let Some(path) = policy_path(f.path.as_bytes()) else {
                    return bump(
                        &mut self.skipped,
                        "file paths that are not absolute".into(),
                        t,
                    );
                };
                let ops = file_ops(ev.operation.as_str(), f.operation.as_deref(), f.flags);
                if ops.is_empty() {
                    let op = f.operation.as_deref().unwrap_or(ev.operation.as_str());
                    return bump(
                        &mut self.skipped,
                        format!("file operation `{op}` with no policy equivalent"),
                        t,
                    );
                }
                for op in ops {
                    bump(self.file.entry(op).or_default(), path.clone(), t);
                }
            }
            (EventClass::Network, Some(Target::Network(n))) => {
                let Some(op) = net_op(&ev.operation) else {
                    return bump(
                        &mut self.skipped,
                        format!("network operation `{}`", ev.operation),
                        t,
                    );
                };
                let (addr, port) = match op {
                    NetOp::Connect | NetOp::Send => (n.dst_ip, n.dst_port),
                    NetOp::Bind | NetOp::Listen => (n.src_ip, n.src_port),
                };
                let Some(addr) = addr else {
                    return bump(
                        &mut self.skipped,
                        "network events without an address".into(),
                        t,
                    );
                };
                let protocol = n.protocol.and_then(|p| Protocol::from_name(p.as_str()));
                let key = NetKey { op, protocol };
                let by_port = self
                    .network
                    .entry(key)
                    .or_default()
                    .entry(policy_lang::net::canonical(addr))
                    .or_default();
                bump(by_port, port.unwrap_or(0), t);
            }
            (class, _) => bump(
                &mut self.skipped,
                format!(
                    "{} events (no allow rule is learned for them)",
                    class.as_str()
                ),
                t,
            ),
        }
    }

    /// True when no allow rule can be learned.
    pub fn has_no_rules(&self) -> bool {
        self.exec.is_empty() && self.file.is_empty() && self.network.is_empty()
    }
}

/// The policy file operations one file event stands for. The file-level operation the event
/// names wins; an `open` is read, write and append from its flags (an append is also a
/// write, as the kernel decides it), or `exec` for the kernel's own exec opens. A chmod that
/// set setuid or setgid is learned as `chmod` (rules spell those with `mode:`).
pub fn file_ops(operation: &str, file_operation: Option<&str>, flags: Option<u32>) -> Vec<FileOp> {
    let named = file_operation.unwrap_or(operation);
    // `chmod_setuid`, `chmod_setgid` or both (`chmod_setuid+chmod_setgid`).
    if named.starts_with("chmod_set") {
        return vec![FileOp::Chmod];
    }
    if let Some(op) = FileOp::from_name(named) {
        return vec![op];
    }
    let alias = match named {
        "unlink" | "rmdir" => Some(FileOp::Delete),
        "mkdir" | "mknod" => Some(FileOp::Create),
        "symlink" => Some(FileOp::Link),
        "mmap" => Some(FileOp::MmapExec),
        _ => None,
    };
    if let Some(op) = alias {
        return vec![op];
    }
    if named != "open" {
        return Vec::new();
    }
    let Some(flags) = flags else {
        return Vec::new();
    };
    if flags & FMODE_EXEC != 0 {
        return vec![FileOp::Exec];
    }
    match flags & O_ACCMODE {
        O_WRONLY if flags & O_APPEND != 0 => vec![FileOp::Write, FileOp::Append],
        O_WRONLY => vec![FileOp::Write],
        O_RDWR if flags & O_APPEND != 0 => vec![FileOp::Read, FileOp::Write, FileOp::Append],
        O_RDWR => vec![FileOp::Read, FileOp::Write],
        _ => vec![FileOp::Read],
    }
}

fn net_op(operation: &str) -> Option<NetOp> {
    match operation {
        "sendmsg" => Some(NetOp::Send),
        other => NetOp::from_name(other),
    }
}

/// A path as a policy pattern that matches it: absolute, and every component the language
/// cannot write literally (glob characters, non-UTF-8 bytes, control characters) becomes `*`
/// (that one component, any name). `None` for a path that is not absolute.
pub fn policy_path(bytes: &[u8]) -> Option<String> {
    let rest = bytes.strip_prefix(b"/")?;
    if rest.is_empty() {
        return Some("/".into());
    }
    let mut out = String::new();
    for comp in rest.split(|&b| b == b'/') {
        out.push('/');
        match std::str::from_utf8(comp) {
            Ok(s)
                if !s.is_empty()
                    && s != "."
                    && s != ".."
                    && !s.contains(['*', '?', '[', ']', '{', '}'])
                    && !s.chars().any(char::is_control) =>
            {
                out.push_str(s)
            }
            _ => out.push('*'),
        }
    }
    Some(out)
}

/// One learned path pattern, with what it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathEntry {
    pub pattern: String,
    pub seen: Seen,
    /// Distinct observed paths it covers.
    pub paths: usize,
}

/// Groups paths into patterns: a directory (at least `min_depth` deep) with at least
/// `min_entries` distinct entries below it becomes `dir/**`, checked from the root down so
/// the shallowest such directory wins; everything else stays an exact path. Sorted.
pub fn group_paths(paths: &BTreeMap<String, Seen>, opts: GlobOptions) -> Vec<PathEntry> {
    let mut out: Vec<PathEntry> = Vec::new();
    group_under("", 0, paths.iter().collect(), opts, &mut out);
    out.sort_by(|a, b| a.pattern.cmp(&b.pattern));
    out
}

/// `items` are paths below `dir` (`""` is the root), `depth` components deep.
fn group_under(
    dir: &str,
    depth: usize,
    items: Vec<(&String, &Seen)>,
    opts: GlobOptions,
    out: &mut Vec<PathEntry>,
) {
    // Children of `dir`: the next component of each path.
    let mut children: BTreeMap<&str, Vec<(&String, &Seen)>> = BTreeMap::new();
    for (path, seen) in items {
        let rest = &path[dir.len()..];
        let rest = rest.strip_prefix('/').unwrap_or(rest);
        if rest.is_empty() {
            out.push(PathEntry {
                pattern: path.clone(),
                seen: *seen,
                paths: 1,
            });
            continue;
        }
        let child = rest.split('/').next().unwrap_or(rest);
        children.entry(child).or_default().push((path, seen));
    }
    if depth >= opts.min_depth && children.len() >= opts.min_entries {
        let mut seen: Option<Seen> = None;
        let mut paths = 0;
        for (_, s) in children.values().flatten() {
            paths += 1;
            match &mut seen {
                Some(acc) => acc.merge(s),
                None => seen = Some(**s),
            }
        }
        if let Some(seen) = seen {
            out.push(PathEntry {
                pattern: format!("{dir}/**"),
                seen,
                paths,
            });
        }
        return;
    }
    for (child, items) in children {
        group_under(&format!("{dir}/{child}"), depth + 1, items, opts, out);
    }
}

/// `1 binary`, `2 binaries`.
fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A YAML scalar for a path, address or name: plain when that is unambiguous, else
/// double-quoted (JSON string syntax is valid YAML).
fn scalar(s: &str) -> String {
    let plain = (s.starts_with('/')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_.-+@,~=%*".contains(c)))
        || (s.starts_with(|c: char| c.is_ascii_digit())
            && s.chars()
                .all(|c| c.is_ascii_digit() || c == '.' || c == '/'));
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
    }
}

/// The names a learned rule may not take (the policy's existing rules).
fn unique_name(base: String, taken: &mut BTreeSet<String>) -> String {
    let mut name = base.clone();
    let mut n = 2;
    while taken.contains(&name) {
        name = format!("{base}-{n}");
        n += 1;
    }
    taken.insert(name.clone());
    name
}

fn cidr(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => format!("{a}/32"),
        IpAddr::V6(a) => format!("{a}/128"),
    }
}

/// The learned allow rules as YAML list items (`- name: ...`), each line indented by `indent`
/// spaces, and a leading comment block for what could not become a rule. Rule names avoid
/// `taken`. Empty when there is nothing to allow.
pub fn render_rules(
    l: &Learned,
    opts: GlobOptions,
    indent: usize,
    taken: &BTreeSet<String>,
) -> String {
    let pad = " ".repeat(indent);
    let mut taken = taken.clone();
    let mut out = String::new();
    let mut line = |text: &str| {
        let _ = writeln!(out, "{pad}{text}");
    };

    if !l.exec.is_empty() {
        let total = l.exec.values().fold(None::<Seen>, |acc, s| {
            Some(acc.map_or(*s, |mut a| {
                a.merge(s);
                a
            }))
        });
        let name = unique_name("learned-exec".into(), &mut taken);
        if let Some(t) = total {
            line(&format!(
                "# exec: {}, {}",
                plural(l.exec.len(), "binary", "binaries"),
                t.comment()
            ));
        }
        line(&format!("- name: {name}"));
        line("  message: learned from audit events");
        line("  action: allow");
        line("  exec:");
        line("    path:");
        for (path, seen) in &l.exec {
            line(&format!("      - {}  # {}", scalar(path), seen.comment()));
        }
    }

    for (op, paths) in &l.file {
        let entries = group_paths(paths, opts);
        let mut total: Option<Seen> = None;
        for e in &entries {
            match &mut total {
                Some(t) => t.merge(&e.seen),
                None => total = Some(e.seen),
            }
        }
        let name = unique_name(
            format!("learned-file-{}", op.name().replace('_', "-")),
            &mut taken,
        );
        if let Some(t) = total {
            line(&format!(
                "# file {}: {} as {}, {}",
                op.name(),
                plural(paths.len(), "path", "paths"),
                plural(entries.len(), "pattern", "patterns"),
                t.comment()
            ));
        }
        line(&format!("- name: {name}"));
        line("  message: learned from audit events");
        line("  action: allow");
        line("  file:");
        line(&format!("    ops: [{}]", op.name()));
        line("    path:");
        for e in &entries {
            let covers = if e.paths > 1 {
                format!("{} paths, ", e.paths)
            } else {
                String::new()
            };
            line(&format!(
                "      - {}  # {covers}{}",
                scalar(&e.pattern),
                e.seen.comment()
            ));
        }
    }

    for (key, addrs) in &l.network {
        // Addresses with the same ports share a rule; different port sets get their own, so
        // no address is allowed a port it was not seen on.
        let mut groups: BTreeMap<Vec<u16>, Vec<(IpAddr, Seen)>> = BTreeMap::new();
        for (addr, ports) in addrs {
            let list: Vec<u16> = ports.keys().copied().collect();
            let mut seen: Option<Seen> = None;
            for s in ports.values() {
                match &mut seen {
                    Some(a) => a.merge(s),
                    None => seen = Some(*s),
                }
            }
            if let Some(seen) = seen {
                groups.entry(list).or_default().push((*addr, seen));
            }
        }
        let proto = key.protocol.map_or("any", |p| p.name());
        for (ports, addrs) in &groups {
            let name = unique_name(format!("learned-{}-{proto}", key.op.name()), &mut taken);
            let count: u64 = addrs.iter().map(|(_, s)| s.count).sum();
            line(&format!(
                "# network {} {proto}: {}, {}, {}",
                key.op.name(),
                plural(addrs.len(), "address", "addresses"),
                plural(ports.len(), "port", "ports"),
                plural(
                    usize::try_from(count).unwrap_or(usize::MAX),
                    "event",
                    "events"
                ),
            ));
            line(&format!("- name: {name}"));
            line("  message: learned from audit events");
            line("  action: allow");
            line("  network:");
            line(&format!("    ops: [{}]", key.op.name()));
            if let Some(p) = key.protocol {
                line(&format!("    protocol: {}", p.name()));
            }
            line("    cidr:");
            for (addr, seen) in addrs {
                line(&format!(
                    "      - {}  # {}",
                    scalar(&cidr(*addr)),
                    seen.comment()
                ));
            }
            let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
            line(&format!("    ports: [{}]", ports.join(", ")));
        }
    }
    out
}

/// Comment lines (each `# ...`, indented) for what did not become an allow rule.
pub fn render_review(l: &Learned, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut out = String::new();
    for (rule, seen) in &l.by_rule {
        let _ = writeln!(
            out,
            "{pad}# review: rule `{rule}` decided {}; an allow rule cannot override a deny \
             rule: narrow or remove that rule if this behaviour is expected",
            seen.comment()
        );
    }
    for (why, seen) in &l.skipped {
        let _ = writeln!(out, "{pad}# not learned: {why}: {}", seen.comment());
    }
    out
}

/// A complete policy file: a header to fill in (selector, mode, defaults) and the learned
/// rules. `mode: audit`, so loading it records what it would deny until it is switched to
/// `enforce`; `defaults` deny the classes events were learned for.
pub fn template_file(policy: &str, l: &Learned, opts: GlobOptions, source: &str) -> String {
    let mut out = String::new();
    let span = l
        .span
        .map(|(a, b)| format!("{} .. {}", short(a), short(b)))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "# Learned by `enforcer learn --policy {policy}` from {} events ({span}) in {source}.",
        l.events
    );
    out.push_str(
        "# Review every rule, fill in `select`, keep `mode: audit` until the events are quiet,\n\
         # then switch to `mode: enforce` (docs/hardening.md). This header does not know the\n\
         # original policy's other rules: `--from-policy FILE` merges into it instead.\n",
    );
    out.push_str("policies:\n");
    let _ = writeln!(out, "  - name: {}", scalar_name(policy));
    out.push_str("    description: allowlist learned from audit events\n");
    out.push_str("    select:\n");
    out.push_str("      # The workload to harden. The events came from these cgroups:\n");
    for (cg, seen) in &l.cgroups {
        let _ = writeln!(out, "      #   {cg} ({})", seen.comment());
    }
    let paths: Vec<&String> = l.cgroups.keys().filter(|c| c.starts_with('/')).collect();
    if paths.is_empty() {
        out.push_str("      cgroups: [/CHANGE-ME]\n");
    } else {
        out.push_str("      cgroups:\n");
        for p in paths {
            let _ = writeln!(out, "        - {}", scalar(p));
        }
    }
    out.push_str("    mode: audit\n");
    let mut classes = Vec::new();
    if !l.exec.is_empty() {
        classes.push("exec: deny");
    }
    if !l.file.is_empty() {
        classes.push("file: deny");
    }
    if !l.network.is_empty() {
        classes.push("network: deny");
    }
    if !classes.is_empty() {
        let _ = writeln!(out, "    defaults: {{{}}}", classes.join(", "));
    }
    let review = render_review(l, 6);
    let rules = render_rules(l, opts, 6, &BTreeSet::new());
    if !rules.is_empty() || !review.is_empty() {
        out.push_str("    rules:\n");
        out.push_str(&review);
        out.push_str(&rules);
    }
    out
}

/// A policy name as a YAML scalar.
fn scalar_name(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
    {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
    }
}

#[cfg(test)]
mod tests;
