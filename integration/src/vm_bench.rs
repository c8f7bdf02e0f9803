//! `cargo xtask vm bench`: the kernel-side microbenchmarks (`integration::bench`) in one boot
//! per kernel; prints a table per kernel and writes the reports (JSON per kernel, one
//! markdown file) into an output folder. Fails only when the benchmark itself failed, never
//! on a figure.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};

use crate::apt_sources::PrivateApt;
use crate::bench::report::GuestReport;
use crate::bench::APPARMOR_PARSER;
use crate::emulator::Emulator;
use crate::guest_init::bench_script;
use crate::guest_report::{decode_archive, status_lines};
use crate::guest_rootfs::{base_image, GUEST_E2E, GUEST_ENFORCER};
use crate::kernel_cache::{run_checked, KernelCache, KernelSeries};
use crate::prerequisites;
use crate::qemu::{self, Boot};
use crate::vm_run::timestamp;
use crate::workspace::{build_guest_binaries, EnforcerBinary, Workspace};

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub kernels: Vec<KernelSeries>,
    pub iterations: u32,
    pub rounds: u32,
    pub passes: u32,
    /// The enforcer configurations, by number of rules.
    pub rules: Vec<usize>,
    /// Default: target/vm-bench/<timestamp>; must be empty.
    pub out: Option<PathBuf>,
    /// Per boot.
    pub timeout: Duration,
    /// The command line, recorded in the markdown.
    pub command: String,
}

/// What one kernel's boot gave.
#[derive(Debug)]
struct KernelRun {
    label: &'static str,
    report: Option<GuestReport>,
    failures: Vec<String>,
    load_before: String,
    load_after: String,
    elapsed: Duration,
}

