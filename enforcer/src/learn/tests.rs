#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failure

use super::*;
use policy_lang::event::{Operation, OwnedEvent, Process as EvProcess};
use policy_lang::{Evaluator, KernelFeatures, Verdict as EvVerdict};
use siem_export::event::{
    AddressFamily, ByteText, Cgroup, Direction, ExecTarget, FileTarget, NetworkTarget,
    Protocol as EvProtocol,
};
use siem_export::{EventId, Severity};

const TEMPLATE: &str = include_str!("../../../rules/templates/default-deny-namespace.yaml");
const CGROUP: &str = "/hardened.slice/app.service";
const BASE_NS: i64 = 1_763_700_000 * 1_000_000_000;

fn at(sec: i64) -> Timestamp {
    Timestamp::from_unix_nanos(BASE_NS + sec * 1_000_000_000)
}

fn event(i: u64, sec: i64, class: EventClass, op: &str, target: Target) -> SecurityEvent {
    let t = at(sec);
    let mut ev = SecurityEvent::new(t, "node", Verdict::Audited, class, op, Severity::High);
    ev.id = EventId::from_time_and_tail(t, u128::from(i) + 1);
    ev.policy = Some("hardened".into());
    ev.rule = Some(DEFAULT_RULE.into());
    ev.message = "not allowed by the policy's default posture".into();
    ev.cgroup = Some(Cgroup {
        id: 42,
        path: Some(ByteText::new(CGROUP.as_bytes().to_vec())),
    });
    ev.target = Some(target);
    ev
}

fn exec(i: u64, sec: i64, path: &str) -> SecurityEvent {
    event(
        i,
        sec,
        EventClass::Exec,
        "exec",
        Target::Exec(ExecTarget {
            path: ByteText::new(path.as_bytes().to_vec()),
            argv: Vec::new(),
            argv_truncated: false,
        }),
    )
}

const WRITE: u32 = 0o1 | 0o100; // O_WRONLY | O_CREAT
const APPEND: u32 = 0o1 | 0o2000;

fn open(i: u64, sec: i64, path: &str, flags: u32) -> SecurityEvent {
    event(
        i,
        sec,
        EventClass::File,
        "open",
        Target::File(FileTarget {
            path: ByteText::new(path.as_bytes().to_vec()),
            flags: Some(flags),
            mode: None,
            operation: Some("open".into()),
            path_truncated: false,
            second_path: None,
        }),
    )
}

fn connect(i: u64, sec: i64, addr: &str, port: u16) -> SecurityEvent {
    let ip: IpAddr = addr.parse().unwrap();
    event(
        i,
        sec,
        EventClass::Network,
        "connect",
        Target::Network(NetworkTarget {
            family: if ip.is_ipv4() {
                AddressFamily::Ipv4
            } else {
                AddressFamily::Ipv6
            },
            protocol: Some(EvProtocol::Tcp),
            direction: Direction::Egress,
            src_ip: None,
            src_port: None,
            dst_ip: Some(ip),
            dst_port: Some(port),
            unix_path: None,
        }),
    )
}

/// A service's week: a few binaries, its own files, two backends.
fn service_events() -> Vec<SecurityEvent> {
    let mut evs = Vec::new();
    let mut i = 0;
    let mut next = || {
        i += 1;
        i
    };
    for round in 0..4 {
        let s = round * 60;
        evs.push(exec(next(), s, "/usr/bin/date"));
        evs.push(exec(next(), s + 1, "/bin/busybox"));
        evs.push(open(
            next(),
            s + 2,
            &format!("/srv/app/data/{round}.json"),
            WRITE,
        ));
        evs.push(open(next(), s + 3, "/srv/app/app.log", APPEND));
        evs.push(open(next(), s + 4, "/tmp/app.pid", WRITE));
        evs.push(connect(next(), s + 5, "127.0.0.1", 8080));
        evs.push(connect(next(), s + 6, "::ffff:10.0.0.7", 5432));
    }
    evs.push(connect(next(), 300, "fd00::1", 8080));
    evs
}

fn render(l: &Learned) -> String {
    render_rules(l, GlobOptions::default(), 0, &BTreeSet::new())
}

