//! The export schema: [`SecurityEvent`], our native JSON event format.
//!
//! Every other output format (ECS, OCSF, CEF, syslog) is a translation of
//! this struct, and the outbox stores it, so changes here are schema changes:
//! add optional fields freely, never rename or repurpose one without bumping
//! [`SCHEMA_VERSION`]. The field-by-field reference is `README.md`.

mod id;
mod text;
pub(crate) mod timestamp;

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use id::{EventId, EventIdError, IdParts};
pub use text::{ByteText, UnescapeError};
pub use timestamp::{Timestamp, TimestampError};

use crate::severity::Severity;

/// Version of the native JSON schema written by this build.
pub const SCHEMA_VERSION: u32 = 1;

/// One security-relevant decision or observation, ready for export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityEvent {
    pub schema_version: u32,
    pub id: EventId,
    /// Wall-clock time of the kernel event.
    pub time: Timestamp,
    /// Raw kernel timestamp (ns since boot, `bpf_ktime_get_boot_ns`): exact
    /// ordering within a boot, immune to wall-clock steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_ns: Option<u64>,
    pub host: Host,
    pub verdict: Verdict,
    pub class: EventClass,
    /// The hook-level operation, e.g. `open`, `exec`, `connect`, `bpf`.
    pub operation: String,
    pub severity: Severity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub message: String,
    /// Labels; MITRE ATT&CK technique ids (`T1059`, `T1059.004`) among them
    /// are picked out by [`SecurityEvent::attack_techniques`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<Process>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<Cgroup>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Container>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<Kubernetes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    /// Events like this one (same cgroup, policy and rule) the kernel's rate limit did not send
    /// since the last one sent: this event stands for itself and them.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub suppressed: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    pub name: String,
}

/// The acting task. Kernel naming: `pid` is the task (thread) id, what
/// `gettid()` returns; `tgid` is the thread-group id, what userspace calls
/// the PID. Both are in the initial PID namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    pub pid: u32,
    pub tgid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ppid: Option<u32>,
    pub uid: u32,
    pub gid: u32,
    /// Resolved from `uid` in user space, when possible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `task->comm`: at most 15 bytes, set by the process itself.
    pub comm: ByteText,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<ByteText>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub argv: Vec<ByteText>,
    /// The kernel-side capture hit its size limit; `argv` is a prefix.
    #[serde(default, skip_serializing_if = "is_false")]
    pub argv_truncated: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<ByteText>,
    /// Opaque id of this process image (changes on every exec), for joining
    /// events of one process across a SIEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Timestamp>,
    /// Parent first, then grandparent, and so on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ancestors: Vec<Ancestor>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ancestor {
    pub pid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<ByteText>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cgroup {
    /// cgroup v2 id (the cgroup directory's inode number).
    pub id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<ByteText>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    pub id: String,
    /// e.g. `containerd`, `cri-o`, `docker`, `podman`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kubernetes {
    pub namespace: String,
    pub pod_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos: Option<QosClass>,
}

