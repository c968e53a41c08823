//! The filter library the integrations need, on top of minijinja's builtins
//! (`first`, `join`, `default`, `lower`, `trim`, ...).
//!
//! Each filter is implemented once, on JSON values (the [`core`] functions). The native template
//! evaluator (`native.rs`) calls them directly on the record's JSON; the filters registered with
//! minijinja are thin wrappers that hand them the JSON behind a template value, so both ways of
//! evaluating a template give the same results and the same error messages.

use minijinja::value::{Kwargs, Value};
use minijinja::{Error, ErrorKind};
use serde_json::Value as Json;

use std::sync::Arc;

use super::json_object::{as_json, scalar_value, to_json, to_value};

pub mod b24;
pub mod core;
mod formats;
pub mod mailboxes;

pub use formats::{format_money, iso_date, normalize_phone, shift_days};

fn nothing() -> Value {
    Value::UNDEFINED
}

fn absent(v: &Value) -> bool {
    v.is_undefined() || v.is_none()
}

pub(super) fn first(v: Value) -> Result<Value, Error> {
    if absent(&v) {
        return Ok(nothing());
    }
    if let Some(s) = v.as_str() {
        return Ok(s
            .chars()
            .next()
            .map(|c| Value::from(c.to_string()))
            .unwrap_or_else(nothing));
    }
    Ok(v.try_iter()?.next().unwrap_or_else(nothing))
}

pub(super) fn last(v: Value) -> Result<Value, Error> {
    if absent(&v) {
        return Ok(nothing());
    }
    if let Some(s) = v.as_str() {
        return Ok(s
            .chars()
            .last()
            .map(|c| Value::from(c.to_string()))
            .unwrap_or_else(nothing));
    }
    Ok(v.try_iter()?.last().unwrap_or_else(nothing))
}

pub(super) fn attr(v: Value, name: &str) -> Result<Value, Error> {
    if absent(&v) {
        return Ok(nothing());
    }
    v.get_attr(name)
}

pub(super) fn length(v: Value) -> Result<Value, Error> {
    if absent(&v) {
        return Ok(Value::from(0));
    }
    if let Some(s) = v.as_str() {
        return Ok(Value::from(s.chars().count()));
    }
    v.len()
        .map(Value::from)
        .ok_or_else(|| invalid(format!("cannot take the length of {}", v.kind())))
}

pub(super) fn join(v: Value, sep: Option<String>) -> Result<Value, Error> {
    if absent(&v) {
        return Ok(Value::from(""));
    }
    if let Some(s) = v.as_str() {
        return Ok(Value::from(s));
    }
    let sep = sep.unwrap_or_default();
    let parts: Vec<String> = v.try_iter()?.map(|x| x.to_string()).collect();
    Ok(Value::from(parts.join(&sep)))
}

pub(super) fn trim(v: Value, chars: Option<String>) -> Result<Value, Error> {
    if absent(&v) {
        return Ok(Value::from(""));
    }
    let s = v.to_string();
    Ok(Value::from(match chars {
        Some(c) => s.trim_matches(|x| c.contains(x)).to_string(),
        None => s.trim().to_string(),
    }))
}

pub(super) fn invalid(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg.into())
}

/// Run `f` on the JSON behind a template value: borrowed when the value is a view into a record
/// or the settings, converted otherwise; undefined is `None`.
pub(super) fn with_json<R>(v: &Value, f: impl FnOnce(Option<&Json>) -> R) -> R {
    if v.is_undefined() {
        return f(None);
    }
    match as_json(v) {
        Some(json) => f(Some(json)),
        None => f(Some(&to_json(v))),
    }
}

/// A filter's JSON result as a template value (lists and objects as views, like record fields).
pub(super) fn from_json(v: Json) -> Value {
    match v {
        Json::String(s) => Value::from(s),
        Json::Array(_) | Json::Object(_) => to_value(&Arc::new(v)),
        scalar => scalar_value(&scalar).expect("a scalar"),
    }
}

pub(super) fn wrap1(
    v: &Value,
    f: fn(Option<&Json>) -> Result<Json, String>,
) -> Result<Value, Error> {
    with_json(v, f).map(from_json).map_err(invalid)
}

fn is_empty(v: &Value) -> bool {
    v.is_undefined() || v.is_none() || v.as_str().is_some_and(|s| s.trim().is_empty())
}

