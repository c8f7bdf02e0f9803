//! `cargo xtask vm run` end to end: real VMs. Ignored in the host stage because they boot
//! kernels under qemu; `cargo xtask test` runs them explicitly (`--ignored`) in its VM stage.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failure

use std::fs;
use std::path::Path;
use std::process::Command;

fn xtask_vm_run(kernel: &str, script: &str, out: &Path, extra: &[&str]) -> Option<i32> {
    let inputs = tempfile::tempdir().unwrap();
    let script_path = inputs.path().join("job.sh");
    fs::write(&script_path, script).unwrap();
    let include = inputs.path().join("fixtures");
    fs::create_dir(&include).unwrap();
    fs::write(include.join("greeting"), "from the host\n").unwrap();
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["vm", "run", "--kernel", kernel, "--script"])
        .arg(&script_path)
        .arg("--include")
        .arg(&include)
        .arg("--out")
        .arg(out)
        .args(extra)
        .status()
        .unwrap()
        .code()
}

fn script_exit_code_and_outputs_come_back(kernel: &str) {
    let out = tempfile::tempdir().unwrap();
    let out = out.path().join("out");
    let code = xtask_vm_run(
        kernel,
        "echo hello\necho oops >&2\ncat /include/fixtures/greeting\npwd\nexit 7\n",
        &out,
        &[],
    );
    assert_eq!(code, Some(7));
    assert_eq!(
        fs::read_to_string(out.join("script.stdout")).unwrap(),
        "hello\nfrom the host\n/\n"
    );
    assert_eq!(
        fs::read_to_string(out.join("script.stderr")).unwrap(),
        "oops\n"
    );
    assert_eq!(
        fs::read_to_string(out.join("script.exit")).unwrap().trim(),
        "7"
    );
    let log = fs::read_to_string(out.join("enforcer.log")).unwrap();
    assert!(log.contains("enforcer ready"), "{log}");
    assert!(out.join("state").is_dir());
}

#[test]
#[ignore = "boots a VM: run by `cargo xtask test` in its VM stage"]
fn vm_run_on_6_1_returns_the_script_exit_code_and_copies_outputs() {
    script_exit_code_and_outputs_come_back("6.1");
}

#[test]
#[ignore = "boots a VM: run by `cargo xtask test` in its VM stage"]
fn vm_run_on_6_12_returns_the_script_exit_code_and_copies_outputs() {
    script_exit_code_and_outputs_come_back("6.12");
}

#[test]
#[ignore = "boots a VM: run by `cargo xtask test` in its VM stage"]
fn vm_run_reports_a_hung_vm_as_125() {
    let out = tempfile::tempdir().unwrap();
    let code = xtask_vm_run(
        "6.1",
        "sleep 1000\n",
        &out.path().join("out"),
        &["--timeout", "30"],
    );
    assert_eq!(code, Some(125));
}
