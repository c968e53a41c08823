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

mod compile;
mod parse;

use std::fmt;

use polars::prelude::*;
use serde::{Deserialize, Deserializer};
use serde_json::Value as Json;

use crate::syntax::de::capture_node;
use crate::syntax::diag::Diagnostic;
use crate::syntax::node::Node;
use crate::syntax::session;

pub use compile::{Env, compile, datetime_type};
pub use parse::{FUNCTIONS, parse};

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
