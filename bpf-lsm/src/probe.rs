//! Probes of the running kernel: what the enforcer can use on it. Each check
//! does the real thing where it can (load, and attach, a minimal program)
//! rather than trusting a config file or a list: on our own build machines
//! `/sys/kernel/security/lsm` says `bpf` and LSM programs are still refused.

use crate::objects;
use aya::maps::MapType;
use aya::programs::{KProbe, Lsm, LsmCgroup, ProgramType};
use aya::sys::{is_helper_supported, is_map_supported, is_program_supported, BpfHelper};
use aya::{Btf, Ebpf, EbpfLoader};
use std::fs;
use std::path::Path;

pub const SECURITYFS: &str = "/sys/kernel/security";
pub const LSM_LIST: &str = "/sys/kernel/security/lsm";
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";
pub const BPFFS: &str = "/sys/fs/bpf";

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    /// Present and working.
    Ok,
    /// Absent or refused by this kernel.
    Missing,
    /// The probe itself could not run.
    Error,
}

/// One probe's outcome.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: CheckStatus,
    /// What was seen, e.g. the errno of a refused load.
    pub detail: String,
}

/// Everything the probes found. The boolean fields double as the kernel
/// feature set the policy compiler plans against (`--kernel FILE`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct KernelReport {
    pub kernel_release: String,
    pub btf: bool,
    pub lsm_active: Vec<String>,
    /// BPF LSM programs load *and* attach.
    pub bpf_lsm: bool,
    pub lsm_cgroup: bool,
    pub kprobes: bool,
    pub bpf_override_return: bool,
    pub bpf_send_signal: bool,
    pub ringbuf: bool,
    pub tp_btf: bool,
    pub tracepoints: bool,
    /// `bpf_d_path` is usable in the LSM file hooks (it is wherever BPF LSM is).
    pub d_path: bool,
    /// The kernel has the `userns_create` LSM hook (Linux 6.1+).
    pub lsm_userns_create: bool,
    pub cgroup_sock_addr: bool,
    pub cgroup2_mount: Option<String>,
    /// cgroup v1 controllers are mounted beside cgroup2.
    pub cgroup_hybrid: bool,
    pub bpffs_mount: Option<String>,
    pub checks: Vec<Check>,
}

impl KernelReport {
    fn record(&mut self, name: &'static str, result: Result<String, Probe>) -> bool {
        let (status, detail, ok) = match result {
            Ok(detail) => (CheckStatus::Ok, detail, true),
            Err(Probe::Missing(detail)) => (CheckStatus::Missing, detail, false),
            Err(Probe::Error(detail)) => (CheckStatus::Error, detail, false),
        };
        self.checks.push(Check {
            name,
            status,
            detail,
        });
        ok
    }
}

/// Why a probe did not succeed.
enum Probe {
    Missing(String),
    Error(String),
}

/// One mount from /proc/self/mountinfo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub mount_point: String,
    pub fs_type: String,
}

