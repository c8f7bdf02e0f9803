//! Network rules through BPF LSM (`socket_connect`, `socket_bind`, `socket_listen`), driven
//! directly through `bpf_lsm::Loaded::apply`: busybox `nc` connects, binds and listens from
//! inside or outside a target cgroup, against listeners of this process on loopback.

use std::net::{IpAddr, TcpListener};
use std::process::Command;

use anyhow::{ensure, Context, Result};
use bpf_lsm::plan::net;
use bpf_lsm::{
    decode_record, Action, CgroupPolicies, EventRing, KernelPlan, KernelPolicy, Loaded, Mode,
    NetMechanism, NetOp, NetPrefix, NetRecord, NetRule, NetworkPlan, Record,
};

use super::cgroup::Cgroup;
use super::command::{capture, Captured};
use super::Test;

pub const TESTS: &[Test] = &[
    Test::new("connect_deny_inside_only", connect_deny_inside_only),
    Test::new("bind_and_listen_deny", bind_and_listen_deny),
    Test::new(
        "audit_mode_allows_and_records",
        audit_mode_allows_and_records,
    ),
    Test::new("cidr_and_port_ranges", cidr_and_port_ranges),
    Test::new("cgroup_created_after_load", cgroup_created_after_load),
];

const POLICY: u32 = 3;

fn rule(id: u32, action: Action, ops: u32, ports: &[(u16, u16)]) -> NetRule {
    NetRule {
        id,
        policy: POLICY,
        action,
        ops,
        families: net::ALL_FAMILIES,
        protocols: net::TCP,
        ports: ports.to_vec(),
    }
}

fn prefix(addr: &str, len: u8, rules: &[u32]) -> Result<NetPrefix> {
    Ok(NetPrefix {
        addr: addr.parse().context("address")?,
        prefix: len,
        rules: rules.to_vec(),
    })
}

fn plan(cg: &Cgroup, mode: Mode, network: NetworkPlan) -> Result<KernelPlan> {
    Ok(KernelPlan {
        cgroup_selectors: Default::default(),
        policies: vec![KernelPolicy {
            id: POLICY,
            mode,
            file_default: Action::Allow,
            exec_default: Action::Allow,
        }],
        cgroups: vec![CgroupPolicies {
            cgroup_id: cg.id()?,
            policies: vec![POLICY],
        }],
        network: NetworkPlan {
            mechanism: NetMechanism::Lsm,
            ..network
        },
        ..KernelPlan::default()
    })
}

fn load(plan: &KernelPlan) -> Result<(Loaded, EventRing)> {
    let mut loaded = Loaded::apply(plan).map_err(|e| anyhow::anyhow!("{e}"))?;
    ensure!(
        loaded.network_mechanism() == Some(NetMechanism::Lsm),
        "{:?}",
        loaded.network_mechanism()
    );
    let ring = loaded.take_events()?;
    Ok((loaded, ring))
}

fn net_records(ring: &mut EventRing) -> Result<Vec<NetRecord>> {
    let mut out = Vec::new();
    while let Some(item) = ring.next() {
        if let Record::Net(n) = decode_record(&item).context("decoding a kernel record")? {
            out.push(n);
        }
    }
    Ok(out)
}

/// A listener on `addr` whose connections are accepted and closed at once (so that `nc`
/// exits), for the rest of the run.
fn serve(addr: &str) -> Result<u16> {
    let l = TcpListener::bind(addr).with_context(|| format!("listening on {addr}"))?;
    let port = l.local_addr()?.port();
    std::thread::spawn(move || {
        for stream in l.incoming() {
            drop(stream);
        }
    });
    Ok(port)
}

/// `nc HOST PORT` (connects, then exits when the server closes).
fn nc(cg: Option<&Cgroup>, host: &str, port: u16) -> Result<Captured> {
    let mut cmd = Command::new("nc");
    cmd.args(["-w", "3", host, &port.to_string()])
        .stdin(std::process::Stdio::null());
    match cg {
        Some(cg) => cg.run(&mut cmd),
        None => capture(&mut cmd),
    }
}

