//! Workload identity from a cgroup2 path: the container and its runtime, the
//! Kubernetes pod and its QoS class, the systemd unit.
//!
//! Runtimes name cgroups in a handful of shapes, in two driver flavours:
//!
//! | who | cgroupfs driver | systemd driver |
//! |---|---|---|
//! | Docker | `/docker/<id>` | `/system.slice/docker-<id>.scope` |
//! | containerd (CRI) | `/kubepods/<qos>/pod<uid>/<id>` | `.../cri-containerd-<id>.scope` |
//! | CRI-O | `/kubepods/<qos>/pod<uid>/crio-<id>` | `.../crio-<id>.scope` |
//! | Podman | `/libpod_parent/libpod-<id>` | `/machine.slice/libpod-<id>.scope` |
//! | Kubernetes pods | `/kubepods/burstable/pod<uid>` | `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_with_underscores>.slice` |
//!
//! Guaranteed pods sit directly under `kubepods` (`/kubepods/pod<uid>`,
//! `kubepods-pod<uid>.slice`). Container ids are 64 lower-case hex digits in
//! every runtime; nothing shorter is taken for one, so a unit such as
//! `docker-foo.service` or `cri-containerd-cafe.scope` is a unit, not a
//! container. The runtimes' monitor processes (`crio-conmon-<id>.scope`,
//! `libpod-conmon-<id>.scope`) run on the host: they belong to no container.
//!
//! Nesting (Docker in Docker, kind nodes that are Docker containers running
//! their own kubelet) is read from the root down; the innermost container
//! wins, and entering a `kubepods` hierarchy forgets the container around it
//! (the kind node), since the pod's containers are what lies inside.

use siem_export::event::QosClass;

/// Kubernetes pod QoS class.
pub type Qos = QosClass;

/// Container runtimes recognised from cgroup names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Runtime {
    Docker,
    Containerd,
    CriO,
    Podman,
}

impl Runtime {
    /// Spelled as the export schema's `container.runtime` documents it.
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Containerd => "containerd",
            Runtime::CriO => "cri-o",
            Runtime::Podman => "podman",
        }
    }
}

/// A container found in a cgroup path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ContainerRef {
    /// The full 64-hex-digit id, as the runtime reports it.
    pub id: String,
    /// `None` when the path does not say (a bare id below a cgroupfs-driver
    /// pod: containerd and Docker name those the same way).
    pub runtime: Option<Runtime>,
}

/// What a cgroup path says about the workload running in it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Workload {
    pub container: Option<ContainerRef>,
    /// The pod UID with its dashes (the systemd driver writes underscores).
    pub pod_uid: Option<String>,
    pub qos: Option<Qos>,
    /// The innermost systemd unit (`nginx.service`, `session-3.scope`,
    /// `getty@tty1.service`) that is not a container's own scope.
    pub systemd_unit: Option<String>,
}

impl Workload {
    pub fn is_empty(&self) -> bool {
        self == &Workload::default()
    }
}

const UNIT_SUFFIXES: [&str; 5] = [".service", ".scope", ".socket", ".mount", ".swap"];

/// Parses a cgroup2 path as written in `/proc/<pid>/cgroup` (after `0::`),
/// relative to the cgroup2 mount: `/system.slice/nginx.service`. A leading
/// slash, empty components and trailing whitespace are tolerated.
pub fn parse(path: &str) -> Workload {
    let mut w = Workload::default();
    // Inside a kubepods hierarchy: `Some(pod found)`.
    let mut kube: Option<bool> = None;
    let mut prev: &str = "";
    for comp in path.trim_end().split('/').filter(|c| !c.is_empty()) {
        if is_kubepods_root(comp) {
            kube = Some(false);
            w.container = None;
            w.pod_uid = None;
            w.qos = None;
            prev = comp;
            continue;
        }
        if kube == Some(false) {
            if let Some((qos, uid)) = pod_component(comp) {
                w.qos = Some(qos.unwrap_or(w.qos.unwrap_or(QosClass::Guaranteed)));
                w.pod_uid = Some(uid);
                kube = Some(true);
                prev = comp;
                continue;
            }
            if let Some(qos) = qos_component(comp) {
                w.qos = Some(qos);
                prev = comp;
                continue;
            }
        }
        if let Some(c) = container_component(comp, prev, kube == Some(true)) {
            w.container = Some(c);
            w.systemd_unit = None;
        } else if UNIT_SUFFIXES
            .iter()
            .any(|s| comp.len() > s.len() && comp.ends_with(s))
        {
            w.systemd_unit = Some(comp.to_string());
        }
        prev = comp;
    }
    if w.pod_uid.is_none() {
        // `/kubepods/burstable` itself holds no pod's processes.
        w.qos = None;
    }
    w
}

