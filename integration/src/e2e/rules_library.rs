//! The shipped rule library (`rules/policies/`), rule by rule, for real: `/bin/enforcer run`
//! with no `--policy` (the embedded library), and for every rule an attack that performs the
//! behaviour (busybox applets, files made for the purpose, raw system calls) and its benign
//! counterpart. The verdict is asserted from what the kernel did (`EPERM`, or the operation
//! worked) and from the events in `enforcer events query --format json`: the attack has an
//! event of its rule with its verdict, the benign action none of that rule.
//!
//! Scopes: host rules select every cgroup, so their actions run in a plain cgroup; container
//! rules select cgroups named like a runtime's, so their attacks run in a Kubernetes-shaped
//! cgroup and their benign counterparts (where the counterpart is "the same on the host") in
//! the plain one. What the guest lacks is made first, before the enforcer starts: the shadow
//! and sudoers files, stand-in programs (busybox copies named like nginx, runc, ssh...: alert
//! rules look at names and command lines), the cloud metadata and Kubernetes API addresses on
//! `lo`, and a cgroup v1 hierarchy whose root has a `release_agent`.

use std::fs;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::cgroup::{spawn_fn, Cgroup};
use super::command::capture;
use super::enforcer_process::query_events;
use super::enforcer_process::Enforcer;
use super::Test;
use crate::guest_rootfs::GUEST_E2E;

pub const TESTS: &[Test] =
    &[Test::new("every_rule_attack_and_benign", every_rule_attack_and_benign).with_timeout(900)];

/// Stand-in programs and files the actions use; not below /tmp (`exec-from-tmp`).
const DIR: &str = "/opt/e2e-rules";
/// The payload `exec-from-tmp` refuses.
const TMP_PAYLOAD: &str = "/tmp/e2e-rules/payload";
const SHM_PAYLOAD: &str = "/dev/shm/e2e-rules-payload";
const VAR_TMP_PAYLOAD: &str = "/var/tmp/e2e-rules-payload";
const CONTAINER_CG: &str = "kubepods/besteffort/pod-e2e-rules/cri-containerd-e2e0.scope";
const HOST_CG: &str = "e2e-rules-host";
/// Where the cgroup v1 hierarchy (with a `release_agent` at its root) is mounted.
const V1_CG: &str = "/sys/fs/cgroup/e2e-rules-v1";
/// And where the published escape (CVE-2022-0492) mounts one: a directory of its own.
const V1_ELSEWHERE: &str = "/tmp/e2e-rules-cgrp";
const METADATA_IP: &str = "169.254.169.254";
const METADATA_IP6: &str = "fd00:ec2::254";
const METADATA_IP_MAPPED: &str = "::ffff:169.254.169.254";
const K8S_API_IP: &str = "10.96.0.1";
/// A port in no rule's list (not a mining pool port, not the API server's).
const PLAIN_PORT: u16 = 18443;
const MINING_PORT: u16 = 3333;
const EPERM: i32 = libc::EPERM;
/// Busybox copies at the paths of binaries the library's `except_from` lists name.
const SSHD: &str = "/usr/sbin/sshd";
const UNIX_CHKPWD: &str = "/usr/sbin/unix_chkpwd";
const SUDO: &str = "/usr/bin/sudo";
const APT_GET: &str = "/usr/bin/apt-get";
const DPKG: &str = "/usr/bin/dpkg";
/// How long an attack's event has to reach the store.
const EVENT_DEADLINE: Duration = Duration::from_secs(15);

/// What the library says the attack gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Refused in the kernel (EPERM, or killed) and a `denied` event.
    Denied,
    /// Worked, and an `audited` event.
    Audited,
    /// Ran (the exec happened), and an `alerted` event.
    Alerted,
}

/// How an action ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    /// It did what it set out to do.
    Worked,
    Eperm,
    Killed(i32),
    /// It ran but failed otherwise (the message says how).
    Failed(String),
}

/// One performed action: how it ended, the process that did it (when it got to run) and a
/// text its events carry (a path), for an action refused before it had a process of its own.
#[derive(Debug, Clone)]
struct Done {
    end: End,
    pid: Option<u32>,
    marker: Option<String>,
}

/// What the actions share: the two cgroups and the ptrace target.
struct Ctx {
    container: Cgroup,
    host: Cgroup,
    /// A `sleep` on the host for ptrace to attach to.
    target_pid: i32,
}

type Action = fn(&Ctx) -> Result<Done>;
/// An action done in the given cgroup.
type ActionIn = fn(&Ctx, &Cgroup) -> Result<Done>;

/// A row's attack and benign counterpart.
enum Acts {
    Two {
        attack: Action,
        benign: Action,
    },
    /// The same action, as the attack in the container cgroup and as the benign counterpart
    /// on the host (a container rule whose behaviour is fine on a host).
    ContainerThenHost(ActionIn),
}

/// One row of the table: a rule of the library (`policy/rule`), the behaviour, the attack, the
/// benign counterpart, and the verdict the attack gets (the benign one gets none of that rule).
struct Case {
    rule: &'static str,
    what: &'static str,
    expect: Expect,
    acts: Acts,
}

impl Case {
    /// The benign action first, then the attack: an event of the benign action would be in the
    /// store before the attack's, which is waited for. Returns (attack, benign).
    fn perform(&self, c: &Ctx) -> Result<(Done, Done)> {
        let (benign, attack) = match self.acts {
            Acts::Two { attack, benign } => (benign(c), attack(c)),
            Acts::ContainerThenHost(act) => (act(c, &c.host), act(c, &c.container)),
        };
        let benign = benign.with_context(|| format!("{}: benign", self.rule))?;
        let attack = attack.with_context(|| format!("{}: attack", self.rule))?;
        Ok((attack, benign))
    }
}

const fn case(
    rule: &'static str,
    what: &'static str,
    expect: Expect,
    attack: Action,
    benign: Action,
) -> Case {
    Case {
        rule,
        what,
        expect,
        acts: Acts::Two { attack, benign },
    }
}

const fn same_on_host(
    rule: &'static str,
    what: &'static str,
    expect: Expect,
    act: ActionIn,
) -> Case {
    Case {
        rule,
        what,
        expect,
        acts: Acts::ContainerThenHost(act),
    }
}

