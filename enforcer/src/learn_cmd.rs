//! `enforcer learn --policy NAME`: reads the events a policy would have denied from the
//! event store and prints the allow rules that would have permitted them, as a policy file
//! (docs/hardening.md).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use enforcer::learn::{self, GlobOptions, Learned};
use enforcer::store::{Order, Query, Store};
use siem_export::Timestamp;

use crate::config::DEFAULT_STATE_DIR;
use crate::events_cmd::{open_for_reading, parse_when};
use crate::exit_code::{self, Failure};

#[derive(Args, Debug)]
pub struct LearnArgs {
    /// The policy whose would-deny events to learn from (its name in the events).
    #[arg(long)]
    policy: String,
    /// Only events at or after this time: a duration before now (30m, 2h, 7d), an RFC 3339
    /// time or a date.
    #[arg(long, value_name = "WHEN", value_parser = parse_when)]
    since: Option<Timestamp>,
    /// Only events before this time (same forms as --since).
    #[arg(long, value_name = "WHEN", value_parser = parse_when)]
    until: Option<Timestamp>,
    /// The enforcer's state directory; the store is `<DIR>/events.db`.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// The policy file that defines the policy: the learned rules are merged into it (its
    /// selector, mode, defaults, rules and comments are kept) instead of a header to fill in.
    #[arg(long, value_name = "FILE")]
    from_policy: Option<PathBuf>,
    /// Write the policy file here instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// A directory with at least this many distinct entries seen becomes `dir/**`
    /// (directories at least two levels deep only).
    #[arg(long, value_name = "N", default_value_t = 3,
          value_parser = clap::value_parser!(u16).range(2..))]
    glob_min_entries: u16,
}

/// Events read per query page, so a large store is aggregated in bounded memory.
const PAGE: usize = 5_000;

pub fn run(args: LearnArgs) -> Result<u8, Failure> {
    if let (Some(since), Some(until)) = (args.since, args.until) {
        if since >= until {
            return Err(Failure::new(
                exit_code::USAGE,
                anyhow::anyhow!(
                    "--since ({since}) must be before --until ({until}); swap them or widen the range"
                ),
            ));
        }
    }
    let store = open_for_reading(&args.state_dir)?;
    let known = store.policy_names()?;
    if !known.iter().any(|p| p == &args.policy) {
        let hint = match policy_lang::diagnostic::did_you_mean(
            &args.policy,
            known.iter().map(String::as_str),
        ) {
            Some(m) => format!(" did you mean `{m}`?"),
            None => String::new(),
        };
        let list = if known.is_empty() {
            "none".to_string()
        } else {
            known
                .iter()
                .map(|p| format!("`{p}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(Failure::new(
            exit_code::ERROR,
            anyhow::anyhow!(
                "no events of policy `{}` in `{}`: the policies with events are {list}.{hint}",
                args.policy,
                store.path().display()
            ),
        ));
    }
    let learned = read(&store, &args)?;
    let window = match (args.since, args.until) {
        (None, None) => String::new(),
        (s, u) => format!(
            " between {} and {}",
            s.map_or("the first event".into(), |t| format!("`{t}`")),
            u.map_or("now".into(), |t| format!("`{t}`"))
        ),
    };
    if learned.events == 0 {
        return Err(Failure::new(
            exit_code::NOTHING_LEARNED,
            anyhow::anyhow!(
                "policy `{}` has no audited or denied events{window} in `{}`: nothing to learn; \
                 run the workload with the policy in audit mode first, or widen --since",
                args.policy,
                store.path().display()
            ),
        ));
    }
    let opts = GlobOptions {
        min_entries: usize::from(args.glob_min_entries),
        ..GlobOptions::default()
    };
    let source = format!("`{}`{window}", store.path().display());
    let (text, file_name) = match &args.from_policy {
        None => (
            learn::template_file(&args.policy, &learned, opts, &source),
            "<learned>".to_string(),
        ),
        Some(path) => {
            let name = path.display().to_string();
            let original = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the policy file `{name}`"))?;
            let taken = learn::merge::rule_names(&original, &name, &args.policy)
                .map_err(|e| Failure::new(exit_code::POLICY, e))?;
            let merged = learn::merge::into_policy(&original, &name, &args.policy, |indent| {
                let mut s = format!(
                    "{}# Learned by `enforcer learn` from {} events in {source}:\n",
                    " ".repeat(indent),
                    learned.events
                );
                s.push_str(&learn::render_review(&learned, indent));
                s.push_str(&learn::render_rules(&learned, opts, indent, &taken));
                s
            })
            .map_err(|e| Failure::new(exit_code::POLICY, e))?;
            (merged, name)
        }
    };
    // What we print must load: check it as `enforcer policy check` would.
    if let Err(e) = policy_lang::load_sources([(file_name.clone(), text.clone())]) {
        eprintln!("{}", e.render());
        return Err(Failure::new(
            exit_code::POLICY,
            anyhow::anyhow!(
                "the learned policy does not pass `policy check` (above); with --from-policy, \
                 the file must check on its own (lists from other files are not loaded)"
            ),
        ));
    }
    if learned.has_no_rules() {
        eprintln!(
            "note: none of the {} events of `{}` can become an allow rule (see the comments)",
            learned.events, args.policy
        );
    }
    match &args.output {
        Some(path) => std::fs::write(path, &text)
            .with_context(|| format!("cannot write `{}`", path.display()))?,
        None => {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                Err(e) => return Err(anyhow::Error::new(e).context("writing to stdout").into()),
            }
        }
    }
    Ok(if learned.has_no_rules() {
        exit_code::NOTHING_LEARNED
    } else {
        exit_code::OK
    })
}

/// Aggregates the policy's events page by page, oldest first.
fn read(store: &Store, args: &LearnArgs) -> Result<Learned, Failure> {
    let mut learned = Learned::default();
    let mut since = args.since;
    // Events at the boundary time already read (a page may end inside a run of equal times).
    let mut at_boundary: BTreeSet<String> = BTreeSet::new();
    loop {
        let q = Query {
            since,
            until: args.until,
            verdict: learn::VERDICTS.to_vec(),
            policy: Some(args.policy.clone()),
            limit: Some(PAGE),
            order: Order::OldestFirst,
            ..Query::default()
        };
        let page = store.query(&q)?;
        let full = page.len() >= PAGE;
        let fresh: Vec<_> = page
            .iter()
            .filter(|e| !at_boundary.contains(&e.event.id.to_string()))
            .map(|e| &e.event)
            .collect();
        if full && fresh.is_empty() {
            return Err(Failure::from(anyhow::anyhow!(
                "more than {PAGE} events of policy `{}` share one timestamp; narrow --since/--until",
                args.policy
            )));
        }
        learned.add_events(&args.policy, fresh.iter().copied());
        if !full {
            return Ok(learned);
        }
        let Some(last) = page.last().map(|e| e.event.time) else {
            return Ok(learned);
        };
        if since != Some(last) {
            at_boundary.clear();
        }
        at_boundary.extend(
            page.iter()
                .filter(|e| e.event.time == last)
                .map(|e| e.event.id.to_string()),
        );
        since = Some(last);
    }
}
