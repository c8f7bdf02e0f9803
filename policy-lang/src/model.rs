//! The checked policy: every name resolved, every value parsed and validated. Spans are
//! kept so later stages (compile, test) can still point at the source.

use crate::condition::Expr;
use crate::diagnostic::{Diagnostics, SourceMap, Span};
use crate::net::{Cidr, PortRange};
use crate::pattern::PathPattern;
use serde::{Deserialize, Serialize};

/// Declares a closed vocabulary: a `Copy` enum with its YAML names.
macro_rules! vocabulary {
    ($(#[$m:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn from_name(s: &str) -> Option<$name> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }

            /// Bit for this value in a set mask.
            pub fn bit(self) -> u32 {
                1u32 << (self as u32)
            }
        }
    };
}

vocabulary!(
    /// What a policy does with a matching rule's verdict.
    Mode { Enforce => "enforce", Audit => "audit" }
);
vocabulary!(
    /// The default when no rule decides: `allow` (blocklist) or `deny` (allowlist).
    Posture { Allow => "allow", Deny => "deny" }
);
vocabulary!(
    /// The class of an operation; each has its own default posture.
    Class { Exec => "exec", File => "file", Network => "network", Kernel => "kernel" }
);
vocabulary!(
    /// Rule actions, least to most restrictive (`alert` is detection only).
    Action { Allow => "allow", Alert => "alert", Audit => "audit", Deny => "deny", Kill => "kill" }
);
vocabulary!(
    Severity { Info => "info", Low => "low", Medium => "medium", High => "high", Critical => "critical" }
);
vocabulary!(
    FileOp {
        Read => "read", Write => "write", Append => "append", Create => "create",
        Delete => "delete", Rename => "rename", Link => "link", Chmod => "chmod",
        Chown => "chown", Truncate => "truncate", Exec => "exec", MmapExec => "mmap_exec",
        // A chmod whose new mode has the setuid or setgid bit. Rules name them as `chmod`
        // with `mode: [setuid, setgid]`; `chmod` alone covers them too.
        ChmodSetuid => "chmod_setuid", ChmodSetgid => "chmod_setgid",
        // A new symlink whose target names the path (the link's own name is `create` and
        // `link`). No default posture covers it: only rules that name it decide.
        SymlinkTo => "symlink_to",
    }
);
vocabulary!(
    /// Special mode bits a `chmod` rule can ask for (`mode:`).
    ChmodMode { Setuid => "setuid", Setgid => "setgid" }
);

impl ChmodMode {
    /// The file operation of a chmod that sets this bit.
    pub fn op(self) -> FileOp {
        match self {
            ChmodMode::Setuid => FileOp::ChmodSetuid,
            ChmodMode::Setgid => FileOp::ChmodSetgid,
        }
    }
}

impl FileOp {
    /// Every chmod: plain, or one that sets setuid or setgid.
    pub const CHMOD_ALL: u32 = (1 << FileOp::Chmod as u32)
        | (1 << FileOp::ChmodSetuid as u32)
        | (1 << FileOp::ChmodSetgid as u32);

    /// The operation of a chmod to `mode` (the new mode, with its S_ISUID 0o4000 and S_ISGID
    /// 0o2000 bits). With both, the kernel decides each and the stricter wins; a test names
    /// one (checking refuses both).
    pub fn of_chmod(mode: u32) -> FileOp {
        if mode & 0o4000 != 0 {
            FileOp::ChmodSetuid
        } else if mode & 0o2000 != 0 {
            FileOp::ChmodSetgid
        } else {
            FileOp::Chmod
        }
    }
}
vocabulary!(
    NetOp { Connect => "connect", Bind => "bind", Listen => "listen", Send => "send" }
);
vocabulary!(
    Family { Ipv4 => "ipv4", Ipv6 => "ipv6" }
);
vocabulary!(
    Protocol { Tcp => "tcp", Udp => "udp" }
);
vocabulary!(
    /// Privileged kernel operations with their own LSM hook.
    KernelOp {
        Mount => "mount", Umount => "umount", Ptrace => "ptrace", Bpf => "bpf",
        ModuleLoad => "module_load", Kexec => "kexec", SetuidRoot => "setuid_root",
        SetgidRoot => "setgid_root", UsernsCreate => "userns_create", RawSocket => "raw_socket",
        PacketSocket => "packet_socket", PerfEventOpen => "perf_event_open", Keyctl => "keyctl",
    }
);

/// A bit set over one of the vocabularies above.
pub fn mask_of<T: Copy>(items: &[T], bit: impl Fn(T) -> u32) -> u32 {
    items.iter().fold(0, |m, &i| m | bit(i))
}

/// A value together with where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Spanned<T> {
    pub value: T,
    pub span: Span,
}

/// A checked set of policy files: what `compile` and `run_tests` take.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    pub sources: SourceMap,
    pub policies: Vec<Policy>,
    pub tests: Vec<TestCase>,
    /// Warnings found while checking (errors make loading fail instead).
    pub warnings: Diagnostics,
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    pub span: Span,
    pub description: String,
    pub select: Selector,
    pub mode: Mode,
    pub defaults: Defaults,
    /// The user accepts weaker enforcement where the kernel cannot do better.
    pub allow_downgrade: bool,
    pub rules: Vec<Rule>,
}

