//! User-space conditions for `alert` rules: a small expression language over event fields,
//! parsed with positions, compiled once, and evaluated without allocating per event.

use crate::capabilities;
use crate::diagnostic::{suggestion, Diagnostic, Span};
use crate::event::{basename, class, KernelEvent, Operation, OwnedEvent, Subject};
use crate::net::Cidr;
use crate::pattern::glob_component;
use crate::syscalls;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

/// Parentheses and `not` may nest this deep; deeper input is rejected, not overflowed.
const MAX_DEPTH: usize = 64;
/// Macro expansion may not grow an expression beyond this many comparisons.
const MAX_NODES: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    ProcName,
    ProcExe,
    ProcCmdline,
    ProcParent,
    ProcAncestors,
    ProcUid,
    FilePath,
    FileOp,
    ExecPath,
    ExecCmdline,
    NetAddr,
    NetPort,
    NetOp,
    NetProtocol,
    ContainerId,
    K8sNs,
    K8sPod,
    CgroupPath,
    KernelOp,
    EvtClass,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    StrList,
    Num,
    Addr,
}

const FIELDS: &[(&str, Field, Kind)] = &[
    ("proc.name", Field::ProcName, Kind::Str),
    ("proc.exe", Field::ProcExe, Kind::Str),
    ("proc.cmdline", Field::ProcCmdline, Kind::Str),
    ("proc.parent", Field::ProcParent, Kind::Str),
    ("proc.ancestors", Field::ProcAncestors, Kind::StrList),
    ("proc.uid", Field::ProcUid, Kind::Num),
    ("file.path", Field::FilePath, Kind::Str),
    ("file.op", Field::FileOp, Kind::Str),
    ("exec.path", Field::ExecPath, Kind::Str),
    ("exec.cmdline", Field::ExecCmdline, Kind::Str),
    ("net.addr", Field::NetAddr, Kind::Addr),
    ("net.port", Field::NetPort, Kind::Num),
    ("net.op", Field::NetOp, Kind::Str),
    ("net.protocol", Field::NetProtocol, Kind::Str),
    ("container.id", Field::ContainerId, Kind::Str),
    ("k8s.ns", Field::K8sNs, Kind::Str),
    ("k8s.pod", Field::K8sPod, Kind::Str),
    ("cgroup.path", Field::CgroupPath, Kind::Str),
    ("kernel.op", Field::KernelOp, Kind::Str),
    ("evt.class", Field::EvtClass, Kind::Str),
];

/// Names of all fields, for documentation and suggestions.
pub fn field_names() -> impl Iterator<Item = &'static str> {
    FIELDS.iter().map(|(n, _, _)| *n)
}

impl Field {
    pub fn name(self) -> &'static str {
        FIELDS
            .iter()
            .find(|(_, f, _)| *f == self)
            .map_or("?", |(n, _, _)| n)
    }

    fn kind(self) -> Kind {
        FIELDS
            .iter()
            .find(|(_, f, _)| *f == self)
            .map_or(Kind::Str, |(_, _, k)| *k)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CmpOp {
    Eq,
    Ne,
    In,
    StartsWith,
    EndsWith,
    Contains,
    Glob,
    Regex,
}

const OPS: &[(&str, CmpOp)] = &[
    ("=", CmpOp::Eq),
    ("!=", CmpOp::Ne),
    ("in", CmpOp::In),
    ("startswith", CmpOp::StartsWith),
    ("endswith", CmpOp::EndsWith),
    ("contains", CmpOp::Contains),
    ("glob", CmpOp::Glob),
    ("regex", CmpOp::Regex),
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Value {
    Str(String),
    Num(u64),
    Strs(Vec<String>),
    Nums(Vec<u64>),
    Cidrs(Vec<Cidr>),
    /// Path patterns (with `glob`), for rules downgraded to user space.
    Paths(Vec<crate::pattern::PathPattern>),
    /// Port ranges (with `in`), for rules downgraded to user space.
    Ranges(Vec<crate::net::PortRange>),
}

/// A checked condition (macros expanded, lists resolved). Serializable: it is part of the Plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Cmp {
        field: Field,
        op: CmpOp,
        value: Value,
    },
}

