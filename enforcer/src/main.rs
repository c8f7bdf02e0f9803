//! `enforcer`: the runtime security enforcer's daemon and CLI.

mod alerts;
mod binary_filters;
mod cgroup;
mod config;
mod config_reload;
mod doctor;
mod events_cmd;
mod exec_fallback;
mod exit_code;
mod export_cmd;
mod kernel_apply;
mod kernel_class;
mod kernel_record;
mod kernel_settings;
mod learn_cmd;
mod metrics;
mod pinning;
mod policy_cmd;
mod process_feed;
mod reload;
mod run;
mod self_guard;
mod status;
mod verdict_log;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

const EXIT_CODES: &str = "\
Exit codes:
  0  success (doctor: BPF LSM enforcement available)
  1  error
  2  usage error
  3  doctor: only a degraded mode is possible on this kernel
  4  not root
  5  bpffs is not mounted and cannot be mounted
  6  the state directory is not writable
  7  invalid policy or rule
  8  the kernel refused a program (the verifier log is printed)
  9  the config file is unreadable or invalid
  10 the metrics address is in use or cannot be bound
  11 status: no daemon is running
  12 learn: no would-deny events to learn from, or none an allow rule can permit
unload: 0 nothing is pinned any more (also when nothing was), 1 a pin could not be removed,
  4 not root, 9 bad config";

#[derive(Parser)]
#[command(name = "enforcer", version, about = "Runtime security enforcer (BPF LSM)", after_help = EXIT_CODES)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Pretty)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Pretty,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Probe the running kernel: what the enforcer can use, and what it does
    /// about what is missing.
    Doctor {
        /// Print the report as JSON (also usable as `policy compile --kernel`).
        #[arg(long)]
        json: bool,
    },
    /// Load the kernel programs and report verdicts until SIGTERM/SIGINT; SIGHUP and edits
    /// of the policy files reload the policies.
    Run(run::RunArgs),
    /// What the running daemon enforces (policies, hooks, reloads, kernel counters) and the
    /// event store's size; exit code 11 when no daemon runs.
    Status(status::StatusArgs),
    /// Check, compile and test policy files.
    #[command(subcommand)]
    Policy(policy_cmd::PolicyCommand),
    /// Query and follow the local event store; import exported events.
    #[command(subcommand)]
    Events(events_cmd::EventsCommand),
    /// Print the allow rules that would have permitted what a policy audited (or denied),
    /// as a policy file to review: the safe path to a default-deny policy.
    Learn(learn_cmd::LearnArgs),
    /// Try the configured SIEM sinks, replay dead letters, show the export outbox.
    #[command(subcommand)]
    Export(export_cmd::ExportCommand),
    /// Detach and remove every pinned generation: enforcement stops once no daemon holds
    /// its programs. Idempotent.
    Unload(pinning::UnloadArgs),
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ENFORCER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Pretty => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Doctor { json } => doctor::run(json).map_err(exit_code::Failure::from),
        Command::Run(args) => run::run(args).map(|()| exit_code::OK),
        Command::Status(args) => status::run(args),
        Command::Policy(cmd) => policy_cmd::run(cmd),
        Command::Events(cmd) => events_cmd::run(cmd),
        Command::Export(cmd) => export_cmd::run(cmd),
        Command::Learn(args) => learn_cmd::run(args),
        Command::Unload(args) => pinning::unload(args),
    };
    match result {
        Ok(code) => exit_code::to_exit_code(code),
        Err(failure) => {
            if !failure.quiet {
                eprintln!("error: {:#}", failure.error);
            }
            exit_code::to_exit_code(failure.code)
        }
    }
}
