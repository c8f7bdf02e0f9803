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

impl Operation {
    pub fn class_name(&self) -> &'static str {
        match self {
            Operation::Exec { .. } => "exec",
            Operation::File { .. } => "file",
            Operation::Network { .. } => "network",
            Operation::Kernel(_) => "kernel",
        }
    }
}

/// The last component of a path (`/usr/bin/bash` -> `bash`).
pub fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}