/// Runs the benchmark on every kernel; `Ok(true)` when every configuration ran (AppArmor
/// being unavailable on a kernel is not a failure).
pub fn run(ws: &Workspace, options: &BenchOptions) -> Result<bool> {
    prerequisites::ensure_installed(prerequisites::VM)?;
    let out = match &options.out {
        Some(out) => out.clone(),
        None => ws
            .target_dir
            .join("vm-bench")
            .join(timestamp(SystemTime::now())),
    };
    prepare_out_dir(&out)?;
    let binaries = build_guest_binaries(ws, EnforcerBinary::Required)?;
    let enforcer = binaries
        .enforcer
        .as_deref()
        .context("the enforcer binary is required for `vm bench`")?;
    let parser = match apparmor_parser(&ws.vm_cache_dir()) {
        Ok(parser) => Some(parser),
        Err(error) => {
            println!(
                "warning: no AppArmor parser for the guest ({error:#}); the `apparmor` \
                 configuration will be reported unavailable"
            );
            None
        }
    };
    let mut guest_binaries = vec![
        (GUEST_E2E, binaries.e2e.as_path()),
        (GUEST_ENFORCER, enforcer),
    ];
    if let Some(parser) = &parser {
        guest_binaries.push((APPARMOR_PARSER, parser.as_path()));
    }
    let bench_args = vec![
        "--iterations".to_string(),
        options.iterations.to_string(),
        "--rounds".to_string(),
        options.rounds.to_string(),
        "--passes".to_string(),
        options.passes.to_string(),
        "--rules".to_string(),
        options
            .rules
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(","),
    ];
    let image = base_image(&guest_binaries, &bench_script(&bench_args))?;
    let work = tempfile::Builder::new()
        .prefix(".work-")
        .tempdir_in(&out)
        .with_context(|| format!("creating a work directory in {}", out.display()))?;
    let initramfs = work.path().join("initramfs.cpio");
    image.write_to(&initramfs)?;

    let cache = KernelCache::new(&ws.vm_cache_dir());
    let emulator = Emulator::ensure(&ws.vm_cache_dir())?;
    println!("emulator: {}", emulator.description);
    let mut runs = Vec::new();
    for &series in &options.kernels {
        let mut run = KernelRun {
            label: series.label(),
            report: None,
            failures: Vec::new(),
            load_before: load_average(),
            load_after: String::new(),
            elapsed: Duration::ZERO,
        };
        match cache.kernel(series) {
            Ok(kernel) => {
                let serial = work.path().join(format!("ttyS1-{}.out", series.label()));
                let boot = qemu::boot(&Boot {
                    emulator: &emulator,
                    vmlinuz: &kernel.vmlinuz,
                    initramfs: &initramfs,
                    label: series.label(),
                    timeout: options.timeout,
                    idle_timeout: None,
                    console_log: &out.join(format!("console-{}.log", series.label())),
                    second_serial: Some(&serial),
                })?;
                run.elapsed = boot.elapsed;
                run.load_after = load_average();
                if let Some(failure) = boot.vm_failure() {
                    run.failures.push(failure);
                }
                match status_lines(&boot.console)
                    .get("bench-exit")
                    .map(String::as_str)
                {
                    Some("0") => {}
                    Some(code) => run
                        .failures
                        .push(format!("the guest's benchmark driver exited with {code}")),
                    None => run
                        .failures
                        .push("the guest never finished the benchmark driver".into()),
                }
                match read_report(&serial) {
                    Ok(report) => {
                        for failed in report.failures() {
                            run.failures.push(format!(
                                "configuration `{}` failed: {}",
                                failed.name, failed.detail
                            ));
                        }
                        let json = out.join(format!("bench-{}.json", series.label()));
                        fs::write(&json, serde_json::to_vec_pretty(&report)?)
                            .with_context(|| format!("writing {}", json.display()))?;
                        run.report = Some(report);
                    }
                    Err(error) => run.failures.push(format!("{error:#}")),
                }
            }
            Err(error) => run
                .failures
                .push(format!("could not get the kernel: {error:#}")),
        }
        runs.push(run);
    }

    let markdown = markdown(options, &emulator, &runs);
    let md = out.join("bench.md");
    fs::write(&md, &markdown).with_context(|| format!("writing {}", md.display()))?;
    println!("\n{markdown}");
    println!("vm bench: reports in {}", out.display());
    let mut ok = true;
    for run in &runs {
        for failure in &run.failures {
            println!("vm bench: kernel {}: FAILED: {failure}", run.label);
            ok = false;
        }
    }
    Ok(ok)
}

fn prepare_out_dir(out: &Path) -> Result<()> {
    if out.exists()
        && fs::read_dir(out)
            .with_context(|| format!("listing {}", out.display()))?
            .next()
            .is_some()
    {
        bail!(
            "the output directory {} is not empty: choose another with --out",
            out.display()
        );
    }
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))
}

fn read_report(serial: &Path) -> Result<GuestReport> {
    let text = fs::read_to_string(serial)
        .with_context(|| format!("reading the guest's serial output {}", serial.display()))?;
    let json = decode_archive(&text).context("reading the guest's benchmark report")?;
    serde_json::from_slice(&json).context("parsing the guest's benchmark report")
}

/// `/proc/loadavg`'s first three fields: how busy the machine was.
fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn markdown(options: &BenchOptions, emulator: &Emulator, runs: &[KernelRun]) -> String {
    let mut out = String::from("# Kernel-side microbenchmarks\n\n");
    let _ = writeln!(
        out,
        "Command: `{}`. Emulator: {} (TCG, one vCPU: absolute figures are emulation figures, \
         the ratios are what matter). {} ops per round for open and mmap ({} connect, {} execve), \
         {} passes over every configuration, {} rounds per pass after a warm-up round.\n",
        options.command,
        emulator.description,
        options.iterations,
        crate::bench::ops::iterations_of("connect", options.iterations),
        crate::bench::ops::iterations_of("execve", options.iterations),
        options.passes,
        options.rounds,
    );
    for run in runs {
        let _ = writeln!(
            out,
            "## Kernel {}\n\nHost load average {} before the boot, {} after; the boot took {:.0} s.\n",
            run.label,
            run.load_before,
            if run.load_after.is_empty() {
                "-"
            } else {
                &run.load_after
            },
            run.elapsed.as_secs_f64()
        );
        if let Some(report) = &run.report {
            out.push_str(&report.markdown());
        }
        for failure in &run.failures {
            let _ = writeln!(out, "\nFAILED: {failure}");
        }
        out.push('\n');
    }
    out
}

