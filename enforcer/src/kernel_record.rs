//! Kernel-class records (privileged operations, capability checks, system calls) as events:
//! the operation's name as policies write it and a detail line with its argument.

use bpf_lsm::{GuardOp, KernelOp, KernelRecord, KernelSubject};
use siem_export::event::{KernelTarget, Target};

/// The operation as policies name it: `mount`, `CAP_SYS_ADMIN`, `unshare`; a number the
/// policy language does not know is written `cap_<n>` / `syscall_<n>`.
pub fn operation(k: &KernelRecord) -> String {
    match k.subject {
        KernelSubject::Op(op) => op.name().to_string(),
        KernelSubject::Capability(c) => {
            policy_lang::capabilities::name(c).map_or_else(|| format!("cap_{c}"), str::to_string)
        }
        KernelSubject::Syscall(s) => {
            policy_lang::syscalls::name(s).map_or_else(|| format!("syscall_{s}"), str::to_string)
        }
        KernelSubject::SelfProtection(g) => g.name().to_string(),
    }
}

fn read_id(id: u64) -> &'static str {
    // enum kernel_read_file_id and kernel_load_data_id share these values.
    match id {
        2 => "module",
        3 => "kexec-image",
        4 => "kexec-initramfs",
        _ => "other",
    }
}

/// The operation's argument, as `key=value` pairs.
pub fn detail(k: &KernelRecord) -> String {
    let path = String::from_utf8_lossy(&k.path);
    let (arg, arg2) = (k.arg, k.arg2);
    match k.subject {
        KernelSubject::Op(op) => match op {
            KernelOp::Mount if arg2 == 1 => "move_mount".to_string(),
            KernelOp::Mount => format!("target={path} flags={arg:#x}"),
            KernelOp::Umount => format!("flags={arg:#x}"),
            KernelOp::Ptrace if arg2 == 0 => format!("traceme tracer_pid={arg}"),
            KernelOp::Ptrace => format!("target_pid={arg} mode={arg2:#x}"),
            KernelOp::Bpf => format!("cmd={arg}"),
            KernelOp::ModuleLoad | KernelOp::Kexec if arg2 == 0 => {
                format!("file={path} read_id={}", read_id(arg))
            }
            KernelOp::ModuleLoad | KernelOp::Kexec => format!("load_id={}", read_id(arg)),
            KernelOp::SetuidRoot => format!("new_euid={arg} old_euid={arg2}"),
            KernelOp::SetgidRoot => format!("new_egid={arg} old_egid={arg2}"),
            KernelOp::UsernsCreate => String::new(),
            KernelOp::RawSocket | KernelOp::PacketSocket => format!(
                "family={arg} type={} protocol={}",
                arg2 & 0xffff_ffff,
                arg2 >> 32
            ),
            KernelOp::PerfEventOpen => format!("type={arg} config={arg2:#x}"),
            KernelOp::Keyctl => format!("flags={arg:#x}"),
        },
        KernelSubject::Capability(c) => format!("cap={c} opts={arg:#x}"),
        KernelSubject::Syscall(s) => format!("nr={s}"),
        KernelSubject::SelfProtection(g) => match g {
            GuardOp::Signal => format!("target_pid={arg} signal={arg2}"),
            GuardOp::Ptrace => format!("target_pid={arg} mode={arg2:#x}"),
            GuardOp::Bpf => format!("cmd={arg}"),
        },
    }
}

/// The export target of a kernel record.
pub fn target(k: &KernelRecord) -> Target {
    let detail = detail(k);
    Target::Kernel(KernelTarget {
        operation: operation(k),
        detail: (!detail.is_empty()).then_some(detail),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bpf_lsm::events::Header;
    use bpf_lsm::plan::Action;

    fn record(subject: KernelSubject, arg: u64, arg2: u64, path: &[u8]) -> KernelRecord {
        KernelRecord {
            header: Header {
                action: Action::Deny,
                ktime_ns: 1,
                cgroup_id: 2,
                pid: 3,
                tid: 3,
                uid: 0,
                gid: 0,
                rule_id: Some(0),
                policy_id: Some(0),
                flags: 0,
                comm: "x".into(),
                suppressed: 0,
            },
            subject,
            arg,
            arg2,
            path: path.to_vec(),
        }
    }

    #[test]
    fn names_operations_capabilities_and_syscalls_as_policies_do() {
        let r = record(KernelSubject::Op(KernelOp::ModuleLoad), 2, 0, b"/tmp/x.ko");
        assert_eq!(operation(&r), "module_load");
        assert_eq!(detail(&r), "file=/tmp/x.ko read_id=module");
        let r = record(KernelSubject::Capability(21), 0, 0, b"");
        assert_eq!(operation(&r), "CAP_SYS_ADMIN");
        let r = record(KernelSubject::Syscall(272), 0, 0, b"");
        assert_eq!(operation(&r), "unshare");
        assert_eq!(
            operation(&record(KernelSubject::Syscall(999), 0, 0, b"")),
            "syscall_999"
        );
        let r = record(KernelSubject::Op(KernelOp::RawSocket), 2, 1 << 32 | 3, b"");
        assert_eq!(detail(&r), "family=2 type=3 protocol=1");
        let Target::Kernel(t) = target(&record(
            KernelSubject::Op(KernelOp::UsernsCreate),
            0,
            0,
            b"",
        )) else {
            panic!("not a kernel target")
        };
        assert_eq!(t.operation, "userns_create");
        assert_eq!(t.detail, None);
    }
}
