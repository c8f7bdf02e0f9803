//! End-to-end tests of bpf-lsm's kernel path matcher, exec hook and cgroup
//! scoping, driven directly through `bpf_lsm::Loaded::apply` with small
//! hand-written automata (as policy-lang's matcher would produce them): what
//! the kernel did to real processes, and the records it sent.

use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};

use anyhow::{bail, ensure, Context, Result};
use bpf_lsm::plan::ops;
use bpf_lsm::{
    Action, CgroupPolicies, Edge, KernelPlan, KernelPolicy, KernelRule, Mode, PathMatcherEntries,
    Record, SuffixAccept, Wildcard,
};
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{mkdirat, Mode as FileMode};

use super::cgroup::Cgroup;
use super::command::{capture, Captured};
use super::hand_plan::{self, load, policy, records, Auto};
use super::Test;

pub const TESTS: &[Test] = &[
    Test::new("exact_path_deny_inside_only", exact_path_deny_inside_only),
    Test::new("directory_recursive_deny", directory_recursive_deny),
    Test::new("star_matches_one_segment", star_matches_one_segment),
    Test::new("suffix_pattern", suffix_pattern),
    Test::new("default_deny_allowlist", default_deny_allowlist),
    Test::new(
        "audit_mode_allows_and_reports",
        audit_mode_allows_and_reports,
    ),
    Test::new("most_restrictive_policy_wins", most_restrictive_policy_wins),
    Test::new("exec_deny", exec_deny),
    Test::new("kill_action", kill_action),
    Test::new("child_cgroup_inherits", child_cgroup_inherits),
    Test::new(
        "evasions_resolve_to_the_real_path",
        evasions_resolve_to_the_real_path,
    ),
    Test::new(
        "hard_link_is_matched_by_inode",
        hard_link_is_matched_by_inode,
    ),
    Test::new(
        "path_longer_than_path_max_fails_closed",
        path_longer_than_path_max_fails_closed,
    ),
    Test::new("only_needed_hooks_attach", only_needed_hooks_attach),
];

const EPERM_TEXT: &str = "Operation not permitted";
pub(super) const RULE: u32 = 100;
const POLICY: u32 = 7;

fn rule(id: u32, action: Action, ops: u32) -> KernelRule {
    KernelRule {
        id,
        policy: POLICY,
        action,
        ops,
    }
}

/// A one-policy plan over the file matcher, applied to `cg`.
fn file_plan(
    cg: &Cgroup,
    mode: Mode,
    m: PathMatcherEntries,
    rules: Vec<KernelRule>,
) -> Result<KernelPlan> {
    hand_plan::file_plan(cg, POLICY, mode, m, rules)
}

/// A fresh directory `/tmp/kp-<name>` with the given files (content = name).
pub(super) fn fixture(name: &str, files: &[&str]) -> Result<String> {
    let dir = format!("/tmp/kp-{name}");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).with_context(|| format!("creating {dir}"))?;
    for f in files {
        let path = format!("{dir}/{f}");
        if let Some(parent) = std::path::Path::new(&path).parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&path, format!("{f}\n"))?;
    }
    Ok(dir)
}

fn cat(cg: Option<&Cgroup>, path: &str) -> Result<Captured> {
    let mut cmd = Command::new("cat");
    cmd.arg(path);
    match cg {
        Some(cg) => cg.run(&mut cmd),
        None => capture(&mut cmd),
    }
}

fn denied(c: &Captured) -> Result<()> {
    ensure!(
        !c.status.success() && c.stderr.contains(EPERM_TEXT) && c.stdout.is_empty(),
        "expected EPERM: {c}"
    );
    Ok(())
}

fn allowed(c: &Captured) -> Result<()> {
    ensure!(c.status.success(), "expected success: {c}");
    Ok(())
}

/// The file records, as (action, rule, path).
fn file_verdicts(rs: &[Record]) -> Vec<(Action, Option<u32>, String)> {
    rs.iter()
        .filter_map(|r| match r {
            Record::FileOpen(f) => Some((
                f.header.action,
                f.header.rule_id,
                String::from_utf8_lossy(&f.path).into_owned(),
            )),
            _ => None,
        })
        .collect()
}