fn denied(c: &Captured) -> Result<()> {
    ensure!(
        !c.status.success() && c.stderr.contains("Operation not permitted"),
        "expected EPERM: {c}"
    );
    Ok(())
}

fn allowed(c: &Captured) -> Result<()> {
    ensure!(c.status.success(), "expected success: {c}");
    Ok(())
}

fn connect_deny_inside_only() -> Result<()> {
    let cg = Cgroup::create("net-connect")?;
    let open = serve("127.0.0.2:0")?;
    serve("127.0.0.2:9")?;
    let v6 = serve("[::1]:9").is_ok();
    let network = NetworkPlan {
        rules: vec![
            rule(1, Action::Deny, net::CONNECT, &[(9, 9)]),
            rule(2, Action::Allow, net::CONNECT, &[]),
        ],
        v4: vec![
            prefix("0.0.0.0", 0, &[2])?,
            prefix("127.0.0.2", 32, &[1, 2])?,
        ],
        v6: vec![prefix("::1", 128, &[1])?],
        ..NetworkPlan::default()
    };
    let (loaded, mut ring) = load(&plan(&cg, Mode::Enforce, network)?)?;
    ensure!(loaded.attached().contains(&"enf_socket_connect"));
    denied(&nc(Some(&cg), "127.0.0.2", 9)?)?;
    allowed(&nc(None, "127.0.0.2", 9)?)?;
    allowed(&nc(Some(&cg), "127.0.0.2", open)?)?;
    let mut want: Vec<(IpAddr, bool)> = vec![(IpAddr::from([127, 0, 0, 2]), false)];
    if v6 {
        denied(&nc(Some(&cg), "::1", 9)?)?;
        allowed(&nc(None, "::1", 9)?)?;
        want.push(("::1".parse()?, false));
        // An IPv6 socket to an IPv4-mapped address is decided by the IPv4 rule.
        denied(&nc(Some(&cg), "::ffff:127.0.0.2", 9)?)?;
        want.push((IpAddr::from([127, 0, 0, 2]), true));
    }
    let rs = net_records(&mut ring)?;
    let got: Vec<(IpAddr, bool)> = rs.iter().map(|n| (n.addr, n.v4_mapped())).collect();
    ensure!(got == want, "records {rs:#?}");
    for n in &rs {
        ensure!(
            n.op == NetOp::Connect
                && n.port == 9
                && n.header.action == Action::Deny
                && n.header.rule_id == Some(1)
                && n.header.cgroup_id == cg.id()?
                && !n.by_cgroup_hook(),
            "{n:#?}"
        );
    }
    Ok(())
}

fn bind_and_listen_deny() -> Result<()> {
    let cg = Cgroup::create("net-bind")?;
    let network = NetworkPlan {
        rules: vec![
            rule(1, Action::Deny, net::BIND, &[(2001, 2001)]),
            rule(2, Action::Deny, net::LISTEN, &[(2002, 2002)]),
        ],
        // busybox `nc -l` binds the IPv6 wildcard (dual stack) when it can.
        v4: vec![prefix("0.0.0.0", 0, &[1, 2])?],
        v6: vec![prefix("::", 0, &[1, 2])?],
        ..NetworkPlan::default()
    };
    let (loaded, mut ring) = load(&plan(&cg, Mode::Enforce, network)?)?;
    for hook in ["enf_socket_bind", "enf_socket_listen"] {
        ensure!(loaded.attached().contains(&hook), "{:?}", loaded.attached());
    }
    // `nc -l` binds the wildcard address and PORT, then listens; a denied one fails at once
    // (`timeout` ends one that was not).
    let listen = |port: u16| {
        let mut cmd = Command::new("timeout");
        cmd.args(["10", "nc", "-l", "-p", &port.to_string()]);
        cg.run(&mut cmd)
    };
    denied(&listen(2001)?)?;
    denied(&listen(2002)?)?;
    let rs = net_records(&mut ring)?;
    let got: Vec<(NetOp, u16, Option<u32>)> = rs
        .iter()
        .map(|n| (n.op, n.port, n.header.rule_id))
        .collect();
    ensure!(
        got == vec![(NetOp::Bind, 2001, Some(1)), (NetOp::Listen, 2002, Some(2))],
        "{rs:#?}"
    );
    Ok(())
}

