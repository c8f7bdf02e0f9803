//! The end-to-end suite that `/bin/enforcer-e2e` runs inside the VM, as root, on a real kernel
//! with BPF LSM.
//!
//! # Adding a test
//! Write a `fn() -> anyhow::Result<()>` in the module of its area and list it in that module's
//! `TESTS` (`Test::new("name", function)`, or `.with_timeout(secs)` for a slow one). A new module
//! is added to [`GROUPS`]. Tests are named `<module>::<name>` on the console; they run one after
//! the other, each on its own thread with a timeout and with panics caught, so one failing test
//! never hides another. Helpers: [`command`] (run and capture), [`cgroup`] (a cgroup2 child to
//! run processes in, its id), [`enforcer_process`] (start `/bin/enforcer run`, wait until it is
//! ready, stop it).
//!
//! Guest facts: busybox provides the usual commands on `PATH`; proc, sysfs, devtmpfs,
//! securityfs, bpffs, cgroup2 (at `/sys/fs/cgroup`) and tracefs are mounted; `lo` is up and there
//! is no other network; `/tmp` is writable (the root file system is in RAM).

pub mod bench;
pub mod binary_filters;
pub mod cgroup;
pub mod command;
pub mod conformance;
pub mod doctor;
pub mod enforcer_process;
pub mod exec_fallback;
pub mod export;
pub mod file_open;
pub mod guest;
pub mod hand_plan;
pub mod hardening;
pub mod kernel_ops;
pub mod kernel_plan;
pub mod memfd_exec;
pub mod network;
pub mod path_hooks;
pub mod pinning;
pub mod pods;
pub mod policy_run;
pub mod process_events;
pub mod rate_limit;
pub mod reload;
pub mod rules_library;
pub mod self_protection;

use std::cell::RefCell;
use std::io::Write;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{mpsc, Once};
use std::time::{Duration, Instant};

use crate::guest_report::{summary_line, test_line, Outcome};

/// A test body: `Err` (or a panic) fails the test with that reason.
pub type TestFn = fn() -> anyhow::Result<()>;

/// One registered test.
#[derive(Debug, Clone, Copy)]
pub struct Test {
    pub name: &'static str,
    pub run: TestFn,
    pub timeout: Duration,
}

/// Generous for TCG emulation, where the guest runs several times slower than the host.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

impl Test {
    pub const fn new(name: &'static str, run: TestFn) -> Self {
        Self {
            name,
            run,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    pub const fn with_timeout(self, secs: u64) -> Self {
        Self {
            timeout: Duration::from_secs(secs),
            ..self
        }
    }
}

/// Every test module and its tests.
pub const GROUPS: &[(&str, &[Test])] = &[
    ("guest", guest::TESTS),
    ("file_open", file_open::TESTS),
    ("doctor", doctor::TESTS),
    ("kernel_plan", kernel_plan::TESTS),
    ("policy_run", policy_run::TESTS),
    ("export", export::TESTS),
    ("network", network::TESTS),
    ("conformance", conformance::TESTS),
    ("process_events", process_events::TESTS),
    ("hardening", hardening::TESTS),
    ("path_hooks", path_hooks::TESTS),
    ("bench", bench::TESTS),
    ("reload", reload::TESTS),
    ("kernel_ops", kernel_ops::TESTS),
    ("binary_filters", binary_filters::TESTS),
    ("exec_fallback", exec_fallback::TESTS),
    ("memfd_exec", memfd_exec::TESTS),
    ("rate_limit", rate_limit::TESTS),
    ("self_protection", self_protection::TESTS),
    ("pods", pods::TESTS),
    // Last: it changes the guest (files in /etc and /usr, addresses on `lo`).
    ("rules_library", rules_library::TESTS),
    ("pinning", pinning::TESTS),
];

/// `(full name, test)` for every test whose full name contains `filter`.
pub fn selected(filter: Option<&str>) -> Vec<(String, Test)> {
    GROUPS
        .iter()
        .flat_map(|(group, tests)| {
            tests
                .iter()
                .map(move |t| (format!("{group}::{}", t.name), *t))
        })
        .filter(|(name, _)| filter.is_none_or(|f| name.contains(f)))
        .collect()
}

thread_local! {
    /// Where and why the current test thread panicked, recorded by the panic hook; `None` on
    /// threads that are not running a test.
    static PANIC_REPORT: RefCell<Option<Option<String>>> = const { RefCell::new(None) };
}

/// Test threads get their panic (with its location, which the payload alone lacks) into their
/// result line instead of a multi-line message in the middle of the console; other threads keep
/// the default behaviour.
fn install_panic_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let default_hook = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let recorded = PANIC_REPORT.with(|r| match r.borrow_mut().as_mut() {
                Some(report) => {
                    *report = Some(info.to_string().replace('\n', " "));
                    true
                }
                None => false,
            });
            if !recorded {
                default_hook(info);
            }
        }));
    });
}

