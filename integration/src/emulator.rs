//! The qemu that boots the test kernels. Debian 12's own qemu (7.2) emulates the 6.12 guest
//! kernel unreliably under TCG: about one boot in three died with a general protection fault
//! in `do_sync_core` or a double fault, both with garbage EFLAGS, that is, a CPU emulation bug.
//! qemu 10 from bookworm-backports booted it every time, so the runner fetches that into the VM
//! cache (like the kernels) and runs it from there, leaving the machine's qemu alone.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::apt_sources::{PrivateApt, BACKPORTS_SUITE};
use crate::kernel_cache::run_checked;

/// The packages that make up the emulator: the binary and its firmware and option ROMs.
const PACKAGES: &[&str] = &["qemu-system-x86", "qemu-system-data"];

/// A qemu-system-x86_64 to run, and where its firmware is.
#[derive(Debug, Clone)]
pub struct Emulator {
    pub binary: PathBuf,
    /// Passed as `-L` (qemu searches them in order).
    pub firmware_dirs: Vec<PathBuf>,
    pub description: String,
}

impl Emulator {
    /// The machine's own qemu-system-x86_64 from PATH.
    pub fn system() -> Self {
        Emulator {
            binary: PathBuf::from("qemu-system-x86_64"),
            firmware_dirs: Vec::new(),
            description: "the system's qemu-system-x86_64".into(),
        }
    }

    /// qemu from bookworm-backports, downloaded once into `<vm-cache>/qemu/<version>`.
    /// `ENFORCER_QEMU=system` uses the machine's qemu instead; when the archive cannot be
    /// reached and nothing is cached, the machine's qemu is used with a warning.
    pub fn ensure(vm_cache_dir: &Path) -> Result<Self> {
        if std::env::var("ENFORCER_QEMU").as_deref() == Ok("system") {
            return Ok(Self::system());
        }
        match Self::backports(vm_cache_dir) {
            Ok(emulator) => Ok(emulator),
            Err(error) => {
                println!(
                    "warning: could not get qemu from {BACKPORTS_SUITE} ({error:#}); using the \
                     system's qemu, whose TCG occasionally crashes the 6.12 guest"
                );
                Ok(Self::system())
            }
        }
    }

    fn backports(vm_cache_dir: &Path) -> Result<Self> {
        let apt = PrivateApt::prepare(&vm_cache_dir.join("apt"))?;
        let version = candidate_version(&apt).or_else(|e| {
            // No package lists yet: refresh once and ask again.
            run_checked(
                apt.command("apt-get").args(["-q", "update"]),
                "apt-get update",
            )
            .context(e)?;
            candidate_version(&apt)
        })?;
        let root = vm_cache_dir.join("qemu").join(version.replace(':', "_"));
        let files = root.join("files");
        let stamp = root.join("complete");
        if !stamp.exists() {
            if root.exists() {
                fs::remove_dir_all(&root)
                    .with_context(|| format!("removing {}", root.display()))?;
            }
            let download = root.join("download");
            fs::create_dir_all(&download)
                .with_context(|| format!("creating {}", download.display()))?;
            println!("downloading qemu {version} from {BACKPORTS_SUITE}");
            let wanted: Vec<String> = PACKAGES
                .iter()
                .map(|p| format!("{p}/{BACKPORTS_SUITE}"))
                .collect();
            run_checked(
                apt.command("apt-get")
                    .args(["-q", "download"])
                    .args(&wanted)
                    .current_dir(&download),
                &format!("apt-get download {}", wanted.join(" ")),
            )?;
            for entry in fs::read_dir(&download)
                .with_context(|| format!("listing {}", download.display()))?
            {
                let deb = entry?.path();
                run_checked(
                    Command::new("dpkg").arg("-x").arg(&deb).arg(&files),
                    &format!("dpkg -x {}", deb.display()),
                )?;
            }
            fs::remove_dir_all(&download)
                .with_context(|| format!("removing {}", download.display()))?;
            fs::write(&stamp, &version).with_context(|| format!("writing {}", stamp.display()))?;
        }
        let binary = files.join("usr/bin/qemu-system-x86_64");
        // The unpacked binary links against the machine's libraries; make sure it runs.
        run_checked(
            Command::new(&binary).arg("--version"),
            "qemu-system-x86_64 --version",
        )
        .context("the downloaded qemu does not run on this machine")?;
        Ok(Emulator {
            binary,
            // Its own ROMs first, then the machine's SeaBIOS (package seabios).
            firmware_dirs: vec![
                files.join("usr/share/qemu"),
                PathBuf::from("/usr/share/seabios"),
            ],
            description: format!("qemu {version} ({BACKPORTS_SUITE})"),
        })
    }
}

/// The version `apt-cache` would pick for qemu-system-x86 from backports.
fn candidate_version(apt: &PrivateApt) -> Result<String> {
    let spec = format!("qemu-system-x86/{BACKPORTS_SUITE}");
    let output = run_checked(
        apt.command("apt-cache")
            .args(["show", "--no-all-versions", &spec]),
        &format!("apt-cache show {spec}"),
    )?;
    parse_version(&String::from_utf8_lossy(&output.stdout))
        .with_context(|| format!("no Version in `apt-cache show {spec}`"))
}

fn parse_version(show: &str) -> Option<String> {
    show.lines()
        .find_map(|l| l.strip_prefix("Version:"))
        .map(|v| v.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_version_of_apt_cache_show() {
        let show = "Package: qemu-system-x86\nVersion: 1:10.0.2+ds-2+deb13u1~bpo12+1\nArchitecture: amd64\n";
        assert_eq!(
            parse_version(show).as_deref(),
            Some("1:10.0.2+ds-2+deb13u1~bpo12+1")
        );
        assert_eq!(parse_version("Package: x\n"), None);
    }
}
