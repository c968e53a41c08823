//! Table operations, declared in YAML and run by polars on whole tables:
//! filter, with_columns, select, rename, drop, join, group_by, sort, unique, explode, concat, limit.

use std::collections::HashMap;

use indexmap::IndexMap;
use polars::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};

use super::expr::{ColumnExpr, Env};
use crate::syntax::de::{capture_node, from_node};
use crate::syntax::diag::{Diagnostic, unknown_message};
use crate::syntax::node::{Kind, Node};
use crate::syntax::session;

/// One name or a list of names.
#[derive(Clone, Debug, Default)]
pub struct Names(pub Vec<String>);

impl<'de> Deserialize<'de> for Names {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let node = capture_node(d)?;
        match &node.kind {
            Kind::Seq(items) => Ok(Names(items.iter().map(Node::key_text).collect())),
            Kind::Map(_) | Kind::Null => Err(serde::de::Error::custom(format!(
                "expected a name or a list of names, found {}",
                node.type_name()
            ))),
            _ => Ok(Names(vec![node.key_text()])),
        }
    }
}

impl JsonSchema for Names {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Names".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}], "description": "A column (or table) name, or a list of them."})
    }
}

/// Columns to keep or compute, in order: `NAME` keeps a column, `{NEW: expression}` computes
/// (or renames: `{COMPANY_TITLE: TITLE}`). A mapping `{NEW: expression, ...}` works too.
#[derive(Clone, Debug, Default)]
pub struct Columns(pub Vec<(String, ColumnExpr)>);

impl<'de> Deserialize<'de> for Columns {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let node = capture_node(d)?;
        columns_of(&node).map(Columns).map_err(|diag| {
            session::report(diag);
            serde::de::Error::custom("invalid columns")
        })
    }
}

fn columns_of(node: &Node) -> Result<Vec<(String, ColumnExpr)>, Diagnostic> {
    let mut out = Vec::new();
    let add_map =
        |out: &mut Vec<(String, ColumnExpr)>, entries: &[(Node, Node)]| -> Result<(), Diagnostic> {
            for (k, v) in entries {
                out.push((k.key_text(), from_node::<ColumnExpr>(v)?));
            }
            Ok(())
        };
    match &node.kind {
        Kind::Map(entries) => add_map(&mut out, entries)?,
        Kind::Seq(items) => {
            for item in items {
                match &item.kind {
                    Kind::Map(entries) => add_map(&mut out, entries)?,
                    Kind::Seq(_) | Kind::Null => {
                        return Err(Diagnostic::at(
                            item,
                            "expected a column name or `{NEW_NAME: expression}`",
                        ));
                    }
                    _ => {
                        let e = from_node::<ColumnExpr>(item)?;
                        let Some(name) = e.as_column().map(str::to_string) else {
                            return Err(Diagnostic::at(
                                item,
                                "an expression needs a name here: `{NEW_NAME: expression}`",
                            ));
                        };
                        out.push((name, e));
                    }
                }
            }
        }
        _ => {
            return Err(Diagnostic::at(
                node,
                format!("expected a list of columns, found {}", node.type_name()),
            ));
        }
    }
    Ok(out)
}

impl JsonSchema for Columns {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Columns".into()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let e = g.subschema_for::<ColumnExpr>();
        schemars::json_schema!({
            "description": "Columns in order: `NAME` keeps a column, `{NEW: expression}` computes or renames one.",
            "anyOf": [
                {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "object", "additionalProperties": e}]}},
                {"type": "object", "additionalProperties": e}
            ],
            "examples": [["ID", {"COMPANY_TITLE": "TITLE"}, {"DAYS": "days_since(START_TIME)"}]]
        })
    }
}

/// How rows of two tables are matched.
#[derive(Clone, Copy, Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JoinHow {
    /// Every row of this table, with the matching rows of the other (nulls where none match).
    #[default]
    Left,
    /// Only rows that match on both sides.
    Inner,
}