fn exact_path_deny_inside_only() -> Result<()> {
    let dir = fixture("exact", &["secret", "other"])?;
    let secret = format!("{dir}/secret");
    let cg = Cgroup::create("kp-exact")?;
    let mut a = Auto::new();
    let s = a.literal(&secret);
    a.accept(s, &[RULE]);
    let plan = file_plan(
        &cg,
        Mode::Enforce,
        a.m,
        vec![rule(RULE, Action::Deny, ops::READ)],
    )?;
    let (loaded, mut ring) = load(&plan)?;

    denied(&cat(Some(&cg), &secret)?)?;
    allowed(&cat(Some(&cg), &format!("{dir}/other"))?)?;
    allowed(&cat(None, &secret)?)?;
    // A write is not a read: the rule's ops decide.
    let write = cg.run(Command::new("/bin/sh").args(["-c", &format!("echo x >> {secret}")]))?;
    allowed(&write)?;

    let rs = records(&mut ring)?;
    drop(loaded);
    ensure!(
        file_verdicts(&rs) == vec![(Action::Deny, Some(RULE), secret.clone())],
        "records: {rs:#?}"
    );
    let h = rs[0].header();
    ensure!(
        h.policy_id == Some(POLICY) && h.cgroup_id == cg.id()?,
        "{h:?}"
    );
    Ok(())
}

fn directory_recursive_deny() -> Result<()> {
    let dir = fixture("rec", &["d/a", "d/x/y/z", "dx", "e"])?;
    let cg = Cgroup::create("kp-rec")?;
    let mut a = Auto::new();
    a.recursive(&format!("{dir}/d"), &[RULE]);
    let plan = file_plan(
        &cg,
        Mode::Enforce,
        a.m,
        vec![rule(RULE, Action::Deny, ops::ALL)],
    )?;
    let (_loaded, mut ring) = load(&plan)?;

    denied(&cat(Some(&cg), &format!("{dir}/d/a"))?)?;
    denied(&cat(Some(&cg), &format!("{dir}/d/x/y/z"))?)?;
    // The directory itself (`ls` opens it).
    let ls = cg.run(Command::new("ls").arg(format!("{dir}/d")))?;
    denied(&ls)?;
    allowed(&cat(Some(&cg), &format!("{dir}/dx"))?)?;
    allowed(&cat(Some(&cg), &format!("{dir}/e"))?)?;
    let n = file_verdicts(&records(&mut ring)?).len();
    ensure!(n == 3, "expected 3 records, got {n}");
    Ok(())
}

fn star_matches_one_segment() -> Result<()> {
    let dir = fixture("star", &["s/one/key", "s/one/two/key", "s/one/other"])?;
    let cg = Cgroup::create("kp-star")?;
    // `<dir>/s/*/key`
    let mut a = Auto::new();
    let s = a.literal(&format!("{dir}/s"));
    let any = a.state();
    a.m.wildcards.push(Wildcard { from: s, to: any });
    let key = a.state();
    a.m.edges.push(Edge::new(any, b"key", key));
    a.accept(key, &[RULE]);
    let plan = file_plan(
        &cg,
        Mode::Enforce,
        a.m,
        vec![rule(RULE, Action::Deny, ops::READ)],
    )?;
    let (_loaded, _ring) = load(&plan)?;

    denied(&cat(Some(&cg), &format!("{dir}/s/one/key"))?)?;
    allowed(&cat(Some(&cg), &format!("{dir}/s/one/two/key"))?)?;
    allowed(&cat(Some(&cg), &format!("{dir}/s/one/other"))?)?;
    Ok(())
}