/// `kubepods` (cgroupfs), `kubepods.slice`, and prefixed systemd forms such
/// as kind's `kubelet-kubepods.slice`.
fn is_kubepods_root(comp: &str) -> bool {
    comp == "kubepods"
        || comp == "kubepods.slice"
        || comp
            .strip_suffix("-kubepods.slice")
            .is_some_and(|p| !p.is_empty() && !p.contains("kubepods"))
}

fn qos_component(comp: &str) -> Option<Qos> {
    let name = match comp.strip_suffix(".slice") {
        // `kubepods-burstable.slice`, `kubelet-kubepods-burstable.slice`
        Some(s) => s.rsplit_once("kubepods-").map(|(_, q)| q)?,
        None => comp,
    };
    match name {
        "burstable" => Some(QosClass::Burstable),
        "besteffort" => Some(QosClass::BestEffort),
        _ => None,
    }
}

/// A pod's cgroup: `pod<uid>` (cgroupfs) or
/// `[prefix-]kubepods[-<qos>]-pod<uid_with_underscores>.slice` (systemd).
/// Returns the QoS the name states, if any, and the uid with dashes.
fn pod_component(comp: &str) -> Option<(Option<Qos>, String)> {
    if let Some(uid) = comp.strip_prefix("pod") {
        return pod_uid(uid).map(|u| (None, u));
    }
    let stem = comp.strip_suffix(".slice")?;
    let (head, uid) = stem.rsplit_once("-pod")?;
    let qos = if head.ends_with("kubepods-burstable") {
        Some(QosClass::Burstable)
    } else if head.ends_with("kubepods-besteffort") {
        Some(QosClass::BestEffort)
    } else if head.ends_with("kubepods") {
        Some(QosClass::Guaranteed)
    } else {
        return None;
    };
    pod_uid(uid).map(|u| (qos, u))
}

/// A pod UID: a UUID (dashes or, from the systemd driver, underscores), or
/// the 32 hex digits of a static pod's hash.
fn pod_uid(s: &str) -> Option<String> {
    let b = s.as_bytes();
    if b.len() == 32 && b.iter().all(u8::is_ascii_hexdigit) {
        return Some(s.to_ascii_lowercase());
    }
    if b.len() != 36 {
        return None;
    }
    let mut out = String::with_capacity(36);
    for (i, &c) in b.iter().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            if c != b'-' && c != b'_' {
                return None;
            }
            out.push('-');
        } else if c.is_ascii_hexdigit() {
            out.push(char::from(c.to_ascii_lowercase()));
        } else {
            return None;
        }
    }
    Some(out)
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