/// What the operation was applied to. Serialized as an object with exactly
/// one key naming the kind (`{"file": {...}}`), so each kind's fields have
/// their own names in the SIEM (`target.file.path` vs `target.exec.path`)
/// and never collide in an index mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    File(FileTarget),
    Exec(ExecTarget),
    Network(NetworkTarget),
    Kernel(KernelTarget),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileTarget {
    pub path: ByteText,
    /// `open(2)` flags as the kernel saw them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<FileMode>,
    /// The file-level access, e.g. `read`, `write`, `unlink`, `rename`,
    /// `chmod`, when it says more than the event's `operation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// The kernel-side path buffer was too small; `path` is a suffix
    /// (paths are resolved from the leaf upward, so the leaf survives).
    #[serde(default, skip_serializing_if = "is_false")]
    pub path_truncated: bool,
    /// The operation's second path: a rename's destination, or the existing
    /// file a hard link is made to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub second_path: Option<ByteText>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecTarget {
    pub path: ByteText,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub argv: Vec<ByteText>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub argv_truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkTarget {
    pub family: AddressFamily,
    /// Absent when the kernel reported a protocol outside [`Protocol`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    pub direction: Direction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_ip: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_ip: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_port: Option<u16>,
    /// Socket path for `unix` family sockets (abstract sockets start with
    /// `\x00`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unix_path: Option<ByteText>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelTarget {
    /// e.g. `bpf`, `module_load`, `ptrace`, `kexec`, `mount`.
    pub operation: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A name was not one of an enum's wire spellings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{value}`, expected one of: {expected}")]
pub struct UnknownName {
    pub kind: &'static str,
    pub value: String,
    pub expected: String,
}

/// A closed set of names, with serde, `Display` and `FromStr` all using the
/// same spelling (config files and filters parse the same words the JSON
/// carries).
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($kind:literal) {
            $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;

            fn from_str(s: &str) -> Result<Self, UnknownName> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownName {
                        kind: $kind,
                        value: s.to_owned(),
                        expected: [$($text),+].join(", "),
                    }),
                }
            }
        }
    };
}

wire_enum! {
    /// What the enforcer did.
    pub enum Verdict ("verdict") {
        /// Permitted and recorded (allow-with-audit rules).
        Allowed => "allowed",
        /// Blocked: the hook returned an error to the caller.
        Denied => "denied",
        /// Permitted, matched an audit-only rule.
        Audited => "audited",
        /// The offending process was killed.
        Killed => "killed",
        /// Permitted, raised as an alert.
        Alerted => "alerted",
    }
}

wire_enum! {
    /// Which family of hooks produced the event.
    pub enum EventClass ("event class") {
        Exec => "exec",
        File => "file",
        Network => "network",
        Kernel => "kernel",
        Process => "process",
    }
}

wire_enum! {
    pub enum AddressFamily ("address family") {
        Ipv4 => "ipv4",
        Ipv6 => "ipv6",
        Unix => "unix",
    }
}

wire_enum! {
    pub enum Protocol ("protocol") {
        Tcp => "tcp",
        Udp => "udp",
        Icmp => "icmp",
        Icmpv6 => "icmpv6",
        Sctp => "sctp",
        Raw => "raw",
    }
}

wire_enum! {
    /// From this host's point of view (ECS `network.direction` semantics).
    pub enum Direction ("direction") {
        Ingress => "ingress",
        Egress => "egress",
    }
}

wire_enum! {
    /// Pod QoS class, spelled as Kubernetes spells it.
    pub enum QosClass ("QoS class") {
        Guaranteed => "Guaranteed",
        Burstable => "Burstable",
        BestEffort => "BestEffort",
    }
}

impl Protocol {
    /// From an IANA protocol number (`IPPROTO_*`); `None` when unmodelled.
    pub fn from_iana(n: u8) -> Option<Self> {
        match n {
            1 => Some(Protocol::Icmp),
            6 => Some(Protocol::Tcp),
            17 => Some(Protocol::Udp),
            58 => Some(Protocol::Icmpv6),
            132 => Some(Protocol::Sctp),
            255 => Some(Protocol::Raw),
            _ => None,
        }
    }
}

/// File permission bits (and optionally the type bits of `st_mode`).
/// Serialized as an octal string (`"0644"`, `"100755"`), the form people
/// search for and the one ECS's `file.mode` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileMode(pub u32);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid file mode `{0}`: expected 1 to 6 octal digits, at most 177777")]
pub struct FileModeError(pub String);

impl fmt::Display for FileMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

impl FromStr for FileMode {
    type Err = FileModeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok_shape = (1..=6).contains(&s.len()) && s.bytes().all(|b| (b'0'..=b'7').contains(&b));
        match u32::from_str_radix(s, 8) {
            Ok(v) if ok_shape && v <= 0o177_777 => Ok(FileMode(v)),
            _ => Err(FileModeError(s.to_owned())),
        }
    }
}

