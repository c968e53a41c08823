//! The filter library the integrations need, on top of minijinja's builtins
//! (`first`, `join`, `default`, `lower`, `trim`, ...).
//!
//! Each filter is implemented once, on JSON values (the [`core`] functions). The native template
//! evaluator (`native.rs`) calls them directly on the record's JSON; the filters registered with
//! minijinja are thin wrappers that hand them the JSON behind a template value, so both ways of
//! evaluating a template give the same results and the same error messages.

use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Error, ErrorKind};
use serde_json::Value as Json;

use std::sync::Arc;

use super::json_object::{as_json, scalar_value, to_json, to_value};

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

/// Phone to `7XXXXXXXXXX`: digits only, a leading 8 becomes 7, ten digits get a 7 in front;
/// anything else is an error (a wrong number must not reach another system).
pub fn normalize_phone(raw: &str) -> Result<String, String> {
    // Room for a leading 7; ASCII digits are single bytes, never part of another character.
    let mut digits = String::with_capacity(11);
    digits.push('7');
    digits.extend(raw.bytes().filter(u8::is_ascii_digit).map(char::from));
    match &digits.as_bytes()[1..] {
        [first @ (b'7' | b'8'), ..] if digits.len() == 12 => {
            // 7XXXXXXXXXX stays, 8XXXXXXXXXX becomes 7XXXXXXXXXX: drop one of the leading two.
            digits.remove(if *first == b'7' { 0 } else { 1 });
            Ok(digits)
        }
        _ if digits.len() == 11 => Ok(digits),
        _ => Err(format!(
            "invalid phone number \"{raw}\": expected 10 digits, or 11 starting with 7 or 8"
        )),
    }
}

