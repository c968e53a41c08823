//! Operators and the list filters of the native evaluation (see `native.rs`): `not`, `and`,
//! `or`, `~`, one comparison (`>`, `==`, `in`, ...) and `map(attribute=...)`.
//!
//! Filter conditions (`steps.routing.rules | length > 0`, `source.NAME | trim and
//! source.LAST_NAME | trim`) and fields such as `(source.LAST_NAME | trim) ~ ' ' ~ source.NAME`
//! or `... | trim or none` are in most pipelines; through the VM they were a third of a large
//! run's mapping time. As for chains, an input whose result is not certain to be the VM's
//! (a float printed by `~`, a comparison of text with a number, a fact that is a map...) answers
//! [`Fail::Vm`] and the template is evaluated by the VM.

use minijinja::machinery::ast::{BinOpKind, CallArg, CompareOpKind, Expr, UnaryOpKind};
use serde_json::Value as Json;

use super::Scope;
use super::json_object::member;
use super::native::{Arg, Chain, Fail, Res, V, arg, chain, truthy};

/// An operator over chains.
#[derive(Debug)]
pub enum Op {
    Not(Chain),
    And(Chain, Chain),
    Or(Chain, Chain),
    Concat(Chain, Chain),
    Compare(Cmp, Chain, Chain),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Lte,
    Gt,
    Gte,
    In,
    NotIn,
}

/// The operator an expression is, if this module evaluates it.
pub fn op(expr: &Expr) -> Option<Op> {
    match expr {
        Expr::UnaryOp(u) if matches!(u.op, UnaryOpKind::Not) => Some(Op::Not(chain(&u.expr)?)),
        Expr::BinOp(b) => {
            let (left, right) = (chain(&b.left)?, chain(&b.right)?);
            Some(match b.op {
                BinOpKind::ScAnd => Op::And(left, right),
                BinOpKind::ScOr => Op::Or(left, right),
                BinOpKind::Concat => Op::Concat(left, right),
                BinOpKind::Eq => Op::Compare(Cmp::Eq, left, right),
                BinOpKind::Ne => Op::Compare(Cmp::Ne, left, right),
                BinOpKind::Lt => Op::Compare(Cmp::Lt, left, right),
                BinOpKind::Lte => Op::Compare(Cmp::Lte, left, right),
                BinOpKind::Gt => Op::Compare(Cmp::Gt, left, right),
                BinOpKind::Gte => Op::Compare(Cmp::Gte, left, right),
                BinOpKind::In => Op::Compare(Cmp::In, left, right),
                _ => return None,
            })
        }
        // A chained comparison (`a < b < c`) is left to the VM.
        Expr::Compare(c) if c.ops.len() == 1 => {
            let cmp = match c.ops[0].op {
                CompareOpKind::Eq => Cmp::Eq,
                CompareOpKind::Ne => Cmp::Ne,
                CompareOpKind::Lt => Cmp::Lt,
                CompareOpKind::Lte => Cmp::Lte,
                CompareOpKind::Gt => Cmp::Gt,
                CompareOpKind::Gte => Cmp::Gte,
                CompareOpKind::In => Cmp::In,
                CompareOpKind::NotIn => Cmp::NotIn,
            };
            Some(Op::Compare(cmp, chain(&c.expr)?, chain(&c.ops[0].expr)?))
        }
        _ => None,
    }
}

fn is_true(v: &V<'_>) -> bool {
    v.get().is_some_and(truthy)
}

impl Op {
    pub fn run<'a>(&'a self, scope: &'a Scope) -> Res<V<'a>> {
        match self {
            Op::Not(c) => Ok(V::Own(Json::Bool(!is_true(&c.run(scope)?)))),
            Op::And(l, r) => {
                let left = l.run(scope)?;
                if is_true(&left) {
                    r.run(scope)
                } else {
                    Ok(left)
                }
            }
            Op::Or(l, r) => {
                let left = l.run(scope)?;
                if is_true(&left) {
                    Ok(left)
                } else {
                    r.run(scope)
                }
            }
            Op::Concat(l, r) => {
                let mut out = printed(&l.run(scope)?)?;
                out.push_str(&printed(&r.run(scope)?)?);
                Ok(V::Own(Json::String(out)))
            }
            Op::Compare(cmp, l, r) => {
                compare(*cmp, &l.run(scope)?, &r.run(scope)?).map(|b| V::Own(Json::Bool(b)))
            }
        }
    }
}

/// A value as `~` prints it: text, whole numbers and undefined (nothing); the rest (none,
/// floats, lists...) print in the VM's own way.
fn printed(v: &V<'_>) -> Res<String> {
    match v.get() {
        None => Ok(String::new()),
        Some(Json::String(s)) => Ok(s.clone()),
        Some(Json::Number(n)) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
        _ => Err(Fail::Vm),
    }
}

/// A comparison of two texts or two whole numbers, and `in` over a text or a list of them.
fn compare(cmp: Cmp, left: &V<'_>, right: &V<'_>) -> Res<bool> {
    let (Some(l), Some(r)) = (left.get(), right.get()) else {
        return Err(Fail::Vm);
    };
    match cmp {
        Cmp::In | Cmp::NotIn => contains(r, l).map(|found| found == (cmp == Cmp::In)),
        _ => {
            let order = match (l, r) {
                (Json::String(a), Json::String(b)) if matches!(cmp, Cmp::Eq | Cmp::Ne) => a.cmp(b),
                (Json::Number(a), Json::Number(b)) => match (a.as_i64(), b.as_i64()) {
                    (Some(a), Some(b)) => a.cmp(&b),
                    _ => return Err(Fail::Vm),
                },
                _ => return Err(Fail::Vm),
            };
            Ok(match cmp {
                Cmp::Eq => order.is_eq(),
                Cmp::Ne => order.is_ne(),
                Cmp::Lt => order.is_lt(),
                Cmp::Lte => order.is_le(),
                Cmp::Gt => order.is_gt(),
                _ => order.is_ge(),
            })
        }
    }
}

/// `needle in haystack` for a text in a text, or a text or whole number in a list of such.
fn contains(haystack: &Json, needle: &Json) -> Res<bool> {
    let same_kind = |a: &Json, b: &Json| match (a, b) {
        (Json::String(x), Json::String(y)) => Ok(x == y),
        (Json::Number(x), Json::Number(y)) if x.is_i64() && y.is_i64() => Ok(x == y),
        _ => Err(Fail::Vm),
    };
    match (haystack, needle) {
        (Json::String(h), Json::String(n)) => Ok(h.contains(n.as_str())),
        (Json::Array(items), _) => {
            for item in items {
                if same_kind(item, needle)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        _ => Err(Fail::Vm),
    }
}

// ---- list filters ----

/// The keyword arguments of a call, each a constant or a lookup; `None` if any is positional.
pub fn kwargs(call: &[CallArg]) -> Option<Vec<(String, Arg)>> {
    call.iter()
        .map(|a| match a {
            CallArg::Kwarg(name, e) => Some((name.to_string(), arg(e)?)),
            _ => None,
        })
        .collect()
}

/// `map(attribute='k')` over a list of objects that all have `k`.
pub fn map_attribute(v: Option<&Json>, key: &str) -> Res<Json> {
    let Some(Json::Array(items)) = v else {
        return Err(Fail::Vm);
    };
    items
        .iter()
        .map(|item| match item {
            Json::Object(m) => member(m, key).cloned().ok_or(Fail::Vm),
            _ => Err(Fail::Vm),
        })
        .collect::<Res<Vec<Json>>>()
        .map(Json::Array)
}
