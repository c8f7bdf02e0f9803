//! Boots a kernel and initramfs under qemu, streams the console (the first serial port) to the
//! terminal while keeping it, and enforces a hard timeout and, optionally, a limit on how long
//! the console may stay silent.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::emulator::Emulator;
use anyhow::{bail, Context, Result};

use crate::guest_report::KERNEL_PANIC;

/// How qemu executes the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Emulation: slow but works everywhere.
    Tcg,
    Kvm,
}

impl Accel {
    /// TCG unless `ENFORCER_VM_ACCEL=kvm`: on the project's build machines `/dev/kvm` exists but
    /// qemu hangs at boot with KVM.
    pub fn from_env() -> Result<Self> {
        match std::env::var("ENFORCER_VM_ACCEL").as_deref() {
            Err(_) | Ok("") | Ok("tcg") => Ok(Accel::Tcg),
            Ok("kvm") => Ok(Accel::Kvm),
            Ok(other) => bail!("ENFORCER_VM_ACCEL must be `tcg` or `kvm`, not {other:?}"),
        }
    }

    /// One vCPU under TCG: with two, the 6.12 kernel crashed early in boot (list corruption in
    /// slab_sysfs_init, "Fatal exception in interrupt") in about one boot of five, with `-cpu
    /// max` or `qemu64` and with single-threaded TCG alike; with one it never did in 16 boots.
    fn args(self) -> [&'static str; 6] {
        match self {
            Accel::Tcg => ["-accel", "tcg", "-cpu", "max", "-smp", "1"],
            Accel::Kvm => ["-accel", "kvm", "-cpu", "host", "-smp", "2"],
        }
    }
}

/// One boot.
#[derive(Debug, Clone)]
pub struct Boot<'a> {
    pub emulator: &'a Emulator,
    pub vmlinuz: &'a Path,
    pub initramfs: &'a Path,
    /// Prefix of the streamed console lines, e.g. `6.1`.
    pub label: &'a str,
    pub timeout: Duration,
    /// The guest counts as hung once its console has been silent this long (`None`: never, for
    /// a user's script that may print nothing for a long time).
    pub idle_timeout: Option<Duration>,
    /// The console transcript is also written here.
    pub console_log: &'a Path,
    /// A file that receives the guest's second serial port (`/dev/ttyS1`).
    pub second_serial: Option<&'a Path>,
}

/// How the VM ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootEnd {
    /// qemu exited on its own (the guest powered off, or rebooted after a panic).
    Exited(ExitStatus),
    /// Killed after the timeout.
    TimedOut,
    /// Killed after the console had been silent for the idle timeout.
    Silent(Duration),
}

#[derive(Debug, Clone)]
pub struct BootResult {
    pub end: BootEnd,
    pub console: Vec<String>,
    pub elapsed: Duration,
}

impl BootResult {
    /// A failure of the VM itself (not of what ran in it), if any.
    pub fn vm_failure(&self) -> Option<String> {
        if self.console.iter().any(|l| l.contains(KERNEL_PANIC)) {
            return Some("the guest kernel panicked".to_string());
        }
        match &self.end {
            BootEnd::TimedOut => Some(format!(
                "the VM hung: killed after {} s",
                self.elapsed.as_secs()
            )),
            BootEnd::Silent(idle) => Some(format!(
                "the VM hung: its console was silent for {} s, killed after {} s",
                idle.as_secs(),
                self.elapsed.as_secs()
            )),
            BootEnd::Exited(status) if !status.success() => Some(format!("qemu failed ({status})")),
            BootEnd::Exited(_) => None,
        }
    }
}

/// A panicking kernel reboots at once (`panic=-1`), which `-no-reboot` turns into qemu exiting;
/// the grace period only covers a kernel that fails to do so.
const PANIC_GRACE: Duration = Duration::from_secs(10);

