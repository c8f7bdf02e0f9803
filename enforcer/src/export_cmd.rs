//! `enforcer export test|replay|status`: try a configured sink, move dead letters back to
//! pending, and show what the outbox holds per sink. The daemon's side of export (enqueue,
//! dispatcher) is in `run.rs`; both open the outbox through [`open_outbox`].

use crate::config::Config;
use crate::exit_code::{self, Failure};
use anyhow::Context;
use siem_export::config::SinkConfig;
use siem_export::dispatcher::{send_test_event, TestReport};
use siem_export::outbox::{DeadLetter, Outbox, OutboxStats, SinkStats};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the export commands read the daemon's config when `--config` is not given.
pub const DEFAULT_CONFIG: &str = "/etc/enforcer/config.toml";

/// The outbox's file in the state directory.
pub fn outbox_path(state_dir: &Path) -> PathBuf {
    state_dir.join("outbox.db")
}

/// Opens (creating if needed) `<state_dir>/outbox.db` for the configured sinks. Rows of sinks
/// that are no longer configured are dropped (siem-export logs a warning), so this is only
/// ever called with the full configured list.
pub fn open_outbox(state_dir: &Path, config: &Config) -> anyhow::Result<Outbox> {
    let path = outbox_path(state_dir);
    Outbox::open(
        &path,
        &config.sink_names(),
        config.export.outbox.outbox_config(),
    )
    .with_context(|| format!("opening the export outbox `{}`", path.display()))
}

#[derive(Debug, clap::Subcommand)]
pub enum ExportCommand {
    /// Send one test event (an `info` audit event, operation `export-test`) to a configured
    /// sink, directly (not through the outbox) and print what the sink answered. Exit 0 when it
    /// was delivered, 1 otherwise.
    Test {
        /// The sink's `name` in `[[export.sinks]]`.
        #[arg(long, value_name = "NAME")]
        sink: String,
        #[command(flatten)]
        config: ConfigArg,
        /// Give up waiting for an answer after this many milliseconds.
        #[arg(long, value_name = "MS", default_value_t = 30_000)]
        timeout_ms: u64,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Move dead letters (events a sink refused for good) back to pending, so that they are
    /// sent again; print how many. A running daemon picks them up within seconds.
    Replay {
        /// Only this sink's dead letters (default: every sink's).
        #[arg(long, value_name = "NAME")]
        sink: Option<String>,
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        state: StateDirArg,
    },
    /// Per sink: events queued, in flight and dead-lettered now, and delivered so far, from the
    /// outbox in the state directory.
    Status {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        state: StateDirArg,
        /// Print the outbox statistics as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// The daemon's config file, whose `[[export.sinks]]` are used.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
    config: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct StateDirArg {
    /// The daemon's state directory (default: the config's `state_dir`, else
    /// /var/lib/enforcer).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

impl StateDirArg {
    fn resolve(&self, config: &Config) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(|| config.state_dir.clone())
    }
}

fn load_config(arg: &ConfigArg) -> Result<Config, Failure> {
    let config = Config::load(&arg.config).map_err(|e| Failure::new(exit_code::CONFIG, e))?;
    if config.export.sinks.is_empty() {
        return Err(Failure::new(
            exit_code::CONFIG,
            anyhow::anyhow!(
                "config `{}` has no `[[export.sinks]]`: nothing is exported",
                arg.config.display()
            ),
        ));
    }
    Ok(config)
}

fn find_sink<'c>(config: &'c Config, name: &str) -> Result<&'c SinkConfig, Failure> {
    config
        .export
        .sinks
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| {
            Failure::new(
                exit_code::CONFIG,
                anyhow::anyhow!(
                    "no sink named `{name}` in `[[export.sinks]]` (configured: {})",
                    config.sink_names().join(", ")
                ),
            )
        })
}

pub fn run(cmd: ExportCommand) -> Result<u8, Failure> {
    match cmd {
        ExportCommand::Test {
            sink,
            config,
            timeout_ms,
            json,
        } => test(&sink, &config, Duration::from_millis(timeout_ms), json),
        ExportCommand::Replay {
            sink,
            config,
            state,
        } => replay(sink.as_deref(), &config, &state),
        ExportCommand::Status {
            config,
            state,
            json,
        } => status(&config, &state, json),
    }
}

fn test(name: &str, arg: &ConfigArg, timeout: Duration, json: bool) -> Result<u8, Failure> {
    let config = load_config(arg)?;
    let sink_config = find_sink(&config, name)?;
    // Reads the sink's secrets and certificates; errors name where, never what.
    let mut sink = sink_config
        .build()
        .map_err(|e| Failure::new(exit_code::CONFIG, e))?;
    let host = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "localhost".to_owned());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime.block_on(send_test_event(name, sink.sink.as_mut(), &host, timeout));
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("printing the report")?
        );
    } else {
        print!("{}", render_test_report(&report));
    }
    Ok(if report.outcome == "delivered" {
        exit_code::OK
    } else {
        exit_code::ERROR
    })
}

fn render_test_report(r: &TestReport) -> String {
    let mut out = format!(
        "sink:     {} ({})\nevent:    {}\noutcome:  {}\n",
        r.sink, r.target, r.event_id, r.outcome
    );
    if let Some(reason) = &r.reason {
        out.push_str(&format!("reason:   {reason}\n"));
    }
    // After a transport error the sink's "answer" only repeats the reason.
    let answer = match (&r.answer, &r.reason) {
        (Some(answer), Some(reason))
            if !answer.starts_with("HTTP ") && answer.contains(reason.as_str()) =>
        {
            None
        }
        (answer, _) => answer.as_deref(),
    };
    out.push_str(&format!(
        "answer:   {}\n",
        answer.unwrap_or("(none from the destination)")
    ));
    out
}

