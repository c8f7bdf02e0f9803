//! The process tracepoints on the machine's own kernel (tp_btf programs load there even
//! where BPF LSM does not): a plan with `process_events` and no rules attaches only them
//! (and the cgroup inheritance programs), and a shell started in a fresh cgroup2 directory
//! is reported by exec, fork and exit records with the right pids, file names, argv and
//! exit codes, while the same shell outside the cgroup is not reported at all.
//!
//! Needs root and a cgroup2 mount; otherwise it prints why it skips.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bpf_lsm::{decode_record, CgroupPolicies, KernelPlan, KernelPolicy, Loaded, Mode, Record};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// A cgroup2 directory, removed when dropped.
struct TestCgroup(PathBuf);

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Runs `/bin/sh -c 'SCRIPT'` after moving the shell into `cgroup` (when given): the outer
/// shell moves itself, then execs the inner one. Returns the outer shell's pid and status.
fn run_in(cgroup: Option<&std::path::Path>, script: &str) -> (u32, i32) {
    let mv = match cgroup {
        Some(cg) => format!("echo $$ > {}/cgroup.procs && ", cg.display()),
        None => String::new(),
    };
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("{mv}exec /bin/sh -c '{script}'"))
        .spawn()
        .unwrap();
    let pid = child.id();
    let status = child.wait().unwrap();
    (pid, status.code().unwrap_or(-1))
}

#[test]
fn exec_fork_and_exit_of_processes_in_scope_are_reported() {
    if !is_root() {
        eprintln!("skipped: needs root (cgroup2 and BPF)");
        return;
    }
    let Some(root) = bpf_lsm::probe::cgroup2_mount() else {
        eprintln!("skipped: no cgroup2 mount in /proc/self/mountinfo");
        return;
    };
    let dir = root.join(format!("enf-proc-events-{}", std::process::id()));
    std::fs::create_dir(&dir).unwrap();
    let cg = TestCgroup(dir.clone());
    let id = std::fs::metadata(&cg.0).unwrap().ino();
    let plan = KernelPlan {
        cgroup_selectors: Default::default(),
        policies: vec![KernelPolicy {
            id: 3,
            mode: Mode::Enforce,
            file_default: bpf_lsm::Action::Allow,
            exec_default: bpf_lsm::Action::Allow,
        }],
        cgroups: vec![CgroupPolicies {
            cgroup_id: id,
            policies: vec![3],
        }],
        process_events: true,
        ..KernelPlan::default()
    };
    let mut loaded = Loaded::apply(&plan).expect("tp_btf programs load on this kernel");
    let attached = loaded.attached().to_vec();
    for p in ["enf_proc_exec", "enf_proc_fork", "enf_proc_exit"] {
        assert!(attached.contains(&p), "{p} not in {attached:?}");
    }
    assert!(
        !attached
            .iter()
            .any(|p| p.contains("file_open") || p.contains("bprm")),
        "{attached:?}"
    );
    let mut ring = loaded.take_events().unwrap();

    // Out of scope first: nothing of it may be reported.
    let (outside, code) = run_in(None, "/bin/echo enf-outside-marker; exit 4");
    assert_eq!(code, 4);
    let (shell, code) = run_in(Some(&dir), "/bin/echo enf-inside-marker; exit 3");
    assert_eq!(code, 3);
    let me = std::process::id();

    let mut records = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let done = |rs: &[Record]| {
        rs.iter()
            .any(|r| matches!(r, Record::ProcExit(x) if x.header.pid == shell))
    };
    while !done(&records) && Instant::now() < deadline {
        while let Some(item) = ring.next() {
            records.push(decode_record(&item).expect("a well-formed record"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for r in &records {
        assert!(r.is_process(), "{r:?}");
        assert_ne!(r.header().pid, outside, "out of scope, reported: {r:?}");
        assert_eq!(r.header().cgroup_id, id, "{r:?}");
    }

    // The outer shell's exec of the inner one.
    let sh = records
        .iter()
        .find_map(|r| match r {
            Record::ProcExec(e) if e.header.pid == shell => Some(e),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no exec record of {shell}: {records:#?}"));
    assert_eq!(sh.ppid, me);
    assert_eq!(sh.filename, b"/bin/sh");
    assert_eq!(
        sh.argv,
        b"/bin/sh\0-c\0/bin/echo enf-inside-marker; exit 3\0"
    );
    assert!(!sh.argv_truncated() && !sh.argv_unread());
    let cwd = std::env::current_dir().expect("the test's cwd");
    let cwd = std::fs::canonicalize(cwd).expect("a resolvable cwd");
    assert_eq!(
        sh.cwd.as_deref(),
        Some(cwd.as_os_str().as_encoded_bytes()),
        "cwd from fs->pwd"
    );
    assert_eq!(sh.slots, 1);
    assert!(sh.start_ns > 0 && sh.start_ns <= sh.header.ktime_ns);

    // The inner shell forks the child that runs echo.
    let fork = records
        .iter()
        .find_map(|r| match r {
            Record::ProcFork(f) if f.parent_pid == shell => Some(f),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no fork record of {shell}: {records:#?}"));
    let child = fork.child_pid;
    assert_ne!(child, shell);
    assert!(fork.child_start_ns >= sh.start_ns);
    let echo = records
        .iter()
        .find_map(|r| match r {
            Record::ProcExec(e) if e.header.pid == child => Some(e),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no exec record of {child}: {records:#?}"));
    assert_eq!(echo.ppid, shell);
    assert_eq!(echo.filename, b"/bin/echo");
    assert_eq!(echo.argv, b"/bin/echo\0enf-inside-marker\0");
    assert_eq!(echo.start_ns, fork.child_start_ns);
    assert_eq!(echo.header.comm, "echo");

    // Exits: the child with 0, the shell with 3 (a wait status), once each, child first.
    let exits: Vec<(u32, u32)> = records
        .iter()
        .filter_map(|r| match r {
            Record::ProcExit(x) => Some((x.header.pid, x.exit_code)),
            _ => None,
        })
        .collect();
    assert_eq!(exits, vec![(child, 0), (shell, 3 << 8)]);
    drop(loaded);
}
