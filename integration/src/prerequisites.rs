//! The Debian packages the build and the VM tests need, installed with apt-get when missing
//! (CI starts from a fresh machine).

use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// A Debian package and what it is for, so that users of other distributions know what to get.
#[derive(Debug, Clone, Copy)]
pub struct Package {
    pub name: &'static str,
    pub purpose: &'static str,
}

const fn package(name: &'static str, purpose: &'static str) -> Package {
    Package { name, purpose }
}

/// Everything: the BPF build chain and the VM tests.
pub const ALL: &[Package] = &[
    package("clang-19", "clang 19 (compiles the BPF programs)"),
    package("llvm-19", "LLVM 19 tools (llvm-strip, llvm-objdump)"),
    package(
        "libbpf-dev",
        "libbpf headers 1.1+ (bpf_helpers.h, bpf_core_read.h)",
    ),
    package("bpftool", "bpftool (generates vmlinux.h)"),
    package(
        "qemu-system-x86",
        "qemu-system-x86_64 and the libraries the backports qemu the runner fetches links to",
    ),
    package("seabios", "the BIOS the test VMs boot with"),
    package(
        "busybox-static",
        "a statically linked busybox (the guest's userland)",
    ),
    package("cpio", "cpio (initramfs tooling)"),
    package(
        "rsyslog",
        "rsyslogd (the real syslog receiver of the export tests)",
    ),
    package("rsyslog-gnutls", "TLS for rsyslogd (syslog over TLS tests)"),
];

/// What building the enforcer needs (the BPF toolchain).
pub const BUILD: &[Package] = &[
    package("clang-19", "clang 19 (compiles the BPF programs)"),
    package("llvm-19", "LLVM 19 tools (llvm-strip)"),
    package(
        "libbpf-dev",
        "libbpf headers 1.1+ (bpf_helpers.h, bpf_core_read.h)",
    ),
];

/// What booting a test VM needs.
pub const VM: &[Package] = &[
    package(
        "qemu-system-x86",
        "qemu-system-x86_64 and the libraries the backports qemu the runner fetches links to",
    ),
    package("seabios", "the BIOS the test VMs boot with"),
    package(
        "busybox-static",
        "a statically linked busybox (the guest's userland)",
    ),
];

/// Installs the missing packages (`apt-get update` first, only when something is missing).
pub fn ensure_installed(packages: &[Package]) -> Result<()> {
    if !is_debian() {
        bail!(
            "this is not a Debian system (no dpkg-query/apt-get); install these yourself:\n{}",
            describe(packages)
        );
    }
    let mut missing = Vec::new();
    for package in packages {
        if !is_installed(package.name)? {
            missing.push(*package);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = missing.iter().map(|p| p.name).collect();
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "missing packages: {}; install them as root: apt-get update && apt-get install -y {}",
            names.join(", "),
            names.join(" ")
        );
    }
    println!("installing missing packages: {}", names.join(" "));
    apt_get(&["update"])?;
    let mut install = vec!["install", "-y", "--no-install-recommends"];
    install.extend(&names);
    apt_get(&install)?;
    for name in &names {
        if !is_installed(name)? {
            bail!("`apt-get install {name}` succeeded but {name} is still not installed");
        }
    }
    Ok(())
}

fn describe(packages: &[Package]) -> String {
    packages
        .iter()
        .map(|p| format!("  - {} (Debian package `{}`)", p.purpose, p.name))
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_debian() -> bool {
    ["dpkg-query", "apt-get"].iter().all(|tool| {
        Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    })
}

fn is_installed(package: &str) -> Result<bool> {
    let output = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .stderr(Stdio::null())
        .output()
        .context("running dpkg-query")?;
    // Unknown packages make dpkg-query fail; removed ones stay listed as "deinstall ... config-files".
    Ok(
        output.status.success()
            && String::from_utf8_lossy(&output.stdout) == "install ok installed",
    )
}

fn apt_get(args: &[&str]) -> Result<()> {
    let status = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .status()
        .context("running apt-get")?;
    if !status.success() {
        bail!("`apt-get {}` failed ({status})", args.join(" "));
    }
    Ok(())
}
