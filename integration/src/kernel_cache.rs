//! Debian's cloud kernels for the VM tests, downloaded once into the target directory.
//!
//! The package names are resolved at run time through the meta-packages, because old kernel
//! versions leave the archive; a downloaded kernel is reused until the meta-package moves on.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use anyhow::{bail, Context, Result};

use crate::apt_sources::{PrivateApt, BACKPORTS_SUITE};

/// The kernel lines the VM tests run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KernelSeries {
    #[value(name = "6.1")]
    V6_1,
    #[value(name = "6.12")]
    V6_12,
}

impl KernelSeries {
    pub const ALL: [KernelSeries; 2] = [KernelSeries::V6_1, KernelSeries::V6_12];

    /// Short name used on the command line and as the console prefix.
    pub fn label(self) -> &'static str {
        match self {
            KernelSeries::V6_1 => "6.1",
            KernelSeries::V6_12 => "6.12",
        }
    }

    /// The meta-package whose dependency names the current kernel package; 6.12 is the
    /// backports version of the same meta-package.
    fn meta_package(self) -> String {
        match self {
            KernelSeries::V6_1 => "linux-image-cloud-amd64".to_string(),
            KernelSeries::V6_12 => format!("linux-image-cloud-amd64/{BACKPORTS_SUITE}"),
        }
    }

    fn package_prefix(self) -> String {
        format!("linux-image-{}.", self.label())
    }
}

/// A kernel ready to boot.
#[derive(Debug, Clone)]
pub struct Kernel {
    pub series: KernelSeries,
    /// `uname -r` of the kernel, e.g. `6.1.0-56-cloud-amd64`.
    pub release: String,
    pub vmlinuz: PathBuf,
}

/// `target/vm-cache`: the private apt state and the unpacked kernel packages.
#[derive(Debug, Clone)]
pub struct KernelCache {
    dir: PathBuf,
}

/// Written after a package was unpacked completely, so an interrupted unpack is redone.
const COMPLETE_STAMP: &str = "complete";

impl KernelCache {
    pub fn new(vm_cache_dir: &Path) -> Self {
        Self {
            dir: vm_cache_dir.to_path_buf(),
        }
    }

    fn kernels_dir(&self) -> PathBuf {
        self.dir.join("kernels")
    }

    /// The current kernel of `series`, downloaded when not cached. Without a reachable archive
    /// the newest cached kernel of the series is used, with a warning.
    pub fn kernel(&self, series: KernelSeries) -> Result<Kernel> {
        let package = match self.resolve(series) {
            Ok(package) => package,
            Err(error) => {
                let Some(cached) = self.newest_cached(series)? else {
                    return Err(error.context(format!(
                        "resolving the {} kernel package (none cached under {})",
                        series.label(),
                        self.kernels_dir().display()
                    )));
                };
                println!(
                    "warning: could not resolve the current {} kernel ({error:#}); using the cached {cached}",
                    series.label()
                );
                cached
            }
        };
        let root = self.package_root(&package);
        if !root.join(COMPLETE_STAMP).exists() {
            self.download_and_unpack(&package)?;
        }
        let vmlinuz = find_vmlinuz(&root.join("files"))?;
        let release = vmlinuz
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .trim_start_matches("vmlinuz-")
            .to_string();
        Ok(Kernel {
            series,
            release,
            vmlinuz,
        })
    }

    fn package_root(&self, package: &str) -> PathBuf {
        self.kernels_dir().join(package)
    }

    /// Asks apt (with the private sources, refreshed) which package the meta-package depends on.
    fn resolve(&self, series: KernelSeries) -> Result<String> {
        let apt = PrivateApt::prepare(&self.dir.join("apt"))?;
        run_checked(
            apt.command("apt-get").args(["-q", "update"]),
            "apt-get update",
        )?;
        let meta = series.meta_package();
        let output = run_checked(
            apt.command("apt-cache").args(["depends", &meta]),
            &format!("apt-cache depends {meta}"),
        )?;
        let package = kernel_dependency(&String::from_utf8_lossy(&output.stdout), series)
            .with_context(|| format!("reading `apt-cache depends {meta}`"))?;
        Ok(package)
    }