impl Serialize for FileMode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for FileMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Why bytes could not be turned into a [`SecurityEvent`].
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON, or the JSON does not fit the schema. `field` is the dotted
    /// path of the offending field (`.` for the event itself).
    #[error("invalid event at `{field}`: {source}")]
    Schema {
        field: String,
        #[source]
        source: serde_json::Error,
    },
    /// Well-formed, but a value breaks a rule the types cannot express.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
}

impl DecodeError {
    /// The dotted path of the offending field.
    pub fn field(&self) -> &str {
        match self {
            DecodeError::Schema { field, .. } => field,
            DecodeError::Invalid(v) => &v.field,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid event at `{field}`: {reason}")]
pub struct ValidationError {
    pub field: String,
    pub reason: String,
}

impl ValidationError {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl SecurityEvent {
    /// A new event with a random id; everything optional left empty.
    pub fn new(
        time: Timestamp,
        host: impl Into<String>,
        verdict: Verdict,
        class: EventClass,
        operation: impl Into<String>,
        severity: Severity,
    ) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            id: EventId::generate(time),
            time,
            kernel_ns: None,
            host: Host { name: host.into() },
            verdict,
            class,
            operation: operation.into(),
            severity,
            policy: None,
            rule: None,
            message: String::new(),
            tags: Vec::new(),
            process: None,
            cgroup: None,
            container: None,
            kubernetes: None,
            target: None,
            suppressed: 0,
        }
    }

    /// Parses and validates one native JSON event. Prefer this over plain
    /// `serde_json::from_slice`: errors name the failing field, and
    /// [`SecurityEvent::validate`] runs.
    pub fn from_json(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let ev: SecurityEvent = match serde_path_to_error::deserialize(&mut de) {
            Ok(ev) => ev,
            Err(err) => {
                let field = err.path().to_string();
                return Err(DecodeError::Schema {
                    field,
                    source: err.into_inner(),
                });
            }
        };
        // Trailing garbage after the object is an error, not ignored.
        de.end().map_err(|source| DecodeError::Schema {
            field: ".".to_owned(),
            source,
        })?;
        ev.validate()?;
        Ok(ev)
    }

    /// Rules the types do not enforce. Encoders may assume they hold.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.schema_version != SCHEMA_VERSION {
            return Err(ValidationError::new(
                "schema_version",
                format!(
                    "unsupported version {}, this build reads {SCHEMA_VERSION}",
                    self.schema_version
                ),
            ));
        }
        non_empty("host.name", &self.host.name)?;
        non_empty("operation", &self.operation)?;
        if let Some(p) = &self.policy {
            non_empty("policy", p)?;
        }
        if let Some(r) = &self.rule {
            non_empty("rule", r)?;
        }
        for (i, tag) in self.tags.iter().enumerate() {
            if tag.is_empty() || tag.chars().any(char::is_control) {
                return Err(ValidationError::new(
                    format!("tags[{i}]"),
                    "must be non-empty and free of control characters",
                ));
            }
        }
        if let Some(c) = &self.container {
            non_empty("container.id", &c.id)?;
        }
        if let Some(k) = &self.kubernetes {
            non_empty("kubernetes.namespace", &k.namespace)?;
            non_empty("kubernetes.pod_name", &k.pod_name)?;
        }
        match &self.target {
            None => {}
            Some(Target::File(f)) => non_empty("target.file.path", &f.path)?,
            Some(Target::Exec(e)) => non_empty("target.exec.path", &e.path)?,
            Some(Target::Kernel(k)) => non_empty("target.kernel.operation", &k.operation)?,
            Some(Target::Network(n)) => n.validate()?,
        }
        Ok(())
    }

    /// The tags that are MITRE ATT&CK technique or sub-technique ids.
    pub fn attack_techniques(&self) -> impl Iterator<Item = &str> {
        self.tags
            .iter()
            .map(String::as_str)
            .filter(|t| is_attack_technique(t))
    }
}