/// Parses /proc/self/mountinfo (proc(5)): the mount point is field 5, the
/// file system type the first field after the `-` separator.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let sep = fields.iter().position(|f| *f == "-")?;
            Some(Mount {
                mount_point: unescape_mount(fields.get(4)?),
                fs_type: (*fields.get(sep + 1)?).to_string(),
            })
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape_mount(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

fn mounts() -> Vec<Mount> {
    fs::read_to_string("/proc/self/mountinfo")
        .map(|t| parse_mountinfo(&t))
        .unwrap_or_default()
}

/// Where cgroup2 is mounted (the first cgroup2 mount in
/// /proc/self/mountinfo): `/sys/fs/cgroup` on a unified host,
/// `/sys/fs/cgroup/unified` on a hybrid one.
pub fn cgroup2_mount() -> Option<std::path::PathBuf> {
    mounts()
        .into_iter()
        .find(|m| m.fs_type == "cgroup2")
        .map(|m| m.mount_point.into())
}

fn errno_text(err: &std::io::Error) -> String {
    match err.raw_os_error() {
        Some(libc::EPERM) => format!("refused with EPERM ({err})"),
        Some(libc::EINVAL) => format!("refused with EINVAL ({err})"),
        _ => err.to_string(),
    }
}

/// Mounts securityfs when it is not, so the LSM list can be read.
fn ensure_securityfs() -> Result<(), String> {
    if Path::new(LSM_LIST).exists() {
        return Ok(());
    }
    nix::mount::mount(
        Some("securityfs"),
        SECURITYFS,
        Some("securityfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|e| format!("securityfs is not mounted and mounting it at {SECURITYFS} failed: {e}"))
}

fn probe_object() -> Result<(Ebpf, Btf), Probe> {
    let btf = Btf::from_sys_fs().map_err(|e| Probe::Error(format!("kernel BTF: {e}")))?;
    let bytes = objects::by_name("probe")
        .ok_or_else(|| Probe::Error("the probe object is not embedded in this build".into()))?;
    let ebpf = EbpfLoader::new()
        .btf(Some(&btf))
        .load(bytes)
        .map_err(|e| Probe::Error(format!("cannot load the probe object: {e}")))?;
    Ok((ebpf, btf))
}

fn load_error(err: aya::programs::ProgramError) -> Probe {
    match err {
        aya::programs::ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            let log = log.trim();
            if log.is_empty() {
                Probe::Missing(errno_text(&io_error))
            } else {
                Probe::Missing(format!("{}; verifier: {log}", errno_text(&io_error)))
            }
        }
        aya::programs::ProgramError::SyscallError(e) => Probe::Missing(errno_text(&e.io_error)),
        other => Probe::Missing(other.to_string()),
    }
}

fn try_lsm(ebpf: &mut Ebpf, btf: &Btf) -> Result<String, Probe> {
    let prog: &mut Lsm = ebpf
        .program_mut("enf_probe_lsm")
        .ok_or_else(|| Probe::Error("probe program missing".into()))?
        .try_into()
        .map_err(|e| Probe::Error(format!("{e}")))?;
    prog.load("file_open", btf).map_err(load_error)?;
    // Attaching is harmless (the program allows everything) and is the only
    // proof that the hook is live; the link is dropped at once.
    let link = prog.attach().map_err(load_error)?;
    prog.detach(link).map_err(load_error)?;
    Ok("an lsm/file_open program loaded and attached".into())
}

fn try_lsm_cgroup(ebpf: &mut Ebpf, btf: &Btf) -> Result<String, Probe> {
    let prog: &mut LsmCgroup = ebpf
        .program_mut("enf_probe_lsm_cgroup")
        .ok_or_else(|| Probe::Error("probe program missing".into()))?
        .try_into()
        .map_err(|e| Probe::Error(format!("{e}")))?;
    prog.load("file_open", btf).map_err(load_error)?;
    Ok("an lsm_cgroup/file_open program loaded".into())
}

fn try_kprobe(ebpf: &mut Ebpf) -> Result<String, Probe> {
    // Without CONFIG_KPROBES there is no kprobe PMU to attach through.
    if !Path::new("/sys/bus/event_source/devices/kprobe").exists() {
        return Err(Probe::Missing(
            "no kprobe PMU in sysfs: CONFIG_KPROBES is off".into(),
        ));
    }
    let prog: &mut KProbe = ebpf
        .program_mut("enf_probe_kprobe")
        .ok_or_else(|| Probe::Error("probe program missing".into()))?
        .try_into()
        .map_err(|e| Probe::Error(format!("{e}")))?;
    prog.load().map_err(load_error)?;
    let link = prog.attach("security_file_open", 0).map_err(load_error)?;
    prog.detach(link).map_err(load_error)?;
    Ok("a kprobe on security_file_open attached".into())
}

fn try_tp_btf(ebpf: &mut Ebpf, btf: &Btf) -> Result<String, Probe> {
    let prog: &mut aya::programs::BtfTracePoint = ebpf
        .program_mut("enf_probe_tp_btf")
        .ok_or_else(|| Probe::Error("probe program missing".into()))?
        .try_into()
        .map_err(|e| Probe::Error(format!("{e}")))?;
    prog.load("sched_process_exec", btf).map_err(load_error)?;
    Ok("a tp_btf/sched_process_exec program loaded".into())
}

/// Whether the kernel's BTF has the BPF LSM attach point for `hook`.
fn lsm_hook_exists(hook: &str) -> Result<String, Probe> {
    let btf = Btf::from_sys_fs().map_err(|e| Probe::Error(format!("kernel BTF: {e}")))?;
    let name = format!("bpf_lsm_{hook}");
    match btf.id_by_type_name_kind(&name, aya_obj::btf::BtfKind::Func) {
        Ok(_) => Ok(format!("LSM hook `{hook}` present")),
        Err(_) => Err(Probe::Missing(format!(
            "this kernel has no LSM hook `{hook}`"
        ))),
    }
}

fn supported(what: &str, r: Result<bool, impl std::fmt::Display>) -> Result<String, Probe> {
    match r {
        Ok(true) => Ok(format!("{what} supported")),
        Ok(false) => Err(Probe::Missing(format!(
            "{what} not supported by this kernel"
        ))),
        Err(e) => Err(Probe::Error(format!("probing {what}: {e}"))),
    }
}

/// `bpf_override_return` needs the helper (CONFIG_BPF_KPROBE_OVERRIDE) and
/// functions marked for error injection (CONFIG_FUNCTION_ERROR_INJECTION).
fn try_override_return() -> Result<String, Probe> {
    supported(
        "helper bpf_override_return",
        is_helper_supported(ProgramType::KProbe, BpfHelper::BPF_FUNC_override_return),
    )?;
    let kallsyms = fs::read_to_string("/proc/kallsyms")
        .map_err(|e| Probe::Error(format!("cannot read /proc/kallsyms: {e}")))?;
    if kallsyms
        .lines()
        .any(|l| l.ends_with(" within_error_injection_list"))
    {
        Ok("helper present and error injection compiled in".into())
    } else {
        Err(Probe::Missing(
            "helper present but CONFIG_FUNCTION_ERROR_INJECTION is off".into(),
        ))
    }
}

/// Runs every probe. Needs root (CAP_BPF, CAP_SYS_ADMIN); without it the
/// probes report errors rather than absent features.
pub fn probe_kernel() -> KernelReport {
    let mut r = KernelReport {
        kernel_release: nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default(),
        ..KernelReport::default()
    };

    r.btf = r.record(
        "btf",
        if Path::new(VMLINUX_BTF).exists() {
            Ok(format!("{VMLINUX_BTF} present"))
        } else {
            Err(Probe::Missing(format!(
                "{VMLINUX_BTF} is missing (CONFIG_DEBUG_INFO_BTF)"
            )))
        },
    );

    let lsm = ensure_securityfs().map_err(Probe::Error).and_then(|()| {
        fs::read_to_string(LSM_LIST)
            .map_err(|e| Probe::Error(format!("cannot read {LSM_LIST}: {e}")))
    });
    let lsm_ok = match lsm {
        Ok(list) => {
            r.lsm_active = list
                .trim()
                .split(',')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
            let has_bpf = r.lsm_active.iter().any(|l| l == "bpf");
            r.record(
                "lsm_list",
                if has_bpf {
                    Ok(format!("active LSMs: {}", list.trim()))
                } else {
                    Err(Probe::Missing(format!(
                        "`bpf` is not among the active LSMs ({}); add it to the `lsm=` boot parameter",
                        list.trim()
                    )))
                },
            )
        }
        Err(e) => r.record("lsm_list", Err(e)),
    };

    let mut object = probe_object();
    let lsm_load = match &mut object {
        Ok((ebpf, btf)) => try_lsm(ebpf, btf),
        Err(Probe::Error(e)) => Err(Probe::Error(e.clone())),
        Err(Probe::Missing(e)) => Err(Probe::Missing(e.clone())),
    };
    r.bpf_lsm = r.record("bpf_lsm_load", lsm_load) && lsm_ok && r.btf;
    r.d_path = r.bpf_lsm;
    r.lsm_userns_create = r.record("lsm_userns_create", lsm_hook_exists("userns_create"));

    let with_object =
        |object: &mut Result<(Ebpf, Btf), Probe>,
         f: &dyn Fn(&mut Ebpf, &Btf) -> Result<String, Probe>| match object {
            Ok((ebpf, btf)) => f(ebpf, btf),
            Err(Probe::Error(e)) | Err(Probe::Missing(e)) => Err(Probe::Error(e.clone())),
        };
    r.lsm_cgroup = r.record("lsm_cgroup", with_object(&mut object, &try_lsm_cgroup));
    r.kprobes = r.record("kprobes", with_object(&mut object, &|e, _| try_kprobe(e)));
    r.tp_btf = r.record("tp_btf", with_object(&mut object, &try_tp_btf));
    r.tracepoints = r.record(
        "tracepoints",
        supported(
            "tracepoint programs",
            is_program_supported(ProgramType::TracePoint),
        ),
    );
    r.bpf_override_return = r.record("bpf_override_return", try_override_return());
    r.bpf_send_signal = r.record(
        "bpf_send_signal",
        supported(
            "helper bpf_send_signal",
            is_helper_supported(ProgramType::TracePoint, BpfHelper::BPF_FUNC_send_signal),
        ),
    );
    r.ringbuf = r.record(
        "ringbuf",
        supported("ring buffer maps", is_map_supported(MapType::RingBuf)),
    );
    r.cgroup_sock_addr = r.record(
        "cgroup_sock_addr",
        supported(
            "cgroup/connect programs",
            is_program_supported(ProgramType::CgroupSockAddr),
        ),
    );

    let mounts = mounts();
    r.cgroup2_mount = mounts
        .iter()
        .find(|m| m.fs_type == "cgroup2")
        .map(|m| m.mount_point.clone());
    r.cgroup_hybrid = mounts.iter().any(|m| m.fs_type == "cgroup");
    let cgroup2 = match &r.cgroup2_mount {
        Some(at) if r.cgroup_hybrid => {
            Ok(format!("cgroup2 at {at}, beside v1 controllers (hybrid)"))
        }
        Some(at) => Ok(format!("cgroup2 at {at} (unified)")),
        None => Err(Probe::Missing("no cgroup2 file system is mounted".into())),
    };
    r.record("cgroup2", cgroup2);
    r.bpffs_mount = mounts
        .iter()
        .find(|m| m.fs_type == "bpf")
        .map(|m| m.mount_point.clone());
    let bpffs = match &r.bpffs_mount {
        Some(at) => Ok(format!("bpffs at {at}")),
        None => Err(Probe::Missing(format!(
            "bpffs is not mounted (the daemon mounts it at {BPFFS})"
        ))),
    };
    r.record("bpffs", bpffs);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mountinfo_including_hybrid_cgroups() {
        let text = "\
25 30 0:23 / /sys rw,nosuid - sysfs sysfs rw
31 25 0:26 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw
32 25 0:27 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
40 25 0:30 / /sys/fs/bpf rw - bpf bpf rw
41 25 0:31 / /mnt/with\\040space rw - tmpfs tmpfs rw
garbage line
";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 5);
        assert_eq!(
            m[1],
            Mount {
                mount_point: "/sys/fs/cgroup/unified".into(),
                fs_type: "cgroup2".into()
            }
        );
        assert_eq!(m[2].fs_type, "cgroup");
        assert_eq!(m[3].fs_type, "bpf");
        assert_eq!(m[4].mount_point, "/mnt/with space");
    }
}
