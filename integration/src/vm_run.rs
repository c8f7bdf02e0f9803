//! `cargo xtask vm run`: the enforcer with given policies in a VM, a script against it, and the
//! outputs copied back to the host.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

use crate::emulator::Emulator;
use crate::guest_init::{run_script, RunJob};
use crate::guest_report::{decode_archive, status_lines, GUEST_DONE};
use crate::guest_rootfs::{base_image, GUEST_ENFORCER};
use crate::kernel_cache::{KernelCache, KernelSeries};
use crate::prerequisites;
use crate::qemu::{self, Boot};
use crate::workspace::{build_guest_binaries, EnforcerBinary, Workspace};

/// The exit code for "the VM or the enforcer failed", as opposed to the script's own code.
pub const INFRASTRUCTURE_FAILURE: i32 = 125;
/// How long the enforcer has to print `enforcer ready`.
const READY_TIMEOUT_SECS: u32 = 60;
/// How long the enforcer has to exit after SIGTERM before it is killed.
const STOP_TIMEOUT_SECS: u32 = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Enforce,
    Audit,
}

impl Mode {
    fn as_arg(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Audit => "audit",
        }
    }
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub kernel: KernelSeries,
    pub policies: Vec<PathBuf>,
    pub config: Option<PathBuf>,
    pub includes: Vec<PathBuf>,
    pub mode: Option<Mode>,
    pub script: PathBuf,
    pub out: Option<PathBuf>,
    pub timeout: Duration,
}

/// Runs the job; returns the exit code for the xtask: the script's, or
/// [`INFRASTRUCTURE_FAILURE`].
pub fn run(ws: &Workspace, options: &RunOptions) -> Result<i32> {
    prerequisites::ensure_installed(prerequisites::VM)?;
    let out = match &options.out {
        Some(out) => out.clone(),
        None => ws
            .target_dir
            .join("vm-run")
            .join(timestamp(SystemTime::now())),
    };
    prepare_out_dir(&out)?;

    let binaries = build_guest_binaries(ws, EnforcerBinary::Required)?;
    let enforcer = binaries
        .enforcer
        .as_deref()
        .context("the enforcer binary is required for `vm run`")?;
    let mut enforcer_args = Vec::new();
    let mut files = Vec::new();
    for policy in &options.policies {
        let guest = guest_path("/policies", policy)?;
        enforcer_args.extend(["--policy".to_string(), guest.clone()]);
        files.push((guest, policy));
    }
    if let Some(config) = &options.config {
        let guest = guest_path("/config", config)?;
        enforcer_args.extend(["--config".to_string(), guest.clone()]);
        files.push((guest, config));
    }
    if let Some(mode) = options.mode {
        enforcer_args.extend(["--mode".to_string(), mode.as_arg().to_string()]);
    }
    for include in &options.includes {
        files.push((guest_path("/include", include)?, include));
    }
    let script = guest_path("/script", &options.script)?;
    files.push((script.clone(), &options.script));

    let job = RunJob {
        enforcer_args,
        script,
        ready_timeout_secs: READY_TIMEOUT_SECS,
        stop_timeout_secs: STOP_TIMEOUT_SECS,
    };
    let mut image = base_image(&[(GUEST_ENFORCER, enforcer)], &run_script(&job))?;
    for (guest, host) in files {
        if image.contains(&guest) {
            bail!("two inputs are both named {guest} in the guest: rename one");
        }
        image
            .add_host_tree(&guest, host)
            .with_context(|| format!("copying {} into the guest", host.display()))?;
    }
    // Per run (removed when done), so that runs in parallel do not share an image or a serial
    // file.
    let work_parent = ws.target_dir.join("vm-run");
    fs::create_dir_all(&work_parent)
        .with_context(|| format!("creating {}", work_parent.display()))?;
    let work = tempfile::Builder::new()
        .prefix(".work-")
        .tempdir_in(&work_parent)
        .with_context(|| format!("creating a work directory in {}", work_parent.display()))?;
    let initramfs = work.path().join("initramfs.cpio");
    image.write_to(&initramfs)?;
    let serial = work.path().join("ttyS1.out");

    let kernel = KernelCache::new(&ws.vm_cache_dir()).kernel(options.kernel)?;
    let emulator = Emulator::ensure(&ws.vm_cache_dir())?;
    let boot = qemu::boot(&Boot {
        emulator: &emulator,
        vmlinuz: &kernel.vmlinuz,
        initramfs: &initramfs,
        label: options.kernel.label(),
        timeout: options.timeout,
        idle_timeout: None,
        console_log: &out.join("console.log"),
        second_serial: Some(&serial),
    })?;
    println!(
        "vm run: kernel {} ran for {:.1} s",
        kernel.release,
        boot.elapsed.as_secs_f64()
    );

    let copied = copy_back(&serial, &out);
    let status = status_lines(&boot.console);
    let mut failures = Vec::new();
    if let Some(failure) = boot.vm_failure() {
        failures.push(failure);
    } else if !boot.console.iter().any(|l| l.contains(GUEST_DONE)) {
        failures.push("the guest did not finish its job (no end marker on the console)".into());
    }
    match status.get("enforcer-ready").map(String::as_str) {
        Some("yes") => {}
        Some(_) => failures.push(match status.get("enforcer-early-exit") {
            Some(code) => format!("the enforcer exited with {code} before it was ready"),
            None => {
                format!("the enforcer did not print `enforcer ready` within {READY_TIMEOUT_SECS} s")
            }
        }),
        None => failures.push("the guest never started the enforcer".into()),
    }
    if let Some(code) = status.get("enforcer-crashed") {
        failures.push(format!(
            "the enforcer exited on its own with {code} while the script ran"
        ));
    }
    if status.get("enforcer-stop").map(String::as_str) == Some("killed") {
        println!(
            "vm run: warning: the enforcer did not exit within {STOP_TIMEOUT_SECS} s of SIGTERM and was killed"
        );
    }
    if let Err(error) = &copied {
        failures.push(format!("the outputs could not be copied back: {error:#}"));
    }

    println!("vm run: outputs in {}", out.display());
    let exit_code = fs::read_to_string(out.join("script.exit"))
        .ok()
        .and_then(|code| code.trim().parse::<i32>().ok());
    if !failures.is_empty() {
        for failure in &failures {
            println!("vm run: FAILED: {failure}");
        }
        return Ok(INFRASTRUCTURE_FAILURE);
    }
    match exit_code {
        Some(code) => {
            println!("vm run: the script exited with {code}");
            Ok(code)
        }
        None => {
            println!("vm run: FAILED: the script's exit code was not copied back");
            Ok(INFRASTRUCTURE_FAILURE)
        }
    }
}