impl NetworkTarget {
    fn validate(&self) -> Result<(), ValidationError> {
        let ips = [
            ("target.network.src_ip", self.src_ip),
            ("target.network.dst_ip", self.dst_ip),
        ];
        for (field, ip) in ips {
            let ok = match (self.family, ip) {
                (_, None) => true,
                (AddressFamily::Ipv4, Some(ip)) => ip.is_ipv4(),
                // v4-mapped addresses are IPv6 addresses on the wire.
                (AddressFamily::Ipv6, Some(ip)) => ip.is_ipv6(),
                (AddressFamily::Unix, Some(_)) => false,
            };
            if !ok {
                return Err(ValidationError::new(
                    field,
                    format!("address does not belong to family `{}`", self.family),
                ));
            }
        }
        if self.family == AddressFamily::Unix {
            if self.src_port.is_some() || self.dst_port.is_some() {
                return Err(ValidationError::new(
                    "target.network",
                    "unix sockets have no ports",
                ));
            }
        } else if self.unix_path.is_some() {
            return Err(ValidationError::new(
                "target.network.unix_path",
                "only unix sockets have a path",
            ));
        }
        Ok(())
    }
}

fn non_empty(field: &str, v: &(impl AsRef<[u8]> + ?Sized)) -> Result<(), ValidationError> {
    if v.as_ref().is_empty() {
        Err(ValidationError::new(field, "must not be empty"))
    } else {
        Ok(())
    }
}

