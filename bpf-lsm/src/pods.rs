//! Kubernetes namespace selectors (`bpf/include/pods.h`): the kernel records each new pod
//! cgroup by its uid, and when the kubelet creates the pod's log directory
//! `<namespace>_<pod>_<uid>` it gives that cgroup the policies of the pod's namespace, before
//! the pod's first container exists. This module says what the loader writes for it.

use std::collections::HashMap;

use crate::abi;
use crate::guard::ExeId;
use crate::plan::{Mode, PlanError};

/// What the kernel needs for namespace selectors; `KernelPlan::pods`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodScoping {
    /// The kubelet's pod log directory (`/var/log/pods` unless configured otherwise), as the
    /// kernel names it: a mkdir in it names a pod.
    pub logs_dir: ExeId,
    /// The namespaces some policy names, with the policies a pod of each gets and loses.
    pub namespaces: Vec<NamespacePolicies>,
    /// Pod cgroups that exist at load (uid, cgroup id): a pod created just before the load
    /// whose log directory comes after it is still classified.
    pub pod_cgroups: Vec<(String, u64)>,
}

/// The policies a namespace's pods get (`namespaces:`) and lose (`exclude: namespaces:`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespacePolicies {
    pub name: String,
    pub add: Vec<u32>,
    pub remove: Vec<u32>,
}

/// The program of `lsm/inode_mkdir` (namespace selectors only).
pub const PROGRAM: &str = "enf_pod_log_mkdir";

/// New pods the kernel can track between their cgroup's creation and their log directory's
/// (the LRU map evicts the oldest first, long classified by then).
pub const POD_CAPACITY: u32 = 4096;

/// The map entries of a [`PodScoping`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct PodEntries {
    pub logs_dir: ExeId,
    pub namespaces: Vec<(abi::K8sName, abi::K8sNamespace)>,
    pub pod_cgroups: Vec<(abi::PodUid, u64)>,
}

impl PodEntries {
    pub fn pod_capacity(&self) -> u32 {
        u32::try_from(self.pod_cgroups.len())
            .unwrap_or(u32::MAX)
            .saturating_add(POD_CAPACITY)
    }
}

/// The kernel's key for a pod uid: a UUID (dashes, or the systemd driver's underscores) or a
/// static pod's 32 hex digits, lowercase. `None` for anything else.
pub fn uid_key(uid: &str) -> Option<abi::PodUid> {
    let b = uid.as_bytes();
    if b.len() != 36 && b.len() != 32 {
        return None;
    }
    let mut key = abi::PodUid::default();
    for (i, &c) in b.iter().enumerate() {
        let c = match c {
            b'_' | b'-' if b.len() == 36 && matches!(i, 8 | 13 | 18 | 23) => b'-',
            c if c.is_ascii_hexdigit() && !(b.len() == 36 && matches!(i, 8 | 13 | 18 | 23)) => {
                c.to_ascii_lowercase()
            }
            _ => return None,
        };
        key.uid[i] = c;
    }
    Some(key)
}

/// The kernel's key for a namespace name: a DNS label (`[a-z0-9-]`, 1 to 63 bytes).
pub fn name_key(name: &str) -> Option<abi::K8sName> {
    let b = name.as_bytes();
    let label = !b.is_empty()
        && b.len() < abi::K8S_NAME_LEN
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
    if !label {
        return None;
    }
    let mut key = abi::K8sName {
        name: [0; abi::K8S_NAME_LEN],
    };
    key.name[..b.len()].copy_from_slice(b);
    Some(key)
}