fn audit_mode_allows_and_records() -> Result<()> {
    let cg = Cgroup::create("net-audit")?;
    let port = serve("127.0.0.3:0")?;
    let network = NetworkPlan {
        rules: vec![rule(1, Action::Deny, net::CONNECT, &[])],
        v4: vec![prefix("127.0.0.3", 32, &[1])?],
        ..NetworkPlan::default()
    };
    let (_loaded, mut ring) = load(&plan(&cg, Mode::Audit, network)?)?;
    allowed(&nc(Some(&cg), "127.0.0.3", port)?)?;
    let rs = net_records(&mut ring)?;
    ensure!(
        rs.len() == 1 && rs[0].header.action == Action::Audit && rs[0].port == port,
        "{rs:#?}"
    );
    Ok(())
}

fn cidr_and_port_ranges() -> Result<()> {
    let cg = Cgroup::create("net-ranges")?;
    // 127.0.0.0/24 ports 3000-3999 denied, except 127.0.0.64/26 (allow, longer prefix).
    let a = serve("127.0.0.5:3500")?;
    let b = serve("127.0.0.5:4500")?;
    let c = serve("127.0.0.70:3500")?;
    let network = NetworkPlan {
        rules: vec![
            rule(1, Action::Deny, net::CONNECT, &[(3000, 3999), (5000, 5001)]),
            rule(2, Action::Allow, net::CONNECT, &[]),
        ],
        v4: vec![
            prefix("127.0.0.0", 24, &[1])?,
            prefix("127.0.0.64", 26, &[1, 2])?,
        ],
        ..NetworkPlan::default()
    };
    let (_loaded, mut ring) = load(&plan(&cg, Mode::Enforce, network)?)?;
    denied(&nc(Some(&cg), "127.0.0.5", a)?)?;
    allowed(&nc(Some(&cg), "127.0.0.5", b)?)?;
    // Deny beats allow within a policy: 127.0.0.70 is in both prefixes.
    denied(&nc(Some(&cg), "127.0.0.70", c)?)?;
    let rs = net_records(&mut ring)?;
    ensure!(rs.len() == 2, "{rs:#?}");
    Ok(())
}

fn cgroup_created_after_load() -> Result<()> {
    let cg = Cgroup::create("net-later")?;
    serve("127.0.0.6:9")?;
    let network = NetworkPlan {
        rules: vec![rule(1, Action::Deny, net::CONNECT, &[])],
        v4: vec![prefix("127.0.0.6", 32, &[1])?],
        ..NetworkPlan::default()
    };
    let (_loaded, mut ring) = load(&plan(&cg, Mode::Enforce, network)?)?;
    let child = cg.path().join("child");
    std::fs::create_dir(&child)?;
    let child_cg = ChildCgroup(child.clone());
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        &format!(
            "echo $$ > {}/cgroup.procs && exec nc -w 3 127.0.0.6 9 </dev/null",
            child.display()
        ),
    ]);
    denied(&capture(&mut cmd)?)?;
    let rs = net_records(&mut ring)?;
    let child_id = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&child)?);
    ensure!(
        rs.len() == 1 && rs[0].header.cgroup_id == child_id,
        "{rs:#?}"
    );
    drop(child_cg);
    Ok(())
}

/// A cgroup below a test cgroup, removed first.
struct ChildCgroup(std::path::PathBuf);

impl Drop for ChildCgroup {
    fn drop(&mut self) {
        let _ = std::fs::write(self.0.join("cgroup.kill"), "1");
        for _ in 0..100 {
            if std::fs::remove_dir(&self.0).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}