/// Every rule of the library. Host rules act in the plain cgroup, container rules' attacks in
/// the container cgroup.
const CASES: &[Case] = &[
    // host-hardening
    case(
        "host-hardening/exec-from-tmp",
        "a program run from /tmp; benign: the same bytes from /opt",
        Expect::Denied,
        |c| exec_in(&c.host, TMP_PAYLOAD, "true", &[]),
        |c| exec_in(&c.host, &format!("{DIR}/tool"), "true", &[]),
    ),
    case(
        "host-hardening/exec-from-tmp",
        "a program run from /dev/shm; benign: a program named like tmp in /usr/local/bin",
        Expect::Denied,
        |c| exec_in(&c.host, SHM_PAYLOAD, "true", &[]),
        |c| exec_in(&c.host, "/usr/local/bin/tmp", "true", &[]),
    ),
    case(
        "host-hardening/exec-from-tmp",
        "a program run from /var/tmp; benign: a script in /tmp read by sh (no exec from /tmp)",
        Expect::Denied,
        |c| exec_in(&c.host, VAR_TMP_PAYLOAD, "true", &[]),
        |c| exec_in(&c.host, "/bin/sh", "sh", &["/tmp/e2e-rules/script.sh"]),
    ),
    case(
        "host-hardening/kernel-memory",
        "/dev/mem opened for reading; benign: /dev/null",
        Expect::Denied,
        |c| open_in(&c.host, "/dev/mem", libc::O_RDONLY),
        |c| open_in(&c.host, "/dev/null", libc::O_RDONLY),
    ),
    case(
        "host-hardening/links-to-credentials",
        "a hard link to a sudoers drop-in; benign: the drop-in is read",
        Expect::Denied,
        |c| {
            link_in(
                &c.host,
                "/etc/sudoers.d/e2e-rules-users",
                &format!("{DIR}/sudoers-link"),
            )
        },
        |c| open_in(&c.host, "/etc/sudoers.d/e2e-rules-users", libc::O_RDONLY),
    ),
    case(
        "host-hardening/kernel-memory",
        "/proc/kcore opened for reading; benign: /proc/version",
        Expect::Denied,
        |c| open_in(&c.host, "/proc/kcore", libc::O_RDONLY),
        |c| open_in(&c.host, "/proc/version", libc::O_RDONLY),
    ),
    case(
        "host-hardening/cgroup-release-agent",
        "a cgroup v1 release_agent written; benign: its notify_on_release written",
        Expect::Denied,
        |c| write_in(&c.host, &format!("{V1_CG}/release_agent"), b"/bin/true\n"),
        |c| write_in(&c.host, &format!("{V1_CG}/notify_on_release"), b"0\n"),
    ),
    case(
        "host-hardening/cgroup-release-agent",
        "a release_agent written where the published escape mounts cgroup v1 (outside \
         /sys/fs/cgroup); benign: its notify_on_release written",
        Expect::Denied,
        |c| {
            write_in(
                &c.host,
                &format!("{V1_ELSEWHERE}/release_agent"),
                b"/bin/true\n",
            )
        },
        |c| {
            write_in(
                &c.host,
                &format!("{V1_ELSEWHERE}/notify_on_release"),
                b"0\n",
            )
        },
    ),
    case(
        "host-hardening/links-to-credentials",
        "a hard link to /etc/shadow; benign: a hard link to an ordinary file",
        Expect::Denied,
        |c| link_in(&c.host, "/etc/shadow", &format!("{DIR}/shadow-link")),
        |c| {
            link_in(
                &c.host,
                &format!("{DIR}/notes.txt"),
                &format!("{DIR}/notes-link"),
            )
        },
    ),
    case(
        "host-hardening/links-to-credentials",
        "a symlink to /etc/shadow written relative to its directory; benign: a symlink to \
         /etc/passwd",
        Expect::Denied,
        |c| {
            symlink_in(
                &c.host,
                "../../../../../../etc/shadow",
                // Not `shadow-symlink`: the setup made that one for the credential-files case.
                &format!("{DIR}/shadow-relative-symlink"),
            )
        },
        |c| symlink_in(&c.host, "/etc/passwd", &format!("{DIR}/passwd-symlink")),
    ),
    case(
        "host-only-hardening/credential-files",
        "cat reads /etc/shadow on the host; benign: the same busybox copied to an \
         authentication binary's path (unix_chkpwd) does",
        Expect::Denied,
        |c| cat_by(&c.host, "/bin/cat", "/etc/shadow"),
        |c| cat_by(&c.host, UNIX_CHKPWD, "/etc/shadow"),
    ),
    case(
        "host-only-hardening/credential-files",
        "sudo's shell execs cat on /etc/gshadow (an exec drops the exception); benign: sudo's \
         own process reads it",
        Expect::Denied,
        |c| exec_in(&c.host, SUDO, "sh", &["-c", "exec /bin/cat /etc/gshadow"]),
        |c| cat_by(&c.host, SUDO, "/etc/gshadow"),
    ),
    case(
        "host-only-hardening/credential-files",
        "the test program itself opens /etc/shadow; benign: it opens /etc/passwd",
        Expect::Denied,
        |c| open_in(&c.host, "/etc/shadow", libc::O_RDONLY),
        |c| open_in(&c.host, "/etc/passwd", libc::O_RDONLY),
    ),
    // container-hardening
    same_on_host(
        "container-hardening/cloud-metadata",
        "a container connects to 169.254.169.254:80; benign: the host does",
        Expect::Denied,
        |_, cg| connect_in(cg, METADATA_IP, 80),
    ),
    same_on_host(
        "container-hardening/cloud-metadata",
        "a container connects to [fd00:ec2::254]:80; benign: the host does",
        Expect::Denied,
        |_, cg| connect6_in(cg, METADATA_IP6, 80),
    ),
    case(
        "container-hardening/cloud-metadata",
        "a container sends a UDP datagram to 169.254.169.254; benign: to 127.0.0.1",
        Expect::Denied,
        |c| sendto_in(&c.container, METADATA_IP, 53),
        |c| sendto_in(&c.container, "127.0.0.1", 53),
    ),
    case(
        "container-hardening/credential-files",
        "a container reads /etc/shadow; benign: the host's sshd does",
        Expect::Denied,
        |c| open_in(&c.container, "/etc/shadow", libc::O_RDONLY),
        |c| cat_by(&c.host, SSHD, "/etc/shadow"),
    ),
    case(
        "container-hardening/credential-files",
        "a container opens /etc/gshadow for writing; benign: it reads its own config",
        Expect::Denied,
        |c| open_in(&c.container, "/etc/gshadow", libc::O_WRONLY),
        |c| open_in(&c.container, "/etc/e2e-rules/nginx.conf", libc::O_RDONLY),
    ),
    case(
        "container-hardening/credential-files",
        "a container reads /etc/shadow through a symlink (the kernel decides on the resolved \
         path); benign: the host's sshd does",
        Expect::Denied,
        |c| {
            open_in(
                &c.container,
                &format!("{DIR}/shadow-symlink"),
                libc::O_RDONLY,
            )
        },
        |c| cat_by(&c.host, SSHD, &format!("{DIR}/shadow-symlink")),
    ),
    case(
        "container-hardening/system-binaries-changed",
        "a container creates a file in /usr/local/bin; benign: the host does",
        Expect::Denied,
        |c| create_in(&c.container, "/usr/local/bin/e2e-rules-dropped"),
        |c| create_in(&c.host, "/usr/local/bin/e2e-rules-installed"),
    ),
    case(
        "container-hardening/system-binaries-changed",
        "a container renames a binary in /usr/local/bin; benign: it renames its own data",
        Expect::Denied,
        |c| {
            rename_in(
                &c.container,
                "/usr/local/bin/e2e-rules-tool",
                "/usr/local/bin/e2e-rules-moved",
            )
        },
        |c| {
            rename_in(
                &c.container,
                &format!("{DIR}/data/a"),
                &format!("{DIR}/data/b"),
            )
        },
    ),
    case(
        "container-hardening/system-binaries-changed",
        "a container chmods a binary in /usr/local/bin; benign: it chmods its own data",
        Expect::Denied,
        // Not setuid: that is container-hardening/setuid-bits, whose name sorts first.
        |c| chmod_in(&c.container, "/usr/local/bin/e2e-rules-tool", 0o700),
        |c| chmod_in(&c.container, &format!("{DIR}/data/c"), 0o600),
    ),
    case(
        "container-hardening/system-binaries-changed",
        "a container truncates a binary in /usr/local/bin; benign: it truncates its own data",
        Expect::Denied,
        |c| truncate_in(&c.container, "/usr/local/bin/e2e-rules-tool"),
        |c| truncate_in(&c.container, &format!("{DIR}/data/c")),
    ),
    case(
        "container-hardening/system-binaries-changed",
        "a container deletes a binary in /usr/local/bin; benign: it deletes its own data",
        Expect::Denied,
        |c| unlink_in(&c.container, "/usr/local/bin/e2e-rules-tool"),
        |c| unlink_in(&c.container, &format!("{DIR}/data/d")),
    ),
    case(
        "container-hardening/system-binaries-changed",
        "a container moves a file into /usr/local/bin; benign: the host does",
        Expect::Denied,
        |c| {
            rename_in(
                &c.container,
                &format!("{DIR}/data/drop1"),
                "/usr/local/bin/e2e-rules-mv1",
            )
        },
        |c| {
            rename_in(
                &c.host,
                &format!("{DIR}/data/drop2"),
                "/usr/local/bin/e2e-rules-mv2",
            )
        },
    ),
    case(
        "container-hardening/system-binaries-changed",
        "a container drops a symlink into /usr/local/bin; benign: into its own data",
        Expect::Denied,
        |c| symlink_in(&c.container, "/bin/busybox", "/usr/local/bin/e2e-rules-ln"),
        |c| symlink_in(&c.container, "/bin/busybox", &format!("{DIR}/data/ln")),
    ),
    case(
        "container-hardening/system-binaries-changed",
        "a container makes a directory in /usr/local/bin; benign: the host does",
        Expect::Denied,
        |c| mkdir_in(&c.container, "/usr/local/bin/e2e-rules-dir1"),
        |c| mkdir_in(&c.host, "/usr/local/bin/e2e-rules-dir2"),
    ),
    same_on_host(
        "container-hardening/privileged-kernel-ops",
        "a container mounts a tmpfs; benign: the host does",
        Expect::Denied,
        |_, cg| mount_in(cg),
    ),
    same_on_host(
        "container-hardening/privileged-kernel-ops",
        "a container creates a BPF map with bpf(); benign: the host does",
        Expect::Denied,
        |_, cg| op_in(cg, &[], bpf_map_create),
    ),
    same_on_host(
        "container-hardening/privileged-kernel-ops",
        "a container loads a (bogus) module with finit_module; benign: the host does (the \
         kernel's own error for a file that is no module)",
        Expect::Denied,
        |_, cg| finit_module_in(cg),
    ),
    same_on_host(
        "container-hardening/privileged-kernel-ops",
        "a container loads a (bogus) kernel with kexec_file_load; benign: the host does (the \
         kernel's own error for a file that is no kernel)",
        Expect::Denied,
        |_, cg| kexec_file_load_in(cg),
    ),
    same_on_host(
        "container-hardening/privileged-kernel-ops",
        "a container creates a user namespace; benign: the host does",
        Expect::Denied,
        |_, cg| op_in(cg, &[], unshare_user),
    ),
    same_on_host(
        "container-hardening/privileged-kernel-ops",
        "a container loads a (bogus) module from memory with init_module; benign: the host does",
        Expect::Denied,
        |_, cg| op_in(cg, NOT_A_MODULE, init_module),
    ),
    case(
        "container-hardening/ptrace-attach",
        "a container attaches to a process with PTRACE_SEIZE; benign: the container signals it",
        Expect::Denied,
        |c| ptrace_seize_in(&c.container, c.target_pid),
        |c| kill0_in(&c.container, c.target_pid),
    ),
    same_on_host(
        "container-hardening/ptrace-attach",
        "a container process asks to be traced (PTRACE_TRACEME, anti-debugging); benign: the \
         host does",
        Expect::Denied,
        |_, cg| op_in(cg, &[], traceme),
    ),
    same_on_host(
        "container-hardening/debugfs",
        "a container runs /usr/sbin/debugfs; benign: the host does",
        Expect::Denied,
        |_, cg| exec_in(cg, "/usr/sbin/debugfs", "true", &[]),
    ),
    same_on_host(
        "container-hardening/exec-from-memfd",
        "a container runs busybox copied into a memfd; benign: the host does (as runc does)",
        Expect::Denied,
        |_, cg| {
            exec_in(
                cg,
                GUEST_E2E,
                "enforcer-e2e",
                &["memfd-exec", "/bin/busybox", "true"],
            )
        },
    ),
    same_on_host(
        "container-hardening/raw-sockets",
        "a container opens an AF_PACKET socket; benign: the host does",
        Expect::Denied,
        |_, cg| socket_in(cg, libc::AF_PACKET, libc::SOCK_RAW, 0),
    ),
    case(
        "container-hardening/raw-sockets",
        "a container opens a raw ICMP socket; benign: it opens a UDP socket",
        Expect::Denied,
        |c| {
            socket_in(
                &c.container,
                libc::AF_INET,
                libc::SOCK_RAW,
                libc::IPPROTO_ICMP,
            )
        },
        |c| socket_in(&c.container, libc::AF_INET, libc::SOCK_DGRAM, 0),
    ),
    same_on_host(
        "container-hardening/raw-sockets",
        "a container opens a raw IPv6 socket; benign: the host does",
        Expect::Denied,
        |_, cg| socket_in(cg, libc::AF_INET6, libc::SOCK_RAW, libc::IPPROTO_ICMPV6),
    ),
    same_on_host(
        "container-hardening/cloud-metadata",
        "a container connects to 169.254.169.254 from an IPv6 socket (IPv4-mapped \
         ::ffff:169.254.169.254); benign: the host does",
        Expect::Denied,
        |_, cg| connect6_in(cg, METADATA_IP_MAPPED, 80),
    ),
    case(
        "container-hardening/credential-files",
        "a container reads /etc/shadow as /proc/self/root/etc/shadow; benign: the host's sshd \
         does",
        Expect::Denied,
        |c| open_in(&c.container, "/proc/self/root/etc/shadow", libc::O_RDONLY),
        |c| cat_by(&c.host, SSHD, "/proc/self/root/etc/shadow"),
    ),
    same_on_host(
        "container-hardening/privileged-kernel-ops",
        "a container mounts a tmpfs with the new mount API (fsopen, fsmount, move_mount); \
         benign: the host does",
        Expect::Denied,
        |_, cg| new_mount_api_in(cg),
    ),
    same_on_host(
        "container-hardening/privileged-kernel-ops",
        "a container calls kexec_load (no segments); benign: the host does",
        Expect::Denied,
        |_, cg| op_in(cg, &[], kexec_load),
    ),
    case(
        "container-hardening/setuid-bits",
        "a container makes a file setuid (chmod 4755); benign: it chmods the file 644",
        Expect::Denied,
        |c| chmod_in(&c.container, &format!("{DIR}/data/setid"), 0o4755),
        |c| chmod_in(&c.container, &format!("{DIR}/data/setid"), 0o644),
    ),
    same_on_host(
        "container-hardening/setuid-bits",
        "a container makes a directory setgid (chmod 2775); benign: the host does",
        Expect::Denied,
        |_, cg| chmod_in(cg, &format!("{DIR}/data/setgid-dir"), 0o2775),
    ),
    // host-detections
    case(
        "host-detections/kernel-module-load",
        "a (bogus) module loaded with finit_module; benign: the same file read",
        Expect::Audited,
        |c| finit_module_in(&c.host),
        |c| open_in(&c.host, &format!("{DIR}/bogus.ko"), libc::O_RDONLY),
    ),
    case(
        "host-detections/kernel-module-load",
        "a (bogus) kernel loaded with kexec_file_load; benign: the same file read",
        Expect::Audited,
        |c| kexec_file_load_in(&c.host),
        |c| open_in(&c.host, &format!("{DIR}/bogus.ko"), libc::O_RDONLY),
    ),
    case(
        "host-detections/ptrace-attach",
        "a process attaches to another with PTRACE_SEIZE; benign: it signals it",
        Expect::Audited,
        |c| ptrace_seize_in(&c.host, c.target_pid),
        |c| kill0_in(&c.host, c.target_pid),
    ),
    case(
        "host-detections/log-cleared",
        "a log below /var/log truncated; benign: a log appended to",
        Expect::Audited,
        |c| truncate_in(&c.host, "/var/log/e2e-rules-auth.log"),
        |c| append_in(&c.host, "/var/log/e2e-rules-syslog"),
    ),
    case(
        "host-detections/log-cleared",
        "a log below /var/log emptied by a shell redirection (open with O_TRUNC); benign: a file \
         elsewhere emptied",
        Expect::Audited,
        |c| {
            exec_in(
                &c.host,
                "/bin/sh",
                "sh",
                &["-c", ": > /var/log/e2e-rules-kern.log"],
            )
        },
        |c| {
            exec_in(
                &c.host,
                "/bin/sh",
                "sh",
                &["-c", &format!(": > {DIR}/scratch2")],
            )
        },
    ),
    case(
        "host-detections/log-cleared",
        "a log below /var/log deleted; benign: a file elsewhere deleted",
        Expect::Audited,
        |c| unlink_in(&c.host, "/var/log/e2e-rules-old.log"),
        |c| unlink_in(&c.host, &format!("{DIR}/scratch")),
    ),
    case(
        "host-detections/bulk-data-destruction",
        "shred overwrites and removes a file; benign: rm removes one",
        Expect::Audited,
        |c| {
            exec_in(
                &c.host,
                "/usr/bin/shred",
                "shred",
                &["-u", &format!("{DIR}/victim")],
            )
        },
        |c| {
            exec_in(
                &c.host,
                "/bin/rm",
                "rm",
                &["-f", &format!("{DIR}/unwanted")],
            )
        },
    ),
    case(
        "host-detections/auth-config-changed",
        "a sudoers drop-in created; benign: sudoers read",
        Expect::Audited,
        |c| create_in(&c.host, "/etc/sudoers.d/e2e-rules-backdoor"),
        |c| open_in(&c.host, "/etc/sudoers", libc::O_RDONLY),
    ),
    case(
        "host-detections/auth-config-changed",
        "a PAM file appended to; benign: it is read",
        Expect::Audited,
        |c| append_in(&c.host, "/etc/pam.d/e2e-rules-auth"),
        |c| open_in(&c.host, "/etc/pam.d/e2e-rules-auth", libc::O_RDONLY),
    ),
    case(
        "host-detections/auth-config-changed",
        "a sudoers drop-in moved into place (how editors and visudo write); benign: a file moved \
         elsewhere",
        Expect::Audited,
        |c| {
            rename_in(
                &c.host,
                &format!("{DIR}/data/sudo-new"),
                "/etc/sudoers.d/e2e-rules-moved",
            )
        },
        |c| {
            rename_in(
                &c.host,
                &format!("{DIR}/data/other-new"),
                &format!("{DIR}/data/other"),
            )
        },
    ),
    case(
        "host-only-detections/system-files-changed",
        "a library dropped into /usr/lib on the host; benign: a package manager (busybox at \
         apt-get's path) installs one",
        Expect::Audited,
        |c| create_in(&c.host, "/usr/lib/e2e-rules-dropped.so"),
        |c| {
            exec_in(
                &c.host,
                APT_GET,
                "touch",
                &["/usr/lib/e2e-rules-installed.so"],
            )
        },
    ),
    case(
        "host-only-detections/system-files-changed",
        "a host configuration file appended to; benign: dpkg (busybox at its path) appends to \
         one",
        Expect::Audited,
        |c| append_in(&c.host, "/etc/e2e-rules/nginx.conf"),
        |c| {
            exec_in(
                &c.host,
                DPKG,
                "sh",
                &["-c", "echo installed >> /etc/e2e-rules/pkg.conf"],
            )
        },
    ),
    case(
        "host-only-detections/setuid-bits",
        "the host makes a file setuid (chmod 4755); benign: a package manager (busybox at \
         apt-get's path) does",
        Expect::Audited,
        |c| chmod_in(&c.host, &format!("{DIR}/data/setid-host"), 0o4755),
        |c| {
            exec_in(
                &c.host,
                APT_GET,
                "chmod",
                &["4755", &format!("{DIR}/data/setid-pkg")],
            )
        },
    ),
    case(
        "host-only-detections/setuid-bits",
        "the host makes a file setgid (chmod 2755); benign: it chmods the file 644",
        Expect::Audited,
        |c| chmod_in(&c.host, &format!("{DIR}/data/setid-host"), 0o2755),
        |c| chmod_in(&c.host, &format!("{DIR}/data/setid-host"), 0o644),
    ),
    // container-detections
    same_on_host(
        "container-detections/package-management",
        "apt-get runs in a container; benign: on the host",
        Expect::Audited,
        |_, cg| exec_in(cg, "/usr/bin/apt-get", "true", &[]),
    ),
    case(
        "container-detections/mining-pool-port",
        "a container connects to port 3333; benign: to another port",
        Expect::Audited,
        |c| connect_in(&c.container, "127.0.0.1", MINING_PORT),
        |c| connect_in(&c.container, "127.0.0.1", PLAIN_PORT),
    ),
    same_on_host(
        "container-detections/mining-pool-port",
        "a container connects to port 14444; benign: the host does",
        Expect::Audited,
        |_, cg| connect_in(cg, "127.0.0.1", 14444),
    ),
    case(
        "container-detections/system-config-changed",
        "a container writes a file below /etc; benign: it reads one",
        Expect::Audited,
        |c| create_in(&c.container, "/etc/e2e-rules/conf.d/default.conf"),
        |c| open_in(&c.container, "/etc/e2e-rules/nginx.conf", libc::O_RDONLY),
    ),
    case(
        "container-detections/system-config-changed",
        "a container moves a file into /etc; benign: within its own data",
        Expect::Audited,
        |c| {
            rename_in(
                &c.container,
                &format!("{DIR}/data/conf-new"),
                "/etc/e2e-rules/moved.conf",
            )
        },
        |c| {
            rename_in(
                &c.container,
                &format!("{DIR}/data/conf2-new"),
                &format!("{DIR}/data/conf2"),
            )
        },
    ),
    case(
        "container-detections/kubernetes-api",
        "a container connects to 10.96.0.1:443; benign: to another port of that address",
        Expect::Audited,
        |c| connect_in(&c.container, K8S_API_IP, 443),
        |c| connect_in(&c.container, K8S_API_IP, PLAIN_PORT),
    ),
    // host-alerts
    case(
        "host-alerts/server-spawned-shell",
        "nginx runs a shell; benign: nginx runs echo",
        Expect::Alerted,
        |c| named_runs(&c.host, "nginx", "/bin/sh -c true"),
        |c| named_runs(&c.host, "nginx", "/bin/echo hello"),
    ),
    case(
        "host-alerts/runtime-spawned-shell",
        "python3 runs a shell; benign: python3 runs echo",
        Expect::Alerted,
        |c| named_runs(&c.host, "python3", "/bin/sh -c true"),
        |c| named_runs(&c.host, "python3", "/bin/echo hello"),
    ),
    case(
        "host-alerts/netcat-exec",
        "nc -e runs a program on connect; benign: nc sends a line",
        Expect::Alerted,
        |c| nc_in(&c.host, &["-e", "/bin/true"]),
        |c| nc_in(&c.host, &[]),
    ),
    case(
        "host-alerts/reverse-shell",
        "a shell command line redirecting to /dev/tcp; benign: to /dev/null",
        Expect::Alerted,
        |c| {
            exec_in(
                &c.host,
                "/bin/sh",
                "sh",
                &["-c", "echo id > /dev/tcp/127.0.0.1/4444 || true"],
            )
        },
        |c| exec_in(&c.host, "/bin/sh", "sh", &["-c", "echo id > /dev/null"]),
    ),
    case(
        "host-alerts/private-key-search",
        "find looks for id_rsa; benign: find looks for old logs",
        Expect::Alerted,
        |c| exec_in(&c.host, "/usr/bin/find", "find", &[DIR, "-name", "id_rsa"]),
        |c| exec_in(&c.host, "/usr/bin/find", "find", &[DIR, "-name", "*.gz"]),
    ),
    case(
        "host-alerts/cloud-credentials-search",
        "grep looks for AWS keys; benign: grep looks for a word",
        Expect::Alerted,
        |c| grep_in(&c.host, "aws_secret_access_key"),
        |c| grep_in(&c.host, "hello"),
    ),
    case(
        "host-alerts/system-user-interactive",
        "uid 33 runs a program below sshd; benign: uid 1000 does",
        Expect::Alerted,
        |c| sshd_session(&c.host, 33),
        |c| sshd_session(&c.host, 1000),
    ),
    case(
        "host-alerts/ssh-non-standard-port",
        "ssh -p 2222 (a stand-in client: the guest has no ssh); benign: ssh -p 22",
        Expect::Alerted,
        |c| ssh_in(&c.host, "2222"),
        |c| ssh_in(&c.host, "22"),
    ),
    // container-alerts
    case(
        "container-alerts/terminal-shell",
        "runc starts a shell in a container; benign: runc starts the entrypoint",
        Expect::Alerted,
        |c| named_runs(&c.container, "runc", "/bin/sh -c true"),
        |c| named_runs(&c.container, "runc", "/bin/echo hello"),
    ),
    same_on_host(
        "container-alerts/terminal-shell",
        "runc starts a shell in a container; benign: runc starts one on the host",
        Expect::Alerted,
        |_, cg| named_runs(cg, "runc", "/bin/sh -c true"),
    ),
];

