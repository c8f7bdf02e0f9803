//! `/bin/enforcer-replay`: performs one operation of a shared test case for real, inside the
//! test VM (see `integration::replay_plan` and the e2e module `conformance`).
//!
//! The conformance harness copies this small program to every executable path a case names
//! (the acting process and its ancestors), so that the kernel sees exactly those executables.
//! It starts the outermost copy; each copy starts the next and waits, and the last one (the
//! acting process) prints `pid N`, performs the operation and prints how it ended:
//! `ok`, `errno N`, or (printed by its parent) `signal N`. An exec's new program, when it is a
//! copy too, prints `ran`.
//!
//! Usage: `enforcer-replay step UID N PATH... -- OP ARGS...`, where the N paths are the chain
//! still to start after this process (the last is the acting process, which runs as UID).
//! Raw system calls only: what the kernel decides must be this process's own call.

use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitCode};

/// Set in the environment of an exec's new program: it only says that it ran.
const TARGET_ENV: &str = "ENFORCER_REPLAY_TARGET";

fn main() -> ExitCode {
    if std::env::var_os(TARGET_ENV).is_some() {
        println!("ran");
        return ExitCode::SUCCESS;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    match step(&args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("enforcer-replay: {message}");
            ExitCode::from(2)
        }
    }
}

fn step(args: &[String]) -> Result<ExitCode, String> {
    let [mode, uid, count, rest @ ..] = args else {
        return Err("usage: enforcer-replay step UID N PATH... -- OP ARGS...".into());
    };
    if mode != "step" {
        return Err(format!("unknown mode `{mode}`"));
    }
    let uid: u32 = uid.parse().map_err(|_| format!("bad uid `{uid}`"))?;
    let count: usize = count.parse().map_err(|_| format!("bad count `{count}`"))?;
    if rest.len() < count + 1 || rest[count] != "--" {
        return Err("the chain must be followed by `--` and the operation".into());
    }
    let (chain, op) = (&rest[..count], &rest[count + 1..]);
    let Some((next, later)) = chain.split_first() else {
        // This is the acting process.
        println!("pid {}", std::process::id());
        let _ = std::io::stdout().flush();
        match perform(op)? {
            Ok(()) => println!("ok"),
            Err(errno) => println!("errno {errno}"),
        }
        return Ok(ExitCode::SUCCESS);
    };
    let mut cmd = Command::new(next);
    cmd.arg("step")
        .arg(uid.to_string())
        .arg(later.len().to_string())
        .args(later)
        .arg("--")
        .args(op);
    if later.is_empty() && uid != 0 {
        cmd.uid(uid).gid(uid);
    }
    let status = cmd
        .status()
        .map_err(|e| format!("starting `{next}`: {e}"))?;
    if let Some(signal) = status.signal() {
        println!("signal {signal}");
        return Ok(ExitCode::SUCCESS);
    }
    Ok(ExitCode::from(status.code().unwrap_or(2) as u8))
}

