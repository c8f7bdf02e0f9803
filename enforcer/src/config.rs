//! The daemon's config file (TOML). Every key is optional and its default is
//! stated here and in docs/architecture.md; flags on the command line win
//! over the file. Unknown keys are errors, so a typo never goes unnoticed.

use anyhow::Context;
use serde::Deserialize;
use std::path::{Path, PathBuf};

pub const DEFAULT_STATE_DIR: &str = "/var/lib/enforcer";

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where events and state are kept. Default `/var/lib/enforcer`.
    pub state_dir: PathBuf,
    /// Policy files or folders. Default: none, which means the embedded rule library.
    pub policies: Vec<PathBuf>,
    /// `enforce` (default: each policy's own mode) or `audit` (every policy audits).
    pub mode: Option<ModeSetting>,
    /// The local event log `<state_dir>/events.jsonl`.
    pub event_log: EventLogConfig,
    /// The event store `<state_dir>/events.db` (what `enforcer events query` reads).
    pub store: StoreConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Events older than this many days are deleted. Default 30; 0 keeps them forever.
    pub max_age_days: u32,
    /// The store is kept under this size, deleting allowed/audited/alerted events before
    /// denied/killed ones. Default 1 GiB; 0 means no size limit.
    pub max_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            max_age_days: 30,
            max_bytes: 1 << 30,
        }
    }
}

impl StoreConfig {
    pub fn retention(&self) -> enforcer::store::Retention {
        enforcer::store::Retention {
            max_age: (self.max_age_days > 0)
                .then(|| std::time::Duration::from_secs(u64::from(self.max_age_days) * 86_400)),
            max_bytes: (self.max_bytes > 0).then_some(self.max_bytes),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModeSetting {
    Enforce,
    Audit,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventLogConfig {
    /// Rotate the log when it would grow past this many bytes. Default 100 MiB.
    pub max_file_bytes: u64,
    /// Rotated files kept (`events.jsonl.1` ...). Default 5.
    pub keep_files: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            policies: Vec::new(),
            mode: None,
            event_log: EventLogConfig::default(),
            store: StoreConfig::default(),
        }
    }
}

impl Default for EventLogConfig {
    fn default() -> Self {
        EventLogConfig {
            max_file_bytes: 100 * 1024 * 1024,
            keep_files: 5,
        }
    }
}

impl Config {
    /// Reads a config file; errors name the file, line and column.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config `{}`", path.display()))?;
        Self::parse(&text).with_context(|| format!("config `{}`", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let config: Config = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        if config.event_log.max_file_bytes < 4096 {
            anyhow::bail!(
                "`event_log.max_file_bytes` is {}; it must be at least 4096 (one event)",
                config.event_log.max_file_bytes
            );
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_gives_the_documented_defaults() {
        let c = Config::parse("").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.state_dir, PathBuf::from("/var/lib/enforcer"));
        assert_eq!(c.event_log.max_file_bytes, 100 * 1024 * 1024);
        assert_eq!(c.event_log.keep_files, 5);
        assert_eq!(c.mode, None);
        assert_eq!(c.store.max_age_days, 30);
        assert_eq!(c.store.max_bytes, 1 << 30);
    }

    #[test]
    fn every_key_parses() {
        let c = Config::parse(
            "state_dir = \"/srv/enf\"\npolicies = [\"/etc/enforcer/policies\"]\nmode = \"audit\"\n\
             [event_log]\nmax_file_bytes = 1048576\nkeep_files = 2\n\
             [store]\nmax_age_days = 0\nmax_bytes = 5000000\n",
        )
        .unwrap();
        assert_eq!(c.state_dir, PathBuf::from("/srv/enf"));
        assert_eq!(c.policies, vec![PathBuf::from("/etc/enforcer/policies")]);
        assert_eq!(c.mode, Some(ModeSetting::Audit));
        assert_eq!(c.event_log.keep_files, 2);
        let r = c.store.retention();
        assert_eq!(r.max_age, None);
        assert_eq!(r.max_bytes, Some(5_000_000));
    }

    #[test]
    fn a_misspelt_key_is_an_error_naming_it_and_its_line() {
        let err = format!(
            "{:#}",
            Config::parse("state_dir = \"/x\"\nstate_dri = \"/y\"\n").unwrap_err()
        );
        assert!(err.contains("state_dri") && err.contains("line 2"), "{err}");
    }

    #[test]
    fn a_wrong_type_is_an_error() {
        let err = format!("{:#}", Config::parse("mode = 3").unwrap_err());
        assert!(err.contains("mode"), "{err}");
        let err = format!(
            "{:#}",
            Config::parse("[event_log]\nmax_file_bytes = 10").unwrap_err()
        );
        assert!(err.contains("at least 4096"), "{err}");
    }
}
