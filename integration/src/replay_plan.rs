//! The shared table of cases (`integration/conformance/`): policy files whose `tests:` run
//! on the host through policy-lang's reference evaluator (`tests/conformance.rs`) and in the VM,
//! for real, against the kernel (the e2e module `conformance`), on both kernels.
//!
//! This module turns a test case into what the VM does to replay it: the executables to
//! create (copies of `/bin/enforcer-replay` at the acting process's and its ancestors' paths),
//! the files, addresses and mounts the operation needs, the `enforcer-replay` command, and the
//! outcome the case's verdict means in the kernel. It is pure, so the host test checks that
//! every case of the table can be replayed.
//!
//! What a replayable case looks like (anything else is refused with the reason):
//! - the workload is a cgroup path (`cgroup:`), not a pod or a container id, and the table's
//!   policies select cgroups only (never `host`: the harness itself runs unselected);
//! - every executable (the process, its ancestors, an exec's program) and every file path is
//!   outside the guest's own system directories (`/bin`, `/usr`, `/etc`, ...), which the
//!   harness must not replace;
//! - kernel operations are `mount`, `umount`, `ptrace`, `bpf`, `userns_create`, `raw_socket`,
//!   `packet_socket`, and system calls without side effects (`getpid`, ...).
//!
//! The real process chain has the harness and init above the case's ancestors; the table's
//! rules must not name them. A rename moves the path to `PATH.replayed` and a hard link is
//! made at `PATH.replay-link`: the kernel decides both names, so the table's rules must treat
//! those like the path itself.

use std::net::IpAddr;

use policy_lang::event::{KernelEvent, Operation};
use policy_lang::model::{FileOp, KernelOp, NetOp, Protocol};
use policy_lang::testing::TestVector;
use policy_lang::Verdict;

/// Where the guest has `enforcer-replay`.
pub const GUEST_REPLAY: &str = "/bin/enforcer-replay";
/// Scratch space of the replays (symlinks, mount points).
pub const SCRATCH: &str = "/tmp/enforcer-replay";
/// Stands for the ptrace target's pid in [`Replay::op`].
pub const PTRACE_TARGET_PID: &str = "{ptrace-target}";

/// Directories of the guest's own programs and configuration: a case may not put files there.
const SYSTEM_DIRS: &[&str] = &[
    "/bin", "/sbin", "/usr", "/lib", "/lib64", "/etc", "/init", "/proc", "/sys", "/dev", "/run",
];

/// System calls a case may replay (x86_64 numbers): they change nothing.
const HARMLESS_SYSCALLS: &[(i64, &str)] = &[
    (libc::SYS_getpid, "getpid"),
    (libc::SYS_getppid, "getppid"),
    (libc::SYS_getuid, "getuid"),
    (libc::SYS_geteuid, "geteuid"),
    (libc::SYS_getgid, "getgid"),
    (libc::SYS_getegid, "getegid"),
    (libc::SYS_gettid, "gettid"),
    (libc::SYS_getpgrp, "getpgrp"),
    (libc::SYS_sched_yield, "sched_yield"),
];

/// How the kernel ends the operation for the case's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It worked (allow, audit).
    Worked,
    /// It failed with EPERM (deny).
    Refused,
    /// The acting process died of SIGKILL (kill).
    Killed,
}

/// What has to be in place before the operation runs (again before every case: an earlier
/// case may have deleted or renamed the file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setup {
    /// A copy of `enforcer-replay` at this path (made before the enforcer starts).
    ReplayCopy(String),
    /// A regular file with some content, owned by `uid`, writable by it.
    File { path: String, uid: u32 },
    /// Nothing at this path; its directory exists and `uid` may write in it.
    Absent { path: String, uid: u32 },
    /// An empty directory.
    Dir(String),
    /// The address is on `lo` (made before the enforcer starts).
    LocalAddress(IpAddr),
    /// Something accepts TCP connections there (made before the enforcer starts).
    TcpListener(IpAddr, u16),
    /// A tmpfs is mounted on the directory.
    Tmpfs(String),
    /// A process for `ptrace` to attach to ([`PTRACE_TARGET_PID`]).
    PtraceTarget,
}

