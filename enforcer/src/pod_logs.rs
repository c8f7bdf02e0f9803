//! The kubelet's pod log directory: `<dir>/<namespace>_<pod name>_<pod uid>` for every pod on
//! this node, which says each pod's namespace and name without the Kubernetes API. Namespace
//! selectors use it at load (pods that already run) and the kernel watches it for the pods
//! that come later (bpf-lsm's `pods` module); enrichment names pods from it.

use std::collections::HashMap;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use bpf_lsm::guard::ExeId;

/// The kubelet's default (`podLogsDir` in its configuration).
pub const DEFAULT_POD_LOGS_DIR: &str = "/var/log/pods";

/// A pod as its log directory names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodName {
    pub namespace: String,
    pub name: String,
}

/// The pods of one node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodDirectory {
    /// The directory as the kernel names it.
    pub id: ExeId,
    /// Pod uid (lowercase, dashes) -> its namespace and name.
    pub pods: HashMap<String, PodName>,
}

impl PodDirectory {
    /// Reads `dir`, creating it (as the kubelet would, mode 0755) when it does not exist yet:
    /// the kernel recognises a pod's log directory by the inode of its parent.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .with_context(|| {
                    format!(
                        "creating the pod log directory `{}` (namespace selectors watch it for \
                         new pods; set `pod_logs_dir` to the kubelet's `podLogsDir`)",
                        dir.display()
                    )
                })?;
        }
        let meta = std::fs::metadata(dir)
            .with_context(|| format!("reading the pod log directory `{}`", dir.display()))?;
        if !meta.is_dir() {
            anyhow::bail!(
                "the pod log directory `{}` is not a directory; set `pod_logs_dir` to the \
                 kubelet's `podLogsDir`",
                dir.display()
            );
        }
        let mut pods = HashMap::new();
        let entries = std::fs::read_dir(dir)
            .with_context(|| format!("listing the pod log directory `{}`", dir.display()))?;
        for entry in entries.flatten() {
            if let Some((uid, pod)) = entry.file_name().to_str().and_then(parse_entry) {
                pods.insert(uid, pod);
            }
        }
        Ok(PodDirectory {
            id: ExeId::from_stat(meta.dev(), meta.ino()),
            pods,
        })
    }

    pub fn namespace_of(&self, uid: &str) -> Option<&str> {
        self.pods.get(uid).map(|p| p.namespace.as_str())
    }
}

/// Finds the pod with `uid` in `dir` (for enrichment, when a pod is not known yet).
pub fn lookup(dir: &Path, uid: &str) -> Option<PodName> {
    let suffix = format!("_{uid}");
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| n.ends_with(&suffix))
        .find_map(|n| parse_entry(&n).map(|(_, pod)| pod))
}

/// `<namespace>_<pod name>_<uid>`: neither a namespace (a DNS label) nor a pod name (a DNS
/// subdomain) has an underscore. The uid comes back lowercase with dashes.
pub fn parse_entry(entry: &str) -> Option<(String, PodName)> {
    let (namespace, rest) = entry.split_once('_')?;
    let (name, uid) = rest.rsplit_once('_')?;
    if namespace.is_empty() || name.is_empty() || name.contains('_') {
        return None;
    }
    let key = bpf_lsm::pods::uid_key(uid)?;
    let uid = String::from_utf8_lossy(&key.uid)
        .trim_end_matches('\0')
        .to_string();
    Some((
        uid,
        PodName {
            namespace: namespace.to_string(),
            name: name.to_string(),
        },
    ))
}

/// The configured directory, or the kubelet's default.
pub fn dir_or_default(configured: Option<&Path>) -> PathBuf {
    configured.map_or_else(|| PathBuf::from(DEFAULT_POD_LOGS_DIR), Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "0f5e2b7a-1c2d-4e3f-8a9b-0c1d2e3f4a5b";

    #[test]
    fn log_directory_names_give_namespace_name_and_uid() {
        let (uid, pod) = parse_entry(&format!("payments_api-7d9f_{UID}")).unwrap();
        assert_eq!(uid, UID);
        assert_eq!(
            pod,
            PodName {
                namespace: "payments".into(),
                name: "api-7d9f".into()
            }
        );
        let (uid, _) =
            parse_entry("kube-system_etcd-node1_0123456789ABCDEF0123456789abcdef").unwrap();
        assert_eq!(uid, "0123456789abcdef0123456789abcdef");
        for bad in [
            "payments",
            "payments_api",
            &format!("_api_{UID}"),
            &format!("payments__{UID}"),
            "payments_api_not-a-uid",
        ] {
            assert_eq!(parse_entry(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn open_reads_the_pods_and_creates_a_missing_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("var/log/pods");
        let empty = PodDirectory::open(&dir).unwrap();
        assert!(empty.pods.is_empty() && empty.id.ino != 0);
        std::fs::create_dir(dir.join(format!("web_shop-1_{UID}"))).unwrap();
        std::fs::create_dir(dir.join("not-a-pod")).unwrap();
        let d = PodDirectory::open(&dir).unwrap();
        assert_eq!(d.pods.len(), 1);
        assert_eq!(d.namespace_of(UID), Some("web"));
        assert_eq!(d.id, empty.id);
        assert_eq!(lookup(&dir, UID).unwrap().name, "shop-1");
        assert_eq!(lookup(&dir, "0123456789abcdef0123456789abcdef"), None);

        let file = tmp.path().join("file");
        std::fs::write(&file, "").unwrap();
        let e = PodDirectory::open(&file).unwrap_err();
        assert!(format!("{e:#}").contains("is not a directory"), "{e:#}");
    }
}
