//! Running a command and capturing its result.

use std::fmt;
use std::process::{Command, ExitStatus, Stdio};

use anyhow::{bail, Context, Result};

/// What a finished command did.
#[derive(Debug, Clone)]
pub struct Captured {
    /// How it was run, for error messages.
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Captured {
    /// The exit code; `None` when a signal ended the command.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// `self` if the command succeeded, else an error with its output.
    pub fn success(self) -> Result<Self> {
        if !self.status.success() {
            bail!("{self}");
        }
        Ok(self)
    }
}

impl fmt::Display for Captured {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} exited with {}; stdout: {:?}; stderr: {:?}",
            self.command,
            self.status,
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

/// Runs `command` to completion with stdin closed, capturing stdout and stderr.
pub fn capture(command: &mut Command) -> Result<Captured> {
    let description = format!("{command:?}");
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {description}"))?;
    Ok(Captured {
        command: description,
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// Runs a shell snippet with `/bin/sh -c`.
pub fn sh(script: &str) -> Result<Captured> {
    capture(Command::new("/bin/sh").args(["-c", script]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_status_and_both_streams() {
        let captured = sh("echo out; echo err >&2; exit 3").unwrap();
        assert_eq!(captured.code(), Some(3));
        assert_eq!(captured.stdout, "out\n");
        assert_eq!(captured.stderr, "err\n");
        let error = captured.success().unwrap_err().to_string();
        assert!(
            error.contains("exit status: 3") && error.contains("\"err\""),
            "{error}"
        );
    }
}
