//! Snapshot tests for rendered diagnostics: the exact text a user sees. Each
//! `tests/snapshots/NAME.yaml` has its expected output in `NAME.txt`; run with
//! `UPDATE_SNAPSHOTS=1` to rewrite them after an intended change, then review the diff.

// Test helpers may unwrap: a panic is a failing test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use policy_lang::load_sources;
use std::path::Path;

fn rendered(name: &str, text: &str) -> String {
    match load_sources([(name, text)]) {
        Ok(set) => policy_lang::render_all(&set.warnings, &set.sources),
        Err(e) => e.render(),
    }
}

fn snapshot(name: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");
    let input = std::fs::read_to_string(dir.join(format!("{name}.yaml"))).unwrap();
    let got = rendered(&format!("{name}.yaml"), &input);
    let expected_path = dir.join(format!("{name}.txt"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&expected_path, &got).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
    assert_eq!(got, expected, "snapshot {name} differs; got:\n{got}");
}

#[test]
fn errors() {
    snapshot("errors");
}

#[test]
fn more_errors() {
    snapshot("more_errors");
}

/// `mode:` on chmod rules, and a test chmod's new mode.
#[test]
fn chmod_mode_errors() {
    snapshot("chmod_mode");
}

#[test]
fn conflicting_rules() {
    snapshot("conflicts");
}

/// Kernel-dependent errors come from `compile`, against a kernel without BPF LSM.
#[test]
fn kernel_dependent_errors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");
    let input = std::fs::read_to_string(dir.join("kernel.yaml")).unwrap();
    let set = load_sources([("kernel.yaml", input.as_str())]).unwrap();
    let no_lsm = policy_lang::KernelFeatures {
        bpf_lsm: false,
        ..policy_lang::KernelFeatures::full()
    };
    let diags = policy_lang::compile(&set, &no_lsm).unwrap_err();
    let got = policy_lang::render_all(&diags, &set.sources);
    let expected_path = dir.join("kernel.txt");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&expected_path, &got).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
    assert_eq!(got, expected, "snapshot kernel differs; got:\n{got}");
}

/// Names are unique across the files of a set: a list or macro defined twice is an error
/// that points at both.
#[test]
fn duplicates_across_files() {
    let a = "lists:\n  shells: [/bin/sh]\nmacros:\n  spawned: proc.name = \"sh\"\n";
    let b = "lists:\n  shells: [/bin/bash]\nmacros:\n  spawned: proc.name = \"bash\"\n";
    let got = match load_sources([("a.yaml", a), ("b.yaml", b)]) {
        Ok(_) => String::from("accepted"),
        Err(e) => e.render(),
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");
    let expected_path = dir.join("duplicates.txt");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&expected_path, &got).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
    assert_eq!(got, expected, "snapshot duplicates differs; got:\n{got}");
}

/// A memfd pattern of the name form warns; the reserved path matches a memfd only.
#[test]
fn memfd_patterns() {
    snapshot("memfd");
}

#[test]
fn warnings() {
    snapshot("warnings");
}

#[test]
fn yaml_syntax() {
    snapshot("yaml");
}

#[test]
fn json_format() {
    let e = load_sources([("p.yaml", "policies:\n  - nme: x\n")]).unwrap_err();
    let v: serde_json::Value = serde_json::from_str(&e.render_json()).unwrap();
    let first = &v[0];
    assert_eq!(first["code"], "E0201");
    assert_eq!(first["file"], "p.yaml");
    assert_eq!(first["line"], 2);
    assert_eq!(first["column"], 5);
    assert_eq!(first["help"], "did you mean `name`?");
}