fn replay(sink: Option<&str>, arg: &ConfigArg, state: &StateDirArg) -> Result<u8, Failure> {
    let config = load_config(arg)?;
    if let Some(name) = sink {
        find_sink(&config, name)?;
    }
    let state_dir = state.resolve(&config);
    let outbox =
        open_outbox(&state_dir, &config).map_err(|e| Failure::new(exit_code::STATE_DIR, e))?;
    let n = outbox
        .replay_dead(sink)
        .context("moving dead letters back to pending")?;
    let whose = match sink {
        Some(name) => format!("sink `{name}`"),
        None => "every sink".to_owned(),
    };
    println!("{n} dead letter(s) of {whose} moved back to pending");
    Ok(exit_code::OK)
}

/// How many dead letters `status` lists, oldest first.
const DEAD_LETTERS_SHOWN: usize = 20;

fn status(arg: &ConfigArg, state: &StateDirArg, json: bool) -> Result<u8, Failure> {
    let config = load_config(arg)?;
    let state_dir = state.resolve(&config);
    let (stats, dead) = if outbox_path(&state_dir).exists() {
        let outbox =
            open_outbox(&state_dir, &config).map_err(|e| Failure::new(exit_code::STATE_DIR, e))?;
        let stats = outbox.stats().context("reading the outbox statistics")?;
        let dead = outbox
            .dead_letters(None, DEAD_LETTERS_SHOWN)
            .context("reading the dead letters")?;
        (stats, dead)
    } else {
        // Nothing was exported yet; say so without creating the outbox.
        eprintln!(
            "no outbox at `{}` yet: nothing was exported",
            outbox_path(&state_dir).display()
        );
        let stats = OutboxStats {
            sinks: config
                .sink_names()
                .into_iter()
                .map(|name| SinkStats {
                    sink: name.to_owned(),
                    ..SinkStats::default()
                })
                .collect(),
            max_bytes: config.export.outbox.max_bytes,
            ..OutboxStats::default()
        };
        (stats, Vec::new())
    };
    if json {
        let value = status_json(&stats, &dead);
        println!(
            "{}",
            serde_json::to_string_pretty(&value).context("printing the statistics")?
        );
    } else {
        print!("{}", render_status(&stats, &dead));
    }
    Ok(exit_code::OK)
}

fn status_json(stats: &OutboxStats, dead: &[DeadLetter]) -> serde_json::Value {
    serde_json::json!({
        "sinks": stats.sinks.iter().map(|s| serde_json::json!({
            "sink": s.sink,
            "queued": s.queued,
            "in_flight": s.in_flight,
            "dead": s.dead,
            "delivered": s.delivered,
            "retried": s.retried,
            "dead_lettered": s.dead_lettered,
            "replayed": s.replayed,
            "evicted": s.evicted,
        })).collect::<Vec<_>>(),
        "events": stats.events,
        "used_bytes": stats.used_bytes,
        "max_bytes": stats.max_bytes,
        "dropped_low": stats.dropped_low,
        "dropped_high": stats.dropped_high,
        "evicted_dead": stats.evicted_dead,
        "evicted_pending": stats.evicted_pending,
        "dead_letters": dead.iter().map(|d| serde_json::json!({
            "sink": d.sink,
            "id": d.id,
            "attempts": d.attempts,
            "reason": d.reason,
            "dead_at_ms": d.dead_at_ms,
        })).collect::<Vec<_>>(),
    })
}

fn render_status(stats: &OutboxStats, dead: &[DeadLetter]) -> String {
    let width = stats
        .sinks
        .iter()
        .map(|s| s.sink.len())
        .max()
        .unwrap_or(0)
        .max(4);
    let mut out = format!(
        "{:<width$}  {:>8}  {:>9}  {:>8}  {:>10}  {:>8}\n",
        "sink", "queued", "in_flight", "dead", "delivered", "retried"
    );
    for s in &stats.sinks {
        out.push_str(&format!(
            "{:<width$}  {:>8}  {:>9}  {:>8}  {:>10}  {:>8}\n",
            s.sink, s.queued, s.in_flight, s.dead, s.delivered, s.retried
        ));
    }
    out.push_str(&format!(
        "outbox: {} event(s), {} of {} bytes used\n",
        stats.events, stats.used_bytes, stats.max_bytes
    ));
    if stats.dropped_low + stats.dropped_high + stats.evicted_dead + stats.evicted_pending > 0 {
        out.push_str(&format!(
            "disk full: dropped {} audit and {} deny/kill event(s); evicted {} dead letter(s) \
             and {} undelivered event(s)\n",
            stats.dropped_low, stats.dropped_high, stats.evicted_dead, stats.evicted_pending
        ));
    }
    if !dead.is_empty() {
        out.push_str(&format!(
            "dead letters (oldest {} at most; `enforcer export replay` sends them again):\n",
            DEAD_LETTERS_SHOWN
        ));
        for d in dead {
            out.push_str(&format!(
                "  {} {} after {} attempt(s): {}\n",
                d.sink,
                d.id,
                d.attempts,
                d.reason.replace('\n', " ")
            ));
        }
    }
    out
}
