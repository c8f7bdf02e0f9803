//! `enforcer events query|tail|import`: read the local event store
//! (`<state-dir>/events.db`) and load exported JSON lines into it. See
//! docs/event-store.md.

use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use enforcer::store::{self, Order, Query, Store, StoreError, StoredEvent, Tail};
use siem_export::event::{Target, Verdict};
use siem_export::{SecurityEvent, Timestamp};

use crate::config::DEFAULT_STATE_DIR;
use crate::exit_code::{self, Failure};

#[derive(Subcommand, Debug)]
pub enum EventsCommand {
    /// Print stored events, newest first.
    Query(QueryArgs),
    /// Print the latest stored events, then follow new ones as they are
    /// stored (also while the daemon writes) until interrupted.
    Tail(TailArgs),
    /// Import native JSON-lines events (such as `<state-dir>/events.jsonl`
    /// or an export) into the store. Each line is validated; bad lines are
    /// reported with their line number and skipped. Events already stored
    /// (same id) are skipped, so importing twice is harmless.
    Import(ImportArgs),
}

#[derive(Args, Debug, Clone)]
pub struct Filters {
    /// Only events at or after this time: RFC 3339 (2025-05-14T09:26:53Z),
    /// a date (2025-05-14, UTC), or a duration before now (30s, 10m, 2h, 7d, 2w).
    #[arg(long, value_name = "WHEN", value_parser = parse_when)]
    since: Option<Timestamp>,
    /// Only events before this time (same forms as --since).
    #[arg(long, value_name = "WHEN", value_parser = parse_when)]
    until: Option<Timestamp>,
    /// Only these verdicts: allowed, denied, audited, killed, alerted
    /// (comma-separated or repeated; deny, kill, audit, allow, alert work too).
    #[arg(long, value_name = "VERDICT", value_delimiter = ',', value_parser = parse_verdict)]
    verdict: Vec<Verdict>,
    /// Only events of this policy (exact name).
    #[arg(long)]
    policy: Option<String>,
    /// Only events of this rule (exact name, without the policy).
    #[arg(long)]
    rule: Option<String>,
    /// Only events of this container (id or a prefix of it).
    #[arg(long, value_name = "ID")]
    container: Option<String>,
    /// Only events of this process id (the tgid, what `ps` shows).
    #[arg(long)]
    pid: Option<u32>,
}