#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinOp {
    /// The other table: an input or a table defined before this one.
    pub with: String,
    /// Key columns with the same names on both sides.
    #[serde(default)]
    pub on: Option<Names>,
    /// Key columns of this table (with `right_on`).
    #[serde(default)]
    pub left_on: Option<Names>,
    /// Key columns of the other table (with `left_on`).
    #[serde(default)]
    pub right_on: Option<Names>,
    /// `left` (default) or `inner`.
    #[serde(default)]
    pub how: JoinHow,
    /// Columns to take from the other table (default: all but its keys); `{NEW: OTHER}` renames.
    #[serde(default)]
    pub columns: Option<Columns>,
}

#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupByOp {
    /// Columns whose values form the groups.
    pub by: Names,
    /// Aggregated columns: `NAME: max(START_TIME)`, `count()`, `last_by(SUBJECT, START_TIME)`...
    #[schemars(example = agg_example())]
    pub agg: IndexMap<String, ColumnExpr>,
}

fn agg_example() -> serde_json::Value {
    serde_json::json!({"LAST_ACTIVITY": "max(START_TIME)", "LAST_SUBJECT": "last_by(SUBJECT, START_TIME)", "ACTIVITIES": "count()"})
}

/// Where nulls go when sorting.
#[derive(Clone, Copy, Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Nulls {
    First,
    #[default]
    Last,
}

#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SortOp {
    /// Columns to sort by, most significant first.
    pub by: Names,
    /// Descending order: one flag for all columns, or one per column.
    #[serde(default)]
    pub descending: Flags,
    /// Where rows with an empty sort value go (default: last).
    #[serde(default)]
    pub nulls: Nulls,
}

/// One flag, or a flag per column.
#[derive(Clone, Debug, Default)]
pub struct Flags(pub Vec<bool>);

impl<'de> Deserialize<'de> for Flags {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let node = capture_node(d)?;
        let one = |n: &Node| match n.kind {
            Kind::Bool(b) => Ok(b),
            _ => Err(serde::de::Error::custom(format!(
                "expected a boolean, found {}",
                n.type_name()
            ))),
        };
        match &node.kind {
            Kind::Seq(items) => items.iter().map(one).collect::<Result<_, _>>().map(Flags),
            _ => one(&node).map(|b| Flags(vec![b])),
        }
    }
}

impl JsonSchema for Flags {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Flags".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"anyOf": [{"type": "boolean"}, {"type": "array", "items": {"type": "boolean"}}]})
    }
}

/// Which of the rows with equal keys `unique` keeps.
#[derive(Clone, Copy, Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Keep {
    #[default]
    First,
    Last,
}

#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UniqueOp {
    /// Columns that make rows equal (default: all).
    #[serde(default)]
    pub on: Option<Names>,
    /// Keep the `first` (default) or `last` of equal rows, in the table's order.
    #[serde(default)]
    pub keep: Keep,
}

/// One table operation; a mapping with a single key naming it.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Keep the rows for which the expression is true: `COMPLETED == 'N' and DEADLINE < now()`.
    Filter(ColumnExpr),
    /// Add or replace columns: `{DAYS: days_since(LAST_ACTIVITY)}`.
    WithColumns(IndexMap<String, ColumnExpr>),
    /// Keep these columns, in this order, computing or renaming with `{NEW: expression}`.
    Select(Columns),
    /// Rename columns: `{OLD: NEW}`.
    Rename(IndexMap<String, String>),
    /// Remove columns.
    Drop(Names),
    /// Add the columns of another table by key.
    Join(JoinOp),
    /// One row per group, with aggregated columns.
    GroupBy(GroupByOp),
    /// Sort the rows.
    Sort(SortOp),
    /// Drop repeated rows.
    Unique(UniqueOp),
    /// One row per element of a list column (`COMPANY_IDS: [3, 4]` gives two rows); an empty or
    /// missing list gives one row with null.
    Explode(Names),
    /// Append the rows of other tables (matched by column name).
    Concat(Names),
    /// The first N rows.
    Limit(u32),
}