/// One case, ready to replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    pub name: String,
    /// cgroup2 path (`/` for the root).
    pub cgroup: String,
    pub uid: u32,
    /// Executables from the outermost ancestor to the acting process.
    pub chain: Vec<String>,
    /// `enforcer-replay`'s operation and its arguments.
    pub op: Vec<String>,
    pub setup: Vec<Setup>,
    pub outcome: Outcome,
    /// The verdict of the event the case must produce (`denied`, `audited`, `killed`), if any.
    pub event_verdict: Option<&'static str>,
    /// `policy/rule` the event must name, when the case says.
    pub rule: Option<String>,
}

/// The replay of `vector`, the `index`-th case (it names the case's scratch files).
pub fn replay(vector: &TestVector, index: usize) -> Result<Replay, String> {
    let ev = &vector.event;
    if ev.pod.is_some() || ev.container_id.is_some() {
        return Err("pods and container ids cannot be replayed: select a `cgroup:`".into());
    }
    let cgroup = ev.cgroup.clone();
    if !cgroup.starts_with('/') || cgroup.split('/').any(|c| c == "..") {
        return Err(format!("cgroup `{cgroup}` is not an absolute cgroup2 path"));
    }
    let uid = ev.process.uid;
    let mut chain: Vec<String> = ev.process.ancestors.iter().rev().cloned().collect();
    chain.push(ev.process.exe.clone());
    let mut setup = Vec::new();
    for exe in &chain {
        owned_path(exe, "executable")?;
        setup.push(Setup::ReplayCopy(exe.clone()));
    }
    let file =
        |path: &str| -> Result<String, String> { owned_path(path, "file").map(str::to_owned) };
    let op: Vec<String> = match &ev.op {
        Operation::Exec { path, cmdline } => {
            owned_path(path, "executable")?;
            setup.push(Setup::ReplayCopy(path.clone()));
            let mut op = vec!["exec".to_owned(), path.clone()];
            op.extend(cmdline.split_whitespace().map(str::to_owned));
            op
        }
        Operation::File { op, path } => {
            let path = file(path)?;
            match op {
                FileOp::Exec | FileOp::MmapExec => setup.push(Setup::ReplayCopy(path.clone())),
                FileOp::Create => setup.push(Setup::Absent {
                    path: path.clone(),
                    uid,
                }),
                FileOp::SymlinkTo => {}
                _ => setup.push(Setup::File {
                    path: path.clone(),
                    uid,
                }),
            }
            // The second name a rename, link or symlink makes: nothing may be there.
            let second = match op {
                FileOp::Rename => Some(format!("{path}.replayed")),
                FileOp::Link => Some(format!("{path}.replay-link")),
                FileOp::SymlinkTo => Some(format!("{SCRATCH}/links/{index}")),
                _ => None,
            };
            if let Some(to) = &second {
                setup.push(Setup::Absent {
                    path: to.clone(),
                    uid,
                });
            }
            let (name, mode) = match op {
                FileOp::Chmod => ("chmod", Some("644")),
                FileOp::ChmodSetuid => ("chmod", Some("4755")),
                FileOp::ChmodSetgid => ("chmod", Some("2755")),
                other => (other.name(), None),
            };
            let mut args = vec![name.to_owned(), path];
            args.extend(mode.map(str::to_owned));
            args.extend(second);
            args
        }
        Operation::Network {
            op,
            addr,
            port,
            protocol,
        } => {
            // An IPv4-mapped IPv6 address reaches the IPv4 address.
            let local = policy_lang::net::canonical(*addr);
            if !local.is_loopback() && !local.is_unspecified() {
                setup.push(Setup::LocalAddress(local));
            }
            let protocol = match protocol {
                Protocol::Tcp => "tcp",
                Protocol::Udp => "udp",
            };
            let name = match op {
                NetOp::Connect => {
                    if protocol == "tcp" {
                        setup.push(Setup::TcpListener(local, *port));
                    }
                    "connect"
                }
                NetOp::Bind => "bind",
                NetOp::Listen => "listen",
                NetOp::Send => {
                    if protocol != "udp" {
                        return Err(
                            "a `send` case is replayed as a UDP datagram: use `protocol: udp`"
                                .into(),
                        );
                    }
                    "send"
                }
            };
            vec![
                name.into(),
                protocol.into(),
                addr.to_string(),
                port.to_string(),
            ]
        }
        Operation::Kernel(KernelEvent::Op(op)) => match op {
            KernelOp::Mount => {
                let dir = format!("{SCRATCH}/mnt/{index}");
                setup.push(Setup::Dir(dir.clone()));
                vec!["mount".into(), dir]
            }
            KernelOp::Umount => {
                let dir = format!("{SCRATCH}/mnt/{index}");
                setup.push(Setup::Tmpfs(dir.clone()));
                vec!["umount".into(), dir]
            }
            KernelOp::Ptrace => {
                setup.push(Setup::PtraceTarget);
                vec!["ptrace".into(), PTRACE_TARGET_PID.into()]
            }
            KernelOp::Bpf => vec!["bpf".into()],
            KernelOp::UsernsCreate => vec!["userns_create".into()],
            KernelOp::RawSocket => vec!["raw_socket".into()],
            KernelOp::PacketSocket => vec!["packet_socket".into()],
            other => {
                return Err(format!(
                    "kernel operation `{}` is not replayed (it would change the test machine)",
                    other.name()
                ))
            }
        },
        Operation::Kernel(KernelEvent::Syscall(nr)) => {
            if !HARMLESS_SYSCALLS.iter().any(|&(n, _)| n == i64::from(*nr)) {
                let names: Vec<&str> = HARMLESS_SYSCALLS.iter().map(|&(_, s)| s).collect();
                return Err(format!(
                    "system call {nr} is not replayed; replayable: {}",
                    names.join(", ")
                ));
            }
            vec!["syscall".into(), nr.to_string()]
        }
        Operation::Kernel(KernelEvent::Capability(_)) => {
            return Err("capability cases are not replayed".into())
        }
    };
    let (outcome, event_verdict) = match vector.verdict {
        Verdict::Allow => (Outcome::Worked, None),
        Verdict::Audit => (Outcome::Worked, Some("audited")),
        Verdict::Deny => (Outcome::Refused, Some("denied")),
        Verdict::Kill => (Outcome::Killed, Some("killed")),
    };
    Ok(Replay {
        name: vector.name.clone(),
        cgroup,
        uid,
        chain,
        op,
        setup,
        outcome,
        event_verdict,
        rule: vector.rule.clone(),
    })
}

