//! What the guest's benchmark driver reports (JSON, read back on the host) and the table the
//! host prints and writes as markdown.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// The operations measured, in table order.
pub const OPS: &[&str] = &["open_close", "execve", "connect", "mmap_exec"];

/// Name of the "no enforcer" configuration, the first baseline.
pub const NONE: &str = "none";
/// Name of the "empty LSM programs" configuration, the second baseline.
pub const EMPTY: &str = "empty";

/// One microbenchmark's figures in one configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpResult {
    pub op: String,
    /// Operations per round.
    pub iterations: u32,
    /// Median over the measured rounds (the warm-up round is not among them).
    pub median_ns: f64,
    pub min_ns: f64,
    pub max_ns: f64,
    /// ns/op of each measured round, in order.
    pub rounds_ns: Vec<f64>,
}

/// How a configuration went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Measured,
    /// The mechanism does not exist on this kernel or in this guest (not a failure).
    Unavailable,
    /// The benchmark itself failed: setting up, running, or the policy was not in force.
    Failed,
}

/// One configuration (no enforcer, empty programs, the enforcer with N rules, AppArmor).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigResult {
    pub name: String,
    pub description: String,
    pub status: Status,
    /// Why it is unavailable or failed; empty when measured.
    pub detail: String,
    /// The LSM BPF programs loaded while it was measured (kernel names, at most 15 bytes).
    pub bpf_lsm_programs: Vec<String>,
    /// From the start of the set-up (load, attach, `enforcer ready`) to the first operation.
    pub setup_secs: f64,
    /// What the probe open of the file the policies deny did: `denied` or `allowed`.
    pub denied_file: String,
    /// The benchmark process's security context (`/proc/self/attr/current`), if any.
    pub confinement: String,
    pub ops: Vec<OpResult>,
}

/// Everything one guest boot measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuestReport {
    pub kernel: String,
    /// `/sys/kernel/security/lsm`.
    pub lsm: String,
    pub iterations: u32,
    /// Rounds per pass.
    pub rounds: u32,
    /// Passes over every configuration, one after the other.
    pub passes: u32,
    pub configs: Vec<ConfigResult>,
}

impl GuestReport {
    pub fn failures(&self) -> Vec<&ConfigResult> {
        self.configs
            .iter()
            .filter(|c| c.status == Status::Failed)
            .collect()
    }

    fn config(&self, name: &str) -> Option<&ConfigResult> {
        self.configs
            .iter()
            .find(|c| c.name == name && c.status == Status::Measured)
    }

    /// The median ns/op of `op` in configuration `name`, when it was measured.
    pub fn median(&self, name: &str, op: &str) -> Option<f64> {
        self.config(name)?
            .ops
            .iter()
            .find(|o| o.op == op)
            .map(|o| o.median_ns)
    }

    /// The fastest round's ns/op of `op` in configuration `name`, when it was measured.
    pub fn fastest(&self, name: &str, op: &str) -> Option<f64> {
        self.config(name)?
            .ops
            .iter()
            .find(|o| o.op == op)
            .map(|o| o.min_ns)
    }

