//! An initramfs in the cpio "newc" format, written directly: deterministic (fixed owners,
//! timestamps and inode numbers, sorted entries) and independent of host tools.
//!
//! The archive is not compressed: the kernel accepts a plain cpio, unpacks it faster than a
//! gzip one under emulation, and the image only ever lives in the target directory.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};

#[derive(Debug, Clone)]
enum Entry {
    Dir,
    File { source: FileSource, mode: u32 },
    Symlink(String),
}

#[derive(Debug, Clone)]
enum FileSource {
    Host(PathBuf),
    Bytes(Vec<u8>),
}

/// The guest's root file system, keyed by path without the leading `/`.
#[derive(Debug, Clone, Default)]
pub struct Initramfs {
    entries: BTreeMap<String, Entry>,
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;

impl Initramfs {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether something already exists at `guest_path`.
    pub fn contains(&self, guest_path: &str) -> bool {
        normalize(guest_path).is_ok_and(|key| self.entries.contains_key(&key))
    }

    /// Adds a directory (and its parents).
    pub fn add_dir(&mut self, guest_path: &str) -> Result<()> {
        let key = normalize(guest_path)?;
        self.add_parents(&key);
        self.entries.insert(key, Entry::Dir);
        Ok(())
    }

    /// Adds a host file, read when the archive is written. `mode` holds the permission bits.
    pub fn add_file(&mut self, guest_path: &str, host: &Path, mode: u32) -> Result<()> {
        if !host.is_file() {
            bail!("{} is not a file", host.display());
        }
        self.insert(
            guest_path,
            Entry::File {
                source: FileSource::Host(host.to_path_buf()),
                mode,
            },
        )
    }

    /// Adds a file with the given contents.
    pub fn add_bytes(&mut self, guest_path: &str, data: Vec<u8>, mode: u32) -> Result<()> {
        self.insert(
            guest_path,
            Entry::File {
                source: FileSource::Bytes(data),
                mode,
            },
        )
    }

    pub fn add_symlink(&mut self, guest_path: &str, target: &str) -> Result<()> {
        self.insert(guest_path, Entry::Symlink(target.to_string()))
    }

    /// Copies a host file or directory tree (files keep their permission bits, symbolic links
    /// are kept as links).
    pub fn add_host_tree(&mut self, guest_path: &str, host: &Path) -> Result<()> {
        let metadata =
            fs::symlink_metadata(host).with_context(|| format!("reading {}", host.display()))?;
        if metadata.file_type().is_symlink() {
            let target =
                fs::read_link(host).with_context(|| format!("reading {}", host.display()))?;
            self.add_symlink(guest_path, &target.to_string_lossy())
        } else if metadata.is_dir() {
            self.add_dir(guest_path)?;
            let mut children: Vec<PathBuf> = fs::read_dir(host)
                .with_context(|| format!("listing {}", host.display()))?
                .map(|entry| entry.map(|e| e.path()))
                .collect::<io::Result<_>>()
                .with_context(|| format!("listing {}", host.display()))?;
            children.sort();
            for child in children {
                let name = child.file_name().unwrap_or_default().to_string_lossy();
                self.add_host_tree(&format!("{guest_path}/{name}"), &child)?;
            }
            Ok(())
        } else if metadata.is_file() {
            self.add_file(guest_path, host, metadata.permissions().mode() & 0o7777)
        } else {
            bail!(
                "{} is neither a file, a directory nor a symbolic link",
                host.display()
            )
        }
    }

    fn insert(&mut self, guest_path: &str, entry: Entry) -> Result<()> {
        let key = normalize(guest_path)?;
        self.add_parents(&key);
        self.entries.insert(key, entry);
        Ok(())
    }

    fn add_parents(&mut self, key: &str) {
        let mut parent = Path::new(key).parent();
        while let Some(dir) = parent.filter(|p| !p.as_os_str().is_empty()) {
            self.entries
                .entry(dir.to_string_lossy().into_owned())
                .or_insert(Entry::Dir);
            parent = dir.parent();
        }
    }

    /// Writes the archive. Parents precede their children because the entries are sorted by
    /// path and a path sorts before every path it is a prefix of.
    pub fn write_newc(&self, out: &mut impl Write) -> Result<()> {
        for (index, (name, entry)) in self.entries.iter().enumerate() {
            // Inode 0 is avoided: some tools treat it as "no inode".
            let ino = u32::try_from(index + 1).context("too many initramfs entries")?;
            match entry {
                Entry::Dir => write_entry(out, ino, S_IFDIR | 0o755, 2, name, &[])?,
                Entry::Symlink(target) => {
                    write_entry(out, ino, S_IFLNK | 0o777, 1, name, target.as_bytes())?
                }
                Entry::File { source, mode } => {
                    let data = match source {
                        FileSource::Bytes(bytes) => bytes.clone(),
                        FileSource::Host(path) => {
                            fs::read(path).with_context(|| format!("reading {}", path.display()))?
                        }
                    };
                    write_entry(out, ino, S_IFREG | mode, 1, name, &data)?;
                }
            }
        }
        write_entry(out, 0, 0, 1, "TRAILER!!!", &[])
    }

