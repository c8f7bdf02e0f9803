//! End-to-end tests of file-open enforcement (BPF LSM `file_open`): what the
//! kernel did to real `cat` processes inside and outside a scoped cgroup, and
//! what reached user space.

use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{mkdirat, Mode};

use anyhow::{bail, ensure, Context, Result};

use super::cgroup::Cgroup;
use super::command::{capture, Captured};
use super::enforcer_process::Enforcer;
use super::Test;

pub const TESTS: &[Test] = &[
    Test::new(
        "denies_the_file_inside_the_cgroup_only",
        denies_the_file_inside_the_cgroup_only,
    ),
    Test::new(
        "audit_mode_allows_and_records",
        audit_mode_allows_and_records,
    ),
    Test::new(
        "a_symlink_does_not_get_around_the_rule",
        a_symlink_does_not_get_around_the_rule,
    ),
    Test::new("matches_a_path_of_4000_bytes", matches_a_path_of_4000_bytes),
    Test::new(
        "a_path_longer_than_path_max_fails_closed",
        a_path_longer_than_path_max_fails_closed,
    ),
];

const EPERM_TEXT: &str = "Operation not permitted";

/// A fresh directory with a secret and an unrelated file.
fn fixture(name: &str) -> Result<(String, String)> {
    let dir = format!("/tmp/e2e-file-open-{name}");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).with_context(|| format!("creating {dir}"))?;
    let secret = format!("{dir}/secret");
    let other = format!("{dir}/other");
    fs::write(&secret, "s3cret\n")?;
    fs::write(&other, "fine\n")?;
    Ok((secret, other))
}

/// `cat path` inside `cg`, with the pid the kernel will report.
fn cat_in(cg: &Cgroup, path: &str) -> Result<(u32, Captured)> {
    let mut cmd = Command::new("cat");
    cmd.arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cg.spawn(&mut cmd)?;
    let pid = child.id();
    let out = child.wait_with_output().context("waiting for cat")?;
    Ok((
        pid,
        Captured {
            command: format!("cat {path} (in {})", cg.path().display()),
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        },
    ))
}

fn expect_denied(c: &Captured) -> Result<()> {
    ensure!(
        !c.status.success() && c.stderr.contains(EPERM_TEXT),
        "expected EPERM: {c}"
    );
    ensure!(c.stdout.is_empty(), "denied open still printed: {c}");
    Ok(())
}

fn expect_read(c: &Captured, content: &str) -> Result<()> {
    ensure!(
        c.status.success() && c.stdout == content,
        "expected `{}`: {c}",
        content.trim()
    );
    Ok(())
}

/// The events the enforcer recorded, one JSON object per line.
fn events(state_dir: &Path) -> Result<Vec<serde_json::Value>> {
    let path = state_dir.join("events.jsonl");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("parsing event {l}")))
        .collect()
}

fn stop(enforcer: Enforcer) -> Result<std::path::PathBuf> {
    let state = enforcer.state_dir().to_path_buf();
    let log = enforcer.log().unwrap_or_default();
    let status = enforcer.stop()?;
    ensure!(
        status.success(),
        "enforcer exited with {status}; log:\n{log}"
    );
    Ok(state)
}

