//! Whole pipeline: load -> check -> compile -> `tests:` through the reference evaluator.

// Test helpers may unwrap: a panic is a failing test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use policy_lang::{compile, load_sources, run_tests, KernelFeatures, Verdict};

const WEB: &str = r#"
lists:
  shells: [/bin/sh, /bin/bash, /usr/bin/dash]
macros:
  from_web: proc.ancestors contains nginx
policies:
  - name: web
    description: hardening for the web tier
    select:
      namespaces: [prod]
      labels: {app: web}
      exclude:
        namespaces: [kube-system]
    mode: enforce
    defaults: {network: deny}
    rules:
      - name: no-shells
        message: shell spawned in a web pod
        severity: high
        tags: [T1059]
        action: deny
        exec:
          path: $shells
      - name: shadow-only-sshd
        action: deny
        file:
          path: /etc/shadow
          ops: [read, write]
          except_from: [/usr/sbin/sshd]
      - name: no-ssh-keys
        action: kill
        file:
          path: /home/**/.ssh/id_rsa
      - name: dns
        action: allow
        network:
          ops: [connect, send]
          cidr: [10.96.0.10]
          ports: [53]
      - name: backend
        action: allow
        network:
          ops: [connect]
          protocol: tcp
          cidr: [10.0.0.0/8, "fd00::/8"]
          ports: [8000-8999]
      - name: metadata
        action: deny
        network:
          cidr: [169.254.169.254]
      - name: no-mounts
        action: deny
        kernel:
          ops: [mount, umount, module_load]
          capabilities: [CAP_SYS_ADMIN]
      - name: shell-from-web
        action: alert
        condition: proc.exe in $shells and from_web
  - name: host-baseline
    select: {host: true}
    mode: audit
    rules:
      - name: kexec
        action: deny
        kernel: {ops: [kexec]}
      - name: unshare
        action: kill
        kernel: {syscalls: [unshare]}
tests:
  - name: shell is denied in web pods
    process: {exe: /usr/sbin/nginx, ancestors: [/usr/bin/containerd-shim]}
    pod: {namespace: prod, labels: {app: web}}
    cgroup: /kubepods.slice/pod1/c1
    exec: /bin/bash
    expect: {verdict: deny, rule: web/no-shells}
  - name: shells outside prod are not this policy's business
    process: /usr/sbin/nginx
    pod: {namespace: dev, labels: {app: web}}
    exec: /bin/bash
    expect: allow
  - name: sshd may read shadow
    process: /usr/sbin/sshd
    pod: {namespace: prod, labels: {app: web}}
    file: {op: read, path: /etc/shadow}
    expect: allow
  - name: others may not
    process: /usr/bin/cat
    pod: {namespace: prod, labels: {app: web}}
    file: {op: read, path: /etc/shadow}
    expect: {verdict: deny, rule: web/shadow-only-sshd}
  - name: ssh keys kill
    process: /usr/bin/cat
    pod: {namespace: prod, labels: {app: web}}
    file: {op: read, path: /home/alice/.ssh/id_rsa}
    expect: {verdict: kill, rule: web/no-ssh-keys}
  - name: backend allowed
    process: /usr/bin/app
    pod: {namespace: prod, labels: {app: web}}
    network: {op: connect, addr: 10.1.2.3, port: 8080, protocol: tcp}
    expect: allow
  - name: ipv4-mapped backend allowed
    process: /usr/bin/app
    pod: {namespace: prod, labels: {app: web}}
    network: {op: connect, addr: "::ffff:10.1.2.3", port: 8080, protocol: tcp}
    expect: allow
  - name: other ports hit the default deny
    process: /usr/bin/app
    pod: {namespace: prod, labels: {app: web}}
    network: {op: connect, addr: 10.1.2.3, port: 22, protocol: tcp}
    expect: {verdict: deny, rule: web/default}
  - name: metadata denied even though 0/0 would not be
    process: /usr/bin/app
    pod: {namespace: prod, labels: {app: web}}
    network: {op: connect, addr: 169.254.169.254, port: 80}
    expect: {verdict: deny, rule: web/metadata}
  - name: dns allowed
    process: /usr/bin/app
    pod: {namespace: prod, labels: {app: web}}
    network: {op: send, addr: 10.96.0.10, port: 53, protocol: udp}
    expect: allow
  - name: sys_admin denied
    process: /usr/bin/app
    pod: {namespace: prod, labels: {app: web}}
    kernel: {capability: CAP_SYS_ADMIN}
    expect: {verdict: deny, rule: web/no-mounts}
  - name: kexec audited on the host
    process: /usr/sbin/kexec
    kernel: {op: kexec}
    expect: {verdict: audit, rule: host-baseline/kexec}
  - name: most restrictive wins across policies
    process: /usr/bin/app
    pod: {namespace: prod, labels: {app: web}}
    kernel: {op: mount}
    expect: {verdict: deny, rule: web/no-mounts}
  - name: alert fires
    process: {exe: /bin/sh, ancestors: [/usr/sbin/nginx]}
    pod: {namespace: prod, labels: {app: web}}
    exec: /usr/bin/id
    expect: {verdict: alert, rule: web/shell-from-web}
