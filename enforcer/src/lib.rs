//! The enforcer's library part: what the `enforcer` binary, its benchmarks
//! and its integration tests share: the local event store, enrichment, the
//! evaluation of `alert` rules, `learn` (allow rules from would-deny events), and the
//! kubelet's pod log directory (pod namespaces and names).

pub mod alert_rules;
pub mod enrich;
pub mod learn;
pub mod pod_logs;
pub mod store;