/// Runs the tests in order and prints one result line each, then the summary line. Returns
/// (passed, failed).
pub fn run(tests: &[(String, Test)], out: &mut impl Write) -> (usize, usize) {
    install_panic_hook();
    let (mut passed, mut failed) = (0, 0);
    for (name, test) in tests {
        // Written before the test runs so that a hanging test is visible on the console.
        let _ = writeln!(out, "e2e: start {name}");
        let _ = out.flush();
        let outcome = run_one(name, *test);
        // What a test's daemons left pinned must not enforce during the next test.
        pinning::clear();
        match outcome {
            Outcome::Passed => passed += 1,
            Outcome::Failed(_) => failed += 1,
        }
        let _ = writeln!(out, "{}", test_line(name, &outcome));
        let _ = out.flush();
    }
    let _ = writeln!(out, "{}", summary_line(passed, failed));
    let _ = out.flush();
    (passed, failed)
}

fn run_one(name: &str, test: Test) -> Outcome {
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            PANIC_REPORT.with(|r| *r.borrow_mut() = Some(None));
            let result = panic::catch_unwind(AssertUnwindSafe(test.run));
            let outcome = match result {
                Ok(Ok(())) => Outcome::Passed,
                Ok(Err(error)) => Outcome::Failed(format!("{error:#}")),
                Err(_) => Outcome::Failed(
                    PANIC_REPORT
                        .with(|r| r.borrow_mut().take().flatten())
                        .unwrap_or_else(|| "panicked".to_string()),
                ),
            };
            // The receiver is gone only after a timeout, which was already reported.
            let _ = tx.send(outcome);
        });
    if let Err(error) = spawned {
        return Outcome::Failed(format!("could not start the test thread: {error}"));
    }
    let mut stdout = std::io::stdout();
    wait_reporting_progress(name, &rx, test.timeout, HEARTBEAT, &mut stdout).unwrap_or_else(|| {
        // A thread cannot be killed: it is left behind. The helpers' handles (cgroups, the
        // enforcer) clean up only when dropped, so later tests may see its leftovers.
        Outcome::Failed(format!(
            "timed out after {} s (the test thread is left running)",
            test.timeout.as_secs()
        ))
    })
}

/// The host treats a silent console as a hung guest (`HEARTBEAT` is well under its idle limit),
/// so a long test says it is still running.
const HEARTBEAT: Duration = Duration::from_secs(60);

