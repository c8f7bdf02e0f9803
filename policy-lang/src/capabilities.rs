//! Linux capabilities by name (include/uapi/linux/capability.h).

const NAMES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// All capability names, canonical (`CAP_` prefix, upper case).
pub fn names() -> impl Iterator<Item = &'static str> {
    NAMES.iter().copied()
}

/// The capability number for `CAP_SYS_ADMIN`, `cap_sys_admin` or `sys_admin`.
pub fn lookup(name: &str) -> Option<u32> {
    let upper = name.to_ascii_uppercase();
    let canonical = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    NAMES
        .iter()
        .position(|n| *n == canonical)
        .and_then(|i| u32::try_from(i).ok())
}

/// The canonical name of capability number `cap`.
pub fn name(cap: u32) -> Option<&'static str> {
    NAMES.get(cap as usize).copied()
}

#[cfg(test)]
mod tests {
    #[test]
    fn numbers_match_the_kernel() {
        assert_eq!(super::lookup("CAP_SYS_ADMIN"), Some(21));
        assert_eq!(super::lookup("net_raw"), Some(13));
        assert_eq!(super::lookup("CAP_BPF"), Some(39));
        assert_eq!(super::lookup("CAP_CHECKPOINT_RESTORE"), Some(40));
        assert_eq!(super::lookup("CAP_NOPE"), None);
        assert_eq!(super::name(19), Some("CAP_SYS_PTRACE"));
    }
}
