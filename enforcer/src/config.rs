//! The daemon's config file (TOML). Every key is optional and its default is
//! stated here and in docs/architecture.md; flags on the command line win
//! over the file. Unknown keys are errors, so a typo never goes unnoticed.

use anyhow::Context;
use serde::Deserialize;
use siem_export::config::SinkConfig;
use std::path::{Path, PathBuf};

pub const DEFAULT_STATE_DIR: &str = "/var/lib/enforcer";

/// The config file. `S` is how a `[[export.sinks]]` entry is held: read first as a TOML table
/// with its position, then turned into a [`SinkConfig`] with errors that name the sink.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config<S = SinkConfig> {
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
    /// Export to SIEMs: the sinks and the outbox `<state_dir>/outbox.db`.
    pub export: ExportConfig<S>,
    /// `[metrics]`: the Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// The bpffs directory each loaded plan is pinned in (`gen-<n>/`), so that enforcement
    /// outlives the daemon. Default `/sys/fs/bpf/enforcer`; `""` turns pinning off.
    pub pin_root: PathBuf,
    /// Verdict records per second per (cgroup, rule) the kernel sends to the daemon. Over it
    /// every verdict still applies (a deny still denies); the records are not sent and the next
    /// one sent carries how many were suppressed. Default 100; 0: no limit.
    pub event_rate_limit: u32,
    /// Self-protection: tasks under enforcement may not signal or ptrace the daemon, reach BPF
    /// objects by pin or id, or touch the state directory and the pin root. Default on (it
    /// attaches the file and path programs to every plan); `--no-self-protection` or
    /// `self_protection = false` turns it off.
    pub self_protection: bool,
    /// The kubelet's pod log directory (its `podLogsDir`), which Kubernetes namespace
    /// selectors read and watch. Default `/var/log/pods`.
    pub pod_logs_dir: PathBuf,
}

/// `[metrics]`: where `enforcer run` serves Prometheus metrics (`GET /metrics`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `IP:PORT` to listen on. Default `127.0.0.1:9464` (this host only); `""` turns the
    /// endpoint off.
    pub address: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            address: crate::metrics::DEFAULT_ADDRESS.to_string(),
        }
    }
}

impl MetricsConfig {
    /// The address to serve on; `None`: metrics are off. Checked by [`Config::parse`].
    pub fn socket_addr(&self) -> Option<std::net::SocketAddr> {
        crate::metrics::parse_address(&self.address)
            .ok()
            .and_then(|a| a.0)
    }
}

/// `[export]`: where events are forwarded. No sinks (the default): nothing is exported and no
/// outbox is kept.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExportConfig<S = SinkConfig> {
    /// `[[export.sinks]]`, siem-export's sink configuration (name, type, filter, batch, retry
    /// and the type's own keys).
    pub sinks: Vec<S>,
    /// On SIGTERM, how long batches being sent (and events not sent yet) may take before the
    /// daemon exits; what is not delivered by then stays in the outbox. Default 5000.
    pub shutdown_grace_ms: u64,
    /// `[export.outbox]`.
    pub outbox: OutboxSettings,
}

impl<S> Default for ExportConfig<S> {
    fn default() -> Self {
        ExportConfig {
            sinks: Vec::new(),
            shutdown_grace_ms: 5000,
            outbox: OutboxSettings::default(),
        }
    }
}

/// `[export.outbox]`: the durable queue between the daemon and the sinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxSettings {
    /// Upper bound on the outbox database's used size; past it, audit events are refused and
    /// deny/kill events evict dead letters, then undelivered audit events. Default 1 GiB.
    pub max_bytes: u64,
}

impl Default for OutboxSettings {
    fn default() -> Self {
        OutboxSettings {
            max_bytes: siem_export::outbox::OutboxConfig::default().max_bytes,
        }
    }
}

impl OutboxSettings {
    pub fn outbox_config(&self) -> siem_export::outbox::OutboxConfig {
        siem_export::outbox::OutboxConfig {
            max_bytes: self.max_bytes,
            ..siem_export::outbox::OutboxConfig::default()
        }
    }
}

/// The smallest `export.outbox.max_bytes` accepted: room for a few thousand events.
const MIN_OUTBOX_BYTES: u64 = 1 << 20;

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

