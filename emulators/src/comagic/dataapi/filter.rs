//! Report filters: the Data API's `field`/`operator`/`value` trees over a call.

use super::*;

/// The phone a filter requires (`contact_phone_number = X`, alone or in an `and` group).
pub(super) fn pinned_phone(filter: &Json) -> Option<String> {
    if filter.get("field").and_then(Json::as_str) == Some("contact_phone_number")
        && filter.get("operator").and_then(Json::as_str) == Some("=")
    {
        return filter
            .get("value")
            .and_then(Json::as_str)
            .map(str::to_string);
    }
    if filter
        .get("condition")
        .and_then(Json::as_str)
        .unwrap_or("and")
        == "and"
    {
        return filter
            .get("filters")?
            .as_array()?
            .iter()
            .find_map(pinned_phone);
    }
    None
}

pub(super) fn compare(a: &Json, b: &Json) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Json::String(x), Json::String(y)) => Some(x.cmp(y)),
        (Json::Bool(x), Json::Bool(y)) => Some(x.cmp(y)),
        (Json::Null, Json::Null) => Some(std::cmp::Ordering::Equal),
        _ => None,
    }
}

pub(super) fn like(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('%').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            let Some(at) = rest.find(part) else {
                return false;
            };
            rest = &rest[at + part.len()..];
        }
    }
    true
}

type Getter<'a> = &'a dyn Fn(&str) -> Option<Json>;
type Check<'a> = &'a dyn Fn(&str) -> bool;

/// Evaluate a filter (one condition or a nested `{filters, condition}` group) on one row.
pub(super) fn eval_filter(
    filter: &Json,
    get: Getter,
    filterable: Check,
    known: Check,
) -> Result<bool, RpcErr> {
    if let Some(list) = filter.get("filters") {
        let list = list.as_array().ok_or_else(|| {
            param_err(
                "data_type_error",
                "filter",
                filter.clone(),
                "filters must be an array",
            )
        })?;
        let or = match filter
            .get("condition")
            .and_then(Json::as_str)
            .unwrap_or("and")
        {
            "and" => false,
            "or" => true,
            c => {
                return Err(param_err(
                    "invalid_parameter_value",
                    "filter",
                    json!(c),
                    "condition is and or or",
                ));
            }
        };
        for f in list {
            let hit = eval_filter(f, get, filterable, known)?;
            if hit == or {
                return Ok(or);
            }
        }
        return Ok(!or);
    }
    let field = filter.get("field").and_then(Json::as_str).ok_or_else(|| {
        param_err(
            "required_parameter_missed",
            "filter",
            filter.clone(),
            "filter.field is required",
        )
    })?;
    if !known(field) {
        return Err(param_err(
            "unexpected_parameters",
            "filter",
            json!(field),
            format!("Unknown field: {field}"),
        ));
    }
    if !filterable(field) {
        return Err(param_err(
            "filter_prohibited",
            "filter",
            json!(field),
            format!("Filtering by {field} is not allowed"),
        ));
    }
    let op = filter.get("operator").and_then(Json::as_str).unwrap_or("=");
    let value = filter.get("value").unwrap_or(&Json::Null);
    let actual = get(field).unwrap_or(Json::Null);
    use std::cmp::Ordering::*;
    Ok(match op {
        "=" => compare(&actual, value) == Some(Equal),
        "!=" => compare(&actual, value) != Some(Equal),
        "<" => compare(&actual, value) == Some(Less),
        ">" => compare(&actual, value) == Some(Greater),
        "<=" => matches!(compare(&actual, value), Some(Less | Equal)),
        ">=" => matches!(compare(&actual, value), Some(Greater | Equal)),
        "in" => value
            .as_array()
            .ok_or_else(|| {
                param_err(
                    "data_type_error",
                    "filter",
                    value.clone(),
                    "in takes an array",
                )
            })?
            .iter()
            .any(|v| compare(&actual, v) == Some(Equal)),
        "like" => matches!((&actual, value), (Json::String(a), Json::String(p)) if like(p, a)),
        o => {
            return Err(param_err(
                "invalid_parameter_value",
                "filter",
                json!(o),
                format!("Unknown operator: {o}"),
            ));
        }
    })
}
