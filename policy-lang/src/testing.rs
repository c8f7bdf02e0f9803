//! `policy test`: runs every `tests:` case through the reference evaluator.

use crate::diagnostic::{SourceMap, Span};
use crate::eval::{Decision, EvalError, Evaluator};
use crate::model::PolicySet;
use crate::plan::Plan;
use std::fmt::Write as _;

#[derive(Debug, Clone)]
pub struct TestResult {
    pub name: String,
    pub span: Span,
    pub passed: bool,
    pub expected: String,
    pub got: Decision,
}

#[derive(Debug, Clone, Default)]
pub struct TestReport {
    pub results: Vec<TestResult>,
}

impl TestReport {
    pub fn passed(&self) -> usize {
        self.results.iter().filter(|r| r.passed).count()
    }

    pub fn failed(&self) -> usize {
        self.results.len() - self.passed()
    }

    /// Every failure as `PATH:LINE:COL: test `name` failed: ...`, then `N passed, N failed`.
    pub fn render(&self, sources: &SourceMap) -> String {
        let mut o = String::new();
        for r in self.results.iter().filter(|r| !r.passed) {
            let got_rule = match &r.got.rule {
                Some(rule) => format!("rule `{rule}` matched instead"),
                None => "no rule matched".to_owned(),
            };
            let alerts = if r.got.alerts.is_empty() {
                String::new()
            } else {
                format!(", alerts: {}", r.got.alerts.join(", "))
            };
            let _ = writeln!(
                o,
                "{}:{}:{}: test `{}` failed: expected {}, got {} ({got_rule}{alerts})",
                sources.path(r.span.file),
                r.span.line,
                r.span.col,
                r.name,
                r.expected,
                r.got.verdict.name()
            );
        }
        let _ = writeln!(o, "{} passed, {} failed", self.passed(), self.failed());
        o
    }
}

/// Runs every test case of the set against the plan.
pub fn run_tests(set: &PolicySet, plan: &Plan) -> Result<TestReport, EvalError> {
    let ev = Evaluator::new(plan)?;
    let mut report = TestReport::default();
    for t in &set.tests {
        let got = ev.decide(&t.event);
        let e = &t.expect;
        let passed = got.verdict == e.verdict
            && e.rule.as_ref().is_none_or(|r| got.rule.as_ref() == Some(r))
            && e.alerts.as_ref().is_none_or(|a| {
                let mut want = a.clone();
                want.sort();
                want == got.alerts
            });
        let mut expected = e.verdict.name().to_owned();
        if let Some(r) = &e.rule {
            let _ = write!(expected, " by `{r}`");
        }
        if let Some(a) = &e.alerts {
            let _ = write!(expected, " with alerts [{}]", a.join(", "));
        }
        report.results.push(TestResult {
            name: t.name.clone(),
            span: t.span,
            passed,
            expected,
            got,
        });
    }
    Ok(report)
}

/// One test case in a form the kernel-side harness can replay against the BPF programs,
/// so the kernel and this evaluator are checked against the same cases.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TestVector {
    pub name: String,
    pub event: crate::event::OwnedEvent,
    pub verdict: crate::eval::Verdict,
    pub rule: Option<String>,
}

/// Every test case of the set as a [`TestVector`] (serialize with `serde_json`).
pub fn vectors(set: &PolicySet) -> Vec<TestVector> {
    set.tests
        .iter()
        .map(|t| TestVector {
            name: t.name.clone(),
            event: t.event.clone(),
            verdict: t.expect.verdict,
            rule: t.expect.rule.clone(),
        })
        .collect()
}
