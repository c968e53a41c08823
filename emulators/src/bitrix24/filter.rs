//! List semantics of the legacy methods: filter operators, `select` masks, `order`, and the
//! fixed 50-row page with `start`/`next`/`total`.

use super::cell::{Cell, Scalar};
use super::data::{Table, id_of};
use super::dates::parse_datetime;
use super::params::scalar_text;
use super::schema::FieldKind;
use serde_json::{Map, Value};
use std::cmp::Ordering;
use std::ops::Bound;

mod page;
pub use page::{Page, parse_order, present, project, resolve_select, run_list};

/// Fixed page size of every list method (`limit` is ignored by real portals).
pub const PAGE: usize = 50;

/// Filter operator, from the key prefix (`>=DATE_MODIFY`, `@ID`, `!%NAME`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    In,
    NotIn,
    /// `%`: substring, case-insensitive
    Like,
    NotLike,
    /// `=%` / `%=`: SQL LIKE with the caller's own `%`/`_`
    Pattern,
    NotPattern,
}

/// Split `>=DATE_MODIFY` into (Ge, "DATE_MODIFY"). Longest prefixes first.
pub fn split_op(key: &str) -> (Op, &str) {
    const PREFIXES: [(&str, Op); 15] = [
        ("!=%", Op::NotPattern),
        ("!%=", Op::NotPattern),
        (">=", Op::Ge),
        ("<=", Op::Le),
        ("!@", Op::NotIn),
        ("!%", Op::NotLike),
        ("!=", Op::Ne),
        ("=%", Op::Pattern),
        ("%=", Op::Pattern),
        (">", Op::Gt),
        ("<", Op::Lt),
        ("@", Op::In),
        ("%", Op::Like),
        ("=", Op::Eq),
        ("!", Op::Ne),
    ];
    for (p, op) in PREFIXES {
        if let Some(rest) = key.strip_prefix(p) {
            return (op, rest);
        }
    }
    (Op::Eq, key)
}

impl Op {
    fn negated(self) -> bool {
        matches!(self, Op::Ne | Op::NotIn | Op::NotLike | Op::NotPattern)
    }
}

/// PHP's numeric coercion of a string: the leading number, else 0 (`"$result[a][49][ID]"` -> 0,
/// so an unresolved batch reference in `>ID` matches every row, as on a real portal).
fn php_number(s: &str) -> f64 {
    let b = s.trim_start().as_bytes();
    let mut end = 0;
    if end < b.len() && (b[end] == b'-' || b[end] == b'+') {
        end += 1;
    }
    let digits_from = end;
    while end < b.len() && (b[end].is_ascii_digit() || b[end] == b'.') {
        end += 1;
    }
    if end == digits_from {
        return 0.0;
    }
    std::str::from_utf8(&b[..end])
        .ok()
        .and_then(|x| x.parse().ok())
        .unwrap_or(0.0)
}

/// One comparison value, pre-parsed every way it may be needed.
#[derive(Clone, Debug)]
struct Needle {
    lower: String,
    num: Option<f64>,
    ts: Option<i64>,
    boolv: Option<bool>,
    empty: bool,
}

impl Needle {
    fn new(v: &Value, offset: i32) -> Needle {
        let text: String = match v {
            Value::Bool(true) => "Y".into(),
            Value::Bool(false) => "N".into(),
            other => scalar_text(other)
                .map(|c| c.into_owned())
                .unwrap_or_default(),
        };
        let t = text.trim();
        let boolv = match v {
            Value::Bool(b) => Some(*b),
            _ => match t.to_ascii_lowercase().as_str() {
                "y" | "true" | "1" => Some(true),
                "n" | "false" | "0" | "" => Some(false),
                _ => None,
            },
        };
        Needle {
            num: Some(t.parse::<f64>().unwrap_or_else(|_| php_number(t))),
            ts: parse_datetime(t, offset),
            boolv,
            empty: t.is_empty(),
            lower: text.to_lowercase(),
        }
    }
}

#[derive(Clone, Debug)]
enum Test {
    Field {
        col: usize,
        kind: FieldKind,
        op: Op,
        needles: Vec<Needle>,
    },
    /// crm.activity.list `BINDINGS: [{OWNER_TYPE_ID, OWNER_ID?}, ...]`
    Bindings {
        type_col: usize,
        id_col: usize,
        pairs: Vec<(u64, Option<u64>)>,
    },
}

/// A compiled filter for one table.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    tests: Vec<Test>,
    /// ID range implied by `>ID`, `<=ID`, `ID` ... (used to seek in the ID-ordered table)
    id_lo: Option<Bound<u64>>,
    id_hi: Option<Bound<u64>>,
    /// a condition can never match (e.g. `ID` = "abc")
    impossible: bool,
}

