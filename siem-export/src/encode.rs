//! Turning events into bytes: the [`Encoder`] trait, batch [`Framing`], and
//! the encoders themselves: native JSON, [`ecs::Ecs`], [`ocsf::Ocsf`],
//! [`cef::Cef`] and [`syslog::Rfc5424`]. The crate README documents every
//! format and its field mapping.
//!
//! Encoders write into a caller-owned `Vec<u8>` so a sink can reuse one
//! buffer for every batch instead of allocating per event.

pub mod cef;
pub mod ecs;
mod native_json;
pub mod ocsf;
pub mod syslog;
mod tree;

use std::ops::Range;

pub use native_json::NativeJson;

use crate::event::{ByteText, EventId, SecurityEvent, Verdict};

/// Who produced the events: CEF's header, OCSF's `metadata.product`, ECS's
/// `observer.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub vendor: String,
    pub name: String,
    pub version: String,
}

impl Default for Product {
    /// `enforcer` / `enforcer` / this crate's version.
    fn default() -> Self {
        Self {
            vendor: "enforcer".into(),
            name: "enforcer".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// The last path component (`sh` for `/bin/sh`); empty for `/`.
/// Writes one JSON document for `ev`; on failure nothing of it is left in `out`.
pub(crate) fn write_json(
    encoder: &'static str,
    ev: &SecurityEvent,
    doc: &impl serde::Serialize,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let start = out.len();
    serde_json::to_writer(&mut *out, doc).map_err(|source| {
        out.truncate(start);
        EncodeError::Json {
            encoder,
            id: ev.id,
            source,
        }
    })
}

pub(crate) fn basename(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

/// Everything before the last `/` (`/` for `/x`); `None` without a `/`.
pub(crate) fn dirname(path: &[u8]) -> Option<&[u8]> {
    match path.iter().rposition(|&b| b == b'/') {
        Some(0) => Some(b"/"),
        Some(i) => Some(&path[..i]),
        None => None,
    }
}

/// Bytes in the native schema's reversible text form (`\xNN` for bytes that
/// are not UTF-8, `\\` for a backslash), which every format uses.
pub(crate) fn text(bytes: &[u8]) -> String {
    ByteText::from(bytes).escaped().into_owned()
}

/// `argv` joined with single spaces, each argument in [`text`] form. For
/// display and search only: arguments containing spaces make it ambiguous.
pub(crate) fn command_line(argv: &[ByteText]) -> String {
    let parts: Vec<String> = argv.iter().map(|a| a.escaped().into_owned()).collect();
    parts.join(" ")
}

/// The operation did not happen (the hook returned an error, or the process
/// was killed).
pub(crate) fn blocked(v: Verdict) -> bool {
    matches!(v, Verdict::Denied | Verdict::Killed)
}

/// File type from the `S_IFMT` bits of a mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    Regular,
    Directory,
    CharDevice,
    BlockDevice,
    Socket,
    Fifo,
    Symlink,
}

impl FileKind {
    pub(crate) fn from_mode(mode: u32) -> Option<Self> {
        match mode & 0o170_000 {
            0o100_000 => Some(FileKind::Regular),
            0o040_000 => Some(FileKind::Directory),
            0o020_000 => Some(FileKind::CharDevice),
            0o060_000 => Some(FileKind::BlockDevice),
            0o140_000 => Some(FileKind::Socket),
            0o010_000 => Some(FileKind::Fifo),
            0o120_000 => Some(FileKind::Symlink),
            _ => None,
        }
    }
}

/// What one encoded record is, which decides the framings it can travel in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// A single JSON object (native, ECS, OCSF).
    JsonObject,
    /// A line of text (CEF, RFC 5424 syslog).
    Text,
}

/// How records are put together into one batch payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Each record followed by `\n` (JSON lines, Splunk HEC raw, files).
    /// Records must not contain `\n`.
    Lines,
    /// `[record,record]`, for HTTP bodies that must be one JSON document.
    /// JSON-object records only.
    JsonArray,
    /// RFC 6587 octet counting, `LEN SP record`, for syslog over TCP/TLS:
    /// records may contain anything, including newlines.
    OctetCounting,
}

impl Framing {
    pub fn accepts(self, kind: RecordKind) -> bool {
        !(self == Framing::JsonArray && kind != RecordKind::JsonObject)
    }
}

/// Why one event could not be encoded. Encoding is deterministic, so every
/// variant is permanent for that event: retrying cannot help.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("{encoder}: serializing event {id} failed: {source}")]
    Json {
        encoder: &'static str,
        id: EventId,
        #[source]
        source: serde_json::Error,
    },
    #[error("{encoder}: event {id} cannot be represented: {reason}")]
    Unrepresentable {
        encoder: &'static str,
        id: EventId,
        reason: String,
    },
    #[error("{encoder}: event {id} encodes to a record containing a newline, which line framing cannot carry")]
    NewlineInRecord { encoder: &'static str, id: EventId },
    #[error("{encoder}: {framing:?} framing cannot carry {kind:?} records")]
    UnsupportedFraming {
        encoder: &'static str,
        framing: Framing,
        kind: RecordKind,
    },
}

/// The outcome for each event of a batch, in input order. `Ok` holds the
/// byte range of the record itself (without framing) in the output buffer.
pub type RecordResults = Vec<Result<Range<usize>, EncodeError>>;

/// One output format.
///
/// Implementations must append exactly one record to `out` on success, and
/// must not leave partial output behind on failure (callers rely on that to
/// keep batches well-formed; [`Encoder::encode_batch`] additionally truncates
/// defensively).
pub trait Encoder: Send + Sync {
    /// Stable name for configuration and logs, e.g. `native-json`.
    fn name(&self) -> &'static str;

