//! The native format: [`SecurityEvent`] serialized as compact JSON, exactly
//! as documented in the crate README.

use super::{EncodeError, Encoder, RecordKind};
use crate::event::SecurityEvent;

/// Compact JSON, one object per event. Compact output never contains a raw
/// newline (serde_json escapes them inside strings), so it is line-safe.
#[derive(Debug, Clone, Copy, Default)]
pub struct NativeJson;

impl Encoder for NativeJson {
    fn name(&self) -> &'static str {
        "native-json"
    }

    fn record_kind(&self) -> RecordKind {
        RecordKind::JsonObject
    }

    fn encode(&self, ev: &SecurityEvent, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        serde_json::to_writer(&mut *out, ev).map_err(|source| {
            out.truncate(start);
            EncodeError::Json {
                encoder: self.name(),
                id: ev.id,
                source,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::tests::full_event;

    #[test]
    fn appends_one_compact_object() {
        let ev = full_event();
        let mut out = b"keep".to_vec();
        NativeJson.encode(&ev, &mut out).unwrap();
        assert!(out.starts_with(b"keep{\"schema_version\":1,"));
        assert!(!out.contains(&b'\n'));
        assert_eq!(SecurityEvent::from_json(&out[4..]).unwrap(), ev);
    }
}