fn tighten_lo(cur: &mut Option<Bound<u64>>, new: Bound<u64>) {
    let key = |b: &Bound<u64>| match b {
        Bound::Included(x) => (*x as u128) * 2,
        Bound::Excluded(x) => (*x as u128) * 2 + 1,
        Bound::Unbounded => 0,
    };
    if cur.as_ref().is_none_or(|c| key(&new) > key(c)) {
        *cur = Some(new);
    }
}
fn tighten_hi(cur: &mut Option<Bound<u64>>, new: Bound<u64>) {
    let key = |b: &Bound<u64>| match b {
        Bound::Included(x) => (*x as u128) * 2 + 1,
        Bound::Excluded(x) => (*x as u128) * 2,
        Bound::Unbounded => u128::MAX,
    };
    if cur.as_ref().is_none_or(|c| key(&new) < key(c)) {
        *cur = Some(new);
    }
}

impl Filter {
    /// Compile a filter map. Keys are upper-cased; conditions on fields the table does not
    /// have are ignored, as legacy `crm.*.list` does. `LOGIC` is ignored (legacy: no OR).
    pub fn compile(table: &Table, filter: &Map<String, Value>, offset: i32) -> Filter {
        let mut f = Filter::default();
        for (key, value) in filter {
            let (op, field) = split_op(key.trim());
            let field = field.trim().to_ascii_uppercase();
            if field == "LOGIC" || field.is_empty() {
                continue;
            }
            if field == "BINDINGS" {
                if let (Some(type_col), Some(id_col)) =
                    (table.col("OWNER_TYPE_ID"), table.col("OWNER_ID"))
                {
                    let items: Vec<&Value> = match value {
                        Value::Array(a) => a.iter().collect(),
                        Value::Object(o) if o.contains_key("OWNER_TYPE_ID") => vec![value],
                        Value::Object(o) => o.values().collect(),
                        _ => vec![],
                    };
                    let pairs = items
                        .into_iter()
                        .filter_map(|it| {
                            let t = it.get("OWNER_TYPE_ID").and_then(id_of)?;
                            Some((t, it.get("OWNER_ID").and_then(id_of)))
                        })
                        .collect();
                    f.tests.push(Test::Bindings {
                        type_col,
                        id_col,
                        pairs,
                    });
                }
                continue;
            }
            let Some(col) = table.col(&field) else {
                continue;
            };
            let needles: Vec<Needle> = match value {
                Value::Array(a) => a.iter().map(|v| Needle::new(v, offset)).collect(),
                Value::Object(o) => o.values().map(|v| Needle::new(v, offset)).collect(),
                v => vec![Needle::new(v, offset)],
            };
            // a list given to a scalar operator means "any of" (PHP portals build IN lists)
            let op = match (op, needles.len()) {
                (Op::Eq, n) if n != 1 => Op::In,
                (Op::Ne, n) if n != 1 => Op::NotIn,
                _ => op,
            };
            if field == "ID" {
                let n = needles.first().and_then(|n| n.num);
                match (op, n) {
                    (Op::Gt, Some(x)) => tighten_lo(
                        &mut f.id_lo,
                        if x < 0.0 {
                            Bound::Unbounded
                        } else {
                            Bound::Excluded(x.floor() as u64)
                        },
                    ),
                    (Op::Ge, Some(x)) => {
                        tighten_lo(&mut f.id_lo, Bound::Included(x.max(0.0).ceil() as u64))
                    }
                    (Op::Lt, Some(x)) if x <= 0.0 => f.impossible = true,
                    (Op::Lt, Some(x)) => tighten_hi(&mut f.id_hi, Bound::Excluded(x.ceil() as u64)),
                    (Op::Le, Some(x)) if x < 0.0 => f.impossible = true,
                    (Op::Le, Some(x)) => {
                        tighten_hi(&mut f.id_hi, Bound::Included(x.floor() as u64))
                    }
                    (Op::Eq, Some(x)) if x >= 0.0 => {
                        tighten_lo(&mut f.id_lo, Bound::Included(x as u64));
                        tighten_hi(&mut f.id_hi, Bound::Included(x as u64));
                    }
                    _ => {}
                }
            }
            f.tests.push(Test::Field {
                col,
                kind: table.kind(col),
                op,
                needles,
            });
        }
        f
    }

    /// ID range to scan (an over-approximation; every test is still applied per row).
    pub fn id_range(&self) -> Option<(Bound<u64>, Bound<u64>)> {
        let lo = self.id_lo.unwrap_or(Bound::Unbounded);
        let hi = self.id_hi.unwrap_or(Bound::Unbounded);
        let empty = match (lo, hi) {
            (Bound::Included(a), Bound::Included(b)) => a > b,
            (Bound::Included(a), Bound::Excluded(b)) | (Bound::Excluded(a), Bound::Included(b)) => {
                a >= b
            }
            (Bound::Excluded(a), Bound::Excluded(b)) => a.saturating_add(1) >= b,
            _ => false,
        };
        if self.impossible || empty {
            None
        } else {
            Some((lo, hi))
        }
    }

