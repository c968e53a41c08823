//! The filter library the integrations need, on top of minijinja's builtins
//! (`first`, `join`, `default`, `lower`, `trim`, ...).

use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind};

/// Names of our own filters, for the "unknown filter" check.
pub const CUSTOM: &[&str] = &[
    "phone",
    "date",
    "money",
    "lookup",
    "map_values",
    "flatten",
    "unique_list",
    "compact",
    "to_number",
    "datetime",
    "match_rules",
    "add_days",
];

pub fn register(env: &mut Environment<'static>) {
    env.add_filter("phone", phone);
    env.add_filter("date", date);
    env.add_filter("datetime", datetime);
    env.add_filter("add_days", add_days);
    env.add_filter("money", money);
    env.add_filter("lookup", lookup);
    env.add_filter("map_values", map_values);
    env.add_filter("flatten", flatten);
    env.add_filter("unique_list", unique_list);
    env.add_filter("compact", compact);
    env.add_filter("to_number", to_number);
    env.add_filter("match_rules", match_rules);
    // Bitrix24 leaves out empty fields, so the builtins that would stop at a missing value
    // (`source.PHONE | first | attr('VALUE')`) treat it as nothing instead.
    env.add_filter("first", first);
    env.add_filter("last", last);
    env.add_filter("attr", attr);
    env.add_filter("length", length);
    env.add_filter("count", length);
    env.add_filter("join", join);
    env.add_filter("trim", trim);
}

fn nothing() -> Value {
    Value::UNDEFINED
}

fn absent(v: &Value) -> bool {
    v.is_undefined() || v.is_none()
}