/// Lays out `p` with the plan's policy slots.
pub(crate) fn entries(
    p: &PodScoping,
    slots: &HashMap<u32, (u32, Mode)>,
) -> Result<PodEntries, PlanError> {
    if p.logs_dir.ino == 0 {
        return Err(PlanError::Pods(
            "namespace selectors need the pod log directory's inode".into(),
        ));
    }
    let set = |ids: &[u32], what: &str| -> Result<u64, PlanError> {
        ids.iter().try_fold(0u64, |set, id| {
            let &(slot, _) = slots.get(id).ok_or_else(|| PlanError::UnknownPolicy {
                what: what.to_string(),
                policy: *id,
            })?;
            Ok(set | 1u64 << slot)
        })
    };
    let mut namespaces = Vec::new();
    for ns in &p.namespaces {
        let key = name_key(&ns.name).ok_or_else(|| {
            PlanError::Pods(format!(
                "`{}` is not a Kubernetes namespace name (lowercase letters, digits and `-`, \
                 at most 63)",
                ns.name
            ))
        })?;
        let what = format!("namespace `{}`", ns.name);
        let value = abi::K8sNamespace {
            add: set(&ns.add, &what)?,
            remove: set(&ns.remove, &what)?,
        };
        if namespaces.iter().any(|(k, _)| *k == key) {
            return Err(PlanError::Pods(format!(
                "namespace `{}` is listed twice",
                ns.name
            )));
        }
        namespaces.push((key, value));
    }
    let pod_cgroups = p
        .pod_cgroups
        .iter()
        .filter_map(|(uid, id)| Some((uid_key(uid)?, *id)))
        .collect();
    Ok(PodEntries {
        logs_dir: p.logs_dir,
        namespaces,
        pod_cgroups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "0f5e2b7a-1c2d-4e3f-8a9b-0c1d2e3f4a5b";

    #[test]
    fn uids_are_keyed_lowercase_with_dashes() {
        let dashes = uid_key(UID).unwrap();
        assert_eq!(&dashes.uid, UID.as_bytes());
        assert_eq!(uid_key(&UID.replace('-', "_")), Some(dashes));
        assert_eq!(uid_key(&UID.to_uppercase()), Some(dashes));
        let hash = uid_key("0123456789ABCDEF0123456789abcdef").unwrap();
        assert_eq!(&hash.uid[..32], b"0123456789abcdef0123456789abcdef");
        assert_eq!(&hash.uid[32..], &[0; 4]);
        for bad in [
            "",
            "pod",
            &UID[1..],
            &UID.replacen('-', "x", 1),
            "0f5e2b7a-1c2d",
        ] {
            assert_eq!(uid_key(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn namespace_names_are_dns_labels() {
        assert_eq!(&name_key("kube-system").unwrap().name[..11], b"kube-system");
        for bad in ["", "Web", "a_b", &"a".repeat(64)] {
            assert!(name_key(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn namespaces_become_slot_sets() {
        let slots = HashMap::from([(10, (0, Mode::Enforce)), (11, (3, Mode::Audit))]);
        let p = PodScoping {
            logs_dir: ExeId { dev: 1, ino: 2 },
            namespaces: vec![NamespacePolicies {
                name: "web".into(),
                add: vec![10, 11],
                remove: vec![11],
            }],
            pod_cgroups: vec![(UID.into(), 77), ("not-a-uid".into(), 78)],
        };
        let e = entries(&p, &slots).unwrap();
        assert_eq!(
            e.namespaces[0].1,
            abi::K8sNamespace {
                add: 0b1001,
                remove: 0b1000
            }
        );
        assert_eq!(e.pod_cgroups, vec![(uid_key(UID).unwrap(), 77)]);

        let unknown = PodScoping {
            namespaces: vec![NamespacePolicies {
                name: "web".into(),
                add: vec![12],
                remove: vec![],
            }],
            ..p.clone()
        };
        assert!(matches!(
            entries(&unknown, &slots),
            Err(PlanError::UnknownPolicy { policy: 12, .. })
        ));
        let no_dir = PodScoping {
            logs_dir: ExeId::default(),
            ..p
        };
        assert!(matches!(entries(&no_dir, &slots), Err(PlanError::Pods(_))));
    }
}