    fn record_kind(&self) -> RecordKind;

    /// Appends one encoded event to `out`.
    fn encode(&self, ev: &SecurityEvent, out: &mut Vec<u8>) -> Result<(), EncodeError>;

    /// The MIME type of a batch in `framing`, for HTTP sinks.
    fn content_type(&self, framing: Framing) -> &'static str {
        match (self.record_kind(), framing) {
            (RecordKind::JsonObject, Framing::Lines) => "application/x-ndjson",
            (RecordKind::JsonObject, Framing::JsonArray) => "application/json",
            _ => "text/plain; charset=utf-8",
        }
    }

    /// Appends `events` to `out` in `framing`. An event that fails to encode
    /// is left out of the payload (and reported at its index), so one bad
    /// event never holds back the rest of the batch.
    fn encode_batch(
        &self,
        events: &[SecurityEvent],
        framing: Framing,
        out: &mut Vec<u8>,
    ) -> RecordResults {
        let kind = self.record_kind();
        if !framing.accepts(kind) {
            return events
                .iter()
                .map(|_| {
                    Err(EncodeError::UnsupportedFraming {
                        encoder: self.name(),
                        framing,
                        kind,
                    })
                })
                .collect();
        }
        let mut results = Vec::with_capacity(events.len());
        if framing == Framing::JsonArray {
            out.push(b'[');
        }
        let mut first = true;
        for ev in events {
            let mark = out.len();
            if framing == Framing::JsonArray && !first {
                out.push(b',');
            }
            let start = out.len();
            if let Err(err) = self.encode(ev, out) {
                out.truncate(mark);
                results.push(Err(err));
                continue;
            }
            let end = out.len();
            match framing {
                Framing::Lines => {
                    if out[start..end].contains(&b'\n') {
                        out.truncate(mark);
                        results.push(Err(EncodeError::NewlineInRecord {
                            encoder: self.name(),
                            id: ev.id,
                        }));
                        continue;
                    }
                    out.push(b'\n');
                    results.push(Ok(start..end));
                }
                Framing::JsonArray => results.push(Ok(start..end)),
                Framing::OctetCounting => {
                    // The length goes first but is only known now; shifting
                    // just this record is cheaper than encoding it twice.
                    let prefix = format!("{} ", end - start);
                    out.splice(start..start, prefix.bytes());
                    results.push(Ok(start + prefix.len()..end + prefix.len()));
                }
            }
            first = false;
        }
        if framing == Framing::JsonArray {
            out.push(b']');
        }
        results
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::tests::{full_event, minimal_event};

    /// Fails on events whose operation is `fail`, and writes a newline for
    /// operation `newline`: exercises the batch bookkeeping.
    struct Picky(RecordKind);

    impl Encoder for Picky {
        fn name(&self) -> &'static str {
            "picky"
        }
        fn record_kind(&self) -> RecordKind {
            self.0
        }
        fn encode(&self, ev: &SecurityEvent, out: &mut Vec<u8>) -> Result<(), EncodeError> {
            match ev.operation.as_str() {
                "fail" => {
                    out.extend_from_slice(b"partial garbage");
                    Err(EncodeError::Unrepresentable {
                        encoder: "picky",
                        id: ev.id,
                        reason: "asked to fail".into(),
                    })
                }
                "newline" => {
                    out.extend_from_slice(b"\"a\nb\"");
                    Ok(())
                }
                op => {
                    out.extend_from_slice(format!("\"{op}\"").as_bytes());
                    Ok(())
                }
            }
        }
    }