#[test]
fn file_ops_from_open_flags_and_named_operations() {
    assert_eq!(file_ops("open", Some("open"), Some(0)), vec![FileOp::Read]);
    assert_eq!(file_ops("open", None, Some(WRITE)), vec![FileOp::Write]);
    assert_eq!(
        file_ops("open", None, Some(APPEND)),
        vec![FileOp::Write, FileOp::Append]
    );
    assert_eq!(
        file_ops("open", None, Some(0o2)),
        vec![FileOp::Read, FileOp::Write]
    );
    assert_eq!(file_ops("open", None, Some(0x20)), vec![FileOp::Exec]);
    // Operations other hooks report are taken as they are named.
    assert_eq!(file_ops("create", None, None), vec![FileOp::Create]);
    assert_eq!(file_ops("path", Some("unlink"), None), vec![FileOp::Delete]);
    assert_eq!(file_ops("chmod", Some("chmod"), None), vec![FileOp::Chmod]);
    assert_eq!(
        file_ops("chmod", Some("chmod_setuid+chmod_setgid"), None),
        vec![FileOp::Chmod]
    );
    assert!(file_ops("ioctl", None, None).is_empty());
    assert!(file_ops("open", None, None).is_empty());
}

#[test]
fn paths_the_language_cannot_write_become_one_component_wildcards() {
    assert_eq!(
        policy_path(b"/srv/app/x.log").as_deref(),
        Some("/srv/app/x.log")
    );
    assert_eq!(policy_path(b"/srv/a*b/x").as_deref(), Some("/srv/*/x"));
    assert_eq!(policy_path(b"/srv/\xff\xfe/x").as_deref(), Some("/srv/*/x"));
    assert_eq!(policy_path(b"/srv/a\nb").as_deref(), Some("/srv/*"));
    assert_eq!(policy_path(b"pipe:[1234]"), None);
    assert_eq!(policy_path(b"/").as_deref(), Some("/"));
}

fn seen(n: u64) -> Seen {
    Seen {
        count: n,
        first: at(0),
        last: at(10),
    }
}

#[test]
fn directories_become_globs_at_the_threshold_and_depth() {
    let opts = GlobOptions::default();
    let paths = |ps: &[&str]| -> BTreeMap<String, Seen> {
        ps.iter().map(|p| (p.to_string(), seen(2))).collect()
    };
    // Two files under one directory: exact.
    let two = group_paths(&paths(&["/srv/app/a", "/srv/app/b"]), opts);
    let pats: Vec<&str> = two.iter().map(|e| e.pattern.as_str()).collect();
    assert_eq!(pats, ["/srv/app/a", "/srv/app/b"]);
    // Three: the directory, with what it stands for.
    let three = group_paths(&paths(&["/srv/app/a", "/srv/app/b", "/srv/app/c"]), opts);
    assert_eq!(three.len(), 1);
    assert_eq!(three[0].pattern, "/srv/app/**");
    assert_eq!(three[0].paths, 3);
    assert_eq!(three[0].seen.count, 6);
    // Directories one below the root are never globbed.
    let tmp = group_paths(&paths(&["/tmp/a", "/tmp/b", "/tmp/c", "/tmp/d"]), opts);
    assert_eq!(tmp.len(), 4);
    // Entries that vary are subdirectories: the shallowest qualifying directory wins.
    let nested = group_paths(
        &paths(&[
            "/var/lib/app/1/x",
            "/var/lib/app/2/x",
            "/var/lib/app/3/x",
            "/var/log/app.log",
        ]),
        opts,
    );
    let pats: Vec<&str> = nested.iter().map(|e| e.pattern.as_str()).collect();
    assert_eq!(pats, ["/var/lib/app/**", "/var/log/app.log"]);
    // A lower threshold globs sooner.
    let low = group_paths(
        &paths(&["/srv/app/a", "/srv/app/b"]),
        GlobOptions {
            min_entries: 2,
            ..opts
        },
    );
    assert_eq!(low[0].pattern, "/srv/app/**");
}

