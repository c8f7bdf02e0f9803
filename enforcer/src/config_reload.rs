//! Re-reading the config file while the daemon runs (on SIGHUP): which changed keys apply
//! live, which need a restart, and the error of a config that does not load, with its file,
//! line and column. The running config stays in force when the new one has errors.

use crate::config::Config;
use crate::metrics::DaemonMetrics;
use enforcer::store::Writer;
use std::path::{Path, PathBuf};

/// Keys that apply without a restart, and how.
pub const LIVE_KEYS: &[&str] = &["store.max_age_days", "store.max_bytes"];

/// What changed between the running config and the one just read, by key.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Applied by the running daemon.
    pub live: Vec<&'static str>,
    /// Read, but in force only after a restart.
    pub restart: Vec<&'static str>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.live.is_empty() && self.restart.is_empty()
    }
}

/// The keys whose values differ between `old` and `new`.
pub fn compare(old: &Config, new: &Config) -> Changes {
    // Each key is named after its field path, so a name cannot drift from what is compared.
    macro_rules! differing {
        ($($($f:ident).+),* $(,)?) => {
            [$((stringify!($($f).+), old.$($f).+ != new.$($f).+)),*]
        };
    }
    let keys = differing!(
        store.max_age_days,
        store.max_bytes,
        state_dir,
        policies,
        mode,
        event_log.max_file_bytes,
        event_log.keep_files,
        export.sinks,
        export.shutdown_grace_ms,
        export.outbox,
        metrics.address,
        pin_root,
        event_rate_limit,
        self_protection,
        pod_logs_dir,
    );
    let mut c = Changes::default();
    for (name, changed) in keys {
        if !changed {
            continue;
        }
        if LIVE_KEYS.contains(&name) {
            c.live.push(name);
        } else {
            c.restart.push(name);
        }
    }
    c
}

/// The config file the daemon was started with, as it is in force.
pub struct RunningConfig {
    path: PathBuf,
    config: Config,
}

impl RunningConfig {
    pub fn new(path: PathBuf, config: Config) -> Self {
        RunningConfig { path, config }
    }

    /// Reads the file again and applies what can change live (store retention); logs each
    /// changed key that needs a restart. A config with errors changes nothing: the error is
    /// logged and counted as a failed reload. Returns whether the new config was taken.
    pub fn reload(&mut self, writer: &Writer, metrics: &DaemonMetrics) -> bool {
        let new = match reread(&self.path) {
            Ok(c) => c,
            Err(e) => {
                metrics.count_reload(false);
                tracing::error!("config reload failed, the running config stays in force: {e:#}");
                return false;
            }
        };
        let changes = compare(&self.config, &new);
        if changes.is_empty() {
            tracing::info!(config = %self.path.display(), "config re-read: nothing changed");
        }
        if !changes.live.is_empty() {
            writer.set_retention(new.store.retention());
            tracing::info!(
                keys = ?changes.live,
                "config reloaded: store retention applies from its next run (within a minute)"
            );
        }
        for key in &changes.restart {
            tracing::warn!(
                key,
                "config key `{key}` changed: it takes effect only when the daemon restarts"
            );
        }
        self.config = new;
        true
    }
}

/// 1-based line and column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Reads the config at `path` again. An error names `path:line:col` when the TOML parser
/// gives a position (syntax, unknown keys, wrong types), else the file.
pub fn reread(path: &Path) -> anyhow::Result<Config> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        anyhow::anyhow!(
            "reading config `{}`: {e}; fix the file and send SIGHUP again",
            path.display()
        )
    })?;
    if let Err(e) = toml::from_str::<Config<toml::Spanned<toml::Table>>>(&text) {
        let at = match e.span() {
            Some(span) => {
                let (line, col) = line_col(&text, span.start);
                format!("{}:{line}:{col}", path.display())
            }
            None => path.display().to_string(),
        };
        anyhow::bail!(
            "config `{at}`: {}; fix the file and send SIGHUP again",
            e.message().trim_end()
        );
    }
    Config::parse(&text).map_err(|e| {
        anyhow::anyhow!(
            "config `{}`: {e:#}; fix the file and send SIGHUP again",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn changed_keys_are_split_into_live_and_restart() {
        let old = Config::parse("[store]\nmax_age_days = 30\n").unwrap();
        assert!(compare(&old, &old.clone()).is_empty());
        let new = Config::parse(
            "state_dir = \"/srv/enforcer\"\n[store]\nmax_age_days = 7\nmax_bytes = 4096\n\
             [metrics]\naddress = \"\"\n",
        )
        .unwrap();
        let c = compare(&old, &new);
        assert_eq!(c.live, vec!["store.max_age_days", "store.max_bytes"]);
        assert_eq!(c.restart, vec!["state_dir", "metrics.address"]);
    }

    #[test]
    fn errors_name_the_file_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "[store]\nmax_age_days = 7\nmax_agedays = 3\n").unwrap();
        let e = format!("{:#}", reread(&path).unwrap_err());
        let at = format!("{}:3:1", path.display());
        assert!(e.contains(&at), "{e}");
        assert!(e.contains("max_agedays"), "{e}");
        std::fs::write(&path, "[store]\nmax_age_days = \"x\"\n").unwrap();
        let e = format!("{:#}", reread(&path).unwrap_err());
        assert!(e.contains(&format!("{}:2:16", path.display())), "{e}");
        // Checked after parsing: no position, but the file and the key.
        std::fs::write(&path, "[event_log]\nmax_file_bytes = 1\n").unwrap();
        let e = format!("{:#}", reread(&path).unwrap_err());
        assert!(e.contains("event_log.max_file_bytes"), "{e}");
        std::fs::write(&path, "[store]\nmax_age_days = 7\n").unwrap();
        assert_eq!(reread(&path).unwrap().store.max_age_days, 7);
    }
}
