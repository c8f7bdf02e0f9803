//! cgroup2 children of the guest's root cgroup, to run processes in a cgroup the enforcer
//! targets.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::command::{capture, Captured};

/// Where the guest's `/init` mounts cgroup2.
pub const CGROUP2_ROOT: &str = "/sys/fs/cgroup";

/// A cgroup directory, removed (after killing what is left in it) when dropped.
#[derive(Debug)]
pub struct Cgroup {
    path: PathBuf,
}

impl Cgroup {
    /// Creates `/sys/fs/cgroup/<name>`; a leftover from an earlier test is removed first.
    pub fn create(name: &str) -> Result<Self> {
        let path = Path::new(CGROUP2_ROOT).join(name);
        if path.exists() {
            drop(Cgroup { path: path.clone() });
        }
        fs::create_dir(&path).with_context(|| format!("creating cgroup {}", path.display()))?;
        Ok(Self { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cgroup id: the inode number of its directory, which is what
    /// `bpf_get_current_cgroup_id()` returns for processes in it.
    pub fn id(&self) -> Result<u64> {
        Ok(fs::metadata(&self.path)
            .with_context(|| format!("reading {}", self.path.display()))?
            .ino())
    }

    /// The processes in the cgroup.
    pub fn pids(&self) -> Result<Vec<u32>> {
        let procs = self.path.join("cgroup.procs");
        let text =
            fs::read_to_string(&procs).with_context(|| format!("reading {}", procs.display()))?;
        text.lines()
            .map(|line| line.trim().parse().context("parsing cgroup.procs"))
            .collect()
    }

    /// Starts `command` inside the cgroup: the child moves itself in between fork and exec, so
    /// it never runs anything outside.
    pub fn spawn(&self, command: &mut Command) -> Result<Child> {
        let _procs = self.join_before_exec(command)?;
        command
            .spawn()
            .with_context(|| format!("starting {command:?} in {}", self.path.display()))
    }

    /// Runs `command` inside the cgroup to completion, capturing its output.
    pub fn run(&self, command: &mut Command) -> Result<Captured> {
        let _procs = self.join_before_exec(command)?;
        capture(command)
    }

    /// Opens `cgroup.procs` and makes the child write its pid there. The descriptor must stay
    /// open until the child is spawned.
    fn join_before_exec(&self, command: &mut Command) -> Result<OwnedFd> {
        let procs_path = self.path.join("cgroup.procs");
        let procs: OwnedFd = fs::OpenOptions::new()
            .write(true)
            .open(&procs_path)
            .with_context(|| format!("opening {}", procs_path.display()))?
            .into();
        let fd = procs.as_raw_fd();
        // SAFETY: `write_own_pid` is async-signal-safe, as required between fork and exec.
        unsafe {
            command.pre_exec(move || write_own_pid(fd));
        }
        Ok(procs)
    }
}

/// Forks a child that joins `cg` (when given), runs `f` and `_exit`s with what `f` returns
/// (by convention an errno, 0 for success). `f` runs between fork and exec in a copy of a
/// multi-threaded process: raw system calls only, no allocation. Returns the child unwaited.
pub fn spawn_fn<F>(cg: Option<&Cgroup>, f: F) -> Result<Child>
where
    F: Fn() -> i32 + Send + Sync + 'static,
{
    let procs = cg
        .map(|c| {
            let p = c.path().join("cgroup.procs");
            fs::OpenOptions::new()
                .write(true)
                .open(&p)
                .with_context(|| format!("opening {}", p.display()))
        })
        .transpose()?;
    let procs_fd = procs.as_ref().map(AsRawFd::as_raw_fd);
    let mut cmd = Command::new("/bin/true");
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: the closure only writes its pid (no allocation), runs `f` (raw system calls, as
    // documented) and `_exit`s: async-signal-safe, as required between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(fd) = procs_fd {
                write_own_pid(fd)?;
            }
            libc::_exit(f());
        });
    }
    let child = cmd.spawn().context("starting the child")?;
    drop(procs);
    Ok(child)
}

/// Writes the calling process's pid to `fd`, using only getpid and write on a stack buffer (no
/// allocation: this runs in a forked child of a multi-threaded process).
pub(super) fn write_own_pid(fd: RawFd) -> io::Result<()> {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    // SAFETY: getpid has no preconditions.
    let mut pid = unsafe { libc::getpid() }.unsigned_abs();
    loop {
        start -= 1;
        digits[start] = b'0' + (pid % 10) as u8;
        pid /= 10;
        if pid == 0 {
            break;
        }
    }
    let text = &digits[start..];
    // SAFETY: `text` is valid for `text.len()` bytes; `fd` stays open until the child execs.
    let written = unsafe { libc::write(fd, text.as_ptr().cast(), text.len()) };
    if written != text.len() as isize {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // cgroup.kill (Linux 5.14+) kills every process inside; rmdir fails until they are gone.
        let _ = fs::write(self.path.join("cgroup.kill"), "1");
        let deadline = Instant::now() + Duration::from_secs(5);
        while fs::remove_dir(&self.path).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