impl Op {
    /// Other tables this operation reads.
    pub fn tables(&self) -> Vec<&str> {
        match self {
            Op::Join(j) => vec![j.with.as_str()],
            Op::Concat(names) => names.0.iter().map(String::as_str).collect(),
            _ => Vec::new(),
        }
    }
}

/// An operation and where it is written.
#[derive(Clone, Debug)]
pub struct OpNode {
    pub op: Op,
    pub node: Node,
}

impl<'de> Deserialize<'de> for OpNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let node = capture_node(d)?;
        match from_node::<Op>(&node) {
            Ok(op) => Ok(OpNode { op, node }),
            Err(diag) => {
                session::report(diag);
                Err(serde::de::Error::custom("invalid table operation"))
            }
        }
    }
}

impl JsonSchema for OpNode {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TableOp".into()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        Op::json_schema(g)
    }
}

/// Tables built so far, by name.
pub type Tables = HashMap<String, DataFrame>;

fn table<'a>(tables: &'a Tables, name: &str, node: &Node) -> Result<&'a DataFrame, Diagnostic> {
    tables.get(name).ok_or_else(|| {
        let mut names: Vec<&str> = tables.keys().map(String::as_str).collect();
        names.sort();
        Diagnostic::at(node, unknown_message("table", name, &names))
    })
}

fn cols(names: &Names) -> Vec<Expr> {
    names.0.iter().map(|n| col(n.as_str())).collect()
}

fn named(columns: &Columns, env: &Env) -> Result<Vec<Expr>, Diagnostic> {
    columns
        .0
        .iter()
        .map(|(name, e)| e.compile(env).map(|x| x.alias(name.as_str())))
        .collect()
}

fn polars_error(node: &Node, e: PolarsError) -> Diagnostic {
    let text = e.to_string();
    let text = text.split("Resolved plan").next().unwrap_or(&text);
    let text: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let text = text.join(" ");
    Diagnostic::at(node, format!("table operation failed: {text}"))
}

/// Apply one operation; the plan's schema is checked right away, so that a wrong column name
/// is reported at the operation that uses it.
pub fn apply(
    lf: LazyFrame,
    op: &OpNode,
    tables: &Tables,
    env: &Env,
) -> Result<LazyFrame, Diagnostic> {
    let node = &op.node;
    let out = match &op.op {
        Op::Filter(e) => lf.filter(e.compile(env)?),
        Op::WithColumns(map) => {
            let exprs = map
                .iter()
                .map(|(name, e)| e.compile(env).map(|x| x.alias(name.as_str())))
                .collect::<Result<Vec<_>, _>>()?;
            lf.with_columns(exprs)
        }
        Op::Select(columns) => lf.select(named(columns, env)?),
        Op::Rename(map) => lf.rename(
            map.keys().map(String::as_str),
            map.values().map(String::as_str),
            true,
        ),
        Op::Drop(names) => lf.drop(by_name(names.0.iter().map(String::as_str), true, false)),
        Op::Join(j) => join(lf, j, tables, env, node)?,
        Op::GroupBy(g) => {
            let aggs = g
                .agg
                .iter()
                .map(|(name, e)| e.compile(env).map(|x| x.alias(name.as_str())))
                .collect::<Result<Vec<_>, _>>()?;
            lf.group_by_stable(cols(&g.by)).agg(aggs)
        }
        Op::Sort(s) => sort(lf, s, node)?,
        Op::Unique(u) => {
            let keep = match u.keep {
                Keep::First => UniqueKeepStrategy::First,
                Keep::Last => UniqueKeepStrategy::Last,
            };
            lf.unique_stable(
                u.on.as_ref()
                    .map(|n| by_name(n.0.iter().map(String::as_str), true, false)),
                keep,
            )
        }
        Op::Explode(names) => lf.explode(
            by_name(names.0.iter().map(String::as_str), true, false),
            ExplodeOptions {
                empty_as_null: true,
                keep_nulls: true,
            },
        ),
        Op::Concat(names) => append(lf, names, tables, node)?,
        Op::Limit(n) => lf.limit(*n as IdxSize),
    };
    let mut out = out;
    out.collect_schema().map_err(|e| polars_error(node, e))?;
    Ok(out)
}