impl<S> Default for Config<S> {
    fn default() -> Self {
        Config {
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            policies: Vec::new(),
            mode: None,
            event_log: EventLogConfig::default(),
            store: StoreConfig::default(),
            export: ExportConfig::default(),
            metrics: MetricsConfig::default(),
            pin_root: PathBuf::from(crate::pinning::DEFAULT_PIN_ROOT),
            event_rate_limit: crate::kernel_settings::DEFAULT_EVENT_RATE_LIMIT,
            self_protection: true,
            pod_logs_dir: PathBuf::from(enforcer::pod_logs::DEFAULT_POD_LOGS_DIR),
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
        let raw: Config<toml::Spanned<toml::Table>> =
            toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        if raw.event_log.max_file_bytes < 4096 {
            anyhow::bail!(
                "`event_log.max_file_bytes` is {}; it must be at least 4096 (one event)",
                raw.event_log.max_file_bytes
            );
        }
        if raw.export.outbox.max_bytes < MIN_OUTBOX_BYTES {
            anyhow::bail!(
                "`export.outbox.max_bytes` is {}; it must be at least {MIN_OUTBOX_BYTES} (1 MiB)",
                raw.export.outbox.max_bytes
            );
        }
        if let Err(e) = crate::metrics::parse_address(&raw.metrics.address) {
            anyhow::bail!("`metrics.address`: {e}");
        }
        let mut sinks: Vec<SinkConfig> = Vec::with_capacity(raw.export.sinks.len());
        for (i, entry) in raw.export.sinks.into_iter().enumerate() {
            let sink = parse_sink(i, entry, text)?;
            if sinks.iter().any(|s| s.name == sink.name) {
                anyhow::bail!(
                    "two `[[export.sinks]]` are named `{}`: sink names must be unique",
                    sink.name
                );
            }
            sinks.push(sink);
        }
        Ok(Config {
            state_dir: raw.state_dir,
            policies: raw.policies,
            mode: raw.mode,
            event_log: raw.event_log,
            store: raw.store,
            export: ExportConfig {
                sinks,
                shutdown_grace_ms: raw.export.shutdown_grace_ms,
                outbox: raw.export.outbox,
            },
            metrics: raw.metrics,
            pin_root: raw.pin_root,
            event_rate_limit: raw.event_rate_limit,
            self_protection: raw.self_protection,
            pod_logs_dir: raw.pod_logs_dir,
        })
    }

    /// The configured sink names, in order (what the outbox is opened with).
    pub fn sink_names(&self) -> Vec<&str> {
        self.export.sinks.iter().map(|s| s.name.as_str()).collect()
    }
}

/// The sink's type-specific keys are read through a serde `flatten`, which loses the key of a
/// type error ("invalid type: integer `5`, expected a string"). The culprit is the one key
/// whose removal makes that error go away; `None` when the message names the key already or no
/// single key is to blame (a missing key).
fn culprit_key(table: &toml::Table, error: &str) -> Option<String> {
    let mut found = None;
    if table.keys().any(|key| error.contains(&format!("`{key}`"))) {
        return None;
    }
    // Without `name` or `type` every error turns into that one.
    for key in table.keys().filter(|k| *k != "name" && *k != "type") {
        let mut without = table.clone();
        without.remove(key);
        let still = match toml::Value::Table(without).try_into::<SinkConfig>() {
            Ok(_) => false,
            Err(e) => e.to_string().trim().replace('\n', " ") == error,
        };
        if !still {
            if found.is_some() {
                return None;
            }
            found = Some(key.clone());
        }
    }
    found
}

/// One `[[export.sinks]]` entry (the `index`th): errors name the sink (or its number when it
/// has no name), the line its table starts on, and the key serde complained about.
fn parse_sink(
    index: usize,
    entry: toml::Spanned<toml::Table>,
    text: &str,
) -> anyhow::Result<SinkConfig> {
    let line = text
        .get(..entry.span().start)
        .map_or(0, |before| before.matches('\n').count())
        + 1;
    let table = entry.into_inner();
    let what = match table.get("name").and_then(toml::Value::as_str) {
        Some(name) => format!("sink `{name}`"),
        None => format!("sink number {}", index + 1),
    };
    let sink: SinkConfig = match toml::Value::Table(table.clone()).try_into() {
        Ok(sink) => sink,
        Err(e) => {
            let mut detail = e.to_string().trim().replace('\n', " ");
            if let Some(key) = culprit_key(&table, &detail) {
                detail.push_str(&format!(" (key `{key}`)"));
            }
            anyhow::bail!("`[[export.sinks]]` {what} (line {line}): {detail}");
        }
    };
    if sink.name.is_empty() {
        anyhow::bail!("`[[export.sinks]]` {what} (line {line}): `name` must not be empty");
    }
    Ok(sink)
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
        assert!(c.export.sinks.is_empty());
        assert_eq!(c.export.shutdown_grace_ms, 5000);
        assert_eq!(c.export.outbox.max_bytes, 1 << 30);
        assert_eq!(c.metrics.address, "127.0.0.1:9464");
        assert_eq!(
            c.metrics.socket_addr(),
            Some("127.0.0.1:9464".parse().unwrap())
        );
    }

