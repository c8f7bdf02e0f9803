//! `cargo xtask test`: prerequisites, formatting, lints, host tests, then the VM stage. Every
//! stage runs even when an earlier one failed (except without prerequisites), so one CI run
//! shows all problems; the caller prints the stages and the combined `N passed, N failed` as the
//! last line.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::guest_report::counts_line;
use crate::kernel_cache::KernelSeries;
use crate::prerequisites;
use crate::suite::{self, SuiteOptions};
use crate::workspace::{EnforcerBinary, Workspace};

/// Test counts, plus the steps that failed without test counts of their own (fmt, clippy, a
/// build); each of those counts as one failure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub passed: usize,
    pub failed: usize,
    /// One line per stage, printed before the total.
    pub stages: Vec<String>,
}

impl Tally {
    fn add(&mut self, stage: &str, passed: usize, failed: usize, elapsed: Duration) {
        self.passed += passed;
        self.failed += failed;
        self.stages.push(format!(
            "{stage}: {} ({:.0} s)",
            counts_line(passed, failed),
            elapsed.as_secs_f64()
        ));
    }

    fn step(&mut self, stage: &str, result: Result<()>, elapsed: Duration) {
        match result {
            Ok(()) => self
                .stages
                .push(format!("{stage}: ok ({:.0} s)", elapsed.as_secs_f64())),
            Err(error) => {
                println!("{stage} FAILED: {error:#}");
                self.failed += 1;
                self.stages.push(format!("{stage}: FAILED ({error:#})"));
            }
        }
    }
}

pub fn run(ws: &Workspace, vm_timeout: Duration) -> Tally {
    let mut tally = Tally::default();
    let started = Instant::now();
    let installed = prerequisites::ensure_installed(prerequisites::ALL);
    let have_prerequisites = installed.is_ok();
    tally.step("prerequisites", installed, started.elapsed());
    if !have_prerequisites {
        return tally;
    }

    let started = Instant::now();
    let fmt = checked(ws, &["fmt", "--all", "--check"]);
    tally.step("cargo fmt --check", fmt, started.elapsed());

    let started = Instant::now();
    let clippy = checked(
        ws,
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    );
    tally.step("cargo clippy", clippy, started.elapsed());

    // Every test binary runs, so one failure never hides the others.
    cargo_test(
        ws,
        "host tests",
        &["test", "--workspace", "--no-fail-fast"],
        &mut tally,
    );

    let started = Instant::now();
    let options = SuiteOptions {
        kernels: KernelSeries::ALL.to_vec(),
        timeout: vm_timeout,
        enforcer: EnforcerBinary::Required,
        filter: None,
    };
    match suite::run(ws, &options) {
        Ok(results) => {
            let passed = results.iter().map(|r| r.passed).sum();
            let failed = results.iter().map(|r| r.failed).sum();
            tally.add("vm suite", passed, failed, started.elapsed());
        }
        Err(error) => tally.step("vm suite", Err(error), started.elapsed()),
    }

    // The `vm run` tests boot VMs themselves; they are ignored in the host stage above.
    cargo_test(
        ws,
        "vm run tests",
        &[
            "test",
            "-p",
            "integration",
            "--test",
            "vm_run",
            "--",
            "--ignored",
            // One VM at a time: two cores, and one apt state for the kernels.
            "--test-threads=1",
        ],
        &mut tally,
    );
    tally
}

fn checked(ws: &Workspace, args: &[&str]) -> Result<()> {
    println!("running: cargo {}", args.join(" "));
    let status = ws
        .cargo(args)
        .status()
        .with_context(|| format!("running cargo {}", args[0]))?;
    anyhow::ensure!(
        status.success(),
        "`cargo {}` failed ({status})",
        args.join(" ")
    );
    Ok(())
}

/// Runs `cargo test`, streaming its output and adding up its `test result:` lines.
fn cargo_test(ws: &Workspace, stage: &str, args: &[&str], tally: &mut Tally) {
    let started = Instant::now();
    println!("running: cargo {}", args.join(" "));
    let result = (|| -> Result<(usize, usize)> {
        let mut child = ws
            .cargo(args)
            .stdout(Stdio::piped())
            .spawn()
            .context("running cargo test")?;
        let stdout = child.stdout.take().context("cargo's stdout is not piped")?;
        let (mut passed, mut failed) = (0, 0);
        for line in BufReader::new(stdout).lines() {
            let line = line.context("reading cargo test's output")?;
            println!("{line}");
            if let Some((p, f)) = parse_test_result(&line) {
                passed += p;
                failed += f;
            }
        }
        let status = child.wait().context("waiting for cargo test")?;
        // A build failure or a crashed test binary prints no (or too few) failure counts.
        anyhow::ensure!(
            status.success() || failed > 0,
            "`cargo {}` failed ({status}) without failing tests: see the errors above",
            args.join(" ")
        );
        Ok((passed, failed))
    })();
    match result {
        Ok((passed, failed)) => tally.add(stage, passed, failed, started.elapsed()),
        Err(error) => tally.step(stage, Err(error), started.elapsed()),
    }
}

/// `test result: ok. 12 passed; 0 failed; 1 ignored; ...` -> (12, 0).
fn parse_test_result(line: &str) -> Option<(usize, usize)> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let (_, counts) = rest.split_once(". ")?;
    let mut passed = None;
    let mut failed = None;
    for part in counts.split(';') {
        match part.trim().split_once(' ') {
            Some((n, "passed")) => passed = n.parse().ok(),
            Some((n, "failed")) => failed = n.parse().ok(),
            _ => {}
        }
    }
    Some((passed?, failed?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cargo_test_result_lines() {
        assert_eq!(
            parse_test_result(
                "test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s"
            ),
            Some((12, 0))
        );
        assert_eq!(
            parse_test_result("test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.20s"),
            Some((3, 2))
        );
        assert_eq!(parse_test_result("test foo ... ok"), None);
    }

    #[test]
    fn failed_steps_count_as_one_failure_each() {
        let mut tally = Tally::default();
        tally.add("host tests", 10, 1, Duration::ZERO);
        tally.step(
            "cargo fmt --check",
            Err(anyhow::anyhow!("diff")),
            Duration::ZERO,
        );
        tally.step("cargo clippy", Ok(()), Duration::ZERO);
        assert_eq!((tally.passed, tally.failed), (10, 2));
        assert_eq!(
            tally.stages,
            [
                "host tests: 10 passed, 1 failed (0 s)",
                "cargo fmt --check: FAILED (diff)",
                "cargo clippy: ok (0 s)",
            ]
        );
    }
}
