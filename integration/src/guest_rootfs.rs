//! The guest's userland: a static busybox with its applet links, the project's binaries and the
//! shared libraries they load (the binaries are ordinary dynamically linked host builds).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::initramfs::Initramfs;

/// Where the project's binaries live in the guest.
pub const GUEST_ENFORCER: &str = "/bin/enforcer";
pub const GUEST_E2E: &str = "/bin/enforcer-e2e";

/// A root file system with busybox, `binaries` (guest path, host path) and their libraries, and
/// `init_script` as `/init`.
pub fn base_image(binaries: &[(&str, &Path)], init_script: &str) -> Result<Initramfs> {
    let mut image = Initramfs::new();
    for dir in ["/dev", "/proc", "/sys", "/tmp", "/run", "/root", "/var/lib"] {
        image.add_dir(dir)?;
    }
    add_busybox(&mut image)?;
    for (guest, host) in binaries {
        image.add_file(guest, host, 0o755)?;
        add_shared_libraries(&mut image, host)?;
    }
    image.add_bytes("/init", init_script.as_bytes().to_vec(), 0o755)?;
    Ok(image)
}

fn add_busybox(image: &mut Initramfs) -> Result<()> {
    let busybox = find_in_path("busybox").context(
        "busybox is not installed: install the Debian package busybox-static \
         (`cargo xtask test` does it)",
    )?;
    image.add_file("/bin/busybox", &busybox, 0o755)?;
    // A dynamically linked busybox (Debian's `busybox` package) works too, given its libraries.
    add_shared_libraries(image, &busybox)?;
    let output = Command::new(&busybox)
        .arg("--list-full")
        .output()
        .context("running busybox --list-full")?;
    if !output.status.success() {
        bail!("`busybox --list-full` failed ({})", output.status);
    }
    // Links made here rather than with `busybox --install` at boot: /init's own `#!/bin/sh` needs
    // one before anything runs.
    for applet in String::from_utf8_lossy(&output.stdout).lines() {
        let applet = applet.trim();
        if !applet.is_empty() && !image.contains(applet) {
            image.add_symlink(applet, "/bin/busybox")?;
        }
    }
    Ok(())
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Copies the libraries and the dynamic loader `ldd` lists for `binary`, at the same paths.
fn add_shared_libraries(image: &mut Initramfs, binary: &Path) -> Result<()> {
    for library in shared_libraries(binary)? {
        let guest = library.to_string_lossy().into_owned();
        if !image.contains(&guest) {
            // Reading through symbolic links: the guest gets the library itself at this path.
            image.add_file(&guest, &library, 0o755)?;
        }
    }
    Ok(())
}

fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let output = Command::new("ldd")
        .arg(binary)
        .output()
        .context("running ldd (Debian package libc-bin)")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if text.contains("not a dynamic executable") || text.contains("statically linked") {
        return Ok(Vec::new());
    }
    if !output.status.success() {
        bail!(
            "`ldd {}` failed ({}): {text}",
            binary.display(),
            output.status
        );
    }
    parse_ldd(&text).with_context(|| format!("reading `ldd {}`", binary.display()))
}

/// The absolute paths in `ldd` output; the vDSO has none and is skipped.
fn parse_ldd(text: &str) -> Result<Vec<PathBuf>> {
    let mut libraries = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let resolved = match line.split_once("=>") {
            Some((name, target)) => {
                let target = target.trim();
                if target.starts_with("not found") {
                    bail!("library {} not found", name.trim());
                }
                target
            }
            None => line,
        };
        let path = resolved.split_whitespace().next().unwrap_or_default();
        if path.starts_with('/') {
            libraries.push(PathBuf::from(path));
        }
    }
    Ok(libraries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ldd_output() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f1)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f2)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f3)\n";
        assert_eq!(
            parse_ldd(text).unwrap(),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
    }

    #[test]
    fn a_missing_library_is_an_error() {
        let error = parse_ldd("\tlibbpf.so.1 => not found\n").unwrap_err();
        assert!(error.to_string().contains("libbpf.so.1"), "{error}");
    }

    #[test]
    fn the_image_runs_this_host_binary_with_its_libraries() {
        // The test binary itself is a dynamically linked Rust binary like the guest's ones.
        let me = std::env::current_exe().unwrap();
        let image = base_image(&[(GUEST_E2E, &me)], "#!/bin/sh\n").unwrap();
        assert!(image.contains(GUEST_E2E));
        assert!(image.contains("/init"));
        assert!(image.contains("/bin/sh"));
        for library in shared_libraries(&me).unwrap() {
            assert!(image.contains(&library.to_string_lossy()), "{library:?}");
        }
    }
}
