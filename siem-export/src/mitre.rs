//! MITRE ATT&CK tags: splitting `T1059.004` into technique and
//! sub-technique, and a small table of names and tactics for the techniques
//! our rules use.
//!
//! The table is deliberately small. A technique that is not in it is still
//! exported (its id and reference URL are derived from the id alone), just
//! without a name or tactic: we never guess either. Sub-techniques take their
//! parent's tactics, as they do in ATT&CK.

use crate::event::is_attack_technique;

/// An ATT&CK tactic (Enterprise matrix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tactic {
    pub id: &'static str,
    pub name: &'static str,
}

pub const EXECUTION: Tactic = Tactic {
    id: "TA0002",
    name: "Execution",
};
pub const PERSISTENCE: Tactic = Tactic {
    id: "TA0003",
    name: "Persistence",
};
pub const PRIVILEGE_ESCALATION: Tactic = Tactic {
    id: "TA0004",
    name: "Privilege Escalation",
};
pub const CREDENTIAL_ACCESS: Tactic = Tactic {
    id: "TA0006",
    name: "Credential Access",
};

/// Technique (or sub-technique) id, name, and, for techniques, tactics.
const TABLE: &[(&str, &str, &[Tactic])] = &[
    ("T1003", "OS Credential Dumping", &[CREDENTIAL_ACCESS]),
    ("T1003.008", "/etc/passwd and /etc/shadow", &[]),
    ("T1059", "Command and Scripting Interpreter", &[EXECUTION]),
    ("T1059.004", "Unix Shell", &[]),
    ("T1204", "User Execution", &[EXECUTION]),
    ("T1204.002", "Malicious File", &[]),
    ("T1505", "Server Software Component", &[PERSISTENCE]),
    ("T1505.003", "Web Shell", &[]),
    (
        "T1547",
        "Boot or Logon Autostart Execution",
        &[PERSISTENCE, PRIVILEGE_ESCALATION],
    ),
    ("T1547.006", "Kernel Modules and Extensions", &[]),
    ("T1554", "Compromise Host Software Binary", &[PERSISTENCE]),
    ("T1611", "Escape to Host", &[PRIVILEGE_ESCALATION]),
];

/// One ATT&CK tag, split up and looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attack<'a> {
    /// The technique: `T1059` for both `T1059` and `T1059.004`.
    pub technique: &'a str,
    /// `T1059.004` when the tag names a sub-technique.
    pub sub_technique: Option<&'a str>,
    pub technique_name: Option<&'static str>,
    pub sub_technique_name: Option<&'static str>,
    /// Empty when the technique is not in our table.
    pub tactics: &'static [Tactic],
}

impl<'a> Attack<'a> {
    /// `None` unless `tag` is a technique id (`T1059`, `T1059.004`).
    pub fn parse(tag: &'a str) -> Option<Self> {
        if !is_attack_technique(tag) {
            return None;
        }
        let technique = tag.get(..5)?;
        let sub_technique = (tag.len() > 5).then_some(tag);
        let parent = lookup(technique);
        Some(Attack {
            technique,
            sub_technique,
            technique_name: parent.map(|(name, _)| name),
            sub_technique_name: sub_technique.and_then(lookup).map(|(name, _)| name),
            tactics: parent.map(|(_, t)| t).unwrap_or(&[]),
        })
    }

    /// `https://attack.mitre.org/techniques/T1059/`
    pub fn technique_url(&self) -> String {
        format!("https://attack.mitre.org/techniques/{}/", self.technique)
    }

    /// `https://attack.mitre.org/techniques/T1059/004/`
    pub fn sub_technique_url(&self) -> Option<String> {
        let sub = self.sub_technique?;
        Some(format!(
            "https://attack.mitre.org/techniques/{}/{}/",
            self.technique,
            sub.get(6..)?
        ))
    }
}

impl Tactic {
    /// `https://attack.mitre.org/tactics/TA0002/`
    pub fn url(&self) -> String {
        format!("https://attack.mitre.org/tactics/{}/", self.id)
    }
}

fn lookup(id: &str) -> Option<(&'static str, &'static [Tactic])> {
    TABLE
        .iter()
        .find(|(tid, _, _)| *tid == id)
        .map(|(_, name, tactics)| (*name, *tactics))
}

/// The ATT&CK tags among `tags`, in order, without duplicates.
pub fn attacks<'a>(tags: impl IntoIterator<Item = &'a str>) -> Vec<Attack<'a>> {
    let mut out: Vec<Attack<'a>> = Vec::new();
    for a in tags.into_iter().filter_map(Attack::parse) {
        if !out.contains(&a) {
            out.push(a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_looks_up() {
        let a = Attack::parse("T1059.004").unwrap();
        assert_eq!(a.technique, "T1059");
        assert_eq!(a.sub_technique, Some("T1059.004"));
        assert_eq!(a.technique_name, Some("Command and Scripting Interpreter"));
        assert_eq!(a.sub_technique_name, Some("Unix Shell"));
        assert_eq!(a.tactics, &[EXECUTION]);
        assert_eq!(
            a.technique_url(),
            "https://attack.mitre.org/techniques/T1059/"
        );
        assert_eq!(
            a.sub_technique_url().as_deref(),
            Some("https://attack.mitre.org/techniques/T1059/004/")
        );
        assert_eq!(EXECUTION.url(), "https://attack.mitre.org/tactics/TA0002/");
    }

    #[test]
    fn unknown_techniques_keep_their_id_only() {
        let a = Attack::parse("T9999.001").unwrap();
        assert_eq!(a.technique, "T9999");
        assert_eq!(a.technique_name, None);
        assert_eq!(a.sub_technique_name, None);
        assert!(a.tactics.is_empty());
        assert_eq!(Attack::parse("execution"), None);
        assert_eq!(Attack::parse("TA0002"), None);
    }

    #[test]
    fn table_is_consistent() {
        for (id, name, tactics) in TABLE {
            assert!(is_attack_technique(id), "{id}");
            assert!(!name.is_empty());
            if id.len() > 5 {
                assert!(tactics.is_empty(), "{id}: tactics belong on the parent");
                assert!(lookup(&id[..5]).is_some(), "{id}: parent missing");
            } else {
                assert!(!tactics.is_empty(), "{id}");
            }
        }
        assert_eq!(
            attacks(["T1059", "x", "T1059", "T1003.008"])
                .iter()
                .map(|a| a.sub_technique.unwrap_or(a.technique))
                .collect::<Vec<_>>(),
            ["T1059", "T1003.008"]
        );
    }
}
