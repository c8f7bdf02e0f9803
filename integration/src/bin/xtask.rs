//! `cargo xtask`: the project's development commands. The logic lives in the `integration`
//! library; this only parses the command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use integration::guest_report::counts_line;
use integration::kernel_cache::KernelSeries;
use integration::suite::{self, SuiteOptions};
use integration::test_pipeline;
use integration::vm_bench::{self, BenchOptions};
use integration::vm_run::{self, Mode, RunOptions, INFRASTRUCTURE_FAILURE};
use integration::workspace::{EnforcerBinary, Workspace};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Development commands of the enforcer workspace"
)]
struct Cli {
    #[command(subcommand)]
    command: Top,
}

#[derive(Subcommand)]
enum Top {
    /// Builds the enforcer and runs it on this host with the embedded rule library in audit
    /// mode, printing verdicts until Ctrl-C (through sudo when not root).
    Run,
    /// Test VMs (Debian cloud kernels under qemu).
    Vm {
        #[command(subcommand)]
        command: Vm,
    },
    /// Everything CI runs: prerequisites, fmt, clippy, host tests, the VM suite on every kernel
    /// and the `vm run` tests. The last line is the combined `N passed, N failed`.
    Test {
        /// Hard limit for each boot of the VM suite, in seconds (a guest whose console stays
        /// silent for five minutes is stopped before that).
        #[arg(long, env = "ENFORCER_VM_TIMEOUT", default_value_t = 1800)]
        vm_timeout: u64,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum KernelChoice {
    #[value(name = "6.1")]
    V6_1,
    #[value(name = "6.12")]
    V6_12,
    All,
}

impl KernelChoice {
    fn series(self) -> Vec<KernelSeries> {
        match self {
            KernelChoice::V6_1 => vec![KernelSeries::V6_1],
            KernelChoice::V6_12 => vec![KernelSeries::V6_12],
            KernelChoice::All => KernelSeries::ALL.to_vec(),
        }
    }
}

#[derive(Subcommand)]
enum Vm {
    /// Runs the whole end-to-end suite, one boot per kernel.
    Suite {
        #[arg(long, value_enum, default_value = "all")]
        kernel: KernelChoice,
        /// Only the tests whose name contains this (e.g. `file_open::`).
        #[arg(long)]
        test: Option<String>,
        /// Hard limit for each boot, in seconds (a guest whose console stays silent for five
        /// minutes is stopped before that).
        #[arg(long, env = "ENFORCER_VM_TIMEOUT", default_value_t = 1800)]
        timeout: u64,
        /// Leaves the enforcer out of the guest (for working on the runner while the enforcer
        /// does not build); its tests then fail.
        #[arg(long, hide = true)]
        without_enforcer: bool,
    },
    /// Kernel-side microbenchmarks (open, execve, connect, mmap) with no enforcer, empty LSM
    /// programs, the enforcer with N rules and AppArmor, side by side in one boot per kernel.
    /// Fails only when the benchmark itself failed, never on a figure.
    Bench {
        #[arg(long, value_enum, default_value = "all")]
        kernel: KernelChoice,
        /// Operations per round for open and mmap; connect does a quarter, execve a fiftieth.
        #[arg(long, default_value_t = 2000)]
        iterations: u32,
        /// Measured rounds per configuration, after a warm-up round.
        #[arg(long, default_value_t = 5)]
        rounds: u32,
        /// Passes over every configuration; the rounds of all passes make the median.
        #[arg(long, default_value_t = 3)]
        passes: u32,
        /// The enforcer configurations, by number of rules.
        #[arg(long, value_delimiter = ',', default_value = "10,10000")]
        rules: Vec<usize>,
        /// Where the reports go (default: target/vm-bench/<timestamp>); must be empty.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Hard limit for each boot, in seconds.
        #[arg(long, env = "ENFORCER_VM_TIMEOUT", default_value_t = 3600)]
        timeout: u64,
    },
    /// Runs the enforcer with the given inputs and a script in a VM; exits with the script's
    /// code, or 125 when the VM or the enforcer failed.
    Run {
        #[arg(long, value_enum)]
        kernel: KernelSeries,
        /// A policy file, copied to /policies/ and passed as `--policy`.
        #[arg(long)]
        policy: Vec<PathBuf>,
        /// The enforcer's configuration, copied to /config/ and passed as `--config`.
        #[arg(long)]
        config: Option<PathBuf>,
        /// A host file or folder copied to /include/<its name>.
        #[arg(long)]
        include: Vec<PathBuf>,
        #[arg(long, value_enum)]
        mode: Option<Mode>,
        /// Run with /bin/sh as root in / once the enforcer is ready.
        #[arg(long)]
        script: PathBuf,
        /// Where the outputs go (default: target/vm-run/<timestamp>); must be empty.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Hard limit for the boot, in seconds.
        #[arg(long, env = "ENFORCER_VM_TIMEOUT", default_value_t = 600)]
        timeout: u64,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let ws = Workspace::locate()?;
    match cli.command {
        Top::Run => {
            integration::host_run::run(&ws)?;
            Ok(ExitCode::SUCCESS)
        }
        Top::Vm {
            command:
                Vm::Suite {
                    kernel,
                    test,
                    timeout,
                    without_enforcer,
                },
        } => {
            let options = SuiteOptions {
                kernels: kernel.series(),
                timeout: Duration::from_secs(timeout),
                enforcer: if without_enforcer {
                    EnforcerBinary::Omitted
                } else {
                    EnforcerBinary::Required
                },
                filter: test,
            };
            let results = suite::run(&ws, &options)?;
            let passed = results.iter().map(|r| r.passed).sum();
            let failed = results.iter().map(|r| r.failed).sum();
            println!("{}", counts_line(passed, failed));
            Ok(exit_code(failed == 0))
        }
        Top::Vm {
            command:
                Vm::Run {
                    kernel,
                    policy,
                    config,
                    include,
                    mode,
                    script,
                    out,
                    timeout,
                },
        } => {
            let options = RunOptions {
                kernel,
                policies: policy,
                config,
                includes: include,
                mode,
                script,
                out,
                timeout: Duration::from_secs(timeout),
            };
            let code = vm_run::run(&ws, &options).unwrap_or_else(|error| {
                eprintln!("error: {error:#}");
                INFRASTRUCTURE_FAILURE
            });
            Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
        }
        Top::Vm {
            command:
                Vm::Bench {
                    kernel,
                    iterations,
                    rounds,
                    passes,
                    rules,
                    out,
                    timeout,
                },
        } => {
            let command = std::iter::once("cargo xtask".to_string())
                .chain(std::env::args().skip(1))
                .collect::<Vec<_>>()
                .join(" ");
            let options = BenchOptions {
                kernels: kernel.series(),
                iterations,
                rounds,
                passes,
                rules,
                out,
                timeout: Duration::from_secs(timeout),
                command,
            };
            Ok(exit_code(vm_bench::run(&ws, &options)?))
        }
        Top::Test { vm_timeout } => {
            let tally = test_pipeline::run(&ws, Duration::from_secs(vm_timeout));
            for stage in &tally.stages {
                println!("{stage}");
            }
            println!("{}", counts_line(tally.passed, tally.failed));
            Ok(exit_code(tally.failed == 0))
        }
    }
}

fn exit_code(success: bool) -> ExitCode {
    if success {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
