//! The benchmark driver and its worker, run in the guest (see the parent module).

use std::ffi::CString;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::report::{ConfigResult, GuestReport, OpResult, Status, EMPTY, NONE};
use super::{ops, policy, report, APPARMOR_PARSER, CGROUP, DIR, WORKER_COMMAND};
use crate::e2e::cgroup::Cgroup;
use crate::e2e::command::capture;
use crate::e2e::enforcer_process::Enforcer;

/// Loading 10,000 rules under emulation is slow.
const ENFORCER_READY_TIMEOUT: Duration = Duration::from_secs(600);

/// `enforcer-e2e microbench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Operations per round for open and mmap; connect does a quarter, execve a fiftieth.
    #[arg(long, default_value_t = 2000)]
    pub iterations: u32,
    /// Measured rounds per configuration (after one warm-up round); the median is reported.
    #[arg(long, default_value_t = 5)]
    pub rounds: u32,
    /// Passes over every configuration; the rounds of all passes make the median.
    #[arg(long, default_value_t = 3)]
    pub passes: u32,
    /// The enforcer configurations, by number of rules.
    #[arg(long, value_delimiter = ',', default_value = "10,10000")]
    pub rules: Vec<usize>,
    /// Writes the report as JSON here (it is also printed).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The hidden worker subcommand: runs the operations and prints a [`WorkerOutput`] as JSON.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    #[arg(long)]
    pub iterations: u32,
    #[arg(long)]
    pub rounds: u32,
}

/// What one worker measured, printed on its stdout.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerOutput {
    pub denied_file: String,
    pub confinement: String,
    pub ops: Vec<OpResult>,
}

/// The worker: runs in the benchmark cgroup, under whatever is being measured.
pub fn worker(args: &WorkerArgs) -> Result<()> {
    let denied_file = ops::probe_open(&Path::new(DIR).join("denied"))?.to_string();
    let confinement = ops::own_context();
    let ops = ops::run_all(&Path::new(DIR).join("file"), args.iterations, args.rounds)?;
    let output = WorkerOutput {
        denied_file,
        confinement,
        ops,
    };
    println!("{}", serde_json::to_string(&output)?);
    Ok(())
}