/// A date-time reformatted with a strftime pattern (default ISO 8601 with offset).
pub(super) fn datetime(v: Value, kwargs: Kwargs) -> Result<Value, Error> {
    if is_empty(&v) {
        return Ok(Value::from(()));
    }
    let format: Option<String> = kwargs.get("format")?;
    kwargs.assert_all_used()?;
    let raw = v.to_string();
    let dt = chrono::DateTime::parse_from_rfc3339(raw.trim()).map_err(|_| {
        invalid(format!(
            "invalid date-time \"{raw}\": expected ISO 8601 with an offset"
        ))
    })?;
    Ok(Value::from(
        dt.format(format.as_deref().unwrap_or("%Y-%m-%dT%H:%M:%S%:z"))
            .to_string(),
    ))
}

pub(super) fn add_days(v: Value, n: i64) -> Result<Value, Error> {
    if is_empty(&v) {
        return Ok(Value::from(()));
    }
    shift_days(&v.to_string(), n)
        .map(Value::from)
        .map_err(invalid)
}

/// `match_rules` (see `core::match_rules`).
pub(super) fn match_rules(rules: Value, facts: Kwargs) -> Result<Value, Error> {
    let mut given: Vec<(String, Option<Json>)> = Vec::new();
    for name in facts.args() {
        let v: Value = facts.get(name)?;
        given.push((name.to_string(), with_json(&v, |j| j.cloned())));
    }
    let given: Vec<(String, Option<&Json>)> =
        given.iter().map(|(n, v)| (n.clone(), v.as_ref())).collect();
    with_json(&rules, |rules| core::match_rules(rules, &given))
        .map(from_json)
        .map_err(invalid)
}

#[cfg(test)]
mod tests {
    use minijinja::Environment;

    #[test]
    fn add_days_moves_dates_and_date_times() {
        let mut env = Environment::new();
        super::super::filter_table::register(&mut env);
        let out = env.render_str("{{ '2024-03-10T09:30:00+03:00' | add_days(-7) }} {{ '2024-03-01' | add_days(-1) }}", ()).unwrap();
        assert_eq!(out, "2024-03-03T09:30:00+03:00 2024-02-29");
    }

    #[test]
    fn value_maps_drop_unknown_values() {
        let mut env = Environment::new();
        super::super::filter_table::register(&mut env);
        let out = env
            .render_str(
                "{{ [404, 999, 410] | map_values({'404': 'chess', '410': 'online'}) | join(',') }}",
                (),
            )
            .unwrap();
        assert_eq!(out, "chess,online");
        let out = env.render_str("{{ 450 | lookup({'450': 'CASH'}, 'ONLINE') }}-{{ 7 | lookup({'450': 'CASH'}, 'ONLINE') }}", ()).unwrap();
        assert_eq!(out, "CASH-ONLINE");
        let out = env
            .render_str(
                "{{ [[1, 2], [2, 3]] | flatten | unique_list | join(',') }}",
                (),
            )
            .unwrap();
        assert_eq!(out, "1,2,3");
    }

    #[test]
    fn missing_values_flow_through_list_filters() {
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
        super::super::filter_table::register(&mut env);
        let ctx = minijinja::context! { r => minijinja::context! { PHONE => vec![minijinja::context! { VALUE => "8 926 123-45-67" }] } };
        let render = |t: &str| env.render_str(t, ctx.clone()).unwrap();
        assert_eq!(
            render("{{ r.PHONE | first | attr('VALUE') | phone }}"),
            "79261234567"
        );
        assert_eq!(
            render("[{{ r.EMAIL | first | attr('VALUE') | trim }}]"),
            "[]"
        );
        assert_eq!(
            render("{{ r.EMAIL | length }}-{{ r.EMAIL | join(',') }}-{{ r.PHONE | length }}"),
            "0--1"
        );
    }

    #[test]
    fn rules_match_when_every_condition_holds() {
        let mut env = Environment::new();
        super::super::filter_table::register(&mut env);
        let rules = "[{'when': {'product': '410'}, 'c': 'online'}, {'when': {'product': '404', 'branch': '48'}, 'c': 'gogol'}, {'when': {'product': '404', 'branch': '12708'}, 'c': 'skolkovo'}]";
        let render = |facts: &str| {
            env.render_str(
                &format!(
                    "{{{{ {rules} | match_rules({facts}) | map(attribute='c') | join(',') }}}}"
                ),
                (),
            )
            .unwrap()
        };
        assert_eq!(
            render("product=[404, 410], branch=[48, 999]"),
            "online,gogol"
        );
        assert_eq!(
            render("product=[404], branch=[12708, 48]"),
            "gogol,skolkovo"
        );
        assert_eq!(render("product=[999], branch=[48]"), "");
        assert_eq!(render("product=none, branch=none"), "");
    }
}
