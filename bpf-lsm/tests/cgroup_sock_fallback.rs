//! The network fallback for kernels without BPF LSM, on the machine's own kernel: the
//! `cgroup/connect4|6` programs attached to a fresh cgroup2 directory deny a TCP connect to
//! 127.0.0.2:9 (and to [::1]:9, and to ::ffff:127.0.0.2 from an IPv6 socket) with EPERM inside
//! the cgroup only, and report it on the ring buffer.
//!
//! Needs root and a kernel that loads `cgroup_sock_addr` programs; otherwise it prints why it
//! skips. The process that connects is this test binary run again (`helper_connect`), which
//! moves itself into the cgroup before it creates its socket.

#![allow(clippy::unwrap_used)]

use bpf_lsm::plan::net;
use bpf_lsm::{
    decode_record, Action, CgroupPolicies, KernelPlan, KernelPolicy, Loaded, Mode, NetMechanism,
    NetOp, NetPrefix, NetRule, NetworkPlan, Record,
};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const HELPER_TARGET: &str = "ENF_NET_TEST_CONNECT";
const HELPER_CGROUP: &str = "ENF_NET_TEST_CGROUP";

/// Run by `connect_from` in a child process: connects to `$ENF_NET_TEST_CONNECT` (after
/// moving into `$ENF_NET_TEST_CGROUP` when set) and exits with 0 or the errno. A no-op in a
/// normal test run.
#[test]
fn helper_connect() {
    let Ok(target) = std::env::var(HELPER_TARGET) else {
        return;
    };
    if let Ok(cg) = std::env::var(HELPER_CGROUP) {
        // "0" moves the writing process (the whole thread group).
        std::fs::write(Path::new(&cg).join("cgroup.procs"), "0").unwrap();
    }
    let addr: SocketAddr = target.parse().unwrap();
    let code = match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
        Ok(_) => 0,
        Err(e) => e.raw_os_error().unwrap_or(255),
    };
    std::process::exit(code);
}

/// Connects to `addr` from a child process, inside `cgroup` when given: 0 or the errno.
fn connect_from(addr: SocketAddr, cgroup: Option<&Path>) -> i32 {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "helper_connect",
        "--nocapture",
        "--test-threads",
        "1",
    ])
    .env(HELPER_TARGET, addr.to_string())
    .env_remove(HELPER_CGROUP);
    if let Some(cg) = cgroup {
        cmd.env(HELPER_CGROUP, cg);
    }
    let out = cmd.output().unwrap();
    out.status.code().unwrap_or(-1)
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// A cgroup2 directory, removed when dropped.
struct TestCgroup(PathBuf);

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

const POLICY: u32 = 1;
const DENY_V4: u32 = 10;
const DENY_V6: u32 = 11;
const ALLOW_ALL: u32 = 12;

fn connect_rule(id: u32, action: Action, ports: &[(u16, u16)]) -> NetRule {
    NetRule {
        id,
        policy: POLICY,
        action,
        ops: net::CONNECT,
        families: net::ALL_FAMILIES,
        protocols: net::TCP,
        ports: ports.to_vec(),
    }
}

fn prefix(addr: &str, len: u8, rules: &[u32]) -> NetPrefix {
    NetPrefix {
        addr: addr.parse().unwrap(),
        prefix: len,
        rules: rules.to_vec(),
    }
}