// ---------------------------------------------------------------------------------------
// Actions.

/// Runs `program` (argv[0] `arg0`) in `cg` to completion.
fn exec_in(cg: &Cgroup, program: &str, arg0: &str, args: &[&str]) -> Result<Done> {
    let mut cmd = Command::new(program);
    cmd.arg0(arg0)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let marker = Some(program.to_string());
    let child = match cg.spawn(&mut cmd) {
        Ok(child) => child,
        Err(error) => {
            // A refused exec: the spawn fails with the exec's errno.
            let refused = error
                .downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::raw_os_error)
                == Some(EPERM);
            let end = if refused {
                End::Eperm
            } else {
                End::Failed(format!("{error:#}"))
            };
            return Ok(Done {
                end,
                pid: None,
                marker,
            });
        }
    };
    finish(child, marker)
}

fn finish(child: Child, marker: Option<String>) -> Result<Done> {
    let pid = child.id();
    let out = child.wait_with_output().context("waiting for the action")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let end = if out.status.success() {
        End::Worked
    } else if let Some(sig) = out.status.signal() {
        End::Killed(sig)
    } else if stderr.contains("Operation not permitted") {
        End::Eperm
    } else {
        End::Failed(format!(
            "{}; stdout: {:?}; stderr: {:?}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            stderr
        ))
    };
    Ok(Done {
        end,
        pid: Some(pid),
        marker,
    })
}