fn container_component(comp: &str, parent: &str, below_pod: bool) -> Option<ContainerRef> {
    let named = |id: &str, rt: Runtime| {
        is_container_id(id).then(|| ContainerRef {
            id: id.to_string(),
            runtime: Some(rt),
        })
    };
    if let Some(stem) = comp.strip_suffix(".scope") {
        let (prefix, id) = stem.rsplit_once('-')?;
        let rt = match prefix {
            "docker" => Runtime::Docker,
            "cri-containerd" => Runtime::Containerd,
            "crio" => Runtime::CriO,
            "libpod" => Runtime::Podman,
            _ => return None,
        };
        return named(id, rt);
    }
    if let Some(id) = comp.strip_prefix("crio-") {
        return named(id, Runtime::CriO);
    }
    if let Some(id) = comp.strip_prefix("libpod-") {
        return named(id, Runtime::Podman);
    }
    if !is_container_id(comp) {
        return None;
    }
    let runtime = match parent {
        "docker" => Some(Runtime::Docker),
        "containerd.service" => Some(Runtime::Containerd),
        "libpod_parent" => Some(Runtime::Podman),
        _ if below_pod => None,
        _ => return None,
    };
    Some(ContainerRef {
        id: comp.to_string(),
        runtime,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const C1: &str = "3b1f9c0d2e4a5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8";
    const C2: &str = "a0b1c2d3e4f5061728394a5b6c7d8e9f00112233445566778899aabbccddeeff";
    const UID: &str = "5f1c2b7e-0a44-4c1e-9d2f-6b1a3e9c8d70";
    const UID_: &str = "5f1c2b7e_0a44_4c1e_9d2f_6b1a3e9c8d70";

    fn c(id: &str, rt: Option<Runtime>) -> Option<ContainerRef> {
        Some(ContainerRef {
            id: id.into(),
            runtime: rt,
        })
    }

    struct Case {
        path: String,
        container: Option<ContainerRef>,
        pod: Option<&'static str>,
        qos: Option<Qos>,
        unit: Option<&'static str>,
    }

    fn case(path: impl Into<String>) -> Case {
        Case {
            path: path.into(),
            container: None,
            pod: None,
            qos: None,
            unit: None,
        }
    }

    impl Case {
        fn container(mut self, id: &str, rt: Option<Runtime>) -> Self {
            self.container = c(id, rt);
            self
        }
        fn pod(mut self, uid: &'static str, qos: Qos) -> Self {
            self.pod = Some(uid);
            self.qos = Some(qos);
            self
        }
        fn unit(mut self, u: &'static str) -> Self {
            self.unit = Some(u);
            self
        }
    }

    fn cases() -> Vec<Case> {
        use QosClass::*;
        use Runtime::*;
        vec![
            // Plain hosts.
            case("/"),
            case(""),
            case("/init.scope").unit("init.scope"),
            case("/system.slice/nginx.service").unit("nginx.service"),
            case("/system.slice/system-getty.slice/getty@tty1.service").unit("getty@tty1.service"),
            case("/system.slice/cron.service\n").unit("cron.service"),
            case("/user.slice/user-1000.slice/session-3.scope").unit("session-3.scope"),
            case("/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome-firefox-4242.scope")
                .unit("app-gnome-firefox-4242.scope"),
            case("/user.slice/user-1000.slice/user@1000.service/init.scope").unit("init.scope"),
            case("/machine.slice/systemd-nspawn@web.service").unit("systemd-nspawn@web.service"),
            case("/system.slice/docker.socket").unit("docker.socket"),
            case("/system.slice/-.mount").unit("-.mount"),
            // Docker.
            case(format!("/system.slice/docker-{C1}.scope")).container(C1, Some(Docker)),
            case(format!("/docker/{C1}")).container(C1, Some(Docker)),
            case(format!("/docker/{C1}/docker/{C2}")).container(C2, Some(Docker)),
            case(format!("/system.slice/docker-{C1}.scope/system.slice/docker-{C2}.scope"))
                .container(C2, Some(Docker)),
            // systemd inside a container: the unit inside it counts.
            case(format!("/system.slice/docker-{C1}.scope/system.slice/nginx.service"))
                .container(C1, Some(Docker))
                .unit("nginx.service"),
            case("/system.slice/docker.service").unit("docker.service"),
            // containerd.
            case(format!("/system.slice/cri-containerd-{C1}.scope")).container(C1, Some(Containerd)),
            case(format!("/system.slice/containerd.service/{C1}")).container(C1, Some(Containerd)),
            case("/system.slice/containerd.service").unit("containerd.service"),
            // CRI-O and its monitor.
            case(format!("/machine.slice/crio-{C1}.scope")).container(C1, Some(CriO)),
            case(format!("/system.slice/crio-conmon-{C1}.scope")).unit(leak(format!("crio-conmon-{C1}.scope"))),
            // Podman: root, rootless, split cgroups, pods, monitor, cgroupfs.
            case(format!("/machine.slice/libpod-{C1}.scope")).container(C1, Some(Podman)),
            case(format!("/machine.slice/libpod-{C1}.scope/container")).container(C1, Some(Podman)),
            case(format!(
                "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{C1}.scope"
            ))
            .container(C1, Some(Podman)),
            case(format!("/machine.slice/machine-libpod_pod_{C2}.slice/libpod-{C1}.scope"))
                .container(C1, Some(Podman)),
            case(format!("/machine.slice/libpod-conmon-{C1}.scope")).unit(leak(format!("libpod-conmon-{C1}.scope"))),
            case(format!("/libpod_parent/libpod-{C1}")).container(C1, Some(Podman)),
            // Kubernetes, cgroupfs driver.
            case(format!("/kubepods/burstable/pod{UID}/{C1}"))
                .container(C1, None)
                .pod(UID, Burstable),
            case(format!("/kubepods/besteffort/pod{UID}/{C1}"))
                .container(C1, None)
                .pod(UID, BestEffort),
            case(format!("/kubepods/pod{UID}/{C1}")).container(C1, None).pod(UID, Guaranteed),
            case(format!("/kubepods/burstable/pod{UID}/crio-{C1}"))
                .container(C1, Some(CriO))
                .pod(UID, Burstable),
            case(format!("/kubepods/burstable/pod{UID}")).pod(UID, Burstable),
            case("/kubepods/burstable"),
            // Kubernetes, systemd driver.
            case(format!(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/cri-containerd-{C1}.scope"
            ))
            .container(C1, Some(Containerd))
            .pod(UID, BestEffort),
            case(format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-{C1}.scope"
            ))
            .container(C1, Some(CriO))
            .pod(UID, Burstable),
            case(format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-conmon-{C1}.scope"
            ))
            .pod(UID, Burstable)
            .unit(leak(format!("crio-conmon-{C1}.scope"))),
            case(format!("/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{C1}.scope"))
                .container(C1, Some(Containerd))
                .pod(UID, Guaranteed),
            case(format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/docker-{C1}.scope"
            ))
            .container(C1, Some(Docker))
            .pod(UID, Burstable),
            // A static pod: its uid is a 32-hex-digit hash.
            case("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0123456789abcdef0123456789abcdef.slice")
                .pod("0123456789abcdef0123456789abcdef", Burstable),
            // kind: a Docker container running a kubelet with the systemd driver.
            case(format!(
                "/system.slice/docker-{C2}.scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{UID_}.slice/cri-containerd-{C1}.scope"
            ))
            .container(C1, Some(Containerd))
            .pod(UID, BestEffort),
            // kind's pod-level cgroup: the node container is not the pod's.
            case(format!(
                "/system.slice/docker-{C2}.scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-pod{UID_}.slice"
            ))
            .pod(UID, Guaranteed),
            // kind's own kubelet is in the node container.
            case(format!("/system.slice/docker-{C2}.scope/kubelet.slice/kubelet.service"))
                .container(C2, Some(Docker))
                .unit("kubelet.service"),
            // Older kind / cgroupfs inside Docker.
            case(format!("/docker/{C2}/kubepods/burstable/pod{UID}/{C1}"))
                .container(C1, None)
                .pod(UID, Burstable),
            // Docker inside a pod's container keeps the pod.
            case(format!("/kubepods/burstable/pod{UID}/{C1}/docker/{C2}"))
                .container(C2, Some(Docker))
                .pod(UID, Burstable),
            // Junk that must not be taken for a container or a pod.
            case("/system.slice/docker-foo.service").unit("docker-foo.service"),
            case("/system.slice/docker-foo.scope").unit("docker-foo.scope"),
            case("/system.slice/cri-containerd-3b1f9c.scope").unit("cri-containerd-3b1f9c.scope"),
            case(format!("/system.slice/docker-{}.scope", C1.to_uppercase()))
                .unit(leak(format!("docker-{}.scope", C1.to_uppercase()))),
            case(format!("/system.slice/docker-{C1}0.scope")).unit(leak(format!("docker-{C1}0.scope"))),
            case(format!("/system.slice/podman-{C1}.scope")).unit(leak(format!("podman-{C1}.scope"))),
            case(format!("/{C1}")),
            case(format!("/user.slice/{C1}")),
            case(format!("/system.slice/pod{UID}.service")).unit(leak(format!("pod{UID}.service"))),
            case("/kubepods/burstable/podnot-a-uid/x"),
            case(format!("/kubepods/burstable/pod{UID}x/{C1}")),
            case(format!("/system.slice/kubepods-burstable-pod{UID_}.slice/x.service")).unit("x.service"),
            case(".service"),
            case("/system.slice/crio-conmon-1.scope").unit("crio-conmon-1.scope"),
        ]
    }

    fn leak(s: String) -> &'static str {
        Box::leak(s.into_boxed_str())
    }

    #[test]
    fn real_world_cgroup_paths() {
        let mut failures = Vec::new();
        let all = cases();
        for t in &all {
            let got = parse(&t.path);
            let want = Workload {
                container: t.container.clone(),
                pod_uid: t.pod.map(String::from),
                qos: t.qos,
                systemd_unit: t.unit.map(String::from),
            };
            if got != want {
                failures.push(format!("{}\n  got  {got:?}\n  want {want:?}", t.path));
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {} failed:\n{}",
            failures.len(),
            all.len(),
            failures.join("\n")
        );
        assert!(all.len() >= 50, "{}", all.len());
    }

    #[test]
    fn pod_uids_take_dashes_or_underscores_and_nothing_else() {
        assert_eq!(pod_uid(UID_).as_deref(), Some(UID));
        assert_eq!(pod_uid(&UID.to_uppercase()).as_deref(), Some(UID));
        assert_eq!(pod_uid("5f1c2b7e-0a44-4c1e-9d2f_6b1a3e9c8d7"), None);
        assert_eq!(pod_uid("5f1c2b7e00a44-4c1e-9d2f-6b1a3e9c8d70"), None);
        assert_eq!(pod_uid("zf1c2b7e-0a44-4c1e-9d2f-6b1a3e9c8d70"), None);
        assert_eq!(pod_uid(""), None);
    }

    #[test]
    fn runtimes_are_spelled_as_the_schema_says() {
        let names: Vec<_> = [
            Runtime::Docker,
            Runtime::Containerd,
            Runtime::CriO,
            Runtime::Podman,
        ]
        .iter()
        .map(|r| r.as_str())
        .collect();
        assert_eq!(names, ["docker", "containerd", "cri-o", "podman"]);
    }
}