/// What the parser needs from the rest of the policy set.
pub struct Scope<'a> {
    /// Macro name -> (source text, span of the text).
    pub macros: &'a BTreeMap<String, (String, Span, bool)>,
    /// List name -> elements.
    pub lists: &'a BTreeMap<String, Vec<(String, Span)>>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LParen,
    RParen,
    Comma,
    Word(String),
    Str(String),
}

struct Lexed {
    tok: Tok,
    start: usize,
    end: usize,
}

/// Maps byte offsets in the condition text to spans in the file.
struct Locator<'t> {
    text: &'t str,
    base: Span,
    /// Offsets are only exact for single-line plain or quoted scalars.
    exact: bool,
    quote: u32,
}

impl Locator<'_> {
    fn span(&self, start: usize, end: usize) -> Span {
        if !self.exact {
            return self.base;
        }
        let prefix = self.text.get(..start).map_or(0, |s| s.chars().count());
        let len = self.text.get(start..end).map_or(1, |s| s.chars().count());
        self.base.sub(
            u32::try_from(prefix).unwrap_or(0) + self.quote,
            u32::try_from(len.max(1)).unwrap_or(1),
        )
    }
}

fn lex(text: &str, loc: &Locator<'_>) -> Result<Vec<Lexed>, Diagnostic> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        let tok = match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'(' => {
                i += 1;
                Tok::LParen
            }
            b')' => {
                i += 1;
                Tok::RParen
            }
            b',' => {
                i += 1;
                Tok::Comma
            }
            b'"' | b'\'' => {
                let quote = c;
                i += 1;
                let mut s = String::new();
                let mut closed = false;
                while i < bytes.len() {
                    let ch = text.get(i..).and_then(|r| r.chars().next()).unwrap_or('\0');
                    i += ch.len_utf8().max(1);
                    if ch as u32 == u32::from(quote) {
                        closed = true;
                        break;
                    }
                    // Single quotes are raw (handy for regexes); double quotes take `\"`.
                    if ch == '\\' && quote == b'"' {
                        if let Some(next) = text.get(i..).and_then(|r| r.chars().next()) {
                            i += next.len_utf8();
                            s.push(next);
                        }
                        continue;
                    }
                    s.push(ch);
                }
                if !closed {
                    return Err(Diagnostic::error(
                        "E0501",
                        loc.span(start, start + 1),
                        "unterminated string in condition",
                    ));
                }
                Tok::Str(s)
            }
            _ => {
                if c == b'!' && bytes.get(i + 1) == Some(&b'=') {
                    i += 2;
                    Tok::Word("!=".into())
                } else if c == b'=' {
                    i += 1;
                    Tok::Word("=".into())
                } else {
                    while i < bytes.len()
                        && !matches!(
                            bytes[i],
                            b' ' | b'\t' | b'\n' | b'\r' | b'(' | b')' | b',' | b'=' | b'"'
                        )
                        && !(bytes[i] == b'!' && bytes.get(i + 1) == Some(&b'='))
                    {
                        i += 1;
                    }
                    Tok::Word(text.get(start..i).unwrap_or("").to_owned())
                }
            }
        };
        out.push(Lexed { tok, start, end: i });
    }
    Ok(out)
}

struct Parser<'s, 't> {
    toks: Vec<Lexed>,
    pos: usize,
    loc: Locator<'t>,
    scope: &'s Scope<'s>,
    /// Macros being expanded, to report cycles.
    expanding: Vec<String>,
    nodes: usize,
    depth: usize,
}

type PResult<T> = Result<T, Diagnostic>;

