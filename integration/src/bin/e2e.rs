//! `/bin/enforcer-e2e`: the end-to-end suite, run inside the test VM (see `integration::e2e`).
//! Exits non-zero when a test failed. `enforcer-e2e microbench` runs the kernel-side
//! benchmarks instead (see `integration::bench`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use integration::{bench, e2e};

#[derive(Parser)]
#[command(
    name = "enforcer-e2e",
    about = "End-to-end tests; run inside the test VM as root",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Mode>,
    /// Only the tests whose name contains this.
    filter: Option<String>,
    /// Print the test names instead of running them.
    #[arg(long)]
    list: bool,
}

#[derive(Subcommand)]
enum Mode {
    /// Kernel-side microbenchmarks under every configuration (`cargo xtask vm bench`).
    Microbench(bench::BenchArgs),
    /// One benchmark worker (started by `microbench` inside its cgroup).
    #[command(name = "microbench-worker", hide = true)]
    MicrobenchWorker(bench::WorkerArgs),
    /// Copies PROGRAM into a memfd and executes it with ARGS (the memfd tests' attack).
    #[command(name = "memfd-exec", hide = true)]
    MemfdExec {
        program: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Mode::Microbench(args)) => return microbench(&args),
        Some(Mode::MicrobenchWorker(args)) => {
            return match bench::worker(&args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("error: benchmark worker: {error:#}");
                    ExitCode::FAILURE
                }
            };
        }
        Some(Mode::MemfdExec { program, args }) => {
            // Returns only when the exec failed.
            let Err(error) = e2e::memfd_exec::exec_from_memfd(&program, &args);
            eprintln!("error: memfd-exec: {error:#}");
            return ExitCode::FAILURE;
        }
        None => {}
    }
    let tests = e2e::selected(cli.filter.as_deref());
    // Every daemon the tests start pins its plans under the suite's own pin root, which the
    // runner clears after each test (nothing else may run yet: set_var is not thread-safe).
    std::env::set_var(e2e::pinning::PIN_ROOT_ENV, e2e::pinning::PIN_ROOT);
    if cli.list {
        for (name, _) in &tests {
            println!("{name}");
        }
        return ExitCode::SUCCESS;
    }
    let (_, failed) = e2e::run(&tests, &mut std::io::stdout());
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Fails only when the benchmark itself failed, never on a figure.
fn microbench(args: &bench::BenchArgs) -> ExitCode {
    match bench::run(args) {
        Ok(report) if report.failures().is_empty() => ExitCode::SUCCESS,
        Ok(report) => {
            for failed in report.failures() {
                eprintln!(
                    "error: configuration `{}` failed: {}",
                    failed.name, failed.detail
                );
            }
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("error: microbench: {error:#}");
            ExitCode::FAILURE
        }
    }
}