    /// Markdown: one row per operation, one column per configuration, each cell `ns/op` with
    /// the ratio to the empty programs and to no enforcer; then what each configuration had.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Kernel {} (LSMs: {}), {} passes over every configuration, {} rounds per pass \
             after a warm-up round; median ns/op over all rounds, then (ratio to `{EMPTY}`, \
             ratio to `{NONE}`).\n",
            self.kernel,
            self.lsm.trim(),
            self.passes,
            self.rounds
        );
        let header: Vec<&str> = self.configs.iter().map(|c| c.name.as_str()).collect();
        let _ = writeln!(out, "| op (iterations) | {} |", header.join(" | "));
        let _ = writeln!(out, "|---|{}", "---|".repeat(header.len()));
        for op in OPS {
            let iterations = self
                .configs
                .iter()
                .flat_map(|c| &c.ops)
                .find(|o| o.op == *op)
                .map_or(0, |o| o.iterations);
            let mut row = format!("| {op} ({iterations}) |");
            for config in &self.configs {
                let cell = match self.median(&config.name, op) {
                    Some(ns) => {
                        let ratio = |base: &str| {
                            self.median(base, op)
                                .filter(|b| *b > 0.0)
                                .map_or("-".to_string(), |b| format!("{:.2}x", ns / b))
                        };
                        format!("{} ({}, {})", format_ns(ns), ratio(EMPTY), ratio(NONE))
                    }
                    None => match config.status {
                        Status::Measured => "-".to_string(),
                        Status::Unavailable => "unavailable".to_string(),
                        Status::Failed => "FAILED".to_string(),
                    },
                };
                let _ = write!(row, " {cell} |");
            }
            let _ = writeln!(out, "{row}");
        }
        let _ = writeln!(
            out,
            "\nThe same ratios from each configuration's fastest round (less sensitive to other \
             load on the machine, which only ever adds time):\n"
        );
        let _ = writeln!(out, "| op | {} |", header.join(" | "));
        let _ = writeln!(out, "|---|{}", "---|".repeat(header.len()));
        for op in OPS {
            let mut row = format!("| {op} |");
            for config in &self.configs {
                let cell = match self.fastest(&config.name, op) {
                    Some(ns) => {
                        let ratio = |base: &str| {
                            self.fastest(base, op)
                                .filter(|b| *b > 0.0)
                                .map_or("-".to_string(), |b| format!("{:.2}x", ns / b))
                        };
                        format!("{} ({}, {})", format_ns(ns), ratio(EMPTY), ratio(NONE))
                    }
                    None => "-".to_string(),
                };
                let _ = write!(row, " {cell} |");
            }
            let _ = writeln!(out, "{row}");
        }
        let _ = writeln!(out);
        for config in &self.configs {
            let programs = if config.bpf_lsm_programs.is_empty() {
                "none".to_string()
            } else {
                config.bpf_lsm_programs.join(", ")
            };
            let _ = write!(
                out,
                "- `{}`: {}; BPF LSM programs loaded: {programs}; set-up {:.1} s; \
                 the denied file was {}",
                config.name,
                config.description,
                config.setup_secs,
                if config.denied_file.is_empty() {
                    "not probed"
                } else {
                    &config.denied_file
                },
            );
            if !config.confinement.is_empty() {
                let _ = write!(out, "; context `{}`", config.confinement);
            }
            if config.status != Status::Measured {
                let _ = write!(out, "; {:?}: {}", config.status, config.detail);
            }
            let _ = writeln!(out);
        }
        out
    }
}

/// `1234 ns` or `12.3 µs`.
fn format_ns(ns: f64) -> String {
    if ns >= 10_000.0 {
        format!("{:.1} µs", ns / 1000.0)
    } else {
        format!("{ns:.0} ns")
    }
}

/// The median of `values` (the mean of the middle two for an even count); 0 for none.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(name: &str, ns: f64) -> OpResult {
        OpResult {
            op: name.into(),
            iterations: 100,
            median_ns: ns,
            min_ns: ns,
            max_ns: ns,
            rounds_ns: vec![ns],
        }
    }

    fn config(name: &str, status: Status, scale: f64) -> ConfigResult {
        ConfigResult {
            name: name.into(),
            description: format!("{name} config"),
            status,
            detail: if status == Status::Measured {
                String::new()
            } else {
                "no apparmor_parser".into()
            },
            bpf_lsm_programs: Vec::new(),
            setup_secs: 0.5,
            denied_file: "allowed".into(),
            confinement: String::new(),
            ops: if status == Status::Measured {
                OPS.iter().map(|o| op(o, 1000.0 * scale)).collect()
            } else {
                Vec::new()
            },
        }
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[]), 0.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn the_table_has_ratios_to_both_baselines_and_names_what_was_not_measured() {
        let report = GuestReport {
            kernel: "6.1.0-1-cloud-amd64".into(),
            lsm: "lockdown,capability,apparmor,bpf\n".into(),
            iterations: 100,
            rounds: 5,
            passes: 1,
            configs: vec![
                config(NONE, Status::Measured, 1.0),
                config(EMPTY, Status::Measured, 1.25),
                config("enforcer-10", Status::Measured, 1.5),
                config("apparmor", Status::Unavailable, 0.0),
            ],
        };
        let text = report.markdown();
        assert!(text.contains("| op (iterations) | none | empty | enforcer-10 | apparmor |"));
        assert!(text.contains(
            "| open_close (100) | 1000 ns (0.80x, 1.00x) | 1250 ns (1.00x, 1.25x) | \
             1500 ns (1.20x, 1.50x) | unavailable |"
        ));
        assert!(text.contains("- `apparmor`: apparmor config;"));
        assert!(text.contains("Unavailable: no apparmor_parser"));
        assert!(report.failures().is_empty());
        // The JSON round-trips: the host reads what the guest wrote.
        let json = serde_json::to_string(&report).unwrap();
        assert_eq!(serde_json::from_str::<GuestReport>(&json).unwrap(), report);
    }
}