impl<'s> Parser<'s, '_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|l| &l.tok)
    }

    fn here(&self) -> Span {
        match self.toks.get(self.pos) {
            Some(l) => self.loc.span(l.start, l.end),
            None => {
                let end = self.loc.text.len();
                self.loc.span(end, end)
            }
        }
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(x)) if x == w)
    }

    fn expr(&mut self) -> PResult<Expr> {
        let mut items = vec![self.and()?];
        while self.is_word("or") {
            self.pos += 1;
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.swap_remove(0)
        } else {
            Expr::Or(items)
        })
    }

    fn and(&mut self) -> PResult<Expr> {
        let mut items = vec![self.unary()?];
        while self.is_word("and") {
            self.pos += 1;
            items.push(self.unary()?);
        }
        Ok(if items.len() == 1 {
            items.swap_remove(0)
        } else {
            Expr::And(items)
        })
    }

    fn unary(&mut self) -> PResult<Expr> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Diagnostic::error(
                "E0502",
                self.here(),
                format!("condition nests deeper than {MAX_DEPTH} levels"),
            ));
        }
        let r = self.unary_inner();
        self.depth -= 1;
        r
    }

    fn unary_inner(&mut self) -> PResult<Expr> {
        let span = self.here();
        match self.peek().cloned() {
            Some(Tok::Word(w)) if w == "not" => {
                self.pos += 1;
                Ok(Expr::Not(Box::new(self.unary()?)))
            }
            Some(Tok::LParen) => {
                self.pos += 1;
                let e = self.expr()?;
                if self.peek() != Some(&Tok::RParen) {
                    return Err(Diagnostic::error("E0503", self.here(), "expected `)`"));
                }
                self.pos += 1;
                Ok(e)
            }
            Some(Tok::Word(w)) => {
                if let Some((_, field, _)) = FIELDS.iter().find(|(n, _, _)| *n == w) {
                    self.pos += 1;
                    return self.comparison(*field, span);
                }
                if let Some((text, mspan, exact)) = self.scope.macros.get(&w).cloned() {
                    self.pos += 1;
                    return self.expand_macro(&w, &text, mspan, exact, span);
                }
                let mut candidates: Vec<&str> = field_names().collect();
                candidates.extend(self.scope.macros.keys().map(String::as_str));
                let mut d =
                    Diagnostic::error("E0504", span, format!("unknown field or macro `{w}`"));
                if let Some(h) = suggestion(&w, candidates) {
                    d = d.with_help(h);
                }
                Err(d)
            }
            Some(_) => Err(Diagnostic::error(
                "E0505",
                span,
                "expected a field, a macro, `not` or `(`",
            )),
            None => Err(Diagnostic::error(
                "E0505",
                span,
                "condition ends early: expected a field, a macro, `not` or `(`",
            )),
        }
    }

    fn expand_macro(
        &mut self,
        name: &str,
        text: &str,
        mspan: Span,
        exact: bool,
        use_span: Span,
    ) -> PResult<Expr> {
        if self.expanding.iter().any(|m| m == name) {
            return Err(Diagnostic::error(
                "E0506",
                use_span,
                format!("macro `{name}` refers to itself"),
            )
            .with_note(format!(
                "expansion: {} -> {name}",
                self.expanding.join(" -> ")
            )));
        }
        let mut expanding = self.expanding.clone();
        expanding.push(name.to_owned());
        let (expr, nodes) = parse_inner(
            text, mspan, exact, self.scope, expanding, self.nodes, self.depth,
        )?;
        self.nodes = nodes;
        Ok(expr)
    }

    fn comparison(&mut self, field: Field, field_span: Span) -> PResult<Expr> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(Diagnostic::error(
                "E0507",
                field_span,
                format!("condition has more than {MAX_NODES} comparisons after macro expansion"),
            ));
        }
        let op_span = self.here();
        let op = match self.peek() {
            Some(Tok::Word(w)) => OPS.iter().find(|(n, _)| n == w).map(|(_, o)| *o),
            _ => None,
        };
        let Some(op) = op else {
            let mut d = Diagnostic::error(
                "E0508",
                op_span,
                format!("expected an operator after `{}`", field.name()),
            )
            .with_note("operators: =, !=, in, startswith, endswith, contains, glob, regex");
            if let Some(Tok::Word(w)) = self.peek() {
                if let Some(h) = suggestion(w, OPS.iter().map(|(n, _)| *n)) {
                    d = d.with_help(h);
                }
            }
            return Err(d);
        };
        self.pos += 1;
        let kind = field.kind();
        let value_span = self.here();
        let raw: Vec<(String, Span)> = if op == CmpOp::In {
            self.list()?
        } else {
            vec![self.scalar()?]
        };
        let bad_op = |what: &str| {
            Diagnostic::error(
                "E0509",
                op_span,
                format!(
                    "`{}` cannot be used with {what} field `{}`",
                    op_name(op),
                    field.name()
                ),
            )
        };
        let value = match kind {
            Kind::Num => {
                if !matches!(op, CmpOp::Eq | CmpOp::Ne | CmpOp::In) {
                    return Err(bad_op("numeric").with_help("use `=`, `!=` or `in`"));
                }
                let mut nums = Vec::new();
                for (s, sp) in &raw {
                    nums.push(s.parse::<u64>().map_err(|_| {
                        Diagnostic::error(
                            "E0510",
                            *sp,
                            format!("`{}` is a number, `{s}` is not", field.name()),
                        )
                    })?);
                }
                if op == CmpOp::In {
                    Value::Nums(nums)
                } else {
                    Value::Num(nums.first().copied().unwrap_or(0))
                }
            }
            Kind::Addr => {
                if !matches!(op, CmpOp::Eq | CmpOp::Ne | CmpOp::In) {
                    return Err(bad_op("address").with_help("use `=`, `!=` or `in` with CIDRs"));
                }
                let mut cidrs = Vec::new();
                for (s, sp) in &raw {
                    cidrs.push(Cidr::parse(s).map_err(|m| Diagnostic::error("E0511", *sp, m))?);
                }
                Value::Cidrs(cidrs)
            }
            Kind::Str | Kind::StrList => {
                if op == CmpOp::Regex {
                    let (s, sp) = raw.first().cloned().unwrap_or_default();
                    if let Err(e) = regex::Regex::new(&s) {
                        return Err(
                            Diagnostic::error("E0512", sp, format!("invalid regex `{s}`"))
                                .with_note(first_line(&e.to_string())),
                        );
                    }
                }
                if op == CmpOp::In {
                    Value::Strs(raw.into_iter().map(|(s, _)| s).collect())
                } else {
                    Value::Str(raw.into_iter().next().map(|(s, _)| s).unwrap_or_default())
                }
            }
        };
        let _ = value_span;
        Ok(Expr::Cmp { field, op, value })
    }

    fn scalar(&mut self) -> PResult<(String, Span)> {
        let span = self.here();
        match self.peek().cloned() {
            Some(Tok::Word(w)) if w.starts_with('$') => Err(Diagnostic::error(
                "E0513",
                span,
                "a list can only be used with `in`",
            )),
            Some(Tok::Word(w)) if !is_keyword(&w) => {
                self.pos += 1;
                Ok((w, span))
            }
            Some(Tok::Str(s)) => {
                self.pos += 1;
                Ok((s, span))
            }
            _ => Err(Diagnostic::error("E0514", span, "expected a value")),
        }
    }

    fn list(&mut self) -> PResult<Vec<(String, Span)>> {
        let span = self.here();
        if let Some(Tok::Word(w)) = self.peek().cloned() {
            if let Some(name) = w.strip_prefix('$') {
                self.pos += 1;
                return match self.scope.lists.get(name) {
                    Some(items) => Ok(items.clone()),
                    None => {
                        let mut d =
                            Diagnostic::error("E0301", span, format!("unknown list `{name}`"));
                        if let Some(h) =
                            suggestion(name, self.scope.lists.keys().map(String::as_str))
                        {
                            d = d.with_help(h);
                        }
                        Err(d)
                    }
                };
            }
        }
        if self.peek() != Some(&Tok::LParen) {
            return Err(
                Diagnostic::error("E0515", span, "expected `(` or `$list` after `in`")
                    .with_help("write `field in (a, b)` or `field in $list`"),
            );
        }
        self.pos += 1;
        let mut items = Vec::new();
        loop {
            items.push(self.scalar()?);
            match self.peek() {
                Some(Tok::Comma) => self.pos += 1,
                Some(Tok::RParen) => {
                    self.pos += 1;
                    return Ok(items);
                }
                _ => {
                    return Err(Diagnostic::error(
                        "E0503",
                        self.here(),
                        "expected `,` or `)`",
                    ))
                }
            }
        }
    }
}