/// `program` (busybox, under whatever path) run as `cat path`.
fn cat_by(cg: &Cgroup, program: &str, path: &str) -> Result<Done> {
    exec_in(cg, program, "cat", &[path])
}

/// Busybox named `name` (in [`DIR`]) running `sh -c '<command>; true'`: the process `name`
/// forks and execs `command` (`; true` keeps the shell from exec-ing it in place).
fn named_runs(cg: &Cgroup, name: &str, command: &str) -> Result<Done> {
    exec_in(
        cg,
        &format!("{DIR}/{name}"),
        "sh",
        &["-c", &format!("{command}; true")],
    )
}

/// busybox nc to the plain listener, with `extra` options after the address (busybox takes
/// `-e PROG` last).
fn nc_in(cg: &Cgroup, extra: &[&str]) -> Result<Done> {
    let port = PLAIN_PORT.to_string();
    let mut args = vec!["-w", "3", "127.0.0.1", &port];
    args.extend_from_slice(extra);
    exec_in(cg, "/usr/bin/nc", "nc", &args)
}

/// grep -r `pattern` over [`DIR`]'s notes (grep exits 1 when nothing matched: both worked).
fn grep_in(cg: &Cgroup, pattern: &str) -> Result<Done> {
    exec_in(
        cg,
        "/bin/sh",
        "sh",
        &[
            "-c",
            &format!("/bin/grep -r {pattern} {DIR}/notes.txt; true"),
        ],
    )
}

