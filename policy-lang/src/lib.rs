//! The policy language: parse (with positions), check, compile to a kernel [`plan::Plan`],
//! and evaluate in user space exactly as the kernel programs will.

pub mod capabilities;
pub mod check;
pub mod condition;
pub mod diagnostic;
pub mod eval;
pub mod event;
pub mod explain;
pub mod kernel_features;
pub mod matcher;
pub mod model;
pub mod net;
pub mod overlap;
pub mod pattern;
pub mod plan;
pub mod plan_size;
pub mod syscalls;
pub mod testing;
pub mod yaml;

pub use diagnostic::{render_all, render_json, Diagnostic, Diagnostics, Severity, SourceMap, Span};
pub use eval::{Decision, Evaluator, Verdict};
pub use explain::explain;
pub use kernel_features::KernelFeatures;
pub use model::PolicySet;
pub use plan::Plan;
pub use testing::{run_tests, TestReport};

use std::path::{Path, PathBuf};

/// Loading failed: every diagnostic, with the sources needed to render them.
#[derive(Debug, thiserror::Error)]
#[error("{diagnostics}")]
pub struct LoadError {
    pub sources: SourceMap,
    pub diagnostics: Diagnostics,
}

impl LoadError {
    /// `PATH:LINE:COL: error[CODE]: ...` text for stderr.
    pub fn render(&self) -> String {
        render_all(&self.diagnostics, &self.sources)
    }

    /// `--format json`.
    pub fn render_json(&self) -> String {
        render_json(&self.diagnostics, &self.sources)
    }
}

/// Checks in-memory sources `(path, text)` as one policy set. Never half-accepts: any
/// error in any file fails the whole set.
pub fn load_sources<I, P, T>(files: I) -> Result<PolicySet, LoadError>
where
    I: IntoIterator<Item = (P, T)>,
    P: Into<String>,
    T: Into<String>,
{
    let mut sources = SourceMap::default();
    for (p, t) in files {
        sources.add(p, t);
    }
    check::check(sources).map_err(|(sources, diagnostics)| LoadError {
        sources,
        diagnostics,
    })
}

/// The policy files `paths` stand for: a directory stands for its `*.yaml` / `*.yml` files
/// (sorted, not recursive), a file for itself. Unreadable directories are diagnostics.
pub fn policy_files<P: AsRef<Path>>(paths: &[P]) -> (Vec<PathBuf>, Diagnostics) {
    let mut files: Vec<PathBuf> = Vec::new();
    let mut diags = Diagnostics::default();
    for p in paths {
        let p = p.as_ref();
        if p.is_dir() {
            match std::fs::read_dir(p) {
                Ok(rd) => {
                    let mut found: Vec<PathBuf> = rd
                        .filter_map(Result::ok)
                        .map(|e| e.path())
                        .filter(|f| {
                            matches!(f.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
                        })
                        .collect();
                    found.sort();
                    files.extend(found);
                }
                Err(e) => diags.push(Diagnostic::global(
                    "E0010",
                    format!("cannot read directory `{}`: {e}", p.display()),
                )),
            }
        } else {
            files.push(p.to_path_buf());
        }
    }
    (files, diags)
}

/// Reads the files of `paths` (see [`policy_files`]) as `(path, text)` sources, with a
/// diagnostic for each one that cannot be read.
pub fn read_sources<P: AsRef<Path>>(paths: &[P]) -> (Vec<(String, String)>, Diagnostics) {
    let (files, mut diags) = policy_files(paths);
    let mut texts = Vec::new();
    for f in files {
        match std::fs::read_to_string(&f) {
            Ok(t) => texts.push((f.display().to_string(), t)),
            Err(e) => diags.push(Diagnostic::global(
                "E0010",
                format!("cannot read `{}`: {e}", f.display()),
            )),
        }
    }
    (texts, diags)
}

/// Checks `sources` as one set, failing with `early` diagnostics (unreadable files) too.
pub fn load_with<I, P, T>(sources: I, early: Diagnostics) -> Result<PolicySet, LoadError>
where
    I: IntoIterator<Item = (P, T)>,
    P: Into<String>,
    T: Into<String>,
{
    match load_sources(sources) {
        Ok(set) if early.is_empty() => Ok(set),
        Ok(set) => Err(LoadError {
            sources: set.sources,
            diagnostics: early,
        }),
        Err(mut e) => {
            let mut diags = early;
            diags.extend(e.diagnostics);
            e.diagnostics = diags;
            Err(e)
        }
    }
}

/// Reads and checks policy files. A directory stands for its `*.yaml` / `*.yml` files
/// (sorted, not recursive).
pub fn load_files<P: AsRef<Path>>(paths: &[P]) -> Result<PolicySet, LoadError> {
    let (texts, diags) = read_sources(paths);
    load_with(texts, diags)
}

/// Compiles a checked set for a kernel; see [`plan::compile`].
pub fn compile(set: &PolicySet, kernel: &KernelFeatures) -> Result<Plan, Diagnostics> {
    plan::compile(set, kernel)
}
