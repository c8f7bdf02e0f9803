//! Diagnostics: what went wrong, where, and how to fix it.
//!
//! Every stage pushes into a [`Diagnostics`] collection instead of stopping at the first
//! problem, so a user sees every error of a file at once.

use serde::Serialize;
use std::fmt::Write as _;

/// Index of a file in a [`SourceMap`].
pub type FileId = u32;

/// A region of a source file. Lines and columns are 1-based; columns count characters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Span {
    pub file: FileId,
    pub line: u32,
    pub col: u32,
    /// Width in characters on `line` (at least 1 when rendered).
    pub len: u32,
}

impl Span {
    /// A span `len` characters wide starting `offset` characters after this span's start.
    /// Used for positions inside a scalar (a condition expression, a list element).
    pub fn sub(self, offset: u32, len: u32) -> Span {
        Span {
            col: self.col.saturating_add(offset),
            len,
            ..self
        }
    }
}

/// One loaded source file.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: String,
    pub text: String,
}

/// All files of a policy set, so diagnostics can show source lines.
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    pub files: Vec<SourceFile>,
}

impl SourceMap {
    pub fn add(&mut self, path: impl Into<String>, text: impl Into<String>) -> FileId {
        self.files.push(SourceFile {
            path: path.into(),
            text: text.into(),
        });
        u32::try_from(self.files.len().saturating_sub(1)).unwrap_or(u32::MAX)
    }

    pub fn path(&self, file: FileId) -> &str {
        self.files
            .get(file as usize)
            .map_or("<unknown>", |f| f.path.as_str())
    }

    pub fn line(&self, span: &Span) -> Option<&str> {
        let f = self.files.get(span.file as usize)?;
        f.text.lines().nth((span.line as usize).checked_sub(1)?)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One problem found in a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Stable code, e.g. `E0201`; see `docs/policy-language.md` for the list.
    pub code: &'static str,
    pub message: String,
    pub span: Option<Span>,
    pub help: Option<String>,
    pub notes: Vec<String>,
}

impl Diagnostic {
    pub fn error(code: &'static str, span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            span: Some(span),
            help: None,
            notes: Vec::new(),
        }
    }

    pub fn warning(code: &'static str, span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, span, message)
        }
    }

    /// An error not tied to a place in a file (e.g. an unreadable file).
    pub fn global(code: &'static str, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            span: None,
            help: None,
            notes: Vec::new(),
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// A collection of diagnostics, in the order found.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
#[error("{} error(s), {} warning(s)", self.error_count(), self.warning_count())]
pub struct Diagnostics {
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.items.push(d);
    }

    pub fn extend(&mut self, other: Diagnostics) {
        self.items.extend(other.items);
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(Diagnostic::is_error)
    }

    pub fn error_count(&self) -> usize {
        self.items.iter().filter(|d| d.is_error()).count()
    }

    pub fn warning_count(&self) -> usize {
        self.items.len() - self.error_count()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Sorts by file and position so output does not depend on checking order.
    pub fn sort(&mut self) {
        self.items.sort_by(|a, b| {
            let ka = a.span.map(|s| (s.file, s.line, s.col));
            let kb = b.span.map(|s| (s.file, s.line, s.col));
            ka.cmp(&kb)
        });
    }
}

/// Renders one diagnostic as `PATH:LINE:COL: error[CODE]: message`, the source line with a
/// caret under the span, then `help:` and `note:` lines.
pub fn render(d: &Diagnostic, sources: &SourceMap) -> String {
    let mut out = String::new();
    match d.span {
        Some(span) => {
            let _ = writeln!(
                out,
                "{}:{}:{}: {}[{}]: {}",
                sources.path(span.file),
                span.line,
                span.col,
                d.severity.as_str(),
                d.code,
                d.message
            );
            if let Some(line) = sources.line(&span) {
                let gutter = span.line.to_string();
                let pad = " ".repeat(gutter.len());
                let _ = writeln!(out, " {gutter} | {line}");
                // Tabs are kept so the caret lines up with the source in a terminal.
                let lead: String = line
                    .chars()
                    .take((span.col as usize).saturating_sub(1))
                    .map(|c| if c == '\t' { '\t' } else { ' ' })
                    .collect();
                let avail = line
                    .chars()
                    .count()
                    .saturating_sub(span.col as usize - 1)
                    .max(1);
                let width = (span.len as usize).clamp(1, avail);
                let _ = writeln!(out, " {pad} | {lead}{}", "^".repeat(width));
            }
        }
        None => {
            let _ = writeln!(out, "{}[{}]: {}", d.severity.as_str(), d.code, d.message);
        }
    }
    if let Some(help) = &d.help {
        let _ = writeln!(out, "  help: {help}");
    }
    for note in &d.notes {
        let _ = writeln!(out, "  note: {note}");
    }
    out
}

/// Renders all diagnostics followed by a summary line.
pub fn render_all(diags: &Diagnostics, sources: &SourceMap) -> String {
    let mut out = String::new();
    for d in &diags.items {
        out.push_str(&render(d, sources));
    }
    let (e, w) = (diags.error_count(), diags.warning_count());
    if e + w > 0 {
        let _ = writeln!(out, "{e} error(s), {w} warning(s)");
    }
    out
}

/// The machine-readable form of a diagnostic (`--format json`).
#[derive(Debug, Clone, Serialize)]
pub struct JsonDiagnostic<'a> {
    pub severity: Severity,
    pub code: &'a str,
    pub message: &'a str,
    pub file: Option<&'a str>,
    pub line: Option<u32>,
    pub column: Option<u32>,
    pub length: Option<u32>,
    pub help: Option<&'a str>,
    pub notes: &'a [String],
}