#[derive(Args, Debug)]
pub struct Output {
    /// `table`: aligned columns for people; `json`: native events (one JSON
    /// array for query, one object per line for tail).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// The enforcer's state directory; the store is `<DIR>/events.db`.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Args, Debug)]
pub struct QueryArgs {
    #[command(flatten)]
    filters: Filters,
    /// Print at most this many events (0: all).
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Oldest first instead of newest first.
    #[arg(long)]
    reverse: bool,
    #[command(flatten)]
    output: Output,
}

#[derive(Args, Debug)]
pub struct TailArgs {
    #[command(flatten)]
    filters: Filters,
    /// Print this many stored events before following (0: only new ones).
    #[arg(long, default_value_t = 10)]
    limit: usize,
    /// How often to look for new events (e.g. 500ms, 2s).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_interval)]
    interval: Duration,
    #[command(flatten)]
    output: Output,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// JSON-lines files of native events (`-` for stdin).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// The enforcer's state directory; the store is `<DIR>/events.db`
    /// (created, with the directory, if missing).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
}

pub fn run(cmd: EventsCommand) -> Result<u8, Failure> {
    match cmd {
        EventsCommand::Query(args) => query(args),
        EventsCommand::Tail(args) => tail(args),
        EventsCommand::Import(args) => import(args),
    }
}

fn to_query(f: &Filters) -> Result<Query, Failure> {
    if let (Some(since), Some(until)) = (f.since, f.until) {
        if since >= until {
            return Err(Failure::new(
                exit_code::USAGE,
                anyhow::anyhow!(
                    "--since ({since}) must be before --until ({until}); swap them or widen the range"
                ),
            ));
        }
    }
    Ok(Query {
        since: f.since,
        until: f.until,
        verdict: f.verdict.clone(),
        policy: f.policy.clone(),
        rule: f.rule.clone(),
        container: f.container.clone(),
        pid: f.pid,
        limit: None,
        order: Order::NewestFirst,
    })
}

pub(crate) fn open_for_reading(state_dir: &Path) -> Result<Store, Failure> {
    let path = store::path_in(state_dir);
    Store::open_read_only(&path).map_err(|e| match e {
        StoreError::Missing { .. } => Failure::new(
            exit_code::ERROR,
            anyhow::anyhow!(
                "no event store at `{}`: the daemon creates it when it starts; \
                 pass --state-dir DIR to read a store kept elsewhere",
                path.display()
            ),
        ),
        other => Failure::from(other),
    })
}

fn query(args: QueryArgs) -> Result<u8, Failure> {
    let mut q = to_query(&args.filters)?;
    q.limit = (args.limit > 0).then_some(args.limit);
    if args.reverse {
        q.order = Order::OldestFirst;
    }
    let store = open_for_reading(&args.output.state_dir)?;
    let events = store.query(&q)?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let written = match args.output.format {
        Format::Json => write_json_array(&mut out, &events),
        Format::Table => {
            let rows: Vec<[String; 8]> = events.iter().map(|e| row(&e.event)).collect();
            let widths = widths(&rows);
            write_row(&mut out, &header(), &widths).and_then(|()| {
                rows.iter()
                    .try_for_each(|r| write_row(&mut out, r, &widths))
            })
        }
    };
    finish_output(written.and_then(|()| out.flush()))
}

fn tail(args: TailArgs) -> Result<u8, Failure> {
    let q = to_query(&args.filters)?;
    let mut store = open_for_reading(&args.output.state_dir)?;
    let (mut tail, backlog) = Tail::start(&store, q, args.limit)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let widths = TAIL_WIDTHS;
    let print = |out: &mut dyn Write, events: &[StoredEvent]| -> std::io::Result<()> {
        for e in events {
            match args.output.format {
                Format::Json => {
                    serde_json::to_writer(&mut *out, &e.event)?;
                    out.write_all(b"\n")?;
                }
                Format::Table => write_row(out, &row(&e.event), &widths)?,
            }
        }
        out.flush()
    };
    let mut result = (|| {
        if args.output.format == Format::Table {
            write_row(&mut out, &header(), &widths)?;
        }
        print(&mut out, &backlog)
    })();
    while result.is_ok() {
        std::thread::sleep(args.interval);
        // A stopped store was opened as a snapshot: go live once the daemon
        // starts writing to it.
        store.refresh()?;
        loop {
            let events = tail.poll(&store, 1_000)?;
            if events.is_empty() {
                break;
            }
            result = print(&mut out, &events);
            if result.is_err() {
                break;
            }
        }
    }
    finish_output(result)
}

/// A closed pipe (`| head`) ends the output quietly; other write errors
/// are errors.
fn finish_output(result: std::io::Result<()>) -> Result<u8, Failure> {
    match result {
        Ok(()) => Ok(exit_code::OK),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(exit_code::OK),
        Err(e) => Err(Failure::from(
            anyhow::Error::new(e).context("writing to stdout"),
        )),
    }
}

fn write_json_array(out: &mut impl Write, events: &[StoredEvent]) -> std::io::Result<()> {
    out.write_all(b"[")?;
    for (i, e) in events.iter().enumerate() {
        out.write_all(if i == 0 { b"\n" } else { b",\n" })?;
        serde_json::to_writer(&mut *out, &e.event)?;
    }
    out.write_all(b"\n]\n")
}

// ---- table ----

const COLUMNS: [&str; 8] = [
    "TIME",
    "VERDICT",
    "CLASS/OP",
    "POLICY/RULE",
    "PID",
    "COMM",
    "CONTAINER",
    "TARGET",
];

/// Column widths for tail, which cannot measure rows it has not seen.
const TAIL_WIDTHS: [usize; 8] = [24, 8, 12, 28, 7, 15, 12, 0];

fn header() -> [String; 8] {
    COLUMNS.map(String::from)
}

/// One table row. Every field an attacker controls (comm, paths, names) is
/// passed through [`printable`], so it cannot move the cursor or recolour
/// the terminal.
fn row(ev: &SecurityEvent) -> [String; 8] {
    let dash = || "-".to_string();
    let policy_rule = match (&ev.policy, &ev.rule) {
        (Some(p), Some(r)) => format!("{p}/{r}"),
        (Some(p), None) => p.clone(),
        (None, Some(r)) => r.clone(),
        (None, None) => dash(),
    };
    let process = ev.process.as_ref();
    [
        short_time(ev.time),
        ev.verdict.as_str().to_string(),
        format!("{}/{}", ev.class, printable(&ev.operation)),
        printable(&policy_rule),
        process.map_or_else(dash, |p| p.tgid.to_string()),
        process.map_or_else(dash, |p| printable(&p.comm.escaped())),
        ev.container.as_ref().map_or_else(dash, |c| {
            printable(&c.id.chars().take(12).collect::<String>())
        }),
        printable(&target(ev)),
    ]
}

/// UTC with millisecond precision: `2025-05-14T09:26:53.589Z`.
fn short_time(t: Timestamp) -> String {
    let full = t.to_rfc3339(); // always nine fractional digits
    match full.len().checked_sub(7) {
        Some(cut) if full.is_char_boundary(cut) => format!("{}Z", &full[..cut]),
        _ => full,
    }
}

fn target(ev: &SecurityEvent) -> String {
    match &ev.target {
        None => "-".into(),
        Some(Target::File(f)) => f.path.escaped().into_owned(),
        Some(Target::Exec(e)) => e.path.escaped().into_owned(),
        Some(Target::Kernel(k)) => match &k.detail {
            Some(d) => format!("{} {d}", k.operation),
            None => k.operation.clone(),
        },
        Some(Target::Network(n)) => {
            let proto = n.protocol.map_or(n.family.as_str(), |p| p.as_str());
            match (&n.unix_path, n.dst_ip, n.dst_port) {
                (Some(path), _, _) => format!("unix {}", path.escaped()),
                (None, Some(ip), Some(port)) if ip.is_ipv6() => format!("{proto} [{ip}]:{port}"),
                (None, Some(ip), Some(port)) => format!("{proto} {ip}:{port}"),
                (None, Some(ip), None) => format!("{proto} {ip}"),
                (None, None, Some(port)) => format!("{proto} :{port}"),
                (None, None, None) => proto.to_string(),
            }
        }
    }
}

/// Control characters as escapes (`\n`, `\u{1b}`).
fn printable(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().collect()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn widths(rows: &[[String; 8]]) -> [usize; 8] {
    let mut w = COLUMNS.map(str::len);
    for r in rows {
        for (wi, cell) in w.iter_mut().zip(r) {
            *wi = (*wi).max(cell.chars().count());
        }
    }
    w
}

fn write_row(out: &mut dyn Write, cells: &[String; 8], widths: &[usize; 8]) -> std::io::Result<()> {
    let mut line = String::new();
    for (i, (cell, &w)) in cells.iter().zip(widths).enumerate() {
        if i + 1 == cells.len() {
            line.push_str(cell);
        } else {
            let pad = w.saturating_sub(cell.chars().count());
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', pad + 2));
        }
    }
    writeln!(out, "{}", line.trim_end())
}

// ---- import ----

/// Events per transaction while importing.
const IMPORT_BATCH: usize = 1_000;
/// Bad lines reported one by one; the rest are only counted.
const MAX_REPORTED: usize = 50;

fn import(args: ImportArgs) -> Result<u8, Failure> {
    let dir = &args.state_dir;
    if !dir.is_dir() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create the state directory `{}`", dir.display()))
            .map_err(|e| Failure::new(exit_code::STATE_DIR, e))?;
    }
    let path = store::path_in(dir);
    let mut store = Store::open(&path)?;
    let (mut inserted, mut duplicates, mut bad) = (0usize, 0usize, 0usize);
    let mut batch = Vec::with_capacity(IMPORT_BATCH);
    for file in &args.files {
        let name = file.display().to_string();
        let reader: Box<dyn BufRead> = if name == "-" {
            Box::new(std::io::stdin().lock())
        } else {
            let f = std::fs::File::open(file).with_context(|| format!("cannot read `{name}`"))?;
            Box::new(std::io::BufReader::new(f))
        };
        let mut flush = |batch: &mut Vec<SecurityEvent>| -> Result<(), StoreError> {
            let o = store.insert_batch(batch)?;
            inserted += o.inserted;
            duplicates += o.duplicates;
            batch.clear();
            Ok(())
        };
        for (i, line) in reader.split(b'\n').enumerate() {
            let line = line.with_context(|| format!("cannot read `{name}`"))?;
            let text = line.strip_suffix(b"\r").unwrap_or(&line);
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match SecurityEvent::from_json(text) {
                Ok(ev) => {
                    batch.push(ev);
                    if batch.len() >= IMPORT_BATCH {
                        flush(&mut batch)?;
                    }
                }
                Err(e) => {
                    bad += 1;
                    if bad <= MAX_REPORTED {
                        eprintln!("{name}:{}: {e}", i + 1);
                    }
                }
            }
        }
        flush(&mut batch)?;
    }
    if bad > MAX_REPORTED {
        eprintln!("... {} more bad lines not shown", bad - MAX_REPORTED);
    }
    println!(
        "imported {inserted} events into {} ({duplicates} already stored, {bad} bad lines skipped)",
        path.display()
    );
    if bad > 0 {
        return Err(Failure::new(
            exit_code::ERROR,
            anyhow::anyhow!(
                "{bad} lines were not valid events (listed above); the others were imported"
            ),
        ));
    }
    Ok(exit_code::OK)
}

// ---- flag values ----

const WHEN_FORMS: &str =
    "expected an RFC 3339 time (2025-05-14T09:26:53Z), a date (2025-05-14, UTC) \
     or a duration before now (30s, 10m, 2h, 7d, 2w)";

pub(crate) fn parse_when(s: &str) -> Result<Timestamp, String> {
    if let Ok(d) = parse_duration(s) {
        let ns = i64::try_from(d.as_nanos()).map_err(|_| format!("`{s}` is too long ago"))?;
        return Ok(Timestamp::from_unix_nanos(
            Timestamp::now().unix_nanos().saturating_sub(ns),
        ));
    }
    let is_date = s.len() == 10
        && s.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    let full = if is_date {
        format!("{s}T00:00:00Z")
    } else {
        s.to_string()
    };
    Timestamp::parse_rfc3339(&full).map_err(|e| match e {
        siem_export::event::TimestampError::OutOfRange { .. } => e.to_string(),
        siem_export::event::TimestampError::Syntax { .. } => WHEN_FORMS.to_string(),
    })
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    match parse_duration(s) {
        Ok(d) if d >= Duration::from_millis(10) => Ok(d),
        Ok(_) => Err("the interval must be at least 10ms".into()),
        Err(()) => Err("expected a duration such as 500ms, 1s or 1m".into()),
    }
}

/// `500ms`, `30s`, `10m`, `2h`, `7d`, `2w`, or a sum such as `1h30m`.
fn parse_duration(s: &str) -> Result<Duration, ()> {
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| ())?;
        rest = &rest[digits..];
        let unit = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let ms_per: u64 = match &rest[..unit] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            _ => return Err(()),
        };
        rest = &rest[unit..];
        total += Duration::from_millis(n.checked_mul(ms_per).ok_or(())?);
    }
    Ok(total)
}