#[test]
fn aggregation_counts_times_and_separates_rules_from_defaults() {
    let mut evs = service_events();
    // A deny rule's event, another policy's, an allowed one: not allow rules.
    let mut by_rule = open(900, 10, "/etc/shadow", 0);
    by_rule.rule = Some("no-shadow".into());
    let mut other = exec(901, 10, "/usr/bin/other");
    other.policy = Some("else".into());
    let mut allowed = exec(902, 10, "/usr/bin/allowed");
    allowed.verdict = Verdict::Allowed;
    let mut truncated = open(903, 10, "/x/y", WRITE);
    if let Some(Target::File(f)) = &mut truncated.target {
        f.path_truncated = true;
    }
    evs.extend([by_rule, other, allowed, truncated]);
    let l = Learned::from_events("hardened", &evs);
    assert_eq!(l.events, 4 * 7 + 1 + 2);
    assert_eq!(l.exec.len(), 2);
    let date = l.exec["/usr/bin/date"];
    assert_eq!((date.count, date.first, date.last), (4, at(0), at(180)));
    assert!(!l.exec.contains_key("/usr/bin/other") && !l.exec.contains_key("/usr/bin/allowed"));
    assert_eq!(l.file[&FileOp::Write].len(), 4 + 1 + 1);
    assert_eq!(l.file[&FileOp::Append].len(), 1);
    assert_eq!(l.by_rule["no-shadow"].count, 1);
    assert_eq!(l.skipped.values().map(|s| s.count).sum::<u64>(), 1);
    // IPv4-mapped addresses are learned as IPv4.
    let tcp = &l.network[&NetKey {
        op: NetOp::Connect,
        protocol: Some(Protocol::Tcp),
    }];
    assert!(tcp.contains_key(&"10.0.0.7".parse::<IpAddr>().unwrap()));
    assert_eq!(l.cgroups[CGROUP].count, l.events);
}

#[test]
fn rules_are_grouped_sorted_commented_and_deterministic() {
    let evs = service_events();
    let text = render(&Learned::from_events("hardened", &evs));
    assert_eq!(text, EXPECTED_RULES, "{text}");
    // Same events in another order: the same text.
    let mut shuffled = evs.clone();
    shuffled.reverse();
    shuffled.rotate_left(5);
    assert_eq!(render(&Learned::from_events("hardened", &shuffled)), text);
}

const EXPECTED_RULES: &str = "\
# exec: 2 binaries, 8 events, 2025-11-21T04:40:00Z .. 2025-11-21T04:43:01Z
- name: learned-exec
  message: learned from audit events
  action: allow
  exec:
    path:
      - /bin/busybox  # 4 events, 2025-11-21T04:40:01Z .. 2025-11-21T04:43:01Z
      - /usr/bin/date  # 4 events, 2025-11-21T04:40:00Z .. 2025-11-21T04:43:00Z