    pub fn matches(&self, row: &[Cell]) -> bool {
        self.tests.iter().all(|t| match t {
            Test::Field {
                col,
                kind,
                op,
                needles,
            } => test_value(
                Scalar::C(row.get(*col).unwrap_or(&Cell::Absent)),
                *kind,
                *op,
                needles,
            ),
            Test::Bindings {
                type_col,
                id_col,
                pairs,
            } => {
                let num = |c: usize| {
                    row.get(c)
                        .and_then(|v| Scalar::C(v).num())
                        .map(|f| f as u64)
                };
                let (t, i) = (num(*type_col), num(*id_col));
                pairs.is_empty()
                    || pairs
                        .iter()
                        .any(|(pt, pi)| Some(*pt) == t && pi.is_none_or(|pi| Some(pi) == i))
            }
        })
    }
}

/// SQL LIKE with `%` and `_`, on lower-cased text.
fn like(text: &str, pat: &str) -> bool {
    let t: Vec<char> = text.chars().collect();
    let p: Vec<char> = pat.chars().collect();
    let (mut ti, mut pi) = (0usize, 0usize);
    let (mut star_p, mut star_t) = (usize::MAX, 0usize);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '_' || p[pi] == t[ti]) {
            ti += 1;
            pi += 1;
        } else if pi < p.len() && p[pi] == '%' {
            star_p = pi;
            star_t = ti;
            pi += 1;
        } else if star_p != usize::MAX {
            pi = star_p + 1;
            star_t += 1;
            ti = star_t;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '%' {
        pi += 1;
    }
    pi == p.len()
}

fn cmp_scalar(v: Scalar<'_>, kind: FieldKind, n: &Needle) -> Option<Ordering> {
    match kind {
        FieldKind::Date => Some(v.ts()?.cmp(&n.ts?)),
        FieldKind::Bool => {
            let b = v.as_bool().unwrap_or_else(|| {
                matches!(v.text().to_ascii_lowercase().as_str(), "y" | "1" | "true")
            });
            Some(b.cmp(&n.boolv?))
        }
        _ => {
            if let Some(b) = v.as_bool() {
                return Some(b.cmp(&n.boolv?));
            }
            if kind == FieldKind::Num {
                // numeric column: the needle is coerced like PHP does (non-numeric -> 0)
                if let (Some(a), Some(b)) = (v.num(), n.num) {
                    return a.partial_cmp(&b);
                }
            }
            Some(v.text().to_lowercase().cmp(&n.lower))
        }
    }
}

/// Positive form of the operator applied to one scalar.
fn test_scalar(v: Scalar<'_>, kind: FieldKind, op: Op, needles: &[Needle]) -> bool {
    let comparable = !v.is_empty() || v.as_bool().is_some();
    let eq = |n: &Needle| -> bool {
        if n.empty {
            v.is_empty()
        } else {
            comparable && cmp_scalar(v, kind, n) == Some(Ordering::Equal)
        }
    };
    match op {
        Op::Eq | Op::Ne | Op::In | Op::NotIn => needles.iter().any(eq),
        Op::Gt | Op::Ge | Op::Lt | Op::Le => {
            let Some(n) = needles.first() else {
                return false;
            };
            if !comparable {
                return false;
            }
            match cmp_scalar(v, kind, n) {
                Some(o) => match op {
                    Op::Gt => o == Ordering::Greater,
                    Op::Ge => o != Ordering::Less,
                    Op::Lt => o == Ordering::Less,
                    _ => o != Ordering::Greater,
                },
                None => false,
            }
        }
        Op::Like | Op::NotLike => {
            let t = v.text().to_lowercase();
            needles
                .iter()
                .any(|n| t.contains(n.lower.trim_matches('%')))
        }
        Op::Pattern | Op::NotPattern => {
            let t = v.text().to_lowercase();
            needles.iter().any(|n| like(&t, &n.lower))
        }
    }
}

/// Does a row value pass `op needles`? Arrays (multiple fields) match if any element does;
/// multi-field elements compare by their `VALUE`. Negated operators negate the whole test.
fn test_value(v: Scalar<'_>, kind: FieldKind, op: Op, needles: &[Needle]) -> bool {
    let hit = match v.elems() {
        Some(items) => {
            let mut seen = false;
            let mut any = false;
            for it in items {
                seen = true;
                if test_scalar(it, kind, op, needles) {
                    any = true;
                    break;
                }
            }
            if seen {
                any
            } else {
                test_scalar(Scalar::C(&Cell::Absent), kind, op, needles)
            }
        }
        None => test_scalar(v, kind, op, needles),
    };
    hit != op.negated()
}

#[cfg(test)]
mod tests;
