//! Request parameters: PHP `http_build_query` bracket syntax (query string, form body, batch
//! sub-commands) and JSON bodies, all decoded to one `serde_json::Value` tree, the way PHP's
//! `$_REQUEST` would see them. Maps whose keys are `0..n-1` in order become JSON arrays
//! (PHP lists), so `select[]=ID&select[]=NAME` and `{"select":["ID","NAME"]}` look the same.

use serde_json::{Map, Value};
use std::borrow::Cow;

/// Percent-decode one query component; `+` means space (PHP `urldecode`).
pub fn url_decode(s: &str) -> String {
    let bytes: Cow<[u8]> = if s.contains('+') {
        Cow::Owned(
            s.bytes()
                .map(|b| if b == b'+' { b' ' } else { b })
                .collect(),
        )
    } else {
        Cow::Borrowed(s.as_bytes())
    };
    percent_encoding::percent_decode(&bytes)
        .decode_utf8_lossy()
        .into_owned()
}

/// Split a decoded key like `filter[>ID][]` into `["filter", ">ID", ""]` (empty = append).
/// Like PHP, a key without a closing bracket keeps the bracket as part of the name.
fn split_key(key: &str) -> Vec<String> {
    let Some(open) = key.find('[') else {
        return vec![key.to_string()];
    };
    if open == 0 {
        return vec![key.to_string()];
    }
    if !key[open..].contains(']') {
        return vec![key.to_string()];
    }
    let mut parts = vec![key[..open].to_string()];
    let mut rest = &key[open..];
    while let Some(stripped) = rest.strip_prefix('[') {
        match stripped.find(']') {
            Some(close) => {
                parts.push(stripped[..close].to_string());
                rest = &stripped[close + 1..];
            }
            None => break,
        }
    }
    parts
}

fn next_index(map: &Map<String, Value>) -> usize {
    map.keys()
        .filter_map(|k| k.parse::<usize>().ok())
        .max()
        .map_or(0, |m| m + 1)
}

fn assign(map: &mut Map<String, Value>, path: &[String], value: String) {
    let key = if path[0].is_empty() {
        next_index(map).to_string()
    } else {
        path[0].clone()
    };
    if path.len() == 1 {
        map.insert(key, Value::String(value));
        return;
    }
    let slot = map.entry(key).or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    if let Value::Object(child) = slot {
        assign(child, &path[1..], value);
    }
}

/// Turn maps keyed `0..n-1` (in order) into arrays, recursively (PHP `json_encode` rule).
pub fn listify(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let sequential = !m.is_empty()
                && m.keys()
                    .enumerate()
                    .all(|(i, k)| k.parse::<usize>().ok() == Some(i));
            if sequential {
                Value::Array(m.into_iter().map(|(_, v)| listify(v)).collect())
            } else {
                Value::Object(m.into_iter().map(|(k, v)| (k, listify(v))).collect())
            }
        }
        Value::Array(a) => Value::Array(a.into_iter().map(listify).collect()),
        other => other,
    }
}

/// The items of a PHP list parameter: a JSON array, or a map (`rows[5]=...` decodes to one);
/// `None` for anything else.
pub fn list_of(v: &Value) -> Option<Vec<Value>> {
    match v {
        Value::Array(a) => Some(a.clone()),
        Value::Object(o) => Some(o.values().cloned().collect()),
        _ => None,
    }
}

/// Decode a query string or form body (`a[b][]=1&c=2`) into a map of values.
pub fn parse_query(q: &str) -> Map<String, Value> {
    let mut root = Map::new();
    for pair in q.split('&') {
        if pair.is_empty() {
            continue;
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = url_decode(k);
        if key.is_empty() {
            continue;
        }
        let path = split_key(&key);
        assign(&mut root, &path, url_decode(v));
    }
    match listify(Value::Object(root)) {
        Value::Object(m) => m,
        // the root itself had only numeric keys (positional parameters `0=..&1=..`)
        Value::Array(a) => a
            .into_iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v))
            .collect(),
        _ => Map::new(),
    }
}