fn denies_the_file_inside_the_cgroup_only() -> Result<()> {
    let (secret, other) = fixture("deny")?;
    let cg = Cgroup::create("e2e-file-open-deny")?;
    let cg_path = cg.path().display().to_string();
    let enforcer = Enforcer::start(&["--deny-open", &secret, "--cgroup", &cg_path])?;

    let (pid, inside) = cat_in(&cg, &secret)?;
    expect_denied(&inside)?;
    // Outside the cgroup (the test runs in the root cgroup) the same file opens.
    expect_read(&capture(Command::new("cat").arg(&secret))?, "s3cret\n")?;
    // Inside the cgroup another file opens.
    expect_read(&cat_in(&cg, &other)?.1, "fine\n")?;

    let state = stop(enforcer)?;
    let events = events(&state)?;
    ensure!(
        events.len() == 1,
        "expected exactly one verdict, got {events:#?}"
    );
    let e = &events[0];
    ensure!(e["verdict"] == "denied", "verdict: {e}");
    ensure!(
        e["class"] == "file" && e["operation"] == "open",
        "class/operation: {e}"
    );
    ensure!(e["process"]["tgid"] == pid, "pid: expected {pid}: {e}");
    ensure!(e["process"]["comm"] == "cat", "comm: {e}");
    ensure!(
        e["cgroup"]["id"] == cg.id()?,
        "cgroup id: expected {}: {e}",
        cg.id()?
    );
    ensure!(e["target"]["file"]["path"] == secret.as_str(), "path: {e}");
    Ok(())
}

fn audit_mode_allows_and_records() -> Result<()> {
    let (secret, _) = fixture("audit")?;
    let cg = Cgroup::create("e2e-file-open-audit")?;
    let cg_path = cg.path().display().to_string();
    let enforcer = Enforcer::start(&[
        "--deny-open",
        &secret,
        "--cgroup",
        &cg_path,
        "--mode",
        "audit",
    ])?;
    let (pid, inside) = cat_in(&cg, &secret)?;
    expect_read(&inside, "s3cret\n")?;
    let state = stop(enforcer)?;
    let events = events(&state)?;
    ensure!(
        events.len() == 1,
        "expected one audit verdict, got {events:#?}"
    );
    ensure!(events[0]["verdict"] == "audited", "{}", events[0]);
    ensure!(events[0]["process"]["tgid"] == pid, "{}", events[0]);
    Ok(())
}

fn a_symlink_does_not_get_around_the_rule() -> Result<()> {
    let (secret, _) = fixture("symlink")?;
    let link = "/tmp/e2e-file-open-symlink-link";
    let _ = fs::remove_file(link);
    std::os::unix::fs::symlink(&secret, link)?;
    let cg = Cgroup::create("e2e-file-open-symlink")?;
    let cg_path = cg.path().display().to_string();
    let enforcer = Enforcer::start(&["--deny-open", &secret, "--cgroup", &cg_path])?;
    let denied = cat_in(&cg, link)?.1;
    // Through `..` and a relative path as well.
    let mut relative = Command::new("cat");
    relative
        .current_dir("/tmp")
        .arg("./e2e-file-open-symlink/../e2e-file-open-symlink/secret");
    let relative = cg.run(&mut relative)?;
    let state = stop(enforcer)?;
    expect_denied(&denied)?;
    expect_denied(&relative)?;
    let events = events(&state)?;
    ensure!(events.len() == 2, "expected two verdicts, got {events:#?}");
    for e in &events {
        ensure!(
            e["target"]["file"]["path"] == secret.as_str(),
            "resolved path: {e}"
        );
    }
    Ok(())
}

/// Creates `depth` nested directories named `name` below `base`, one
/// relative step at a time (the whole path may exceed what a syscall takes).
fn deep_dirs(base: &str, name: &str, depth: usize) -> Result<String> {
    let script = format!(
        "set -e; rm -rf {base}; mkdir -p {base}; cd {base}; \
         i=0; while [ $i -lt {depth} ]; do mkdir {name}; cd {name}; i=$((i+1)); done; \
         echo deep > file"
    );
    let out = capture(Command::new("/bin/sh").args(["-c", &script]))?;
    if !out.status.success() {
        bail!("building a deep tree failed: {out}");
    }
    Ok(format!("{base}/{}file", format!("{name}/").repeat(depth)))
}

