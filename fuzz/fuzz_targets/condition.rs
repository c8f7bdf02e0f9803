//! Alert conditions on arbitrary input, embedded in an otherwise valid policy.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(cond) = std::str::from_utf8(data) else {
        return;
    };
    let quoted = serde_json_escape(cond);
    let text = format!(
        "macros:\n  m: proc.uid = 0\npolicies:\n  - name: p\n    select: {{host: true}}\n    mode: enforce\n    rules:\n      - name: r\n        action: alert\n        condition: {quoted}\n"
    );
    let _ = policy_lang::load_sources([("fuzz.yaml", text)]);
});

/// A JSON string is a valid double-quoted YAML scalar.
fn serde_json_escape(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