fn suffix_pattern() -> Result<()> {
    let dir = fixture(
        "sfx",
        &[
            "k/a.pem",
            "k/b.tar.pem",
            "k/.pem",
            "k/a.pem.bak",
            "k/sub/c.pem",
            "k/pem",
        ],
    )?;
    let cg = Cgroup::create("kp-sfx")?;
    // `<dir>/k/*.pem`: a suffix entry from the state of `k`.
    let mut a = Auto::new();
    let k = a.literal(&format!("{dir}/k"));
    a.m.suffixes.push(SuffixAccept::new(k, b".pem", vec![RULE]));
    let plan = file_plan(
        &cg,
        Mode::Enforce,
        a.m,
        vec![rule(RULE, Action::Deny, ops::READ)],
    )?;
    let (_loaded, mut ring) = load(&plan)?;

    for f in ["a.pem", "b.tar.pem", ".pem"] {
        denied(&cat(Some(&cg), &format!("{dir}/k/{f}"))?).with_context(|| f.to_string())?;
    }
    for f in ["a.pem.bak", "sub/c.pem", "pem"] {
        allowed(&cat(Some(&cg), &format!("{dir}/k/{f}"))?).with_context(|| f.to_string())?;
    }
    let v = file_verdicts(&records(&mut ring)?);
    ensure!(
        v.len() == 3 && v.iter().all(|(_, r, _)| *r == Some(RULE)),
        "{v:?}"
    );
    Ok(())
}

fn default_deny_allowlist() -> Result<()> {
    let dir = fixture("allow", &["ok", "other"])?;
    let cg = Cgroup::create("kp-allow")?;
    // An allowlist: what busybox `cat` and the spawner need, plus one file.
    let mut a = Auto::new();
    for d in [
        "/bin", "/sbin", "/usr", "/lib", "/lib64", "/etc", "/dev", "/proc",
    ] {
        a.recursive(d, &[RULE]);
    }
    let ok = a.literal(&format!("{dir}/ok"));
    a.accept(ok, &[RULE]);
    let mut plan = file_plan(
        &cg,
        Mode::Enforce,
        a.m,
        vec![rule(RULE, Action::Allow, ops::ALL)],
    )?;
    plan.policies[0].file_default = Action::Deny;
    let (_loaded, mut ring) = load(&plan)?;

    allowed(&cat(Some(&cg), &format!("{dir}/ok"))?)?;
    denied(&cat(Some(&cg), &format!("{dir}/other"))?)?;
    allowed(&cat(None, &format!("{dir}/other"))?)?;
    let rs = records(&mut ring)?;
    let other = format!("{dir}/other");
    let r = rs
        .iter()
        .find_map(|r| match r {
            Record::FileOpen(f) if f.path == other.as_bytes() => Some(f),
            _ => None,
        })
        .with_context(|| format!("no record for {other}: {rs:#?}"))?;
    ensure!(
        r.header.action == Action::Deny
            && r.header.rule_id.is_none()
            && r.header.by_default()
            && r.header.policy_id == Some(POLICY),
        "{r:?}"
    );
    Ok(())
}

fn audit_mode_allows_and_reports() -> Result<()> {
    let dir = fixture("audit", &["secret"])?;
    let secret = format!("{dir}/secret");
    let cg = Cgroup::create("kp-audit")?;
    let mut a = Auto::new();
    let s = a.literal(&secret);
    a.accept(s, &[RULE]);
    let plan = file_plan(
        &cg,
        Mode::Audit,
        a.m,
        vec![rule(RULE, Action::Kill, ops::READ)],
    )?;
    let (_loaded, mut ring) = load(&plan)?;
    let c = cat(Some(&cg), &secret)?;
    ensure!(c.status.success() && c.stdout == "secret\n", "{c}");
    let v = file_verdicts(&records(&mut ring)?);
    ensure!(v == vec![(Action::Audit, Some(RULE), secret)], "{v:?}");
    Ok(())
}

/// Two policies on one cgroup: one allows (and audits), the other denies.
fn most_restrictive_policy_wins() -> Result<()> {
    let dir = fixture("two", &["f"])?;
    let f = format!("{dir}/f");
    let cg = Cgroup::create("kp-two")?;
    let mut a = Auto::new();
    let s = a.literal(&f);
    a.accept(s, &[1, 2, 3]);
    let plan = KernelPlan {
        cgroup_selectors: Default::default(),
        policies: vec![
            KernelPolicy {
                id: 20,
                ..policy(POLICY, Mode::Enforce)
            },
            KernelPolicy {
                id: 21,
                ..policy(POLICY, Mode::Enforce)
            },
        ],
        cgroups: vec![CgroupPolicies {
            cgroup_id: cg.id()?,
            policies: vec![20, 21],
        }],
        file_matcher: a.m,
        rules: vec![
            KernelRule {
                id: 1,
                policy: 20,
                action: Action::Allow,
                ops: ops::READ,
            },
            KernelRule {
                id: 2,
                policy: 20,
                action: Action::Audit,
                ops: ops::READ,
            },
            KernelRule {
                id: 3,
                policy: 21,
                action: Action::Deny,
                ops: ops::READ,
            },
        ],
        ..KernelPlan::default()
    };
    let (_loaded, mut ring) = load(&plan)?;
    denied(&cat(Some(&cg), &f)?)?;
    let rs = records(&mut ring)?;
    ensure!(rs.len() == 1, "{rs:#?}");
    let h = rs[0].header();
    ensure!(
        h.action == Action::Deny && h.rule_id == Some(3) && h.policy_id == Some(21),
        "{h:?}"
    );
    Ok(())
}

