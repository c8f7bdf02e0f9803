//! `enforcer policy check|compile|test`: the policy language's tooling.

use crate::exit_code::{self, Failure};
use anyhow::Context;
use policy_lang::{KernelFeatures, PolicySet};
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Check policy files: every error at once, as `PATH:LINE:COL: error[CODE]: ...`.
    /// Exit 0 when valid, 1 on errors, 2 on usage errors.
    Check {
        #[command(flatten)]
        input: Input,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Compile policies into the kernel plan and print it: hooks, map entries, per-rule
    /// enforcement on the target kernel, map sizes and memory.
    Compile {
        #[command(flatten)]
        input: Input,
        /// Print the plan for humans (the default text output is a summary).
        #[arg(long)]
        explain: bool,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Run every `tests:` case through the reference evaluator; ends with `N passed, N failed`.
    Test {
        #[command(flatten)]
        input: Input,
    },
}

#[derive(Debug, clap::Args)]
pub struct Input {
    /// Policy files or folders (a folder stands for its *.yaml and *.yml files).
    #[arg(required_unless_present = "builtin")]
    pub paths: Vec<PathBuf>,
    /// Use the rule library embedded in this binary (alone or with PATHs).
    #[arg(long)]
    pub builtin: bool,
    /// The target kernel's features, as printed by `enforcer doctor --json`. Default: the
    /// running kernel (for `test`: a kernel with every feature, so tests state what the
    /// policy means).
    #[arg(long, value_name = "FEATURES.json")]
    pub kernel: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Loads the policy set named on the command line; diagnostics are printed here.
pub fn load(input: &Input, format: Format) -> Result<PolicySet, Failure> {
    let mut sources: Vec<(String, String)> = Vec::new();
    if input.builtin {
        sources.extend(rules::files().map(|(p, t)| (p.to_string(), t.to_string())));
    }
    let (files, unreadable) = policy_lang::read_sources(&input.paths);
    sources.extend(files);
    match policy_lang::load_with(sources, unreadable) {
        Ok(set) => {
            if !set.warnings.is_empty() && format == Format::Text {
                eprint!("{}", policy_lang::render_all(&set.warnings, &set.sources));
            }
            Ok(set)
        }
        Err(e) => {
            match format {
                Format::Text => eprint!("{}", e.render()),
                Format::Json => println!("{}", e.render_json()),
            }
            Err(Failure::new(
                exit_code::ERROR,
                anyhow::anyhow!("the policy set has errors"),
            )
            .quiet())
        }
    }
}

/// The features to compile for: a doctor report, else the running kernel.
pub fn kernel_features(file: Option<&Path>) -> Result<KernelFeatures, Failure> {
    if let Some(file) = file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading kernel features `{}`", file.display()))?;
        return KernelFeatures::from_json(&text)
            .with_context(|| {
                format!(
                    "`{}` is not a kernel feature report (make one with `enforcer doctor --json`)",
                    file.display()
                )
            })
            .map_err(|e| Failure::new(exit_code::USAGE, e));
    }
    if !nix::unistd::geteuid().is_root() {
        return Err(Failure::new(
            exit_code::USAGE,
            anyhow::anyhow!(
                "probing the running kernel needs root; run with sudo, or pass `--kernel FILE` \
                 (from `enforcer doctor --json`)"
            ),
        ));
    }
    let report = bpf_lsm::probe_kernel();
    let json = serde_json::to_string(&report)?;
    Ok(KernelFeatures::from_json(&json)?)
}

fn compile_errors(diags: &policy_lang::Diagnostics, set: &PolicySet, format: Format) -> Failure {
    match format {
        Format::Text => eprint!("{}", policy_lang::render_all(diags, &set.sources)),
        Format::Json => println!("{}", policy_lang::render_json(diags, &set.sources)),
    }
    Failure::new(
        exit_code::ERROR,
        anyhow::anyhow!("the policy set does not compile for this kernel"),
    )
    .quiet()
}

pub fn run(cmd: PolicyCommand) -> Result<u8, Failure> {
    match cmd {
        PolicyCommand::Check { input, format } => {
            let set = load(&input, format)?;
            let kernel = kernel_features(input.kernel.as_deref())?;
            // Kernel-dependent errors (a deny this kernel cannot enforce) are check errors too.
            policy_lang::compile(&set, &kernel).map_err(|d| compile_errors(&d, &set, format))?;
            match format {
                Format::Json => {
                    println!("{}", policy_lang::render_json(&set.warnings, &set.sources))
                }
                Format::Text => eprintln!(
                    "ok: {} policies, {} rules, {} warnings",
                    set.policies.len(),
                    set.policies.iter().map(|p| p.rules.len()).sum::<usize>(),
                    set.warnings.warning_count()
                ),
            }
            Ok(exit_code::OK)
        }
        PolicyCommand::Compile {
            input,
            explain,
            format,
        } => {
            let set = load(&input, format)?;
            let kernel = kernel_features(input.kernel.as_deref())?;
            let plan = policy_lang::compile(&set, &kernel)
                .map_err(|d| compile_errors(&d, &set, format))?;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&plan)?),
                Format::Text if explain => print!("{}", policy_lang::explain(&plan)),
                Format::Text => print!("{}", summary(&plan)),
            }
            Ok(exit_code::OK)
        }
        PolicyCommand::Test { input } => {
            let set = load(&input, Format::Text)?;
            let kernel = match &input.kernel {
                Some(_) => kernel_features(input.kernel.as_deref())?,
                None => KernelFeatures::full(),
            };
            let plan = policy_lang::compile(&set, &kernel)
                .map_err(|d| compile_errors(&d, &set, Format::Text))?;
            let report = policy_lang::run_tests(&set, &plan)?;
            print!("{}", report.render(&set.sources));
            Ok(if report.failed() == 0 {
                exit_code::OK
            } else {
                exit_code::ERROR
            })
        }
    }
}

/// One screen: what `--explain` details.
fn summary(plan: &policy_lang::Plan) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{} policies, {} rules",
        plan.policies.len(),
        plan.rules.len()
    );
    let _ = writeln!(
        o,
        "hooks: {}",
        plan.hooks
            .iter()
            .map(|h| h.program.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut by_enforcement: std::collections::BTreeMap<&str, usize> = Default::default();
    for r in &plan.rules {
        *by_enforcement.entry(r.enforcement.describe()).or_default() += 1;
    }
    for (how, n) in by_enforcement {
        let _ = writeln!(o, "  {n:>6} rules {how}");
    }
    let _ = writeln!(
        o,
        "kernel memory: about {} KiB in {} maps",
        plan.memory_bytes / 1024,
        plan.sizes.len()
    );
    let _ = writeln!(
        o,
        "(--explain for every hook, rule and map; --format json for the plan)"
    );
    o
}