/// Deep-merge `from` into `into` (later sources win, nested maps merge).
pub fn merge(into: &mut Map<String, Value>, from: Map<String, Value>) {
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(Value::Object(a)), Value::Object(b)) => merge(a, b),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

/// Look up a key: exact match first, then case-insensitive (legacy methods accept `ID`/`id`).
pub fn get_ci<'a>(map: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    map.get(name).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// Scalar as text, the way PHP would coerce it (`true` -> "1", `false`/null -> "").
pub fn scalar_text(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Bool(true) => Some(Cow::Borrowed("1")),
        Value::Bool(false) | Value::Null => Some(Cow::Borrowed("")),
        _ => None,
    }
}

/// Integer value of a parameter (`"5"`, `5`, `5.0`); None if absent or not integer-like.
pub fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    }
}

/// PHP-ish truthiness for flags like `halt`: 1/"1"/true/"true"/"Y".
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => {
            let s = s.trim();
            !(s.is_empty()
                || s == "0"
                || s.eq_ignore_ascii_case("false")
                || s.eq_ignore_ascii_case("n"))
        }
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
        Value::Null => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn brackets() {
        let m = parse_query(
            "filter%5B%3EDATE_MODIFY%5D=2024-06-01T00:00:00%2B03:00&filter[@ASSIGNED_BY_ID][]=1\
             &filter[@ASSIGNED_BY_ID][]=6&select[]=ID&select[]=UF_*&order[DATE_MODIFY]=ASC&start=0",
        );
        assert_eq!(
            Value::Object(m),
            json!({
                "filter": {">DATE_MODIFY": "2024-06-01T00:00:00+03:00", "@ASSIGNED_BY_ID": ["1", "6"]},
                "select": ["ID", "UF_*"],
                "order": {"DATE_MODIFY": "ASC"},
                "start": "0"
            })
        );
    }

    #[test]
    fn nested_lists_plus_and_overrides() {
        let m = parse_query(
            "fields[PHONE][0][VALUE]=1+2&fields[PHONE][0][VALUE_TYPE]=WORK&a=1&a=2&b[5]=x&c",
        );
        assert_eq!(
            Value::Object(m),
            json!({"fields": {"PHONE": [{"VALUE": "1 2", "VALUE_TYPE": "WORK"}]}, "a": "2", "b": {"5": "x"}, "c": ""})
        );
        // unclosed bracket stays part of the name; scalar then nested -> nested wins
        let m = parse_query("x[y=1&z=1&z[a]=2");
        assert_eq!(Value::Object(m), json!({"x[y": "1", "z": {"a": "2"}}));
        // append after explicit index continues numbering
        let m = parse_query("s[3]=a&s[]=b");
        assert_eq!(Value::Object(m), json!({"s": {"3": "a", "4": "b"}}));
    }

    #[test]
    fn double_encoded_batch_command() {
        let m = parse_query(
            "cmd[p0]=crm.contact.list%3Ffilter%255B%253EID%255D%3D5%26select%255B%255D%3DID&halt=1",
        );
        let cmd = m["cmd"]["p0"].as_str().unwrap();
        assert_eq!(cmd, "crm.contact.list?filter%5B%3EID%5D=5&select%5B%5D=ID");
        let inner = parse_query(cmd.split_once('?').unwrap().1);
        assert_eq!(
            Value::Object(inner),
            json!({"filter": {">ID": "5"}, "select": ["ID"]})
        );
    }

    #[test]
    fn merge_and_ci() {
        let mut a = parse_query("filter[ID]=1&start=0");
        merge(
            &mut a,
            serde_json::from_value(json!({"filter": {"NAME": "x"}, "start": 50})).unwrap(),
        );
        assert_eq!(
            Value::Object(a.clone()),
            json!({"filter": {"ID": "1", "NAME": "x"}, "start": 50})
        );
        assert_eq!(get_ci(&a, "FILTER").unwrap()["ID"], "1");
        assert_eq!(as_i64(&json!("-1")), Some(-1));
        assert!(
            truthy(&json!("true"))
                && truthy(&json!(1))
                && !truthy(&json!("0"))
                && !truthy(&json!(false))
        );
    }
}