/// `path`, if it is absolute and outside the guest's system directories.
fn owned_path<'a>(path: &'a str, what: &str) -> Result<&'a str, String> {
    if !path.starts_with('/') || path.split('/').any(|c| c == ".." || c == ".") {
        return Err(format!("{what} `{path}` is not a plain absolute path"));
    }
    if let Some(dir) = SYSTEM_DIRS
        .iter()
        .find(|d| path == **d || path.starts_with(&format!("{d}/")))
    {
        return Err(format!(
            "{what} `{path}` is under `{dir}`, which the guest needs: use a path under /opt or /tmp"
        ));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use policy_lang::event::{OwnedEvent, Process};

    fn vector(exe: &str, ancestors: &[&str], op: Operation, verdict: Verdict) -> TestVector {
        TestVector {
            name: "case".into(),
            event: OwnedEvent {
                process: Process {
                    exe: exe.into(),
                    cmdline: String::new(),
                    uid: 0,
                    ancestors: ancestors.iter().map(|s| s.to_string()).collect(),
                },
                cgroup: "/conformance/web".into(),
                container_id: None,
                pod: None,
                op,
            },
            verdict,
            rule: Some("p/r".into()),
        }
    }

    #[test]
    fn the_chain_runs_from_the_outermost_ancestor_to_the_acting_process() {
        let v = vector(
            "/opt/c/app",
            &["/opt/c/parent", "/opt/c/grandparent"],
            Operation::Exec {
                path: "/opt/c/tool".into(),
                cmdline: "tool -v".into(),
            },
            Verdict::Deny,
        );
        let r = replay(&v, 0).unwrap();
        assert_eq!(
            r.chain,
            ["/opt/c/grandparent", "/opt/c/parent", "/opt/c/app"]
        );
        assert_eq!(r.op, ["exec", "/opt/c/tool", "tool", "-v"]);
        assert_eq!(r.outcome, Outcome::Refused);
        assert_eq!(r.event_verdict, Some("denied"));
        assert!(r.setup.contains(&Setup::ReplayCopy("/opt/c/tool".into())));
    }

    #[test]
    fn a_rename_needs_its_file_and_a_free_destination() {
        let v = vector(
            "/opt/c/app",
            &[],
            Operation::File {
                op: FileOp::Rename,
                path: "/tmp/c/secret".into(),
            },
            Verdict::Allow,
        );
        let r = replay(&v, 3).unwrap();
        assert_eq!(r.op, ["rename", "/tmp/c/secret", "/tmp/c/secret.replayed"]);
        assert!(r.setup.contains(&Setup::File {
            path: "/tmp/c/secret".into(),
            uid: 0
        }));
        assert!(r.setup.contains(&Setup::Absent {
            path: "/tmp/c/secret.replayed".into(),
            uid: 0
        }));
        assert_eq!((r.outcome, r.event_verdict), (Outcome::Worked, None));
    }

    #[test]
    fn an_ipv4_mapped_connect_listens_on_the_ipv4_address() {
        let v = vector(
            "/opt/c/app",
            &[],
            Operation::Network {
                op: NetOp::Connect,
                addr: "::ffff:10.9.8.7".parse().unwrap(),
                port: 443,
                protocol: Protocol::Tcp,
            },
            Verdict::Kill,
        );
        let r = replay(&v, 0).unwrap();
        let v4: IpAddr = "10.9.8.7".parse().unwrap();
        assert!(r.setup.contains(&Setup::LocalAddress(v4)));
        assert!(r.setup.contains(&Setup::TcpListener(v4, 443)));
        assert_eq!(r.op[2], "::ffff:10.9.8.7");
        assert_eq!(r.outcome, Outcome::Killed);
    }

    #[test]
    fn system_directories_pods_and_side_effects_are_refused() {
        let exec = |path: &str| Operation::Exec {
            path: path.into(),
            cmdline: String::new(),
        };
        let err = replay(&vector("/bin/sh", &[], exec("/opt/x"), Verdict::Deny), 0).unwrap_err();
        assert!(err.contains("under `/bin`"), "{err}");
        let err = replay(&vector("/opt/a", &[], exec("/usr/bin/x"), Verdict::Deny), 0).unwrap_err();
        assert!(err.contains("under `/usr`"), "{err}");
        let mut v = vector("/opt/a", &[], exec("/opt/x"), Verdict::Deny);
        v.event.pod = Some(Default::default());
        assert!(replay(&v, 0).unwrap_err().contains("pods"));
        let reboot = Operation::Kernel(KernelEvent::Syscall(libc::SYS_reboot as u32));
        let err = replay(&vector("/opt/a", &[], reboot, Verdict::Kill), 0).unwrap_err();
        assert!(err.contains("getpid"), "{err}");
        let module = Operation::Kernel(KernelEvent::Op(KernelOp::ModuleLoad));
        assert!(replay(&vector("/opt/a", &[], module, Verdict::Deny), 0).is_err());
    }
}
