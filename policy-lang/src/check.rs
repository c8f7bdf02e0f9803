//! The checker: walks the spanned YAML tree, validates every key and value, resolves lists
//! and macros across files, and produces a [`PolicySet`] or every error at once.

use crate::capabilities;
use crate::condition::{self, Expr};
use crate::diagnostic::{suggestion, Diagnostic, Diagnostics, SourceMap, Span};
use crate::eval::Verdict;
use crate::event::{KernelEvent, Operation, OwnedEvent, Pod, Process, MEMFD_EXEC_PATH};
use crate::model::*;
use crate::net::{parse_ports, Cidr};
use crate::pattern::PathPattern;
use crate::syscalls;
use crate::yaml::{self, Node, NodeKind};
use std::collections::{BTreeMap, HashMap};

/// Most rules accepted in one policy set (the kernel maps are sized from the plan).
pub const MAX_RULES: usize = 100_000;

const FILE_KEYS: &[&str] = &["policies", "lists", "macros", "tests"];
const POLICY_KEYS: &[&str] = &[
    "name",
    "description",
    "select",
    "mode",
    "defaults",
    "allow_downgrade",
    "rules",
];
const SELECT_KEYS: &[&str] = &["host", "cgroups", "namespaces", "labels", "exclude"];
const EXCLUDE_KEYS: &[&str] = &["cgroups", "namespaces", "labels"];
const RULE_KEYS: &[&str] = &[
    "name",
    "message",
    "severity",
    "tags",
    "action",
    "allow_downgrade",
    "exec",
    "file",
    "network",
    "kernel",
    "condition",
];
const MATCH_KEYS: &[&str] = &["exec", "file", "network", "kernel", "condition"];
const EXEC_KEYS: &[&str] = &["path", "parent", "ancestor", "uid"];
const FILE_MATCH_KEYS: &[&str] = &["path", "ops", "mode", "from", "except_from"];
const NET_KEYS: &[&str] = &[
    "ops",
    "family",
    "protocol",
    "cidr",
    "ports",
    "from",
    "except_from",
];
const KERNEL_KEYS: &[&str] = &["ops", "capabilities", "syscalls", "from", "except_from"];
const TEST_KEYS: &[&str] = &[
    "name",
    "process",
    "cgroup",
    "container_id",
    "pod",
    "exec",
    "file",
    "network",
    "kernel",
    "expect",
];

/// A mapping node with its keys already validated.
struct Fields<'n> {
    node: &'n Node,
    items: &'n [(Node, Node)],
}

impl<'n> Fields<'n> {
    fn get(&self, key: &str) -> Option<&'n Node> {
        self.items
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    fn key_span(&self, key: &str) -> Option<Span> {
        self.items
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(k, _)| k.span)
    }
}

type Macros = BTreeMap<String, (String, Span, bool)>;
type Lists = BTreeMap<String, Vec<(String, Span)>>;

struct Checker {
    /// File paths by file id, to say where a name was first defined.
    paths: Vec<String>,
    diags: Diagnostics,
    lists: Lists,
    list_spans: BTreeMap<String, Span>,
    macros: Macros,
}

/// Checks a set of files (already read) as one policy set.
pub fn check(sources: SourceMap) -> Result<PolicySet, (SourceMap, Diagnostics)> {
    let mut c = Checker {
        paths: sources.files.iter().map(|f| f.path.clone()).collect(),
        diags: Diagnostics::default(),
        lists: BTreeMap::new(),
        list_spans: BTreeMap::new(),
        macros: BTreeMap::new(),
    };
    let mut roots = Vec::new();
    for (i, f) in sources.files.iter().enumerate() {
        let file = u32::try_from(i).unwrap_or(u32::MAX);
        match yaml::parse(file, &f.text) {
            Ok(n) => roots.push(n),
            Err(d) => c.diags.extend(d),
        }
    }
    // Lists and macros first: they are shared by every file of the set.
    let mut files = Vec::new();
    for root in &roots {
        if let Some(f) = c.fields(root, "a policy file", FILE_KEYS) {
            if let Some(n) = f.get("lists") {
                c.lists_section(n);
            }
            if let Some(n) = f.get("macros") {
                c.macros_section(n);
            }
            files.push(f);
        }
    }
    c.check_macros();
    let mut policies: Vec<Policy> = Vec::new();
    let mut policy_spans: HashMap<String, Span> = HashMap::new();
    for f in &files {
        if let Some(n) = f.get("policies") {
            for p in c.seq(n, "`policies`") {
                if let Some(policy) = c.policy(p) {
                    if let Some(first) = policy_spans.get(&policy.name) {
                        let d = Diagnostic::error(
                            "E0401",
                            policy.span,
                            format!("duplicate policy name `{}`", policy.name),
                        )
                        .with_note(c.first_defined(*first, policy.span));
                        c.diags.push(d);
                    } else {
                        policy_spans.insert(policy.name.clone(), policy.span);
                    }
                    policies.push(policy);
                }
            }
        }
    }
    let total: usize = policies.iter().map(|p| p.rules.len()).sum();
    if total > MAX_RULES {
        c.diags.push(Diagnostic::global(
            "E0402",
            format!("the policy set has {total} rules, more than the limit of {MAX_RULES}"),
        ));
    }
    let mut tests = Vec::new();
    for f in &files {
        if let Some(n) = f.get("tests") {
            for t in c.seq(n, "`tests`") {
                if let Some(tc) = c.test_case(t, &policies) {
                    tests.push(tc);
                }
            }
        }
    }
    for p in &policies {
        crate::overlap::check_policy(p, &mut c.diags);
    }
    c.diags.sort();
    dedup(&mut c.diags);
    if c.diags.has_errors() {
        return Err((sources, c.diags));
    }
    Ok(PolicySet {
        sources,
        policies,
        tests,
        warnings: c.diags,
    })
}

/// A macro used by several rules reports its own error once.
fn dedup(d: &mut Diagnostics) {
    let mut seen = std::collections::HashSet::new();
    d.items
        .retain(|x| seen.insert((x.span, x.code, x.message.clone())));
}

impl Checker {
    /// "first defined at line N" in the same file, else "first defined at PATH:N".
    fn first_defined(&self, first: Span, here: Span) -> String {
        if first.file == here.file {
            format!("first defined at line {}", first.line)
        } else {
            let path = self
                .paths
                .get(first.file as usize)
                .map_or("?", String::as_str);
            format!("first defined at {path}:{}", first.line)
        }
    }