/// `join:` with another table, on shared key names or on `left_on`/`right_on`.
fn join(
    lf: LazyFrame,
    j: &JoinOp,
    tables: &Tables,
    env: &Env,
    node: &Node,
) -> Result<LazyFrame, Diagnostic> {
    let (left, right) = match (&j.on, &j.left_on, &j.right_on) {
        (Some(on), None, None) => (on.clone(), on.clone()),
        (None, Some(l), Some(r)) if l.0.len() == r.0.len() => (l.clone(), r.clone()),
        (None, Some(_), Some(_)) => {
            return Err(Diagnostic::at(
                node,
                "`left_on` and `right_on` need the same number of columns",
            ));
        }
        _ => {
            return Err(Diagnostic::at(
                node,
                "a join needs `on`, or both `left_on` and `right_on`",
            ));
        }
    };
    let mut other = table(tables, &j.with, node)?.clone().lazy();
    if let Some(columns) = &j.columns {
        let mut exprs = cols(&right);
        for (name, e) in &columns.0 {
            if !right.0.contains(name) {
                exprs.push(e.compile(env)?.alias(name.as_str()));
            }
        }
        other = other.select(exprs);
    }
    let how = match j.how {
        JoinHow::Left => JoinType::Left,
        JoinHow::Inner => JoinType::Inner,
    };
    Ok(lf
        .join_builder()
        .with(other)
        .left_on(cols(&left))
        .right_on(cols(&right))
        .how(how)
        .coalesce(JoinCoalesce::CoalesceColumns)
        .finish())
}

/// `sort:` by columns, with one `descending` flag for all or one per column.
fn sort(lf: LazyFrame, s: &SortOp, node: &Node) -> Result<LazyFrame, Diagnostic> {
    let n = s.by.0.len();
    let descending = match s.descending.0.len() {
        0 => vec![false; n],
        1 => vec![s.descending.0[0]; n],
        m if m == n => s.descending.0.clone(),
        _ => {
            return Err(Diagnostic::at(
                node,
                "`descending` needs one flag, or one per column in `by`",
            ));
        }
    };
    let options = SortMultipleOptions::default()
        .with_order_descending_multi(descending)
        .with_nulls_last(matches!(s.nulls, Nulls::Last))
        .with_maintain_order(true);
    Ok(lf.sort(
        s.by.0.iter().map(String::as_str).collect::<Vec<_>>(),
        options,
    ))
}

/// `concat:` the rows of other tables, cast to this table's columns.
fn append(
    mut lf: LazyFrame,
    names: &Names,
    tables: &Tables,
    node: &Node,
) -> Result<LazyFrame, Diagnostic> {
    let schema = lf.collect_schema().map_err(|e| polars_error(node, e))?;
    let mut parts = vec![lf];
    for name in &names.0 {
        let other = table(tables, name, node)?;
        let mut exprs = Vec::new();
        for (column, dtype) in schema.iter() {
            if other.schema().get(column).is_none() {
                return Err(Diagnostic::at(
                    node,
                    format!("table `{name}` has no column `{column}` to append"),
                ));
            }
            exprs.push(col(column.clone()).cast(dtype.clone()));
        }
        parts.push(other.clone().lazy().select(exprs));
    }
    concat(
        parts,
        UnionArgs {
            to_supertypes: true,
            ..Default::default()
        },
    )
    .map_err(|e| polars_error(node, e))
}
