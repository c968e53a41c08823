//! `crm.item.productrow.list` (RD crm-item-productrow-list.md): product rows of CRM items in the
//! universal API's shape (camelCase, native numbers) under `result.productRows`, 50 to a page with
//! `total` and `next`. `=ownerType` and `=ownerId` are required; an `=` key also takes a list
//! («works with arrays as well»), which is how one command reads the rows of 50 deals.

use std::cmp::Ordering;

use super::*;
use crate::bitrix24::filter::{Op, PAGE, split_op};
use crate::bitrix24::items::to_camel;

/// The fields of `crm_item_product_row` that are numbers (the legacy method mixes in strings).
const NUMBERS: [&str; 17] = [
    "id",
    "ownerId",
    "productId",
    "price",
    "priceAccount",
    "priceExclusive",
    "priceNetto",
    "priceBrutto",
    "quantity",
    "discountTypeId",
    "discountRate",
    "discountSum",
    "taxRate",
    "measureCode",
    "sort",
    "type",
    "storeId",
];

/// The fields of `crm_item_product_row`; the legacy-only ones (ORIGINAL_PRODUCT_NAME, ...) are not.
const FIELDS: [&str; 6] = [
    "ownerType",
    "productName",
    "taxIncluded",
    "customized",
    "measureName",
    "xmlId",
];

pub(super) fn productrow_list(
    portal: &Portal,
    params: &Map<String, Value>,
) -> Result<Reply, ApiError> {
    let Some(Value::Object(filter)) = get_ci(params, "filter") else {
        return Err(ApiError::new(
            400,
            "100",
            "Could not find value for parameter {filter}",
        ));
    };
    let (Some(owner_type), Some(owners)) = (filter.get("=ownerType"), filter.get("=ownerId"))
    else {
        return Err(ApiError::new(
            400,
            "INVALID_ARG_VALUE",
            "The filter must contain =ownerType and =ownerId",
        ));
    };
    let owner_type = scalar_text(owner_type).unwrap_or_default().to_uppercase();
    let mut rows = Vec::new();
    for owner in values(owners).iter().filter_map(id_of) {
        rows.extend(owner_rows(portal, &owner_type, owner)?);
    }
    for (key, wanted) in filter {
        if key != "=ownerType" && key != "=ownerId" {
            let (op, field) = split_op(key);
            let test = condition(op, field, wanted)?;
            rows.retain(|r| test(r));
        }
    }
    sort(&mut rows, get_ci(params, "order"));
    let total = rows.len();
    let start = get_ci(params, "start").and_then(as_i64).unwrap_or(0).max(0) as usize;
    let page: Vec<Value> = rows.into_iter().skip(start).take(PAGE).collect();
    let next = (start + PAGE < total).then_some(start + PAGE);
    Ok(Reply {
        rows: page.len(),
        result: json!({ "productRows": page }),
        total: Some(total),
        next,
        counted: true,
    })
}

/// A scalar or a list of them.
fn values(v: &Value) -> Vec<Value> {
    list_of(v).unwrap_or_else(|| vec![v.clone()])
}

/// The rows of one owner: a deal's (kept in the legacy shape) or a smart invoice's.
fn owner_rows(portal: &Portal, owner_type: &str, owner: u64) -> Result<Vec<Value>, ApiError> {
    match owner_type {
        "D" => Ok(portal
            .product_rows(owner)
            .iter()
            .map(universal_row)
            .collect()),
        "SI" => Ok(portal
            .table("smart_invoice")
            .and_then(|t| t.get(owner))
            .and_then(|r| r.get("PRODUCT_ROWS").cloned())
            .map(|rows| values(&rows))
            .unwrap_or_default()),
        other => Err(ApiError::new(
            400,
            "INVALID_ARG_VALUE",
            &format!("ownerType {other} is not supported"),
        )),
    }
}

/// A legacy deal row (`PRICE_ACCOUNT: "899.10"`, `ID: "1001"`) as the universal API gives it.
fn universal_row(legacy: &Row) -> Value {
    let mut out = Map::new();
    for (k, v) in legacy {
        let name = to_camel(k);
        if NUMBERS.contains(&name.as_str()) {
            out.insert(name, number(v));
        } else if FIELDS.contains(&name.as_str()) {
            out.insert(name, v.clone());
        }
    }
    Value::Object(out)
}

fn number(v: &Value) -> Value {
    let Some(text) = scalar_text(v) else {
        return Value::Null;
    };
    match text.trim().parse::<i64>() {
        Ok(n) => json!(n),
        Err(_) => text.trim().parse::<f64>().map_or(Value::Null, |f| json!(f)),
    }
}

/// Whether a row passes one filter condition.
type RowTest = Box<dyn Fn(&Value) -> bool>;

/// A filter condition other than the owner: `=`/`@` (a value or a list), `!=`/`!@`, `>`, `>=`,
/// `<`, `<=` on a field, numbers compared as numbers. The LIKE forms are not emulated.
fn condition(op: Op, field: &str, wanted: &Value) -> Result<RowTest, ApiError> {
    let accept: fn(Ordering) -> bool = match op {
        Op::Eq | Op::In | Op::Ne | Op::NotIn => Ordering::is_eq,
        Op::Gt => Ordering::is_gt,
        Op::Ge => Ordering::is_ge,
        Op::Lt => Ordering::is_lt,
        Op::Le => Ordering::is_le,
        _ => {
            return Err(ApiError::new(
                400,
                "INVALID_ARG_VALUE",
                &format!("filter `{field}`: this operator is not emulated for product rows"),
            ));
        }
    };
    let negated = matches!(op, Op::Ne | Op::NotIn);
    let (field, wanted) = (field.to_string(), values(wanted));
    Ok(Box::new(move |row| {
        let hit = wanted
            .iter()
            .any(|w| compare(&row[field.as_str()], w).is_some_and(accept));
        hit != negated
    }))
}

/// Numbers as numbers, anything else as text; null is never equal, greater or less.
fn compare(have: &Value, wanted: &Value) -> Option<Ordering> {
    if have.is_null() || wanted.is_null() {
        return None;
    }
    let (have, wanted) = (scalar_text(have)?, scalar_text(wanted)?);
    match (have.trim().parse::<f64>(), wanted.trim().parse::<f64>()) {
        (Ok(a), Ok(b)) => a.partial_cmp(&b),
        _ => Some(have.as_ref().cmp(wanted.as_ref())),
    }
}

/// `order: {sort: "asc", id: "desc"}`; by `id` when none is given.
fn sort(rows: &mut [Value], order: Option<&Value>) {
    let mut keys: Vec<(String, bool)> = match order {
        Some(Value::Object(o)) => o
            .iter()
            .map(|(k, v)| {
                let desc = scalar_text(v).is_some_and(|d| d.eq_ignore_ascii_case("desc"));
                (k.clone(), desc)
            })
            .collect(),
        _ => Vec::new(),
    };
    keys.push(("id".into(), false));
    rows.sort_by(|a, b| {
        keys.iter()
            .map(|(k, desc)| {
                let o = compare(&a[k.as_str()], &b[k.as_str()]).unwrap_or(Ordering::Equal);
                if *desc { o.reverse() } else { o }
            })
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    });
}