/// `T` + 4 digits, optionally `.` + 3 digits (`T1059`, `T1059.004`).
pub fn is_attack_technique(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    match b.len() {
        5 => b[0] == b'T' && digits(1..5),
        9 => b[0] == b'T' && digits(1..5) && b[5] == b'.' && digits(6..9),
        _ => false,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    /// An event with every field populated, for round-trip and encoder tests.
    pub(crate) fn full_event() -> SecurityEvent {
        let time = Timestamp::from_unix_nanos(1_718_000_000_123_456_789);
        let parts = IdParts {
            boot_id: [7; 16],
            kernel_ns: 5_000_000_123,
            cpu: 1,
            seq: 99,
        };
        SecurityEvent {
            schema_version: SCHEMA_VERSION,
            id: EventId::from_parts(time, &parts),
            time,
            kernel_ns: Some(parts.kernel_ns),
            host: Host {
                name: "node-a".into(),
            },
            verdict: Verdict::Denied,
            class: EventClass::File,
            operation: "open".into(),
            severity: Severity::High,
            policy: Some("baseline".into()),
            rule: Some("no-shadow-read".into()),
            message: "read of /etc/shadow denied".into(),
            tags: vec!["T1003.008".into(), "credential-access".into()],
            process: Some(Process {
                pid: 4242,
                tgid: 4240,
                ppid: Some(1),
                uid: 1000,
                gid: 1000,
                user: Some("alice".into()),
                comm: "cat".into(),
                exe: Some("/usr/bin/cat".into()),
                argv: vec!["cat".into(), "/etc/shadow".into()],
                argv_truncated: true,
                cwd: Some("/home/alice".into()),
                exec_id: Some("bm9kZS1hOjUwMDA6NDI0MA".into()),
                start_time: Some(Timestamp::from_unix_nanos(1_717_999_999_000_000_000)),
                ancestors: vec![Ancestor {
                    pid: 1,
                    exe: Some("/usr/lib/systemd/systemd".into()),
                    exec_id: Some("bm9kZS1hOjE6MQ".into()),
                }],
            }),
            cgroup: Some(Cgroup {
                id: 1234,
                path: Some("/kubepods.slice/pod1".into()),
            }),
            container: Some(Container {
                id: "3f2a".into(),
                runtime: Some("containerd".into()),
            }),
            kubernetes: Some(Kubernetes {
                namespace: "default".into(),
                pod_name: "web-0".into(),
                pod_uid: Some("c0ffee".into()),
                qos: Some(QosClass::BestEffort),
            }),
            target: Some(Target::File(FileTarget {
                path: "/etc/shadow".into(),
                flags: Some(0o100000),
                mode: Some(FileMode(0o640)),
                operation: Some("read".into()),
                path_truncated: true,
                second_path: None,
            })),
            suppressed: 0,
        }
    }

    /// An exec event full of characters every format must escape: `|`,
    /// `=`, `]`, quotes, backslashes, CR/LF, and bytes that are not UTF-8.
    pub(crate) fn nasty_event() -> SecurityEvent {
        let time = Timestamp::from_unix_nanos(1_718_000_000_999_999_999);
        let mut ev = SecurityEvent::new(
            time,
            "node|a=b",
            Verdict::Denied,
            EventClass::Exec,
            "exec",
            Severity::Critical,
        );
        ev.id = EventId::from_time_and_tail(time, 42);
        ev.policy = Some("p|1".into());
        ev.rule = Some("r=1".into());
        ev.message = "sh -c \"x|y=z]\" \\ line1\r\nline2".into();
        ev.tags = vec!["T1059.004".into(), "T1611".into()];
        ev.process = Some(Process {
            pid: 7,
            tgid: 7,
            ppid: None,
            uid: 0,
            gid: 0,
            user: None,
            comm: ByteText::from(&b"a]b\"c"[..]),
            exe: Some(ByteText::from(&b"/tmp/\xff=x"[..])),
            argv: vec![],
            argv_truncated: false,
            cwd: None,
            exec_id: None,
            start_time: None,
            ancestors: vec![],
        });
        ev.target = Some(Target::Exec(ExecTarget {
            path: ByteText::from(&b"/tmp/e\\vil\n"[..]),
            argv: vec!["sh".into(), "-c".into(), "a=b | c]".into()],
            argv_truncated: false,
        }));
        ev
    }

    pub(crate) fn minimal_event() -> SecurityEvent {
        let time = Timestamp::from_unix_nanos(1_718_000_000_000_000_000);
        let mut ev = SecurityEvent::new(
            time,
            "node-a",
            Verdict::Audited,
            EventClass::Exec,
            "exec",
            Severity::Low,
        );
        ev.id = EventId::from_time_and_tail(time, 1);
        ev
    }

    fn round_trip(ev: &SecurityEvent) {
        let json = serde_json::to_vec(ev).unwrap();
        let back = SecurityEvent::from_json(&json).unwrap();
        assert_eq!(&back, ev, "{}", String::from_utf8_lossy(&json));
    }

    #[test]
    fn full_event_round_trips() {
        round_trip(&full_event());
    }

    #[test]
    fn every_target_kind_round_trips() {
        let targets = [
            Target::Exec(ExecTarget {
                path: "/bin/sh".into(),
                argv: vec!["sh".into(), "-c".into(), "id".into()],
                argv_truncated: false,
            }),
            Target::Network(NetworkTarget {
                family: AddressFamily::Ipv6,
                protocol: Some(Protocol::Tcp),
                direction: Direction::Egress,
                src_ip: Some(IpAddr::V6(Ipv6Addr::LOCALHOST)),
                src_port: Some(40000),
                dst_ip: Some("2001:db8::1".parse().unwrap()),
                dst_port: Some(443),
                unix_path: None,
            }),
            Target::Network(NetworkTarget {
                family: AddressFamily::Unix,
                protocol: None,
                direction: Direction::Egress,
                src_ip: None,
                src_port: None,
                dst_ip: None,
                dst_port: None,
                unix_path: Some(ByteText::from(&b"\0abstract"[..])),
            }),
            Target::Kernel(KernelTarget {
                operation: "module_load".into(),
                detail: Some("name=evil".into()),
            }),
        ];
        for t in targets {
            let mut ev = minimal_event();
            ev.target = Some(t);
            round_trip(&ev);
        }
    }

    #[test]
    fn absent_optional_fields_are_omitted() {
        let ev = minimal_event();
        let text = serde_json::to_string(&ev).unwrap();
        // Field order is the documented one (humans read these files).
        let want = format!(
            r#"{{"schema_version":1,"id":"{}","time":"2024-06-10T06:13:20.000000000Z","host":{{"name":"node-a"}},"verdict":"audited","class":"exec","operation":"exec","severity":"low","message":""}}"#,
            ev.id
        );
        assert_eq!(text, want);
        // Same for nested objects and `false` flags.
        let mut ev = minimal_event();
        ev.target = Some(Target::File(FileTarget {
            path: "/x".into(),
            flags: None,
            mode: None,
            operation: None,
            path_truncated: false,
            second_path: None,
        }));
        let json = serde_json::to_string(&ev).unwrap();
        assert!(
            json.ends_with(r#""target":{"file":{"path":"/x"}}}"#),
            "{json}"
        );
    }

    #[test]
    fn wire_spellings() {
        let json = serde_json::to_value(full_event()).unwrap();
        assert_eq!(json["verdict"], "denied");
        assert_eq!(json["class"], "file");
        assert_eq!(json["severity"], "high");
        assert_eq!(json["time"], "2024-06-10T06:13:20.123456789Z");
        assert_eq!(json["kubernetes"]["qos"], "BestEffort");
        assert_eq!(json["target"]["file"]["mode"], "0640");
        assert_eq!(json["target"]["file"]["flags"], 32768);
        assert_eq!(json["process"]["argv_truncated"], true);
        for v in Verdict::ALL {
            assert_eq!(v.as_str().parse::<Verdict>(), Ok(*v));
        }
        let err = "blocked".parse::<Verdict>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown verdict `blocked`, expected one of: allowed, denied, audited, killed, alerted"
        );
    }

    #[test]
    fn odd_strings_survive_and_stay_on_one_line() {
        let mut ev = full_event();
        ev.message = "line1\nline2\r\n\"quoted\" \\ back\0nul \u{2028} é".into();
        let p = ev.process.as_mut().unwrap();
        p.argv = vec![
            ByteText::from(&b"--name=\xff\xfe"[..]),
            ByteText::from("tab\there"),
            ByteText::from("\\x41 literal"),
        ];
        p.comm = ByteText::from(&b"ev\x00il\n"[..]);
        ev.target = Some(Target::File(FileTarget {
            path: ByteText::from(&b"/tmp/\xc3(\n\"x\""[..]),
            flags: None,
            mode: None,
            operation: None,
            path_truncated: false,
            second_path: None,
        }));
        let json = serde_json::to_string(&ev).unwrap();
        assert!(!json.contains('\n') && !json.contains('\r') && !json.contains('\0'));
        assert!(json.contains(r#""--name=\\xff\\xfe""#), "{json}");
        assert!(json.contains(r#""\\\\x41 literal""#), "{json}");
        assert!(json.contains(r#""path":"/tmp/\\xc3(\n\"x\"""#), "{json}");
        round_trip(&ev);
    }

    fn decode_err(json: &serde_json::Value) -> DecodeError {
        SecurityEvent::from_json(&serde_json::to_vec(json).unwrap()).unwrap_err()
    }

    #[test]
    fn decode_errors_name_the_field() {
        let base = serde_json::to_value(full_event()).unwrap();
        let cases: Vec<(&str, serde_json::Value, &str)> = vec![
            ("/process/pid", "x".into(), "process.pid"),
            (
                "/process/ancestors/0/pid",
                (-1).into(),
                "process.ancestors[0].pid",
            ),
            ("/verdict", "blocked".into(), "verdict"),
            ("/severity", "urgent".into(), "severity"),
            ("/id", "not-an-id".into(), "id"),
            ("/time", "2024-02-30T00:00:00Z".into(), "time"),
            ("/target/file/mode", "0999".into(), "target.file.mode"),
            ("/target/file/path", "bad\\q".into(), "target.file.path"),
            ("/kubernetes/qos", "besteffort".into(), "kubernetes.qos"),
        ];
        for (pointer, value, field) in cases {
            let mut json = base.clone();
            *json.pointer_mut(pointer).unwrap() = value;
            let err = decode_err(&json);
            assert_eq!(err.field(), field, "{err}");
            assert!(err.to_string().contains(&format!("`{field}`")), "{err}");
        }

        let mut json = base.clone();
        json.as_object_mut().unwrap().remove("host");
        let err = decode_err(&json);
        assert!(err.to_string().contains("missing field `host`"), "{err}");

        let mut json = base.clone();
        json["process"].as_object_mut().unwrap().remove("uid");
        let err = decode_err(&json);
        assert_eq!(err.field(), "process");
        assert!(err.to_string().contains("missing field `uid`"), "{err}");

        let mut json = base.clone();
        json["target"] = serde_json::json!({"socket": {}});
        assert_eq!(decode_err(&json).field(), "target");
    }

    #[test]
    fn validation_errors_name_the_field() {
        type Mutation = fn(&mut SecurityEvent);
        let cases: Vec<(Mutation, &str)> = vec![
            (|e| e.schema_version = 2, "schema_version"),
            (|e| e.host.name.clear(), "host.name"),
            (|e| e.operation.clear(), "operation"),
            (|e| e.policy = Some(String::new()), "policy"),
            (|e| e.tags.push("a\nb".into()), "tags[2]"),
            (
                |e| e.kubernetes.as_mut().unwrap().pod_name.clear(),
                "kubernetes.pod_name",
            ),
            (
                |e| {
                    e.target = Some(Target::Network(NetworkTarget {
                        family: AddressFamily::Ipv4,
                        protocol: Some(Protocol::Udp),
                        direction: Direction::Ingress,
                        src_ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                        src_port: None,
                        dst_ip: Some(IpAddr::V6(Ipv6Addr::LOCALHOST)),
                        dst_port: None,
                        unix_path: None,
                    }))
                },
                "target.network.dst_ip",
            ),
        ];
        for (mutate, field) in cases {
            let mut ev = full_event();
            mutate(&mut ev);
            let err = SecurityEvent::from_json(&serde_json::to_vec(&ev).unwrap()).unwrap_err();
            assert_eq!(err.field(), field, "{err}");
        }
    }

    #[test]
    fn rejects_trailing_data_and_non_json() {
        let mut bytes = serde_json::to_vec(&minimal_event()).unwrap();
        bytes.extend_from_slice(b" {}");
        assert!(SecurityEvent::from_json(&bytes).is_err());
        assert!(SecurityEvent::from_json(b"\xff").is_err());
        // Trailing whitespace (a JSON-lines newline) is fine.
        let mut bytes = serde_json::to_vec(&minimal_event()).unwrap();
        bytes.push(b'\n');
        assert!(SecurityEvent::from_json(&bytes).is_ok());
    }

    #[test]
    fn unknown_fields_are_ignored_for_forward_compatibility() {
        let mut json = serde_json::to_value(minimal_event()).unwrap();
        json["added_in_a_later_minor"] = 1.into();
        assert!(SecurityEvent::from_json(&serde_json::to_vec(&json).unwrap()).is_ok());
    }

    #[test]
    fn file_mode_text() {
        assert_eq!(FileMode(0o644).to_string(), "0644");
        assert_eq!(FileMode(0o100755).to_string(), "100755");
        assert_eq!(FileMode(0).to_string(), "0000");
        assert_eq!("755".parse::<FileMode>(), Ok(FileMode(0o755)));
        for bad in ["", "8", "-1", "+7", "0o644", "1777777", "377777"] {
            assert!(bad.parse::<FileMode>().is_err(), "{bad}");
        }
    }

    #[test]
    fn attack_technique_ids() {
        assert!(is_attack_technique("T1059"));
        assert!(is_attack_technique("T1059.004"));
        for bad in ["t1059", "T105", "T1059.04", "TA0002", "T1059.0041", "T10a9"] {
            assert!(!is_attack_technique(bad), "{bad}");
        }
        let ev = full_event();
        assert_eq!(ev.attack_techniques().collect::<Vec<_>>(), ["T1003.008"]);
    }

    #[test]
    fn protocol_numbers() {
        assert_eq!(Protocol::from_iana(6), Some(Protocol::Tcp));
        assert_eq!(Protocol::from_iana(58), Some(Protocol::Icmpv6));
        assert_eq!(Protocol::from_iana(47), None);
    }
}