# file write: 6 paths as 3 patterns, 12 events, 2025-11-21T04:40:02Z .. 2025-11-21T04:43:04Z
- name: learned-file-write
  message: learned from audit events
  action: allow
  file:
    ops: [write]
    path:
      - /srv/app/app.log  # 4 events, 2025-11-21T04:40:03Z .. 2025-11-21T04:43:03Z
      - /srv/app/data/**  # 4 paths, 4 events, 2025-11-21T04:40:02Z .. 2025-11-21T04:43:02Z
      - /tmp/app.pid  # 4 events, 2025-11-21T04:40:04Z .. 2025-11-21T04:43:04Z
# file append: 1 path as 1 pattern, 4 events, 2025-11-21T04:40:03Z .. 2025-11-21T04:43:03Z
- name: learned-file-append
  message: learned from audit events
  action: allow
  file:
    ops: [append]
    path:
      - /srv/app/app.log  # 4 events, 2025-11-21T04:40:03Z .. 2025-11-21T04:43:03Z
# network connect tcp: 1 address, 1 port, 4 events
- name: learned-connect-tcp
  message: learned from audit events
  action: allow
  network:
    ops: [connect]
    protocol: tcp
    cidr:
      - 10.0.0.7/32  # 4 events, 2025-11-21T04:40:06Z .. 2025-11-21T04:43:06Z
    ports: [5432]
# network connect tcp: 2 addresses, 1 port, 5 events
- name: learned-connect-tcp-2
  message: learned from audit events
  action: allow
  network:
    ops: [connect]
    protocol: tcp
    cidr:
      - 127.0.0.1/32  # 4 events, 2025-11-21T04:40:05Z .. 2025-11-21T04:43:05Z
      - \"fd00::1/128\"  # 1 event, 2025-11-21T04:45:00Z
    ports: [8080]
";

/// The template with the learned rules merged in, loaded and compiled.
fn merged_plan(evs: &[SecurityEvent]) -> (String, policy_lang::Plan) {
    let l = Learned::from_events("hardened", evs);
    let taken = merge::rule_names(TEMPLATE, "t.yaml", "hardened").unwrap();
    assert!(taken.contains("reads"));
    let text = merge::into_policy(TEMPLATE, "t.yaml", "hardened", |indent| {
        format!(
            "{}{}",
            render_review(&l, indent),
            render_rules(&l, GlobOptions::default(), indent, &taken)
        )
    })
    .unwrap();
    let set = policy_lang::load_sources([("t.yaml", text.as_str())])
        .unwrap_or_else(|e| panic!("{}\n{text}", e.render()));
    let plan = policy_lang::compile(&set, &KernelFeatures::full())
        .unwrap_or_else(|d| panic!("{}", policy_lang::render_all(&d, &set.sources)));
    // The template's own tests still pass except the ones the learned rules change.
    (text, plan)
}

fn decide(plan: &policy_lang::Plan, op: Operation) -> (EvVerdict, Option<String>) {
    let ev = OwnedEvent {
        process: EvProcess {
            exe: "/bin/sh".into(),
            ..EvProcess::default()
        },
        cgroup: CGROUP.into(),
        container_id: None,
        pod: None,
        op,
    };
    let d = Evaluator::new(plan).unwrap().decide(&ev);
    (d.verdict, d.rule)
}

/// The evaluator's operations for a stored event.
fn operations(ev: &SecurityEvent) -> Vec<Operation> {
    match ev.target.as_ref().unwrap() {
        Target::Exec(e) => vec![Operation::Exec {
            path: e.path.to_string_lossy().into_owned(),
            cmdline: String::new(),
        }],
        Target::File(f) => file_ops(&ev.operation, f.operation.as_deref(), f.flags)
            .into_iter()
            .map(|op| Operation::File {
                op,
                path: f.path.to_string_lossy().into_owned(),
            })
            .collect(),
        Target::Network(n) => vec![Operation::Network {
            op: NetOp::Connect,
            addr: n.dst_ip.unwrap(),
            port: n.dst_port.unwrap(),
            protocol: Protocol::Tcp,
        }],
        Target::Kernel(_) => Vec::new(),
    }
}

#[test]
fn the_learned_policy_allows_what_was_observed_and_nothing_like_it() {
    let evs = service_events();
    // Before: the template alone would deny (audit) every one of them.
    let set = policy_lang::load_sources([("t.yaml", TEMPLATE)]).unwrap();
    let before = policy_lang::compile(&set, &KernelFeatures::full()).unwrap();
    for ev in &evs {
        for op in operations(ev) {
            assert_eq!(
                decide(&before, op.clone()),
                (EvVerdict::Audit, Some("hardened/default".into())),
                "{op:?}"
            );
        }
    }
    let (text, after) = merged_plan(&evs);
    for ev in &evs {
        for op in operations(ev) {
            assert_eq!(
                decide(&after, op.clone()).0,
                EvVerdict::Allow,
                "{op:?}\n{text}"
            );
        }
    }
    // What was not observed stays a would-deny.
    let not_seen = [
        Operation::Exec {
            path: "/usr/bin/curl".into(),
            cmdline: String::new(),
        },
        Operation::File {
            op: FileOp::Write,
            path: "/etc/passwd".into(),
        },
        Operation::File {
            op: FileOp::Append,
            path: "/srv/app/data/0.json".into(),
        },
        Operation::File {
            op: FileOp::Write,
            path: "/tmp/other".into(),
        },
        Operation::Network {
            op: NetOp::Connect,
            addr: "10.0.0.7".parse().unwrap(),
            port: 8080,
            protocol: Protocol::Tcp,
        },
        Operation::Network {
            op: NetOp::Connect,
            addr: "127.0.0.1".parse().unwrap(),
            port: 5432,
            protocol: Protocol::Tcp,
        },
        Operation::Network {
            op: NetOp::Connect,
            addr: "127.0.0.1".parse().unwrap(),
            port: 8080,
            protocol: Protocol::Udp,
        },
    ];
    for op in not_seen {
        assert_eq!(
            decide(&after, op.clone()),
            (EvVerdict::Audit, Some("hardened/default".into())),
            "{op:?}\n{text}"
        );
    }
    // The template's header, comments and rules are kept.
    assert!(text.starts_with("# Default-deny hardening"));
    assert!(text.contains("cgroups: [/hardened.slice/**]") && text.contains("mode: audit"));
    assert!(text.contains("      - name: reads\n"));
    assert!(text.contains("      - name: learned-exec\n"));
}

#[test]
fn the_template_header_output_checks_and_lists_the_cgroups() {
    let mut evs = service_events();
    let mut by_rule = open(900, 10, "/etc/shadow", 0);
    by_rule.rule = Some("no-shadow".into());
    evs.push(by_rule);
    let l = Learned::from_events("hardened", &evs);
    let text = template_file("hardened", &l, GlobOptions::default(), "`events.db`");
    let set = policy_lang::load_sources([("learned.yaml", text.as_str())])
        .unwrap_or_else(|e| panic!("{}\n{text}", e.render()));
    assert_eq!(set.policies[0].name, "hardened");
    assert!(
        text.contains(&format!("      cgroups:\n        - {CGROUP}\n")),
        "{text}"
    );
    assert!(
        text.contains("    mode: audit\n    defaults: {exec: deny, file: deny, network: deny}\n")
    );
    assert!(text.contains("# review: rule `no-shadow` decided 1 event"));
    policy_lang::compile(&set, &KernelFeatures::full())
        .unwrap_or_else(|d| panic!("{}", policy_lang::render_all(&d, &set.sources)));
}

#[test]
fn merging_into_policies_with_and_without_rules_and_refusing_flow_style() {
    let evs = [exec(1, 0, "/usr/bin/date")];
    let l = Learned::from_events("hardened", &evs);
    let rules = |indent: usize| render_rules(&l, GlobOptions::default(), indent, &BTreeSet::new());
    let no_rules = "\
policies:
  - name: other
    select: {host: true}
    mode: enforce
  - name: hardened
    select: {cgroups: [/a]}
    mode: audit   # keep
    defaults: {exec: deny}
";
    let out = merge::into_policy(no_rules, "f", "hardened", rules).unwrap();
    assert!(
        out.contains("    mode: audit   # keep\n    rules:\n      # exec: 1 binary, 1 event"),
        "{out}"
    );
    let set = policy_lang::load_sources([("f", out.as_str())])
        .unwrap_or_else(|e| panic!("{}\n{out}", e.render()));
    assert_eq!(set.policies[1].rules.len(), 1);

    let null_rules = "policies:\n  - name: hardened\n    select: {host: true}\n    mode: audit\n    defaults: {exec: deny}\n    rules:\n";
    let out = merge::into_policy(null_rules, "f", "hardened", rules).unwrap();
    policy_lang::load_sources([("f", out.as_str())])
        .unwrap_or_else(|e| panic!("{}\n{out}", e.render()));

    // An existing rule named like a learned one: the learned one gets a suffix.
    let with_rules = "policies:\n  - name: hardened\n    select: {host: true}\n    mode: audit\n    defaults: {exec: deny}\n    rules:\n      - name: learned-exec\n        action: allow\n        exec: {path: /bin/sh}\n";
    let taken = merge::rule_names(with_rules, "f", "hardened").unwrap();
    let out = merge::into_policy(with_rules, "f", "hardened", |i| {
        render_rules(&l, GlobOptions::default(), i, &taken)
    })
    .unwrap();
    assert!(out.contains("      - name: learned-exec-2\n"), "{out}");
    policy_lang::load_sources([("f", out.as_str())])
        .unwrap_or_else(|e| panic!("{}\n{out}", e.render()));

    // Appended after the last rule and the list's own comments, before what follows.
    let followed = "policies:\n  - name: hardened\n    select: {host: true}\n    mode: audit\n    defaults: {exec: deny}\n    rules:\n      - name: a\n        action: allow\n        exec: {path: /bin/sh}\n      # the list's last comment\n\n  # the next policy\n  - name: other\n    select: {host: true}\n    mode: audit\n";
    let out = merge::into_policy(followed, "f", "hardened", rules).unwrap();
    assert!(
        out.contains("      # the list's last comment\n      # exec: 1 binary")
            && out.contains("/usr/bin/date  # 1 event, 2025-11-21T04:40:00Z\n\n  # the next policy\n  - name: other\n"),
        "{out}"
    );
    let set = policy_lang::load_sources([("f", out.as_str())])
        .unwrap_or_else(|e| panic!("{}\n{out}", e.render()));
    assert_eq!(set.policies[0].rules.len(), 2);
    assert_eq!(set.policies[1].rules.len(), 0);

    let flow = "policies:\n  - {name: hardened, select: {host: true}, mode: audit, rules: [{name: a, action: allow, exec: {path: /x}}]}\n";
    assert!(matches!(
        merge::into_policy(flow, "f", "hardened", rules),
        Err(merge::MergeError::FlowStyle { .. })
    ));
    let err = merge::into_policy(no_rules, "f", "hardend", rules).unwrap_err();
    assert_eq!(
        err.to_string(),
        "`f` has no policy named `hardend` (it has: other, hardened); pass the file that defines it"
    );
}