/// The stand-in ssh client (busybox has none: it exits with "applet not found", after the exec
/// the rule looks at).
fn ssh_in(cg: &Cgroup, port: &str) -> Result<Done> {
    let mut done = exec_in(
        cg,
        &format!("{DIR}/ssh"),
        "ssh",
        &["-p", port, "admin@127.0.0.1"],
    )?;
    if matches!(&done.end, End::Failed(m) if m.contains("applet not found")) {
        done.end = End::Worked;
    }
    Ok(done)
}

/// A login session: a program named sshd running, as `uid`, a shell that runs `id`.
fn sshd_session(cg: &Cgroup, uid: u32) -> Result<Done> {
    let mut cmd = Command::new(format!("{DIR}/sshd"));
    cmd.arg0("sh")
        .args(["-c", "/bin/sh -c '/bin/id; true'; true"])
        .uid(uid)
        .gid(uid)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Host rules cover every cgroup: this one runs in the test's own (`cg` would have the
    // child join it after the uid change).
    let _ = cg;
    let child = cmd.spawn().context("starting the session")?;
    finish(child, None)
}

/// Runs `f` (raw system calls only: it runs between fork and exec) in a child in `cg`; the
/// child exits with the errno `f` returns. 0 and the errnos in `fine` (the kernel's own
/// verdict on a bogus input) count as worked.
fn op_in<F>(cg: &Cgroup, fine: &[i32], f: F) -> Result<Done>
where
    F: Fn() -> i32 + Send + Sync + 'static,
{
    let mut child = spawn_fn(Some(cg), f).context("starting the action's child")?;
    let pid = child.id();
    let status = child.wait().context("waiting for the action's child")?;
    let end = match (status.code(), status.signal()) {
        (Some(0), _) => End::Worked,
        (Some(EPERM), _) => End::Eperm,
        (Some(e), _) if fine.contains(&e) => End::Worked,
        (Some(e), _) => End::Failed(format!(
            "errno {e} ({})",
            std::io::Error::from_raw_os_error(e)
        )),
        (None, Some(sig)) => End::Killed(sig),
        _ => bail!("the action's child ended with {status}"),
    };
    Ok(Done {
        end,
        pid: Some(pid),
        marker: None,
    })
}

fn errno_of(ret: libc::c_long) -> i32 {
    if ret < 0 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)
    } else {
        0
    }
}

fn cstring(s: &str) -> Result<std::ffi::CString> {
    std::ffi::CString::new(s).with_context(|| format!("`{s}` has a NUL byte"))
}

fn open_in(cg: &Cgroup, path: &str, flags: i32) -> Result<Done> {
    let p = cstring(path)?;
    op_in(cg, &[], move || {
        // SAFETY: a valid C string; the descriptor is closed by `_exit`.
        errno_of(unsafe { libc::open(p.as_ptr(), flags, 0o644) }.into())
    })
}

fn create_in(cg: &Cgroup, path: &str) -> Result<Done> {
    open_in(cg, path, libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC)
}

fn append_in(cg: &Cgroup, path: &str) -> Result<Done> {
    write_with(cg, path, libc::O_WRONLY | libc::O_APPEND, b"line\n")
}

fn write_in(cg: &Cgroup, path: &str, data: &'static [u8]) -> Result<Done> {
    write_with(cg, path, libc::O_WRONLY, data)
}

fn write_with(cg: &Cgroup, path: &str, flags: i32, data: &'static [u8]) -> Result<Done> {
    let p = cstring(path)?;
    op_in(cg, &[], move || {
        // SAFETY: a valid C string and buffer.
        unsafe {
            let fd = libc::open(p.as_ptr(), flags);
            if fd < 0 {
                return errno_of(-1);
            }
            errno_of(libc::write(fd, data.as_ptr().cast(), data.len()) as libc::c_long)
        }
    })
}

fn link_in(cg: &Cgroup, from: &str, to: &str) -> Result<Done> {
    let _ = fs::remove_file(to);
    let (f, t) = (cstring(from)?, cstring(to)?);
    // SAFETY: valid C strings.
    op_in(cg, &[], move || {
        errno_of(unsafe { libc::link(f.as_ptr(), t.as_ptr()) }.into())
    })
}

fn symlink_in(cg: &Cgroup, target: &str, to: &str) -> Result<Done> {
    let _ = fs::remove_file(to);
    let (f, t) = (cstring(target)?, cstring(to)?);
    // SAFETY: valid C strings.
    op_in(cg, &[], move || {
        errno_of(unsafe { libc::symlink(f.as_ptr(), t.as_ptr()) }.into())
    })
}