    fn newest_cached(&self, series: KernelSeries) -> Result<Option<String>> {
        let dir = self.kernels_dir();
        if !dir.is_dir() {
            return Ok(None);
        }
        let mut newest: Option<(std::time::SystemTime, String)> = None;
        for entry in fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
            let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let stamp = entry.path().join(COMPLETE_STAMP);
            if !name.starts_with(&series.package_prefix()) {
                continue;
            }
            if let Ok(modified) = stamp.metadata().and_then(|m| m.modified()) {
                if newest.as_ref().is_none_or(|(time, _)| modified > *time) {
                    newest = Some((modified, name));
                }
            }
        }
        Ok(newest.map(|(_, name)| name))
    }

    fn download_and_unpack(&self, package: &str) -> Result<()> {
        let root = self.package_root(package);
        if root.exists() {
            fs::remove_dir_all(&root).with_context(|| format!("removing {}", root.display()))?;
        }
        let download = root.join("download");
        fs::create_dir_all(&download)
            .with_context(|| format!("creating {}", download.display()))?;
        println!("downloading kernel package {package}");
        let apt = PrivateApt::prepare(&self.dir.join("apt"))?;
        run_checked(
            apt.command("apt-get")
                .args(["-q", "download", package])
                .current_dir(&download),
            &format!("apt-get download {package}"),
        )?;
        let deb = fs::read_dir(&download)
            .with_context(|| format!("listing {}", download.display()))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .find(|path| path.extension().is_some_and(|e| e == "deb"))
            .with_context(|| format!("apt-get download left no .deb in {}", download.display()))?;
        let files = root.join("files");
        run_checked(
            std::process::Command::new("dpkg")
                .arg("-x")
                .arg(&deb)
                .arg(&files),
            &format!("dpkg -x {}", deb.display()),
        )?;
        // Only vmlinuz is used; the .deb is not needed any more.
        fs::remove_dir_all(&download)
            .with_context(|| format!("removing {}", download.display()))?;
        fs::write(root.join(COMPLETE_STAMP), package)
            .with_context(|| format!("writing {}", root.display()))?;
        Ok(())
    }
}

/// Picks the kernel image package out of `apt-cache depends <meta-package>` output.
fn kernel_dependency(depends_output: &str, series: KernelSeries) -> Result<String> {
    let prefix = series.package_prefix();
    let candidates: Vec<&str> = depends_output
        .lines()
        .filter_map(|line| line.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .filter(|name| name.starts_with(&prefix))
        .collect();
    match candidates.as_slice() {
        [one] => Ok(one.to_string()),
        [] => bail!("no dependency starting with `{prefix}` in:\n{depends_output}"),
        many => bail!("several kernel dependencies: {}", many.join(", ")),
    }
}

fn find_vmlinuz(files: &Path) -> Result<PathBuf> {
    let boot = files.join("boot");
    fs::read_dir(&boot)
        .with_context(|| format!("listing {}", boot.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .find(|path| {
            path.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .with_context(|| format!("no vmlinuz-* in {}", boot.display()))
}

/// Runs `command`; a failure is an error with its output.
pub(crate) fn run_checked(command: &mut std::process::Command, what: &str) -> Result<Output> {
    let output = command
        .output()
        .with_context(|| format!("running {what}"))?;
    if !output.status.success() {
        bail!(
            "`{what}` failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_kernel_image_dependency() {
        let output = "linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-56-cloud-amd64\n";
        assert_eq!(
            kernel_dependency(output, KernelSeries::V6_1).unwrap(),
            "linux-image-6.1.0-56-cloud-amd64"
        );
        let backports =
            "linux-image-cloud-amd64\n  Depends: linux-image-6.12.95+deb12-cloud-amd64\n";
        assert_eq!(
            kernel_dependency(backports, KernelSeries::V6_12).unwrap(),
            "linux-image-6.12.95+deb12-cloud-amd64"
        );
    }

    #[test]
    fn rejects_a_kernel_of_the_wrong_series() {
        // E.g. apt picking the backports version for 6.1 would silently test 6.12 twice.
        let output = "linux-image-cloud-amd64\n  Depends: linux-image-6.12.95+deb12-cloud-amd64\n";
        let error = kernel_dependency(output, KernelSeries::V6_1).unwrap_err();
        assert!(error.to_string().contains("linux-image-6.1."), "{error}");
    }
}