#[test]
fn cgroup_connect_denies_inside_the_cgroup_only() {
    if !is_root() {
        eprintln!("skipped: needs root (cgroup2 and BPF)");
        return;
    }
    let Some(root) = bpf_lsm::probe::cgroup2_mount() else {
        eprintln!("skipped: no cgroup2 mount in /proc/self/mountinfo");
        return;
    };
    let name = format!("enf-net-fallback-{}", std::process::id());
    let dir = root.join(&name);
    std::fs::create_dir(&dir).unwrap();
    let cg = TestCgroup(dir.clone());
    let id = std::fs::metadata(&cg.0).unwrap().ino();

    let plan = KernelPlan {
        cgroup_selectors: Default::default(),
        policies: vec![KernelPolicy {
            id: POLICY,
            mode: Mode::Enforce,
            file_default: Action::Allow,
            exec_default: Action::Allow,
        }],
        cgroups: vec![CgroupPolicies {
            cgroup_id: id,
            policies: vec![POLICY],
        }],
        network: NetworkPlan {
            rules: vec![
                connect_rule(DENY_V4, Action::Deny, &[(9, 9)]),
                connect_rule(DENY_V6, Action::Deny, &[(9, 9)]),
                connect_rule(ALLOW_ALL, Action::Allow, &[]),
            ],
            v4: vec![
                prefix("0.0.0.0", 0, &[ALLOW_ALL]),
                prefix("127.0.0.2", 32, &[DENY_V4, ALLOW_ALL]),
            ],
            v6: vec![prefix("::1", 128, &[DENY_V6])],
            mechanism: NetMechanism::CgroupSock,
            attach_cgroups: vec![format!("/{name}")],
            cgroup2_root: Some(root.clone()),
            ..NetworkPlan::default()
        },
        ..KernelPlan::default()
    };
    let mut loaded = match Loaded::apply(&plan) {
        Ok(l) => l,
        Err(e) if e.raw_os_error().is_some() => {
            eprintln!("skipped: this kernel does not load the programs: {e}");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    assert_eq!(loaded.network_mechanism(), Some(NetMechanism::CgroupSock));
    assert!(loaded.attached().contains(&"enf_cg_connect4"));
    assert!(loaded.attached().contains(&"enf_cg_connect6"));
    assert_eq!(loaded.cgroup_attachments(), std::slice::from_ref(&dir));
    let mut ring = loaded.take_events().unwrap();

    let denied_v4: SocketAddr = "127.0.0.2:9".parse().unwrap();
    let l9 = TcpListener::bind(denied_v4).unwrap();
    let other = TcpListener::bind("127.0.0.2:0").unwrap();
    let other_addr = other.local_addr().unwrap();
    let v6 = TcpListener::bind("[::1]:9").ok();
    // Keep them open until the end.
    let _keep = (&l9, &other, &v6);

    const EPERM: i32 = 1;
    assert_eq!(
        connect_from(denied_v4, Some(&dir)),
        EPERM,
        "inside, 127.0.0.2:9"
    );
    assert_eq!(connect_from(denied_v4, None), 0, "outside, 127.0.0.2:9");
    assert_eq!(
        connect_from(other_addr, Some(&dir)),
        0,
        "inside, {other_addr}"
    );
    let mapped: SocketAddr = "[::ffff:127.0.0.2]:9".parse().unwrap();
    assert_eq!(connect_from(mapped, Some(&dir)), EPERM, "inside, {mapped}");
    assert_eq!(connect_from(mapped, None), 0, "outside, {mapped}");
    let mut expected = vec![
        (IpAddr::from([127, 0, 0, 2]), false),
        (IpAddr::from([127, 0, 0, 2]), true),
    ];
    if v6.is_some() {
        let denied_v6: SocketAddr = "[::1]:9".parse().unwrap();
        assert_eq!(
            connect_from(denied_v6, Some(&dir)),
            EPERM,
            "inside, [::1]:9"
        );
        assert_eq!(connect_from(denied_v6, None), 0, "outside, [::1]:9");
        expected.push(("::1".parse().unwrap(), false));
    } else {
        eprintln!("no ::1 on this machine: the IPv6 case is not run");
    }

    // The deny records, in order: (address, mapped).
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.len() < expected.len() && Instant::now() < deadline {
        while let Some(item) = ring.next() {
            let Record::Net(n) = decode_record(&item).unwrap() else {
                continue;
            };
            assert_eq!(n.header.action, Action::Deny);
            assert_eq!(n.op, NetOp::Connect);
            assert_eq!(n.port, 9);
            assert_eq!(n.protocol, 6);
            assert_eq!(n.header.cgroup_id, id);
            assert_eq!(n.header.policy_id, Some(POLICY));
            assert!(n.by_cgroup_hook());
            let rule = if n.addr.is_ipv4() { DENY_V4 } else { DENY_V6 };
            assert_eq!(n.header.rule_id, Some(rule));
            got.push((n.addr, n.v4_mapped()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(got, expected);
    drop(loaded);
}