fn first_line(s: &str) -> String {
    s.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(s)
        .trim()
        .to_owned()
}

fn is_keyword(w: &str) -> bool {
    matches!(w, "and" | "or" | "not")
}

fn op_name(op: CmpOp) -> &'static str {
    OPS.iter().find(|(_, o)| *o == op).map_or("?", |(n, _)| n)
}

fn parse_inner(
    text: &str,
    base: Span,
    exact: bool,
    scope: &Scope<'_>,
    expanding: Vec<String>,
    nodes: usize,
    depth: usize,
) -> Result<(Expr, usize), Diagnostic> {
    let loc = Locator {
        text,
        base,
        exact,
        quote: 0,
    };
    let toks = lex(text, &loc)?;
    let mut p = Parser {
        toks,
        pos: 0,
        loc,
        scope,
        expanding,
        nodes,
        depth,
    };
    let e = p.expr()?;
    if p.pos < p.toks.len() {
        return Err(Diagnostic::error(
            "E0516",
            p.here(),
            "unexpected text after the end of the condition",
        )
        .with_help("combine conditions with `and` / `or`"));
    }
    Ok((e, p.nodes))
}

/// Parses a condition written at `span`. `exact` says whether offsets inside the text map
/// one-to-one to columns (single-line scalars); `quoted` whether the scalar had a quote.
pub fn parse(
    text: &str,
    span: Span,
    exact: bool,
    quoted: bool,
    scope: &Scope<'_>,
) -> Result<Expr, Diagnostic> {
    let base = if quoted { span.sub(1, span.len) } else { span };
    parse_inner(text, base, exact, scope, Vec::new(), 0, 0).map(|(e, _)| e)
}

