//! Every ```yaml block of docs/policy-language.md is a complete policy file. Good examples
//! must load, compile and pass their tests; blocks preceded by
//! `<!-- expect-error: CODE -->` must fail with that code.

// Test helpers may unwrap: a panic is a failing test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use policy_lang::{compile, load_sources, run_tests, KernelFeatures};

struct Block {
    line: usize,
    text: String,
    expect_error: Option<String>,
}

fn blocks(doc: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut current: Option<Block> = None;
    let mut pending_error: Option<String> = None;
    for (i, line) in doc.lines().enumerate() {
        if let Some(b) = current.as_mut() {
            if line.trim_start() == "```" {
                out.extend(current.take());
            } else {
                b.text.push_str(line);
                b.text.push('\n');
            }
            continue;
        }
        if let Some(code) = line
            .trim()
            .strip_prefix("<!-- expect-error:")
            .and_then(|r| r.strip_suffix("-->"))
        {
            pending_error = Some(code.trim().to_owned());
        } else if line.trim_start() == "```yaml" {
            current = Some(Block {
                line: i + 1,
                text: String::new(),
                expect_error: pending_error.take(),
            });
        } else if !line.trim().is_empty() {
            pending_error = None;
        }
    }
    out
}

#[test]
fn every_yaml_example_in_the_docs_behaves_as_documented() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/policy-language.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let blocks = blocks(&doc);
    assert!(
        blocks.len() >= 10,
        "found only {} yaml blocks",
        blocks.len()
    );
    for b in blocks {
        let name = format!("policy-language.md:{}", b.line);
        let loaded = load_sources([(name.clone(), b.text.clone())]);
        match (&b.expect_error, loaded) {
            (Some(code), Err(e)) => assert!(
                e.diagnostics.items.iter().any(|d| d.code == code),
                "{name}: expected {code}, got:\n{}",
                e.render()
            ),
            (Some(code), Ok(_)) => panic!("{name}: expected error {code}, but it loaded"),
            (None, Err(e)) => panic!("{name}: example does not load:\n{}", e.render()),
            (None, Ok(set)) => {
                let plan = compile(&set, &KernelFeatures::full()).unwrap_or_else(|d| {
                    panic!("{name}: {}", policy_lang::render_all(&d, &set.sources))
                });
                let report = run_tests(&set, &plan).unwrap();
                assert_eq!(
                    report.failed(),
                    0,
                    "{name}:\n{}",
                    report.render(&set.sources)
                );
            }
        }
    }
}
