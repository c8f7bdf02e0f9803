//! The enforcer's library part: what the `enforcer` binary, its benchmarks
//! and its integration tests share: the local event store, enrichment, the
//! evaluation of `alert` rules, and `learn` (allow rules from would-deny events).

pub mod alert_rules;
pub mod enrich;
pub mod learn;
pub mod store;