/// A condition ready for evaluation: sets hashed, regexes compiled.
#[derive(Debug, Clone)]
pub struct Compiled(Node);

#[derive(Debug, Clone)]
enum Node {
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
    Str(Field, StrTest),
    Num(Field, NumTest),
    Addr(bool, Vec<Cidr>),
    Paths(Field, Vec<crate::pattern::PathPattern>),
    Ranges(Field, Vec<crate::net::PortRange>),
}

#[derive(Debug, Clone)]
enum StrTest {
    Eq(String),
    Ne(String),
    In(HashSet<String>),
    StartsWith(String),
    EndsWith(String),
    Contains(String),
    Glob(String),
    Regex(regex::Regex),
}

#[derive(Debug, Clone)]
enum NumTest {
    Eq(u64),
    Ne(u64),
    In(Vec<u64>),
}

/// Error compiling a condition loaded from a plan (checked policies never produce one).
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("invalid regex `{0}`")]
    Regex(String),
    #[error("operator does not fit field `{0}`")]
    Mismatch(&'static str),
}

impl Compiled {
    pub fn new(e: &Expr) -> Result<Compiled, CompileError> {
        Ok(Compiled(compile(e)?))
    }

    /// Evaluates against one event. Does not allocate.
    pub fn eval(&self, ev: &OwnedEvent) -> bool {
        eval(&self.0, ev, &ev.op)
    }

    /// Evaluates against operation `op` of `subject`. Allocates nothing itself; reads
    /// only the fields the condition names, in order, stopping as soon as the result is
    /// known.
    pub fn eval_on<S: Subject + ?Sized>(&self, subject: &S, op: &Operation) -> bool {
        eval(&self.0, subject, op)
    }

    /// The event classes (bits of [`crate::event::class`]) on which the condition can
    /// hold: a superset, so that a caller may skip the others without evaluating.
    pub fn classes(&self) -> u8 {
        classes(&self.0)
    }
}

/// The class a field exists on; a comparison on an absent field is false.
fn field_classes(f: Field) -> u8 {
    match f {
        Field::FilePath | Field::FileOp => class::FILE,
        Field::ExecPath | Field::ExecCmdline => class::EXEC,
        Field::NetAddr | Field::NetPort | Field::NetOp | Field::NetProtocol => class::NETWORK,
        Field::KernelOp => class::KERNEL,
        _ => class::ALL,
    }
}

fn classes(n: &Node) -> u8 {
    match n {
        Node::And(xs) => xs.iter().fold(class::ALL, |m, x| m & classes(x)),
        Node::Or(xs) => xs.iter().fold(0, |m, x| m | classes(x)),
        // Negation could hold anywhere.
        Node::Not(_) => class::ALL,
        Node::Str(Field::EvtClass, StrTest::Eq(c)) => class::of_name(c),
        Node::Str(Field::EvtClass, StrTest::In(cs)) => {
            cs.iter().fold(0, |m, c| m | class::of_name(c))
        }
        Node::Str(f, _) | Node::Num(f, _) | Node::Paths(f, _) | Node::Ranges(f, _) => {
            field_classes(*f)
        }
        Node::Addr(..) => class::NETWORK,
    }
}

