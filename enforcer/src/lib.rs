//! The enforcer's library part: what the `enforcer` binary, its benchmarks
//! and its integration tests share. Today that is the local event store.

pub mod enrich;
pub mod learn;
pub mod store;
