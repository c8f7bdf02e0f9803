//! The microbenchmarks, run by the worker process inside the benchmark cgroup: open+close of a
//! file, fork+exec+wait of busybox `true`, connect+close to a loopback listener, and an
//! executable mmap+munmap of a file. Timed with `clock_gettime(CLOCK_MONOTONIC)`; raw system
//! calls, so that what is measured is the kernel's path (and its LSM hooks), not a library's.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use super::report::{median, OpResult};

/// The program the exec benchmark runs (busybox in the guest: static, so no loader).
pub const TRUE_PROGRAM: &str = "/bin/true";
/// The file mapped executable.
pub const MMAP_FILE: &str = "/bin/busybox";
/// Connections made before the listener's queue is drained (outside the timed part).
const CONNECT_CHUNK: u32 = 256;

/// Per-round operation counts for a base `iterations`: exec is two orders of magnitude
/// slower than the others, connect about one.
pub fn iterations_of(op: &str, iterations: u32) -> u32 {
    match op {
        "execve" => (iterations / 50).max(2),
        "connect" => (iterations / 4).max(2),
        _ => iterations.max(2),
    }
}

fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

fn c_path(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .with_context(|| format!("{} contains a NUL byte", path.display()))
}

fn check(ret: libc::c_int, what: &str) -> Result<libc::c_int> {
    if ret < 0 {
        bail!("{what}: {}", io::Error::last_os_error());
    }
    Ok(ret)
}

/// open(O_RDONLY) + close of `file`, `n` times; returns the elapsed ns.
fn open_close(file: &CString, n: u32) -> Result<u64> {
    let start = now_ns();
    for _ in 0..n {
        // SAFETY: `file` is a valid C string.
        let fd = unsafe { libc::open(file.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        check(fd, "open of the benchmark file")?;
        // SAFETY: `fd` was just opened here.
        unsafe { libc::close(fd) };
    }
    Ok(now_ns() - start)
}

/// fork + exec + wait of [`TRUE_PROGRAM`], `n` times.
fn execve(n: u32) -> Result<u64> {
    let start = now_ns();
    for _ in 0..n {
        let status = Command::new(TRUE_PROGRAM)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .with_context(|| format!("running {TRUE_PROGRAM}"))?;
        if !status.success() {
            bail!("{TRUE_PROGRAM} exited with {status}");
        }
    }
    Ok(now_ns() - start)
}

/// A TCP listener on 127.0.0.1 with a deep queue; connections are never read.
struct Listener {
    fd: libc::c_int,
    addr: libc::sockaddr_in,
}

impl Listener {
    fn new() -> Result<Self> {
        // SAFETY: plain socket calls on a descriptor owned here; `addr` outlives the calls.
        unsafe {
            let fd = check(
                libc::socket(
                    libc::AF_INET,
                    libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                    0,
                ),
                "socket for the listener",
            )?;
            let mut listener = Self {
                fd,
                addr: loopback(0),
            };
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            check(
                libc::bind(fd, (&raw const listener.addr).cast(), len),
                "binding the listener on 127.0.0.1",
            )?;
            check(libc::listen(fd, 4096), "listen")?;
            let mut bound = loopback(0);
            let mut bound_len = len;
            check(
                libc::getsockname(fd, (&raw mut bound).cast(), &mut bound_len),
                "getsockname of the listener",
            )?;
            // Assigned, not rebuilt: a copy would close the descriptor when this one drops.
            listener.addr = bound;
            Ok(listener)
        }
    }

    /// Accepts and closes everything queued.
    fn drain(&self) {
        loop {
            // SAFETY: accept on our listener; the addresses are not wanted.
            let fd = unsafe {
                libc::accept4(
                    self.fd,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_CLOEXEC,
                )
            };
            if fd < 0 {
                return;
            }
            // SAFETY: `fd` was just accepted here.
            unsafe { libc::close(fd) };
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        // SAFETY: the descriptor is owned by this value.
        unsafe { libc::close(self.fd) };
    }
}

fn loopback(port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// socket + connect + close (with linger 0: a reset, so that no TIME_WAIT uses up the
/// ephemeral ports), `n` times; the accept queue is drained between chunks, untimed.
fn connect(listener: &Listener, n: u32) -> Result<u64> {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let mut elapsed = 0;
    let mut done = 0;
    while done < n {
        let chunk = CONNECT_CHUNK.min(n - done);
        let start = now_ns();
        for _ in 0..chunk {
            // SAFETY: plain socket calls on a descriptor owned here.
            unsafe {
                let fd = check(
                    libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0),
                    "socket",
                )?;
                let ret = libc::connect(fd, (&raw const listener.addr).cast(), len);
                if ret < 0 {
                    let error = io::Error::last_os_error();
                    libc::close(fd);
                    bail!("connect to the loopback listener: {error}");
                }
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&raw const linger).cast(),
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                );
                libc::close(fd);
            }
        }
        elapsed += now_ns() - start;
        listener.drain();
        done += chunk;
    }
    Ok(elapsed)
}

/// mmap(PROT_READ | PROT_EXEC, MAP_PRIVATE) of one page of `fd` + munmap, `n` times.
fn mmap_exec(fd: libc::c_int, n: u32) -> Result<u64> {
    let start = now_ns();
    for _ in 0..n {
        // SAFETY: maps one page of an open file and unmaps it at once; nothing reads it.
        unsafe {
            let map = libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_EXEC,
                libc::MAP_PRIVATE,
                fd,
                0,
            );
            if map == libc::MAP_FAILED {
                bail!(
                    "mmap of {MMAP_FILE} with PROT_EXEC: {}",
                    io::Error::last_os_error()
                );
            }
            libc::munmap(map, 4096);
        }
    }
    Ok(now_ns() - start)
}

