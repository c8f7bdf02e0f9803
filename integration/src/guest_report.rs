//! The text protocol between the guest and the host: the e2e suite's result lines, the init
//! script's status lines and the output archive. Both sides use these functions, so the format
//! is defined once.
//!
//! Lines are matched anywhere in a console line, not only at its start: a kernel message can be
//! printed in the middle of a line written by user space.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use base64::Engine as _;

const TEST_PREFIX: &str = "e2e: test ";
const SUMMARY_PREFIX: &str = "e2e: ";
/// `/init` printed this right before powering off: the job ran to its end.
pub const GUEST_DONE: &str = "enforcer-vm: done";
/// `enforcer-vm: status key=value`.
pub const STATUS_PREFIX: &str = "enforcer-vm: status ";
pub const ARCHIVE_BEGIN: &str = "enforcer-vm: archive begin";
pub const ARCHIVE_END: &str = "enforcer-vm: archive end";
/// What the kernel prints when it panics (with `panic=-1 -no-reboot`, qemu then exits).
pub const KERNEL_PANIC: &str = "Kernel panic - not syncing";

/// The result of one end-to-end test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    Failed(String),
}

/// `e2e: test <name> ... ok` or `e2e: test <name> ... FAILED: <reason>` (reason on one line).
pub fn test_line(name: &str, outcome: &Outcome) -> String {
    match outcome {
        Outcome::Passed => format!("{TEST_PREFIX}{name} ... ok"),
        Outcome::Failed(reason) => {
            let reason = reason.lines().collect::<Vec<_>>().join(" | ");
            format!("{TEST_PREFIX}{name} ... FAILED: {reason}")
        }
    }
}

/// `N passed, N failed`: the last line of every test command.
pub fn counts_line(passed: usize, failed: usize) -> String {
    format!("{passed} passed, {failed} failed")
}

/// `e2e: N passed, N failed`: the last line of the guest suite.
pub fn summary_line(passed: usize, failed: usize) -> String {
    format!("{SUMMARY_PREFIX}{}", counts_line(passed, failed))
}

fn parse_test_line(line: &str) -> Option<(String, Outcome)> {
    let rest = &line[line.find(TEST_PREFIX)? + TEST_PREFIX.len()..];
    let (name, result) = rest.split_once(" ... ")?;
    let outcome = if result.trim_end() == "ok" {
        Outcome::Passed
    } else {
        Outcome::Failed(result.strip_prefix("FAILED: ")?.trim_end().to_string())
    };
    Some((name.to_string(), outcome))
}

/// Parses `N passed, N failed` at the end of `text`.
pub fn parse_counts(text: &str) -> Option<(usize, usize)> {
    let (passed, failed) = text.trim_end().split_once(" passed, ")?;
    let passed = passed.rsplit(' ').next()?.parse().ok()?;
    let failed = failed.strip_suffix(" failed")?.parse().ok()?;
    Some((passed, failed))
}

fn parse_summary_line(line: &str) -> Option<(usize, usize)> {
    let rest = &line[line.find(SUMMARY_PREFIX)? + SUMMARY_PREFIX.len()..];
    if rest.starts_with("test ") {
        return None;
    }
    parse_counts(rest)
}

/// What the e2e suite reported on the console.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SuiteReport {
    pub tests: Vec<(String, Outcome)>,
    pub summary: Option<(usize, usize)>,
    /// The guest reached the end of `/init`.
    pub done: bool,
    pub panicked: bool,
}

impl SuiteReport {
    pub fn parse(console: &[String]) -> Self {
        let mut report = Self::default();
        for line in console {
            if let Some(test) = parse_test_line(line) {
                report.tests.push(test);
            } else if let Some(counts) = parse_summary_line(line) {
                report.summary = Some(counts);
            }
            report.done |= line.contains(GUEST_DONE);
            report.panicked |= line.contains(KERNEL_PANIC);
        }
        report
    }

    pub fn passed(&self) -> usize {
        self.tests
            .iter()
            .filter(|(_, o)| *o == Outcome::Passed)
            .count()
    }

    pub fn failed(&self) -> usize {
        self.tests.len() - self.passed()
    }

    /// Why the suite's result cannot be trusted as complete, if it cannot.
    pub fn incomplete_reason(&self) -> Option<String> {
        if self.panicked {
            return Some("the kernel panicked".to_string());
        }
        match self.summary {
            None => Some("the guest never printed the e2e summary line".to_string()),
            Some((passed, failed)) if (passed, failed) != (self.passed(), self.failed()) => {
                Some(format!(
                    "the summary says {} but the test lines say {}",
                    counts_line(passed, failed),
                    counts_line(self.passed(), self.failed())
                ))
            }
            Some(_) if !self.done => Some("the guest did not finish /init".to_string()),
            Some(_) => None,
        }
    }
}