/// A copy of busybox: run as `busybox-<x> <applet>` it runs the applet.
pub(super) fn busybox_copy(dir: &str, name: &str) -> Result<String> {
    let path = format!("{dir}/{name}");
    fs::copy("/bin/busybox", &path).context("copying /bin/busybox")?;
    Ok(path)
}

pub(super) fn exec_plan(cg: &Cgroup, path: &str, action: Action) -> Result<KernelPlan> {
    let mut a = Auto::new();
    let s = a.literal(path);
    a.accept(s, &[RULE]);
    Ok(KernelPlan {
        cgroup_selectors: Default::default(),
        policies: vec![policy(POLICY, Mode::Enforce)],
        cgroups: vec![CgroupPolicies {
            cgroup_id: cg.id()?,
            policies: vec![POLICY],
        }],
        exec_matcher: a.m,
        rules: vec![rule(RULE, action, 0)],
        ..KernelPlan::default()
    })
}

fn exec_deny() -> Result<()> {
    let dir = fixture("exec", &[])?;
    let bad = busybox_copy(&dir, "busybox-bad")?;
    let good = busybox_copy(&dir, "busybox-good")?;
    let link = format!("{dir}/link");
    std::os::unix::fs::symlink(&bad, &link)?;
    let cg = Cgroup::create("kp-exec")?;
    let (_loaded, mut ring) = load(&exec_plan(&cg, &bad, Action::Deny)?)?;

    for path in [&bad, &link] {
        match cg.spawn(Command::new(path).arg("true").stdout(Stdio::null())) {
            Ok(mut child) => bail!("{path} ran: {:?}", child.wait()),
            Err(e) => {
                let text = format!("{e:#}");
                ensure!(
                    text.contains("Permission denied") || text.contains(EPERM_TEXT),
                    "{path}: {text}"
                );
            }
        }
    }
    allowed(&cg.run(Command::new(&good).arg("true"))?)?;
    allowed(&capture(Command::new(&bad).arg("true"))?)?;
    let rs = records(&mut ring)?;
    let execs: Vec<_> = rs
        .iter()
        .filter_map(|r| match r {
            Record::Exec(e) => Some((e.header.action, e.header.rule_id, e.path.clone())),
            _ => None,
        })
        .collect();
    ensure!(
        execs == vec![(Action::Deny, Some(RULE), bad.clone().into_bytes()); 2],
        "{rs:#?}"
    );
    Ok(())
}

fn kill_action() -> Result<()> {
    let dir = fixture("kill", &["secret"])?;
    let bin = busybox_copy(&dir, "busybox-kill")?;
    let cg = Cgroup::create("kp-kill")?;
    // Exec: denied and killed.
    let (loaded, mut ring) = load(&exec_plan(&cg, &bin, Action::Kill)?)?;
    let mut child = cg
        .spawn(Command::new(&bin).arg("true"))
        .context("the killed exec should not report an exec error")?;
    let status = child.wait()?;
    ensure!(status.signal() == Some(9), "exec kill: {status:?}");
    let rs = records(&mut ring)?;
    ensure!(
        rs.len() == 1 && rs[0].header().action == Action::Kill && rs[0].header().killed(),
        "{rs:#?}"
    );
    drop(loaded);

    // File: the open fails and cat is killed.
    let secret = format!("{dir}/secret");
    let mut a = Auto::new();
    let s = a.literal(&secret);
    a.accept(s, &[RULE]);
    let plan = file_plan(
        &cg,
        Mode::Enforce,
        a.m,
        vec![rule(RULE, Action::Kill, ops::READ)],
    )?;
    let (_loaded, _ring) = load(&plan)?;
    let c = cat(Some(&cg), &secret)?;
    ensure!(
        c.status.signal() == Some(9) && c.stdout.is_empty(),
        "file kill: {c}"
    );
    Ok(())
}

