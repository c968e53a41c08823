//! [`Ast`] to a polars expression: constants and settings folded in, dates as calendar days
//! relative to the run's start, aggregates as polars aggregations.

use polars::prelude::*;
use serde_json::Value as Json;

use super::{Ast, BinOp, DAY_MS, ExprError, err};

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
