//! List semantics of the legacy methods: filter operators, `select` masks, `order`, and the
//! fixed 50-row page with `start`/`next`/`total`.

use super::cell::{Cell, Scalar};
use super::data::{Row, Table, id_of};
use super::dates::parse_datetime;
use super::params::scalar_text;
use super::schema::FieldKind;
use serde_json::{Map, Value};
use std::cmp::Ordering;
use std::ops::Bound;

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

/// Columns to output for a `select` parameter, in the table's column order. `*` = standard
/// fields without multi-fields and `UF_*`; `UF_*` = custom fields; names = those fields; no or
/// empty select = `*` + `UF_*`. ID is always included.
pub fn resolve_select(table: &Table, select: Option<&Value>) -> Vec<usize> {
    let names: Vec<String> = match select {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| scalar_text(v).map(|s| s.trim().to_ascii_uppercase()))
            .collect(),
        Some(Value::Object(o)) => o
            .values()
            .filter_map(|v| scalar_text(v).map(|s| s.trim().to_ascii_uppercase()))
            .collect(),
        Some(v @ Value::String(_)) => scalar_text(v)
            .map(|s| vec![s.trim().to_ascii_uppercase()])
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let names: Vec<String> = names.into_iter().filter(|n| !n.is_empty()).collect();
    let (star, uf) = if names.is_empty() {
        (true, true)
    } else {
        (
            names.iter().any(|n| n == "*"),
            names.iter().any(|n| n == "UF_*"),
        )
    };
    let mut mask = vec![false; table.columns().len()];
    for (i, c) in table.columns().iter().enumerate() {
        let is_uf = c.starts_with("UF_");
        if (star && !is_uf && !table.is_multi_col(i))
            || (uf && is_uf && !table.is_multi_col(i))
            || c == "ID"
        {
            mask[i] = true;
        }
    }
    for n in &names {
        if let Some(c) = table.col(n) {
            mask[c] = true;
        }
    }
    mask.iter()
        .enumerate()
        .filter(|(_, m)| **m)
        .map(|(i, _)| i)
        .collect()
}

/// Build an output row from selected columns: unset fields are `null`, unset multi-fields omitted.
pub fn project(table: &Table, raw: &[Cell], cols: &[usize]) -> Row {
    let mut out = Row::with_capacity(cols.len());
    for &c in cols {
        match raw.get(c).and_then(Cell::to_value) {
            Some(v) => {
                out.insert(table.columns()[c].clone(), v);
            }
            None if table.is_multi_col(c) => {}
            None => {
                out.insert(table.columns()[c].clone(), Value::Null);
            }
        }
    }
    out
}

/// Every present field of a row (user.get / department.get shape: absent fields are left out).
pub fn present(table: &Table, raw: &[Cell]) -> Row {
    raw.iter()
        .enumerate()
        .filter_map(|(c, v)| v.to_value().map(|v| (table.columns()[c].clone(), v)))
        .collect()
}

/// `order` as (FIELD, descending) pairs from `{"FIELD":"ASC"|"DESC"}` (case-insensitive).
pub fn parse_order(v: Option<&Value>) -> Vec<(String, bool)> {
    match v {
        Some(Value::Object(o)) => o
            .iter()
            .map(|(k, d)| {
                let desc = scalar_text(d).is_some_and(|s| s.trim().eq_ignore_ascii_case("desc"));
                (k.trim().to_ascii_uppercase(), desc)
            })
            .collect(),
        _ => Vec::new(),
    }
}

#[derive(Clone, Debug, PartialEq, PartialOrd)]
enum SortKey {
    Null,
    Num(f64),
    Text(String),
}

fn sort_key(v: Scalar<'_>, kind: FieldKind) -> SortKey {
    let v = match v.elems() {
        Some(mut it) => it.next().unwrap_or(Scalar::V(&Value::Null)),
        None => v,
    };
    if v.is_null() {
        return SortKey::Null;
    }
    if let Some(b) = v.as_bool() {
        return SortKey::Num(b as u8 as f64);
    }
    let text = || SortKey::Text(v.text().to_lowercase());
    match kind {
        FieldKind::Date => v.ts().map_or_else(text, |t| SortKey::Num(t as f64)),
        FieldKind::Num => v.num().map_or_else(text, SortKey::Num),
        _ if v.text().is_empty() => SortKey::Null,
        _ => text(),
    }
}

/// A page of a list.
#[derive(Debug)]
pub struct Page {
    pub ids: Vec<u64>,
    /// None when counting was skipped (`start=-1`)
    pub total: Option<usize>,
    pub next: Option<usize>,
}