pub fn boot(boot: &Boot) -> Result<BootResult> {
    let mut command = Command::new(&boot.emulator.binary);
    for dir in &boot.emulator.firmware_dirs {
        command.arg("-L").arg(dir);
    }
    command.args(Accel::from_env()?.args());
    command
        .args(["-m", "1024"])
        // No default devices (so no network card and no display); the console is the first
        // serial port on our stdout.
        .args(["-nodefaults", "-display", "none", "-no-reboot"])
        .args(["-serial", "stdio"])
        .arg("-kernel")
        .arg(boot.vmlinuz)
        .arg("-initrd")
        .arg(boot.initramfs)
        .args(["-append", "console=ttyS0 quiet panic=-1"]);
    if let Some(path) = boot.second_serial {
        command
            .arg("-serial")
            .arg(format!("file:{}", path.display()));
    }
    // stdin closed: qemu must not put the user's terminal in raw mode or read from it.
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());

    let started = Instant::now();
    let mut child = command.spawn().with_context(|| {
        format!(
            "starting {} ({}; `cargo xtask test` installs what it needs)",
            boot.emulator.binary.display(),
            boot.emulator.description
        )
    })?;
    let stdout = child.stdout.take().context("qemu's stdout is not piped")?;
    let (lines_tx, lines_rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut buffer = Vec::new();
        while matches!(reader.read_until(b'\n', &mut buffer), Ok(n) if n > 0) {
            let line = String::from_utf8_lossy(&buffer)
                .trim_end_matches(['\n', '\r'])
                .to_string();
            buffer.clear();
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });

    let mut log = fs::File::create(boot.console_log)
        .with_context(|| format!("creating {}", boot.console_log.display()))?;
    let mut console = Vec::new();
    let mut deadline = started + boot.timeout;
    let mut last_line = started;
    let mut killed = None;
    let stdout = std::io::stdout();
    loop {
        let now = Instant::now();
        let silent_until = boot.idle_timeout.map(|idle| last_line + idle);
        if now >= deadline {
            killed = Some(BootEnd::TimedOut);
            break;
        }
        if let (Some(until), Some(idle)) = (silent_until, boot.idle_timeout) {
            if now >= until {
                killed = Some(BootEnd::Silent(idle));
                break;
            }
        }
        let wake = silent_until.map_or(deadline, |until| until.min(deadline));
        match lines_rx.recv_timeout(wake.saturating_duration_since(now)) {
            Ok(line) => {
                let mut out = stdout.lock();
                // The terminal is only a view: a closed stdout must not stop the VM.
                let _ = writeln!(out, "[{}] {line}", boot.label);
                let _ = out.flush();
                writeln!(log, "{line}")
                    .with_context(|| format!("writing {}", boot.console_log.display()))?;
                if line.contains(KERNEL_PANIC) {
                    deadline = deadline.min(Instant::now() + PANIC_GRACE);
                }
                console.push(line);
                last_line = Instant::now();
            }
            // The checks at the top of the loop say which limit passed.
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let end = if let Some(end) = killed {
        // Killing qemu closes its stdout, which ends the reader thread.
        child.kill().context("killing qemu")?;
        child.wait().context("waiting for qemu")?;
        end
    } else {
        BootEnd::Exited(child.wait().context("waiting for qemu")?)
    };
    if reader.join().is_err() {
        bail!("the console reader thread panicked");
    }
    Ok(BootResult {
        end,
        console,
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Stands in for qemu: prints one line, then says nothing for `silence` seconds.
    fn fake_emulator(dir: &Path, silence: u32) -> Emulator {
        let binary = dir.join("fake-qemu");
        fs::write(
            &binary,
            format!("#!/bin/sh\necho booted\nexec sleep {silence}\n"),
        )
        .unwrap();
        fs::set_permissions(&binary, fs::Permissions::from_mode(0o755)).unwrap();
        Emulator {
            binary,
            firmware_dirs: Vec::new(),
            description: "fake".to_string(),
        }
    }

    fn boot_fake(silence: u32, timeout: Duration, idle: Option<Duration>) -> BootResult {
        let dir = tempfile::tempdir().unwrap();
        let emulator = fake_emulator(dir.path(), silence);
        let console_log = dir.path().join("console.log");
        boot(&Boot {
            emulator: &emulator,
            vmlinuz: Path::new("vmlinuz"),
            initramfs: Path::new("initramfs"),
            label: "fake",
            timeout,
            idle_timeout: idle,
            console_log: &console_log,
            second_serial: None,
        })
        .unwrap()
    }

    #[test]
    fn a_silent_guest_is_stopped_at_the_idle_limit_not_the_hard_one() {
        let result = boot_fake(
            60,
            Duration::from_secs(60),
            Some(Duration::from_millis(500)),
        );
        assert_eq!(result.end, BootEnd::Silent(Duration::from_millis(500)));
        assert!(
            result.elapsed < Duration::from_secs(30),
            "{:?}",
            result.elapsed
        );
        assert_eq!(result.console, vec!["booted".to_string()]);
        assert!(result
            .vm_failure()
            .is_some_and(|f| f.contains("console was silent")));
    }

    #[test]
    fn without_an_idle_limit_only_the_hard_limit_stops_the_guest() {
        let result = boot_fake(60, Duration::from_secs(1), None);
        assert_eq!(result.end, BootEnd::TimedOut);
        assert!(result
            .vm_failure()
            .is_some_and(|f| f.contains("killed after")));
    }

    #[test]
    fn a_guest_that_ends_in_time_is_not_killed() {
        let result = boot_fake(0, Duration::from_secs(60), Some(Duration::from_secs(30)));
        assert!(matches!(result.end, BootEnd::Exited(status) if status.success()));
        assert_eq!(result.vm_failure(), None);
    }
}