    #[test]
    fn the_metrics_address_parses_turns_off_and_is_checked() {
        let c = Config::parse("[metrics]\naddress = \"[::1]:9100\"\n").unwrap();
        assert_eq!(c.metrics.socket_addr(), Some("[::1]:9100".parse().unwrap()));
        let c = Config::parse("[metrics]\naddress = \"\"\n").unwrap();
        assert_eq!(c.metrics.socket_addr(), None);
        let err = format!(
            "{:#}",
            Config::parse("[metrics]\naddress = \"localhost\"\n").unwrap_err()
        );
        assert!(
            err.contains("metrics.address") && err.contains("localhost"),
            "{err}"
        );
        let err = format!(
            "{:#}",
            Config::parse("[metrics]\nadress = \"\"\n").unwrap_err()
        );
        assert!(err.contains("adress"), "{err}");
    }

    const SINKS: &str = "state_dir = \"/x\"\n\
        [export]\nshutdown_grace_ms = 2000\n\
        [export.outbox]\nmax_bytes = 10485760\n\
        [[export.sinks]]\nname = \"soc\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/h\"\n\
        format = \"ocsf\"\nsecrets = [{ file = \"/etc/enforcer/hook.secret\" }]\n\
        filter = { verdicts = [\"denied\"] }\nbatch = { max_delay_ms = 100 }\n\
        [[export.sinks]]\nname = \"local\"\ntype = \"file\"\npath = \"/var/log/e.jsonl\"\n";

    #[test]
    fn export_sinks_and_outbox_parse() {
        use siem_export::config::SinkKind;
        let c = Config::parse(SINKS).unwrap();
        assert_eq!(c.sink_names(), ["soc", "local"]);
        assert_eq!(c.export.shutdown_grace_ms, 2000);
        assert_eq!(c.export.outbox.outbox_config().max_bytes, 10 << 20);
        let soc = &c.export.sinks[0];
        assert!(matches!(&soc.kind, SinkKind::Webhook(w) if w.secrets.len() == 1));
        assert_eq!(soc.batch.max_delay_ms, 100);
        assert_eq!(soc.batch.max_events, 500);
        assert!(matches!(&c.export.sinks[1].kind, SinkKind::File(_)));
    }

    #[test]
    fn sink_errors_name_the_sink_the_key_and_the_line() {
        let bad = SINKS.replace("format = \"ocsf\"", "fromat = \"ocsf\"");
        let err = format!("{:#}", Config::parse(&bad).unwrap_err());
        assert!(
            err.contains("sink `soc`") && err.contains("fromat") && err.contains("line 6"),
            "{err}"
        );
        let bad = SINKS.replace("url = \"http://127.0.0.1:9/h\"\n", "");
        let err = format!("{:#}", Config::parse(&bad).unwrap_err());
        assert!(err.contains("sink `soc`") && err.contains("`url`"), "{err}");
        let bad = SINKS.replace("type = \"file\"", "type = \"kafka\"");
        let err = format!("{:#}", Config::parse(&bad).unwrap_err());
        assert!(
            err.contains("sink `local`") && err.contains("kafka"),
            "{err}"
        );
        let bad = SINKS.replace("\"http://127.0.0.1:9/h\"", "5");
        let err = format!("{:#}", Config::parse(&bad).unwrap_err());
        assert!(
            err.contains("sink `soc`") && err.contains("key `url`"),
            "{err}"
        );
        let bad = SINKS.replace("max_delay_ms", "max_dalay_ms");
        let err = format!("{:#}", Config::parse(&bad).unwrap_err());
        assert!(
            err.contains("sink `soc`") && err.contains("max_dalay_ms"),
            "{err}"
        );
        let bad = SINKS.replace("name = \"local\"", "name = \"soc\"");
        let err = format!("{:#}", Config::parse(&bad).unwrap_err());
        assert!(err.contains("`soc`") && err.contains("unique"), "{err}");
        let bad = SINKS.replace("name = \"local\"\n", "");
        let err = format!("{:#}", Config::parse(&bad).unwrap_err());
        assert!(
            err.contains("sink number 2") && err.contains("`name`"),
            "{err}"
        );
        let err = format!(
            "{:#}",
            Config::parse("[export]\nshutdown_grace = 1\n").unwrap_err()
        );
        assert!(err.contains("shutdown_grace"), "{err}");
        let err = format!(
            "{:#}",
            Config::parse("[export.outbox]\nmax_bytes = 1000\n").unwrap_err()
        );
        assert!(err.contains("export.outbox.max_bytes"), "{err}");
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
