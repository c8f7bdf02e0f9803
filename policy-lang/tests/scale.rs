//! 10,000 rules in one policy set load, compile and evaluate correctly.

// Test helpers may unwrap: a panic is a failing test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support {
    pub mod large;
}

use policy_lang::event::{Operation, OwnedEvent, Pod, Process};
use policy_lang::model::FileOp;
use policy_lang::{compile, load_sources, Evaluator, KernelFeatures, Verdict};

#[test]
fn ten_thousand_rules() {
    let files = support::large::policy_set(10, 1000);
    let set = load_sources(files).unwrap_or_else(|e| panic!("{}", e.render()));
    assert_eq!(
        set.policies.iter().map(|p| p.rules.len()).sum::<usize>(),
        10_000
    );
    let plan = compile(&set, &KernelFeatures::full()).unwrap();
    let ev = Evaluator::new(&plan).unwrap();
    let event = |exe: &str, path: &str| OwnedEvent {
        process: Process {
            exe: exe.into(),
            ..Process::default()
        },
        cgroup: "/kubepods.slice/team3/pod/c".into(),
        container_id: None,
        pod: Some(Pod {
            namespace: "team3".into(),
            ..Pod::default()
        }),
        op: Operation::File {
            op: FileOp::Read,
            path: path.into(),
        },
    };
    // team3, rule 600 (kind 0): /srv/app3600/secrets/key600.pem, except /usr/bin/app3.
    let d = ev.decide(&event("/usr/bin/cat", "/srv/app3600/secrets/key600.pem"));
    assert_eq!(
        (d.verdict, d.rule.as_deref()),
        (Verdict::Deny, Some("team3/r600"))
    );
    let d = ev.decide(&event("/usr/bin/app3", "/srv/app3600/secrets/key600.pem"));
    assert_eq!(d.verdict, Verdict::Allow);
    // Kind 4: /data/team3/*/export4/*.csv
    let d = ev.decide(&event("/usr/bin/cat", "/data/team3/x/export4/a.csv"));
    assert_eq!(
        (d.verdict, d.rule.as_deref()),
        (Verdict::Deny, Some("team3/r4"))
    );
    // Another team's rule does not apply here.
    let d = ev.decide(&event("/usr/bin/cat", "/srv/app0/secrets/key0.pem"));
    assert_eq!(d.verdict, Verdict::Allow);
    // Paths up to PATH_MAX are matched.
    let long = format!("/var/lib/svc3001/{}", vec!["d"; 2000].join("/"));
    let mut e = event("/usr/bin/cat", &long);
    e.op = Operation::File {
        op: FileOp::Write,
        path: long.clone(),
    };
    assert_eq!(ev.decide(&e).verdict, Verdict::Deny);
}