    fn ops(ops: &[&str]) -> Vec<SecurityEvent> {
        ops.iter()
            .map(|op| {
                let mut ev = minimal_event();
                ev.operation = (*op).to_owned();
                ev
            })
            .collect()
    }

    #[test]
    fn lines_framing_skips_failures_and_newlines() {
        let evs = ops(&["a", "fail", "newline", "b"]);
        let mut out = b"prefix:".to_vec();
        let res = Picky(RecordKind::JsonObject).encode_batch(&evs, Framing::Lines, &mut out);
        assert_eq!(out, b"prefix:\"a\"\n\"b\"\n");
        assert_eq!(res[0].as_ref().unwrap(), &(7..10));
        assert!(matches!(res[1], Err(EncodeError::Unrepresentable { .. })));
        assert!(matches!(res[2], Err(EncodeError::NewlineInRecord { .. })));
        assert_eq!(&out[res[3].as_ref().unwrap().clone()], b"\"b\"");
    }

    #[test]
    fn json_array_framing() {
        let enc = Picky(RecordKind::JsonObject);
        for (input, want) in [
            (&["fail", "a", "fail", "b"][..], &b"[\"a\",\"b\"]"[..]),
            (&[][..], b"[]"),
            (&["fail"][..], b"[]"),
            (&["a", "newline"][..], b"[\"a\",\"a\nb\"]"),
        ] {
            let mut out = Vec::new();
            enc.encode_batch(&ops(input), Framing::JsonArray, &mut out);
            assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(want));
        }
        let res =
            Picky(RecordKind::Text).encode_batch(&ops(&["a"]), Framing::JsonArray, &mut Vec::new());
        assert!(matches!(
            res[0],
            Err(EncodeError::UnsupportedFraming { .. })
        ));
    }

    #[test]
    fn octet_counting_framing() {
        let evs = ops(&["abc", "fail", "newline"]);
        let mut out = Vec::new();
        let res = Picky(RecordKind::Text).encode_batch(&evs, Framing::OctetCounting, &mut out);
        assert_eq!(out, b"5 \"abc\"5 \"a\nb\"");
        assert_eq!(&out[res[0].as_ref().unwrap().clone()], b"\"abc\"");
        assert_eq!(&out[res[2].as_ref().unwrap().clone()], b"\"a\nb\"");
    }

    #[test]
    fn native_json_batches_parse_back() {
        let evs = vec![full_event(), minimal_event()];
        let mut out = Vec::new();
        let res = NativeJson.encode_batch(&evs, Framing::Lines, &mut out);
        assert!(res.iter().all(Result::is_ok));
        let lines: Vec<&[u8]> = out
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(lines.len(), 2);
        for (line, ev) in lines.iter().zip(&evs) {
            assert_eq!(&SecurityEvent::from_json(line).unwrap(), ev);
        }

        let mut out = Vec::new();
        NativeJson.encode_batch(&evs, Framing::JsonArray, &mut out);
        let back: Vec<SecurityEvent> = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, evs);
        assert_eq!(
            NativeJson.content_type(Framing::Lines),
            "application/x-ndjson"
        );
    }
}