/// Which workloads a policy applies to. A workload is selected when it matches `host`,
/// one of `cgroups`, or the Kubernetes terms, and none of the exclusions.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    pub host: bool,
    pub cgroups: Vec<PathPattern>,
    pub namespaces: Vec<String>,
    pub labels: Vec<(String, String)>,
    pub exclude: Exclusion,
}

#[derive(Debug, Clone, Default)]
pub struct Exclusion {
    pub cgroups: Vec<PathPattern>,
    pub namespaces: Vec<String>,
    pub labels: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Defaults {
    pub exec: Posture,
    pub file: Posture,
    pub network: Posture,
    pub kernel: Posture,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            exec: Posture::Allow,
            file: Posture::Allow,
            network: Posture::Allow,
            kernel: Posture::Allow,
        }
    }
}

impl Defaults {
    pub fn get(&self, class: Class) -> Posture {
        match class {
            Class::Exec => self.exec,
            Class::File => self.file,
            Class::Network => self.network,
            Class::Kernel => self.kernel,
        }
    }

    pub fn set(&mut self, class: Class, p: Posture) {
        match class {
            Class::Exec => self.exec = p,
            Class::File => self.file = p,
            Class::Network => self.network = p,
            Class::Kernel => self.kernel = p,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub span: Span,
    pub message: String,
    pub severity: Severity,
    pub tags: Vec<String>,
    pub action: Action,
    pub action_span: Span,
    pub allow_downgrade: bool,
    pub matcher: Match,
}

#[derive(Debug, Clone)]
pub enum Match {
    Exec(ExecMatch),
    File(FileMatch),
    Network(NetworkMatch),
    Kernel(KernelMatch),
    /// A user-space condition (`alert` rules).
    Condition(Expr),
}

impl Match {
    /// Every path pattern of the match: the paths it is about and its binary filters
    /// (`from`, `except_from`, `parent`, `ancestor`). A condition has none.
    pub fn path_patterns(&self) -> Vec<&Spanned<PathPattern>> {
        match self {
            Match::Exec(e) => e.paths.iter().chain(&e.parent).chain(&e.ancestor).collect(),
            Match::File(f) => f
                .paths
                .iter()
                .chain(&f.binaries.from)
                .chain(&f.binaries.except_from)
                .collect(),
            Match::Network(n) => n
                .binaries
                .from
                .iter()
                .chain(&n.binaries.except_from)
                .collect(),
            Match::Kernel(k) => k
                .binaries
                .from
                .iter()
                .chain(&k.binaries.except_from)
                .collect(),
            Match::Condition(_) => Vec::new(),
        }
    }
}

impl Match {
    /// The operation class, or None for user-space conditions.
    pub fn class(&self) -> Option<Class> {
        match self {
            Match::Exec(_) => Some(Class::Exec),
            Match::File(_) => Some(Class::File),
            Match::Network(_) => Some(Class::Network),
            Match::Kernel(_) => Some(Class::Kernel),
            Match::Condition(_) => None,
        }
    }
}

pub type Patterns = Vec<Spanned<PathPattern>>;

/// Restricts a rule to the process's own binary.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BinaryFilter {
    /// The rule applies only to these binaries (empty: any).
    pub from: Patterns,
    /// The rule applies to every binary except these ("only sshd may ...").
    pub except_from: Patterns,
}

#[derive(Debug, Clone, Default)]
pub struct ExecMatch {
    pub paths: Patterns,
    pub parent: Patterns,
    pub ancestor: Patterns,
    pub uids: Vec<u32>,
}

#[derive(Debug, Clone)]
pub struct FileMatch {
    pub paths: Patterns,
    pub ops: u32,
    pub binaries: BinaryFilter,
}

#[derive(Debug, Clone)]
pub struct NetworkMatch {
    pub ops: u32,
    pub families: u32,
    pub protocols: u32,
    pub cidrs: Vec<Spanned<Cidr>>,
    pub ports: Vec<PortRange>,
    pub binaries: BinaryFilter,
}

#[derive(Debug, Clone, Default)]
pub struct KernelMatch {
    pub ops: Vec<KernelOp>,
    pub capabilities: Vec<u32>,
    pub syscalls: Vec<u32>,
    pub binaries: BinaryFilter,
}

/// A `tests:` case.
#[derive(Debug, Clone)]
pub struct TestCase {
    pub name: String,
    pub span: Span,
    pub event: crate::event::OwnedEvent,
    pub expect: Expectation,
}

#[derive(Debug, Clone)]
pub struct Expectation {
    pub verdict: crate::eval::Verdict,
    /// `policy/rule`, `policy/default`, or None for "any".
    pub rule: Option<String>,
    /// `policy/rule` of every alert expected to fire (None: not checked).
    pub alerts: Option<Vec<String>>,
    pub span: Span,
}
