//! From the compiled policy `Plan` to what the kernel programs take (`bpf_lsm::KernelPlan`):
//! map entries, per-policy defaults, and the cgroups each policy applies to, resolved from the
//! cgroup2 tree as it is now (cgroups created later inherit in the kernel).
//!
//! A rule the kernel programs of this build cannot enforce exactly as written is refused by
//! name, with what it needs: the enforcer never loads a silently weaker policy.

use bpf_lsm::plan::{
    Accept, Action, CgroupPolicies, CgroupSelectors, Edge, ExecMechanism, KernelPlan, KernelPolicy,
    KernelRule, Mode, NetMechanism, NetPrefix, NetRule, NetworkDefault, NetworkPlan,
    PathMatcherEntries, SuffixAccept, Wildcard,
};
use bpf_lsm::pods::{NamespacePolicies, PodScoping};
use enforcer::pod_logs::PodDirectory;
use policy_lang::matcher::PathMatcher;
use policy_lang::model::{Action as RuleAction, Class, Mode as PolicyMode, NetOp, Posture};
use policy_lang::plan::{Enforcement, LpmEntry, Plan, PlanPolicy, PlanRule, PlanSelector};
use policy_lang::KernelFeatures;
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Why a plan cannot be loaded into the kernel as it is.
#[derive(Debug, PartialEq, Eq)]
pub struct Unsupported {
    /// `policy/rule` or `policy` for defaults and selectors.
    pub what: String,
    pub why: String,
}

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}`: {}", self.what, self.why)
    }
}

fn policy_name(plan: &Plan, id: u32) -> &str {
    plan.policies
        .iter()
        .find(|p| p.id == id)
        .map_or("?", |p| p.name.as_str())
}

fn rule_label(plan: &Plan, r: &PlanRule) -> String {
    format!("{}/{}", policy_name(plan, r.policy), r.name)
}

pub(crate) fn action(a: RuleAction) -> Option<Action> {
    match a {
        RuleAction::Allow => Some(Action::Allow),
        RuleAction::Audit => Some(Action::Audit),
        RuleAction::Deny => Some(Action::Deny),
        RuleAction::Kill => Some(Action::Kill),
        RuleAction::Alert => None,
    }
}

/// The network operations the kernel programs decide: every one with BPF LSM; without it the
/// cgroup socket programs see connect, bind and UDP send, and not listen.
fn kernel_net_ops(bpf_lsm: bool) -> u32 {
    NetOp::ALL
        .iter()
        .filter(|op| bpf_lsm || **op != NetOp::Listen)
        .fold(0, |m, op| m | op.bit())
}

fn net_op_names(ops: u32) -> Vec<&'static str> {
    NetOp::ALL
        .iter()
        .filter(|op| ops & op.bit() != 0)
        .map(|op| op.name())
        .collect()
}

/// What the kernel does for a network rule or default, from how policy-lang says it is
/// enforced on this kernel (so that a downgrade it accepted, such as a kill that only denies
/// without BPF LSM, is what the kernel does too).
fn enforced_action(e: Enforcement) -> Option<Action> {
    match e {
        Enforcement::LsmDeny | Enforcement::CgroupSockDeny => Some(Action::Deny),
        Enforcement::LsmDenyAndKill => Some(Action::Kill),
        Enforcement::KernelAudit => Some(Action::Audit),
        Enforcement::Allow => Some(Action::Allow),
        Enforcement::KillAtExec
        | Enforcement::TracepointKill
        | Enforcement::UserspaceAudit
        | Enforcement::UserspaceAlert
        | Enforcement::Unenforced => None,
    }
}

pub(crate) fn is_alert(r: &PlanRule) -> bool {
    r.enforcement == Enforcement::UserspaceAlert || r.action == RuleAction::Alert
}

/// What keeps `r` out of this build's kernel programs, if anything.
fn rule_gap(r: &PlanRule, kernel: &KernelFeatures) -> Option<String> {
    let bpf_lsm = kernel.bpf_lsm;
    if is_alert(r) {
        return (!kernel.tp_btf).then(|| {
            "`alert` rules are evaluated in user space on the exec records of the process \
             tracepoints, and this kernel does not load `tp_btf` programs (`enforcer doctor`)"
                .into()
        });
    }
    if r.enforcement == Enforcement::UserspaceAudit {
        return Some("the rule is matched in user space, which this build does not do yet".into());
    }
    let mut needs = Vec::new();
    match r.class {
        // Every file operation has its hook: file_open (read, write, append, exec), the
        // path hooks (create, delete, rename, link, chmod, chown, truncate) and mmap_file /
        // file_mprotect (mmap_exec).
        Some(Class::File) => {}
        Some(Class::Exec) => {}
        Some(Class::Network) => {
            let unsupported = net_op_names(r.ops & !kernel_net_ops(bpf_lsm));
            if !unsupported.is_empty() {
                needs.push(format!(
                    "BPF LSM for {} (the cgroup socket programs of a kernel without it decide \
                     connect, bind and send only)",
                    unsupported.join(", ")
                ));
            }
            if enforced_action(r.enforcement).is_none() {
                needs.push(format!(
                    "a kernel mechanism for `{}`",
                    r.enforcement.describe()
                ));
            }
        }
        Some(Class::Kernel) => needs.extend(crate::kernel_class::rule_needs(r, kernel)),
        None => needs.push("a kernel hook for its class".into()),
    }
    // `from`/`except_from` are enforced for file, exec, kernel and (with BPF LSM) network
    // rules (the acting task's binary sets, tracked from exec: crate::binary_filters).
    if (r.from_set.is_some() || r.except_set.is_some())
        && r.class == Some(Class::Network)
        && !bpf_lsm
    {
        needs.push(
            "BPF LSM for `from`/`except_from` on a network rule (the cgroup socket programs \
             of a kernel without it cannot read a task's binary sets; drop the filter there)"
                .into(),
        );
    }
    (!needs.is_empty()).then(|| {
        format!(
            "needs {}, which this build's kernel programs do not have yet",
            needs.join(" and ")
        )
    })
}

fn default_action(p: &PlanPolicy, class: Class) -> Action {
    match p
        .defaults
        .iter()
        .find(|d| d.class == class)
        .map(|d| d.posture)
    {
        Some(Posture::Deny) => Action::Deny,
        _ => Action::Allow,
    }
}

pub(crate) fn entries(m: &PathMatcher) -> PathMatcherEntries {
    PathMatcherEntries {
        edges: m
            .edges
            .iter()
            .map(|e| Edge::new(e.from, e.segment.as_bytes(), e.to))
            .collect(),
        wildcards: m
            .wildcards
            .iter()
            .map(|w| Wildcard {
                from: w.from,
                to: w.to,
            })
            .collect(),
        accepts: m
            .accepts
            .iter()
            .map(|a| Accept {
                state: a.state,
                rules: a.tags.clone(),
            })
            .collect(),
        suffixes: m
            .suffixes
            .iter()
            .map(|s| SuffixAccept::new(s.state, s.suffix.as_bytes(), s.tags.clone()))
            .collect(),
    }
}

/// A cgroup below the cgroup2 mount: its path as policies name it (`/system.slice/x`) and id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupNode {
    pub path: String,
    pub id: u64,
}

/// Every cgroup under `root` (the cgroup2 mount), the root itself as `/`.
pub fn cgroup_tree(root: &Path) -> std::io::Result<Vec<CgroupNode>> {
    let mut out = vec![CgroupNode {
        path: "/".into(),
        id: std::fs::metadata(root)?.ino(),
    }];
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            // A cgroup removed while we walk is simply gone.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let meta = match entry.metadata() {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if meta.is_dir() {
                let path = format!("{rel}/{}", entry.file_name().to_string_lossy());
                out.push(CgroupNode {
                    path: path.clone(),
                    id: meta.ino(),
                });
                stack.push((entry.path(), path));
            }
        }
    }
    Ok(out)
}

/// `path` and every ancestor of it, `/` included.
fn self_and_ancestors(path: &str) -> Vec<&str> {
    let mut out = vec![path];
    let mut p = path;
    while let Some(i) = p.rfind('/') {
        p = if i == 0 { "/" } else { &p[..i] };
        if out.last() == Some(&p) {
            break;
        }
        out.push(p);
    }
    out
}

/// A cgroup is selected when it or an ancestor matches the selector (a new child would
/// inherit in the kernel, so an existing one is treated the same) and neither it nor an
/// ancestor is excluded.
///
/// `namespace` is the Kubernetes namespace of the pod the cgroup belongs to, if any.
fn selected(sel: &PlanSelector, path: &str, namespace: Option<&str>) -> bool {
    let chain = self_and_ancestors(path);
    let in_namespaces = |list: &[String]| namespace.is_some_and(|ns| list.iter().any(|n| n == ns));
    let included = sel.host
        || chain
            .iter()
            .any(|p| sel.cgroups.iter().any(|pat| pat.matches(p)))
        || in_namespaces(&sel.namespaces);
    included && !excluded(sel, path, namespace)
}

/// Whether the selector's exclusions take the cgroup (or a cgroup above it) out.
fn excluded(sel: &PlanSelector, path: &str, namespace: Option<&str>) -> bool {
    self_and_ancestors(path)
        .iter()
        .any(|p| sel.exclude_cgroups.iter().any(|pat| pat.matches(p)))
        || namespace.is_some_and(|ns| sel.exclude_namespaces.iter().any(|n| n == ns))
}

/// What the kernel needs to select the cgroups created after the load: the selectors'
/// patterns, and the existing cgroups' exclusions (which their new children inherit).
fn cgroup_selectors(plan: &Plan, excluded_by: BTreeMap<u64, Vec<u32>>) -> CgroupSelectors {
    let excluded = excluded_by
        .into_iter()
        .map(|(cgroup_id, policies)| CgroupPolicies {
            cgroup_id,
            policies,
        })
        .collect();
    CgroupSelectors {
        matcher: entries(&plan.maps.cgroups),
        excluded,
        globs: plan
            .maps
            .cgroup_globs
            .iter()
            .map(|g| bpf_lsm::plan::CgroupGlob {
                parent: g.parent.as_bytes().to_vec(),
                prefix: g.prefix.as_bytes().to_vec(),
                suffix: g.suffix.as_bytes().to_vec(),
                tag: g.tag,
            })
            .collect(),
    }
}

fn uses_namespaces(s: &PlanSelector) -> bool {
    !s.namespaces.is_empty() || !s.exclude_namespaces.is_empty()
}

/// Whether some policy of `plan` selects or excludes by Kubernetes namespace (the daemon then
/// reads the pod log directory).
pub fn needs_pods(plan: &Plan) -> bool {
    plan.policies.iter().any(|p| uses_namespaces(&p.select))
}

/// The pod uid of a cgroup that is a pod's own (not one of its containers').
fn pod_cgroup_uid(path: &str) -> Option<String> {
    let uid = enforcer::enrich::cgroup_path::parse(path).pod_uid?;
    let parent = path.rsplit_once('/').map_or("", |(p, _)| p);
    enforcer::enrich::cgroup_path::parse(parent)
        .pod_uid
        .is_none()
        .then_some(uid)
}

/// What the kernel needs to give new pods their namespace's policies.
fn pod_scoping(plan: &Plan, tree: &[CgroupNode], pods: &PodDirectory) -> PodScoping {
    let mut names: BTreeSet<&str> = BTreeSet::new();
    for p in &plan.policies {
        names.extend(p.select.namespaces.iter().map(String::as_str));
        names.extend(p.select.exclude_namespaces.iter().map(String::as_str));
    }
    let namespaces = names
        .into_iter()
        .map(|name| {
            let having = |list: fn(&PlanSelector) -> &Vec<String>| {
                plan.policies
                    .iter()
                    .filter(|p| list(&p.select).iter().any(|n| n == name))
                    .map(|p| p.id)
                    .collect()
            };
            NamespacePolicies {
                name: name.to_string(),
                add: having(|s| &s.namespaces),
                remove: having(|s| &s.exclude_namespaces),
            }
        })
        .collect();
    PodScoping {
        logs_dir: pods.id,
        namespaces,
        pod_cgroups: tree
            .iter()
            .filter_map(|n| Some((pod_cgroup_uid(&n.path)?, n.id)))
            .collect(),
    }
}

/// What feeds each `alert` rule of `plan`, one line per rule, for the log.
pub fn alert_feeds(plan: &Plan) -> Vec<String> {
    plan.rules
        .iter()
        .filter(|r| is_alert(r))
        .map(|r| {
            format!(
                "alert rule `{}` is evaluated in user space on the exec records \
                 (tp_btf/sched_process_exec) and the verdict events of the processes policy `{}` \
                 selects",
                rule_label(plan, r),
                policy_name(plan, r.policy)
            )
        })
        .collect()
}

/// On a kernel without BPF LSM only network rules (the cgroup socket programs) and exec rules
/// (killed or recorded at exec: crate::exec_fallback) have a kernel mechanism; `alert` rules run
/// in user space. Returns the plan with the other rules taken out, and those rules'
/// `policy/rule` names, which the caller must report: they are neither enforced nor audited.
pub fn network_part(plan: &Plan) -> (Plan, Vec<String>) {
    let mut part = plan.clone();
    let k = plan.kernel;
    let (kept, dropped): (Vec<PlanRule>, Vec<PlanRule>) = part.rules.drain(..).partition(|r| {
        r.class == Some(Class::Network) || is_alert(r) || crate::exec_fallback::takes_rule(r, &k)
    });
    part.rules = kept;
    part.maps.file_paths = PathMatcher::default();
    if !crate::exec_fallback::available(&k) {
        part.maps.exec_paths = PathMatcher::default();
    }
    for p in &mut part.policies {
        for d in &mut p.defaults {
            if d.class == Class::File
                || (d.class == Class::Exec && !crate::exec_fallback::takes_default(d, &k))
            {
                d.posture = Posture::Allow;
            }
        }
    }
    let names = dropped.iter().map(|r| rule_label(plan, r)).collect();
    (part, names)
}

/// Translates `plan` for the kernel, scoping policies to the cgroups of `tree` (a plan with
/// namespace selectors needs [`kernel_plan_with_pods`]).
#[cfg(test)]
pub fn kernel_plan(plan: &Plan, tree: &[CgroupNode]) -> Result<KernelPlan, Vec<Unsupported>> {
    kernel_plan_with_pods(plan, tree, None)
}

/// [`kernel_plan`] with the node's pods, for namespace selectors.
pub fn kernel_plan_with_pods(
    plan: &Plan,
    tree: &[CgroupNode],
    pods: Option<&PodDirectory>,
) -> Result<KernelPlan, Vec<Unsupported>> {
    let mut gaps = Vec::new();
    let bpf_lsm = plan.kernel.bpf_lsm;
    for p in &plan.policies {
        for d in &p.defaults {
            if d.posture != Posture::Deny {
                continue;
            }
            let why = match d.class {
                Class::Kernel => crate::kernel_class::default_gap(d, &plan.kernel),
                Class::Network if !bpf_lsm => Some(
                    "`defaults: {network: deny}` covers `listen`, which needs BPF LSM: the \
                     cgroup socket programs of a kernel without it neither deny nor see it"
                        .to_string(),
                ),
                _ => None,
            };
            if let Some(why) = why {
                gaps.push(Unsupported {
                    what: p.name.clone(),
                    why,
                });
            }
        }
        let s = &p.select;
        if !s.labels.is_empty() || !s.exclude_labels.is_empty() {
            gaps.push(Unsupported {
                what: p.name.clone(),
                why: "Kubernetes label selectors need the Kubernetes API, which this build does \
                      not watch yet; select by `namespaces` or by cgroup path instead"
                    .into(),
            });
        }
        if uses_namespaces(s) && !bpf_lsm {
            gaps.push(Unsupported {
                what: p.name.clone(),
                why: "Kubernetes namespace selectors need BPF LSM: the kernel gives a new pod \
                      its namespace's policies when the kubelet creates the pod's log directory \
                      (lsm/inode_mkdir); select pods by cgroup path instead"
                    .into(),
            });
        } else if uses_namespaces(s) && pods.is_none() {
            gaps.push(Unsupported {
                what: p.name.clone(),
                why: "Kubernetes namespace selectors need the pod log directory, which was not \
                      read"
                    .into(),
            });
        }
    }
    for r in &plan.rules {
        if let Some(why) = rule_gap(r, &plan.kernel) {
            gaps.push(Unsupported {
                what: rule_label(plan, r),
                why,
            });
        }
    }
    if let Some(why) = crate::binary_filters::too_many_sets(plan) {
        gaps.push(Unsupported {
            what: "binary filters".into(),
            why,
        });
    }
    if !gaps.is_empty() {
        return Err(gaps);
    }

    let policies = plan
        .policies
        .iter()
        .map(|p| KernelPolicy {
            id: p.id,
            mode: match p.mode {
                PolicyMode::Enforce => Mode::Enforce,
                PolicyMode::Audit => Mode::Audit,
            },
            file_default: default_action(p, Class::File),
            exec_default: default_action(p, Class::Exec),
        })
        .collect();
    let rules = plan
        .rules
        .iter()
        .filter(|r| matches!(r.class, Some(Class::File | Class::Exec)))
        .filter_map(|r| {
            Some(KernelRule {
                id: r.id,
                policy: r.policy,
                action: action(r.action)?,
                ops: r.ops,
            })
        })
        .collect();
    let mut by_cgroup: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
    let mut excluded_by: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
    for node in tree {
        let namespace = pods.and_then(|d| {
            enforcer::enrich::cgroup_path::parse(&node.path)
                .pod_uid
                .and_then(|uid| d.namespace_of(&uid).map(str::to_string))
        });
        for p in &plan.policies {
            if selected(&p.select, &node.path, namespace.as_deref()) {
                by_cgroup.entry(node.id).or_default().push(p.id);
            }
            if excluded(&p.select, &node.path, namespace.as_deref()) {
                excluded_by.entry(node.id).or_default().push(p.id);
            }
        }
    }
    let network = network_plan(plan, &by_cgroup, tree);
    let mut k = KernelPlan {
        cgroup_selectors: cgroup_selectors(plan, excluded_by),
        policies,
        cgroups: by_cgroup
            .into_iter()
            .map(|(cgroup_id, policies)| CgroupPolicies {
                cgroup_id,
                policies,
            })
            .collect(),
        file_matcher: entries(&plan.maps.file_paths),
        exec_matcher: entries(&plan.maps.exec_paths),
        rules,
        cgroup_headroom: None,
        network,
        process_events: plan.rules.iter().any(is_alert),
        kernel: crate::kernel_class::kernel_ops_plan(plan),
        binaries: Default::default(),
        exec_mechanism: if bpf_lsm {
            ExecMechanism::Lsm
        } else {
            ExecMechanism::KillAtExec
        },
        // From the config (kernel_settings.rs), when the daemon loads the plan.
        rate_limit: 0,
        self_guard: None,
        pods: pods
            .filter(|_| needs_pods(plan))
            .map(|d| pod_scoping(plan, tree, d)),
    };
    k.binaries = crate::binary_filters::binary_filters(plan, &k);
    Ok(k)
}

fn prefixes(entries: &[LpmEntry], known: &BTreeSet<u32>) -> Vec<NetPrefix> {
    entries
        .iter()
        .map(|e| NetPrefix {
            addr: e.cidr.addr,
            prefix: e.cidr.prefix,
            rules: e
                .rules
                .iter()
                .copied()
                .filter(|id| known.contains(id))
                .collect(),
        })
        .collect()
}

/// The network rules, prefixes and defaults, enforced by BPF LSM when the plan was compiled
/// for a kernel with it, else by the cgroup socket programs, attached at the root when a
/// selector has cgroup patterns and else to the topmost selected cgroups (their subtrees run
/// them).
fn network_plan(
    plan: &Plan,
    by_cgroup: &BTreeMap<u64, Vec<u32>>,
    tree: &[CgroupNode],
) -> NetworkPlan {
    let rules: Vec<NetRule> = plan
        .rules
        .iter()
        .filter(|r| r.class == Some(Class::Network))
        .filter_map(|r| {
            Some(NetRule {
                id: r.id,
                policy: r.policy,
                action: enforced_action(r.enforcement)?,
                ops: r.ops,
                families: r.families,
                protocols: r.protocols,
                ports: r.ports.iter().map(|p| (p.lo, p.hi)).collect(),
            })
        })
        .collect();
    let known: BTreeSet<u32> = rules.iter().map(|r| r.id).collect();
    let defaults = plan
        .policies
        .iter()
        .filter_map(|p| {
            let d = p.defaults.iter().find(|d| d.class == Class::Network)?;
            let action = match d.posture {
                Posture::Allow => Action::Allow,
                Posture::Deny => d.enforcement.and_then(enforced_action)?,
            };
            (action != Action::Allow).then_some(NetworkDefault {
                policy: p.id,
                action,
            })
        })
        .collect();
    let selected: BTreeSet<&str> = tree
        .iter()
        .filter(|n| by_cgroup.contains_key(&n.id))
        .map(|n| n.path.as_str())
        .collect();
    // A cgroup a selector's pattern matches when it is created later can be anywhere: the
    // programs then attach at the root (they decide per task cgroup from the cgroup map, so
    // tasks no policy covers are allowed after one lookup).
    let c = &plan.maps.cgroups;
    let selects_new = !c.accepts.is_empty()
        || !c.suffixes.is_empty()
        || plan.maps.cgroup_globs.iter().any(|g| g.tag % 2 == 0);
    let attach_cgroups = if selects_new {
        vec!["/".to_string()]
    } else {
        selected
            .iter()
            .filter(|path| {
                !self_and_ancestors(path)
                    .iter()
                    .skip(1)
                    .any(|a| selected.contains(a))
            })
            .map(|p| (*p).to_string())
            .collect()
    };
    NetworkPlan {
        rules,
        v4: prefixes(&plan.maps.net_v4, &known),
        v6: prefixes(&plan.maps.net_v6, &known),
        defaults,
        mechanism: if plan.kernel.bpf_lsm {
            NetMechanism::Lsm
        } else {
            NetMechanism::CgroupSock
        },
        attach_cgroups,
        cgroup2_root: None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use policy_lang::KernelFeatures;

    fn compile(yaml: &str) -> Plan {
        let set = policy_lang::load_sources([("p.yaml", yaml)])
            .unwrap_or_else(|e| panic!("{}", e.render()));
        policy_lang::compile(&set, &KernelFeatures::full()).unwrap()
    }

    /// Policy `p` selecting `select`, enforcing, with the `extra` keys (lines indented by 4),
    /// then `rules` (YAML list items).
    fn policy_p(select: &str, extra: &str, rules: &str) -> String {
        format!(
            "policies:\n  - name: p\n    select: {select}\n    mode: enforce\n{extra}    rules:\n{rules}"
        )
    }

    /// Policy `p` on every cgroup with `rules`, compiled.
    fn compile_host_rules(rules: &str) -> Plan {
        compile(&policy_p("{host: true}", "", rules))
    }

    fn tree(paths: &[&str]) -> Vec<CgroupNode> {
        paths
            .iter()
            .enumerate()
            .map(|(i, p)| CgroupNode {
                path: (*p).into(),
                id: 100 + i as u64,
            })
            .collect()
    }

    const FILE_POLICY: &str = "
policies:
  - name: web
    select: {cgroups: [/system.slice/nginx.service]}
    mode: enforce
    defaults: {exec: deny}
    rules:
      - name: no-keys
        action: deny
        file: {path: ['*.pem', /etc/ssl/private/**], ops: [read]}
      - name: sh
        action: allow
        exec: {path: [/bin/sh]}
";

    #[test]
    fn a_file_and_exec_policy_becomes_kernel_entries() {
        let plan = compile(FILE_POLICY);
        let k = kernel_plan(
            &plan,
            &tree(&[
                "/",
                "/system.slice",
                "/system.slice/nginx.service",
                "/system.slice/nginx.service/worker",
                "/user.slice",
            ]),
        )
        .unwrap();
        assert_eq!(k.policies.len(), 1);
        assert_eq!(k.policies[0].exec_default, Action::Deny);
        assert_eq!(k.policies[0].file_default, Action::Allow);
        // The unit and its existing child, nothing else.
        let ids: Vec<u64> = k.cgroups.iter().map(|c| c.cgroup_id).collect();
        assert_eq!(ids, vec![102, 103]);
        assert_eq!(k.rules.len(), 2);
        assert!(
            !k.file_matcher.suffixes.is_empty(),
            "*.pem is a suffix entry"
        );
        assert!(!k.file_matcher.edges.is_empty());
        assert!(!k.exec_matcher.accepts.is_empty());
        // Hashes are the kernel's.
        for e in &k.file_matcher.edges {
            assert_eq!(e.hash, bpf_lsm::path_hash::path_hash(&e.segment));
        }
    }

    const WEB_POD: &str = "0f5e2b7a-1c2d-4e3f-8a9b-0c1d2e3f4a5b";
    const DB_POD: &str = "1a2b3c4d-5e6f-4a1b-9c2d-3e4f5a6b7c8d";

    fn pods() -> PodDirectory {
        PodDirectory {
            id: bpf_lsm::guard::ExeId { dev: 8, ino: 1234 },
            pods: [(WEB_POD, "web", "shop-1"), (DB_POD, "db", "pg-0")]
                .into_iter()
                .map(|(uid, namespace, name)| {
                    (
                        uid.to_string(),
                        enforcer::pod_logs::PodName {
                            namespace: namespace.into(),
                            name: name.into(),
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn namespace_selectors_cover_the_pods_of_the_namespace_and_tell_the_kernel_about_new_ones() {
        let plan = compile(
            "
policies:
  - name: web-only
    select: {namespaces: [web]}
    mode: enforce
    rules:
      - name: r
        action: deny
        file: {path: /etc/shadow, ops: [read]}
  - name: all-but-db
    select: {cgroups: [/kubepods.slice/**], exclude: {namespaces: [db]}}
    mode: audit
    rules:
      - name: r
        action: deny
        file: {path: /etc/passwd, ops: [read]}
",
        );
        let web_pod = format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice",
            WEB_POD.replace('-', "_")
        );
        let db_pod = format!(
            "/kubepods.slice/kubepods-pod{}.slice",
            DB_POD.replace('-', "_")
        );
        let nodes = tree(&[
            "/",
            "/kubepods.slice",
            "/kubepods.slice/kubepods-besteffort.slice",
            &web_pod,
            &format!("{web_pod}/cri-containerd-{}.scope", "a".repeat(64)),
            &db_pod,
            &format!("{db_pod}/cri-containerd-{}.scope", "b".repeat(64)),
            "/system.slice",
        ]);
        let k = kernel_plan_with_pods(&plan, &nodes, Some(&pods())).unwrap();
        let (web, all) = (k.policies[0].id, k.policies[1].id);
        let by_id: BTreeMap<u64, Vec<u32>> = k
            .cgroups
            .iter()
            .map(|c| (c.cgroup_id, c.policies.clone()))
            .collect();
        // kubepods.slice and the QoS slice: the cgroup policy only.
        assert_eq!(by_id[&101], vec![all]);
        assert_eq!(by_id[&102], vec![all]);
        // The web pod and its container: both policies.
        assert_eq!(by_id[&103], vec![web, all]);
        assert_eq!(by_id[&104], vec![web, all]);
        // The db pod is excluded by namespace, and no policy names the rest.
        for id in [100, 105, 106, 107] {
            assert!(!by_id.contains_key(&id), "cgroup {id}: {by_id:?}");
        }
        let scoping = k.pods.unwrap();
        assert_eq!(scoping.logs_dir.ino, 1234);
        assert_eq!(
            scoping.namespaces,
            vec![
                NamespacePolicies {
                    name: "db".into(),
                    add: vec![],
                    remove: vec![all],
                },
                NamespacePolicies {
                    name: "web".into(),
                    add: vec![web],
                    remove: vec![],
                },
            ]
        );
        // Pod cgroups only, not their containers'.
        assert_eq!(
            scoping.pod_cgroups,
            vec![(WEB_POD.to_string(), 103), (DB_POD.to_string(), 105)]
        );
    }

    #[test]
    fn label_selectors_and_namespaces_without_bpf_lsm_are_refused_by_name() {
        let yaml = "
policies:
  - name: labelled
    select: {labels: {app: web}}
    mode: enforce
    rules:
      - name: r
        action: deny
        network: {ops: [connect], cidr: [10.0.0.0/8]}
";
        let gaps = kernel_plan_with_pods(&compile(yaml), &tree(&["/"]), Some(&pods())).unwrap_err();
        assert!(
            gaps[0]
                .why
                .contains("label selectors need the Kubernetes API"),
            "{gaps:?}"
        );
        let ns = yaml.replace("{labels: {app: web}}", "{namespaces: [web]}");
        let gaps = kernel_plan_with_pods(&compile_without_lsm(&ns), &tree(&["/"]), Some(&pods()))
            .unwrap_err();
        assert!(
            gaps[0].why.contains("namespace selectors need BPF LSM"),
            "{gaps:?}"
        );
        assert!(kernel_plan_with_pods(&compile(&ns), &tree(&["/"]), Some(&pods())).is_ok());
    }

    #[test]
    fn host_selects_every_cgroup_and_exclusions_cut_subtrees() {
        let plan = compile(
            "
policies:
  - name: all
    select: {host: true, exclude: {cgroups: [/system.slice/**]}}
    mode: audit
    rules:
      - name: r
        action: deny
        file: {path: /etc/shadow, ops: [read]}
",
        );
        let k = kernel_plan(
            &plan,
            &tree(&["/", "/system.slice", "/system.slice/a", "/user.slice"]),
        )
        .unwrap();
        let ids: Vec<u64> = k.cgroups.iter().map(|c| c.cgroup_id).collect();
        assert_eq!(ids, vec![100, 103]);
        assert_eq!(k.policies[0].mode, Mode::Audit);
    }

    /// Cgroups created after the load are selected in the kernel by the selectors' patterns:
    /// the plan carries them as the cgroup matcher (tag `policy id * 2`, `+ 1` for an
    /// exclusion), and the existing cgroups' exclusions for their future children. A pattern
    /// the kernel cannot evaluate stays in user space (and `W0604` says so).
    #[test]
    fn cgroups_created_later_are_selected_by_pattern_in_the_kernel() {
        let plan = compile(
            "
policies:
  - name: units
    select:
      cgroups: [/system.slice/*.service, /system.slice/app-?.scope, /machine.slice/libpod-*.scope]
      exclude: {cgroups: [/system.slice/debug.service]}
    mode: enforce
    rules:
      - name: r
        action: deny
        file: {path: /etc/shadow, ops: [read]}
",
        );
        let k = kernel_plan(
            &plan,
            &tree(&[
                "/",
                "/system.slice",
                "/system.slice/debug.service",
                "/system.slice/debug.service/x",
                "/system.slice/nginx.service",
            ]),
        )
        .unwrap();
        let m = &k.cgroup_selectors.matcher;
        let tags: BTreeSet<u32> = m
            .accepts
            .iter()
            .flat_map(|a| a.rules.iter())
            .chain(m.suffixes.iter().flat_map(|s| s.rules.iter()))
            .copied()
            .collect();
        assert_eq!(tags, BTreeSet::from([0, 1]));
        // `libpod-*.scope` has a kernel form of its own; `app-?.scope` has none.
        assert_eq!(
            k.cgroup_selectors.globs,
            vec![bpf_lsm::plan::CgroupGlob {
                parent: b"/machine.slice".to_vec(),
                prefix: b"libpod-".to_vec(),
                suffix: b".scope".to_vec(),
                tag: 0,
            }]
        );
        let excluded: Vec<(u64, Vec<u32>)> = k
            .cgroup_selectors
            .excluded
            .iter()
            .map(|c| (c.cgroup_id, c.policies.clone()))
            .collect();
        assert_eq!(excluded, vec![(102, vec![0]), (103, vec![0])]);
        let ids: Vec<u64> = k.cgroups.iter().map(|c| c.cgroup_id).collect();
        assert_eq!(ids, vec![104]);
    }

    #[test]
    fn the_embedded_rule_library_loads_whole_on_a_bpf_lsm_kernel() {
        let set =
            policy_lang::load_sources(rules::files()).unwrap_or_else(|e| panic!("{}", e.render()));
        let plan = policy_lang::compile(&set, &KernelFeatures::full()).unwrap();
        let k = kernel_plan(
            &plan,
            &tree(&[
                "/",
                "/system.slice",
                "/kubepods.slice",
                "/kubepods.slice/pod1",
            ]),
        )
        .unwrap_or_else(|gaps| {
            panic!(
                "{:#?}",
                gaps.iter().map(ToString::to_string).collect::<Vec<_>>()
            )
        });
        assert!(k.process_events, "the library has alert rules");
        assert!(!k.rules.is_empty() && !k.network.rules.is_empty());
    }

    #[test]
    fn exec_parent_ancestor_and_uid_become_kernel_filters() {
        let plan = compile_host_rules(
            "      - name: web-shell
        action: deny
        exec: {path: /bin/sh, parent: [/usr/sbin/nginx]}
      - name: under-nginx
        action: kill
        exec: {path: /bin/bash, ancestor: [/usr/sbin/nginx]}
      - name: root-curl
        action: deny
        exec: {path: /usr/bin/curl, uid: [0, 1000]}
",
        );
        let k = kernel_plan(&plan, &tree(&["/"])).unwrap();
        let id = |name: &str| plan.rules.iter().find(|r| r.name == name).unwrap().id;
        let b = &k.binaries;
        // Parent and ancestor need the tasks' binary sets; the same list is one set.
        assert!(b.any());
        let web = &b.rules[&id("web-shell")];
        assert_eq!((web.from, web.except, web.ancestor), (0, 0, 0));
        assert_eq!(web.parent.count_ones(), 1);
        assert_eq!(b.rules[&id("under-nginx")].ancestor, web.parent);
        let curl = &b.rules[&id("root-curl")];
        assert_eq!(curl.uids, [0, 1000]);
        assert!(!curl.uses_sets());
    }

    /// `plan` is refused on the cgroup tree `cgroups` with exactly these gaps, in order, each
    /// message containing its text.
    fn assert_refused(plan: &Plan, cgroups: &[&str], expected: &[&str]) {
        let gaps = kernel_plan(plan, &tree(cgroups)).unwrap_err();
        let text: Vec<String> = gaps.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), expected.len(), "{text:#?}");
        for (got, want) in text.iter().zip(expected) {
            assert!(got.contains(want), "{got}\nexpected: {want}");
        }
    }

    #[test]
    fn network_binary_filters_need_bpf_lsm() {
        let yaml = "policies: [{name: p, select: {host: true}, mode: enforce, rules: [{name: metadata,
  action: deny, network: {ops: [connect], cidr: [169.254.169.254], except_from: [/usr/bin/curl]}}]}]";
        let k = kernel_plan(&compile(yaml), &tree(&["/"])).unwrap();
        let id = k.network.rules[0].id;
        assert_eq!(k.binaries.rules[&id].except, 1);
        assert!(k.binaries.any());

        let gaps = kernel_plan(&compile_without_lsm(yaml), &tree(&["/"])).unwrap_err();
        let text = gaps[0].to_string();
        assert!(
            text.starts_with(
                "`p/metadata`: needs BPF LSM for `from`/`except_from` on a network rule"
            ),
            "{text}"
        );
    }

    #[test]
    fn from_and_except_from_become_binary_set_masks() {
        let plan = compile_host_rules(
            "      - name: shadow
        action: deny
        file: {path: /etc/shadow, ops: [read], except_from: [/usr/sbin/sshd, /usr/bin/login]}
      - name: usr-bin
        action: deny
        file: {path: /usr/bin/**, ops: [write], except_from: [/usr/bin/login, /usr/sbin/sshd]}
      - name: curl-keys
        action: deny
        file: {path: /root/.ssh/**, ops: [read], from: [/usr/bin/curl]}
      - name: ptrace
        action: deny
        kernel: {ops: [ptrace], from: [/usr/bin/gdb]}
      - name: plain
        action: deny
        file: {path: /etc/passwd, ops: [write]}
",
        );
        let k = kernel_plan(&plan, &tree(&["/"])).unwrap();
        let id = |name: &str| plan.rules.iter().find(|r| r.name == name).unwrap().id;
        let b = &k.binaries;
        assert!(b.any());
        // The same list in another order is the same set.
        let shadow = &b.rules[&id("shadow")];
        assert_eq!(shadow.from, 0);
        assert_eq!(shadow.except.count_ones(), 1);
        assert_eq!(&b.rules[&id("usr-bin")], shadow);
        let curl = &b.rules[&id("curl-keys")];
        assert_eq!((curl.from.count_ones(), curl.except), (1, 0));
        assert_ne!(curl.from, shadow.except);
        assert_eq!(b.rules[&id("ptrace")].from.count_ones(), 1);
        assert!(!b.rules.contains_key(&id("plain")));
        // The matcher is policy-lang's binaries automaton: sshd is in the shadow set.
        let index = policy_lang::matcher::PathIndex::new(&plan.maps.binaries);
        let sets = index.matches("/usr/sbin/sshd");
        assert_eq!(sets.len(), 1);
        assert_eq!(1u64 << sets[0], shadow.except);
        assert!(!b.matcher.accepts.is_empty());
    }

    #[test]
    fn without_binary_filters_the_plan_has_none() {
        let plan = compile(FILE_POLICY);
        let k = kernel_plan(&plan, &tree(&["/"])).unwrap();
        assert!(!k.binaries.any());
        assert_eq!(k.binaries, Default::default());
    }

    #[test]
    fn more_than_64_binary_sets_are_refused() {
        let mut yaml = policy_p("{host: true}", "", "");
        for i in 0..65 {
            yaml.push_str(&format!(
                "      - name: r{i}
        action: deny
        file: {{path: /etc/f{i}, ops: [read], from: [/usr/bin/b{i}]}}
"
            ));
        }
        assert_refused(
            &compile(&yaml),
            &["/"],
            &["65 distinct `from`/`except_from` lists"],
        );
    }

    #[test]
    fn every_file_operation_becomes_a_kernel_rule_with_its_ops() {
        let plan = compile(&policy_p(
            "{cgroups: [/a]}",
            "    defaults: {file: deny}\n",
            "      - name: bins
        action: deny
        file: {path: /usr/bin/**, ops: [create, delete, rename, link, chmod, chown, truncate]}
      - name: jit
        action: kill
        file: {path: /tmp/**, ops: [mmap_exec]}
      - name: etc
        action: allow
        file: {path: /etc/**, ops: [read]}
",
        ));
        let k = kernel_plan(&plan, &tree(&["/", "/a"])).unwrap();
        let ops_of = |id: u32| k.rules.iter().find(|r| r.id == id).unwrap().ops;
        use bpf_lsm::plan::ops;
        assert_eq!(
            ops_of(0),
            ops::CREATE
                | ops::DELETE
                | ops::RENAME
                | ops::LINK
                | ops::CHMOD
                | ops::CHMOD_SETUID
                | ops::CHMOD_SETGID
                | ops::CHOWN
                | ops::TRUNCATE
        );
        assert_eq!(ops_of(1), ops::MMAP_EXEC);
        assert_eq!(k.rules[1].action, Action::Kill);
        // The file default deny covers every file operation, as in policy-lang.
        assert_eq!(k.policies[0].file_default, Action::Deny);
    }

    #[test]
    fn alert_rules_run_in_user_space_fed_by_the_process_tracepoints() {
        let yaml = &policy_p(
            "{host: true}",
            "",
            "      - name: shell
        action: alert
        condition: proc.name = sh
      - name: f
        action: deny
        file: {path: /etc/shadow, ops: [read]}
",
        );
        let plan = compile(yaml);
        let k = kernel_plan(&plan, &tree(&["/"])).unwrap();
        assert!(k.process_events);
        assert_eq!(k.rules.len(), 1, "the alert is not a kernel rule");
        let feeds = alert_feeds(&plan);
        assert_eq!(feeds.len(), 1);
        assert!(feeds[0].contains("`p/shell`"), "{}", feeds[0]);
        // Without alert rules the tracepoints stay off.
        let plain = compile(&yaml.replace(
            "action: alert\n        condition: proc.name = sh",
            "action: deny\n        exec: {path: [/bin/sh]}",
        ));
        assert!(!kernel_plan(&plain, &tree(&["/"])).unwrap().process_events);
        // A kernel that does not load tp_btf programs cannot feed them.
        let mut old = plan.clone();
        old.kernel.tp_btf = false;
        assert_refused(&old, &["/"], &["`p/shell`: `alert` rules"]);
        // Without BPF LSM the alert is kept with the network part.
        let (part, dropped) = network_part(&plan);
        assert_eq!(dropped, vec!["p/f"]);
        assert!(kernel_plan(&part, &tree(&["/"])).unwrap().process_events);
    }

    #[test]
    fn without_bpf_lsm_only_the_network_part_is_kept() {
        let set = policy_lang::load_sources([(
            "p.yaml",
            "
policies:
  - name: p
    select: {host: true}
    mode: audit
    defaults: {exec: deny}
    rules:
      - name: f
        action: deny
        file: {path: /etc/shadow, ops: [read]}
      - name: n
        action: deny
        network: {ops: [connect], cidr: [169.254.169.254]}
",
        )])
        .unwrap();
        let no_lsm = KernelFeatures {
            bpf_lsm: false,
            ..KernelFeatures::full()
        };
        let plan = policy_lang::compile(&set, &no_lsm).unwrap();
        let (part, dropped) = network_part(&plan);
        assert_eq!(dropped, vec!["p/f"]);
        assert_eq!(part.rules.len(), 1);
        let k = kernel_plan(&part, &tree(&["/"])).unwrap();
        assert!(k.file_matcher.accepts.is_empty() && k.exec_matcher.accepts.is_empty());
        // The exec default (audit, this policy's mode) is recorded by the exec fallback.
        assert_eq!(k.policies[0].exec_default, Action::Deny);
        assert_eq!(k.policies[0].mode, Mode::Audit);
        assert_eq!(k.exec_mechanism, ExecMechanism::KillAtExec);
        assert_eq!(k.network.rules.len(), 1);
    }

    #[test]
    fn ancestors_of_a_path() {
        assert_eq!(
            self_and_ancestors("/a/b/c"),
            vec!["/a/b/c", "/a/b", "/a", "/"]
        );
        assert_eq!(self_and_ancestors("/"), vec!["/"]);
    }

    #[test]
    fn walks_a_real_directory_tree() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::create_dir_all(dir.path().join("c")).unwrap();
        std::fs::write(dir.path().join("a/cgroup.procs"), "").unwrap();
        let mut paths: Vec<String> = cgroup_tree(dir.path())
            .unwrap()
            .into_iter()
            .map(|n| n.path)
            .collect();
        paths.sort();
        assert_eq!(paths, vec!["/", "/a", "/a/b", "/c"]);
    }

    const NET_POLICY: &str = "
policies:
  - name: egress
    select: {cgroups: [/app.slice/*]}
    mode: enforce
    rules:
      - name: metadata
        action: deny
        network: {cidr: [169.254.169.254, 10.0.0.0/8], ports: ['80', '8000-8100'], ops: [connect]}
      - name: v6
        action: kill
        network: {cidr: ['fd00::/8'], protocol: [udp], ops: [send]}
      - name: ten
        action: allow
        network: {cidr: [10.1.0.0/16], ops: [connect]}
";

    #[test]
    fn network_rules_become_tries_rules_and_attach_points() {
        let plan = compile(NET_POLICY);
        let k = kernel_plan(
            &plan,
            &tree(&[
                "/",
                "/app.slice",
                "/app.slice/a",
                "/app.slice/a/b",
                "/app.slice/c",
            ]),
        )
        .unwrap();
        let n = &k.network;
        assert_eq!(n.mechanism, NetMechanism::Lsm);
        assert!(k.rules.is_empty(), "network rules are not file/exec rules");
        assert_eq!(n.rules.len(), 3);
        let meta = n.rules.iter().find(|r| r.id == 0).unwrap();
        assert_eq!(meta.action, Action::Deny);
        assert_eq!(meta.ops, NetOp::Connect.bit());
        assert_eq!(meta.ports, vec![(80, 80), (8000, 8100)]);
        assert_eq!(
            n.rules.iter().find(|r| r.id == 1).unwrap().action,
            Action::Kill
        );
        // 10.1.0.0/16 carries its covering 10.0.0.0/8's rule too.
        let sixteen = n.v4.iter().find(|p| p.prefix == 16).unwrap();
        assert_eq!(sixteen.rules, vec![0, 2]);
        assert_eq!(n.v4.len(), 3);
        assert_eq!(n.v6.len(), 1);
        // The selectors' patterns can match a cgroup made later anywhere (a, removed and made
        // again, has lost what was attached to it): the programs attach at the root.
        assert_eq!(n.attach_cgroups, vec!["/"]);
        assert!(n.defaults.is_empty());
        // bpf-lsm takes it as it is.
        assert!(bpf_lsm::plan::NetworkPlan::default() != *n);
    }

    /// Compiles `yaml` for a kernel without BPF LSM (cgroup socket hooks, tp_btf, signals).
    pub(crate) fn compile_without_lsm(yaml: &str) -> Plan {
        let set = policy_lang::load_sources([("p.yaml", yaml)])
            .unwrap_or_else(|e| panic!("{}", e.render()));
        let k = KernelFeatures {
            bpf_lsm: false,
            cgroup_sock_addr: true,
            bpf_send_signal: true,
            ..KernelFeatures::full()
        };
        policy_lang::compile(&set, &k).unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn without_bpf_lsm_the_cgroup_programs_take_connect_bind_send_but_not_listen() {
        let plan = compile_without_lsm(&policy_p(
            "{cgroups: [/a]}",
            "    allow_downgrade: true\n",
            "      - name: out
        action: kill
        network: {cidr: [192.0.2.0/24], ops: [connect, send]}
",
        ));
        let k = kernel_plan(&plan, &tree(&["/", "/a"])).unwrap();
        assert_eq!(k.network.mechanism, NetMechanism::CgroupSock);
        // policy-lang: cgroup socket hooks cannot kill, the rule denies.
        assert_eq!(k.network.rules[0].action, Action::Deny);
        assert_eq!(k.network.attach_cgroups, vec!["/"]);

        let plan = compile_without_lsm(&policy_p(
            "{cgroups: [/a]}",
            "    allow_downgrade: true\n    defaults: {network: deny}\n",
            "      - name: srv
        action: deny
        network: {ops: [listen], ports: ['22']}
",
        ));
        assert_refused(
            &plan,
            &["/", "/a"],
            &[
                "`p`: `defaults: {network: deny}` covers `listen`",
                "`p/srv`: needs BPF LSM for listen",
            ],
        );
    }

    #[test]
    fn a_network_default_deny_is_a_kernel_default_with_bpf_lsm() {
        let plan = compile(&policy_p(
            "{cgroups: [/a]}",
            "    defaults: {network: deny}\n",
            "      - name: dns
        action: allow
        network: {cidr: [127.0.0.53], ports: ['53'], protocol: [udp]}
",
        ));
        let k = kernel_plan(&plan, &tree(&["/", "/a"])).unwrap();
        assert_eq!(
            k.network.defaults,
            vec![NetworkDefault {
                policy: 0,
                action: Action::Deny
            }]
        );
        assert_eq!(k.network.rules[0].action, Action::Allow);
    }
}
