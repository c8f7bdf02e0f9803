//! Events: one operation by one process in one workload, as the kernel reports it.

use crate::model::{FileOp, KernelOp, NetOp, Protocol};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// The operation being decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Exec {
        path: String,
        /// The new program's command line (argv joined by spaces); empty when unknown.
        #[serde(default)]
        cmdline: String,
    },
    File {
        op: FileOp,
        path: String,
    },
    Network {
        op: NetOp,
        addr: IpAddr,
        port: u16,
        protocol: Protocol,
    },
    Kernel(KernelEvent),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KernelEvent {
    Op(KernelOp),
    Capability(u32),
    Syscall(u32),
}

/// The acting process.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Process {
    pub exe: String,
    #[serde(default)]
    pub cmdline: String,
    #[serde(default)]
    pub uid: u32,
    /// Executables of the ancestors, parent first.
    #[serde(default)]
    pub ancestors: Vec<String>,
}

/// Kubernetes metadata the daemon attaches to a cgroup.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Pod {
    pub namespace: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub labels: Vec<(String, String)>,
}

/// A complete event. The evaluator borrows it and does not allocate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OwnedEvent {
    pub process: Process,
    /// cgroup2 path of the workload (`/` for the host root).
    pub cgroup: String,
    pub container_id: Option<String>,
    pub pod: Option<Pod>,
    pub op: Operation,
}

/// What a condition reads of an event besides its operation: the acting process and its
/// workload. [`OwnedEvent`] is one; a daemon can implement it on a borrowed view of its own
/// event that computes a field only when a condition reads it.
pub trait Subject {
    fn exe(&self) -> &str;
    /// The command line, argv joined by spaces.
    fn cmdline(&self) -> &str;
    fn uid(&self) -> u32;
    /// The executable of the `i`-th ancestor, parent first (empty when unknown); `None`
    /// past the last.
    fn ancestor(&self, i: usize) -> Option<&str>;
    /// cgroup2 path of the workload (`/` for the host root).
    fn cgroup(&self) -> &str;
    fn container_id(&self) -> Option<&str>;
    /// Namespace and name of the pod.
    fn pod(&self) -> Option<(&str, &str)>;
}

impl Subject for OwnedEvent {
    fn exe(&self) -> &str {
        &self.process.exe
    }
    fn cmdline(&self) -> &str {
        &self.process.cmdline
    }
    fn uid(&self) -> u32 {
        self.process.uid
    }
    fn ancestor(&self, i: usize) -> Option<&str> {
        self.process.ancestors.get(i).map(String::as_str)
    }
    fn cgroup(&self) -> &str {
        &self.cgroup
    }
    fn container_id(&self) -> Option<&str> {
        self.container_id.as_deref()
    }
    fn pod(&self) -> Option<(&str, &str)> {
        self.pod
            .as_ref()
            .map(|p| (p.namespace.as_str(), p.name.as_str()))
    }
}

/// Event classes as bits, for [`crate::condition::Compiled::classes`].
pub mod class {
    pub const EXEC: u8 = 1;
    pub const FILE: u8 = 2;
    pub const NETWORK: u8 = 4;
    pub const KERNEL: u8 = 8;
    pub const ALL: u8 = EXEC | FILE | NETWORK | KERNEL;

    /// The bit of a class named as `evt.class` names it; 0 for no class.
    pub fn of_name(name: &str) -> u8 {
        match name {
            "exec" => EXEC,
            "file" => FILE,
            "network" => NETWORK,
            "kernel" => KERNEL,
            _ => 0,
        }
    }
}

impl Operation {
    /// This operation's class bit (see [`class`]).
    pub fn class_bit(&self) -> u8 {
        class::of_name(self.class_name())
    }

    pub fn class_name(&self) -> &'static str {
        match self {
            Operation::Exec { .. } => "exec",
            Operation::File { .. } => "file",
            Operation::Network { .. } => "network",
            Operation::Kernel(_) => "kernel",
        }
    }
}

/// The reserved path an executable memfd is matched as by `exec` rules, whatever its name
/// (the kernel decides by the file: an unlinked file on its internal mount).
pub const MEMFD_EXEC_PATH: &str = "/memfd:";

/// The path `exec` rules match for an executed `path`: [`MEMFD_EXEC_PATH`] for a memfd, which
/// the kernel names `/memfd:NAME (deleted)` (an event has only the path, so the reference
/// evaluator goes by that form), else the path itself.
pub fn exec_match_path(path: &str) -> &str {
    if path.starts_with(MEMFD_EXEC_PATH) && path.ends_with(" (deleted)") {
        MEMFD_EXEC_PATH
    } else {
        path
    }
}

/// The last component of a path (`/usr/bin/bash` -> `bash`).
pub fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}
