//! User names from `/etc/passwd`, parsed once and parsed again when the
//! file's modification time changes. Lookups are a hash lookup: the file is
//! looked at again (one `stat`) at most once per refresh interval, never on
//! every lookup.
//!
//! Only the passwd file is read, not NSS: users from LDAP or SSSD stay
//! unnamed (their uid is always exported).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// How often [`UserDb::maybe_refresh`] looks at the file's mtime.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub struct UserDb {
    path: PathBuf,
    names: HashMap<u32, Arc<str>>,
    mtime: Option<SystemTime>,
    checked: Option<Instant>,
    /// How many times the file was (re)parsed.
    pub loads: u64,
}

impl UserDb {
    /// Reads `path` now; a missing or unreadable file gives an empty map
    /// (and is tried again on the next refresh).
    pub fn open(path: impl Into<PathBuf>) -> Self {
        let mut db = UserDb {
            path: path.into(),
            names: HashMap::new(),
            mtime: None,
            checked: None,
            loads: 0,
        };
        db.refresh();
        db
    }

    /// A map that never reads a file (tests, benchmarks).
    pub fn from_entries(entries: impl IntoIterator<Item = (u32, String)>) -> Self {
        UserDb {
            path: PathBuf::new(),
            names: entries
                .into_iter()
                .map(|(uid, n)| (uid, Arc::from(n)))
                .collect(),
            mtime: None,
            checked: None,
            loads: 0,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The name of `uid`. Does not allocate or touch the file system.
    pub fn name(&self, uid: u32) -> Option<&Arc<str>> {
        self.names.get(&uid)
    }

    /// Parses the file again if its mtime changed, looking at most once per
    /// [`REFRESH_INTERVAL`].
    pub fn maybe_refresh(&mut self) {
        if self.path.as_os_str().is_empty() {
            return;
        }
        let now = Instant::now();
        if self
            .checked
            .is_some_and(|t| now.duration_since(t) < REFRESH_INTERVAL)
        {
            return;
        }
        self.refresh();
    }

    /// Looks at the file now: parses it again if its mtime changed.
    pub fn refresh(&mut self) {
        self.checked = Some(Instant::now());
        let mtime = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        if mtime.is_some() && mtime == self.mtime {
            return;
        }
        match std::fs::read(&self.path) {
            Ok(bytes) => {
                self.names = parse_passwd(&bytes);
                self.mtime = mtime;
                self.loads += 1;
            }
            Err(err) => {
                tracing::debug!(path = %self.path.display(), %err, "cannot read the passwd file");
                self.mtime = None;
            }
        }
    }
}

/// `name:password:uid:gid:gecos:home:shell` lines; the first name of a uid
/// wins, as getpwuid(3) returns it. Comments, NIS `+`/`-` lines and
/// malformed lines are skipped.
pub fn parse_passwd(bytes: &[u8]) -> HashMap<u32, Arc<str>> {
    let mut map = HashMap::new();
    for line in bytes.split(|&b| b == b'\n') {
        let Ok(line) = std::str::from_utf8(line) else {
            continue;
        };
        let line = line.trim_end_matches('\r');
        if line.is_empty() || line.starts_with('#') || line.starts_with(['+', '-']) {
            continue;
        }
        let mut fields = line.split(':');
        let (Some(name), Some(_), Some(uid)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        let Ok(uid) = uid.parse::<u32>() else {
            continue;
        };
        if name.is_empty() {
            continue;
        }
        map.entry(uid).or_insert_with(|| Arc::from(name));
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_passwd_lines_and_skips_junk() {
        let m = parse_passwd(
            b"root:x:0:0:root:/root:/bin/bash\n# comment\n\nwww-data:x:33:33::/var/www:/usr/sbin/nologin\n\
              toor:x:0:0::/root:/bin/sh\n+nis::::::\nbad:x:notanumber:0::/:/bin/sh\nshort:x\n:x:5:5::/:/bin/sh\r\n\
              dos:x:1001:1001::/home/dos:/bin/sh\r\n",
        );
        assert_eq!(m.get(&0).map(|s| &**s), Some("root"));
        assert_eq!(m.get(&33).map(|s| &**s), Some("www-data"));
        assert_eq!(m.get(&1001).map(|s| &**s), Some("dos"));
        assert_eq!(m.get(&5), None);
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn reparses_when_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        std::fs::write(&path, "root:x:0:0::/root:/bin/sh\n").unwrap();
        let mut db = UserDb::open(&path);
        assert_eq!(db.name(0).map(|s| &**s), Some("root"));
        assert_eq!(db.name(1000), None);
        assert_eq!(db.loads, 1);
        // Unchanged: not parsed again.
        db.refresh();
        assert_eq!(db.loads, 1);
        std::fs::write(
            &path,
            "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n",
        )
        .unwrap();
        let f = std::fs::File::options().write(true).open(&path).unwrap();
        f.set_modified(SystemTime::now() + Duration::from_secs(10))
            .unwrap();
        // Within the interval nothing is looked at ...
        db.maybe_refresh();
        assert_eq!(db.name(1000), None);
        // ... an explicit refresh sees the new mtime.
        db.refresh();
        assert_eq!(db.name(1000).map(|s| &**s), Some("alice"));
        assert_eq!(db.loads, 2);
    }

    #[test]
    fn a_missing_file_is_an_empty_map() {
        let db = UserDb::open("/nonexistent/passwd");
        assert_eq!(db.name(0), None);
        assert_eq!(db.loads, 0);
    }
}
