//! `cargo xtask vm suite`: one boot per kernel runs the whole end-to-end suite.

use std::fs;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::emulator::Emulator;
use crate::guest_init::suite_script;
use crate::guest_report::{counts_line, Outcome, SuiteReport};
use crate::guest_rootfs::{base_image, GUEST_E2E, GUEST_ENFORCER};
use crate::kernel_cache::{KernelCache, KernelSeries};
use crate::prerequisites;
use crate::qemu::{self, Boot};
use crate::replay_plan::GUEST_REPLAY;
use crate::workspace::{build_guest_binaries, EnforcerBinary, Workspace};

/// The guest's runner prints a line at least every minute while a test runs, and clearing a
/// test's pins takes at most two; a console silent for this long means the guest hung, which is
/// then reported long before the hard limit.
const SILENT_GUEST: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
pub struct SuiteOptions {
    pub kernels: Vec<KernelSeries>,
    /// Per boot.
    pub timeout: Duration,
    pub enforcer: EnforcerBinary,
    /// Only the tests whose name contains this.
    pub filter: Option<String>,
}

/// The result on one kernel.
#[derive(Debug, Clone)]
pub struct KernelResult {
    /// `uname -r`, or the series when the kernel could not be fetched.
    pub kernel: String,
    pub passed: usize,
    /// Failed tests, tests that never reported, and one more when the VM itself failed.
    pub failed: usize,
}

/// Builds, packs and boots every kernel; prints the per-kernel lines (not the final total).
pub fn run(ws: &Workspace, options: &SuiteOptions) -> Result<Vec<KernelResult>> {
    prerequisites::ensure_installed(prerequisites::VM)?;
    let binaries = build_guest_binaries(ws, options.enforcer)?;
    let expected = list_tests(&binaries.e2e, options.filter.as_deref())?;
    if expected.is_empty() {
        bail!("no end-to-end test matches {:?}", options.filter);
    }

    let dir = ws.target_dir.join("vm-suite");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut guest_binaries = vec![
        (GUEST_E2E, binaries.e2e.as_path()),
        (GUEST_REPLAY, binaries.replay.as_path()),
    ];
    if let Some(enforcer) = &binaries.enforcer {
        guest_binaries.push((GUEST_ENFORCER, enforcer.as_path()));
    }
    let image = base_image(&guest_binaries, &suite_script(options.filter.as_deref()))?;
    // Per run, so that two suites running at once never boot each other's image.
    let initramfs = dir.join(format!("initramfs-{}.cpio", std::process::id()));
    image.write_to(&initramfs)?;

    let cache = KernelCache::new(&ws.vm_cache_dir());
    let emulator = Emulator::ensure(&ws.vm_cache_dir())?;
    println!("emulator: {}", emulator.description);
    let mut results = Vec::new();
    let mut notes = Vec::new();
    for &series in &options.kernels {
        let result = match cache.kernel(series) {
            Ok(kernel) => {
                let console_log = dir.join(format!("console-{}.log", series.label()));
                let boot = qemu::boot(&Boot {
                    emulator: &emulator,
                    vmlinuz: &kernel.vmlinuz,
                    initramfs: &initramfs,
                    label: series.label(),
                    timeout: options.timeout,
                    idle_timeout: Some(SILENT_GUEST),
                    console_log: &console_log,
                    second_serial: None,
                })?;
                notes.push(format!(
                    "kernel {}: boot and suite took {:.1} s (console: {})",
                    kernel.release,
                    boot.elapsed.as_secs_f64(),
                    console_log.display()
                ));
                let report = SuiteReport::parse(&boot.console);
                let vm_failure = boot.vm_failure().or_else(|| report.incomplete_reason());
                judge(&kernel.release, &expected, &report, vm_failure, &mut notes)
            }
            Err(error) => {
                let failure = format!("could not get the kernel: {error:#}");
                judge(
                    series.label(),
                    &expected,
                    &SuiteReport::default(),
                    Some(failure),
                    &mut notes,
                )
            }
        };
        results.push(result);
    }
    for note in notes {
        println!("{note}");
    }
    for result in &results {
        println!(
            "kernel {}: {}",
            result.kernel,
            counts_line(result.passed, result.failed)
        );
    }
    // The image is rebuilt every run; leaving it would fill target/ with one per run.
    let _ = std::fs::remove_file(&initramfs);
    Ok(results)
}

/// Counts one kernel's results and explains every failure by name.
fn judge(
    kernel: &str,
    expected: &[String],
    report: &SuiteReport,
    vm_failure: Option<String>,
    notes: &mut Vec<String>,
) -> KernelResult {
    for (name, outcome) in &report.tests {
        if let Outcome::Failed(reason) = outcome {
            notes.push(format!("kernel {kernel}: FAILED {name}: {reason}"));
        }
    }
    let unreported: Vec<&String> = expected
        .iter()
        .filter(|name| !report.tests.iter().any(|(n, _)| n == *name))
        .collect();
    for name in &unreported {
        notes.push(format!(
            "kernel {kernel}: FAILED {name}: never reported a result"
        ));
    }
    if let Some(failure) = &vm_failure {
        notes.push(format!("kernel {kernel}: FAILED (VM): {failure}"));
    }
    KernelResult {
        kernel: kernel.to_string(),
        passed: report.passed(),
        failed: report.failed() + unreported.len() + usize::from(vm_failure.is_some()),
    }
}

/// The names of the tests the guest will run, asked from the same binary on the host.
fn list_tests(e2e: &std::path::Path, filter: Option<&str>) -> Result<Vec<String>> {
    let mut command = Command::new(e2e);
    command.arg("--list");
    command.args(filter);
    let output = command
        .output()
        .with_context(|| format!("running {} --list", e2e.display()))?;
    if !output.status.success() {
        bail!("`{} --list` failed ({})", e2e.display(), output.status);
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hung_vm_fails_every_unreported_test_and_itself() {
        let expected = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let report = SuiteReport {
            tests: vec![
                ("a".into(), Outcome::Passed),
                ("b".into(), Outcome::Failed("boom".into())),
            ],
            ..SuiteReport::default()
        };
        let mut notes = Vec::new();
        let result = judge(
            "6.1.0-1-cloud-amd64",
            &expected,
            &report,
            Some("the VM hung".into()),
            &mut notes,
        );
        assert_eq!((result.passed, result.failed), (1, 3));
        assert_eq!(
            notes,
            [
                "kernel 6.1.0-1-cloud-amd64: FAILED b: boom",
                "kernel 6.1.0-1-cloud-amd64: FAILED c: never reported a result",
                "kernel 6.1.0-1-cloud-amd64: FAILED (VM): the VM hung",
            ]
        );
    }
}
