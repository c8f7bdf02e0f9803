//! Spanned YAML: a node tree where every scalar, sequence, mapping and key keeps its
//! position, so the checker can point at exactly the offending text.

use crate::diagnostic::{Diagnostic, Diagnostics, FileId, Span};
use saphyr_parser::{Event, Parser, ScalarStyle, Span as YSpan};

/// Nesting deeper than this is rejected: no policy needs it, and it bounds recursion.
const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: NodeKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    /// Every scalar is kept as text; the checker decides what type it should be.
    Scalar {
        value: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar { value, .. } => Some(value),
            _ => None,
        }
    }

    /// A plain `~`, `null` or empty scalar.
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, NodeKind::Scalar { value, plain: true }
            if value.is_empty() || value == "~" || value == "null")
    }

    /// What the node is, for "expected X, found Y" messages.
    pub fn describe(&self) -> &'static str {
        match &self.kind {
            NodeKind::Scalar { .. } if self.is_null() => "nothing",
            NodeKind::Scalar { .. } => "a scalar",
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a mapping",
        }
    }
}

fn to_span(file: FileId, s: &YSpan, text_line: Option<&str>) -> Span {
    let line = u32::try_from(s.start.line()).unwrap_or(u32::MAX);
    let col = u32::try_from(s.start.col() + 1).unwrap_or(u32::MAX);
    let len = if s.end.line() == s.start.line() {
        s.end.col().saturating_sub(s.start.col())
    } else {
        // A multi-line node is underlined to the end of its first line.
        text_line
            .map(|l| l.chars().count().saturating_sub(s.start.col()))
            .unwrap_or(1)
    };
    Span {
        file,
        line,
        col,
        len: u32::try_from(len).unwrap_or(u32::MAX),
    }
}

enum Frame {
    Seq(Span, Vec<Node>),
    Map(Span, Vec<(Node, Node)>, Option<Node>),
}

/// Parses one YAML document into a node tree. An empty document yields an empty mapping.
pub fn parse(file: FileId, text: &str) -> Result<Node, Diagnostics> {
    let lines: Vec<&str> = text.lines().collect();
    let span_of = |s: &YSpan| {
        to_span(
            file,
            s,
            lines.get(s.start.line().saturating_sub(1)).copied(),
        )
    };
    let mut diags = Diagnostics::default();
    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<Node> = None;
    let mut docs = 0usize;
    let mut parser = Parser::new_from_str(text);
    while let Some(item) = parser.next_event() {
        let (event, yspan) = match item {
            Ok(ev) => ev,
            Err(e) => {
                let m = e.marker();
                let span = Span {
                    file,
                    line: u32::try_from(m.line()).unwrap_or(u32::MAX),
                    col: u32::try_from(m.col() + 1).unwrap_or(u32::MAX),
                    len: 1,
                };
                diags.push(Diagnostic::error(
                    "E0001",
                    span,
                    format!("invalid YAML: {}", e.info()),
                ));
                return Err(diags);
            }
        };
        let span = span_of(&yspan);
        let node = match event {
            Event::DocumentStart(_) => {
                docs += 1;
                if docs > 1 {
                    diags.push(
                        Diagnostic::error("E0003", span, "more than one YAML document in a file")
                            .with_help("put each document in its own file"),
                    );
                    return Err(diags);
                }
                continue;
            }
            Event::Alias(_) => {
                diags.push(
                    Diagnostic::error("E0002", span, "YAML aliases are not supported")
                        .with_help("use a named list under `lists:` and refer to it as `$name`"),
                );
                continue;
            }
            Event::Scalar(value, style, _, _) => Node {
                kind: NodeKind::Scalar {
                    value: value.into_owned(),
                    plain: style == ScalarStyle::Plain,
                },
                span,
            },
            Event::SequenceStart(_, _) | Event::MappingStart(_, _) => {
                if stack.len() >= MAX_DEPTH {
                    diags.push(Diagnostic::error(
                        "E0004",
                        span,
                        format!("nesting deeper than {MAX_DEPTH} levels"),
                    ));
                    return Err(diags);
                }
                if matches!(event, Event::SequenceStart(..)) {
                    stack.push(Frame::Seq(span, Vec::new()));
                } else {
                    stack.push(Frame::Map(span, Vec::new(), None));
                }
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(Frame::Seq(start, items)) => Node {
                    kind: NodeKind::Seq(items),
                    span: start,
                },
                Some(Frame::Map(start, items, _)) => Node {
                    kind: NodeKind::Map(items),
                    span: start,
                },
                None => continue,
            },
            _ => continue,
        };
        match stack.last_mut() {
            Some(Frame::Seq(_, items)) => items.push(node),
            Some(Frame::Map(_, items, pending)) => match pending.take() {
                None => {
                    if !matches!(node.kind, NodeKind::Scalar { .. }) {
                        diags.push(Diagnostic::error(
                            "E0005",
                            node.span,
                            "mapping keys must be plain scalars",
                        ));
                    } else if let Some((prev, _)) =
                        items.iter().find(|(k, _)| k.as_str() == node.as_str())
                    {
                        diags.push(
                            Diagnostic::error(
                                "E0006",
                                node.span,
                                format!("duplicate key `{}`", node.as_str().unwrap_or("")),
                            )
                            .with_note(format!(
                                "first defined at line {}, column {}",
                                prev.span.line, prev.span.col
                            )),
                        );
                    }
                    *pending = Some(node);
                }
                Some(key) => items.push((key, node)),
            },
            None => root = Some(node),
        }
    }
    if diags.has_errors() {
        return Err(diags);
    }
    Ok(root.unwrap_or(Node {
        kind: NodeKind::Map(Vec::new()),
        span: Span {
            file,
            line: 1,
            col: 1,
            len: 1,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_positions() {
        let n = parse(0, "a:\n  b: [1, two]\n").unwrap();
        let NodeKind::Map(items) = &n.kind else {
            panic!("not a map")
        };
        let (_, v) = &items[0];
        let NodeKind::Map(inner) = &v.kind else {
            panic!("not a map")
        };
        let (k, seq) = &inner[0];
        assert_eq!((k.span.line, k.span.col, k.span.len), (2, 3, 1));
        let NodeKind::Seq(xs) = &seq.kind else {
            panic!("not a seq")
        };
        assert_eq!(
            (xs[1].span.line, xs[1].span.col, xs[1].span.len),
            (2, 10, 3)
        );
    }

    #[test]
    fn reports_syntax_errors_and_duplicates() {
        assert!(parse(0, "a: [1, 2\n").is_err());
        let e = parse(0, "a: 1\na: 2\n").unwrap_err();
        assert_eq!(e.items[0].code, "E0006");
        assert!(parse(0, "a: &x 1\nb: *x\n").is_err());
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let text = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(parse(0, &text).is_err());
    }
}