fn first(v: Value) -> Result<Value, Error> {
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

fn last(v: Value) -> Result<Value, Error> {
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

fn attr(v: Value, name: &str) -> Result<Value, Error> {
    if absent(&v) {
        return Ok(nothing());
    }
    v.get_attr(name)
}

fn length(v: Value) -> Result<Value, Error> {
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

fn join(v: Value, sep: Option<String>) -> Result<Value, Error> {
    if absent(&v) {
        return Ok(Value::from(""));
    }
    if let Some(s) = v.as_str() {
        return Ok(Value::from(s));
    }
    let sep = sep.unwrap_or_default();
    let parts: Vec<String> = v
        .try_iter()?
        .map(|x| {
            if absent(&x) {
                String::new()
            } else {
                x.to_string()
            }
        })
        .collect();
    Ok(Value::from(parts.join(&sep)))
}

fn trim(v: Value, chars: Option<String>) -> Result<Value, Error> {
    if absent(&v) {
        return Ok(Value::from(""));
    }
    let s = v.to_string();
    Ok(Value::from(match chars {
        Some(c) => s.trim_matches(|x| c.contains(x)).to_string(),
        None => s.trim().to_string(),
    }))
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg.into())
}

fn is_empty(v: &Value) -> bool {
    v.is_undefined() || v.is_none() || v.as_str().is_some_and(|s| s.trim().is_empty())
}

/// Phone to `7XXXXXXXXXX`: digits only, a leading 8 becomes 7, ten digits get a 7 in front;
/// anything else is an error (a wrong number must not reach another system).
pub fn normalize_phone(raw: &str) -> Result<String, String> {
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    match digits.len() {
        11 if digits.starts_with('7') => Ok(digits),
        11 if digits.starts_with('8') => Ok(format!("7{}", &digits[1..])),
        10 => Ok(format!("7{digits}")),
        _ => Err(format!(
            "invalid phone number \"{raw}\": expected 10 digits, or 11 starting with 7 or 8"
        )),
    }
}

fn phone(v: Value) -> Result<Value, Error> {
    if is_empty(&v) {
        return Ok(Value::from(()));
    }
    let text = v.to_string();
    normalize_phone(&text).map(Value::from).map_err(invalid)
}

/// `2014-11-26T03:00:00+03:00` -> `2014-11-26`: the calendar date as written, in its own offset
/// (Bitrix24 stores dates as local midnight, so converting to UTC would give the previous day).
pub fn iso_date(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(raw) {
        return Ok(dt.date_naive().format("%Y-%m-%d").to_string());
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

fn date(v: Value) -> Result<Value, Error> {
    if is_empty(&v) {
        return Ok(Value::from(()));
    }
    iso_date(&v.to_string()).map(Value::from).map_err(invalid)
}

/// A date-time reformatted with a strftime pattern (default ISO 8601 with offset).
fn datetime(v: Value, kwargs: Kwargs) -> Result<Value, Error> {
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

/// A date-time (ISO 8601 with an offset) or a date moved by `days` (negative: back):
/// `{{ run.started_at | add_days(-settings.window_days) }}` for a report window.
fn add_days(v: Value, days: f64) -> Result<Value, Error> {
    if is_empty(&v) {
        return Ok(Value::from(()));
    }
    let raw = v.to_string();
    let delta = chrono::Duration::milliseconds((days * 86_400_000.0).round() as i64);
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(raw.trim()) {
        return Ok(Value::from((dt + delta).to_rfc3339_opts(chrono::SecondsFormat::Secs, false)));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(raw.trim(), "%Y-%m-%d") {
        return Ok(Value::from((d + delta).format("%Y-%m-%d").to_string()));
    }
    Err(invalid(format!("invalid date \"{raw}\": add_days expects ISO 8601, such as 2024-08-15T10:00:00+03:00")))
}

/// Money as a string with two decimals: `9000` -> `"9000.00"`, `"8700.5"` -> `"8700.50"`.
pub fn format_money(raw: &str) -> Result<String, String> {
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

fn money(v: Value) -> Result<Value, Error> {
    if is_empty(&v) {
        return Ok(Value::from(()));
    }
    format_money(&v.to_string())
        .map(Value::from)
        .map_err(invalid)
}

fn to_number(v: Value) -> Result<Value, Error> {
    if is_empty(&v) {
        return Ok(Value::from(()));
    }
    if matches!(v.kind(), ValueKind::Number) {
        return Ok(v);
    }
    let text = v.to_string();
    if let Ok(i) = text.trim().parse::<i64>() {
        return Ok(Value::from(i));
    }
    text.trim()
        .replace(',', ".")
        .parse::<f64>()
        .map(Value::from)
        .map_err(|_| invalid(format!("not a number: \"{text}\"")))
}

fn key_of(v: &Value) -> String {
    match v.as_str() {
        Some(s) => s.to_string(),
        None => v.to_string(),
    }
}

/// One value through a value map (`settings.payment_methods`); unknown -> `default` or none.
fn lookup(v: Value, map: Value, default: Option<Value>) -> Result<Value, Error> {
    if map.kind() != ValueKind::Map {
        return Err(invalid(
            "lookup expects a mapping, e.g. lookup(settings.branches)",
        ));
    }
    let found = map.get_item(&Value::from(key_of(&v)))?;
    Ok(if found.is_undefined() {
        default.unwrap_or(Value::from(()))
    } else {
        found
    })
}

/// Every element of a list (or a single value) through a value map, unknown ones dropped.
fn map_values(v: Value, map: Value) -> Result<Value, Error> {
    if map.kind() != ValueKind::Map {
        return Err(invalid(
            "map_values expects a mapping, e.g. map_values(settings.products)",
        ));
    }
    let items: Vec<Value> = if is_empty(&v) {
        vec![]
    } else if matches!(v.kind(), ValueKind::Seq | ValueKind::Iterable) {
        v.try_iter()?.collect()
    } else {
        vec![v]
    };
    let mut out = Vec::new();
    for item in items {
        let found = map.get_item(&Value::from(key_of(&item)))?;
        if !found.is_undefined() && !found.is_none() {
            out.push(found);
        }
    }
    Ok(Value::from(out))
}

/// Lists of lists into one list.
fn flatten(v: Value) -> Result<Value, Error> {
    let mut out = Vec::new();
    if is_empty(&v) {
        return Ok(Value::from(out));
    }
    for item in v.try_iter()? {
        if matches!(item.kind(), ValueKind::Seq | ValueKind::Iterable) {
            out.extend(item.try_iter()?);
        } else {
            out.push(item);
        }
    }
    Ok(Value::from(out))
}

/// Distinct values, first occurrence order kept.
fn unique_list(v: Value) -> Result<Value, Error> {
    let mut out: Vec<Value> = Vec::new();
    if is_empty(&v) {
        return Ok(Value::from(out));
    }
    for item in v.try_iter()? {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    Ok(Value::from(out))
}

/// A list without empty elements.
fn compact(v: Value) -> Result<Value, Error> {
    if is_empty(&v) {
        return Ok(Value::from(Vec::<Value>::new()));
    }
    Ok(Value::from(
        v.try_iter()?.filter(|x| !is_empty(x)).collect::<Vec<_>>(),
    ))
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
fn match_rules(rules: Value, facts: Kwargs) -> Result<Value, Error> {
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
    fn add_days_moves_dates_and_date_times() {
        let mut env = Environment::new();
        register(&mut env);
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
        register(&mut env);
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
        register(&mut env);
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
        register(&mut env);
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
