//! Event severity and the one table that maps it onto every output format.
//!
//! Each encoder (ECS, OCSF, CEF, syslog) must take its numbers from here so
//! that the same event never looks "high" in one SIEM and "medium" in another.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How urgent an event is. Ordered: `Info < Low < Medium < High < Critical`,
/// which is what minimum-severity filters compare against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

/// The numbers one severity becomes in each target format.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeverityMapping {
    /// ECS `event.severity` (a number; ECS leaves the scale to the source,
    /// ours is 1..=5).
    pub ecs_severity: u8,
    /// ECS `event.risk_score` (0..=100). Low/medium/high/critical use the
    /// defaults Elastic's detection rules use, so our events sort alongside
    /// theirs.
    pub ecs_risk_score: f32,
    /// OCSF `severity_id` (1 Informational .. 5 Critical).
    pub ocsf_severity_id: u8,
    /// CEF header severity (0..=10), picked inside CEF's bands:
    /// 0-3 low, 4-6 medium, 7-8 high, 9-10 very high.
    pub cef_severity: u8,
    /// RFC 5424 severity (0 Emergency .. 7 Debug). Nothing we emit is an
    /// emergency or alert for the whole system, so we stop at Critical (2).
    pub syslog_severity: u8,
}

/// The severity table, in `Severity` order.
const TABLE: [(Severity, SeverityMapping); 5] = [
    (
        Severity::Info,
        SeverityMapping {
            ecs_severity: 1,
            ecs_risk_score: 0.0,
            ocsf_severity_id: 1,
            cef_severity: 1,
            syslog_severity: 6,
        },
    ),
    (
        Severity::Low,
        SeverityMapping {
            ecs_severity: 2,
            ecs_risk_score: 21.0,
            ocsf_severity_id: 2,
            cef_severity: 3,
            syslog_severity: 5,
        },
    ),
    (
        Severity::Medium,
        SeverityMapping {
            ecs_severity: 3,
            ecs_risk_score: 47.0,
            ocsf_severity_id: 3,
            cef_severity: 5,
            syslog_severity: 4,
        },
    ),
    (
        Severity::High,
        SeverityMapping {
            ecs_severity: 4,
            ecs_risk_score: 73.0,
            ocsf_severity_id: 4,
            cef_severity: 8,
            syslog_severity: 3,
        },
    ),
    (
        Severity::Critical,
        SeverityMapping {
            ecs_severity: 5,
            ecs_risk_score: 99.0,
            ocsf_severity_id: 5,
            cef_severity: 10,
            syslog_severity: 2,
        },
    ),
];

impl Severity {
    /// All severities, lowest first.
    pub const ALL: [Severity; 5] = [
        Severity::Info,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// This severity's row of the table.
    pub fn mapping(self) -> SeverityMapping {
        TABLE[self as usize].1
    }

    pub fn ecs_severity(self) -> u8 {
        self.mapping().ecs_severity
    }

    pub fn ecs_risk_score(self) -> f32 {
        self.mapping().ecs_risk_score
    }

    pub fn ocsf_severity_id(self) -> u8 {
        self.mapping().ocsf_severity_id
    }

    pub fn cef_severity(self) -> u8 {
        self.mapping().cef_severity
    }

    pub fn syslog_severity(self) -> u8 {
        self.mapping().syslog_severity
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown severity `{0}`, expected one of: info, low, medium, high, critical")]
pub struct UnknownSeverity(pub String);

impl FromStr for Severity {
    type Err = UnknownSeverity;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Severity::ALL
            .into_iter()
            .find(|sev| sev.as_str() == s)
            .ok_or_else(|| UnknownSeverity(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_rows_are_in_enum_order() {
        for (i, (sev, _)) in TABLE.iter().enumerate() {
            assert_eq!(*sev as usize, i, "row {i} is {sev}");
            assert_eq!(Severity::ALL[i], *sev);
        }
    }

    #[test]
    fn table_values() {
        let rows: Vec<(Severity, u8, f32, u8, u8, u8)> = Severity::ALL
            .iter()
            .map(|s| {
                let m = s.mapping();
                (
                    *s,
                    m.ecs_severity,
                    m.ecs_risk_score,
                    m.ocsf_severity_id,
                    m.cef_severity,
                    m.syslog_severity,
                )
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                (Severity::Info, 1, 0.0, 1, 1, 6),
                (Severity::Low, 2, 21.0, 2, 3, 5),
                (Severity::Medium, 3, 47.0, 3, 5, 4),
                (Severity::High, 4, 73.0, 4, 8, 3),
                (Severity::Critical, 5, 99.0, 5, 10, 2),
            ]
        );
    }

    #[test]
    fn every_column_is_monotonic_in_urgency() {
        for pair in Severity::ALL.windows(2) {
            let (lo, hi) = (pair[0].mapping(), pair[1].mapping());
            assert!(lo.ecs_severity < hi.ecs_severity);
            assert!(lo.ecs_risk_score < hi.ecs_risk_score);
            assert!(lo.ocsf_severity_id < hi.ocsf_severity_id);
            assert!(lo.cef_severity < hi.cef_severity);
            // syslog counts down: 0 is the most severe.
            assert!(lo.syslog_severity > hi.syslog_severity);
        }
    }

    #[test]
    fn values_stay_inside_each_format_range() {
        for sev in Severity::ALL {
            let m = sev.mapping();
            assert!((0.0..=100.0).contains(&m.ecs_risk_score));
            assert!(
                (1..=5).contains(&m.ocsf_severity_id),
                "OCSF 1..5 are the named levels"
            );
            assert!(m.cef_severity <= 10);
            assert!(m.syslog_severity <= 7);
        }
    }

    #[test]
    fn cef_values_fall_in_the_matching_cef_band() {
        assert!(Severity::Low.cef_severity() <= 3);
        assert!((4..=6).contains(&Severity::Medium.cef_severity()));
        assert!((7..=8).contains(&Severity::High.cef_severity()));
        assert!(Severity::Critical.cef_severity() >= 9);
    }

    #[test]
    fn ordering_and_names() {
        assert!(Severity::Info < Severity::Low);
        assert!(Severity::High < Severity::Critical);
        for sev in Severity::ALL {
            assert_eq!(sev.as_str().parse::<Severity>(), Ok(sev));
            assert_eq!(
                serde_json::to_string(&sev).unwrap(),
                format!("\"{}\"", sev.as_str())
            );
        }
        let err = "severe".parse::<Severity>().unwrap_err();
        assert!(err.to_string().contains("`severe`"));
    }
}