fn truncate_in(cg: &Cgroup, path: &str) -> Result<Done> {
    let p = cstring(path)?;
    // SAFETY: a valid C string.
    op_in(cg, &[], move || {
        errno_of(unsafe { libc::truncate(p.as_ptr(), 0) }.into())
    })
}

fn unlink_in(cg: &Cgroup, path: &str) -> Result<Done> {
    let p = cstring(path)?;
    // SAFETY: a valid C string.
    op_in(cg, &[], move || {
        errno_of(unsafe { libc::unlink(p.as_ptr()) }.into())
    })
}

/// An IPv4 socket address.
fn sockaddr4(ip: &str, port: u16) -> Result<libc::sockaddr_in> {
    let addr: std::net::Ipv4Addr = ip.parse().with_context(|| format!("`{ip}`"))?;
    Ok(libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(addr).to_be(),
        },
        sin_zero: [0; 8],
    })
}

/// A TCP connect to `addr` (a socket address of `family`) from a child in `cg`.
fn connect_to<T: Copy + Send + Sync + 'static>(cg: &Cgroup, family: i32, addr: T) -> Result<Done> {
    op_in(cg, &[], move || {
        // SAFETY: a socket and a socket address in the child's copy of the memory.
        unsafe {
            let fd = libc::socket(family, libc::SOCK_STREAM, 0);
            if fd < 0 {
                return errno_of(-1);
            }
            errno_of(
                libc::connect(
                    fd,
                    std::ptr::from_ref(&addr).cast(),
                    std::mem::size_of::<T>() as libc::socklen_t,
                )
                .into(),
            )
        }
    })
}

fn connect_in(cg: &Cgroup, ip: &str, port: u16) -> Result<Done> {
    connect_to(cg, libc::AF_INET, sockaddr4(ip, port)?)
}

fn socket_in(cg: &Cgroup, family: i32, kind: i32, protocol: i32) -> Result<Done> {
    // SAFETY: socket has no memory arguments.
    op_in(cg, &[], move || {
        errno_of(unsafe { libc::socket(family, kind, protocol) }.into())
    })
}

fn mount_in(cg: &Cgroup) -> Result<Done> {
    let target = cstring(&format!("{DIR}/mnt"))?;
    op_in(cg, &[], move || {
        // SAFETY: valid C strings.
        unsafe {
            let r = libc::mount(
                c"none".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                std::ptr::null(),
            );
            let e = errno_of(r.into());
            if e == 0 {
                libc::umount2(target.as_ptr(), libc::MNT_DETACH);
            }
            e
        }
    })
}

fn bpf_map_create() -> i32 {
    // map_type ARRAY (2), key 4 bytes, value 4 bytes, 1 entry.
    let mut attr = [0u32; 32];
    attr[0] = 2;
    attr[1] = 4;
    attr[2] = 4;
    attr[3] = 1;
    // SAFETY: a bpf_attr-sized buffer on the stack.
    errno_of(unsafe {
        libc::syscall(
            libc::SYS_bpf,
            0, // BPF_MAP_CREATE
            attr.as_mut_ptr(),
            std::mem::size_of_val(&attr),
        )
    })
}

fn unshare_user() -> i32 {
    // SAFETY: no memory arguments.
    errno_of(unsafe { libc::unshare(libc::CLONE_NEWUSER) }.into())
}

/// The kernel's own errors for a file that is no module or no kernel image.
const NOT_A_MODULE: &[i32] = &[libc::ENOEXEC, libc::EINVAL, libc::EBADMSG, libc::ENOENT];

fn finit_module_in(cg: &Cgroup) -> Result<Done> {
    let file = fs::File::open(format!("{DIR}/bogus.ko")).context("opening the bogus module")?;
    let fd = file.as_raw_fd();
    let done = op_in(cg, NOT_A_MODULE, move || {
        // SAFETY: an open descriptor (inherited) and an empty C string.
        errno_of(unsafe { libc::syscall(libc::SYS_finit_module, fd, c"".as_ptr(), 0) })
    });
    drop(file);
    done
}

fn kexec_file_load_in(cg: &Cgroup) -> Result<Done> {
    let file = fs::File::open(format!("{DIR}/bogus.ko")).context("opening the bogus kernel")?;
    let fd = file.as_raw_fd();
    let done = op_in(cg, NOT_A_MODULE, move || {
        // SAFETY: an open descriptor (inherited) and an empty command line.
        errno_of(unsafe {
            libc::syscall(
                libc::SYS_kexec_file_load,
                fd,
                -1,
                1, // the command line's length, with its NUL
                c"".as_ptr(),
                4, // KEXEC_FILE_NO_INITRAMFS
            )
        })
    });
    drop(file);
    done
}

fn ptrace_seize_in(cg: &Cgroup, pid: i32) -> Result<Done> {
    // SAFETY: PTRACE_SEIZE takes no memory; the tracer's exit detaches.
    op_in(cg, &[], move || {
        errno_of(unsafe {
            libc::ptrace(
                libc::PTRACE_SEIZE,
                pid,
                std::ptr::null_mut::<libc::c_void>(),
                std::ptr::null_mut::<libc::c_void>(),
            )
        })
    })
}

fn kill0_in(cg: &Cgroup, pid: i32) -> Result<Done> {
    // SAFETY: signal 0 only checks that the process exists.
    op_in(cg, &[], move || {
        errno_of(unsafe { libc::kill(pid, 0) }.into())
    })
}

fn traceme() -> i32 {
    // SAFETY: PTRACE_TRACEME takes no memory.
    errno_of(unsafe {
        libc::ptrace(
            libc::PTRACE_TRACEME,
            0,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_void>(),
        )
    })
}

fn init_module() -> i32 {
    // Longer than an ELF header, so that the kernel gets to its LSM check.
    let image = [0u8; 256];
    // SAFETY: a buffer on the stack and an empty C string.
    errno_of(unsafe {
        libc::syscall(
            libc::SYS_init_module,
            image.as_ptr(),
            image.len(),
            c"".as_ptr(),
        )
    })
}

// No segments: unloads a loaded image (there is none) when allowed.
fn kexec_load() -> i32 {
    // SAFETY: no segments, a null pointer for them.
    errno_of(unsafe {
        libc::syscall(
            libc::SYS_kexec_load,
            0,
            0,
            std::ptr::null::<libc::c_void>(),
            0,
        )
    })
}

/// A tmpfs mounted on `<DIR>/mnt` with fsopen, fsconfig, fsmount and move_mount (no
/// mount(2)), unmounted again; the errno of the first call that failed.
fn new_mount_api_in(cg: &Cgroup) -> Result<Done> {
    let target = cstring(&format!("{DIR}/mnt"))?;
    op_in(cg, &[], move || {
        // SAFETY: valid C strings; descriptors are closed by `_exit`.
        unsafe {
            let fs = libc::syscall(libc::SYS_fsopen, c"tmpfs".as_ptr(), 0);
            if fs < 0 {
                return errno_of(fs);
            }
            // FSCONFIG_CMD_CREATE
            let r = libc::syscall(
                libc::SYS_fsconfig,
                fs,
                6,
                std::ptr::null::<libc::c_char>(),
                std::ptr::null::<libc::c_void>(),
                0,
            );
            if r < 0 {
                return errno_of(r);
            }
            let mnt = libc::syscall(libc::SYS_fsmount, fs, 0, 0);
            if mnt < 0 {
                return errno_of(mnt);
            }
            // MOVE_MOUNT_F_EMPTY_PATH
            let r = libc::syscall(
                libc::SYS_move_mount,
                mnt,
                c"".as_ptr(),
                libc::AT_FDCWD,
                target.as_ptr(),
                4,
            );
            let e = errno_of(r);
            if e == 0 {
                libc::umount2(target.as_ptr(), libc::MNT_DETACH);
            }
            e
        }
    })
}

fn rename_in(cg: &Cgroup, from: &str, to: &str) -> Result<Done> {
    let (f, t) = (cstring(from)?, cstring(to)?);
    // SAFETY: valid C strings.
    op_in(cg, &[], move || {
        errno_of(unsafe { libc::rename(f.as_ptr(), t.as_ptr()) }.into())
    })
}

