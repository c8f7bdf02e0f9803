//! Self-protection as the daemon sets it up: what it guards (its pid, its state directory,
//! its bpffs pin directory) and how its refusals are named in events.

use std::path::Path;
use std::sync::OnceLock;

use bpf_lsm::guard::{ExeId, SelfGuard};
use siem_export::Severity;

use crate::verdict_log::RuleInfo;

/// The policy and rule names of a self-protection refusal.
pub const POLICY: &str = "enforcer";
pub const RULE: &str = "self-protection";

/// What events say about a self-protection refusal.
pub fn rule_info() -> &'static RuleInfo {
    static INFO: OnceLock<RuleInfo> = OnceLock::new();
    INFO.get_or_init(|| RuleInfo {
        label: format!("{POLICY}/{RULE}"),
        policy: Some(POLICY.to_string()),
        rule: RULE.to_string(),
        message: "a process under enforcement tried to tamper with the enforcer (its process, \
                  its state directory or its BPF objects): refused"
            .to_string(),
        severity: Severity::Critical,
        tags: vec!["T1562.001".to_string()],
    })
}

/// The guard of this daemon: its own pid, and its state directory (as given and, when it
/// differs, resolved through symlinks) and the pin directory (the configured one, or the
/// default when pinning is off: nothing else may write there either). Its own executable
/// file may use those directories from any cgroup (the CLI: `status`, `events query`,
/// `unload`); a copy of the binary elsewhere is another file and may not.
pub fn of_daemon(state_dir: &Path, pin_root: Option<&Path>) -> SelfGuard {
    let mut dirs: Vec<Vec<u8>> = Vec::new();
    let mut add = |p: &Path| {
        use std::os::unix::ffi::OsStrExt;
        let bytes = p.as_os_str().as_bytes();
        let trimmed = match bytes {
            [rest @ .., b'/'] if !rest.is_empty() => rest,
            b => b,
        };
        if !dirs.iter().any(|d| d == trimmed) {
            dirs.push(trimmed.to_vec());
        }
    };
    add(state_dir);
    if let Ok(real) = std::fs::canonicalize(state_dir) {
        add(&real);
    }
    add(pin_root.unwrap_or(Path::new(crate::pinning::DEFAULT_PIN_ROOT)));
    SelfGuard {
        daemon_tgid: std::process::id(),
        dirs,
        daemon_exe: own_exe(),
    }
}

/// The (device, inode) of this process's executable; `None` (no CLI exemption, logged) when
/// it cannot be read.
fn own_exe() -> Option<ExeId> {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata("/proc/self/exe") {
        Ok(m) => Some(ExeId::from_stat(m.dev(), m.ino())),
        Err(e) => {
            tracing::warn!(
                "reading `/proc/self/exe`: {e}; the enforcer CLI will be refused the state \
                 directory from covered cgroups (mount procfs to allow it)"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daemon_guards_its_pid_state_and_pins() {
        let g = of_daemon(Path::new("/nonexistent-state/"), None);
        assert_eq!(g.daemon_tgid, std::process::id());
        assert_eq!(
            g.dirs,
            vec![
                b"/nonexistent-state".to_vec(),
                crate::pinning::DEFAULT_PIN_ROOT.as_bytes().to_vec()
            ]
        );
        assert!(g.entries().is_ok());
        let exe = g.daemon_exe.unwrap();
        assert_ne!(exe.ino, 0);
    }
}
