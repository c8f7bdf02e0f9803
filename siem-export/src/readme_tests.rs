//! Keeps the README's example events honest: each must parse, validate,
//! and re-encode to exactly the text shown.

use crate::encode::{Encoder, NativeJson};
use crate::event::{SecurityEvent, Target};

const README: &str = include_str!("../README.md");

/// The bodies of all ```json fenced blocks.
fn json_blocks() -> Vec<&'static str> {
    let mut blocks = Vec::new();
    let mut rest = README;
    while let Some(start) = rest.find("```json\n") {
        let body = &rest[start + "```json\n".len()..];
        let end = body.find("\n```").unwrap();
        blocks.push(&body[..end]);
        rest = &body[end..];
    }
    blocks
}

#[test]
fn readme_examples_parse_and_re_encode_exactly() {
    let blocks = json_blocks();
    assert_eq!(blocks.len(), 2, "expected the two example events");
    for block in blocks {
        let ev = SecurityEvent::from_json(block.as_bytes()).unwrap();

        // Pretty form: the README shows exactly what we would write.
        assert_eq!(serde_json::to_string_pretty(&ev).unwrap(), block);

        // Compact form (what files and streams carry) is the same value.
        let mut line = Vec::new();
        NativeJson.encode(&ev, &mut line).unwrap();
        let a: serde_json::Value = serde_json::from_slice(&line).unwrap();
        let b: serde_json::Value = serde_json::from_str(block).unwrap();
        assert_eq!(a, b);
        assert_eq!(SecurityEvent::from_json(&line).unwrap(), ev);
    }
}

#[test]
fn readme_byte_string_example_decodes_to_raw_bytes() {
    let ev = SecurityEvent::from_json(json_blocks()[1].as_bytes()).unwrap();
    match ev.target {
        Some(Target::File(f)) => assert_eq!(f.path.as_bytes(), b"/tmp/.\xff\xfehidden"),
        other => panic!("{other:?}"),
    }
}