fn parse_verdict(s: &str) -> Result<Verdict, String> {
    let word = match s {
        "allow" => "allowed",
        "deny" => "denied",
        "audit" => "audited",
        "kill" => "killed",
        "alert" => "alerted",
        other => other,
    };
    word.parse()
        .map_err(|e: siem_export::event::UnknownName| e.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failure

    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        for bad in ["", "m", "10", "10x", "-1h", "1.5h", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times() {
        let t = parse_when("2025-05-14T09:26:53Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2025-05-14T09:26:53.000000000Z");
        let d = parse_when("2025-05-14").unwrap();
        assert_eq!(d.to_rfc3339(), "2025-05-14T00:00:00.000000000Z");
        let ago = parse_when("2h").unwrap();
        let expect = Timestamp::now().unix_nanos() - 7_200 * 1_000_000_000;
        assert!((ago.unix_nanos() - expect).abs() < 5_000_000_000);
        let err = parse_when("yesterday").unwrap_err();
        assert!(err.contains("RFC 3339") && err.contains("10m"), "{err}");
    }

    #[test]
    fn verdict_words() {
        assert_eq!(parse_verdict("deny"), Ok(Verdict::Denied));
        assert_eq!(parse_verdict("killed"), Ok(Verdict::Killed));
        assert!(parse_verdict("blocked").unwrap_err().contains("denied"));
    }

    #[test]
    fn table_cells_escape_control_characters() {
        assert_eq!(printable("a\u{1b}[31mb\n"), "a\\u{1b}[31mb\\n");
        assert_eq!(
            short_time(Timestamp::from_unix_nanos(1_500_000_000)),
            "1970-01-01T00:00:01.500Z"
        );
    }
}