/// The test's outcome, or `None` once `timeout` has passed, writing a line every `heartbeat`.
fn wait_reporting_progress(
    name: &str,
    rx: &mpsc::Receiver<Outcome>,
    timeout: Duration,
    heartbeat: Duration,
    out: &mut impl Write,
) -> Option<Outcome> {
    let started = Instant::now();
    loop {
        let left = timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            return None;
        }
        match rx.recv_timeout(left.min(heartbeat)) {
            Ok(outcome) => return Some(outcome),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Some(Outcome::Failed(
                    "the test thread ended without a result".to_string(),
                ))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if started.elapsed() < timeout {
                    let _ = writeln!(
                        out,
                        "e2e: still running {name} ({} s)",
                        started.elapsed().as_secs()
                    );
                    let _ = out.flush();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn passes() -> anyhow::Result<()> {
        Ok(())
    }
    fn fails() -> anyhow::Result<()> {
        anyhow::bail!("expected EPERM,\ngot success")
    }
    fn panics() -> anyhow::Result<()> {
        let v: Vec<u8> = Vec::new();
        assert_eq!(v.len(), 1, "vector is empty");
        Ok(())
    }
    fn hangs() -> anyhow::Result<()> {
        std::thread::sleep(Duration::from_secs(5));
        Ok(())
    }

    #[test]
    fn each_test_passes_or_fails_on_its_own() {
        let tests = [
            ("t::passes".to_string(), Test::new("passes", passes)),
            ("t::fails".to_string(), Test::new("fails", fails)),
            ("t::panics".to_string(), Test::new("panics", panics)),
            (
                "t::hangs".to_string(),
                Test::new("hangs", hangs).with_timeout(0),
            ),
            ("t::after".to_string(), Test::new("after", passes)),
        ];
        let mut out = Vec::new();
        assert_eq!(run(&tests, &mut out), (2, 3));
        let out = String::from_utf8(out).unwrap();
        let results: Vec<&str> = out
            .lines()
            .filter(|l| !l.starts_with("e2e: start "))
            .collect();
        assert_eq!(results[0], "e2e: test t::passes ... ok");
        assert_eq!(
            results[1],
            "e2e: test t::fails ... FAILED: expected EPERM, | got success"
        );
        assert!(
            results[2].starts_with("e2e: test t::panics ... FAILED: panicked at ")
                && results[2].contains("vector is empty"),
            "{}",
            results[2]
        );
        assert_eq!(
            results[3],
            "e2e: test t::hangs ... FAILED: timed out after 0 s (the test thread is left running)"
        );
        assert_eq!(results[4], "e2e: test t::after ... ok");
        assert_eq!(results[5], "e2e: 2 passed, 3 failed");
    }

    #[test]
    fn a_long_test_says_it_is_still_running() {
        let (tx, rx) = mpsc::channel();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            tx.send(Outcome::Passed).unwrap();
        });
        let mut out = Vec::new();
        let outcome = wait_reporting_progress(
            "t::slow",
            &rx,
            Duration::from_secs(30),
            Duration::from_millis(50),
            &mut out,
        );
        sender.join().unwrap();
        assert_eq!(outcome, Some(Outcome::Passed));
        let out = String::from_utf8(out).unwrap();
        let beats = out.lines().collect::<Vec<_>>();
        assert!(beats.len() >= 2, "{out}");
        assert!(
            beats
                .iter()
                .all(|l| l.starts_with("e2e: still running t::slow (")),
            "{out}"
        );
        // Progress lines are neither results nor a summary for the host's parser.
        let report = crate::guest_report::SuiteReport::parse(
            &beats.iter().map(|l| l.to_string()).collect::<Vec<_>>(),
        );
        assert!(report.tests.is_empty() && report.summary.is_none());
    }

    #[test]
    fn test_names_are_unique_and_parseable() {
        let all = selected(None);
        let names: HashSet<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names.len(), all.len(), "duplicate test names");
        for name in names {
            assert!(
                !name.contains(char::is_whitespace) && !name.contains(" ... "),
                "{name:?}"
            );
        }
    }

    #[test]
    fn filters_by_name() {
        let guest = selected(Some("guest::"));
        assert!(!guest.is_empty());
        assert!(guest.iter().all(|(n, _)| n.starts_with("guest::")));
    }
}