/// Runs every operation for one warm-up round and `rounds` measured rounds (the operations
/// alternate within a round, so that a slow phase of the machine spreads over all of them).
/// `file` is opened in the open benchmark.
pub fn run_all(file: &Path, iterations: u32, rounds: u32) -> Result<Vec<OpResult>> {
    let file = c_path(file)?;
    let listener = Listener::new()?;
    let mmap_path = c_path(Path::new(MMAP_FILE))?;
    // SAFETY: `mmap_path` is a valid C string.
    let mmap_fd = check(
        unsafe { libc::open(mmap_path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) },
        "opening the file to map",
    )?;
    let result = (|| {
        let ops = super::report::OPS;
        let mut per_op: Vec<Vec<f64>> = vec![Vec::new(); ops.len()];
        for round in 0..=rounds {
            for (index, op) in ops.iter().enumerate() {
                let n = iterations_of(op, iterations);
                let elapsed = match *op {
                    "open_close" => open_close(&file, n)?,
                    "execve" => execve(n)?,
                    "connect" => connect(&listener, n)?,
                    "mmap_exec" => mmap_exec(mmap_fd, n)?,
                    other => bail!("unknown operation {other}"),
                };
                // Round 0 warms caches, the page cache and the listener up: not counted.
                if round > 0 {
                    per_op[index].push(elapsed as f64 / f64::from(n));
                }
            }
        }
        Ok(ops
            .iter()
            .zip(per_op)
            .map(|(op, rounds_ns)| OpResult {
                op: (*op).to_string(),
                iterations: iterations_of(op, iterations),
                median_ns: median(&rounds_ns),
                min_ns: rounds_ns.iter().copied().fold(f64::INFINITY, f64::min),
                max_ns: rounds_ns.iter().copied().fold(0.0, f64::max),
                rounds_ns,
            })
            .collect())
    })();
    // SAFETY: opened above and not used after this.
    unsafe { libc::close(mmap_fd) };
    result
}

/// Opens `path` for reading: `denied` when the kernel refused (EPERM from the enforcer, EACCES
/// from AppArmor), `allowed` when it opened.
pub fn probe_open(path: &Path) -> Result<&'static str> {
    match std::fs::File::open(path) {
        Ok(_) => Ok("allowed"),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES)) => {
            Ok("denied")
        }
        Err(e) => Err(e).with_context(|| format!("opening {}", path.display())),
    }
}

/// The calling process's LSM context (AppArmor's label, e.g. `unconfined`), empty when there
/// is none to read.
pub fn own_context() -> String {
    [
        "/proc/self/attr/apparmor/current",
        "/proc/self/attr/current",
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok())
    .map(|s| s.trim_end_matches(['\0', '\n']).to_string())
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iteration_counts_scale_per_operation() {
        assert_eq!(iterations_of("open_close", 1000), 1000);
        assert_eq!(iterations_of("mmap_exec", 1000), 1000);
        assert_eq!(iterations_of("connect", 1000), 250);
        assert_eq!(iterations_of("execve", 1000), 20);
        assert_eq!(iterations_of("execve", 10), 2);
    }

    /// The operations themselves run on any Linux (no LSM needed): open, connect and mmap here
    /// on the host; exec needs busybox's `/bin/true`, which hosts have as coreutils' too.
    #[test]
    fn open_connect_and_mmap_run_on_the_host() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let c = c_path(&file).unwrap();
        assert!(open_close(&c, 10).unwrap() > 0);
        let listener = Listener::new().unwrap();
        // More than one chunk: the queue is drained between chunks.
        assert!(connect(&listener, CONNECT_CHUNK + 3).unwrap() > 0);
        let f = std::fs::File::open("/proc/self/exe").unwrap();
        use std::os::fd::AsRawFd;
        assert!(mmap_exec(f.as_raw_fd(), 10).unwrap() > 0);
        assert_eq!(probe_open(&file).unwrap(), "allowed");
        assert!(probe_open(&dir.path().join("missing")).is_err());
    }
}