    /// Writes the archive to a file.
    pub fn write_to(&self, path: &Path) -> Result<()> {
        let file =
            fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut out = BufWriter::new(file);
        self.write_newc(&mut out)?;
        out.flush()
            .with_context(|| format!("writing {}", path.display()))
    }
}

/// `/a/b` and `a/b` both become `a/b`; `..` and empty paths are refused.
fn normalize(guest_path: &str) -> Result<String> {
    let mut parts = Vec::new();
    for component in Path::new(guest_path).components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(part) => parts.push(part.to_string_lossy().into_owned()),
            Component::ParentDir | Component::Prefix(_) => {
                bail!("guest path {guest_path:?} must not contain `..`")
            }
        }
    }
    if parts.is_empty() {
        bail!("guest path {guest_path:?} names the root");
    }
    Ok(parts.join("/"))
}

fn write_entry(
    out: &mut impl Write,
    ino: u32,
    mode: u32,
    nlink: u32,
    name: &str,
    data: &[u8],
) -> Result<()> {
    let name_size = name.len() + 1;
    let file_size = u32::try_from(data.len()).context("file too large for cpio newc (4 GiB)")?;
    // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor,
    // rdevminor, namesize, check
    let header = format!(
        "070701{ino:08x}{mode:08x}{:08x}{:08x}{nlink:08x}{:08x}{file_size:08x}{:08x}{:08x}{:08x}{:08x}{name_size:08x}{:08x}",
        0, 0, 0, 0, 0, 0, 0, 0
    );
    out.write_all(header.as_bytes())?;
    out.write_all(name.as_bytes())?;
    out.write_all(&[0])?;
    pad(out, header.len() + name_size)?;
    out.write_all(data)?;
    pad(out, data.len())?;
    Ok(())
}

/// Header+name and data are each padded to a multiple of 4 bytes.
fn pad(out: &mut impl Write, len: usize) -> io::Result<()> {
    out.write_all(&[0; 3][..(4 - len % 4) % 4])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    fn archive(initramfs: &Initramfs) -> Vec<u8> {
        let mut bytes = Vec::new();
        initramfs.write_newc(&mut bytes).unwrap();
        bytes
    }

    #[test]
    fn writes_the_newc_layout() {
        let mut initramfs = Initramfs::new();
        initramfs
            .add_bytes("/init", b"#!/bin/sh\n".to_vec(), 0o755)
            .unwrap();
        let bytes = archive(&initramfs);
        let fields = [
            1,        // ino
            0o100755, // regular file, rwxr-xr-x
            0,        // uid
            0,        // gid
            1,        // nlink
            0,        // mtime
            10,       // file size
            0, 0, 0, 0, // devices
            5, // name size with NUL
            0, // check
        ];
        let header: String = fields.iter().map(|f| format!("{f:08x}")).collect();
        assert_eq!(&bytes[..110], format!("070701{header}").as_bytes());
        assert_eq!(&bytes[110..115], b"init\0");
        // 110 + 5 = 115 is padded to 116, then the 10 data bytes to 12.
        assert_eq!(&bytes[116..126], b"#!/bin/sh\n");
        assert_eq!(&bytes[128..134], b"070701");
        assert_eq!(bytes.len() % 4, 0);
    }

    #[test]
    fn is_deterministic_and_adds_parents() {
        let mut a = Initramfs::new();
        a.add_symlink("bin/sh", "busybox").unwrap();
        a.add_bytes("/etc/x/y", vec![1, 2, 3], 0o600).unwrap();
        let mut b = Initramfs::new();
        b.add_bytes("etc/x/y", vec![1, 2, 3], 0o600).unwrap();
        b.add_symlink("/bin/sh", "busybox").unwrap();
        assert_eq!(archive(&a), archive(&b));
        assert!(a.contains("/etc/x") && a.contains("etc") && a.contains("bin"));
    }

    #[test]
    fn refuses_paths_outside_the_root() {
        let mut initramfs = Initramfs::new();
        assert!(initramfs.add_dir("/a/../../b").is_err());
        assert!(initramfs.add_dir("/").is_err());
    }

    /// GNU cpio reads back exactly what was packed.
    #[test]
    fn cpio_lists_and_extracts_the_archive() {
        let host = tempfile::tempdir().unwrap();
        fs::create_dir(host.path().join("tree")).unwrap();
        fs::write(host.path().join("tree/file"), "hello").unwrap();
        std::os::unix::fs::symlink("file", host.path().join("tree/link")).unwrap();
        let mut initramfs = Initramfs::new();
        initramfs
            .add_host_tree("/include/tree", &host.path().join("tree"))
            .unwrap();
        let image = host.path().join("image.cpio");
        initramfs.write_to(&image).unwrap();

        let out = host.path().join("out");
        fs::create_dir(&out).unwrap();
        let status = Command::new("cpio")
            .args(["-i", "-d", "--quiet", "-F"])
            .arg(&image)
            .current_dir(&out)
            .stdin(Stdio::null())
            .status()
            .expect("cpio must be installed (`cargo xtask test` installs it)");
        assert!(status.success());
        assert_eq!(
            fs::read_to_string(out.join("include/tree/file")).unwrap(),
            "hello"
        );
        assert_eq!(
            fs::read_link(out.join("include/tree/link")).unwrap(),
            Path::new("file")
        );
    }
}
