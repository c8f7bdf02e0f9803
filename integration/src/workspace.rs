//! Where the workspace and its target directory are, and building the binaries the guest runs.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// The cargo workspace this tool belongs to.
#[derive(Debug, Clone)]
pub struct Workspace {
    pub root: PathBuf,
    pub target_dir: PathBuf,
}

impl Workspace {
    /// Asks cargo, so that `CARGO_TARGET_DIR` and `.cargo/config.toml` are honoured.
    pub fn locate() -> Result<Self> {
        #[derive(Deserialize)]
        struct Metadata {
            workspace_root: PathBuf,
            target_directory: PathBuf,
        }
        let output = Command::new(cargo())
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .context("running `cargo metadata`")?;
        if !output.status.success() {
            bail!(
                "`cargo metadata` failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let metadata: Metadata =
            serde_json::from_slice(&output.stdout).context("parsing `cargo metadata` output")?;
        Ok(Self {
            root: metadata.workspace_root,
            target_dir: metadata.target_directory,
        })
    }

    /// Downloaded kernels, the private apt state: everything fetched once and reused.
    pub fn vm_cache_dir(&self) -> PathBuf {
        self.target_dir.join("vm-cache")
    }

    /// Runs a cargo command in the workspace root with the output going to the terminal.
    pub fn cargo(&self, args: &[&str]) -> Command {
        let mut command = Command::new(cargo());
        command.args(args).current_dir(&self.root);
        command
    }
}

/// The cargo that runs us (set by `cargo run`), so that the same toolchain builds everything.
pub fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// Whether the enforcer binary goes into the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnforcerBinary {
    Required,
    /// Only for working on the runner while the enforcer crate cannot be built yet.
    Omitted,
}

/// Host paths of the release binaries that are copied into the guest.
#[derive(Debug, Clone)]
pub struct GuestBinaries {
    pub enforcer: Option<PathBuf>,
    pub e2e: PathBuf,
    /// `enforcer-replay`, which performs the shared table's cases (`replay_plan`).
    pub replay: PathBuf,
}

/// Builds the guest binaries in release mode (the guest runs under TCG emulation, where debug
/// builds are several times slower).
pub fn build_guest_binaries(ws: &Workspace, enforcer: EnforcerBinary) -> Result<GuestBinaries> {
    let args: &[&str] = match enforcer {
        EnforcerBinary::Required => &[
            "build",
            "--release",
            "-p",
            "enforcer",
            "-p",
            "integration",
            "--bins",
        ],
        EnforcerBinary::Omitted => &[
            "build",
            "--release",
            "-p",
            "integration",
            "--bin",
            "enforcer-e2e",
            "--bin",
            "enforcer-replay",
        ],
    };
    println!("building guest binaries: cargo {}", args.join(" "));
    let status = ws
        .cargo(args)
        .status()
        .context("running cargo to build the guest binaries")?;
    if !status.success() {
        bail!(
            "`cargo {}` failed ({status}); see cargo's errors above",
            args.join(" ")
        );
    }
    let release = ws.target_dir.join("release");
    let e2e = existing(&release.join("enforcer-e2e"), "integration")?;
    let replay = existing(&release.join("enforcer-replay"), "integration")?;
    let enforcer = match enforcer {
        EnforcerBinary::Required => Some(existing(&release.join("enforcer"), "enforcer")?),
        EnforcerBinary::Omitted => {
            println!("warning: the enforcer binary is NOT in this guest (--without-enforcer)");
            None
        }
    };
    Ok(GuestBinaries {
        enforcer,
        e2e,
        replay,
    })
}

fn existing(path: &Path, package: &str) -> Result<PathBuf> {
    if path.is_file() {
        Ok(path.to_path_buf())
    } else {
        bail!(
            "{} was not built: the `{package}` package must provide a binary named `{}`",
            path.display(),
            path.file_name().unwrap_or_default().to_string_lossy()
        )
    }
}