/// The operation's own system calls: `Ok(Err(errno))` when the kernel refused or failed it,
/// `Err` for a malformed operation.
fn perform(op: &[String]) -> Result<Result<(), i32>, String> {
    let [name, args @ ..] = op else {
        return Err("no operation".into());
    };
    let arg = |i: usize| -> Result<&str, String> {
        args.get(i)
            .map(String::as_str)
            .ok_or_else(|| format!("`{name}` needs {} arguments", i + 1))
    };
    let path = |i: usize| -> Result<CString, String> { cstring(arg(i)?) };
    // SAFETY (every block below): plain system calls on NUL-terminated strings and stack
    // values that outlive the call.
    let rc: libc::c_long = match name.as_str() {
        "exec" => {
            let file = path(0)?;
            let argv: Vec<CString> = if args.len() > 1 {
                args[1..]
                    .iter()
                    .map(|a| cstring(a))
                    .collect::<Result<_, _>>()?
            } else {
                vec![file.clone()]
            };
            let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
            argv_ptrs.push(std::ptr::null());
            let mut env: Vec<CString> = std::env::vars_os()
                .filter_map(|(k, v)| {
                    let mut kv = k.as_bytes().to_vec();
                    kv.push(b'=');
                    kv.extend_from_slice(v.as_bytes());
                    CString::new(kv).ok()
                })
                .collect();
            env.push(cstring(&format!("{TARGET_ENV}=1"))?);
            let mut env_ptrs: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
            env_ptrs.push(std::ptr::null());
            let _ = std::io::stdout().flush();
            // Returns only on failure.
            unsafe { libc::execve(file.as_ptr(), argv_ptrs.as_ptr(), env_ptrs.as_ptr()) as _ }
        }
        "read" => open_close(&path(0)?, libc::O_RDONLY),
        "write" => open_close(&path(0)?, libc::O_WRONLY),
        "append" => open_close(&path(0)?, libc::O_WRONLY | libc::O_APPEND),
        "create" => unsafe { libc::mknod(path(0)?.as_ptr(), libc::S_IFREG | 0o644, 0) as _ },
        "delete" => unsafe { libc::unlink(path(0)?.as_ptr()) as _ },
        "rename" => unsafe { libc::rename(path(0)?.as_ptr(), path(1)?.as_ptr()) as _ },
        "link" => unsafe { libc::link(path(0)?.as_ptr(), path(1)?.as_ptr()) as _ },
        "symlink_to" => unsafe { libc::symlink(path(0)?.as_ptr(), path(1)?.as_ptr()) as _ },
        "chmod" => {
            let mode = u32::from_str_radix(arg(1)?, 8).map_err(|_| "bad mode".to_string())?;
            unsafe { libc::chmod(path(0)?.as_ptr(), mode) as _ }
        }
        "chown" => unsafe { libc::chown(path(0)?.as_ptr(), libc::getuid(), u32::MAX) as _ },
        "truncate" => unsafe { libc::truncate(path(0)?.as_ptr(), 0) as _ },
        "mmap_exec" => mmap_exec(&path(0)?),
        "connect" | "bind" | "listen" | "send" => socket_op(name, arg(0)?, arg(1)?, arg(2)?)?,
        "mount" => {
            let none = cstring("none")?;
            let tmpfs = cstring("tmpfs")?;
            unsafe {
                libc::mount(
                    none.as_ptr(),
                    path(0)?.as_ptr(),
                    tmpfs.as_ptr(),
                    0,
                    std::ptr::null(),
                ) as _
            }
        }
        "umount" => unsafe { libc::umount2(path(0)?.as_ptr(), 0) as _ },
        "ptrace" => {
            let pid: libc::pid_t = arg(0)?.parse().map_err(|_| "bad pid".to_string())?;
            // SEIZE does not stop the target; the attachment ends when this process exits.
            unsafe { libc::ptrace(libc::PTRACE_SEIZE, pid, 0, 0) }
        }
        "bpf" => bpf_map_create(),
        "userns_create" => unsafe { libc::unshare(libc::CLONE_NEWUSER) as _ },
        "raw_socket" => socket_close(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP),
        "packet_socket" => socket_close(libc::AF_PACKET, libc::SOCK_RAW, 0),
        "syscall" => {
            let nr: libc::c_long = arg(0)?.parse().map_err(|_| "bad number".to_string())?;
            unsafe { libc::syscall(nr, 0, 0, 0, 0, 0, 0) }
        }
        other => return Err(format!("unknown operation `{other}`")),
    };
    Ok(if rc < 0 { Err(errno()) } else { Ok(()) })
}

fn cstring(s: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("`{s}` contains a NUL byte"))
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn open_close(path: &CString, flags: libc::c_int) -> libc::c_long {
    // SAFETY: see `perform`.
    let fd = unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd >= 0 {
        // SAFETY: our own descriptor.
        unsafe { libc::close(fd) };
    }
    fd as _
}

