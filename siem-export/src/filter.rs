//! Per-sink event filters: which events a sink wants at all.
//!
//! Every condition that is set must hold (AND); within one list any entry
//! may match (OR); an unset or empty list does not constrain. So the default
//! filter passes everything.

use serde::{Deserialize, Serialize};

use crate::event::{EventClass, SecurityEvent, Verdict};
use crate::severity::Severity;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventFilter {
    /// Pass events at this severity or above.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<Severity>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub verdicts: Vec<Verdict>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<EventClass>,
    /// Exact policy names. Events without a policy never match a non-empty
    /// list.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<String>,
    /// Exact rule names, whatever policy they belong to. Events without a
    /// rule never match a non-empty list.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<String>,
}

impl EventFilter {
    /// A filter that passes everything.
    pub fn all() -> Self {
        Self::default()
    }

    pub fn matches(&self, ev: &SecurityEvent) -> bool {
        self.min_severity.is_none_or(|min| ev.severity >= min)
            && (self.verdicts.is_empty() || self.verdicts.contains(&ev.verdict))
            && (self.classes.is_empty() || self.classes.contains(&ev.class))
            && name_matches(&self.policies, ev.policy.as_deref())
            && name_matches(&self.rules, ev.rule.as_deref())
    }

    /// True when the filter passes everything, so callers can skip it.
    pub fn is_pass_all(&self) -> bool {
        *self == Self::default()
    }
}

fn name_matches(allowed: &[String], name: Option<&str>) -> bool {
    allowed.is_empty() || name.is_some_and(|n| allowed.iter().any(|a| a == n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::tests::{full_event, minimal_event};

    fn event(
        sev: Severity,
        verdict: Verdict,
        policy: Option<&str>,
        rule: Option<&str>,
    ) -> SecurityEvent {
        let mut ev = minimal_event();
        ev.severity = sev;
        ev.verdict = verdict;
        ev.policy = policy.map(str::to_owned);
        ev.rule = rule.map(str::to_owned);
        ev
    }

    #[test]
    fn default_passes_everything() {
        let f = EventFilter::all();
        assert!(f.is_pass_all());
        assert!(f.matches(&full_event()));
        assert!(f.matches(&minimal_event()));
    }

    #[test]
    fn minimum_severity_is_inclusive() {
        let f = EventFilter {
            min_severity: Some(Severity::Medium),
            ..EventFilter::all()
        };
        let pass: Vec<Severity> = Severity::ALL
            .into_iter()
            .filter(|s| f.matches(&event(*s, Verdict::Denied, None, None)))
            .collect();
        assert_eq!(pass, [Severity::Medium, Severity::High, Severity::Critical]);
    }

    #[test]
    fn verdict_and_class_lists() {
        let f = EventFilter {
            verdicts: vec![Verdict::Denied, Verdict::Killed],
            ..EventFilter::all()
        };
        let pass: Vec<Verdict> = Verdict::ALL
            .iter()
            .copied()
            .filter(|v| f.matches(&event(Severity::Info, *v, None, None)))
            .collect();
        assert_eq!(pass, [Verdict::Denied, Verdict::Killed]);

        let f = EventFilter {
            classes: vec![EventClass::Network],
            ..EventFilter::all()
        };
        let mut ev = minimal_event();
        assert!(!f.matches(&ev));
        ev.class = EventClass::Network;
        assert!(f.matches(&ev));
    }

    #[test]
    fn policy_and_rule_names() {
        let f = EventFilter {
            policies: vec!["baseline".into(), "pci".into()],
            rules: vec!["no-shadow-read".into()],
            ..EventFilter::all()
        };
        let sev = Severity::Info;
        let v = Verdict::Denied;
        assert!(f.matches(&event(sev, v, Some("pci"), Some("no-shadow-read"))));
        assert!(!f.matches(&event(sev, v, Some("pci"), Some("other"))));
        assert!(!f.matches(&event(sev, v, Some("Baseline"), Some("no-shadow-read"))));
        assert!(!f.matches(&event(sev, v, None, Some("no-shadow-read"))));
        assert!(!f.matches(&event(sev, v, Some("pci"), None)));

        let policy_only = EventFilter {
            policies: vec!["pci".into()],
            ..EventFilter::all()
        };
        assert!(policy_only.matches(&event(sev, v, Some("pci"), None)));
    }

    #[test]
    fn conditions_combine_with_and() {
        let f = EventFilter {
            min_severity: Some(Severity::High),
            verdicts: vec![Verdict::Denied],
            policies: vec!["baseline".into()],
            ..EventFilter::all()
        };
        assert!(f.matches(&event(
            Severity::High,
            Verdict::Denied,
            Some("baseline"),
            None
        )));
        assert!(!f.matches(&event(
            Severity::Low,
            Verdict::Denied,
            Some("baseline"),
            None
        )));
        assert!(!f.matches(&event(
            Severity::High,
            Verdict::Audited,
            Some("baseline"),
            None
        )));
        assert!(!f.matches(&event(Severity::High, Verdict::Denied, Some("other"), None)));
    }

    #[test]
    fn deserializes_from_config() {
        let f: EventFilter = serde_json::from_str(
            r#"{"min_severity":"high","verdicts":["denied","killed"],"rules":["r1"]}"#,
        )
        .unwrap();
        assert_eq!(f.min_severity, Some(Severity::High));
        assert_eq!(f.verdicts, [Verdict::Denied, Verdict::Killed]);
        assert_eq!(f.rules, ["r1"]);
        assert_eq!(
            serde_json::from_str::<EventFilter>("{}").unwrap(),
            EventFilter::all()
        );
        let err = serde_json::from_str::<EventFilter>(r#"{"min_sevrity":"high"}"#).unwrap_err();
        assert!(
            err.to_string().contains("unknown field `min_sevrity`"),
            "{err}"
        );
    }
}
