//! The shared table of cases (`integration/conformance/`), host half: every case passes
//! through policy-lang's reference evaluator, and every case can be replayed in the VM (the
//! e2e test `conformance::the_kernel_decides_every_case_as_the_evaluator` runs the same cases
//! against the kernel).

// Test helpers may unwrap: a panic is a failing test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use integration::conformance_table;
use integration::replay_plan::replay;
use policy_lang::{compile, run_tests, KernelFeatures};

#[test]
fn the_evaluator_passes_every_case_of_the_table() {
    let set = conformance_table::load().unwrap_or_else(|e| panic!("{e}"));
    let plan = compile(&set, &KernelFeatures::full())
        .unwrap_or_else(|d| panic!("{}", policy_lang::render_all(&d, &set.sources)));
    let report = run_tests(&set, &plan).unwrap();
    let text = report.render(&set.sources);
    assert_eq!(report.failed(), 0, "{text}");
    assert!(report.passed() >= 80, "the table shrank: {text}");
}

#[test]
fn every_case_of_the_table_can_be_replayed_in_the_vm() {
    let set = conformance_table::load().unwrap_or_else(|e| panic!("{e}"));
    let errors: Vec<String> = policy_lang::testing::vectors(&set)
        .iter()
        .enumerate()
        .filter_map(|(i, v)| replay(v, i).err().map(|e| format!("`{}`: {e}", v.name)))
        .collect();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}
