//! `cargo xtask run`: build the enforcer and run it on this host with the embedded rule
//! library in audit mode, printing verdicts until Ctrl-C.

use std::os::unix::process::CommandExt;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::prerequisites;
use crate::workspace::Workspace;

pub fn run(ws: &Workspace) -> Result<()> {
    prerequisites::ensure_installed(prerequisites::BUILD)?;
    let status = ws
        .cargo(&["build", "--release", "-p", "enforcer"])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("building the enforcer failed");
    }
    let enforcer = ws.target_dir.join("release/enforcer");
    let state_dir = ws.target_dir.join("enforcer-run/state");
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("creating {}", state_dir.display()))?;

    let root = nix::unistd::geteuid().is_root();
    let privileged = |program: &std::path::Path| {
        if root {
            Command::new(program)
        } else {
            let mut sudo = Command::new("sudo");
            sudo.arg(program);
            sudo
        }
    };
    if !root {
        println!("the enforcer loads BPF programs, which needs root: running it through sudo");
    }
    // What this kernel allows, first: on a kernel without BPF LSM the run below can only
    // say so, and the report says what to do instead.
    let _ = privileged(&enforcer).arg("doctor").status();
    println!(
        "\nstarting the enforcer with the embedded rule library in audit mode; verdicts follow, \
         Ctrl-C stops it (events are kept in {})\n",
        state_dir.display()
    );
    let error = privileged(&enforcer)
        .args(["run", "--mode", "audit", "--state-dir"])
        .arg(&state_dir)
        .exec();
    Err(error).with_context(|| format!("starting {}", enforcer.display()))
}
