//! `enforcer doctor` against the kernel this test runs on (host tier). On our
//! build machines the kernel lists `bpf` among its LSMs yet refuses LSM
//! programs with EPERM: doctor must say so, exit 3, and point at the VM
//! runner. Where a host does allow BPF LSM, it must exit 0 instead; either
//! way the report and the exit code must agree.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failure

mod support;

use support::is_root;

#[test]
fn doctor_json_agrees_with_its_exit_code() {
    if !is_root() {
        eprintln!("skipped: doctor_json_agrees_with_its_exit_code needs root");
        return;
    }
    let out = support::enforcer()
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    let code = out.status.code().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor --json printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let check = |name: &str| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no check {name}"))
            .clone()
    };
    for name in [
        "btf",
        "lsm_list",
        "bpf_lsm_load",
        "lsm_cgroup",
        "kprobes",
        "bpf_override_return",
        "bpf_send_signal",
        "ringbuf",
        "cgroup2",
        "bpffs",
        "cgroup_sock_addr",
    ] {
        let c = check(name);
        assert!(
            ["ok", "missing", "error"].contains(&c["status"].as_str().unwrap()),
            "{c}"
        );
    }
    let lsm = check("bpf_lsm_load");
    if report["bpf_lsm"] == true {
        assert_eq!(code, 0, "BPF LSM available must exit 0");
        assert_eq!(report["enforcement"], "bpf_lsm");
        assert_eq!(lsm["status"], "ok");
    } else {
        assert_eq!(
            code, 3,
            "a kernel without BPF LSM but with cgroup hooks is degraded (3): {report}"
        );
        assert_eq!(report["enforcement"], "degraded");
        let consequence = lsm["consequence"].as_str().unwrap_or_default();
        assert!(consequence.contains("cargo xtask vm run"), "{consequence}");
    }
}

/// Our build machines: `bpf` is in the LSM list, yet the load is refused.
/// Doctor must not trust the list.
#[test]
fn doctor_does_not_trust_the_lsm_list_when_the_load_is_refused() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let out = support::enforcer()
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let checks = report["checks"].as_array().unwrap();
    let status = |n: &str| checks.iter().find(|c| c["name"] == n).unwrap()["status"].clone();
    if status("lsm_list") == "ok" && status("bpf_lsm_load") != "ok" {
        assert_eq!(report["bpf_lsm"], false);
        let detail =
            checks.iter().find(|c| c["name"] == "bpf_lsm_load").unwrap()["detail"].to_string();
        assert!(
            detail.contains("EPERM") || detail.contains("EINVAL"),
            "{detail}"
        );
        eprintln!("this kernel lists bpf but refuses LSM programs: {detail}");
    } else {
        eprintln!(
            "this kernel's LSM list and load agree: {} / {}",
            status("lsm_list"),
            status("bpf_lsm_load")
        );
    }
}

#[test]
fn doctor_text_names_every_check_and_the_verdict() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let out = support::enforcer().arg("doctor").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().last().unwrap().starts_with("enforcement: "),
        "{text}"
    );
    for name in [
        "btf",
        "lsm_list",
        "bpf_lsm_load",
        "ringbuf",
        "cgroup2",
        "bpffs",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
}