/// `2014-11-26T03:00:00+03:00` -> `2014-11-26`: the calendar date as written, in its own offset
/// (Bitrix24 stores dates as local midnight, so converting to UTC would give the previous day).
pub fn iso_date(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(raw) {
        return Ok(ymd(dt.date_naive()));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"] {
        if let Ok(dt) = chrono::NaiveDateTime::parse_from_str(raw, fmt) {
            return Ok(dt.date().format("%Y-%m-%d").to_string());
        }
    }
    for fmt in ["%Y-%m-%d", "%d.%m.%Y"] {
        if let Ok(d) = chrono::NaiveDate::parse_from_str(raw, fmt) {
            return Ok(d.format("%Y-%m-%d").to_string());
        }
    }
    Err(format!(
        "invalid date \"{raw}\": expected ISO 8601 such as 2020-12-13T03:00:00+03:00"
    ))
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

/// `%Y-%m-%d` without chrono's format machinery (parsing the pattern on every call).
fn ymd(d: chrono::NaiveDate) -> String {
    use chrono::Datelike;
    if !(0..=9999).contains(&d.year()) {
        return d.format("%Y-%m-%d").to_string();
    }
    let mut out = String::with_capacity(10);
    for (n, width) in [(d.year() as u32, 4), (d.month(), 2), (d.day(), 2)] {
        if width == 2 {
            out.push('-');
        }
        for p in (0..width).rev() {
            out.push(char::from(b'0' + (n / 10u32.pow(p) % 10) as u8));
        }
    }
    out
}

/// A date (`2025-01-31`) or ISO 8601 date-time moved by `n` days (negative: back), in the same
/// form: `{{ run.today | add_days(-30) }}` -> `2025-01-01`.
pub fn shift_days(raw: &str, n: i64) -> Result<String, String> {
    let raw = raw.trim();
    let delta = chrono::Duration::days(n);
    if let Ok(d) = chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        return Ok((d + delta).format("%Y-%m-%d").to_string());
    }
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(raw) {
        return Ok((dt + delta).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false));
    }
    if let Ok(dt) = chrono::NaiveDateTime::parse_from_str(raw, "%Y-%m-%d %H:%M:%S") {
        return Ok((dt + delta).format("%Y-%m-%d %H:%M:%S").to_string());
    }
    Err(format!(
        "invalid date \"{raw}\": expected YYYY-MM-DD or ISO 8601"
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

/// Money as a string with two decimals: `9000` -> `"9000.00"`, `"8700.5"` -> `"8700.50"`.
pub fn format_money(raw: &str) -> Result<String, String> {
    match exact_money(raw.trim()) {
        Some(text) => Ok(text),
        None => format_money_float(raw),
    }
}

/// `1001`, `-5`, `8700.5`, `300,25`: a decimal with at most two fraction digits and at most 15
/// digits in all comes back unchanged from the trip through f64, so what `format_money_float`
/// prints is the text itself padded to two decimals; this skips the float formatting.
fn exact_money(s: &str) -> Option<String> {
    let body = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = match body.find(['.', ',']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    let int_ok =
        (1..=13).contains(&int.len()) && digits(int) && (int == "0" || !int.starts_with('0'));
    let frac_ok = frac.is_none_or(|f| (1..=2).contains(&f.len()) && digits(f));
    if !int_ok || !frac_ok {
        return None;
    }
    let frac = frac.unwrap_or("");
    let mut out = String::with_capacity(s.len() + 3);
    out.push_str(&s[..s.len() - body.len()]);
    out.push_str(int);
    out.push('.');
    out.push_str(frac);
    out.push_str(&"00"[frac.len()..]);
    Some(out)
}

fn format_money_float(raw: &str) -> Result<String, String> {
    let n: f64 = raw
        .trim()
        .replace(',', ".")
        .replace(' ', "")
        .parse()
        .map_err(|_| format!("invalid amount \"{raw}\""))?;
    if !n.is_finite() {
        return Err(format!("invalid amount \"{raw}\""));
    }
    Ok(format!("{n:.2}"))
}

fn key_of(v: &Value) -> String {
    match v.as_str() {
        Some(s) => s.to_string(),
        None => v.to_string(),
    }
}

/// The filters on JSON values. An input of `None` is an undefined value (a missing field);
/// `Some(Json::Null)` is none. Text of a non-string value is what a template would print for it.
pub mod core {
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
            Json::Array(_) | Json::Object(_) => {
                Cow::Owned(to_value(&Arc::new(v.clone())).to_string())
            }
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

    fn text_filter(
        v: Option<&Json>,
        f: fn(&str) -> Result<String, String>,
    ) -> Result<Json, String> {
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
}

/// The values of a fact as strings (a list, or one value; empty is none).
fn fact_values(v: &Value) -> Result<Vec<String>, Error> {
    if is_empty(v) {
        return Ok(vec![]);
    }
    if matches!(v.kind(), ValueKind::Seq | ValueKind::Iterable) {
        return Ok(v
            .try_iter()?
            .filter(|x| !is_empty(x))
            .map(|x| key_of(&x))
            .collect());
    }
    Ok(vec![key_of(v)])
}

/// Rules from settings whose `when` conditions all hold for the given facts:
/// `settings.course_rules | match_rules(product=source.UF_X, branch=source.UF_Y)`.
/// A condition `product: "404"` holds when the fact `product` (a value or a list) contains 404;
/// a list of values in a condition holds when any of them is there.
pub(super) fn match_rules(rules: Value, facts: Kwargs) -> Result<Value, Error> {
    let mut known: Vec<(String, Vec<String>)> = Vec::new();
    for name in facts.args() {
        let v: Value = facts.get(name)?;
        known.push((name.to_string(), fact_values(&v)?));
    }
    let mut out = Vec::new();
    for rule in rules.try_iter()? {
        let when = rule.get_attr("when")?;
        if when.is_undefined() || when.kind() != ValueKind::Map {
            return Err(invalid("each rule needs a `when:` mapping of conditions"));
        }
        let mut all = true;
        for key in when.try_iter()? {
            let name = key_of(&key);
            let wanted = fact_values(&when.get_item(&key)?)?;
            let have = known
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_slice());
            let Some(have) = have else {
                return Err(invalid(format!(
                    "rule condition `{name}` has no fact; pass {name}=... to match_rules"
                )));
            };
            if !wanted.iter().any(|w| have.contains(w)) {
                all = false;
                break;
            }
        }
        if all {
            out.push(rule);
        }
    }
    Ok(Value::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::Environment;

    #[test]
    fn phones_normalise_to_eleven_digits() {
        assert_eq!(normalize_phone("8 (926) 123-45-67").unwrap(), "79261234567");
        assert_eq!(normalize_phone("+7 (926) 1234567").unwrap(), "79261234567");
        assert_eq!(normalize_phone("9265672098").unwrap(), "79265672098");
        assert!(normalize_phone("12345").is_err());
        assert!(normalize_phone("+1 650 253 00001").is_err());
        assert!(normalize_phone("59261234567").is_err());
    }

    #[test]
    fn dates_keep_their_calendar_day() {
        assert_eq!(iso_date("2014-11-26T03:00:00+03:00").unwrap(), "2014-11-26");
        assert_eq!(iso_date("2009-11-29T00:00:00+03:00").unwrap(), "2009-11-29");
        assert_eq!(iso_date("2020-12-22").unwrap(), "2020-12-22");
        assert!(iso_date("yesterday").is_err());
    }

    #[test]
    fn exact_money_and_dates_print_like_the_general_formatting() {
        let mut inputs: Vec<String> = [
            "0",
            "-0",
            "7",
            "1001",
            "-5",
            "8700.5",
            "300,25",
            "0.05",
            "-0.5",
            "1.005",
            "2.675",
            "007",
            "1e3",
            "1.",
            ".5",
            "+5",
            "1,234.5",
            "9999999999999.99",
            "99999999999999",
            "12 000",
            "-",
            "",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut x: u64 = 12345;
        for _ in 0..20000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let int = (x >> 20) % 10u64.pow((x % 14) as u32).max(1);
            inputs.push(match x % 4 {
                0 => format!("{int}"),
                1 => format!("{int}.{}", (x >> 8) % 10),
                2 => format!("-{int},{:02}", (x >> 8) % 100),
                _ => format!("{int}.{:02}", (x >> 8) % 100),
            });
        }
        for s in &inputs {
            if let Some(fast) = exact_money(s) {
                assert_eq!(Ok(fast), format_money_float(s), "{s}");
            }
        }
        assert!(exact_money("300,25").is_some() && exact_money("1e3").is_none());
        for days in (-800_000..3_000_000).step_by(997) {
            let d = chrono::NaiveDate::from_num_days_from_ce_opt(days).unwrap();
            assert_eq!(ymd(d), d.format("%Y-%m-%d").to_string());
        }
    }

    #[test]
    fn days_shift_in_the_same_form() {
        assert_eq!(shift_days("2025-03-01", -1).unwrap(), "2025-02-28");
        assert_eq!(
            shift_days("2025-01-31T10:00:00+03:00", 1).unwrap(),
            "2025-02-01T10:00:00+03:00"
        );
        assert_eq!(
            shift_days("2025-01-31 23:59:59", 30).unwrap(),
            "2025-03-02 23:59:59"
        );
        assert!(shift_days("soon", 1).is_err());
    }

    #[test]
    fn add_days_moves_dates_and_date_times() {
        let mut env = Environment::new();
        super::super::filter_table::register(&mut env);
        let out = env.render_str("{{ '2024-03-10T09:30:00+03:00' | add_days(-7) }} {{ '2024-03-01' | add_days(-1) }}", ()).unwrap();
        assert_eq!(out, "2024-03-03T09:30:00+03:00 2024-02-29");
    }

    #[test]
    fn money_has_two_decimals() {
        assert_eq!(format_money("9000").unwrap(), "9000.00");
        assert_eq!(format_money("8700.5").unwrap(), "8700.50");
        assert_eq!(format_money("300,25").unwrap(), "300.25");
        assert!(format_money("n/a").is_err());
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