/// `/policies/<basename>` for a host path.
fn guest_path(dir: &str, host: &Path) -> Result<String> {
    let name = host
        .file_name()
        .with_context(|| format!("{} has no file name", host.display()))?;
    if !host.exists() {
        bail!("{} does not exist", host.display());
    }
    Ok(format!("{dir}/{}", name.to_string_lossy()))
}

fn prepare_out_dir(out: &Path) -> Result<()> {
    if out.exists()
        && fs::read_dir(out)
            .with_context(|| format!("listing {}", out.display()))?
            .next()
            .is_some()
    {
        bail!(
            "the output directory {} is not empty: outputs of two runs would mix",
            out.display()
        );
    }
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))
}

/// Unpacks the archive the guest sent over the second serial port into `out` (with the host's
/// tar, which every Debian system has).
fn copy_back(serial: &Path, out: &Path) -> Result<()> {
    let text = fs::read_to_string(serial)
        .with_context(|| format!("reading the guest's serial output {}", serial.display()))?;
    let archive = decode_archive(&text)?;
    let mut tar = Command::new("tar")
        .args(["-x", "--no-same-owner", "-f", "-", "-C"])
        .arg(out)
        .stdin(Stdio::piped())
        .spawn()
        .context("running tar")?;
    tar.stdin
        .take()
        .context("tar's stdin is not piped")?
        .write_all(&archive)
        .context("writing to tar")?;
    let status = tar.wait().context("waiting for tar")?;
    if !status.success() {
        bail!("tar could not unpack the guest's archive ({status})");
    }
    Ok(())
}

/// `YYYYMMDD-HHMMSS` in UTC: sorts by time and needs no time zone database.
pub fn timestamp(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_timestamps() {
        assert_eq!(timestamp(UNIX_EPOCH), "19700101-000000");
        // 2024-02-29 13:45:07 UTC, a leap day.
        let leap = UNIX_EPOCH + Duration::from_secs(1_709_214_307);
        assert_eq!(timestamp(leap), "20240229-134507");
    }

    #[test]
    fn guest_paths_keep_the_base_name() {
        let dir = tempfile::tempdir().unwrap();
        let policy = dir.path().join("deny.yaml");
        fs::write(&policy, "").unwrap();
        assert_eq!(
            guest_path("/policies", &policy).unwrap(),
            "/policies/deny.yaml"
        );
        assert!(guest_path("/policies", &dir.path().join("missing"))
            .unwrap_err()
            .to_string()
            .contains("does not exist"));
    }

    #[test]
    fn refuses_a_non_empty_output_directory() {
        let dir = tempfile::tempdir().unwrap();
        prepare_out_dir(&dir.path().join("new")).unwrap();
        fs::write(dir.path().join("new/x"), "").unwrap();
        assert!(prepare_out_dir(&dir.path().join("new")).is_err());
    }
}
