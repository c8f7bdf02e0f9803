//! Inserting learned rules into an existing policy file, as text: the file keeps its
//! comments, selector, mode, defaults and rules, and the learned rules are appended to the
//! policy's `rules:` list. Positions come from policy-lang's spanned YAML.

use std::collections::BTreeSet;

use policy_lang::yaml::{self, Node, NodeKind};

/// Why learned rules cannot be merged into a policy file.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MergeError {
    #[error("`{file}` is not valid YAML: {message}")]
    Yaml { file: String, message: String },
    #[error(
        "`{file}` has no policy named `{policy}` (it has: {known}); pass the file that defines it"
    )]
    NoSuchPolicy {
        file: String,
        policy: String,
        known: String,
    },
    #[error(
        "`{file}` line {line}: the policy `{policy}` is written in flow style (`{{...}}` or `[...]`); \
         write its `rules:` list in block style (one `- name:` per line) to merge into it"
    )]
    FlowStyle {
        file: String,
        policy: String,
        line: u32,
    },
}

fn get<'a>(map: &'a Node, key: &str) -> Option<(&'a Node, &'a Node)> {
    match &map.kind {
        NodeKind::Map(entries) => entries
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(k, v)| (k, v)),
        _ => None,
    }
}

/// The names of the rules of `policy` in `text`, so learned rules avoid them.
pub fn rule_names(text: &str, file: &str, policy: &str) -> Result<BTreeSet<String>, MergeError> {
    let root = parse(text, file)?;
    let item = find_policy(&root, file, policy)?;
    let mut names = BTreeSet::new();
    if let Some((_, rules)) = get(item, "rules") {
        if let NodeKind::Seq(rules) = &rules.kind {
            for r in rules {
                if let Some(n) = get(r, "name").and_then(|(_, v)| v.as_str()) {
                    names.insert(n.to_string());
                }
            }
        }
    }
    Ok(names)
}

fn parse(text: &str, file: &str) -> Result<Node, MergeError> {
    yaml::parse(0, text).map_err(|d| MergeError::Yaml {
        file: file.to_string(),
        message: d
            .items
            .first()
            .map_or_else(|| "cannot be parsed".to_string(), |d| d.message.clone()),
    })
}

fn find_policy<'a>(root: &'a Node, file: &str, policy: &str) -> Result<&'a Node, MergeError> {
    let items: &[Node] = match get(root, "policies").map(|(_, v)| &v.kind) {
        Some(NodeKind::Seq(items)) => items,
        _ => &[],
    };
    let name = |n: &Node| {
        get(n, "name")
            .and_then(|(_, v)| v.as_str())
            .map(String::from)
    };
    items
        .iter()
        .find(|n| name(n).as_deref() == Some(policy))
        .ok_or_else(|| MergeError::NoSuchPolicy {
            file: file.to_string(),
            policy: policy.to_string(),
            known: {
                let names: Vec<String> = items.iter().filter_map(name).collect();
                if names.is_empty() {
                    "no policies".into()
                } else {
                    names.join(", ")
                }
            },
        })
}

/// The column (0-based) where the block sequence item starting on `line` has its `-`, when
/// only spaces come before it.
fn dash_column(line: &str) -> Option<usize> {
    let indent = line.len() - line.trim_start_matches(' ').len();
    line[indent..].starts_with("- ").then_some(indent)
}

/// The 0-based line index after the last item of a block sequence: the first line after the
/// last item's start that is neither blank nor a comment and is indented no deeper than the
/// sequence's key (`key_indent`), with blank lines and shallower comments before it (they
/// belong to what follows) left out. Comments inside the list stay where they are.
fn end_of_block(lines: &[&str], items: &[Node], key_indent: usize) -> usize {
    let last = items.last().map_or(0, |n| n.span.line as usize); // 1-based: the next index
    let indent = |l: &str| l.len() - l.trim_start_matches(' ').len();
    let mut end = lines.len();
    for (i, l) in lines.iter().enumerate().skip(last) {
        let t = l.trim();
        if !t.is_empty() && !t.starts_with('#') && indent(l) <= key_indent {
            end = i;
            break;
        }
    }
    while end > last {
        let l = lines[end - 1];
        let t = l.trim();
        if t.is_empty() || (t.starts_with('#') && indent(l) <= key_indent) {
            end -= 1;
        } else {
            break;
        }
    }
    end
}

/// `text` with `rules(indent)` (learned rules rendered at an indentation) inserted into
/// `policy`'s `rules:` list, after its last rule; a policy without rules gets a `rules:`
/// key after its `mode:` line.
pub fn into_policy(
    text: &str,
    file: &str,
    policy: &str,
    rules: impl Fn(usize) -> String,
) -> Result<String, MergeError> {
    let root = parse(text, file)?;
    let item = find_policy(&root, file, policy)?;
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let line_at = |n: u32| -> &str {
        lines
            .get((n as usize).wrapping_sub(1))
            .copied()
            .unwrap_or("")
    };
    let flow = |line: u32| MergeError::FlowStyle {
        file: file.to_string(),
        policy: policy.to_string(),
        line,
    };
    // (insert before this 0-based line index, text)
    let (at, insert) = match get(item, "rules") {
        Some((key, value)) => match &value.kind {
            NodeKind::Seq(items) if !items.is_empty() => {
                let first = items[0].span.line;
                let line = line_at(first);
                let indent = dash_column(line).ok_or_else(|| flow(first))?;
                // Only spaces between the dash and the item: not a `[` or `{` of a flow
                // collection, nor an outer list's dash.
                let start = (items[0].span.col as usize).saturating_sub(1);
                let between = line.get(indent + 1..start.max(indent + 1)).unwrap_or("x");
                if start < indent || !between.chars().all(|c| c == ' ') {
                    return Err(flow(first));
                }
                (
                    end_of_block(&lines, items, key.span.col as usize - 1),
                    rules(indent),
                )
            }
            _ if value.is_null() => {
                let indent = key.span.col as usize + 1; // one level below the key
                (key.span.line as usize, rules(indent))
            }
            _ => return Err(flow(key.span.line)),
        },
        None => {
            let (key, _) = get(item, "mode")
                .or_else(|| get(item, "name"))
                .ok_or_else(|| flow(item.span.line))?;
            let col = key.span.col as usize - 1;
            let line = line_at(key.span.line);
            let before = line.get(..col).unwrap_or("");
            if before.contains(['{', ',']) {
                return Err(flow(key.span.line));
            }
            let body = rules(col + 2);
            (
                key.span.line as usize,
                format!("{}rules:\n{body}", " ".repeat(col)),
            )
        }
    };
    let mut out = String::with_capacity(text.len() + insert.len() + 1);
    for (i, l) in lines.iter().enumerate() {
        if i == at {
            out.push_str(&insert);
        }
        out.push_str(l);
    }
    if at >= lines.len() {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&insert);
    }
    Ok(out)
}
