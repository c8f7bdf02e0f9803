//! Reading: [`Query`] (filters, newest or oldest first) and [`Tail`]
//! (follow new rows by their insertion sequence number).

use rusqlite::types::{Value, ValueRef};
use siem_export::event::Verdict;
use siem_export::{SecurityEvent, Timestamp};

use super::{At, Store, StoreError};

/// Which end of the time range comes first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Order {
    #[default]
    NewestFirst,
    OldestFirst,
}

/// Filters; every one that is set must hold. Strings match exactly, except
/// `container`, which matches id prefixes (`docker ps` shows 12 characters).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// Events at or after this time.
    pub since: Option<Timestamp>,
    /// Events before this time.
    pub until: Option<Timestamp>,
    /// Any of these verdicts (empty: any verdict).
    pub verdict: Vec<Verdict>,
    pub policy: Option<String>,
    pub rule: Option<String>,
    /// Container id or a prefix of it.
    pub container: Option<String>,
    /// Process id (`tgid`).
    pub pid: Option<u32>,
    /// At most this many events (`None`: all).
    pub limit: Option<usize>,
    pub order: Order,
}

/// One stored event and its insertion sequence number (`rowid`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub seq: i64,
    pub event: SecurityEvent,
}

impl Query {
    /// `WHERE ...` (possibly empty) and its parameters.
    pub(super) fn where_clause(&self, extra: &[(&str, Value)]) -> (String, Vec<Value>) {
        let mut terms: Vec<String> = Vec::new();
        let mut params: Vec<Value> = Vec::new();
        let mut term = |sql: &str, values: Vec<Value>| {
            let mut s = String::new();
            let mut rest = sql;
            for v in values {
                let Some(i) = rest.find('?') else { break };
                params.push(v);
                s.push_str(&rest[..i]);
                s.push_str(&format!("?{}", params.len()));
                rest = &rest[i + 1..];
            }
            s.push_str(rest);
            terms.push(s);
        };
        if let Some(t) = self.since {
            term("time_ns >= ?", vec![Value::Integer(t.unix_nanos())]);
        }
        if let Some(t) = self.until {
            term("time_ns < ?", vec![Value::Integer(t.unix_nanos())]);
        }
        match self.verdict.as_slice() {
            [] => {}
            [v] => term("verdict = ?", vec![Value::Text(v.as_str().into())]),
            vs => {
                let marks = vec!["?"; vs.len()].join(", ");
                let values = vs.iter().map(|v| Value::Text(v.as_str().into())).collect();
                term(&format!("verdict IN ({marks})"), values);
            }
        }
        if let Some(p) = &self.policy {
            term("policy = ?", vec![Value::Text(p.clone())]);
        }
        if let Some(r) = &self.rule {
            term("rule = ?", vec![Value::Text(r.clone())]);
        }
        if let Some(c) = &self.container {
            // A prefix as a range, so the index serves it: every string
            // starting with `c` sorts between `c` and `c` + U+10FFFF.
            term(
                "container_id >= ? AND container_id < ?",
                vec![
                    Value::Text(c.clone()),
                    Value::Text(format!("{c}\u{10FFFF}")),
                ],
            );
        }
        if let Some(pid) = self.pid {
            term("pid = ?", vec![Value::Integer(i64::from(pid))]);
        }
        for (sql, v) in extra {
            term(sql, vec![v.clone()]);
        }
        if terms.is_empty() {
            (String::new(), params)
        } else {
            (format!("WHERE {}", terms.join(" AND ")), params)
        }
    }
}

fn limit_sql(limit: Option<usize>) -> String {
    match limit {
        Some(n) => format!("LIMIT {n}"),
        None => String::new(),
    }
}

