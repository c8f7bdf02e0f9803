//! A private apt state that adds `bookworm-backports` to the machine's own Debian sources, so the
//! 6.12 kernel can be fetched without touching `/etc/apt` and without naming a mirror here: the
//! archive URIs and keys are copied from the machine's configuration at run time.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The Debian release the test kernels come from.
pub const BASE_SUITE: &str = "bookworm";
/// Where the 6.12 kernel lives.
pub const BACKPORTS_SUITE: &str = "bookworm-backports";

/// One file for the private `sources.list.d`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    pub name: String,
    pub contents: String,
}

/// Builds the private source files from the machine's apt configuration directory (`/etc/apt`):
/// every binary (`deb`) entry is kept, and each entry for [`BASE_SUITE`] also gets
/// [`BACKPORTS_SUITE`].
pub fn private_sources(etc_apt: &Path) -> Result<Vec<SourceFile>> {
    let mut inputs = Vec::new();
    let main_list = etc_apt.join("sources.list");
    if main_list.is_file() {
        inputs.push(main_list);
    }
    let parts = etc_apt.join("sources.list.d");
    if parts.is_dir() {
        let mut entries: Vec<PathBuf> = fs::read_dir(&parts)
            .with_context(|| format!("listing {}", parts.display()))?
            .map(|entry| entry.map(|e| e.path()))
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("listing {}", parts.display()))?;
        entries.sort();
        inputs.extend(entries);
    }

    let mut files = Vec::new();
    let mut has_base_suite = false;
    for (index, path) in inputs.iter().enumerate() {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let deb822 = name.ends_with(".sources");
        if !deb822 && !name.ends_with(".list") {
            continue;
        }
        let text =
            fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let converted = if deb822 {
            deb822_with_backports(&text)
        } else {
            one_line_with_backports(&text)
        };
        has_base_suite |= converted.has_base_suite;
        if !converted.text.is_empty() {
            let extension = if deb822 { "sources" } else { "list" };
            files.push(SourceFile {
                name: format!("{index:02}-{}.{extension}", stem(path)),
                contents: converted.text,
            });
        }
    }
    if !has_base_suite {
        bail!(
            "no `{BASE_SUITE}` entry in the apt sources under {}: the VM kernels come from Debian \
             {BASE_SUITE} and {BACKPORTS_SUITE}, so apt must know a Debian archive for {BASE_SUITE}",
            etc_apt.display()
        );
    }
    Ok(files)
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

#[derive(Debug)]
struct Converted {
    text: String,
    has_base_suite: bool,
}

/// deb822 (`*.sources`): stanzas of `Key: value` fields separated by blank lines.
fn deb822_with_backports(text: &str) -> Converted {
    let mut out = String::new();
    let mut has_base_suite = false;
    for stanza in deb822_stanzas(text) {
        let value = |key: &str| {
            stanza
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.as_str())
        };
        let is_binary = value("Types").is_some_and(|t| t.split_whitespace().any(|t| t == "deb"));
        let enabled = value("Enabled").is_none_or(|e| !e.trim().eq_ignore_ascii_case("no"));
        if !is_binary || !enabled {
            continue;
        }
        if !out.is_empty() {
            out.push('\n');
        }
        for (key, value) in &stanza {
            let value = if key.eq_ignore_ascii_case("Types") {
                " deb".to_string()
            } else if key.eq_ignore_ascii_case("Suites") {
                let mut suites: Vec<&str> = value.split_whitespace().collect();
                if suites.contains(&BASE_SUITE) {
                    has_base_suite = true;
                    if !suites.contains(&BACKPORTS_SUITE) {
                        suites.push(BACKPORTS_SUITE);
                    }
                }
                format!(" {}", suites.join(" "))
            } else {
                value.clone()
            };
            out.push_str(&format!("{key}:{value}\n"));
        }
    }
    Converted {
        text: out,
        has_base_suite,
    }
}