fn child_cgroup_inherits() -> Result<()> {
    let dir = fixture("inherit", &["secret"])?;
    let secret = format!("{dir}/secret");
    let parent = Cgroup::create("kp-inherit")?;
    let mut a = Auto::new();
    let s = a.literal(&secret);
    a.accept(s, &[RULE]);
    let plan = file_plan(
        &parent,
        Mode::Enforce,
        a.m,
        vec![rule(RULE, Action::Deny, ops::READ)],
    )?;
    let (loaded, _ring) = load(&plan)?;

    // Created after load: covered through the kernel's mkdir hook, and so is
    // a grandchild.
    let child = Cgroup::create("kp-inherit/b")?;
    let grandchild = Cgroup::create("kp-inherit/b/c")?;
    denied(&cat(Some(&child), &secret)?)?;
    denied(&cat(Some(&grandchild), &secret)?)?;
    let sibling = Cgroup::create("kp-not-inherit")?;
    allowed(&cat(Some(&sibling), &secret)?)?;

    let slots = loaded.cgroup_slots()?;
    for cg in [&child, &grandchild] {
        ensure!(
            slots.contains(&(cg.id()?, 1)),
            "{} not in the map: {slots:?}",
            cg.path().display()
        );
    }
    let stats = loaded.stats()?;
    ensure!(
        stats.inherited >= 2 && stats.inherit_failed == 0,
        "{stats:?}"
    );
    // rmdir removes the entry.
    let gid = grandchild.id()?;
    drop(grandchild);
    ensure!(
        !loaded.cgroup_slots()?.iter().any(|(id, _)| *id == gid),
        "removed cgroup still in the map"
    );
    Ok(())
}

fn evasions_resolve_to_the_real_path() -> Result<()> {
    let dir = fixture("evade", &["secret", "sub/x"])?;
    let secret = format!("{dir}/secret");
    let link = format!("{dir}/link");
    std::os::unix::fs::symlink(&secret, &link)?;
    let cg = Cgroup::create("kp-evade")?;
    let mut a = Auto::new();
    let s = a.literal(&secret);
    a.accept(s, &[RULE]);
    let plan = file_plan(
        &cg,
        Mode::Enforce,
        a.m,
        vec![rule(RULE, Action::Deny, ops::READ)],
    )?;
    let (_loaded, mut ring) = load(&plan)?;

    denied(&cat(Some(&cg), &link)?).context("symlink")?;
    denied(&cat(Some(&cg), &format!("{dir}/sub/../secret"))?).context("..")?;
    denied(&cat(Some(&cg), &format!("{dir}//./secret"))?).context("// and .")?;
    let mut rel = Command::new("cat");
    rel.current_dir(format!("{dir}/sub")).arg("../secret");
    denied(&cg.run(&mut rel)?).context("relative")?;
    let v = file_verdicts(&records(&mut ring)?);
    ensure!(
        v.len() == 4 && v.iter().all(|(_, _, p)| *p == secret),
        "{v:?}"
    );
    Ok(())
}

/// A hard link is another name for the inode, and d_path reports the name it
/// was opened by: the loader lists the inode of each literal rule path, so a
/// hard link made before the load is matched by the original's rules (the
/// record keeps the name used). A hard link to an unprotected file is not.
fn hard_link_is_matched_by_inode() -> Result<()> {
    let dir = fixture("hard", &["secret", "notes"])?;
    let secret = format!("{dir}/secret");
    let hard = format!("{dir}/hard");
    let notes_link = format!("{dir}/notes-link");
    fs::hard_link(&secret, &hard)?;
    fs::hard_link(format!("{dir}/notes"), &notes_link)?;
    let cg = Cgroup::create("kp-hard")?;
    let mut a = Auto::new();
    let s = a.literal(&secret);
    a.accept(s, &[RULE]);
    let plan = file_plan(
        &cg,
        Mode::Enforce,
        a.m,
        vec![rule(RULE, Action::Deny, ops::READ)],
    )?;
    let (_loaded, mut ring) = load(&plan)?;
    denied(&cat(Some(&cg), &secret)?)?;
    denied(&cat(Some(&cg), &hard)?).context("the hard link")?;
    let benign = cat(Some(&cg), &notes_link)?;
    allowed(&benign)?;
    ensure!(benign.stdout == "notes\n", "{benign}");
    let v = file_verdicts(&records(&mut ring)?);
    ensure!(
        v == vec![
            (Action::Deny, Some(RULE), secret.clone()),
            (Action::Deny, Some(RULE), hard.clone()),
        ],
        "{v:?}"
    );
    Ok(())
}