"#;

/// `yaml` (named `name`) loads, compiles and passes every one of its tests.
fn passes_its_tests(name: &str, yaml: &str) {
    let set = load_sources([(name, yaml)]).unwrap_or_else(|e| panic!("{}", e.render()));
    let plan = compile(&set, &KernelFeatures::full()).unwrap();
    let report = run_tests(&set, &plan).unwrap();
    let text = report.render(&set.sources);
    assert_eq!(report.failed(), 0, "{text}");
    assert_eq!(report.passed(), set.tests.len());
}

#[test]
fn every_test_case_passes() {
    passes_its_tests("web.yaml", WEB);
}

const SETID: &str = r#"
policies:
  - name: setid
    select: {host: true}
    mode: enforce
    rules:
      - name: no-setuid
        action: deny
        file: {path: /**, ops: [chmod], mode: [setuid]}
      - name: audit-setgid
        action: audit
        file: {path: /**, ops: [chmod], mode: setgid}
      - name: chmod-in-etc
        action: audit
        file: {path: /etc/**, ops: [chmod]}
tests:
  - name: u+s is denied
    process: /bin/chmod
    file: {op: chmod, path: /home/u/sh, mode: 4755}
    expect: {verdict: deny, rule: setid/no-setuid}
  - name: g+s is audited
    process: /bin/chmod
    file: {op: chmod, path: /srv/share, mode: "2775"}
    expect: {verdict: audit, rule: setid/audit-setgid}
  - name: a plain chmod is allowed
    process: /bin/chmod
    file: {op: chmod, path: /home/u/sh, mode: "0644"}
    expect: allow
  - name: a chmod without a mode is a plain one
    process: /bin/chmod
    file: {op: chmod, path: /home/u/sh}
    expect: allow
  - name: a chmod rule covers a setgid chmod
    process: /bin/chmod
    file: {op: chmod, path: /etc/ssl/private, mode: 2750}
    expect: {verdict: audit, rule: setid/audit-setgid}
  - name: a chmod rule covers a plain chmod
    process: /bin/chmod
    file: {op: chmod, path: /etc/ssl/private, mode: 750}
    expect: {verdict: audit, rule: setid/chmod-in-etc}
"#;

/// `mode: [setuid, setgid]` picks the chmods that set those bits; `chmod` alone covers all.
#[test]
fn chmod_mode_picks_setuid_and_setgid() {
    passes_its_tests("setid.yaml", SETID);
}

const SYMLINKS: &str = r#"
policies:
  - name: locked
    select: {host: true}
    mode: enforce
    defaults: {file: deny}
    rules:
      - name: tmp
        action: allow
        file: {path: /tmp/**, ops: [create, link]}
      - name: no-links-to-shadow
        action: deny
        file: {path: /etc/shadow, ops: [link, symlink_to]}
tests:
  - name: a symlink to the shadow file is refused by the rule naming symlink_to
    process: /bin/ln
    file: {op: symlink_to, path: /etc/shadow}
    expect: {verdict: deny, rule: locked/no-links-to-shadow}
  - name: the file default does not cover a symlink's target
    process: /bin/ln
    file: {op: symlink_to, path: /usr/bin/python3}
    expect: allow
  - name: the link's own name is still create and link under the default
    process: /bin/ln
    file: {op: link, path: /home/u/python}
    expect: {verdict: deny, rule: locked/default}
"#;

/// `symlink_to` is decided only by rules that name it: a symlink pointing at a program is
/// ordinary, even in a default-deny policy.
#[test]
fn symlink_to_is_left_out_of_the_file_default() {
    passes_its_tests("symlinks.yaml", SYMLINKS);
}

const SUBTREES: &str = r#"
policies:
  - name: nginx
    select:
      cgroups: [/system.slice/nginx.service]
      exclude: {cgroups: [/system.slice/nginx.service/debug]}
    mode: enforce
    rules:
      - name: no-shadow
        action: deny
        file: {path: /etc/shadow}
tests:
  - name: the selected cgroup
    process: /usr/sbin/nginx
    cgroup: /system.slice/nginx.service
    file: {op: read, path: /etc/shadow}
    expect: {verdict: deny, rule: nginx/no-shadow}
  - name: a cgroup below it, as the kernel's inheritance gives
    process: /usr/sbin/nginx
    cgroup: /system.slice/nginx.service/worker/1
    file: {op: read, path: /etc/shadow}
    expect: {verdict: deny, rule: nginx/no-shadow}
  - name: an excluded cgroup and what is below it
    process: /usr/sbin/nginx
    cgroup: /system.slice/nginx.service/debug/shell
    file: {op: read, path: /etc/shadow}
    expect: allow
  - name: a sibling whose name only starts the same
    process: /usr/sbin/nginx
    cgroup: /system.slice/nginx.service2
    file: {op: read, path: /etc/shadow}
    expect: allow
  - name: the parent
    process: /usr/sbin/nginx
    cgroup: /system.slice
    file: {op: read, path: /etc/shadow}
    expect: allow
"#;

/// A cgroup pattern selects the cgroups below a match too, as the daemon resolves them and
/// as the kernel's `cgroup_mkdir` inheritance gives a new one (found by the conformance
/// table: the evaluator used to select the matching cgroup only).
#[test]
fn evaluator_selected_only_the_matching_cgroup_not_its_subtree() {
    passes_its_tests("subtrees.yaml", SUBTREES);
}

#[test]
fn plan_is_json_and_explains_itself() {
    let set = load_sources([("web.yaml", WEB)]).unwrap();
    let plan = compile(&set, &KernelFeatures::full()).unwrap();
    let json = serde_json::to_string(&plan).unwrap();
    let back: policy_lang::Plan = serde_json::from_str(&json).unwrap();
    assert_eq!(back, plan);
    let text = policy_lang::explain(&plan);
    assert!(text.contains("lsm/bprm_check_security"), "{text}");
    assert!(text.contains("denied by BPF LSM"), "{text}");
    assert!(text.contains("estimated kernel memory"), "{text}");
}

#[test]
fn weaker_kernel_needs_consent() {
    let set = load_sources([("web.yaml", WEB)]).unwrap();
    let no_lsm = KernelFeatures {
        bpf_send_signal: true,
        cgroup_sock_addr: true,
        kprobes: true,
        tp_btf: true,
        ..KernelFeatures::default()
    };
    let err = compile(&set, &no_lsm).unwrap_err();
    let text = policy_lang::render_all(&err, &set.sources);
    assert!(
        text.contains("error[E0801]: rule `no-shells` (`deny`) cannot be enforced on this kernel"),
        "{text}"
    );
    assert!(text.contains("help: set `allow_downgrade: true`"), "{text}");

    let consented = WEB.replace(
        "    mode: enforce\n",
        "    mode: enforce\n    allow_downgrade: true\n",
    );
    let set = load_sources([("web.yaml", consented)]).unwrap();
    let plan = compile(&set, &no_lsm).unwrap();
    let ev = policy_lang::Evaluator::new(&plan).unwrap();
    let shell = &set.tests[0].event;
    let d = ev.decide(shell);
    assert_eq!(
        d.verdict,
        Verdict::Kill,
        "deny becomes kill-at-exec without LSM"
    );
    let text = policy_lang::explain(&plan);
    assert!(text.contains("downgraded"), "{text}");
}

const EXEC_RULES: &str = "
policies:
  - name: p
    select: {cgroups: [/jobs]}
    mode: enforce
    rules:
      - name: no-nc
        action: deny
        exec: {path: /usr/bin/nc}
      - name: kill-ncat
        action: kill
        exec: {path: /usr/bin/ncat}
      - name: watch-curl
        action: audit
        exec: {path: /usr/bin/curl}
";

/// Without BPF LSM an exec is killed at exec (tp_btf/sched_process_exec) instead of refused:
/// a `deny` is weaker and needs the rule's or policy's explicit opt-in, `kill` means the same,
/// `audit` stays audit, and `--explain` says what happens.
#[test]
fn exec_without_bpf_lsm_is_killed_at_exec_and_a_deny_needs_consent() {
    use policy_lang::plan::Enforcement;
    let no_lsm = KernelFeatures {
        bpf_lsm: false,
        kprobes: false,
        lsm_cgroup: false,
        ..KernelFeatures::full()
    };
    let set = load_sources([("p.yaml", EXEC_RULES)]).unwrap();
    let err = compile(&set, &no_lsm).unwrap_err();
    let text = policy_lang::render_all(&err, &set.sources);
    assert!(
        text.contains("error[E0801]: rule `no-nc` (`deny`) cannot be enforced on this kernel")
            && text.contains("the exec succeeds and the process is killed before it runs")
            && text.contains("help: set `allow_downgrade: true` on the rule or policy"),
        "{text}"
    );
    assert!(
        !text.contains("kill-ncat") && !text.contains("watch-curl"),
        "{text}"
    );

    let consented = EXEC_RULES.replace(
        "        action: deny\n",
        "        action: deny\n        allow_downgrade: true\n",
    );
    let set = load_sources([("p.yaml", consented)]).unwrap();
    let plan = compile(&set, &no_lsm).unwrap();
    let e: Vec<_> = plan.rules.iter().map(|r| r.enforcement).collect();
    assert_eq!(
        e,
        [
            Enforcement::KillAtExec,
            Enforcement::KillAtExec,
            Enforcement::KernelAudit
        ]
    );
    assert!(plan.rules[0].downgrade.is_some() && plan.rules[1].downgrade.is_none());
    assert!(plan
        .hooks
        .iter()
        .any(|h| h.program == "tp_btf/sched_process_exec"));
    let text = policy_lang::explain(&plan);
    let line = |name: &str| {
        text.lines()
            .find(|l| l.contains(&format!("rule `{name}`")))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        line("no-nc").contains(
            "killed at exec (no BPF LSM): the exec succeeds at the system call level; the \
             process is killed before it runs (downgraded: "
        ),
        "{text}"
    );
    assert!(
        line("kill-ncat").contains("killed at exec") && !line("kill-ncat").contains("downgraded"),
        "{text}"
    );
    assert!(
        line("watch-curl").contains("audited in the kernel, not denied"),
        "{text}"
    );

    // Without tp_btf there is no fallback: the kill is only recorded, a downgrade to consent to.
    let no_tp = KernelFeatures {
        tp_btf: false,
        ..no_lsm
    };
    let err = compile(&set, &no_tp).unwrap_err();
    let text = policy_lang::render_all(&err, &set.sources);
    assert!(
        text.contains("rule `kill-ncat` (`kill`) cannot be enforced"),
        "{text}"
    );
}

/// Without BPF LSM the kernel records file and kernel operations through kprobes: a kernel
/// with neither can do nothing for them, and the plan must not claim `kernel_audit`.
#[test]
fn nothing_is_claimed_that_the_kernel_cannot_do() {
    let policy = |action: &str, extra: &str, consent: &str| {
        format!(
            "policies:\n  - name: p\n    select: {{host: true}}\n    mode: enforce\n{consent}\
             {extra}    rules:\n      - name: r\n        action: {action}\n        \
             file: {{path: /etc/shadow}}\n"
        )
    };
    let bare = KernelFeatures {
        bpf_send_signal: true,
        cgroup_sock_addr: true,
        ..KernelFeatures::default()
    };
    let with_kprobes = KernelFeatures {
        kprobes: true,
        ..bare
    };
    for (action, extra, code) in [
        ("audit", "", "E0801"),
        ("deny", "", "E0801"),
        ("allow", "    defaults: {file: deny}\n", "E0802"),
    ] {
        let text = policy(action, extra, "");
        let set = load_sources([("p.yaml", text.as_str())]).unwrap();
        let err = compile(&set, &bare).unwrap_err();
        let rendered = policy_lang::render_all(&err, &set.sources);
        assert!(rendered.contains(code), "{action}: {rendered}");
        assert!(
            rendered.contains("neither BPF LSM nor kprobes"),
            "{action}: {rendered}"
        );
        // Accepted, it is said to be unenforced, needs no hook and decides nothing.
        let text = policy(action, extra, "    allow_downgrade: true\n");
        let set = load_sources([("p.yaml", text.as_str())]).unwrap();
        let plan = compile(&set, &bare).unwrap();
        let unenforced = plan
            .rules
            .iter()
            .map(|r| r.enforcement)
            .chain(
                plan.policies[0]
                    .defaults
                    .iter()
                    .filter_map(|d| d.enforcement),
            )
            .any(|e| e == policy_lang::plan::Enforcement::Unenforced);
        assert!(unenforced, "{action}: {plan:#?}");
        assert!(
            !plan.hooks.iter().any(|h| h.program.starts_with("kprobe/")),
            "{action}: {:?}",
            plan.hooks
        );
        let ev = policy_lang::Evaluator::new(&plan).unwrap();
        let read = policy_lang::event::OwnedEvent {
            process: Default::default(),
            cgroup: "/".into(),
            container_id: None,
            pod: None,
            op: policy_lang::event::Operation::File {
                op: policy_lang::model::FileOp::Read,
                path: "/etc/shadow".into(),
            },
        };
        assert_eq!(ev.decide(&read).verdict, Verdict::Allow, "{action}");
        // With kprobes the kernel records it.
        let plan = compile(&set, &with_kprobes).unwrap();
        assert!(plan
            .hooks
            .iter()
            .any(|h| h.program == "kprobe/security_file_open"));
    }
    // System calls are seen by a tracepoint: no kprobes needed.
    let set = load_sources([(
        "p.yaml",
        "policies:\n  - name: p\n    select: {host: true}\n    mode: enforce\n    rules:\n      \
         - name: r\n        action: audit\n        kernel: {syscalls: [unshare]}\n",
    )])
    .unwrap();
    assert!(compile(&set, &bare).is_ok());
}

#[test]
fn file_order_never_changes_a_verdict() {
    let a = r#"
policies:
  - name: a
    select: {host: true}
    mode: enforce
    rules:
      - {name: x, action: audit, file: {path: /etc/**}}
"#;
    let b = r#"
policies:
  - name: b
    select: {host: true}
    mode: enforce
    rules:
      - {name: y, action: deny, file: {path: /etc/passwd, ops: [write]}}
"#;
    let ab = load_sources([("a.yaml", a), ("b.yaml", b)]).unwrap();
    let ba = load_sources([("b.yaml", b), ("a.yaml", a)]).unwrap();
    let k = KernelFeatures::full();
    let (pa, pb) = (compile(&ab, &k).unwrap(), compile(&ba, &k).unwrap());
    let (ea, eb) = (
        policy_lang::Evaluator::new(&pa).unwrap(),
        policy_lang::Evaluator::new(&pb).unwrap(),
    );
    for (op, path) in [
        ("write", "/etc/passwd"),
        ("read", "/etc/passwd"),
        ("read", "/etc/x"),
    ] {
        let ev = policy_lang::event::OwnedEvent {
            process: Default::default(),
            cgroup: "/".into(),
            container_id: None,
            pod: None,
            op: policy_lang::event::Operation::File {
                op: policy_lang::model::FileOp::from_name(op).unwrap(),
                path: path.into(),
            },
        };
        assert_eq!(ea.decide(&ev), eb.decide(&ev));
    }
}