fn mkdir_in(cg: &Cgroup, path: &str) -> Result<Done> {
    let p = cstring(path)?;
    // SAFETY: a valid C string.
    op_in(cg, &[], move || {
        errno_of(unsafe { libc::mkdir(p.as_ptr(), 0o755) }.into())
    })
}

fn chmod_in(cg: &Cgroup, path: &str, mode: libc::mode_t) -> Result<Done> {
    let p = cstring(path)?;
    // SAFETY: a valid C string.
    op_in(cg, &[], move || {
        errno_of(unsafe { libc::chmod(p.as_ptr(), mode) }.into())
    })
}

fn connect6_in(cg: &Cgroup, ip: &str, port: u16) -> Result<Done> {
    let addr: std::net::Ipv6Addr = ip.parse().with_context(|| format!("`{ip}`"))?;
    // SAFETY: sockaddr_in6 is plain data; all zeroes is valid.
    let mut sin6: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
    sin6.sin6_port = port.to_be();
    sin6.sin6_addr.s6_addr = addr.octets();
    connect_to(cg, libc::AF_INET6, sin6)
}

/// One UDP datagram to `ip:port` with sendto (no connect).
fn sendto_in(cg: &Cgroup, ip: &str, port: u16) -> Result<Done> {
    let sin = sockaddr4(ip, port)?;
    op_in(cg, &[], move || {
        let data = *b"ping";
        // SAFETY: a socket, a buffer and a sockaddr_in on the stack.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
            if fd < 0 {
                return errno_of(-1);
            }
            errno_of(libc::sendto(
                fd,
                data.as_ptr().cast(),
                data.len(),
                0,
                std::ptr::from_ref(&sin).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            ) as libc::c_long)
        }
    })
}

// ---------------------------------------------------------------------------------------
// Setup, before the enforcer starts (nothing here is refused on the host, but the library
// is not loaded yet either way).

fn copy_busybox(to: &str) -> Result<()> {
    if let Ok(meta) = fs::symlink_metadata(to) {
        if meta.file_type().is_symlink() {
            // An applet link: exec rules see the resolved path, so a real file replaces it.
            fs::remove_file(to).with_context(|| format!("removing {to}"))?;
        } else {
            return Ok(());
        }
    }
    if let Some(dir) = Path::new(to).parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::copy("/bin/busybox", to).with_context(|| format!("copying busybox to {to}"))?;
    fs::set_permissions(to, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

fn write_if_missing(path: &str, text: &str) -> Result<()> {
    if let Some(dir) = Path::new(path).parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if !Path::new(path).exists() {
        fs::write(path, text).with_context(|| format!("writing {path}"))?;
    }
    Ok(())
}

fn ip_addr_add(ip: &str) -> Result<()> {
    let out = capture(Command::new("ip").args(["addr", "add", &format!("{ip}/32"), "dev", "lo"]))?;
    if !out.status.success() && !out.stderr.contains("exists") {
        bail!("adding {ip} to lo: {out}");
    }
    Ok(())
}

/// Accepts connections on `ip:port` and closes them, for the rest of the run (a listener an
/// earlier test of the run left there does the same).
pub(super) fn serve(ip: &str, port: u16) -> Result<()> {
    let l = match TcpListener::bind((ip, port)) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("listening on {ip}:{port}")),
    };
    std::thread::spawn(move || {
        for stream in l.incoming() {
            drop(stream);
        }
    });
    Ok(())
}

/// A cgroup v1 hierarchy (no controller, named `name`) mounted on `dir`: its root has the
/// `release_agent` file the escape writes.
fn mount_v1(dir: &str, name: &str) -> Result<()> {
    if Path::new(dir).join("release_agent").exists() {
        return Ok(());
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {dir}"))?;
    let out = capture(Command::new("mount").args([
        "-t",
        "cgroup",
        "-o",
        &format!("none,name={name}"),
        "cgroup",
        dir,
    ]))?;
    if !out.status.success() {
        bail!("mounting a cgroup v1 hierarchy on {dir}: {out}");
    }
    Ok(())
}

fn unmount_v1() {
    for dir in [V1_CG, V1_ELSEWHERE] {
        let _ = capture(Command::new("umount").arg(dir));
        let _ = fs::remove_dir(dir);
    }
}

fn setup() -> Result<()> {
    let _ = fs::remove_dir_all(DIR);
    fs::create_dir_all(format!("{DIR}/mnt")).context("creating the fixture")?;
    for name in ["tool", "nginx", "python3", "runc", "sshd", "ssh"] {
        copy_busybox(&format!("{DIR}/{name}"))?;
    }
    copy_busybox(TMP_PAYLOAD)?;
    fs::create_dir_all("/dev/shm")?;
    fs::create_dir_all("/var/tmp")?;
    copy_busybox(SHM_PAYLOAD)?;
    copy_busybox(VAR_TMP_PAYLOAD)?;
    copy_busybox("/usr/local/bin/tmp")?;
    fs::write("/tmp/e2e-rules/script.sh", "echo from a script\n")?;
    fs::create_dir_all(format!("{DIR}/data"))?;
    for f in [
        "a",
        "c",
        "d",
        "drop1",
        "drop2",
        "sudo-new",
        "other-new",
        "conf-new",
        "conf2-new",
        "setid",
        "setid-host",
        "setid-pkg",
    ] {
        fs::write(format!("{DIR}/data/{f}"), "data\n")?;
    }
    fs::write(format!("{DIR}/scratch2"), "data\n")?;
    fs::create_dir_all(format!("{DIR}/data/setgid-dir"))?;
    std::os::unix::fs::symlink("/etc/shadow", format!("{DIR}/shadow-symlink"))?;
    // Programs the library names that the guest lacks or has as applet links.
    copy_busybox("/usr/sbin/debugfs")?;
    for program in [APT_GET, DPKG, SSHD, UNIX_CHKPWD, SUDO] {
        copy_busybox(program)?;
    }
    copy_busybox("/usr/bin/shred")?;
    fs::write(
        format!("{DIR}/notes.txt"),
        "hello\naws_secret_access_key = none\n",
    )?;
    fs::write(format!("{DIR}/victim"), "data to destroy\n")?;
    fs::write(format!("{DIR}/unwanted"), "data\n")?;
    fs::write(format!("{DIR}/scratch"), "data\n")?;
    // Garbage: the LSM hooks run before the kernel looks at the format.
    fs::write(format!("{DIR}/bogus.ko"), [0x5au8; 4096])?;
    write_if_missing("/etc/shadow", "root:*:19000:0:99999:7:::\n")?;
    write_if_missing("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n")?;
    write_if_missing("/etc/sudoers", "root ALL=(ALL:ALL) ALL\n")?;
    write_if_missing("/etc/gshadow", "root:*::\n")?;
    write_if_missing("/etc/sudoers.d/e2e-rules-users", "admin ALL=(ALL) ALL\n")?;
    write_if_missing("/etc/pam.d/e2e-rules-auth", "auth required pam_unix.so\n")?;
    fs::create_dir_all("/etc/sudoers.d")?;
    let _ = fs::remove_file("/etc/sudoers.d/e2e-rules-backdoor");
    fs::create_dir_all("/etc/e2e-rules/conf.d")?;
    let _ = fs::remove_file("/etc/e2e-rules/conf.d/default.conf");
    fs::write("/etc/e2e-rules/nginx.conf", "listen 80;\n")?;
    let _ = fs::remove_file("/etc/e2e-rules/pkg.conf");
    fs::create_dir_all("/usr/lib")?;
    for f in ["e2e-rules-dropped.so", "e2e-rules-installed.so"] {
        let _ = fs::remove_file(format!("/usr/lib/{f}"));
    }
    fs::create_dir_all("/usr/local/bin")?;
    for f in ["e2e-rules-dropped", "e2e-rules-installed"] {
        let _ = fs::remove_file(format!("/usr/local/bin/{f}"));
    }
    let _ = fs::remove_file("/usr/local/bin/e2e-rules-moved");
    for f in ["e2e-rules-mv1", "e2e-rules-mv2", "e2e-rules-ln"] {
        let _ = fs::remove_file(format!("/usr/local/bin/{f}"));
    }
    for d in ["e2e-rules-dir1", "e2e-rules-dir2"] {
        let _ = fs::remove_dir(format!("/usr/local/bin/{d}"));
    }
    let _ = fs::remove_file("/etc/sudoers.d/e2e-rules-moved");
    let _ = fs::remove_file("/etc/e2e-rules/moved.conf");
    fs::write("/usr/local/bin/e2e-rules-tool", "#!/bin/sh\n")?;
    fs::set_permissions(
        "/usr/local/bin/e2e-rules-tool",
        fs::Permissions::from_mode(0o755),
    )?;
    fs::create_dir_all("/var/log")?;
    fs::write("/var/log/e2e-rules-auth.log", "log line\n")?;
    fs::write("/var/log/e2e-rules-syslog", "log line\n")?;
    fs::write("/var/log/e2e-rules-old.log", "log line\n")?;
    fs::write("/var/log/e2e-rules-kern.log", "log line\n")?;
    ip_addr_add(METADATA_IP)?;
    ip_addr_add(K8S_API_IP)?;
    let out = capture(Command::new("ip").args([
        "-6",
        "addr",
        "add",
        &format!("{METADATA_IP6}/128"),
        "dev",
        "lo",
    ]))?;
    if !out.status.success() && !out.stderr.contains("exists") {
        bail!("adding {METADATA_IP6} to lo: {out}");
    }
    serve(METADATA_IP6, 80)?;
    serve("127.0.0.1", 14444)?;
    serve(METADATA_IP, 80)?;
    serve(K8S_API_IP, 443)?;
    serve(K8S_API_IP, PLAIN_PORT)?;
    serve("127.0.0.1", MINING_PORT)?;
    serve("127.0.0.1", PLAIN_PORT)?;
    mount_v1(V1_CG, "e2erules")?;
    mount_v1(V1_ELSEWHERE, "e2erules2")
}

// ---------------------------------------------------------------------------------------
// Events.

/// Whether `e` is of `rule` (`policy/rule`).
fn of_rule(e: &serde_json::Value, rule: &str) -> bool {
    rule.split_once('/')
        .is_some_and(|(p, r)| e["policy"] == p && e["rule"] == r)
}

/// Whether `e` is by the action's process or a descendant of it, or (for an action refused
/// before it had a process of its own) names its marker in its target.
fn by(e: &serde_json::Value, done: &Done) -> bool {
    let p = &e["process"];
    if let Some(pid) = done.pid {
        let pid = u64::from(pid);
        return p["pid"].as_u64() == Some(pid)
            || p["ancestors"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x["pid"].as_u64() == Some(pid)));
    }
    done.marker
        .as_deref()
        .is_some_and(|m| e["target"].to_string().contains(m))
}