impl Store {
    /// The events matching `query`, ordered by event time as `query.order`
    /// says (ties in insertion order).
    pub fn query(&self, query: &Query) -> Result<Vec<StoredEvent>, StoreError> {
        let (filter, params) = query.where_clause(&[]);
        let dir = match query.order {
            Order::NewestFirst => "DESC",
            Order::OldestFirst => "ASC",
        };
        let sql = format!(
            "SELECT seq, event FROM events {filter} ORDER BY time_ns {dir}, seq {dir} {}",
            limit_sql(query.limit)
        );
        self.select(&sql, params)
    }

    /// The distinct policy names events were stored with, sorted (read from the
    /// `(policy, time_ns)` index).
    pub fn policy_names(&self) -> Result<Vec<String>, StoreError> {
        let p = &self.path;
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT DISTINCT policy FROM events WHERE policy IS NOT NULL ORDER BY policy",
            )
            .at(p)?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0)).at(p)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row.at(p)?);
        }
        Ok(out)
    }

    /// The highest sequence number stored (0 when empty).
    pub fn last_seq(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("SELECT coalesce(max(seq), 0) FROM events", [], |r| r.get(0))
            .at(&self.path)
    }

    fn select(&self, sql: &str, params: Vec<Value>) -> Result<Vec<StoredEvent>, StoreError> {
        let p = &self.path;
        let mut stmt = self.conn.prepare_cached(sql).at(p)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(params)).at(p)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().at(p)? {
            let seq: i64 = row.get(0).at(p)?;
            let text = match row.get_ref(1).at(p)? {
                ValueRef::Text(t) | ValueRef::Blob(t) => t,
                _ => &[],
            };
            let event =
                SecurityEvent::from_json(text).map_err(|source| StoreError::CorruptRow {
                    path: p.clone(),
                    seq,
                    source,
                })?;
            out.push(StoredEvent { seq, event });
        }
        Ok(out)
    }
}

/// Follows the store as it grows: [`Tail::start`] returns the newest
/// matching events, then [`Tail::poll`] the matching events stored since the
/// previous call, in the order they were stored. Works while another
/// process writes (WAL readers see each committed batch whole).
#[derive(Debug, Clone)]
pub struct Tail {
    query: Query,
    after: i64,
}

impl Tail {
    /// The last `backlog` matching events in storage order, and a tail
    /// positioned after everything stored so far. `query.limit` and
    /// `query.order` are ignored.
    pub fn start(
        store: &Store,
        query: Query,
        backlog: usize,
    ) -> Result<(Tail, Vec<StoredEvent>), StoreError> {
        let last = store.last_seq()?;
        let mut events = if backlog == 0 {
            Vec::new()
        } else {
            let (filter, params) = query.where_clause(&[("seq <= ?", Value::Integer(last))]);
            store.select(
                &format!(
                    "SELECT seq, event FROM events {filter} ORDER BY seq DESC LIMIT {backlog}"
                ),
                params,
            )?
        };
        events.reverse();
        Ok((Tail { query, after: last }, events))
    }

    /// Matching events stored since the last call (at most `max`; call
    /// again for the rest), oldest first.
    pub fn poll(&mut self, store: &Store, max: usize) -> Result<Vec<StoredEvent>, StoreError> {
        let last = store.last_seq()?;
        if last <= self.after {
            return Ok(Vec::new());
        }
        let (filter, params) = self.query.where_clause(&[
            ("seq > ?", Value::Integer(self.after)),
            ("seq <= ?", Value::Integer(last)),
        ]);
        let events = store.select(
            // NOT INDEXED: walk the new rowid range only; an index on a
            // filter column could mean scanning all its history each poll.
            &format!("SELECT seq, event FROM events NOT INDEXED {filter} ORDER BY seq LIMIT {max}"),
            params,
        )?;
        // Skip past rows that did not match too, unless `max` cut us short.
        self.after = match events.last() {
            Some(e) if events.len() >= max => e.seq,
            _ => last,
        };
        Ok(events)
    }

    /// The sequence number of the last row seen.
    pub fn position(&self) -> i64 {
        self.after
    }
}
