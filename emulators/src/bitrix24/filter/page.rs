//! What a list method does with a filter's matches: the columns of `select`, the `order`, and
//! the page of 50 with `next` and `total`.

use super::*;
use crate::bitrix24::data::Row;

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
pub(super) enum SortKey {
    Null,
    Num(f64),
    Text(String),
}

pub(super) fn sort_key(v: Scalar<'_>, kind: FieldKind) -> SortKey {
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
    let Some(desc) = by_id else {
        return sorted_page(table, filter, (lo, hi), &known, count, skip);
    };
    if filter.tests.is_empty() && lo == Bound::Unbounded && hi == Bound::Unbounded {
        // no conditions: the count is the table size and offset paging skips without testing
        let ids: Vec<u64> = if desc {
            table.ids().rev().skip(skip).take(PAGE).collect()
        } else {
            table.ids().skip(skip).take(PAGE).collect()
        };
        return page(ids, table.len(), count, skip);
    }
    if count {
        // A COUNT goes through every match: offset probes of one batch share the scan.
        let ids = table.matches.get_or(cache_key(filter, &known), || {
            let range = table.raw_range((lo, hi));
            #[allow(clippy::borrowed_box)] // the table's iterator yields `&Box<[Cell]>`
            let matching = |(id, raw): (&u64, &Box<[Cell]>)| filter.matches(raw).then_some(*id);
            if desc {
                range.rev().filter_map(matching).collect()
            } else {
                range.filter_map(matching).collect()
            }
        });
        let page_ids = ids.iter().skip(skip).take(PAGE).copied().collect();
        return page(page_ids, ids.len(), count, skip);
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
    page(ids, matched, count, skip)
}

/// The page of `ids` out of `matched` rows: `total` and `next` only when counting.
fn page(ids: Vec<u64>, matched: usize, count: bool, skip: usize) -> Page {
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

/// A list ordered by other columns than ID: every match is sorted, then the page is cut.
fn sorted_page(
    table: &Table,
    filter: &Filter,
    range: (Bound<u64>, Bound<u64>),
    known: &[(usize, bool)],
    count: bool,
    skip: usize,
) -> Page {
    let ids = table.matches.get_or(cache_key(filter, known), || {
        sorted_matches(table, filter, range, known)
    });
    let page_ids = ids.iter().skip(skip).take(PAGE).copied().collect();
    page(page_ids, ids.len(), count, skip)
}

/// What identifies a query's ordered matches: the compiled filter (its ID range included) and
/// the order's columns and directions.
fn cache_key(filter: &Filter, known: &[(usize, bool)]) -> String {
    format!("{filter:?} {known:?}")
}

/// Every match, in the order's sequence (then ID ascending).
fn sorted_matches(
    table: &Table,
    filter: &Filter,
    range: (Bound<u64>, Bound<u64>),
    known: &[(usize, bool)],
) -> Vec<u64> {
    let mut rows: Vec<(Vec<SortKey>, u64)> = table
        .raw_range(range)
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
    rows.into_iter().map(|(_, id)| id).collect()
}