/// Splits deb822 text into stanzas of (key, raw value). The raw value keeps its leading space and
/// continuation lines (e.g. an inline `Signed-By` key block) so it is written back unchanged.
fn deb822_stanzas(text: &str) -> Vec<Vec<(String, String)>> {
    let mut stanzas = Vec::new();
    let mut current: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        if line.trim().is_empty() {
            if !current.is_empty() {
                stanzas.push(std::mem::take(&mut current));
            }
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = current.last_mut() {
                value.push('\n');
                value.push_str(line);
            }
        } else if let Some((key, value)) = line.split_once(':') {
            current.push((key.trim().to_string(), value.to_string()));
        }
    }
    if !current.is_empty() {
        stanzas.push(current);
    }
    stanzas
}

/// One-line format (`sources.list`): `deb [options] uri suite component...`.
fn one_line_with_backports(text: &str) -> Converted {
    let entries: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| line.split_whitespace().next() == Some("deb"))
        .collect();
    let mut out = String::new();
    let mut has_base_suite = false;
    for line in &entries {
        out.push_str(line);
        out.push('\n');
        let Some((prefix, suite, rest)) = split_one_line(line) else {
            continue;
        };
        if suite != BASE_SUITE {
            continue;
        }
        has_base_suite = true;
        let backports = format!("{prefix} {BACKPORTS_SUITE} {rest}");
        let already_there = entries.iter().any(|other| {
            split_one_line(other).is_some_and(|(p, s, _)| p == prefix && s == BACKPORTS_SUITE)
        });
        if !already_there {
            out.push_str(backports.trim_end());
            out.push('\n');
        }
    }
    Converted {
        text: out,
        has_base_suite,
    }
}

/// Splits `deb [options] uri suite components` into (`deb [options] uri`, suite, components).
fn split_one_line(line: &str) -> Option<(&str, &str, &str)> {
    let after_type = line.strip_prefix("deb")?.trim_start();
    // Options may contain spaces: `[ signed-by=/x arch=amd64 ]`.
    let uri_start = if after_type.starts_with('[') {
        let close = after_type.find(']')?;
        let offset = line.len() - after_type.len() + close + 1;
        offset + (line[offset..].len() - line[offset..].trim_start().len())
    } else {
        line.len() - after_type.len()
    };
    let uri_end = uri_start + line[uri_start..].find(char::is_whitespace)?;
    let after_uri = line[uri_end..].trim_start();
    let suite_start = line.len() - after_uri.len();
    let suite_end = suite_start
        + line[suite_start..]
            .find(char::is_whitespace)
            .unwrap_or(line.len() - suite_start);
    Some((
        &line[..uri_end],
        &line[suite_start..suite_end],
        line[suite_end..].trim(),
    ))
}

/// apt's state for the test kernels, all under one directory of the target dir.
#[derive(Debug, Clone)]
pub struct PrivateApt {
    root: PathBuf,
}

