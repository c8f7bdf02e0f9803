//! The enforcer's library part: what the `enforcer` binary, its benchmarks
//! and its integration tests share: the local event store, enrichment, and
//! `learn` (allow rules from would-deny events).

pub mod enrich;
pub mod learn;
pub mod store;