fn verdict_name(expect: Expect) -> &'static str {
    match expect {
        Expect::Denied => "denied",
        Expect::Audited => "audited",
        Expect::Alerted => "alerted",
    }
}

/// The action's end is what the expectation says: refused, or done.
fn check_end(case: &Case, attack: &Done, benign: &Done) -> Vec<String> {
    let mut problems = Vec::new();
    let attack_ok = match case.expect {
        Expect::Denied => matches!(attack.end, End::Eperm | End::Killed(_)),
        Expect::Audited | Expect::Alerted => attack.end == End::Worked,
    };
    if !attack_ok {
        problems.push(format!(
            "attack: expected {}, got {:?}",
            if case.expect == Expect::Denied {
                "EPERM or killed"
            } else {
                "it to work"
            },
            attack.end
        ));
    }
    if benign.end != End::Worked {
        problems.push(format!("benign: expected it to work, got {:?}", benign.end));
    }
    problems
}

/// Every rule of the library has a row in [`CASES`].
fn every_rule_has_a_case() -> Result<()> {
    // Every rule of the library has a row.
    for file in [
        include_str!("../../../rules/policies/hardening.yaml"),
        include_str!("../../../rules/policies/detections.yaml"),
    ] {
        let mut policy = "";
        for line in file.lines() {
            if line == "tests:" {
                break;
            }
            if let Some(p) = line.strip_prefix("  - name: ") {
                policy = p.trim();
            } else if let Some(r) = line.strip_prefix("      - name: ") {
                let rule = format!("{policy}/{}", r.trim());
                if !CASES.iter().any(|c| c.rule == rule) {
                    bail!("rule `{rule}` of the library has no case in the table");
                }
            }
        }
    }
    Ok(())
}

fn every_rule_attack_and_benign() -> Result<()> {
    every_rule_has_a_case()?;
    setup()?;
    let result = run_cases();
    unmount_v1();
    result
}

fn run_cases() -> Result<()> {
    // Parents first; dropped in reverse order (children first).
    let _kubepods = Cgroup::create("kubepods")?;
    let _qos = Cgroup::create("kubepods/besteffort")?;
    let _pod = Cgroup::create("kubepods/besteffort/pod-e2e-rules")?;
    let container = Cgroup::create(CONTAINER_CG)?;
    let host = Cgroup::create(HOST_CG)?;
    let mut target = host.spawn(
        Command::new("/bin/sleep")
            .arg("600")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )?;
    let ctx = Ctx {
        container,
        host,
        target_pid: i32::try_from(target.id()).context("pid out of range")?,
    };

    let enforcer = Enforcer::start(&[])?;
    let state = enforcer.state_dir().to_path_buf();

    // Benign first, then the attack: an event of the benign action would be in the store
    // before the attack's, which is waited for.
    let mut done = Vec::new();
    let mut problems = Vec::new();
    for case in CASES {
        let (attack, benign) = case.perform(&ctx)?;
        for p in check_end(case, &attack, &benign) {
            problems.push(format!("{} ({}): {p}", case.rule, case.what));
        }
        done.push((case, attack, benign));
    }

    // Every attack's event, polled with a deadline.
    let deadline = Instant::now() + EVENT_DEADLINE;
    let mut events;
    loop {
        events = query_events(&state, &["--limit", "0"])?;
        let missing = done.iter().any(|(case, attack, _)| {
            !events.iter().any(|e| {
                of_rule(e, case.rule) && e["verdict"] == verdict_name(case.expect) && by(e, attack)
            })
        });
        if !missing || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    // A little longer for anything the benign actions might have caused.
    std::thread::sleep(Duration::from_secs(1));
    events = query_events(&state, &["--limit", "0"])?;

    for (case, attack, benign) in &done {
        let verdict = verdict_name(case.expect);
        if !events
            .iter()
            .any(|e| of_rule(e, case.rule) && e["verdict"] == verdict && by(e, attack))
        {
            problems.push(format!(
                "{} ({}): attack: no `{verdict}` event of the rule within {} s (attack {:?})",
                case.rule,
                case.what,
                EVENT_DEADLINE.as_secs(),
                attack
            ));
        }
        let stray: Vec<&serde_json::Value> = events
            .iter()
            .filter(|e| of_rule(e, case.rule) && by(e, benign))
            .collect();
        if !stray.is_empty() {
            problems.push(format!(
                "{} ({}): benign: events of the rule: {stray:?}",
                case.rule, case.what
            ));
        }
    }

    let _ = target.kill();
    let _ = target.wait();
    let log = enforcer.log().unwrap_or_default();
    let status = enforcer.stop()?;
    if !status.success() {
        problems.push(format!("the enforcer exited with {status}"));
    }
    if !problems.is_empty() {
        bail!(
            "{} of {} cases failed:\n{}\nenforcer log:\n{log}",
            problems.len(),
            CASES.len(),
            problems.join("\n")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_rule_of_the_library_has_a_case() {
        super::every_rule_has_a_case().unwrap();
    }
}