/// Renders diagnostics as a JSON array (one object per diagnostic).
pub fn render_json(diags: &Diagnostics, sources: &SourceMap) -> String {
    let items: Vec<JsonDiagnostic<'_>> = diags
        .items
        .iter()
        .map(|d| JsonDiagnostic {
            severity: d.severity,
            code: d.code,
            message: &d.message,
            file: d.span.map(|s| sources.path(s.file)),
            line: d.span.map(|s| s.line),
            column: d.span.map(|s| s.col),
            length: d.span.map(|s| s.len),
            help: d.help.as_deref(),
            notes: &d.notes,
        })
        .collect();
    serde_json::to_string_pretty(&items).unwrap_or_else(|_| "[]".to_owned())
}

/// Levenshtein distance, for "did you mean" suggestions.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The closest candidate to `input`, if it is close enough to be a plausible typo.
pub fn did_you_mean<'a, I>(input: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let lower = input.to_ascii_lowercase();
    let max = (input.chars().count() / 3).max(1) + 1;
    candidates
        .into_iter()
        .map(|c| (edit_distance(&lower, &c.to_ascii_lowercase()), c))
        .filter(|(d, _)| *d <= max)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// `help: did you mean ...?` text, if there is a close candidate.
pub fn suggestion<'a, I>(input: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = &'a str>,
{
    did_you_mean(input, candidates).map(|c| format!("did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_caret_under_span() {
        let mut sm = SourceMap::default();
        let f = sm.add("p.yaml", "policies:\n  - nmae: x\n");
        let d = Diagnostic::error(
            "E0201",
            Span {
                file: f,
                line: 2,
                col: 5,
                len: 4,
            },
            "unknown key `nmae` in policy",
        )
        .with_help("did you mean `name`?");
        let expected = "p.yaml:2:5: error[E0201]: unknown key `nmae` in policy\n \
                        2 |   - nmae: x\n   |     ^^^^\n  help: did you mean `name`?\n";
        assert_eq!(render(&d, &sm), expected);
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            did_you_mean("acton", ["action", "name", "message"]),
            Some("action")
        );
        assert_eq!(did_you_mean("zzzzzz", ["action", "name"]), None);
    }
}