fn compile(e: &Expr) -> Result<Node, CompileError> {
    Ok(match e {
        Expr::And(xs) => Node::And(xs.iter().map(compile).collect::<Result<_, _>>()?),
        Expr::Or(xs) => Node::Or(xs.iter().map(compile).collect::<Result<_, _>>()?),
        Expr::Not(x) => Node::Not(Box::new(compile(x)?)),
        Expr::Cmp { field, op, value } => {
            let mismatch = || CompileError::Mismatch(field.name());
            match (field.kind(), value) {
                (Kind::Num, Value::Num(n)) => Node::Num(
                    *field,
                    match op {
                        CmpOp::Eq => NumTest::Eq(*n),
                        CmpOp::Ne => NumTest::Ne(*n),
                        _ => return Err(mismatch()),
                    },
                ),
                (Kind::Num, Value::Nums(ns)) => Node::Num(*field, NumTest::In(ns.clone())),
                (Kind::Str | Kind::StrList, Value::Paths(ps)) => Node::Paths(*field, ps.clone()),
                (Kind::Num, Value::Ranges(rs)) => Node::Ranges(*field, rs.clone()),
                (Kind::Addr, Value::Cidrs(cs)) => Node::Addr(*op == CmpOp::Ne, cs.clone()),
                (Kind::Str | Kind::StrList, Value::Strs(ss)) => {
                    Node::Str(*field, StrTest::In(ss.iter().cloned().collect()))
                }
                (Kind::Str | Kind::StrList, Value::Str(s)) => Node::Str(
                    *field,
                    match op {
                        CmpOp::Eq => StrTest::Eq(s.clone()),
                        CmpOp::Ne => StrTest::Ne(s.clone()),
                        CmpOp::StartsWith => StrTest::StartsWith(s.clone()),
                        CmpOp::EndsWith => StrTest::EndsWith(s.clone()),
                        CmpOp::Contains => StrTest::Contains(s.clone()),
                        CmpOp::Glob => StrTest::Glob(s.clone()),
                        CmpOp::Regex => StrTest::Regex(
                            regex::Regex::new(s).map_err(|_| CompileError::Regex(s.clone()))?,
                        ),
                        CmpOp::In => return Err(mismatch()),
                    },
                ),
                _ => return Err(mismatch()),
            }
        }
    })
}

/// A string field's value(s) on one event; absent when the event has no such field.
enum StrVal<'e> {
    One(&'e str),
    /// The ancestors.
    Many,
    Absent,
}

fn kernel_name(k: &KernelEvent) -> &'static str {
    match k {
        KernelEvent::Op(op) => op.name(),
        KernelEvent::Capability(c) => capabilities::name(*c).unwrap_or("?"),
        KernelEvent::Syscall(n) => syscalls::name(*n).unwrap_or("?"),
    }
}

fn str_field<'e, S: Subject + ?Sized>(f: Field, ev: &'e S, op: &'e Operation) -> StrVal<'e> {
    use StrVal::{Absent, Many, One};
    match (f, op) {
        (Field::ProcName, _) => One(basename(ev.exe())),
        (Field::ProcExe, _) => One(ev.exe()),
        (Field::ProcCmdline, _) => One(ev.cmdline()),
        (Field::ProcParent, _) => ev.ancestor(0).map_or(Absent, One),
        (Field::ProcAncestors, _) => Many,
        (Field::FilePath, Operation::File { path, .. }) => One(path),
        (Field::FileOp, Operation::File { op, .. }) => One(op.name()),
        (Field::ExecPath, Operation::Exec { path, .. }) => One(path),
        (Field::ExecCmdline, Operation::Exec { cmdline, .. }) => One(cmdline),
        (Field::NetOp, Operation::Network { op, .. }) => One(op.name()),
        (Field::NetProtocol, Operation::Network { protocol, .. }) => One(protocol.name()),
        (Field::ContainerId, _) => ev.container_id().map_or(Absent, One),
        (Field::K8sNs, _) => ev.pod().map_or(Absent, |p| One(p.0)),
        (Field::K8sPod, _) => ev.pod().map_or(Absent, |p| One(p.1)),
        (Field::CgroupPath, _) => One(ev.cgroup()),
        (Field::KernelOp, Operation::Kernel(k)) => One(kernel_name(k)),
        (Field::EvtClass, op) => One(op.class_name()),
        _ => Absent,
    }
}