/// The `enforcer-vm: status key=value` lines (the last value of a key wins).
pub fn status_lines(console: &[String]) -> BTreeMap<String, String> {
    console
        .iter()
        .filter_map(|line| {
            let rest = &line[line.find(STATUS_PREFIX)? + STATUS_PREFIX.len()..];
            let (key, value) = rest.split_once('=')?;
            Some((key.trim().to_string(), value.trim().to_string()))
        })
        .collect()
}

/// Decodes the base64 archive between the markers in what the guest wrote to the second serial
/// port (whose line discipline turns `\n` into `\r\n`).
pub fn decode_archive(serial: &str) -> Result<Vec<u8>> {
    let begin = serial
        .find(ARCHIVE_BEGIN)
        .context("the guest never started sending its output archive")?;
    let body = &serial[begin + ARCHIVE_BEGIN.len()..];
    let Some(end) = body.find(ARCHIVE_END) else {
        bail!("the guest's output archive is truncated (no end marker)");
    };
    let encoded: String = body[..end]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .context("the guest's output archive is not valid base64")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn test_lines_round_trip() {
        for outcome in [
            Outcome::Passed,
            Outcome::Failed("expected EPERM, got 0".into()),
        ] {
            let line = test_line("file_open::denied", &outcome);
            assert_eq!(
                parse_test_line(&line),
                Some(("file_open::denied".into(), outcome))
            );
        }
    }

    #[test]
    fn a_multi_line_reason_stays_on_one_line() {
        let line = test_line("a", &Outcome::Failed("first\nsecond".into()));
        assert_eq!(line, "e2e: test a ... FAILED: first | second");
    }

    #[test]
    fn parses_a_complete_suite_with_noise() {
        let console = lines(
            "[    1.0] random kernel line\n\
             e2e: test guest::bpf_lsm_active ... ok\r\n\
             some test output\n\
             [    2.5] audit: something e2e: test guest::cgroup2_mounted ... FAILED: not mounted\n\
             e2e: 1 passed, 1 failed\n\
             enforcer-vm: status e2e-exit=1\n\
             enforcer-vm: done\n",
        );
        let report = SuiteReport::parse(&console);
        assert_eq!(
            report.tests,
            [
                ("guest::bpf_lsm_active".to_string(), Outcome::Passed),
                (
                    "guest::cgroup2_mounted".to_string(),
                    Outcome::Failed("not mounted".into())
                ),
            ]
        );
        assert_eq!(report.summary, Some((1, 1)));
        assert_eq!(report.incomplete_reason(), None);
        assert_eq!(status_lines(&console)["e2e-exit"], "1");
    }

    #[test]
    fn reports_why_a_suite_is_incomplete() {
        let hung = SuiteReport::parse(&lines("e2e: test a ... ok\n"));
        assert!(hung.incomplete_reason().unwrap().contains("summary"));

        let panicked = SuiteReport::parse(&lines(
            "e2e: test a ... ok\nKernel panic - not syncing: Attempted to kill init!\n",
        ));
        assert_eq!(panicked.incomplete_reason().unwrap(), "the kernel panicked");

        let inconsistent =
            SuiteReport::parse(&lines("e2e: test a ... ok\ne2e: 2 passed, 0 failed\n"));
        assert!(inconsistent
            .incomplete_reason()
            .unwrap()
            .contains("2 passed"));
    }

    #[test]
    fn parses_counts_lines() {
        assert_eq!(parse_counts("12 passed, 3 failed"), Some((12, 3)));
        assert_eq!(parse_counts("vm: 12 passed, 0 failed\n"), Some((12, 0)));
        assert_eq!(parse_counts("12 passed"), None);
    }

    #[test]
    fn decodes_the_archive_between_markers() {
        let serial =
            "noise\r\nenforcer-vm: archive begin\r\naGVs\r\nbG8=\r\nenforcer-vm: archive end\r\n";
        assert_eq!(decode_archive(serial).unwrap(), b"hello");
        let truncated = "enforcer-vm: archive begin\r\naGVs\r\n";
        assert!(decode_archive(truncated)
            .unwrap_err()
            .to_string()
            .contains("truncated"));
    }
}
