//! The filters on JSON values. An input of `None` is an undefined value (a missing field);
//! `Some(Json::Null)` is none. Text of a non-string value is what a template would print for it.

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::Value as Json;

use super::super::json_object::{member, scalar_value, to_value};
use super::{format_money, iso_date, normalize_phone};

/// Missing, none, or blank text: a filter turns it into none (or an empty list).
pub fn is_empty(v: Option<&Json>) -> bool {
    match v {
        None | Some(Json::Null) => true,
        Some(Json::String(s)) => s.chars().all(char::is_whitespace),
        _ => false,
    }
}

/// The value as text, as a template prints it (`None` for null, `True` for true).
pub fn text(v: &Json) -> Cow<'_, str> {
    match v {
        Json::String(s) => Cow::Borrowed(s),
        Json::Number(n) if n.is_i64() => Cow::Owned(n.to_string()),
        Json::Null | Json::Bool(_) | Json::Number(_) => {
            Cow::Owned(scalar_value(v).expect("a scalar").to_string())
        }
        // Rare (and only seen in error messages): print it the way the template engine does.
        Json::Array(_) | Json::Object(_) => Cow::Owned(to_value(&Arc::new(v.clone())).to_string()),
    }
}

/// The key a value is looked up by in a value map; undefined is the empty key.
pub fn key_of(v: Option<&Json>) -> Cow<'_, str> {
    v.map(text).unwrap_or(Cow::Borrowed(""))
}

/// The items of an iterable value: a list's elements, a text's characters, an object's keys.
pub fn items(v: &Json) -> Result<Cow<'_, [Json]>, String> {
    Ok(match v {
        Json::Array(a) => Cow::Borrowed(a.as_slice()),
        Json::String(s) => Cow::Owned(s.chars().map(|c| Json::String(c.to_string())).collect()),
        Json::Object(m) => Cow::Owned(m.keys().map(|k| Json::String(k.clone())).collect()),
        Json::Null => Cow::Owned(vec![]),
        _ => {
            return Err(scalar_value(v)
                .expect("a scalar")
                .try_iter()
                .err()
                .map(|e| super::super::template::error_text(&e))
                .unwrap_or_default());
        }
    })
}

fn text_filter(v: Option<&Json>, f: fn(&str) -> Result<String, String>) -> Result<Json, String> {
    match v {
        Some(v) if !is_empty(Some(v)) => f(&text(v)).map(Json::String),
        _ => Ok(Json::Null),
    }
}

/// `phone`: see [`normalize_phone`].
pub fn phone(v: Option<&Json>) -> Result<Json, String> {
    text_filter(v, normalize_phone)
}

/// `date`: see [`iso_date`].
pub fn date(v: Option<&Json>) -> Result<Json, String> {
    text_filter(v, iso_date)
}

/// `money`: see [`format_money`].
pub fn money(v: Option<&Json>) -> Result<Json, String> {
    text_filter(v, format_money)
}

/// `to_number`: numbers stay, text is parsed (`"12"` -> 12, `"1,5"` -> 1.5).
pub fn to_number(v: Option<&Json>) -> Result<Json, String> {
    let Some(v) = v.filter(|v| !is_empty(Some(v))) else {
        return Ok(Json::Null);
    };
    if v.is_number() {
        return Ok(v.clone());
    }
    let text = text(v);
    if let Ok(i) = text.trim().parse::<i64>() {
        return Ok(Json::from(i));
    }
    text.trim()
        .replace(',', ".")
        .parse::<f64>()
        .map(Json::from)
        .map_err(|_| format!("not a number: \"{text}\""))
}

/// `lookup(map, default)`: one value through a value map (`settings.payment_methods`);
/// unknown -> `default` or none.
pub fn lookup(
    v: Option<&Json>,
    map: Option<&Json>,
    default: Option<&Json>,
) -> Result<Json, String> {
    let Some(Json::Object(map)) = map else {
        return Err("lookup expects a mapping, e.g. lookup(settings.branches)".into());
    };
    Ok(match member(map, &key_of(v)) {
        Some(found) => found.clone(),
        None => default.cloned().unwrap_or(Json::Null),
    })
}