fn num_field<S: Subject + ?Sized>(f: Field, ev: &S, op: &Operation) -> Option<u64> {
    match (f, op) {
        (Field::ProcUid, _) => Some(u64::from(ev.uid())),
        (Field::NetPort, Operation::Network { port, .. }) => Some(u64::from(*port)),
        _ => None,
    }
}

fn str_test(t: &StrTest, s: &str) -> bool {
    match t {
        StrTest::Eq(v) => s == v,
        StrTest::Ne(v) => s != v,
        StrTest::In(set) => set.contains(s),
        StrTest::StartsWith(v) => s.starts_with(v.as_str()),
        StrTest::EndsWith(v) => s.ends_with(v.as_str()),
        StrTest::Contains(v) => s.contains(v.as_str()),
        StrTest::Glob(g) => glob_component(g.as_bytes(), s.as_bytes()),
        StrTest::Regex(r) => r.is_match(s),
    }
}

/// Whether `test` holds on some ancestor's executable.
fn any_ancestor<S: Subject + ?Sized>(ev: &S, test: impl FnMut(&str) -> bool) -> bool {
    (0..).map_while(|i| ev.ancestor(i)).any(test)
}

fn eval<S: Subject + ?Sized>(n: &Node, ev: &S, op: &Operation) -> bool {
    match n {
        Node::And(xs) => xs.iter().all(|x| eval(x, ev, op)),
        Node::Or(xs) => xs.iter().any(|x| eval(x, ev, op)),
        Node::Not(x) => !eval(x, ev, op),
        // A comparison on a field the event does not have is false (also for `!=`).
        Node::Str(f, t) => match str_field(*f, ev, op) {
            StrVal::One(s) => str_test(t, s),
            StrVal::Many => any_ancestor(ev, |s| str_test(t, s)),
            StrVal::Absent => false,
        },
        Node::Num(f, t) => match num_field(*f, ev, op) {
            Some(v) => match t {
                NumTest::Eq(x) => v == *x,
                NumTest::Ne(x) => v != *x,
                NumTest::In(xs) => xs.contains(&v),
            },
            None => false,
        },
        Node::Paths(f, ps) => match str_field(*f, ev, op) {
            StrVal::One(s) => ps.iter().any(|p| p.matches(s)),
            StrVal::Many => any_ancestor(ev, |s| ps.iter().any(|p| p.matches(s))),
            StrVal::Absent => false,
        },
        Node::Ranges(f, rs) => match num_field(*f, ev, op) {
            Some(v) => rs
                .iter()
                .any(|r| u16::try_from(v).is_ok_and(|p| r.contains(p))),
            None => false,
        },
        Node::Addr(negate, cidrs) => match op {
            Operation::Network { addr, .. } => cidrs.iter().any(|c| c.contains(*addr)) != *negate,
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Pod, Process};
    use crate::model::FileOp;

    fn scope_parse(text: &str, macros: &[(&str, &str)]) -> Result<Expr, Diagnostic> {
        let span = Span {
            file: 0,
            line: 1,
            col: 1,
            len: 1,
        };
        let macros: BTreeMap<String, (String, Span, bool)> = macros
            .iter()
            .map(|(n, t)| (n.to_string(), (t.to_string(), span, true)))
            .collect();
        let mut lists = BTreeMap::new();
        lists.insert(
            "shells".to_string(),
            vec![("bash".to_string(), span), ("sh".to_string(), span)],
        );
        let scope = Scope {
            macros: &macros,
            lists: &lists,
        };
        parse(
            text,
            Span {
                len: text.len() as u32,
                ..span
            },
            true,
            false,
            &scope,
        )
    }

    fn event() -> OwnedEvent {
        OwnedEvent {
            process: Process {
                exe: "/usr/bin/bash".into(),
                cmdline: "bash -c id".into(),
                uid: 0,
                ancestors: vec!["/usr/sbin/nginx".into(), "/usr/bin/containerd-shim".into()],
            },
            cgroup: "/kubepods.slice/pod1".into(),
            container_id: Some("abc".into()),
            pod: Some(Pod {
                namespace: "prod".into(),
                name: "web-1".into(),
                labels: vec![],
            }),
            op: Operation::File {
                op: FileOp::Read,
                path: "/etc/shadow".into(),
            },
        }
    }

    fn holds(text: &str) -> bool {
        let e = scope_parse(text, &[("in_prod", "k8s.ns = prod")]).unwrap();
        Compiled::new(&e).unwrap().eval(&event())
    }

    #[test]
    fn evaluates() {
        assert!(holds(
            "proc.name in $shells and proc.ancestors contains nginx"
        ));
        assert!(holds("in_prod and file.path startswith /etc/"));
        assert!(holds("not proc.uid != 0"));
        assert!(holds("proc.cmdline regex '^bash\\s+-c'"));
        assert!(holds("file.path glob '/etc/sha*'"));
        assert!(!holds("net.port = 22"));
        assert!(!holds("net.addr in (10.0.0.0/8)"));
        assert!(holds(
            "(evt.class = file or evt.class = exec) and container.id = abc"
        ));
    }

    #[test]
    fn classes_bound_where_a_condition_can_hold() {
        use crate::model::{KernelOp, NetOp, Protocol};
        let ops = [
            Operation::Exec {
                path: "/usr/bin/id".into(),
                cmdline: "id -u".into(),
            },
            Operation::File {
                op: FileOp::Read,
                path: "/etc/shadow".into(),
            },
            Operation::Network {
                op: NetOp::Connect,
                addr: "10.0.0.1".parse().unwrap(),
                port: 22,
                protocol: Protocol::Tcp,
            },
            Operation::Kernel(KernelEvent::Op(KernelOp::ALL[0])),
        ];
        let cases: &[(&str, u8)] = &[
            ("evt.class = exec and proc.name = bash", class::EXEC),
            ("evt.class in (file, network)", class::FILE | class::NETWORK),
            (
                "exec.path startswith /usr or file.op = read",
                class::EXEC | class::FILE,
            ),
            ("net.port = 22", class::NETWORK),
            ("net.addr in (10.0.0.0/8)", class::NETWORK),
            ("net.addr != 10.0.0.0/8", class::NETWORK),
            ("kernel.op != x", class::KERNEL),
            ("file.path != /x", class::FILE),
            ("not evt.class = exec", class::ALL),
            ("evt.class != exec", class::ALL),
            ("proc.name = bash", class::ALL),
            (
                "proc.uid = 0 and (file.path glob '/etc/*' or exec.cmdline contains id)",
                class::FILE | class::EXEC,
            ),
        ];
        for (text, want) in cases {
            let c = Compiled::new(&scope_parse(text, &[]).unwrap()).unwrap();
            assert_eq!(c.classes(), *want, "{text}");
            // Sound: wherever it holds, its class is in the set.
            for op in &ops {
                let ev = OwnedEvent {
                    op: op.clone(),
                    ..event()
                };
                if c.eval(&ev) {
                    assert_ne!(c.classes() & op.class_bit(), 0, "{text} on {op:?}");
                }
                assert_eq!(c.eval_on(&ev, op), c.eval(&ev));
            }
        }
    }

    #[test]
    fn reports_errors_with_positions() {
        let e = scope_parse("proc.nmae = bash", &[]).unwrap_err();
        assert_eq!(e.code, "E0504");
        assert_eq!(e.help.as_deref(), Some("did you mean `proc.name`?"));
        let e = scope_parse("proc.name = bash and proc.uid = root", &[]).unwrap_err();
        assert_eq!((e.code, e.span.map(|s| s.col)), ("E0510", Some(33)));
        let e = scope_parse("proc.cmdline regex '('", &[]).unwrap_err();
        assert_eq!(e.code, "E0512");
        let e = scope_parse("a", &[("a", "b"), ("b", "a")]).unwrap_err();
        assert_eq!(e.code, "E0506");
        let deep = format!("{}proc.uid = 0{}", "(".repeat(500), ")".repeat(500));
        assert_eq!(scope_parse(&deep, &[]).unwrap_err().code, "E0502");
    }
}
