//! Security event export: the native event schema ([`event`]), the severity
//! table every output format shares ([`severity`]), encoders ([`encode`]),
//! destinations ([`sink`]) and per-sink filters ([`filter`]).
//!
//! The pieces compose as: the enforcer builds a [`SecurityEvent`] per kernel
//! verdict; each configured sink keeps the events its [`EventFilter`]
//! passes, and its [`Sink`] encodes them with an [`Encoder`] and reports a
//! [`Delivery`] per event, which the outbox turns into delete / retry /
//! dead-letter. The native JSON format is documented in the crate README.

pub mod config;
pub mod dispatcher;
pub mod encode;
pub mod event;
pub mod filter;
pub mod follow;
pub mod mitre;
pub mod net;
pub mod outbox;
pub mod retry;
pub mod secret;
pub mod severity;
pub mod sink;

pub use encode::cef::Cef;
pub use encode::ecs::Ecs;
pub use encode::ocsf::Ocsf;
pub use encode::syslog::Rfc5424;
pub use encode::{EncodeError, Encoder, Framing, NativeJson, Product};
pub use event::{DecodeError, EventId, SecurityEvent, Timestamp};
pub use filter::EventFilter;
pub use severity::Severity;
pub use sink::{BatchReport, Delivery, FileSink, FileSinkConfig, Sink, SinkError};

#[cfg(test)]
mod readme_tests;
