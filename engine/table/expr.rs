//! The column expressions of table operations: a small, safe language compiled to polars
//! expressions, so that every row-level computation runs inside polars, column at a time.
//!
//! ```text
//! COMPLETED == 'N' and DEADLINE < now() and DEADLINE >= days_ago(settings.window_days)
//! days_since(LAST_ACTIVITY)
//! concat(LAST_NAME, ' ', NAME)
//! last_by(SUBJECT, START_TIME)          -- in group_by: SUBJECT of the group's latest row
//! OWNER_TYPE_ID in [3, 4]
//! ```
//!
//! Names are columns (`` `Any name` `` in backticks for other characters); `settings.x` is a
//! pipeline setting, read as a constant; strings are in single or double quotes. Date-times are
//! wall-clock times as the source wrote them; `now()` is the run's start in local time.

use std::fmt;

use polars::prelude::*;
use serde::{Deserialize, Deserializer};
use serde_json::Value as Json;

use crate::syntax::de::capture_node;
use crate::syntax::diag::{Diagnostic, did_you_mean};
use crate::syntax::node::Node;
use crate::syntax::session;

pub const DAY_MS: i64 = 86_400_000;

/// A parsed expression with the positions of its parts (character offsets in the text).
#[derive(Clone, Debug, PartialEq)]
pub enum Ast {
    /// An expression that did not parse (already reported).
    Invalid,
    Col(String),
    Lit(Json),
    Setting(Vec<String>, usize),
    Not(Box<Ast>),
    Neg(Box<Ast>),
    Bin(BinOp, Box<Ast>, Box<Ast>),
    In(Box<Ast>, Box<Ast>, bool),
    Call(String, Vec<Ast>, usize),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BinOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

/// A problem in an expression, at a character offset of its text.
#[derive(Debug, Clone, PartialEq)]
pub struct ExprError {
    pub at: usize,
    pub len: usize,
    pub message: String,
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

fn err(at: usize, len: usize, message: impl Into<String>) -> ExprError {
    ExprError {
        at,
        len,
        message: message.into(),
    }
}

// ---- tokens ----

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Quoted(String),
    Str(String),
    Int(i64),
    Float(f64),
    Sym(&'static str),
    End,
}

const SYMBOLS: &[&str] = &[
    "==", "!=", "<=", ">=", "<", ">", "(", ")", "[", "]", ",", "+", "-", "*", "/", "%", ".",
];

fn tokenize(text: &str) -> Result<Vec<(Tok, usize, usize)>, ExprError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        if c == '\'' || c == '"' || c == '`' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => {
                        return Err(err(
                            start,
                            1,
                            format!(
                                "unterminated {}",
                                if c == '`' { "column name" } else { "string" }
                            ),
                        ));
                    }
                    Some('\\') if c != '`' && i + 1 < chars.len() => {
                        s.push(chars[i + 1]);
                        i += 2;
                    }
                    Some(&q) if q == c => {
                        i += 1;
                        break;
                    }
                    Some(&ch) => {
                        s.push(ch);
                        i += 1;
                    }
                }
            }
            out.push((
                if c == '`' {
                    Tok::Quoted(s)
                } else {
                    Tok::Str(s)
                },
                start,
                i - start,
            ));
            continue;
        }
        if c.is_ascii_digit() {
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '_') {
                i += 1;
            }
            let mut float = false;
            if i + 1 < chars.len() && chars[i] == '.' && chars[i + 1].is_ascii_digit() {
                float = true;
                i += 1;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
            let s: String = chars[start..i].iter().filter(|c| **c != '_').collect();
            let tok = if float {
                Tok::Float(
                    s.parse()
                        .map_err(|_| err(start, i - start, "invalid number"))?,
                )
            } else {
                Tok::Int(
                    s.parse()
                        .map_err(|_| err(start, i - start, "number out of range"))?,
                )
            };
            out.push((tok, start, i - start));
            continue;
        }
        if c.is_alphabetic() || c == '_' {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push((
                Tok::Ident(chars[start..i].iter().collect()),
                start,
                i - start,
            ));
            continue;
        }
        let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
        match SYMBOLS.iter().find(|s| rest.starts_with(**s)) {
            Some(sym) => {
                out.push((Tok::Sym(sym), start, sym.len()));
                i += sym.len();
            }
            None if c == '=' => return Err(err(start, 1, "use `==` to compare")),
            None => return Err(err(start, 1, format!("unexpected character `{c}`"))),
        }
    }
    out.push((Tok::End, chars.len(), 1));
    Ok(out)
}