/// The driver: every configuration in turn; prints progress and the report's table, writes
/// the JSON. A configuration that fails is recorded as failed and the others still run.
pub fn run(args: &BenchArgs) -> Result<GuestReport> {
    let report = measure(args)?;
    println!("{}", report.markdown());
    if let Some(out) = &args.out {
        fs::write(out, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(report)
}

/// Runs every configuration and returns the report (nothing printed but progress).
pub fn measure(args: &BenchArgs) -> Result<GuestReport> {
    let _ = fs::remove_dir_all(DIR);
    fs::create_dir_all(DIR).with_context(|| format!("creating {DIR}"))?;
    fs::write(format!("{DIR}/file"), "benchmark\n")?;
    fs::write(format!("{DIR}/denied"), "denied\n")?;
    let lsm = fs::read_to_string("/sys/kernel/security/lsm")
        .context("reading /sys/kernel/security/lsm (is securityfs mounted?)")?;
    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let cgroup = Cgroup::create(CGROUP)?;

    // Whole passes over every configuration, merged at the end: a slow phase of a shared
    // machine then lands on every configuration rather than on whichever ran during it.
    let mut passes: Vec<Vec<ConfigResult>> = Vec::new();
    for pass in 1..=args.passes.max(1) {
        println!("microbench: pass {pass} of {}", args.passes.max(1));
        passes.push(one_pass(args, &cgroup, &lsm));
    }
    let configs = merge_passes(passes);
    Ok(GuestReport {
        kernel,
        lsm: lsm.trim().to_string(),
        iterations: args.iterations,
        rounds: args.rounds,
        passes: args.passes.max(1),
        configs,
    })
}

/// Every configuration once.
fn one_pass(args: &BenchArgs, cgroup: &Cgroup, lsm: &str) -> Vec<ConfigResult> {
    let mut configs =
        vec![
        config(args, cgroup, NONE, "no enforcer, nothing of ours loaded", Setup::None),
        config(
            args,
            cgroup,
            EMPTY,
            "empty BPF LSM programs on file_open, bprm_check_security, socket_connect, mmap_file",
            Setup::Empty,
        ),
    ];
    for &rules in &args.rules {
        configs.push(config(
            args,
            cgroup,
            &format!("enforcer-{rules}"),
            &format!(
                "`enforcer run` with {rules} rules selecting the cgroup (file, exec and \
                 network rules that miss, one file deny that matches the probe file)"
            ),
            Setup::Enforcer(rules),
        ));
    }
    configs.push(config(
        args,
        cgroup,
        "apparmor",
        &format!(
            "the worker confined by AppArmor profile `{}` (allows all, denies the probe file)",
            policy::APPARMOR_PROFILE
        ),
        Setup::AppArmor(lsm),
    ));
    configs
}

/// One result per configuration from several passes: the rounds of every pass together (the
/// median over all of them), the slowest set-up, and the first failure.
pub fn merge_passes(passes: Vec<Vec<ConfigResult>>) -> Vec<ConfigResult> {
    let mut passes = passes.into_iter();
    let Some(mut merged) = passes.next() else {
        return Vec::new();
    };
    for pass in passes {
        for (into, from) in merged.iter_mut().zip(pass) {
            if into.status != Status::Measured {
                continue;
            }
            if from.status != Status::Measured {
                *into = from;
                continue;
            }
            into.setup_secs = into.setup_secs.max(from.setup_secs);
            for (op, other) in into.ops.iter_mut().zip(from.ops) {
                op.rounds_ns.extend(other.rounds_ns);
            }
        }
    }
    for config in &mut merged {
        for op in &mut config.ops {
            op.median_ns = report::median(&op.rounds_ns);
            op.min_ns = op.rounds_ns.iter().copied().fold(f64::INFINITY, f64::min);
            op.max_ns = op.rounds_ns.iter().copied().fold(0.0, f64::max);
        }
    }
    merged
}

enum Setup<'a> {
    None,
    Empty,
    Enforcer(usize),
    /// With the active LSM list.
    AppArmor(&'a str),
}

/// Why a configuration cannot be measured in this guest (not a failure).
#[derive(Debug)]
struct Unavailable(String);

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unavailable {}

fn config(
    args: &BenchArgs,
    cgroup: &Cgroup,
    name: &str,
    description: &str,
    setup: Setup<'_>,
) -> ConfigResult {
    println!("microbench: configuration {name}: {description}");
    let mut result = ConfigResult {
        name: name.to_string(),
        description: description.to_string(),
        status: Status::Measured,
        detail: String::new(),
        bpf_lsm_programs: Vec::new(),
        setup_secs: 0.0,
        denied_file: String::new(),
        confinement: String::new(),
        ops: Vec::new(),
    };
    if let Err(error) = measure_config(args, cgroup, setup, &mut result) {
        result.detail = format!("{error:#}");
        result.status = if error.downcast_ref::<Unavailable>().is_some() {
            Status::Unavailable
        } else {
            Status::Failed
        };
        println!(
            "microbench: configuration {name}: {:?}: {}",
            result.status, result.detail
        );
    }
    result
}

fn measure_config(
    args: &BenchArgs,
    cgroup: &Cgroup,
    setup: Setup<'_>,
    result: &mut ConfigResult,
) -> Result<()> {
    let start = Instant::now();
    let expect_denied;
    let output = match setup {
        Setup::None => {
            expect_denied = false;
            result.bpf_lsm_programs = loaded_programs()?;
            run_worker(args, cgroup, start, result, false)?
        }
        Setup::Empty => {
            expect_denied = false;
            let programs =
                bpf_lsm::bench::EmptyPrograms::attach().context("attaching the empty programs")?;
            result.bpf_lsm_programs = loaded_programs()?;
            let output = run_worker(args, cgroup, start, result, false);
            drop(programs);
            output?
        }
        Setup::Enforcer(rules) => {
            expect_denied = true;
            let path = format!("{DIR}/policy-{rules}.yaml");
            fs::write(
                &path,
                policy::enforcer_policy(CGROUP, &format!("{DIR}/denied"), rules),
            )
            .with_context(|| format!("writing {path}"))?;
            // Not pinned: a pinned plan would outlive the daemon and enforce during the next
            // configurations (the hooks a plan runs are the same pinned or not).
            let enforcer = Enforcer::start_with_timeout(
                &["--policy", &path, "--pin-root", ""],
                ENFORCER_READY_TIMEOUT,
            )?;
            result.bpf_lsm_programs = loaded_programs()?;
            let output = run_worker(args, cgroup, start, result, false);
            let log = enforcer.log().unwrap_or_default();
            let status = enforcer.stop()?;
            if !status.success() {
                bail!("the enforcer exited with {status} after SIGTERM; its log:\n{log}");
            }
            output?
        }
        Setup::AppArmor(lsm) => {
            expect_denied = true;
            if !lsm.trim().split(',').any(|l| l == "apparmor") {
                return Err(Unavailable(format!(
                    "AppArmor is not an active LSM on this kernel (lsm: {})",
                    lsm.trim()
                ))
                .into());
            }
            if !Path::new(APPARMOR_PARSER).is_file() {
                return Err(Unavailable(format!(
                    "{APPARMOR_PARSER} is not in this guest (`cargo xtask vm bench` adds it from \
                     Debian's `apparmor` package)"
                ))
                .into());
            }
            let profile = format!("{DIR}/apparmor.profile");
            fs::write(&profile, policy::apparmor_profile(&format!("{DIR}/denied")))
                .with_context(|| format!("writing {profile}"))?;
            capture(
                Command::new(APPARMOR_PARSER)
                    .args(["--replace", "--skip-cache"])
                    .arg(&profile),
            )?
            .success()
            .context("loading the AppArmor profile")?;
            result.bpf_lsm_programs = loaded_programs()?;
            let output = run_worker(args, cgroup, start, result, true);
            let removed = capture(Command::new(APPARMOR_PARSER).arg("--remove").arg(&profile))
                .and_then(|c| c.success());
            let output = output?;
            removed.context("removing the AppArmor profile")?;
            if !output.confinement.starts_with(policy::APPARMOR_PROFILE) {
                bail!(
                    "the worker ran as `{}`, not under profile `{}`",
                    output.confinement,
                    policy::APPARMOR_PROFILE
                );
            }
            output
        }
    };
    result.denied_file = output.denied_file.clone();
    result.confinement = output.confinement.clone();
    result.ops = output.ops;
    let denied = output.denied_file == "denied";
    if denied != expect_denied {
        bail!(
            "the probe open of {DIR}/denied was {}, expected {}: the configuration was not what \
             it claims",
            output.denied_file,
            if expect_denied { "denied" } else { "allowed" }
        );
    }
    if let Some(bad) = result
        .ops
        .iter()
        .find(|o| o.median_ns.is_nan() || o.median_ns <= 0.0)
    {
        bail!("{} reported {} ns/op", bad.op, bad.median_ns);
    }
    Ok(())
}

fn loaded_programs() -> Result<Vec<String>> {
    bpf_lsm::bench::loaded_lsm_programs().context("listing the loaded LSM programs")
}

/// Starts this binary's worker subcommand in the cgroup (under AppArmor's profile when
/// `apparmor`) and reads its output. The set-up time ends here.
fn run_worker(
    args: &BenchArgs,
    cgroup: &Cgroup,
    start: Instant,
    result: &mut ConfigResult,
    apparmor: bool,
) -> Result<WorkerOutput> {
    result.setup_secs = start.elapsed().as_secs_f64();
    let mut command = Command::new("/proc/self/exe");
    command.args([
        WORKER_COMMAND,
        "--iterations",
        &args.iterations.to_string(),
        "--rounds",
        &args.rounds.to_string(),
    ]);
    if apparmor {
        let request = CString::new(format!("exec {}", policy::APPARMOR_PROFILE))?;
        let files = [
            CString::new("/proc/self/attr/apparmor/exec")?,
            CString::new("/proc/self/attr/exec")?,
        ];
        // SAFETY: only open, write and close on pre-built buffers between fork and exec.
        unsafe {
            command.pre_exec(move || set_exec_profile(&files, &request));
        }
    }
    let ran = cgroup.run(&mut command)?.success()?;
    let line = ran
        .stdout
        .lines()
        .last()
        .context("the worker printed nothing")?;
    serde_json::from_str(line).with_context(|| format!("reading the worker's output {line:?}"))
}

/// AppArmor's `change_onexec`: the next exec of this (single-threaded, forked) process runs
/// under the profile. The AppArmor-specific file first (Linux 5.8+), the shared one second.
fn set_exec_profile(files: &[CString; 2], request: &CString) -> std::io::Result<()> {
    let mut last = std::io::Error::from_raw_os_error(libc::ENOENT);
    for file in files {
        // SAFETY: valid C strings; the descriptor is closed before returning.
        unsafe {
            let fd = libc::open(file.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                last = std::io::Error::last_os_error();
                continue;
            }
            let bytes = request.as_bytes();
            let written = libc::write(fd, bytes.as_ptr().cast(), bytes.len());
            let error = std::io::Error::last_os_error();
            libc::close(fd);
            if written == bytes.len() as isize {
                return Ok(());
            }
            last = error;
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(name: &str, rounds: &[f64], setup: f64) -> ConfigResult {
        ConfigResult {
            name: name.into(),
            description: String::new(),
            status: Status::Measured,
            detail: String::new(),
            bpf_lsm_programs: Vec::new(),
            setup_secs: setup,
            denied_file: "allowed".into(),
            confinement: String::new(),
            ops: vec![OpResult {
                op: "open_close".into(),
                iterations: 10,
                median_ns: report::median(rounds),
                min_ns: 0.0,
                max_ns: 0.0,
                rounds_ns: rounds.to_vec(),
            }],
        }
    }

    #[test]
    fn passes_merge_their_rounds_and_keep_a_failure() {
        let mut failed = measured("b", &[], 0.0);
        failed.status = Status::Failed;
        failed.detail = "the enforcer exited".into();
        let merged = merge_passes(vec![
            vec![measured("a", &[1.0, 9.0], 1.0), measured("b", &[5.0], 1.0)],
            vec![measured("a", &[2.0, 3.0], 2.0), failed],
        ]);
        let op = &merged[0].ops[0];
        assert_eq!(op.rounds_ns, [1.0, 9.0, 2.0, 3.0]);
        assert_eq!((op.median_ns, op.min_ns, op.max_ns), (2.5, 1.0, 9.0));
        assert_eq!(merged[0].setup_secs, 2.0);
        assert_eq!(merged[1].status, Status::Failed);
        assert_eq!(merged[1].detail, "the enforcer exited");
        assert!(merge_passes(Vec::new()).is_empty());
    }
}
