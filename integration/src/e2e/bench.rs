//! A short run of the kernel benchmark (`integration::bench`, what `cargo xtask vm bench`
//! runs), so that its code cannot rot: every configuration must run and produce a figure for
//! every operation, with its policy in force. No time is asserted.

use std::path::Path;

use anyhow::{ensure, Result};

use super::Test;
use crate::bench::report::{Status, OPS};
use crate::bench::{self, BenchArgs, APPARMOR_PARSER};

pub const TESTS: &[Test] = &[Test::new(
    "every_configuration_measures_every_op",
    every_configuration_measures_every_op,
)
.with_timeout(600)];

fn every_configuration_measures_every_op() -> Result<()> {
    let args = BenchArgs {
        iterations: 20,
        rounds: 1,
        passes: 1,
        rules: vec![10, 300],
        out: None,
    };
    let report = bench::measure(&args)?;
    let names: Vec<&str> = report.configs.iter().map(|c| c.name.as_str()).collect();
    ensure!(
        names == ["none", "empty", "enforcer-10", "enforcer-300", "apparmor"],
        "configurations: {names:?}"
    );
    for config in &report.configs {
        if config.name == "apparmor" && config.status == Status::Unavailable {
            // The suite's guest has no AppArmor parser (only `vm bench` adds it); with it, the
            // configuration must run.
            ensure!(
                !Path::new(APPARMOR_PARSER).exists()
                    || !report.lsm.split(',').any(|l| l == "apparmor"),
                "apparmor unavailable although the parser and the LSM are there: {}",
                config.detail
            );
            continue;
        }
        ensure!(
            config.status == Status::Measured,
            "{} {:?}: {}",
            config.name,
            config.status,
            config.detail
        );
        let ops: Vec<&str> = config.ops.iter().map(|o| o.op.as_str()).collect();
        ensure!(ops == OPS, "{}: operations {ops:?}", config.name);
        for op in &config.ops {
            ensure!(
                op.median_ns > 0.0 && op.rounds_ns.len() == 1,
                "{}: {op:?}",
                config.name
            );
        }
    }
    let programs = |name: &str| {
        report
            .configs
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.bpf_lsm_programs.clone())
            .unwrap_or_default()
    };
    let empty = programs("empty");
    for (program, _) in bpf_lsm::bench::EMPTY_PROGRAMS {
        ensure!(
            empty.iter().any(|p| p == program),
            "{program} was not loaded in `empty`: {empty:?}"
        );
    }
    let enforcer = programs("enforcer-10");
    ensure!(
        enforcer.iter().any(|p| p == "enf_file_open"),
        "the enforcer's file_open program was not loaded: {enforcer:?}"
    );
    ensure!(
        !programs("none").iter().any(|p| p.starts_with("bench_")),
        "empty programs left over in `none`"
    );
    Ok(())
}