/// `apparmor_parser` from Debian's `apparmor` package, unpacked once into the VM cache. It
/// links only the C library, which the guest already has.
fn apparmor_parser(vm_cache_dir: &Path) -> Result<PathBuf> {
    let root = vm_cache_dir.join("packages").join("apparmor");
    let parser = root.join("files/sbin/apparmor_parser");
    let stamp = root.join("complete");
    if stamp.exists() && parser.is_file() {
        return Ok(parser);
    }
    if root.exists() {
        fs::remove_dir_all(&root).with_context(|| format!("removing {}", root.display()))?;
    }
    let download = root.join("download");
    fs::create_dir_all(&download).with_context(|| format!("creating {}", download.display()))?;
    println!("downloading the Debian package apparmor (for apparmor_parser in the guest)");
    let apt = PrivateApt::prepare(&vm_cache_dir.join("apt"))?;
    let fetch = |apt: &PrivateApt| {
        run_checked(
            apt.command("apt-get")
                .args(["-q", "download", "apparmor"])
                .current_dir(&download),
            "apt-get download apparmor",
        )
    };
    if fetch(&apt).is_err() {
        // No package lists yet, or stale ones: refresh once.
        run_checked(
            apt.command("apt-get").args(["-q", "update"]),
            "apt-get update",
        )?;
        fetch(&apt)?;
    }
    let deb = fs::read_dir(&download)
        .with_context(|| format!("listing {}", download.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .find(|path| path.extension().is_some_and(|e| e == "deb"))
        .with_context(|| format!("apt-get download left no .deb in {}", download.display()))?;
    run_checked(
        std::process::Command::new("dpkg")
            .arg("-x")
            .arg(&deb)
            .arg(root.join("files")),
        &format!("dpkg -x {}", deb.display()),
    )?;
    fs::remove_dir_all(&download).with_context(|| format!("removing {}", download.display()))?;
    if !parser.is_file() {
        bail!(
            "the apparmor package has no sbin/apparmor_parser (looked in {})",
            root.display()
        );
    }
    fs::write(&stamp, "apparmor").with_context(|| format!("writing {}", stamp.display()))?;
    Ok(parser)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_markdown_names_the_command_the_load_and_failures() {
        let options = BenchOptions {
            kernels: vec![KernelSeries::V6_1],
            iterations: 1000,
            rounds: 5,
            passes: 3,
            rules: vec![10, 10_000],
            out: None,
            timeout: Duration::from_secs(1),
            command: "cargo xtask vm bench".into(),
        };
        let runs = [KernelRun {
            label: "6.1",
            report: None,
            failures: vec!["the guest never finished the benchmark driver".into()],
            load_before: "3.10 2.00 1.00".into(),
            load_after: "3.50 2.10 1.10".into(),
            elapsed: Duration::from_secs(300),
        }];
        let text = markdown(&options, &Emulator::system(), &runs);
        assert!(text.contains("Command: `cargo xtask vm bench`."));
        assert!(text.contains("1000 ops per round for open and mmap (250 connect, 20 execve)"));
        assert!(
            text.contains("Host load average 3.10 2.00 1.00 before the boot, 3.50 2.10 1.10 after")
        );
        assert!(text.contains("FAILED: the guest never finished the benchmark driver"));
    }

    #[test]
    fn refuses_a_non_empty_output_directory() {
        let dir = tempfile::tempdir().unwrap();
        prepare_out_dir(&dir.path().join("new")).unwrap();
        fs::write(dir.path().join("new/x"), "").unwrap();
        assert!(prepare_out_dir(&dir.path().join("new")).is_err());
    }
}
