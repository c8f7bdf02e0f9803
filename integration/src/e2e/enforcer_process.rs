//! The enforcer daemon in the background of a test: `/bin/enforcer run`, ready when its log has
//! a line containing `enforcer ready`, stopped with SIGTERM.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::guest_rootfs::GUEST_ENFORCER;

/// The line (part) the enforcer prints once its programs are attached and it enforces.
pub const READY_TEXT: &str = "enforcer ready";
/// Generous for TCG emulation: loading and verifying BPF programs is slow there (the whole
/// rule library with self-protection's programs takes tens of seconds on 6.12, more while a
/// restart adopts a pinned plan on a loaded machine).
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(240);
/// How long the enforcer has to exit after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// A running enforcer, killed if dropped without [`Enforcer::stop`].
#[derive(Debug)]
pub struct Enforcer {
    child: Option<Child>,
    state_dir: PathBuf,
    log: PathBuf,
}

impl Enforcer {
    /// Starts `/bin/enforcer run --state-dir <fresh dir> <args>` and waits until it is ready.
    pub fn start(args: &[&str]) -> Result<Self> {
        Self::start_with_timeout(args, DEFAULT_READY_TIMEOUT)
    }

    pub fn start_with_timeout(args: &[&str], ready_timeout: Duration) -> Result<Self> {
        let dir = Self::fresh_dir();
        let state_dir = dir.join("state");
        fs::create_dir_all(&state_dir)
            .with_context(|| format!("creating {}", state_dir.display()))?;
        Self::spawn(&dir, state_dir, args, ready_timeout)
    }

    /// Starts `/bin/enforcer run` on an existing state directory (a restart), and waits until
    /// it is ready.
    pub fn start_in(state_dir: &Path, args: &[&str]) -> Result<Self> {
        Self::spawn(
            &Self::fresh_dir(),
            state_dir.to_path_buf(),
            args,
            DEFAULT_READY_TIMEOUT,
        )
    }

    fn fresh_dir() -> PathBuf {
        static RUNS: AtomicU32 = AtomicU32::new(0);
        let run = RUNS.fetch_add(1, Ordering::Relaxed);
        PathBuf::from(format!("/tmp/e2e-enforcer-{}-{run}", std::process::id()))
    }

    fn spawn(
        dir: &Path,
        state_dir: PathBuf,
        args: &[&str],
        ready_timeout: Duration,
    ) -> Result<Self> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let log = dir.join("enforcer.log");
        let log_file =
            fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(GUEST_ENFORCER)
            .arg("run")
            .arg("--state-dir")
            .arg(&state_dir)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().context("duplicating the log file")?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {GUEST_ENFORCER} (is it in the guest?)"))?;
        let mut enforcer = Self {
            child: Some(child),
            state_dir,
            log,
        };
        enforcer.wait_ready(ready_timeout)?;
        Ok(enforcer)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log()?.lines().any(|line| line.contains(READY_TEXT)) {
                return Ok(());
            }
            if let Some(status) = self
                .child_mut()?
                .try_wait()
                .context("polling the enforcer")?
            {
                bail!(
                    "the enforcer exited ({status}) before it was ready; its log:\n{}",
                    self.log()?
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "the enforcer did not print `{READY_TEXT}` within {} s; its log:\n{}",
                    timeout.as_secs(),
                    self.log()?
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn child_mut(&mut self) -> Result<&mut Child> {
        self.child
            .as_mut()
            .context("the enforcer was already stopped")
    }

    /// Its stdout and stderr so far.
    pub fn log(&self) -> Result<String> {
        fs::read_to_string(&self.log).with_context(|| format!("reading {}", self.log.display()))
    }

    /// Its process id, until it is stopped (to send it signals).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Whether it is still running (it should be, until stopped).
    pub fn is_running(&mut self) -> Result<bool> {
        Ok(self
            .child_mut()?
            .try_wait()
            .context("polling the enforcer")?
            .is_none())
    }

    /// SIGTERM, then waits up to [`STOP_TIMEOUT`]; an enforcer that does not exit by then is
    /// killed and that is an error.
    pub fn stop(mut self) -> Result<ExitStatus> {
        let mut child = self
            .child
            .take()
            .context("the enforcer was already stopped")?;
        let pid = Pid::from_raw(i32::try_from(child.id()).context("pid out of range")?);
        if let Some(status) = child.try_wait().context("polling the enforcer")? {
            bail!(
                "the enforcer had already exited ({status}); its log:\n{}",
                self.log()?
            );
        }
        kill(pid, Signal::SIGTERM).context("sending SIGTERM to the enforcer")?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().context("waiting for the enforcer")? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        bail!(
            "the enforcer did not exit within {} s of SIGTERM and was killed",
            STOP_TIMEOUT.as_secs()
        )
    }
}

impl Enforcer {
    /// SIGKILL, as a crash would end it: nothing of its shutdown runs. Returns once it is gone.
    pub fn kill9(mut self) -> Result<ExitStatus> {
        let mut child = self
            .child
            .take()
            .context("the enforcer was already stopped")?;
        child.kill().context("sending SIGKILL to the enforcer")?;
        child.wait().context("waiting for the killed enforcer")
    }
}

impl Drop for Enforcer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `enforcer events query --format json --state-dir STATE EXTRA...`: the stored events, as the
/// CLI prints them.
pub fn query_events(state: &Path, extra: &[&str]) -> Result<Vec<serde_json::Value>> {
    let out = super::command::capture(
        Command::new(GUEST_ENFORCER)
            .args(["events", "query", "--format", "json", "--state-dir"])
            .arg(state)
            .args(extra),
    )?
    .success()?;
    let events: serde_json::Value = serde_json::from_str(&out.stdout)
        .with_context(|| format!("query printed no JSON: {out}"))?;
    Ok(events.as_array().cloned().unwrap_or_default())
}