    fn err(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn fields<'n>(&mut self, n: &'n Node, what: &str, allowed: &[&str]) -> Option<Fields<'n>> {
        let NodeKind::Map(items) = &n.kind else {
            if n.is_null() {
                return Some(Fields {
                    node: n,
                    items: &[],
                });
            }
            self.err(Diagnostic::error(
                "E0101",
                n.span,
                format!("expected a mapping for {what}, found {}", n.describe()),
            ));
            return None;
        };
        for (k, _) in items {
            let key = k.as_str().unwrap_or("");
            if !allowed.contains(&key) {
                let mut d =
                    Diagnostic::error("E0201", k.span, format!("unknown key `{key}` in {what}"));
                d = match suggestion(key, allowed.iter().copied()) {
                    Some(h) => d.with_help(h),
                    None => d.with_note(format!("expected one of: {}", allowed.join(", "))),
                };
                self.err(d);
            }
        }
        Some(Fields { node: n, items })
    }

    fn required<'n>(&mut self, f: &Fields<'n>, key: &str, what: &str) -> Option<&'n Node> {
        let v = f.get(key);
        if v.is_none() {
            self.err(Diagnostic::error(
                "E0202",
                f.node.span,
                format!("missing `{key}` in {what}"),
            ));
        }
        v
    }

    fn seq<'n>(&mut self, n: &'n Node, what: &str) -> &'n [Node] {
        match &n.kind {
            NodeKind::Seq(items) => items,
            _ if n.is_null() => &[],
            _ => {
                self.err(Diagnostic::error(
                    "E0101",
                    n.span,
                    format!("expected a list for {what}, found {}", n.describe()),
                ));
                &[]
            }
        }
    }

    fn string(&mut self, n: &Node, what: &str) -> Option<String> {
        match n.as_str() {
            Some(s) if !n.is_null() => Some(s.to_owned()),
            _ => {
                self.err(Diagnostic::error(
                    "E0102",
                    n.span,
                    format!("expected a string for {what}, found {}", n.describe()),
                ));
                None
            }
        }
    }

    fn boolean(&mut self, n: &Node, what: &str) -> Option<bool> {
        match n.as_str() {
            Some("true") => Some(true),
            Some("false") => Some(false),
            _ => {
                self.err(Diagnostic::error(
                    "E0102",
                    n.span,
                    format!("expected `true` or `false` for {what}"),
                ));
                None
            }
        }
    }

    /// A scalar or a list of scalars; `$name` elements expand a named list.
    fn strings(&mut self, n: &Node, what: &str) -> Vec<(String, Span)> {
        let items: Vec<&Node> = match &n.kind {
            NodeKind::Seq(xs) => xs.iter().collect(),
            NodeKind::Scalar { .. } if !n.is_null() => vec![n],
            _ => {
                self.err(Diagnostic::error(
                    "E0102",
                    n.span,
                    format!(
                        "expected a value or a list of values for {what}, found {}",
                        n.describe()
                    ),
                ));
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for item in items {
            let Some(s) = item.as_str() else {
                self.err(Diagnostic::error(
                    "E0102",
                    item.span,
                    format!("expected a value in {what}, found {}", item.describe()),
                ));
                continue;
            };
            match s.strip_prefix('$') {
                Some(name) => match self.lists.get(name) {
                    Some(xs) => out.extend(xs.iter().cloned()),
                    None => {
                        let mut d =
                            Diagnostic::error("E0301", item.span, format!("unknown list `{name}`"));
                        if let Some(h) = suggestion(name, self.lists.keys().map(String::as_str)) {
                            d = d.with_help(h);
                        }
                        self.err(d);
                    }
                },
                None => out.push((s.to_owned(), item.span)),
            }
        }
        out
    }

    fn vocab<T: Copy>(
        &mut self,
        n: &Node,
        what: &str,
        names: &[&str],
        from_name: impl Fn(&str) -> Option<T>,
    ) -> Vec<T> {
        let mut out = Vec::new();
        for (s, span) in self.strings(n, what) {
            match from_name(&s) {
                Some(v) => out.push(v),
                None => self.unknown_name(&s, span, what, names),
            }
        }
        out
    }

    fn unknown_name(&mut self, s: &str, span: Span, what: &str, names: &[&str]) {
        let mut d = Diagnostic::error("E0103", span, format!("unknown {what} `{s}`"));
        d = match suggestion(s, names.iter().copied()) {
            Some(h) => d.with_help(h),
            None => d.with_note(format!("expected one of: {}", names.join(", "))),
        };
        self.err(d);
    }

    fn one_vocab<T: Copy>(
        &mut self,
        n: &Node,
        what: &str,
        names: &[&str],
        from_name: impl Fn(&str) -> Option<T>,
    ) -> Option<T> {
        let s = self.string(n, what)?;
        let v = from_name(&s);
        if v.is_none() {
            self.unknown_name(&s, n.span, what, names);
        }
        v
    }

    fn lists_section(&mut self, n: &Node) {
        let NodeKind::Map(items) = &n.kind else {
            self.err(Diagnostic::error(
                "E0101",
                n.span,
                format!(
                    "expected a mapping of list names to lists, found {}",
                    n.describe()
                ),
            ));
            return;
        };
        for (k, v) in items {
            let name = k.as_str().unwrap_or("").to_owned();
            if let Some(first) = self.list_spans.get(&name) {
                let d = Diagnostic::error("E0302", k.span, format!("duplicate list `{name}`"))
                    .with_note(self.first_defined(*first, k.span));
                self.err(d);
                continue;
            }
            let mut values = Vec::new();
            for item in self.seq(v, "a list") {
                match item.as_str() {
                    Some(s) if s.starts_with('$') => self.err(Diagnostic::error(
                        "E0303",
                        item.span,
                        "lists cannot refer to other lists",
                    )),
                    Some(s) => values.push((s.to_owned(), item.span)),
                    None => self.err(Diagnostic::error(
                        "E0102",
                        item.span,
                        format!(
                            "expected a value in list `{name}`, found {}",
                            item.describe()
                        ),
                    )),
                }
            }
            self.list_spans.insert(name.clone(), k.span);
            self.lists.insert(name, values);
        }
    }

    fn macros_section(&mut self, n: &Node) {
        let NodeKind::Map(items) = &n.kind else {
            self.err(Diagnostic::error(
                "E0101",
                n.span,
                format!(
                    "expected a mapping of macro names to conditions, found {}",
                    n.describe()
                ),
            ));
            return;
        };
        for (k, v) in items {
            let name = k.as_str().unwrap_or("").to_owned();
            if let Some((_, first, _)) = self.macros.get(&name) {
                let d = Diagnostic::error("E0304", k.span, format!("duplicate macro `{name}`"))
                    .with_note(self.first_defined(*first, k.span));
                self.err(d);
                continue;
            }
            if condition::field_names().any(|f| f == name) {
                self.err(Diagnostic::error(
                    "E0305",
                    k.span,
                    format!("macro `{name}` has the name of a field"),
                ));
                continue;
            }
            if let Some(text) = self.string(v, "a macro") {
                let exact = scalar_offsets_exact(v);
                let span = if exact.1 {
                    v.span.sub(1, v.span.len)
                } else {
                    v.span
                };
                self.macros.insert(name, (text, span, exact.0));
            }
        }
    }

    /// Each macro is checked once on its own, so its errors are reported once.
    fn check_macros(&mut self) {
        let names: Vec<String> = self.macros.keys().cloned().collect();
        for name in names {
            let Some((text, span, exact)) = self.macros.get(&name).cloned() else {
                continue;
            };
            let scope = condition::Scope {
                macros: &self.macros,
                lists: &self.lists,
            };
            if let Err(d) = condition::parse(&text, span, exact, false, &scope) {
                self.err(d);
            }
        }
    }

    fn patterns(&mut self, n: &Node, what: &str) -> Patterns {
        let mut out = Vec::new();
        for (s, span) in self.strings(n, what) {
            match PathPattern::parse(&s) {
                Ok(p) => out.push(Spanned { value: p, span }),
                Err(e) => {
                    let mut d = Diagnostic::error("E0104", span, e.message);
                    if let Some(h) = e.help {
                        d = d.with_help(h);
                    }
                    self.err(d);
                }
            }
        }
        out
    }

    /// Label keys are free-form, so this does not go through `fields`.
    fn label_map(&mut self, n: &Node) -> Vec<(String, String)> {
        match &n.kind {
            NodeKind::Map(items) => {
                let mut out = Vec::new();
                for (k, v) in items {
                    if let (Some(k), Some(v)) = (k.as_str(), self.string(v, "a label value")) {
                        out.push((k.to_owned(), v));
                    }
                }
                out
            }
            _ => {
                self.err(Diagnostic::error(
                    "E0101",
                    n.span,
                    format!("expected a mapping of labels, found {}", n.describe()),
                ));
                Vec::new()
            }
        }
    }

    fn policy(&mut self, n: &Node) -> Option<Policy> {
        let f = self.fields(n, "a policy", POLICY_KEYS)?;
        let name_node = self.required(&f, "name", "a policy");
        let name = name_node.and_then(|n| self.string(n, "`name`"));
        let description = match f.get("description") {
            Some(d) => self.string(d, "`description`").unwrap_or_default(),
            None => String::new(),
        };
        let select = match self.required(&f, "select", "a policy") {
            Some(s) => self.selector(s),
            None => None,
        };
        let mode = match f.get("mode") {
            Some(m) => self.one_vocab(m, "mode", Mode::NAMES, Mode::from_name),
            None => {
                self.err(
                    Diagnostic::error("E0202", n.span, "missing `mode` in a policy")
                        .with_help("add `mode: enforce` or `mode: audit`"),
                );
                None
            }
        };
        let defaults = match f.get("defaults") {
            Some(d) => self.defaults(d),
            None => Some(Defaults::default()),
        };
        let allow_downgrade = match f.get("allow_downgrade") {
            Some(b) => self.boolean(b, "`allow_downgrade`").unwrap_or(false),
            None => false,
        };
        let mut rules = Vec::new();
        let mut rule_spans: HashMap<String, Span> = HashMap::new();
        if let Some(rs) = f.get("rules") {
            for r in self.seq(rs, "`rules`") {
                if let Some(rule) = self.rule(r, allow_downgrade) {
                    if let Some(first) = rule_spans.get(&rule.name) {
                        let d = Diagnostic::error(
                            "E0403",
                            rule.span,
                            format!("duplicate rule name `{}`", rule.name),
                        )
                        .with_note(self.first_defined(*first, rule.span));
                        self.err(d);
                    } else {
                        rule_spans.insert(rule.name.clone(), rule.span);
                    }
                    rules.push(rule);
                }
            }
        }
        Some(Policy {
            name: name?,
            span: name_node.map_or(n.span, |n| n.span),
            description,
            select: select?,
            mode: mode?,
            defaults: defaults?,
            allow_downgrade,
            rules,
        })
    }

    /// A selector's cgroup patterns; one the kernel cannot evaluate gets `W0604`.
    fn cgroup_patterns(&mut self, n: &Node) -> Vec<PathPattern> {
        let patterns = self.patterns(n, "`cgroups`");
        for p in &patterns {
            if !p.value.kernel_evaluable() && crate::plan::CgroupGlob::of(&p.value, 0).is_none() {
                self.err(
                    Diagnostic::warning(
                        "W0604",
                        p.span,
                        format!(
                            "cgroup pattern `{}` is matched in user space only: a cgroup created later that it matches gets its policies at the next reload, not at creation",
                            p.value.text
                        ),
                    )
                    .with_help("the kernel matches whole names, `*`, `**`, a final `*.ext`, and whole names ending in one name with a `*` inside (`/system.slice/docker-*.scope`); a cgroup below a selected one is covered at creation whatever the pattern"),
                );
            }
        }
        patterns.into_iter().map(|p| p.value).collect()
    }

    fn selector(&mut self, n: &Node) -> Option<Selector> {
        let f = self.fields(n, "`select`", SELECT_KEYS)?;
        let mut s = Selector::default();
        if let Some(h) = f.get("host") {
            s.host = self.boolean(h, "`host`").unwrap_or(false);
        }
        if let Some(c) = f.get("cgroups") {
            s.cgroups = self.cgroup_patterns(c);
        }
        if let Some(ns) = f.get("namespaces") {
            s.namespaces = self
                .strings(ns, "`namespaces`")
                .into_iter()
                .map(|x| x.0)
                .collect();
        }
        if let Some(l) = f.get("labels") {
            s.labels = self.label_map(l);
        }
        if let Some(e) = f.get("exclude") {
            if let Some(ef) = self.fields(e, "`exclude`", EXCLUDE_KEYS) {
                if let Some(c) = ef.get("cgroups") {
                    s.exclude.cgroups = self.cgroup_patterns(c);
                }
                if let Some(ns) = ef.get("namespaces") {
                    s.exclude.namespaces = self
                        .strings(ns, "`namespaces`")
                        .into_iter()
                        .map(|x| x.0)
                        .collect();
                }
                if let Some(l) = ef.get("labels") {
                    s.exclude.labels = self.label_map(l);
                }
            }
        }
        if !s.host && s.cgroups.is_empty() && s.namespaces.is_empty() && s.labels.is_empty() {
            self.err(
                Diagnostic::error("E0404", n.span, "the policy selects no workloads")
                    .with_help("add `host: true`, `cgroups:`, `namespaces:` or `labels:`"),
            );
        }
        Some(s)
    }

    fn defaults(&mut self, n: &Node) -> Option<Defaults> {
        // `defaults: deny` is the one-line allowlist for every class.
        if let Some(p) = n.as_str().filter(|_| !n.is_null()) {
            let posture = self.one_vocab(n, "posture", Posture::NAMES, Posture::from_name)?;
            let _ = p;
            return Some(Defaults {
                exec: posture,
                file: posture,
                network: posture,
                kernel: posture,
            });
        }
        let f = self.fields(n, "`defaults`", Class::NAMES)?;
        let mut d = Defaults::default();
        for class in Class::ALL {
            if let Some(v) = f.get(class.name()) {
                if let Some(p) = self.one_vocab(v, "posture", Posture::NAMES, Posture::from_name) {
                    d.set(*class, p);
                }
            }
        }
        Some(d)
    }

    fn rule(&mut self, n: &Node, policy_downgrade: bool) -> Option<Rule> {
        let f = self.fields(n, "a rule", RULE_KEYS)?;
        let name_node = self.required(&f, "name", "a rule");
        let name = name_node.and_then(|n| self.string(n, "`name`"));
        let message = match f.get("message") {
            Some(m) => self.string(m, "`message`"),
            None => None,
        };
        let severity = match f.get("severity") {
            Some(s) => self.one_vocab(s, "severity", Severity::NAMES, Severity::from_name),
            None => Some(Severity::Medium),
        };
        let mut tags = Vec::new();
        if let Some(t) = f.get("tags") {
            for (tag, span) in self.strings(t, "`tags`") {
                if looks_like_attack_id(&tag) && !valid_attack_id(&tag) {
                    self.err(
                        Diagnostic::error(
                            "E0105",
                            span,
                            format!("`{tag}` is not a MITRE ATT&CK technique id"),
                        )
                        .with_help("technique ids look like `T1059` or `T1059.004`"),
                    );
                }
                tags.push(tag);
            }
        }
        let action_node = self.required(&f, "action", "a rule");
        let action =
            action_node.and_then(|a| self.one_vocab(a, "action", Action::NAMES, Action::from_name));
        let allow_downgrade = match f.get("allow_downgrade") {
            Some(b) => self.boolean(b, "`allow_downgrade`").unwrap_or(false),
            None => false,
        } || policy_downgrade;
        let sections: Vec<&str> = MATCH_KEYS
            .iter()
            .copied()
            .filter(|k| f.get(k).is_some())
            .collect();
        if sections.is_empty() {
            self.err(
                Diagnostic::error(
                    "E0203",
                    name_node.map_or(n.span, |x| x.span),
                    format!("rule `{}` has no match section", name.as_deref().unwrap_or("?")),
                )
                .with_help("add one of `exec:`, `file:`, `network:`, `kernel:` (or `condition:` for `alert`)"),
            );
            return None;
        }
        if sections.len() > 1 {
            let second = sections[1];
            self.err(
                Diagnostic::error(
                    "E0204",
                    f.key_span(second).unwrap_or(n.span),
                    format!(
                        "a rule has one match section; this one also has `{}`",
                        sections[0]
                    ),
                )
                .with_help("split it into one rule per section"),
            );
            return None;
        }
        let section = sections[0];
        let body = f.get(section)?;
        let section_span = f.key_span(section).unwrap_or(n.span);
        let matcher = match section {
            "exec" => self.exec_match(body).map(Match::Exec),
            "file" => self.file_match(body).map(Match::File),
            "network" => self.net_match(body).map(Match::Network),
            "kernel" => self.kernel_match(body).map(Match::Kernel),
            _ => self.condition(body).map(Match::Condition),
        };
        let action = action?;
        let action_span = action_node.map_or(n.span, |a| a.span);
        match (&matcher, action) {
            (Some(Match::Condition(_)), a) if a != Action::Alert => self.err(
                Diagnostic::error(
                    "E0205",
                    section_span,
                    "`condition` is evaluated in user space and needs `action: alert`",
                )
                .with_help(
                    "use `exec:`, `file:`, `network:` or `kernel:` to enforce in the kernel",
                ),
            ),
            (Some(m), Action::Alert) if !matches!(m, Match::Condition(_)) => self.err(
                Diagnostic::error(
                    "E0206",
                    action_span,
                    "`alert` rules match with `condition:`",
                )
                .with_help("use `action: audit` to record matching operations from the kernel"),
            ),
            (Some(Match::Kernel(k)), Action::Deny | Action::Allow) if !k.syscalls.is_empty() => {
                self.err(
                    Diagnostic::error(
                        "E0207",
                        action_span,
                        format!(
                            "syscalls are observed by a tracepoint, which cannot {} them",
                            action.name()
                        ),
                    )
                    .with_help("use `action: kill` (SIGKILL) or `action: audit`"),
                )
            }
            _ => {}
        }
        let matcher = matcher?;
        self.kernel_evaluable(&matcher, action, allow_downgrade);
        let name = name?;
        Some(Rule {
            message: message.unwrap_or_else(|| name.clone()),
            name,
            span: name_node.map_or(n.span, |n| n.span),
            severity: severity?,
            tags,
            action,
            action_span,
            allow_downgrade,
            matcher,
        })
    }

    /// A pattern the kernel cannot evaluate is an error unless the user asked for the
    /// downgrade; then it is a visible warning.
    fn kernel_evaluable(&mut self, m: &Match, action: Action, downgrade: bool) {
        let pats = m.path_patterns();
        for p in pats.into_iter().filter(|p| !p.value.kernel_evaluable()) {
            if action == Action::Allow {
                // Matching an allow rule in user space would not exempt anything in the
                // kernel: the default would still deny. No downgrade can fix that.
                self.err(
                    Diagnostic::error(
                        "E0602",
                        p.span,
                        format!("pattern `{}` of an `allow` rule cannot be evaluated in the kernel", p.value.text),
                    )
                    .with_help("the kernel matches whole names, `*`, `**` and a final `*.ext`; rewrite the pattern"),
                );
            } else if downgrade {
                self.err(Diagnostic::warning(
                    "W0601",
                    p.span,
                    format!(
                        "pattern `{}` cannot be evaluated in the kernel; this `{}` rule is only audited in user space",
                        p.value.text,
                        action.name()
                    ),
                ));
            } else {
                self.err(
                    Diagnostic::error(
                        "E0601",
                        p.span,
                        format!("pattern `{}` cannot be evaluated in the kernel", p.value.text),
                    )
                    .with_help("the kernel matches whole names, `*`, `**` and a final `*.ext`; rewrite the pattern, or set `allow_downgrade: true` to audit it in user space"),
                );
            }
        }
    }

    fn binaries(&mut self, f: &Fields<'_>) -> BinaryFilter {
        let mut b = BinaryFilter::default();
        if let Some(n) = f.get("from") {
            b.from = self.patterns(n, "`from`");
        }
        if let Some(n) = f.get("except_from") {
            b.except_from = self.patterns(n, "`except_from`");
        }
        b
    }

    fn exec_match(&mut self, n: &Node) -> Option<ExecMatch> {
        let f = self.fields(n, "`exec`", EXEC_KEYS)?;
        let mut m = ExecMatch::default();
        let path = self.required(&f, "path", "`exec`")?;
        m.paths = self.patterns(path, "`path`");
        self.memfd_names(&m.paths);
        if let Some(p) = f.get("parent") {
            m.parent = self.patterns(p, "`parent`");
        }
        if let Some(p) = f.get("ancestor") {
            m.ancestor = self.patterns(p, "`ancestor`");
        }
        if let Some(u) = f.get("uid") {
            for (s, span) in self.strings(u, "`uid`") {
                match s.parse::<u32>() {
                    Ok(v) => m.uids.push(v),
                    Err(_) => self.err(Diagnostic::error(
                        "E0106",
                        span,
                        format!("`{s}` is not a numeric uid"),
                    )),
                }
            }
        }
        Some(m)
    }

    /// A memfd's name is the caller's choice, and the kernel matches every executable memfd as
    /// the reserved path alone: a pattern of the name form (`/memfd:x*`) matches no memfd.
    fn memfd_names(&mut self, paths: &Patterns) {
        for p in paths {
            let text = &p.value.text;
            if text.starts_with(MEMFD_EXEC_PATH) && text != MEMFD_EXEC_PATH {
                self.err(
                    Diagnostic::warning(
                        "W0602",
                        p.span,
                        format!("exec pattern `{text}` matches no memfd: the kernel matches every memfd as `{MEMFD_EXEC_PATH}`, whatever its name"),
                    )
                    .with_help(format!("write `\"{MEMFD_EXEC_PATH}\"` to match executable memfds")),
                );
            }
        }
    }

    fn file_match(&mut self, n: &Node) -> Option<FileMatch> {
        let f = self.fields(n, "`file`", FILE_MATCH_KEYS)?;
        let path = self.required(&f, "path", "`file`")?;
        let paths = self.patterns(path, "`path`");
        let ops = match f.get("ops") {
            Some(o) => self.file_ops(o),
            None => mask_of(FileOp::ALL, FileOp::bit),
        };
        let ops = match f.get("mode") {
            Some(m) => self.chmod_modes(m, ops, f.key_span("mode").unwrap_or(m.span))?,
            None => ops,
        };
        let binaries = self.binaries(&f);
        Some(FileMatch {
            paths,
            ops,
            binaries,
        })
    }

    /// A file rule's `ops`: `chmod` covers every chmod (those that set setuid or setgid
    /// too); those two are asked for with `mode:`, not by their internal names.
    fn file_ops(&mut self, o: &Node) -> u32 {
        let mut ops = 0;
        for (s, span) in self.strings(o, "file operation") {
            match FileOp::from_name(&s) {
                Some(op @ (FileOp::ChmodSetuid | FileOp::ChmodSetgid)) => self.err(
                    Diagnostic::error("E0113", span, format!("`{s}` is not a rule operation"))
                        .with_help(format!(
                            "write `ops: [chmod]` with `mode: [{}]`",
                            if op == FileOp::ChmodSetuid {
                                "setuid"
                            } else {
                                "setgid"
                            }
                        )),
                ),
                Some(FileOp::Chmod) => ops |= FileOp::CHMOD_ALL,
                Some(op) => ops |= op.bit(),
                None => {
                    let names: Vec<&str> = FileOp::NAMES
                        .iter()
                        .copied()
                        .filter(|n| !n.starts_with("chmod_"))
                        .collect();
                    self.unknown_name(&s, span, "file operation", &names);
                }
            }
        }
        ops
    }

    /// `mode: [setuid, setgid]`: the rule is about a chmod that sets one of these bits, so
    /// its `ops` must be `[chmod]` and nothing else.
    fn chmod_modes(&mut self, m: &Node, ops: u32, span: Span) -> Option<u32> {
        if ops != FileOp::CHMOD_ALL {
            self.err(
                Diagnostic::error(
                    "E0113",
                    span,
                    "`mode` is a condition on `chmod` only, and the rule has other operations",
                )
                .with_help("set `ops: [chmod]` in this rule, and move the other operations to a rule of their own"),
            );
            return None;
        }
        let modes = self.vocab(m, "chmod mode", ChmodMode::NAMES, ChmodMode::from_name);
        if modes.is_empty() {
            return None;
        }
        Some(mask_of(&modes, |m| m.op().bit()))
    }

    /// A test chmod's new mode, octal (`4755`, `"0644"`): the operation it is.
    fn test_chmod_mode(&mut self, m: &Node) -> Option<FileOp> {
        let text = self.string(m, "`mode`")?;
        let mode = match u32::from_str_radix(text.trim_start_matches("0o"), 8) {
            Ok(v) if v <= 0o7777 => v,
            _ => {
                self.err(
                    Diagnostic::error(
                        "E0106",
                        m.span,
                        format!("`{text}` is not an octal file mode"),
                    )
                    .with_help("write the new mode in octal, as chmod takes it: `4755`, `644`"),
                );
                return None;
            }
        };
        if mode & 0o6000 == 0o6000 {
            self.err(
                Diagnostic::error(
                    "E0701",
                    m.span,
                    format!("`{text}` sets both setuid and setgid"),
                )
                .with_help(
                    "a test decides one operation: write one test with `4755` and one with `2755`",
                ),
            );
            return None;
        }
        Some(FileOp::of_chmod(mode))
    }

    fn net_match(&mut self, n: &Node) -> Option<NetworkMatch> {
        let f = self.fields(n, "`network`", NET_KEYS)?;
        let ops = match f.get("ops") {
            Some(o) => mask_of(
                &self.vocab(o, "network operation", NetOp::NAMES, NetOp::from_name),
                NetOp::bit,
            ),
            None => mask_of(NetOp::ALL, NetOp::bit),
        };
        let families = match f.get("family") {
            Some(o) => mask_of(
                &self.vocab(o, "address family", Family::NAMES, Family::from_name),
                Family::bit,
            ),
            None => mask_of(Family::ALL, Family::bit),
        };
        let protocols = match f.get("protocol") {
            Some(o) => mask_of(
                &self.vocab(o, "protocol", Protocol::NAMES, Protocol::from_name),
                Protocol::bit,
            ),
            None => mask_of(Protocol::ALL, Protocol::bit),
        };
        let mut cidrs = Vec::new();
        if let Some(c) = f.get("cidr") {
            for (s, span) in self.strings(c, "`cidr`") {
                match Cidr::parse(&s) {
                    Ok(v) => {
                        let fam = if v.is_ipv4() {
                            Family::Ipv4
                        } else {
                            Family::Ipv6
                        };
                        if families & fam.bit() == 0 {
                            self.err(Diagnostic::error(
                                "E0107",
                                span,
                                format!(
                                    "`{s}` is {} but the rule's `family` excludes it",
                                    fam.name()
                                ),
                            ));
                        }
                        cidrs.push(Spanned { value: v, span });
                    }
                    Err(m) => {
                        let mut d = Diagnostic::error("E0108", span, format!("invalid CIDR: {m}"));
                        if let Some(good) = fix_host_bits(&s).filter(|g| Cidr::parse(g).is_ok()) {
                            d = d.with_help(format!("did you mean `{good}`?"));
                        }
                        self.err(d);
                    }
                }
            }
        }
        let mut ports = Vec::new();
        if let Some(p) = f.get("ports") {
            for (s, span) in self.strings(p, "`ports`") {
                match parse_ports(&s) {
                    Ok(r) => ports.push(r),
                    Err(m) => self.err(Diagnostic::error(
                        "E0109",
                        span,
                        format!("invalid port: {m}"),
                    )),
                }
            }
        }
        if ops == NetOp::Send.bit() && protocols == Protocol::Tcp.bit() {
            self.err(
                Diagnostic::error(
                    "E0110",
                    f.key_span("ops").unwrap_or(n.span),
                    "`send` is checked for UDP only; TCP is covered by `connect`",
                )
                .with_help("use `ops: [connect]` for TCP"),
            );
        }
        let binaries = self.binaries(&f);
        Some(NetworkMatch {
            ops,
            families,
            protocols,
            cidrs,
            ports,
            binaries,
        })
    }

    fn kernel_match(&mut self, n: &Node) -> Option<KernelMatch> {
        let f = self.fields(n, "`kernel`", KERNEL_KEYS)?;
        let mut m = KernelMatch::default();
        if let Some(o) = f.get("ops") {
            m.ops = self.vocab(o, "kernel operation", KernelOp::NAMES, KernelOp::from_name);
        }
        if let Some(c) = f.get("capabilities") {
            let names: Vec<&str> = capabilities::names().collect();
            for (s, span) in self.strings(c, "`capabilities`") {
                match capabilities::lookup(&s) {
                    Some(v) => m.capabilities.push(v),
                    None => {
                        let up = s.to_ascii_uppercase();
                        let key = if up.starts_with("CAP_") {
                            up
                        } else {
                            format!("CAP_{up}")
                        };
                        let mut d =
                            Diagnostic::error("E0111", span, format!("unknown capability `{s}`"));
                        if let Some(h) = suggestion(&key, names.iter().copied()) {
                            d = d.with_help(h);
                        }
                        self.err(d);
                    }
                }
            }
        }
        if let Some(c) = f.get("syscalls") {
            let names: Vec<&str> = syscalls::all().map(|(n, _)| n).collect();
            for (s, span) in self.strings(c, "`syscalls`") {
                match syscalls::lookup(&s) {
                    Some(v) => m.syscalls.push(v),
                    None => {
                        let mut d = Diagnostic::error(
                            "E0112",
                            span,
                            format!("unknown x86_64 syscall `{s}`"),
                        );
                        if let Some(h) = suggestion(&s, names.iter().copied()) {
                            d = d.with_help(h);
                        }
                        self.err(d);
                    }
                }
            }
        }
        if ["ops", "capabilities", "syscalls"]
            .iter()
            .all(|k| f.get(k).is_none())
        {
            self.err(Diagnostic::error(
                "E0202",
                n.span,
                "`kernel` needs `ops`, `capabilities` or `syscalls`",
            ));
        }
        m.binaries = self.binaries(&f);
        Some(m)
    }

    fn condition(&mut self, n: &Node) -> Option<Expr> {
        let text = self.string(n, "`condition`")?;
        let (exact, quoted) = scalar_offsets_exact(n);
        let scope = condition::Scope {
            macros: &self.macros,
            lists: &self.lists,
        };
        match condition::parse(&text, n.span, exact, quoted, &scope) {
            Ok(e) => Some(e),
            Err(d) => {
                self.err(d);
                None
            }
        }
    }

    fn test_case(&mut self, n: &Node, policies: &[Policy]) -> Option<TestCase> {
        let f = self.fields(n, "a test", TEST_KEYS)?;
        let name_node = self.required(&f, "name", "a test");
        let name = name_node.and_then(|x| self.string(x, "`name`"));
        let process = match f.get("process") {
            Some(p) if p.as_str().is_some() && !p.is_null() => Process {
                exe: self.string(p, "`process`").unwrap_or_default(),
                ..Process::default()
            },
            Some(p) => self.process(p).unwrap_or_default(),
            None => Process {
                exe: "/usr/bin/true".into(),
                ..Process::default()
            },
        };
        let cgroup = match f.get("cgroup") {
            Some(c) => self.string(c, "`cgroup`").unwrap_or_default(),
            None => "/".into(),
        };
        let container_id = match f.get("container_id") {
            Some(c) => self.string(c, "`container_id`"),
            None => None,
        };
        let pod = match f.get("pod") {
            Some(p) => self.pod(p),
            None => None,
        };
        let ops: Vec<&str> = ["exec", "file", "network", "kernel"]
            .into_iter()
            .filter(|k| f.get(k).is_some())
            .collect();
        if ops.len() != 1 {
            self.err(Diagnostic::error(
                "E0701",
                name_node.map_or(n.span, |x| x.span),
                "a test has exactly one of `exec`, `file`, `network`, `kernel`",
            ));
            return None;
        }
        let body = f.get(ops[0])?;
        let op = match ops[0] {
            "exec" if body.as_str().is_some() => Some(Operation::Exec {
                path: self.string(body, "`exec`")?,
                cmdline: String::new(),
            }),
            "exec" => {
                let ef = self.fields(body, "`exec`", &["path", "cmdline"])?;
                let path = self.required(&ef, "path", "`exec`")?;
                let path = self.string(path, "`path`");
                let cmdline = match ef.get("cmdline") {
                    Some(c) => self.string(c, "`cmdline`"),
                    None => Some(String::new()),
                };
                Some(Operation::Exec {
                    path: path?,
                    cmdline: cmdline?,
                })
            }
            "file" => {
                let ff = self.fields(body, "`file`", &["op", "path", "mode"])?;
                let op = self.required(&ff, "op", "`file`")?;
                let op = self.one_vocab(op, "file operation", FileOp::NAMES, FileOp::from_name);
                let op = match (op, ff.get("mode")) {
                    (Some(FileOp::Chmod), Some(m)) => self.test_chmod_mode(m),
                    (Some(_), Some(m)) => {
                        self.err(
                            Diagnostic::error(
                                "E0701",
                                m.span,
                                "a test's `mode` is the new mode of a `chmod`",
                            )
                            .with_help("set `op: chmod`, or remove `mode`"),
                        );
                        None
                    }
                    (op, _) => op,
                };
                let path = self.required(&ff, "path", "`file`")?;
                let path = self.string(path, "`path`");
                Some(Operation::File {
                    op: op?,
                    path: path?,
                })
            }
            "network" => self.test_network(body),
            _ => self.test_kernel(body),
        };
        let expect = self.required(&f, "expect", "a test")?;
        let expect = self.expectation(expect, policies);
        Some(TestCase {
            name: name?,
            span: name_node.map_or(n.span, |x| x.span),
            event: OwnedEvent {
                process,
                cgroup,
                container_id,
                pod,
                op: op?,
            },
            expect: expect?,
        })
    }

    fn process(&mut self, n: &Node) -> Option<Process> {
        let f = self.fields(n, "`process`", &["exe", "cmdline", "uid", "ancestors"])?;
        let exe = self.required(&f, "exe", "`process`")?;
        let mut p = Process {
            exe: self.string(exe, "`exe`")?,
            ..Process::default()
        };
        if let Some(c) = f.get("cmdline") {
            p.cmdline = self.string(c, "`cmdline`").unwrap_or_default();
        }
        if let Some(u) = f.get("uid") {
            p.uid = self.number(u, "`uid`").unwrap_or(0);
        }
        if let Some(a) = f.get("ancestors") {
            p.ancestors = self
                .strings(a, "`ancestors`")
                .into_iter()
                .map(|x| x.0)
                .collect();
        }
        Some(p)
    }

    fn number<T: std::str::FromStr>(&mut self, n: &Node, what: &str) -> Option<T> {
        let s = self.string(n, what)?;
        let v = s.parse::<T>().ok();
        if v.is_none() {
            self.err(Diagnostic::error(
                "E0106",
                n.span,
                format!("`{s}` is not a valid number for {what}"),
            ));
        }
        v
    }

    fn pod(&mut self, n: &Node) -> Option<Pod> {
        let f = self.fields(n, "`pod`", &["namespace", "name", "labels"])?;
        let ns = self.required(&f, "namespace", "`pod`")?;
        let mut p = Pod {
            namespace: self.string(ns, "`namespace`")?,
            ..Pod::default()
        };
        if let Some(x) = f.get("name") {
            p.name = self.string(x, "`name`").unwrap_or_default();
        }
        if let Some(l) = f.get("labels") {
            p.labels = self.label_map(l);
        }
        Some(p)
    }

    fn test_network(&mut self, n: &Node) -> Option<Operation> {
        let f = self.fields(n, "`network`", &["op", "addr", "port", "protocol"])?;
        let op = self.required(&f, "op", "`network`")?;
        let op = self.one_vocab(op, "network operation", NetOp::NAMES, NetOp::from_name);
        let addr_node = self.required(&f, "addr", "`network`")?;
        let addr_text = self.string(addr_node, "`addr`")?;
        let addr = addr_text.parse().ok();
        if addr.is_none() {
            self.err(Diagnostic::error(
                "E0108",
                addr_node.span,
                format!("`{addr_text}` is not an IP address"),
            ));
        }
        let port = match f.get("port") {
            Some(p) => self.number::<u16>(p, "`port`"),
            None => Some(0),
        };
        let protocol = match f.get("protocol") {
            Some(p) => self.one_vocab(p, "protocol", Protocol::NAMES, Protocol::from_name),
            None => Some(Protocol::Tcp),
        };
        Some(Operation::Network {
            op: op?,
            addr: addr?,
            port: port?,
            protocol: protocol?,
        })
    }

    fn test_kernel(&mut self, n: &Node) -> Option<Operation> {
        let f = self.fields(n, "`kernel`", &["op", "capability", "syscall"])?;
        if f.items.len() != 1 {
            self.err(Diagnostic::error(
                "E0701",
                n.span,
                "a kernel test event has exactly one of `op`, `capability`, `syscall`",
            ));
            return None;
        }
        if let Some(o) = f.get("op") {
            let op = self.one_vocab(o, "kernel operation", KernelOp::NAMES, KernelOp::from_name)?;
            return Some(Operation::Kernel(KernelEvent::Op(op)));
        }
        if let Some(c) = f.get("capability") {
            let s = self.string(c, "`capability`")?;
            return match capabilities::lookup(&s) {
                Some(v) => Some(Operation::Kernel(KernelEvent::Capability(v))),
                None => {
                    self.err(Diagnostic::error(
                        "E0111",
                        c.span,
                        format!("unknown capability `{s}`"),
                    ));
                    None
                }
            };
        }
        let s_node = f.get("syscall")?;
        let s = self.string(s_node, "`syscall`")?;
        match syscalls::lookup(&s) {
            Some(v) => Some(Operation::Kernel(KernelEvent::Syscall(v))),
            None => {
                self.err(Diagnostic::error(
                    "E0112",
                    s_node.span,
                    format!("unknown x86_64 syscall `{s}`"),
                ));
                None
            }
        }
    }

    fn expectation(&mut self, n: &Node, policies: &[Policy]) -> Option<Expectation> {
        let verdict_names = ["allow", "audit", "deny", "kill", "alert"];
        let parse_verdict = |s: &str| match s {
            "allow" | "alert" => Some(Verdict::Allow),
            "audit" => Some(Verdict::Audit),
            "deny" => Some(Verdict::Deny),
            "kill" => Some(Verdict::Kill),
            _ => None,
        };
        if n.as_str().is_some() && !n.is_null() {
            let s = self.string(n, "`expect`")?;
            if s == "alert" {
                self.err(
                    Diagnostic::error("E0702", n.span, "`expect: alert` needs the rule")
                        .with_help("write `expect: {verdict: alert, rule: policy/rule}`"),
                );
                return None;
            }
            let v = self.one_vocab(n, "verdict", &verdict_names, parse_verdict)?;
            return Some(Expectation {
                verdict: v,
                rule: None,
                alerts: None,
                span: n.span,
            });
        }
        let f = self.fields(n, "`expect`", &["verdict", "rule", "alerts"])?;
        let vnode = self.required(&f, "verdict", "`expect`")?;
        let vname = self.string(vnode, "`verdict`")?;
        let verdict = self.one_vocab(vnode, "verdict", &verdict_names, parse_verdict)?;
        let mut rule = None;
        if let Some(r) = f.get("rule") {
            if let Some(s) = self.string(r, "`rule`") {
                self.rule_ref(&s, r.span, policies);
                rule = Some(s);
            }
        }
        let mut alerts = None;
        if let Some(a) = f.get("alerts") {
            let list: Vec<String> = self
                .strings(a, "`alerts`")
                .into_iter()
                .map(|(s, span)| {
                    self.rule_ref(&s, span, policies);
                    s
                })
                .collect();
            alerts = Some(list);
        }
        if vname == "alert" {
            // `verdict: alert` means: allowed, and this rule's alert fires.
            let r = rule.take();
            let mut a = alerts.unwrap_or_default();
            a.extend(r);
            alerts = Some(a);
        }
        Some(Expectation {
            verdict,
            rule,
            alerts,
            span: n.span,
        })
    }

    /// Checks a `policy/rule` (or `policy/default`) reference.
    fn rule_ref(&mut self, s: &str, span: Span, policies: &[Policy]) {
        let all: Vec<String> = policies
            .iter()
            .flat_map(|p| {
                p.rules
                    .iter()
                    .map(move |r| format!("{}/{}", p.name, r.name))
                    .chain(std::iter::once(format!("{}/default", p.name)))
            })
            .collect();
        if !all.iter().any(|x| x == s) {
            let mut d = Diagnostic::error("E0703", span, format!("unknown rule `{s}`")).with_note(
                "rules are written `policy/rule`, or `policy/default` for the default posture",
            );
            if let Some(h) = suggestion(s, all.iter().map(String::as_str)) {
                d = d.with_help(h);
            }
            self.err(d);
        }
    }
}

/// Offsets inside a scalar map to columns only for single-line plain or quoted scalars.
fn scalar_offsets_exact(n: &Node) -> (bool, bool) {
    match &n.kind {
        NodeKind::Scalar { value, plain } => {
            let single = !value.contains('\n') && n.span.len as usize >= value.chars().count();
            (single, !*plain && single)
        }
        _ => (false, false),
    }
}

fn looks_like_attack_id(tag: &str) -> bool {
    let mut c = tag.chars();
    matches!(c.next(), Some('T' | 't')) && c.next().is_some_and(|d| d.is_ascii_digit())
}

fn valid_attack_id(tag: &str) -> bool {
    let b = tag.as_bytes();
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    match b.len() {
        5 => b[0] == b'T' && digits(&b[1..5]),
        9 => b[0] == b'T' && digits(&b[1..5]) && b[5] == b'.' && digits(&b[6..9]),
        _ => false,
    }
}

/// `10.0.0.1/8` -> `10.0.0.0/8`, for the "did you mean" of a CIDR with host bits set.
fn fix_host_bits(s: &str) -> Option<String> {
    let (addr, prefix) = s.split_once('/')?;
    let prefix: u8 = prefix.parse().ok()?;
    let ip: std::net::IpAddr = addr.parse().ok()?;
    let fixed = match ip {
        std::net::IpAddr::V4(v4) => {
            let m = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix.min(32)))
            };
            std::net::Ipv4Addr::from(u32::from(v4) & m).to_string()
        }
        std::net::IpAddr::V6(v6) => {
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix.min(128)))
            };
            std::net::Ipv6Addr::from(u128::from(v6) & m).to_string()
        }
    };
    Some(format!("{fixed}/{prefix}"))
}
