//! The exit codes of `enforcer`, documented in `enforcer --help` and
//! docs/architecture.md. Scripts and units key off these, so they only ever
//! gain new values.

use std::process::ExitCode;

/// Success.
pub const OK: u8 = 0;
/// A failure not covered below; the message says what went wrong.
pub const ERROR: u8 = 1;
/// The command line was wrong (clap uses 2 as well).
pub const USAGE: u8 = 2;
/// `doctor`: only a degraded mode is possible on this kernel.
pub const DEGRADED: u8 = 3;
/// The command needs root (CAP_BPF and CAP_SYS_ADMIN).
pub const NOT_ROOT: u8 = 4;
/// bpffs is not mounted and could not be mounted.
pub const BPFFS: u8 = 5;
/// The state directory cannot be created or written.
pub const STATE_DIR: u8 = 6;
/// A policy (or the rule given on the command line) is invalid.
pub const POLICY: u8 = 7;
/// The kernel refused a program or map (the verifier log is printed).
pub const KERNEL_LOAD: u8 = 8;
/// The config file is unreadable or invalid.
pub const CONFIG: u8 = 9;
/// `run`: the metrics address is in use or cannot be bound.
pub const PORT: u8 = 10;
/// `status`: no daemon is running (no status file, or its pid is not the daemon that wrote it).
pub const NO_DAEMON: u8 = 11;
/// `learn`: no would-deny events in the range, or none that an allow rule can permit.
pub const NOTHING_LEARNED: u8 = 12;

/// An error that carries the exit code it should end the process with.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
    /// The details were printed already (diagnostics); only the exit code remains.
    pub quiet: bool,
}

impl Failure {
    pub fn new(code: u8, error: impl Into<anyhow::Error>) -> Self {
        Failure {
            code,
            error: error.into(),
            quiet: false,
        }
    }

    pub fn quiet(mut self) -> Self {
        self.quiet = true;
        self
    }
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure {
            code: ERROR,
            error: error.into(),
            quiet: false,
        }
    }
}

pub fn to_exit_code(code: u8) -> ExitCode {
    ExitCode::from(code)
}