fn matches_a_path_of_4000_bytes() -> Result<()> {
    let name = "d".repeat(190);
    let path = deep_dirs("/tmp/e2e-long", &name, 20)?;
    ensure!(
        path.len() > 3800 && path.len() < 4096,
        "path is {} bytes",
        path.len()
    );
    let cg = Cgroup::create("e2e-file-open-long")?;
    let cg_path = cg.path().display().to_string();
    let enforcer = Enforcer::start(&["--deny-open", &path, "--cgroup", &cg_path])?;
    let (_, inside) = cat_in(&cg, &path)?;
    let state = stop(enforcer)?;
    expect_denied(&inside)?;
    let events = events(&state)?;
    ensure!(events.len() == 1, "expected one verdict, got {events:#?}");
    ensure!(
        events[0]["target"]["file"]["path"] == path.as_str(),
        "full path reported"
    );
    Ok(())
}

/// Builds `depth` nested directories named `name` below `base` with
/// mkdirat/openat, one level at a time (the whole path is longer than any
/// syscall accepts), writes `file` at the bottom, and returns the open
/// descriptor of the deepest directory and the full path's length.
fn deep_tree_fd(base: &str, name: &str, depth: usize) -> Result<(OwnedFd, usize)> {
    let _ = fs::remove_dir_all(base);
    fs::create_dir_all(base)?;
    let mut dir: OwnedFd = fs::File::open(base)?.into();
    for _ in 0..depth {
        mkdirat(Some(dir.as_raw_fd()), name, Mode::from_bits_truncate(0o755)).context("mkdirat")?;
        let raw = openat(
            Some(dir.as_raw_fd()),
            name,
            OFlag::O_DIRECTORY | OFlag::O_RDONLY,
            Mode::empty(),
        )
        .context("openat")?;
        // SAFETY: openat returned a fresh descriptor that nothing else owns.
        dir = unsafe { OwnedFd::from_raw_fd(raw) };
    }
    let raw = openat(
        Some(dir.as_raw_fd()),
        "file",
        OFlag::O_CREAT | OFlag::O_WRONLY,
        Mode::from_bits_truncate(0o644),
    )
    .context("creating the deep file")?;
    // SAFETY: as above.
    let file = fs::File::from(unsafe { OwnedFd::from_raw_fd(raw) });
    std::io::Write::write_all(&mut &file, b"deep\n")?;
    Ok((dir, base.len() + depth * (name.len() + 1) + "/file".len()))
}

/// `cat file` run from inside the directory `dir` (by fchdir, which needs
/// no path), optionally in a cgroup.
fn cat_relative(dir: &OwnedFd, cg: Option<&Cgroup>) -> Result<Captured> {
    let fd = dir.as_raw_fd();
    let mut cmd = Command::new("cat");
    cmd.arg("file");
    // SAFETY: fchdir is async-signal-safe; `dir` outlives the spawn.
    unsafe {
        cmd.pre_exec(move || nix::unistd::fchdir(fd).map_err(std::io::Error::from));
    }
    match cg {
        Some(cg) => cg.run(&mut cmd),
        None => capture(&mut cmd),
    }
}

fn a_path_longer_than_path_max_fails_closed() -> Result<()> {
    let (dir, len) = deep_tree_fd("/tmp/e2e-too-long", &"e".repeat(200), 22)?;
    ensure!(len > 4096, "path is only {len} bytes");
    let (secret, _) = fixture("too-long")?;
    let cg = Cgroup::create("e2e-file-open-too-long")?;
    let cg_path = cg.path().display().to_string();
    let enforcer = Enforcer::start(&["--deny-open", &secret, "--cgroup", &cg_path])?;
    // The open itself is fine for the kernel (a short relative name), but
    // its full path does not fit in PATH_MAX: inside the cgroup that fails
    // closed, outside nothing applies.
    let inside = cat_relative(&dir, Some(&cg))?;
    let outside = cat_relative(&dir, None)?;
    let state = stop(enforcer)?;
    expect_denied(&inside)?;
    expect_read(&outside, "deep\n")?;
    let events = events(&state)?;
    ensure!(
        events
            .iter()
            .any(|e| e["verdict"] == "denied" && e["target"]["file"]["path_truncated"] == true),
        "expected a fail-closed verdict marked unresolved, got {events:#?}"
    );
    Ok(())
}
