//! Text to [`Ast`]: the lexer, a precedence-climbing parser, and the table of functions with
//! their argument counts (checked while parsing, so errors point at the call).

use serde_json::Value as Json;

use super::{Ast, BinOp, ExprError, err};
use crate::syntax::diag::did_you_mean;

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