/// `map_values(map)`: every element of a list (or a single value) through a value map,
/// unknown ones dropped.
pub fn map_values(v: Option<&Json>, map: Option<&Json>) -> Result<Json, String> {
    let Some(Json::Object(map)) = map else {
        return Err("map_values expects a mapping, e.g. map_values(settings.products)".into());
    };
    let items: &[Json] = match v {
        _ if is_empty(v) => &[],
        Some(Json::Array(a)) => a,
        Some(one) => std::slice::from_ref(one),
        None => &[],
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match member(map, &text(item)) {
            None | Some(Json::Null) => {}
            Some(found) => out.push(found.clone()),
        }
    }
    Ok(Json::Array(out))
}

/// `from_json`: JSON text as the value it writes; none or blank text gives none, and a value
/// that is not text stays as it is (so applying it twice is harmless).
pub fn from_json(v: Option<&Json>) -> Result<Json, String> {
    match v {
        None => Ok(Json::Null),
        Some(Json::String(s)) if s.trim().is_empty() => Ok(Json::Null),
        Some(Json::String(s)) => {
            serde_json::from_str(s.trim()).map_err(|e| format!("from_json: not JSON ({e})"))
        }
        Some(other) => Ok(other.clone()),
    }
}

/// `flatten`: lists of lists into one list.
pub fn flatten(v: Option<&Json>) -> Result<Json, String> {
    let mut out = Vec::new();
    if let Some(v) = v.filter(|v| !is_empty(Some(v))) {
        for item in items(v)?.iter() {
            match item {
                Json::Array(inner) => out.extend(inner.iter().cloned()),
                other => out.push(other.clone()),
            }
        }
    }
    Ok(Json::Array(out))
}

/// Equality as templates see it (`1 == 1.0`), with a fast path for text.
fn same(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::String(a), Json::String(b)) => a == b,
        (Json::String(_), _) | (_, Json::String(_)) => false,
        _ => template_value(a) == template_value(b),
    }
}

fn template_value(v: &Json) -> minijinja::Value {
    scalar_value(v).unwrap_or_else(|| to_value(&Arc::new(v.clone())))
}

/// `unique_list`: distinct values, first occurrence order kept.
pub fn unique_list(v: Option<&Json>) -> Result<Json, String> {
    let mut out: Vec<Json> = Vec::new();
    if let Some(v) = v.filter(|v| !is_empty(Some(v))) {
        for item in items(v)?.iter() {
            if !out.iter().any(|seen| same(seen, item)) {
                out.push(item.clone());
            }
        }
    }
    Ok(Json::Array(out))
}

/// `compact`: a list without empty elements.
pub fn compact(v: Option<&Json>) -> Result<Json, String> {
    let Some(v) = v.filter(|v| !is_empty(Some(v))) else {
        return Ok(Json::Array(vec![]));
    };
    Ok(Json::Array(
        items(v)?
            .iter()
            .filter(|x| !is_empty(Some(x)))
            .cloned()
            .collect(),
    ))
}

/// `match_rules(fact=value, ...)`: the rules whose `when` conditions all hold for the facts.
/// A condition `product: "404"` holds when the fact `product` (a value or a list) contains
/// 404; a list of values in a condition holds when any of them is there.
pub fn match_rules(
    rules: Option<&Json>,
    facts: &[(String, Option<&Json>)],
) -> Result<Json, String> {
    let known: Vec<(&str, Vec<Cow<'_, str>>)> = facts
        .iter()
        .map(|(name, v)| (name.as_str(), fact_values(*v)))
        .collect();
    let rules = match rules {
        Some(r) => items(r)?,
        None => Cow::Owned(Vec::new()),
    };
    let mut out = Vec::new();
    for rule in rules.iter() {
        let Some(Json::Object(when)) = rule.as_object().and_then(|r| member(r, "when")) else {
            return Err("each rule needs a `when:` mapping of conditions".into());
        };
        let mut all = true;
        for (name, wanted) in when {
            let Some((_, have)) = known.iter().find(|(n, _)| n == name) else {
                return Err(format!(
                    "rule condition `{name}` has no fact; pass {name}=... to match_rules"
                ));
            };
            if !fact_values(Some(wanted)).iter().any(|w| have.contains(w)) {
                all = false;
                break;
            }
        }
        if all {
            out.push(rule.clone());
        }
    }
    Ok(Json::Array(out))
}

/// The values of a fact as text (a list, or one value; empty ones are none).
fn fact_values(v: Option<&Json>) -> Vec<Cow<'_, str>> {
    match v {
        _ if is_empty(v) => Vec::new(),
        Some(Json::Array(items)) => items
            .iter()
            .filter(|x| !is_empty(Some(x)))
            .map(text)
            .collect(),
        Some(one) => vec![text(one)],
        None => Vec::new(),
    }
}