fn path_longer_than_path_max_fails_closed() -> Result<()> {
    let base = "/tmp/kp-long";
    let name = "e".repeat(200);
    let depth = 22;
    let _ = fs::remove_dir_all(base);
    fs::create_dir_all(base)?;
    // mkdirat/openat one level at a time: the full path is longer than any
    // syscall accepts.
    let mut fd: OwnedFd = fs::File::open(base)?.into();
    for _ in 0..depth {
        mkdirat(
            Some(fd.as_raw_fd()),
            name.as_str(),
            FileMode::from_bits_truncate(0o755),
        )?;
        let raw = openat(
            Some(fd.as_raw_fd()),
            name.as_str(),
            OFlag::O_DIRECTORY | OFlag::O_RDONLY,
            FileMode::empty(),
        )?;
        // SAFETY: openat returned a fresh descriptor nothing else owns.
        fd = unsafe { OwnedFd::from_raw_fd(raw) };
    }
    let raw = openat(
        Some(fd.as_raw_fd()),
        "file",
        OFlag::O_CREAT | OFlag::O_WRONLY,
        FileMode::from_bits_truncate(0o644),
    )?;
    // SAFETY: as above.
    drop(unsafe { OwnedFd::from_raw_fd(raw) });
    ensure!(base.len() + depth * 201 > 4096);

    let dir = fixture("long-rule", &["secret"])?;
    let cg = Cgroup::create("kp-long")?;
    let mut a = Auto::new();
    let s = a.literal(&format!("{dir}/secret"));
    a.accept(s, &[RULE]);
    let plan = file_plan(
        &cg,
        Mode::Enforce,
        a.m,
        vec![rule(RULE, Action::Deny, ops::READ)],
    )?;
    let (loaded, mut ring) = load(&plan)?;
    let run = |cg: Option<&Cgroup>| -> Result<Captured> {
        let raw = fd.as_raw_fd();
        let mut cmd = Command::new("cat");
        cmd.arg("file");
        // SAFETY: fchdir is async-signal-safe; `fd` outlives the spawn.
        unsafe {
            cmd.pre_exec(move || nix::unistd::fchdir(raw).map_err(std::io::Error::from));
        }
        match cg {
            Some(cg) => cg.run(&mut cmd),
            None => capture(&mut cmd),
        }
    };
    denied(&run(Some(&cg))?)?;
    allowed(&run(None)?)?;
    let rs = records(&mut ring)?;
    ensure!(
        rs.iter().any(|r| matches!(r, Record::FileOpen(f)
            if f.header.action == Action::Deny && f.header.path_unresolved() && f.path.is_empty())),
        "{rs:#?}"
    );
    ensure!(loaded.stats()?.path_unresolved >= 1);
    let _ = fs::remove_dir_all(base);
    Ok(())
}

fn only_needed_hooks_attach() -> Result<()> {
    let cg = Cgroup::create("kp-hooks")?;
    let dir = fixture("hooks", &[])?;
    let (loaded, _) = load(&exec_plan(&cg, &format!("{dir}/x"), Action::Deny)?)?;
    let mut got = loaded.attached().to_vec();
    got.sort_unstable();
    ensure!(
        got == ["enf_bprm_check", "enf_cgroup_mkdir", "enf_cgroup_rmdir"],
        "{got:?}"
    );
    drop(loaded);
    let (loaded, _) = load(&KernelPlan::default())?;
    ensure!(loaded.attached().is_empty(), "{:?}", loaded.attached());
    Ok(())
}