impl PrivateApt {
    /// Creates (or refreshes) the private configuration from the machine's `/etc/apt`.
    pub fn prepare(root: &Path) -> Result<Self> {
        let apt = Self {
            root: root.to_path_buf(),
        };
        let parts = apt.parts_dir();
        if parts.exists() {
            fs::remove_dir_all(&parts).with_context(|| format!("removing {}", parts.display()))?;
        }
        for dir in [
            parts.clone(),
            apt.root.join("lists/partial"),
            apt.root.join("cache/archives/partial"),
        ] {
            fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        for file in private_sources(Path::new("/etc/apt"))? {
            let path = parts.join(&file.name);
            fs::write(&path, file.contents)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        fs::write(apt.root.join("sources.list"), "")
            .with_context(|| format!("writing {}", apt.root.display()))?;
        Ok(apt)
    }

    fn parts_dir(&self) -> PathBuf {
        self.root.join("sources.list.d")
    }

    /// The `-o` options that point apt at the private state (the dpkg status stays the
    /// machine's: it is only read).
    pub fn options(&self) -> Vec<String> {
        let dir = |sub: &str| self.root.join(sub).display().to_string();
        vec![
            format!("-oDir::Etc::SourceList={}", dir("sources.list")),
            format!("-oDir::Etc::SourceParts={}", dir("sources.list.d")),
            format!("-oDir::State::Lists={}", dir("lists")),
            format!("-oDir::Cache={}", dir("cache")),
            // The private directories belong to root; apt's download sandbox user could not
            // write there.
            "-oAPT::Sandbox::User=root".to_string(),
        ]
    }

    /// An apt tool (`apt-get`, `apt-cache`) using the private state.
    pub fn command(&self, tool: &str) -> Command {
        let mut command = Command::new(tool);
        command.args(self.options());
        command
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEB822: &str = "\
Types: deb deb-src
# a comment
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 abc
 -----END PGP PUBLIC KEY BLOCK-----

Types: deb-src
URIs: http://mirror.example/debian
Suites: bookworm
Components: main
";

    #[test]
    fn deb822_adds_backports_to_the_base_suite_only() {
        let converted = deb822_with_backports(DEB822);
        assert!(converted.has_base_suite);
        assert_eq!(
            converted.text,
            "\
Types: deb
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 abc
 -----END PGP PUBLIC KEY BLOCK-----
"
        );
    }

    #[test]
    fn deb822_keeps_existing_backports_and_skips_disabled_entries() {
        let text = "Types: deb\nURIs: http://m.example/d\nSuites: bookworm bookworm-backports\n\
                    Components: main\n\nTypes: deb\nEnabled: no\nURIs: http://x.example/d\n\
                    Suites: sid\nComponents: main\n";
        let converted = deb822_with_backports(text);
        assert_eq!(
            converted.text,
            "Types: deb\nURIs: http://m.example/d\nSuites: bookworm bookworm-backports\n\
             Components: main\n"
        );
    }

    #[test]
    fn one_line_format_gets_a_backports_line() {
        let text = "# comment\n\
                    deb [ signed-by=/k.gpg arch=amd64 ] http://mirror.example/debian bookworm main contrib\n\
                    deb-src http://mirror.example/debian bookworm main\n\
                    deb http://mirror.example/debian-security bookworm-security main\n";
        let converted = one_line_with_backports(text);
        assert!(converted.has_base_suite);
        assert_eq!(
            converted.text,
            "deb [ signed-by=/k.gpg arch=amd64 ] http://mirror.example/debian bookworm main contrib\n\
             deb [ signed-by=/k.gpg arch=amd64 ] http://mirror.example/debian bookworm-backports main contrib\n\
             deb http://mirror.example/debian-security bookworm-security main\n"
        );
    }

    #[test]
    fn one_line_format_does_not_duplicate_backports() {
        let text = "deb http://m.example/d bookworm main\ndeb http://m.example/d bookworm-backports main\n";
        assert_eq!(one_line_with_backports(text).text, text);
    }

    #[test]
    fn private_sources_reads_both_formats_and_requires_the_base_suite() {
        let etc = tempfile::tempdir().unwrap();
        fs::create_dir(etc.path().join("sources.list.d")).unwrap();
        fs::write(etc.path().join("sources.list"), "").unwrap();
        fs::write(etc.path().join("sources.list.d/debian.sources"), DEB822).unwrap();
        fs::write(etc.path().join("sources.list.d/ignored.save"), "deb x y z").unwrap();
        let files = private_sources(etc.path()).unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["01-debian.sources"]);

        fs::write(
            etc.path().join("sources.list.d/debian.sources"),
            "Types: deb\nURIs: http://m.example/d\nSuites: trixie\nComponents: main\n",
        )
        .unwrap();
        let error = private_sources(etc.path()).unwrap_err().to_string();
        assert!(error.contains("no `bookworm` entry"), "{error}");
    }
}