/// Run a list query: rows passing `filter`, ordered by `order` (then ID ascending), 50 rows
/// from `start`; with `start < 0` there is no COUNT (total None, no next).
pub fn run_list(table: &Table, filter: &Filter, order: &[(String, bool)], start: i64) -> Page {
    let count = start >= 0;
    let skip = start.max(0) as usize;
    let Some((lo, hi)) = filter.id_range() else {
        return Page {
            ids: Vec::new(),
            total: count.then_some(0),
            next: None,
        };
    };
    let known: Vec<(usize, bool)> = order
        .iter()
        .filter_map(|(f, d)| table.col(f).map(|c| (c, *d)))
        .collect();
    let by_id = match known.as_slice() {
        [] => Some(false),
        [(c, d)] if table.columns()[*c] == "ID" => Some(*d),
        _ => None,
    };
    if let Some(desc) = by_id {
        if filter.tests.is_empty() && lo == Bound::Unbounded && hi == Bound::Unbounded {
            // no conditions: the count is the table size and offset paging skips without testing
            let ids: Vec<u64> = if desc {
                table.ids().rev().skip(skip).take(PAGE).collect()
            } else {
                table.ids().skip(skip).take(PAGE).collect()
            };
            let matched = table.len();
            let next = if count && skip + PAGE < matched {
                Some(skip + PAGE)
            } else {
                None
            };
            return Page {
                ids,
                total: count.then_some(matched),
                next,
            };
        }
        let range = table.raw_range((lo, hi));
        let iter: Box<dyn Iterator<Item = (&u64, &Box<[Cell]>)>> = if desc {
            Box::new(range.rev())
        } else {
            Box::new(range)
        };
        let mut ids = Vec::with_capacity(PAGE);
        let mut matched = 0usize;
        for (id, raw) in iter {
            if !filter.matches(raw) {
                continue;
            }
            if matched >= skip && ids.len() < PAGE {
                ids.push(*id);
            }
            matched += 1;
            if !count && ids.len() == PAGE {
                break;
            }
        }
        let total = count.then_some(matched);
        let next = if count && skip + PAGE < matched {
            Some(skip + PAGE)
        } else {
            None
        };
        return Page { ids, total, next };
    }
    let mut rows: Vec<(Vec<SortKey>, u64)> = table
        .raw_range((lo, hi))
        .filter(|(_, raw)| filter.matches(raw))
        .map(|(id, raw)| {
            let keys = known
                .iter()
                .map(|(c, _)| {
                    sort_key(
                        Scalar::C(raw.get(*c).unwrap_or(&Cell::Absent)),
                        table.kind(*c),
                    )
                })
                .collect();
            (keys, *id)
        })
        .collect();
    rows.sort_by(|a, b| {
        for (i, (_, desc)) in known.iter().enumerate() {
            let o = a.0[i].partial_cmp(&b.0[i]).unwrap_or(Ordering::Equal);
            let o = if *desc { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        a.1.cmp(&b.1)
    });
    let matched = rows.len();
    let ids = rows
        .into_iter()
        .skip(skip)
        .take(PAGE)
        .map(|(_, id)| id)
        .collect();
    Page {
        ids,
        total: count.then_some(matched),
        next: if count && skip + PAGE < matched {
            Some(skip + PAGE)
        } else {
            None
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bitrix24::data::Portal;
    use serde_json::json;

    fn portal() -> Portal {
        let mut p = Portal::new();
        for i in 1..=120u64 {
            p.insert(
                "contact",
                json!({
                    "ID": i, "NAME": format!("Name{i}"), "LAST_NAME": if i % 2 == 0 { "Even" } else { "odd" },
                    "ASSIGNED_BY_ID": (i % 3).to_string(),
                    "DATE_MODIFY": crate::bitrix24::dates::format_ts(1_717_225_200 + (i as i64) * 3600, 3 * 3600),
                    "UF_CRM_1470852549": if i % 10 == 0 { json!([48, 12708]) } else { json!([48]) },
                    "PHONE": if i == 7 { json!([{"VALUE": "+7 926 000"}]) } else { json!(null) },
                    "UF_CRM_SYNC_STATUS": if i < 5 { "" } else { "ok" },
                })
                .as_object()
                .unwrap()
                .clone(),
            );
        }
        p
    }

    fn ids(p: &Portal, filter: Value, order: Value, start: i64) -> Page {
        let t = p.table("contact").unwrap();
        let f = Filter::compile(t, filter.as_object().unwrap(), 3 * 3600);
        run_list(t, &f, &parse_order(Some(&order)), start)
    }

    #[test]
    fn operators() {
        let p = portal();
        assert_eq!(split_op(">=DATE"), (Op::Ge, "DATE"));
        assert_eq!(split_op("!%=X"), (Op::NotPattern, "X"));
        assert_eq!(split_op("!X"), (Op::Ne, "X"));
        let count = |f: Value| ids(&p, f, json!({}), 0).total.unwrap();
        assert_eq!(count(json!({">ID": "100"})), 20);
        assert_eq!(count(json!({">=ID": 100, "<ID": "110"})), 10);
        assert_eq!(count(json!({"ID": "7"})), 1);
        assert_eq!(count(json!({"ID": "abc"})), 0);
        assert_eq!(
            count(json!({">ID": "$result[p0][49][ID]"})),
            120,
            "PHP coerces to 0"
        );
        assert_eq!(count(json!({"@ID": ["1", "2", 300]})), 2);
        assert_eq!(count(json!({"!@ID": ["1", "2"]})), 118);
        assert_eq!(count(json!({"LAST_NAME": "EVEN"})), 60);
        assert_eq!(count(json!({"!LAST_NAME": "even"})), 60);
        assert_eq!(count(json!({"!=LAST_NAME": "even"})), 60);
        assert_eq!(count(json!({"%NAME": "ame11"})), 11);
        assert_eq!(count(json!({"=%NAME": "name1_"})), 10);
        assert_eq!(count(json!({"%=NAME": "NAME12%"})), 1 + 1);
        assert_eq!(count(json!({"UF_CRM_1470852549": "12708"})), 12);
        assert_eq!(count(json!({"@UF_CRM_1470852549": [12708, 5]})), 12);
        assert_eq!(count(json!({"PHONE": "+7 926 000"})), 1);
        assert_eq!(count(json!({"UF_CRM_SYNC_STATUS": ""})), 4);
        assert_eq!(count(json!({"!UF_CRM_SYNC_STATUS": ""})), 116);
        assert_eq!(
            count(json!({"NO_SUCH_FIELD": "x"})),
            120,
            "unknown fields are ignored"
        );
        // numeric, not text, comparison for ID-like fields
        assert_eq!(count(json!({">ASSIGNED_BY_ID": "1"})), 40);
        // datetimes: with offset, without (portal local), and another offset
        assert_eq!(
            count(json!({">DATE_MODIFY": "2024-06-01T20:00:00+03:00"})),
            110
        );
        assert_eq!(count(json!({">DATE_MODIFY": "2024-06-01T20:00:00"})), 110);
        assert_eq!(
            count(json!({">DATE_MODIFY": "2024-06-01T17:00:00+00:00"})),
            110
        );
        assert_eq!(
            count(json!({">=DATE_MODIFY": "2024-06-01T20:00:00+03:00"})),
            111
        );
        assert_eq!(count(json!({"<DATE_MODIFY": "2024-06-01"})), 0);
        assert_eq!(
            count(json!({">DATE_MODIFY": "2024-06-01T20:00:00 03:00"})),
            0,
            "unencoded '+' matches nothing"
        );
        assert!(like("abc", "a%") && like("abc", "_b_") && !like("abc", "b%") && like("abc", "%c"));
    }

    #[test]
    fn pages_and_order() {
        let p = portal();
        let pg = ids(&p, json!({}), json!({}), 0);
        assert_eq!((pg.ids.len(), pg.total, pg.next), (50, Some(120), Some(50)));
        assert_eq!(pg.ids[0], 1);
        let pg = ids(&p, json!({}), json!({}), 100);
        assert_eq!((pg.ids.len(), pg.total, pg.next), (20, Some(120), None));
        let pg = ids(&p, json!({">ID": 60}), json!({"ID": "ASC"}), -1);
        assert_eq!(
            (pg.ids.len(), pg.total, pg.next, pg.ids[0]),
            (50, None, None, 61)
        );
        let pg = ids(&p, json!({}), json!({"id": "desc"}), 0);
        assert_eq!(pg.ids[0], 120);
        let pg = ids(
            &p,
            json!({}),
            json!({"LAST_NAME": "ASC", "DATE_MODIFY": "DESC"}),
            0,
        );
        assert_eq!(&pg.ids[..2], &[120, 118]);
        let pg = ids(&p, json!({}), json!({"ASSIGNED_BY_ID": "DESC"}), 0);
        assert_eq!(&pg.ids[..2], &[2, 5]);
    }

    #[test]
    fn select_masks() {
        let p = portal();
        let t = p.table("contact").unwrap();
        let names = |s: Value| -> Vec<String> {
            resolve_select(t, Some(&s))
                .into_iter()
                .map(|c| t.columns()[c].clone())
                .collect()
        };
        let star = names(json!(["*"]));
        assert!(star.contains(&"NAME".to_string()) && !star.contains(&"PHONE".to_string()));
        assert!(!star.iter().any(|c| c.starts_with("UF_")));
        let uf = names(json!(["UF_*"]));
        assert_eq!(uf[0], "ID");
        assert!(uf[1..].iter().all(|c| c.starts_with("UF_")));
        assert_eq!(names(json!(["NAME", "phone"])), vec!["ID", "NAME", "PHONE"]);
        let all = names(json!([]));
        assert!(
            all.contains(&"UF_CRM_1470852549".to_string()) && !all.contains(&"EMAIL".to_string())
        );
        let row = project(
            t,
            t.raw(7).unwrap(),
            &resolve_select(t, Some(&json!(["PHONE", "EMAIL", "POST"]))),
        );
        assert_eq!(
            Value::Object(row),
            json!({"ID": "7", "POST": null, "PHONE": [{"VALUE": "+7 926 000", "ID": "1000", "VALUE_TYPE": "WORK", "TYPE_ID": "PHONE"}]})
        );
    }
}