// ---- parser (precedence climbing) ----

struct Parser {
    toks: Vec<(Tok, usize, usize)>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos].0
    }
    fn at(&self) -> (usize, usize) {
        (self.toks[self.pos].1, self.toks[self.pos].2)
    }
    fn bump(&mut self) -> Tok {
        let t = self.toks[self.pos].0.clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }
    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Tok::Ident(s) if s == w)
    }
    fn expect(&mut self, sym: &'static str) -> Result<(), ExprError> {
        if self.peek() == &Tok::Sym(sym) {
            self.bump();
            Ok(())
        } else {
            let (at, len) = self.at();
            Err(err(
                at,
                len,
                format!("expected `{sym}`, found {}", self.describe()),
            ))
        }
    }
    fn describe(&self) -> String {
        match self.peek() {
            Tok::End => "the end of the expression".into(),
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Quoted(s) => format!("`{s}`"),
            Tok::Str(s) => format!("'{s}'"),
            Tok::Int(i) => i.to_string(),
            Tok::Float(f) => f.to_string(),
            Tok::Sym(s) => format!("`{s}`"),
        }
    }

    fn or(&mut self) -> Result<Ast, ExprError> {
        let mut left = self.and()?;
        while self.is_word("or") {
            self.bump();
            left = Ast::Bin(BinOp::Or, Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }
    fn and(&mut self) -> Result<Ast, ExprError> {
        let mut left = self.not()?;
        while self.is_word("and") {
            self.bump();
            left = Ast::Bin(BinOp::And, Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }
    fn not(&mut self) -> Result<Ast, ExprError> {
        if self.is_word("not") {
            self.bump();
            return Ok(Ast::Not(Box::new(self.not()?)));
        }
        self.cmp()
    }
    fn cmp(&mut self) -> Result<Ast, ExprError> {
        let left = self.add()?;
        let op = match self.peek() {
            Tok::Sym("==") => BinOp::Eq,
            Tok::Sym("!=") => BinOp::Ne,
            Tok::Sym("<") => BinOp::Lt,
            Tok::Sym("<=") => BinOp::Le,
            Tok::Sym(">") => BinOp::Gt,
            Tok::Sym(">=") => BinOp::Ge,
            Tok::Ident(w) if w == "in" => {
                self.bump();
                return Ok(Ast::In(Box::new(left), Box::new(self.add()?), false));
            }
            Tok::Ident(w)
                if w == "not"
                    && matches!(&self.toks[self.pos + 1].0, Tok::Ident(n) if n == "in") =>
            {
                self.bump();
                self.bump();
                return Ok(Ast::In(Box::new(left), Box::new(self.add()?), true));
            }
            _ => return Ok(left),
        };
        self.bump();
        Ok(Ast::Bin(op, Box::new(left), Box::new(self.add()?)))
    }
    fn add(&mut self) -> Result<Ast, ExprError> {
        let mut left = self.mul()?;
        loop {
            let op = match self.peek() {
                Tok::Sym("+") => BinOp::Add,
                Tok::Sym("-") => BinOp::Sub,
                _ => return Ok(left),
            };
            self.bump();
            left = Ast::Bin(op, Box::new(left), Box::new(self.mul()?));
        }
    }
    fn mul(&mut self) -> Result<Ast, ExprError> {
        let mut left = self.unary()?;
        loop {
            let op = match self.peek() {
                Tok::Sym("*") => BinOp::Mul,
                Tok::Sym("/") => BinOp::Div,
                Tok::Sym("%") => BinOp::Rem,
                _ => return Ok(left),
            };
            self.bump();
            left = Ast::Bin(op, Box::new(left), Box::new(self.unary()?));
        }
    }
    fn unary(&mut self) -> Result<Ast, ExprError> {
        if self.peek() == &Tok::Sym("-") {
            self.bump();
            return Ok(match self.unary()? {
                Ast::Lit(Json::Number(n)) if n.is_i64() => {
                    Ast::Lit(Json::from(-n.as_i64().unwrap()))
                }
                Ast::Lit(Json::Number(n)) => Ast::Lit(Json::from(-n.as_f64().unwrap_or(0.0))),
                other => Ast::Neg(Box::new(other)),
            });
        }
        self.primary()
    }
    fn primary(&mut self) -> Result<Ast, ExprError> {
        let (at, len) = self.at();
        match self.bump() {
            Tok::Int(i) => Ok(Ast::Lit(Json::from(i))),
            Tok::Float(f) => Ok(Ast::Lit(Json::from(f))),
            Tok::Str(s) => Ok(Ast::Lit(Json::String(s))),
            Tok::Quoted(s) => Ok(Ast::Col(s)),
            Tok::Sym("(") => {
                let inner = self.or()?;
                self.expect(")")?;
                Ok(inner)
            }
            Tok::Sym("[") => {
                let mut items = Vec::new();
                while self.peek() != &Tok::Sym("]") {
                    let (iat, ilen) = self.at();
                    match self.unary()? {
                        Ast::Lit(v) => items.push(v),
                        _ => return Err(err(iat, ilen, "a list holds constants only")),
                    }
                    if self.peek() == &Tok::Sym(",") {
                        self.bump();
                    } else {
                        break;
                    }
                }
                self.expect("]")?;
                Ok(Ast::Lit(Json::Array(items)))
            }
            Tok::Ident(word) => match word.as_str() {
                "null" | "none" => Ok(Ast::Lit(Json::Null)),
                "true" => Ok(Ast::Lit(Json::Bool(true))),
                "false" => Ok(Ast::Lit(Json::Bool(false))),
                "and" | "or" | "not" | "in" => {
                    Err(err(at, len, format!("expected a value, found `{word}`")))
                }
                "settings" => {
                    let mut path = Vec::new();
                    while self.peek() == &Tok::Sym(".") {
                        self.bump();
                        let (pat, plen) = self.at();
                        match self.bump() {
                            Tok::Ident(p) => path.push(p),
                            Tok::Int(i) => path.push(i.to_string()),
                            _ => return Err(err(pat, plen, "expected a setting name after `.`")),
                        }
                    }
                    if path.is_empty() {
                        return Err(err(at, len, "expected `settings.<name>`"));
                    }
                    Ok(Ast::Setting(path, at))
                }
                _ if self.peek() == &Tok::Sym("(") => {
                    self.bump();
                    let mut args = Vec::new();
                    while self.peek() != &Tok::Sym(")") {
                        args.push(self.or()?);
                        if self.peek() == &Tok::Sym(",") {
                            self.bump();
                        } else {
                            break;
                        }
                    }
                    self.expect(")")?;
                    check_call(&word, args.len(), at)?;
                    Ok(Ast::Call(word, args, at))
                }
                _ => Ok(Ast::Col(word)),
            },
            Tok::End => Err(err(
                at,
                len,
                "expected a value, found the end of the expression",
            )),
            Tok::Sym(s) => Err(err(at, len, format!("expected a value, found `{s}`"))),
        }
    }
}

/// Functions and how many arguments they take (min, max).
pub const FUNCTIONS: &[(&str, usize, usize, &str)] = &[
    ("now", 0, 0, "the run's start (local time)"),
    (
        "today",
        0,
        0,
        "the run's start date, as a date-time at midnight",
    ),
    (
        "days_ago",
        1,
        1,
        "the run's start minus N days: `START_TIME >= days_ago(settings.window_days)`",
    ),
    (
        "days_since",
        1,
        1,
        "whole calendar days from a date-time to the run's start",
    ),
    (
        "days_until",
        1,
        1,
        "whole calendar days from the run's start to a date-time",
    ),
    (
        "days_between",
        2,
        2,
        "whole calendar days from the first date-time to the second",
    ),
    ("date", 1, 1, "the date part of a date-time"),
    ("coalesce", 1, 16, "the first non-null argument"),
    ("if", 3, 3, "if(condition, then, otherwise)"),
    (
        "concat",
        1,
        16,
        "text of the arguments joined (nulls are skipped)",
    ),
    (
        "concat_ws",
        2,
        16,
        "concat_ws(separator, a, b, ...): non-null values joined with a separator",
    ),
    ("is_null", 1, 1, "whether the value is missing"),
    ("is_not_null", 1, 1, "whether the value is present"),
    ("int", 1, 1, "as an integer"),
    ("float", 1, 1, "as a number"),
    ("str", 1, 1, "as text"),
    ("len", 1, 1, "the length of a list"),
    (
        "count",
        0,
        1,
        "aggregate: rows in the group (`count()`), or non-null values (`count(X)`)",
    ),
    ("n_unique", 1, 1, "aggregate: distinct values"),
    ("min", 1, 1, "aggregate: smallest value"),
    ("max", 1, 1, "aggregate: largest value"),
    ("sum", 1, 1, "aggregate: sum"),
    ("mean", 1, 1, "aggregate: mean"),
    (
        "first",
        1,
        1,
        "aggregate: first value (in the table's order)",
    ),
    ("last", 1, 1, "aggregate: last value (in the table's order)"),
    (
        "first_by",
        2,
        2,
        "aggregate: first_by(X, KEY), X of the row with the smallest KEY",
    ),
    (
        "last_by",
        2,
        2,
        "aggregate: last_by(X, KEY), X of the row with the largest KEY",
    ),
    ("list", 1, 1, "aggregate: all values of the group as a list"),
    (
        "unique",
        1,
        1,
        "aggregate: the distinct values of the group as a list",
    ),
];

fn check_call(name: &str, n: usize, at: usize) -> Result<(), ExprError> {
    let Some((_, min, max, _)) = FUNCTIONS.iter().find(|f| f.0 == name) else {
        let names: Vec<&str> = FUNCTIONS.iter().map(|f| f.0).collect();
        let message = match did_you_mean(name, names.iter().copied()) {
            Some(s) => format!("unknown function `{name}` (did you mean `{s}`?)"),
            None => format!("unknown function `{name}`; known: {}", names.join(", ")),
        };
        return Err(err(at, name.chars().count(), message));
    };
    if n < *min || n > *max {
        let want = if min == max {
            min.to_string()
        } else {
            format!("{min} to {max}")
        };
        return Err(err(
            at,
            name.chars().count(),
            format!("`{name}` takes {want} argument(s), got {n}"),
        ));
    }
    Ok(())
}

pub fn parse(text: &str) -> Result<Ast, ExprError> {
    let mut p = Parser {
        toks: tokenize(text)?,
        pos: 0,
    };
    let ast = p.or()?;
    if p.peek() != &Tok::End {
        let (at, len) = p.at();
        return Err(err(
            at,
            len,
            format!("unexpected {} after the expression", p.describe()),
        ));
    }
    Ok(ast)
}

// ---- compiling to polars ----

/// What an expression may refer to besides columns.
pub struct Env<'a> {
    /// The run's start, wall-clock milliseconds since the epoch.
    pub now_ms: i64,
    pub settings: &'a Json,
}

pub fn datetime_type() -> DataType {
    DataType::Datetime(TimeUnit::Milliseconds, None)
}

fn datetime_lit(ms: i64) -> Expr {
    lit(ms).cast(datetime_type())
}

/// Calendar day number of a date or date-time expression.
fn day_number(e: Expr) -> Expr {
    e.cast(datetime_type())
        .cast(DataType::Date)
        .cast(DataType::Int64)
}

fn json_lit(v: &Json, at: usize) -> Result<Expr, ExprError> {
    Ok(match v {
        Json::Null => lit(NULL),
        Json::Bool(b) => lit(*b),
        Json::Number(n) if n.is_i64() => lit(n.as_i64().unwrap()),
        Json::Number(n) => lit(n.as_f64().unwrap_or(f64::NAN)),
        Json::String(s) => lit(s.clone()),
        Json::Array(items) => {
            let series = list_series(items).map_err(|m| err(at, 1, m))?;
            lit(series).implode(false)
        }
        Json::Object(_) => return Err(err(at, 1, "a mapping cannot be used as a value")),
    })
}

fn list_series(items: &[Json]) -> Result<Series, String> {
    let name = PlSmallStr::from_static("");
    if items.iter().all(|v| v.is_i64() || v.is_null()) {
        Ok(Series::new(
            name,
            items.iter().map(Json::as_i64).collect::<Vec<_>>(),
        ))
    } else if items.iter().all(|v| v.is_number() || v.is_null()) {
        Ok(Series::new(
            name,
            items.iter().map(Json::as_f64).collect::<Vec<_>>(),
        ))
    } else if items.iter().all(|v| v.is_string() || v.is_null()) {
        Ok(Series::new(
            name,
            items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Vec<_>>(),
        ))
    } else if items.iter().all(|v| v.is_boolean() || v.is_null()) {
        Ok(Series::new(
            name,
            items.iter().map(Json::as_bool).collect::<Vec<_>>(),
        ))
    } else {
        Err("a list mixes numbers, text and booleans".into())
    }
}

fn setting<'a>(settings: &'a Json, path: &[String]) -> Option<&'a Json> {
    path.iter().try_fold(settings, |v, p| match v {
        Json::Object(m) => m.get(p),
        Json::Array(a) => p.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

/// A constant argument (a literal or a setting), e.g. `days_ago(settings.window_days)`.
fn constant(ast: &Ast, env: &Env) -> Option<Json> {
    match ast {
        Ast::Lit(v) => Some(v.clone()),
        Ast::Setting(path, _) => setting(env.settings, path).cloned(),
        Ast::Neg(inner) => constant(inner, env)
            .and_then(|v| v.as_f64())
            .map(|f| Json::from(-f)),
        _ => None,
    }
}

fn position(ast: &Ast) -> usize {
    match ast {
        Ast::Setting(_, at) | Ast::Call(_, _, at) => *at,
        Ast::Bin(_, l, _) | Ast::In(l, _, _) => position(l),
        Ast::Not(i) | Ast::Neg(i) => position(i),
        _ => 0,
    }
}

pub fn compile(ast: &Ast, env: &Env) -> Result<Expr, ExprError> {
    Ok(match ast {
        Ast::Invalid => return Err(err(0, 1, "")),
        Ast::Col(name) => col(name.as_str()),
        Ast::Lit(v) => json_lit(v, 0)?,
        Ast::Setting(path, at) => match setting(env.settings, path) {
            Some(v) => json_lit(v, *at)?,
            None => {
                return Err(err(
                    *at,
                    8,
                    format!("no setting `settings.{}`", path.join(".")),
                ));
            }
        },
        Ast::Not(inner) => compile(inner, env)?.not(),
        Ast::Neg(inner) => lit(0i64) - compile(inner, env)?,
        Ast::In(left, right, negated) => {
            let l = compile(left, env)?;
            let r = match constant(right, env) {
                Some(Json::Array(items)) => json_lit(&Json::Array(items), position(right))?,
                Some(single) => json_lit(&Json::Array(vec![single]), position(right))?,
                None => compile(right, env)?,
            };
            let e = l.is_in(r, false);
            if *negated { e.not() } else { e }
        }
        Ast::Bin(op, l, r) => {
            let (l, r) = (compile(l, env)?, compile(r, env)?);
            match op {
                BinOp::Or => l.or(r),
                BinOp::And => l.and(r),
                BinOp::Eq => l.eq(r),
                BinOp::Ne => l.neq(r),
                BinOp::Lt => l.lt(r),
                BinOp::Le => l.lt_eq(r),
                BinOp::Gt => l.gt(r),
                BinOp::Ge => l.gt_eq(r),
                BinOp::Add => l + r,
                BinOp::Sub => l - r,
                BinOp::Mul => l * r,
                BinOp::Div => l / r,
                BinOp::Rem => l % r,
            }
        }
        Ast::Call(name, args, at) => call(name, args, *at, env)?,
    })
}

fn call(name: &str, args: &[Ast], at: usize, env: &Env) -> Result<Expr, ExprError> {
    let arg = |i: usize| compile(&args[i], env);
    let now_day = env.now_ms.div_euclid(DAY_MS);
    Ok(match name {
        "now" => datetime_lit(env.now_ms),
        "today" => datetime_lit(now_day * DAY_MS),
        "days_ago" => {
            let n = constant(&args[0], env).and_then(|v| {
                v.as_f64()
                    .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
            });
            let Some(n) = n else {
                return Err(err(
                    at,
                    name.len(),
                    "days_ago takes a number or a setting holding one",
                ));
            };
            datetime_lit(env.now_ms - (n * DAY_MS as f64) as i64)
        }
        "days_since" => lit(now_day) - day_number(arg(0)?),
        "days_until" => day_number(arg(0)?) - lit(now_day),
        "days_between" => day_number(arg(1)?) - day_number(arg(0)?),
        "date" => arg(0)?.cast(DataType::Date),
        "coalesce" => coalesce(
            &args
                .iter()
                .map(|a| compile(a, env))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        "if" => when(arg(0)?).then(arg(1)?).otherwise(arg(2)?),
        "concat" => {
            let parts: Vec<Expr> = args
                .iter()
                .map(|a| compile(a, env).map(|e| e.cast(DataType::String)))
                .collect::<Result<_, _>>()?;
            join_text(parts, "")
        }
        "concat_ws" => {
            let Some(Json::String(sep)) = constant(&args[0], env) else {
                return Err(err(
                    at,
                    name.len(),
                    "concat_ws takes a text separator first: concat_ws(' ', LAST_NAME, NAME)",
                ));
            };
            let parts: Vec<Expr> = args[1..]
                .iter()
                .map(|a| compile(a, env).map(|e| e.cast(DataType::String)))
                .collect::<Result<_, _>>()?;
            join_text(parts, &sep)
        }
        "is_null" => arg(0)?.is_null(),
        "is_not_null" => arg(0)?.is_not_null(),
        "int" => arg(0)?.cast(DataType::Int64),
        "float" => arg(0)?.cast(DataType::Float64),
        "str" => arg(0)?.cast(DataType::String),
        "len" => arg(0)?.list().len(),
        "count" if args.is_empty() => len(),
        "count" => arg(0)?.count(),
        "n_unique" => arg(0)?.n_unique(),
        "min" => arg(0)?.min(),
        "max" => arg(0)?.max(),
        "sum" => arg(0)?.sum(),
        "mean" => arg(0)?.mean(),
        "first" => arg(0)?.first(),
        "last" => arg(0)?.last(),
        "first_by" => arg(0)?
            .sort_by(
                [arg(1)?],
                SortMultipleOptions::default().with_nulls_last(true),
            )
            .first(),
        "last_by" => arg(0)?
            .sort_by(
                [arg(1)?],
                SortMultipleOptions::default().with_nulls_last(false),
            )
            .last(),
        "list" => arg(0)?,
        "unique" => arg(0)?.unique_stable(),
        other => return Err(err(at, other.len(), format!("unknown function `{other}`"))),
    })
}

/// Texts joined with a separator, nulls skipped (with their separators); all null gives null.
fn join_text(parts: Vec<Expr>, sep: &str) -> Expr {
    let mut parts = parts.into_iter();
    let first = parts
        .next()
        .unwrap_or_else(|| lit(NULL).cast(DataType::String));
    parts.fold(first, |acc, p| {
        let joined = if sep.is_empty() {
            acc.clone() + p.clone()
        } else {
            acc.clone() + lit(sep.to_string()) + p.clone()
        };
        when(acc.clone().is_null())
            .then(p.clone())
            .when(p.is_null())
            .then(acc)
            .otherwise(joined)
    })
}

/// An expression from the pipeline file: parsed when the pipeline loads (errors located at
/// the YAML position), compiled to polars when the plan is built.
#[derive(Clone, Debug)]
pub struct ColumnExpr {
    pub text: String,
    pub ast: Ast,
    pub node: Node,
}

impl ColumnExpr {
    pub fn compile(&self, env: &Env) -> Result<Expr, Diagnostic> {
        compile(&self.ast, env).map_err(|e| self.diagnostic(&e))
    }

    pub fn diagnostic(&self, e: &ExprError) -> Diagnostic {
        let (line, col) = line_col(&self.text, e.at);
        Diagnostic::at_pos(
            &self.node.file,
            self.node.pos_in_scalar(line, col),
            e.len,
            e.message.clone(),
        )
    }

    /// A bare column name, when the expression is just that.
    pub fn as_column(&self) -> Option<&str> {
        match &self.ast {
            Ast::Col(c) => Some(c),
            _ => None,
        }
    }
}

fn line_col(text: &str, at: usize) -> (usize, usize) {
    let before: String = text.chars().take(at).collect();
    let line = before.matches('\n').count();
    let col = before.rsplit('\n').next().unwrap_or("").chars().count();
    (line, col)
}

impl<'de> Deserialize<'de> for ColumnExpr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let node = capture_node(d)?;
        let text = match node.as_str() {
            Some(s) => s.to_string(),
            None => node.key_text(),
        };
        let ast = match parse(&text) {
            Ok(ast) => ast,
            Err(e) => {
                let placeholder = ColumnExpr {
                    text: text.clone(),
                    ast: Ast::Invalid,
                    node: node.clone(),
                };
                session::report(placeholder.diagnostic(&e));
                Ast::Invalid
            }
        };
        Ok(ColumnExpr { text, ast, node })
    }
}

impl schemars::JsonSchema for ColumnExpr {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ColumnExpr".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let functions: Vec<String> = FUNCTIONS
            .iter()
            .map(|(n, _, _, d)| format!("{n}: {d}"))
            .collect();
        schemars::json_schema!({
            "type": ["string", "number", "boolean"],
            "description": format!(
                "A column expression run by polars: column names (`` `any name` `` in backticks), constants ('text', 42, true, null, [1, 2]), `settings.<name>`, operators == != < <= > >= + - * / % and or not in. Functions: {}.",
                functions.join("; ")
            ),
            "examples": ["days_since(LAST_ACTIVITY)", "COMPLETED == 'N' and DEADLINE < now()"]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_precedence_and_calls() {
        let ast = parse("A == 1 or B < 2 and not C").unwrap();
        assert!(matches!(ast, Ast::Bin(BinOp::Or, _, _)), "{ast:?}");
        assert_eq!(
            parse("days_since(`Дата`) + 1").unwrap(),
            Ast::Bin(
                BinOp::Add,
                Box::new(Ast::Call(
                    "days_since".into(),
                    vec![Ast::Col("Дата".into())],
                    0
                )),
                Box::new(Ast::Lit(Json::from(1)))
            )
        );
        assert_eq!(
            parse("X not in [1, -2]").unwrap(),
            Ast::In(
                Box::new(Ast::Col("X".into())),
                Box::new(Ast::Lit(serde_json::json!([1, -2]))),
                true
            )
        );
        assert_eq!(
            parse("settings.window_days").unwrap(),
            Ast::Setting(vec!["window_days".into()], 0)
        );
    }

    #[test]
    fn errors_have_positions_and_suggestions() {
        let e = parse("days_snce(X)").unwrap_err();
        assert_eq!(
            (e.at, e.message.as_str()),
            (
                0,
                "unknown function `days_snce` (did you mean `days_since`?)"
            )
        );
        let e = parse("A = 1").unwrap_err();
        assert_eq!((e.at, e.message.as_str()), (2, "use `==` to compare"));
        let e = parse("max(A, B)").unwrap_err();
        assert!(
            e.message.contains("takes 1 argument(s), got 2"),
            "{}",
            e.message
        );
        let e = parse("A == 'x").unwrap_err();
        assert_eq!(e.at, 5);
        let e = parse("(A + 1").unwrap_err();
        assert!(e.message.contains("expected `)`"), "{}", e.message);
        let e = parse("A B").unwrap_err();
        assert_eq!(e.at, 2);
    }

    fn run(df: DataFrame, text: &str, now_ms: i64) -> Series {
        let settings = serde_json::json!({"window_days": 7, "ids": [2, 3]});
        let env = Env {
            now_ms,
            settings: &settings,
        };
        let e = compile(&parse(text).unwrap(), &env).unwrap();
        df.lazy()
            .select([e.alias("out")])
            .collect()
            .unwrap()
            .column("out")
            .unwrap()
            .as_materialized_series()
            .clone()
    }

    #[test]
    fn days_are_calendar_days_relative_to_the_run() {
        // now: 2024-03-10 09:00; values: 2024-03-09 23:00 (1 day ago), 2024-03-10 08:00 (today), null.
        let ms = |d: &str| {
            chrono::NaiveDateTime::parse_from_str(d, "%Y-%m-%d %H:%M")
                .unwrap()
                .and_utc()
                .timestamp_millis()
        };
        let now = ms("2024-03-10 09:00");
        let t = Series::new(
            "T".into(),
            [
                Some(ms("2024-03-09 23:00")),
                Some(ms("2024-03-10 08:00")),
                None,
            ],
        )
        .cast(&datetime_type())
        .unwrap();
        let df = DataFrame::new_infer_height(vec![t.into()]).unwrap();
        let days: Vec<Option<i64>> = run(df.clone(), "days_since(T)", now)
            .i64()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(days, vec![Some(1), Some(0), None]);
        let recent: Vec<Option<bool>> =
            run(df, "T >= days_ago(settings.window_days) and T < now()", now)
                .bool()
                .unwrap()
                .iter()
                .collect();
        assert_eq!(recent, vec![Some(true), Some(true), None]);
    }

    #[test]
    fn membership_text_and_conditions() {
        let df = DataFrame::new_infer_height(vec![
            Series::new("ID".into(), [1i64, 2, 3]).into(),
            Series::new("NAME".into(), [Some("Иван"), None, Some("Олег")]).into(),
            Series::new("LAST".into(), ["Петров", "Сидорова", "Котов"]).into(),
        ])
        .unwrap();
        let inn: Vec<Option<bool>> = run(df.clone(), "ID in settings.ids", 0)
            .bool()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(inn, vec![Some(false), Some(true), Some(true)]);
        let names: Vec<Option<String>> = run(df.clone(), "concat_ws(' ', LAST, NAME)", 0)
            .str()
            .unwrap()
            .iter()
            .map(|s| s.map(str::to_string))
            .collect();
        assert_eq!(
            names,
            vec![
                Some("Петров Иван".into()),
                Some("Сидорова".into()),
                Some("Котов Олег".into())
            ]
        );
        let picked: Vec<Option<i64>> = run(df, "if(ID > 1, ID * 10, 0)", 0)
            .i64()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(picked, vec![Some(0), Some(20), Some(30)]);
    }
}