fn socket_close(family: libc::c_int, kind: libc::c_int, protocol: libc::c_int) -> libc::c_long {
    // SAFETY: see `perform`.
    let fd = unsafe { libc::socket(family, kind | libc::SOCK_CLOEXEC, protocol) };
    if fd >= 0 {
        // SAFETY: our own descriptor.
        unsafe { libc::close(fd) };
    }
    fd as _
}

/// Maps the first page of the file executable (the file is opened read-only first).
fn mmap_exec(path: &CString) -> libc::c_long {
    // SAFETY: see `perform`.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return -1;
    }
    // SAFETY: a fresh private mapping of our own descriptor, unmapped right away.
    let rc = unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_EXEC,
            libc::MAP_PRIVATE,
            fd,
            0,
        );
        if p == libc::MAP_FAILED {
            -1
        } else {
            libc::munmap(p, 4096);
            0
        }
    };
    let saved = errno();
    // SAFETY: our own descriptor.
    unsafe { libc::close(fd) };
    if rc < 0 {
        // SAFETY: restores the mmap's errno for the caller.
        unsafe { *libc::__errno_location() = saved };
    }
    rc
}

/// `connect`, `bind`, `listen` (bind, then listen) or `send` (one UDP datagram) with PROTOCOL
/// (`tcp`, `udp`) to or on ADDR:PORT. An IPv6 address (IPv4-mapped ones included) uses an
/// IPv6 socket, as a program would.
fn socket_op(op: &str, protocol: &str, addr: &str, port: &str) -> Result<libc::c_long, String> {
    let port: u16 = port.parse().map_err(|_| format!("bad port `{port}`"))?;
    let ip: std::net::IpAddr = addr.parse().map_err(|_| format!("bad address `{addr}`"))?;
    let kind = match protocol {
        "tcp" => libc::SOCK_STREAM,
        "udp" => libc::SOCK_DGRAM,
        other => return Err(format!("bad protocol `{other}`")),
    };
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let (family, len) = match ip {
        std::net::IpAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large enough and aligned for sockaddr_in.
            let sin = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as _;
            sin.sin_port = port.to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(v4.octets());
            (libc::AF_INET, std::mem::size_of::<libc::sockaddr_in>())
        }
        std::net::IpAddr::V6(v6) => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as _;
            sin6.sin6_port = port.to_be();
            sin6.sin6_addr.s6_addr = v6.octets();
            (libc::AF_INET6, std::mem::size_of::<libc::sockaddr_in6>())
        }
    };
    let sa = &storage as *const _ as *const libc::sockaddr;
    let len = len as libc::socklen_t;
    // SAFETY: see `perform`; `sa` points at `len` initialised bytes.
    unsafe {
        let fd = libc::socket(family, kind | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Ok(-1);
        }
        let rc = match op {
            "connect" => libc::connect(fd, sa, len),
            "bind" => libc::bind(fd, sa, len),
            "listen" => match libc::bind(fd, sa, len) {
                0 => libc::listen(fd, 1),
                failed => failed,
            },
            _ => {
                let byte = [0u8; 1];
                libc::sendto(fd, byte.as_ptr().cast(), 1, 0, sa, len) as libc::c_int
            }
        };
        let saved = errno();
        libc::close(fd);
        if rc < 0 {
            *libc::__errno_location() = saved;
        }
        Ok(rc as _)
    }
}

/// `bpf(BPF_MAP_CREATE)` of a one-element array, closed at once.
fn bpf_map_create() -> libc::c_long {
    // The first four u32 of `union bpf_attr` for BPF_MAP_CREATE: type, key size, value size,
    // max entries; the rest zero.
    let mut attr = [0u32; 32];
    attr[0] = 2; // BPF_MAP_TYPE_ARRAY
    attr[1] = 4;
    attr[2] = 4;
    attr[3] = 1;
    // SAFETY: `attr` is a valid, zero-padded bpf_attr of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            0, // BPF_MAP_CREATE
            attr.as_mut_ptr(),
            std::mem::size_of_val(&attr),
        )
    };
    if fd >= 0 {
        // SAFETY: our own descriptor.
        unsafe { libc::close(fd as libc::c_int) };
    }
    fd
}
