//! Filters for values as Bitrix24 business processes send them: every value is text, IDs come
//! as `DEAL_123`, `user_5` or `[5] Иван Петров`, multiple values as lists or one `a, b` string,
//! and an empty input means "not given". Also the shaping of what goes back: only non-empty
//! fields, multi-field rows (PHONE, EMAIL, IM, WEB) only for values not there yet.

use serde_json::{Map, Value as Json, json};
use sha2::{Digest, Sha256};

use super::core::{is_empty, text};

/// Empty as a field value: none, blank text, an empty list or mapping. Such a field is "not
/// given" and is not sent (Bitrix24 would clear it).
pub fn is_blank(v: &Json) -> bool {
    match v {
        Json::Array(a) => a.is_empty(),
        Json::Object(m) => m.is_empty(),
        other => is_empty(Some(other)),
    }
}

/// `b24_id`: the first integer > 0 in the first non-empty element (of a list, or of an `a, b`
/// text); none when there is none.
pub fn b24_id(v: Option<&Json>) -> Result<Json, String> {
    Ok(first_id(v).map(Json::from).unwrap_or(Json::Null))
}

fn first_id(v: Option<&Json>) -> Option<u64> {
    match v? {
        Json::Array(items) => first_id(items.iter().find(|x| !is_blank(x))),
        Json::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as u64))
            .filter(|&i| i > 0),
        Json::String(s) => {
            let head = s.split([',', ';']).map(str::trim).find(|p| !p.is_empty())?;
            positive_integer_in(head)
        }
        _ => None,
    }
}

/// The first run of digits that reads as an integer > 0: `DEAL_123` -> 123, `[5] Иван` -> 5.
fn positive_integer_in(s: &str) -> Option<u64> {
    s.split(|c: char| !c.is_ascii_digit())
        .filter(|run| !run.is_empty())
        .filter_map(|run| run.parse::<u64>().ok())
        .find(|&i| i > 0)
}

/// `b24_list`: a list as is, or a text split on `,` and `;`; elements trimmed, empty ones
/// dropped.
pub fn b24_list(v: Option<&Json>) -> Result<Json, String> {
    let trimmed = |x: &Json| match x {
        Json::String(s) => Json::String(s.trim().to_string()),
        other => other.clone(),
    };
    let out: Vec<Json> = match v {
        None | Some(Json::Null) => vec![],
        Some(Json::Array(items)) => items.iter().map(trimmed).collect(),
        Some(Json::String(s)) => s.split([',', ';']).map(|p| json!(p.trim())).collect(),
        Some(other) => vec![other.clone()],
    };
    Ok(Json::Array(
        out.into_iter().filter(|x| !is_blank(x)).collect(),
    ))
}

/// `fields_from(map)`: the non-empty values of `v` under the field names `map` gives them
/// (`{title: TITLE}`), in the map's order. Lists lose their empty elements first.
pub fn fields_from(v: Option<&Json>, map: Option<&Json>) -> Result<Json, String> {
    let Some(Json::Object(map)) = map else {
        return Err("fields_from expects a mapping of property to field, e.g. fields_from(settings.deal_fields)".into());
    };
    let props = match v {
        Some(Json::Object(props)) => props,
        _ if is_empty(v) => return Ok(Json::Object(Map::new())),
        Some(other) => {
            return Err(format!(
                "fields_from expects a mapping, not {}",
                text(other)
            ));
        }
        None => unreachable!("an undefined value is empty"),
    };
    let mut out = Map::new();
    for (prop, field) in map {
        let Some(value) = props.get(prop) else {
            continue;
        };
        let value = match value {
            Json::Array(items) => {
                Json::Array(items.iter().filter(|x| !is_blank(x)).cloned().collect())
            }
            other => other.clone(),
        };
        if !is_blank(&value) && !is_blank(field) {
            out.insert(text(field).into_owned(), value);
        }
    }
    Ok(Json::Object(out))
}

/// `compact_map`: a mapping without its empty entries (none, blank text, empty list or mapping).
pub fn compact_map(v: Option<&Json>) -> Result<Json, String> {
    match v {
        Some(Json::Object(m)) => Ok(Json::Object(
            m.iter()
                .filter(|(_, x)| !is_blank(x))
                .map(|(k, x)| (k.clone(), x.clone()))
                .collect(),
        )),
        _ if is_empty(v) => Ok(Json::Object(Map::new())),
        Some(other) => Err(format!(
            "compact_map expects a mapping, not {}",
            text(other)
        )),
        None => unreachable!("an undefined value is empty"),
    }
}

/// `sha256`: the SHA-256 of the text, in lowercase hex; none stays none.
pub fn sha256(v: Option<&Json>) -> Result<Json, String> {
    Ok(match v {
        None | Some(Json::Null) => Json::Null,
        Some(v) => Json::String(hex::encode(Sha256::digest(text(v).as_bytes()))),
    })
}

/// `digits`: only the digits of the text; none stays none.
pub fn digits(v: Option<&Json>) -> Result<Json, String> {
    Ok(match v {
        None | Some(Json::Null) => Json::Null,
        Some(v) => Json::String(text(v).chars().filter(char::is_ascii_digit).collect()),
    })
}

/// The `digits` test: a whole non-negative number, or text of digits only (`select('digits')`
/// tells Drive file IDs from URLs).
pub fn is_digits(v: Option<&Json>) -> bool {
    match v {
        Some(Json::Number(n)) => n.is_u64(),
        Some(Json::String(s)) => {
            let s = s.trim();
            !s.is_empty() && s.chars().all(|c| c.is_ascii_digit())
        }
        _ => false,
    }
}

/// `multifield_add(values, kind)` on the rows a record has (`steps.deal.PHONE`): the rows to send
/// so that every given value is there, each a new `{VALUE, VALUE_TYPE: WORK}`. A value already
/// present (or given twice) is left out: phones compare by their digits (a leading 8 of eleven
/// digits as 7), e-mails case-insensitively, other kinds exactly. Existing rows are never in the
/// result, so they are neither sent again nor removed.
pub fn multifield_add(
    rows: Option<&Json>,
    values: Option<&Json>,
    kind: Option<&Json>,
) -> Result<Json, String> {
    let kind = kind.map(|k| text(k).to_lowercase()).unwrap_or_default();
    let existing: Vec<Json> = match rows {
        Some(Json::Array(rows)) => rows.clone(),
        _ if is_empty(rows) => vec![],
        Some(other) => {
            return Err(format!(
                "multifield_add expects the record's rows (a list), not {}",
                text(other)
            ));
        }
        None => unreachable!("an undefined value is empty"),
    };
    let mut seen: Vec<String> = existing
        .iter()
        .map(|row| match row {
            Json::Object(m) => m
                .get("VALUE")
                .map(|v| text(v).into_owned())
                .unwrap_or_default(),
            other => text(other).into_owned(),
        })
        .map(|v| comparable(&kind, &v))
        .collect();
    let mut out = Vec::new();
    for value in b24_list(values)?.as_array().expect("a list") {
        let value = text(value).trim().to_string();
        let key = comparable(&kind, &value);
        if !seen.contains(&key) {
            seen.push(key);
            out.push(json!({"VALUE": value, "VALUE_TYPE": "WORK"}));
        }
    }
    Ok(Json::Array(out))
}

/// What two multi-field values are compared by.
fn comparable(kind: &str, value: &str) -> String {
    let value = value.trim();
    match kind {
        "phone" => {
            let digits: String = value.chars().filter(char::is_ascii_digit).collect();
            match digits.strip_prefix('8') {
                Some(rest) if digits.len() == 11 => format!("7{rest}"),
                _ if digits.is_empty() => value.to_string(),
                _ => digits,
            }
        }
        "email" => value.to_lowercase(),
        _ => value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(v: Json) -> Json {
        b24_id(Some(&v)).unwrap()
    }

    #[test]
    fn ids_come_from_every_shape_bitrix24_sends() {
        assert_eq!(id(json!("123")), json!(123));
        assert_eq!(id(json!(" 123 ")), json!(123));
        assert_eq!(id(json!("DEAL_123")), json!(123));
        assert_eq!(id(json!("user_5")), json!(5));
        assert_eq!(id(json!("[5] Иван Петров")), json!(5));
        assert_eq!(id(json!(["7", "8"])), json!(7));
        assert_eq!(id(json!(["", "user_8"])), json!(8));
        assert_eq!(id(json!("12, 13")), json!(12));
        assert_eq!(id(json!("C_0_14")), json!(14), "zero is not an ID");
        assert_eq!(id(json!(42)), json!(42));
        assert_eq!(id(json!(42.0)), json!(42));
    }

    #[test]
    fn no_id_is_none() {
        for v in [
            json!(""),
            json!("  "),
            json!(null),
            json!([]),
            json!("abc"),
            json!("0"),
            json!(0),
            json!(", 5"),
        ] {
            let got = b24_id(Some(&v)).unwrap();
            // ", 5": the first non-empty element is "5".
            if v == json!(", 5") {
                assert_eq!(got, json!(5));
            } else {
                assert_eq!(got, Json::Null, "{v}");
            }
        }
        assert_eq!(b24_id(None).unwrap(), Json::Null);
    }

    #[test]
    fn lists_come_from_lists_and_separated_text() {
        let list = |v: Json| b24_list(Some(&v)).unwrap();
        assert_eq!(list(json!("1, 2;3 ,, ")), json!(["1", "2", "3"]));
        assert_eq!(list(json!([" a ", "", null, "b"])), json!(["a", "b"]));
        assert_eq!(list(json!(7)), json!([7]));
        assert_eq!(list(json!("")), json!([]));
        assert_eq!(b24_list(None).unwrap(), json!([]));
    }

    #[test]
    fn fields_from_keeps_only_given_values_under_their_field_names() {
        let props = json!({"title": "New", "comments": "", "stage_id": null, "contact_ids": ["1", ""], "company_ids": [""], "other": "x"});
        let map = json!({"title": "TITLE", "comments": "COMMENTS", "stage_id": "STAGE_ID", "contact_ids": "CONTACT_IDS", "company_ids": "COMPANY_IDS", "missing": "MISSING"});
        assert_eq!(
            fields_from(Some(&props), Some(&map)).unwrap(),
            json!({"TITLE": "New", "CONTACT_IDS": ["1"]})
        );
        assert_eq!(fields_from(None, Some(&map)).unwrap(), json!({}));
        assert!(fields_from(Some(&props), Some(&json!("x"))).is_err());
    }

    #[test]
    fn compact_map_drops_empty_entries() {
        let v =
            json!({"a": 1, "b": null, "c": " ", "d": [], "e": {}, "f": false, "g": 0, "h": "x"});
        assert_eq!(
            compact_map(Some(&v)).unwrap(),
            json!({"a": 1, "f": false, "g": 0, "h": "x"})
        );
        assert_eq!(compact_map(None).unwrap(), json!({}));
        assert!(compact_map(Some(&json!([1]))).is_err());
    }

    #[test]
    fn sha256_and_digits() {
        assert_eq!(
            sha256(Some(&json!("abc"))).unwrap(),
            json!("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert_eq!(sha256(None).unwrap(), Json::Null);
        assert_eq!(
            digits(Some(&json!("+7 (926) 123-45-67"))).unwrap(),
            json!("79261234567")
        );
        assert_eq!(digits(Some(&json!(null))).unwrap(), Json::Null);
        assert!(is_digits(Some(&json!(" 123 "))));
        assert!(is_digits(Some(&json!(123))));
        assert!(!is_digits(Some(&json!("https://x/1"))));
        assert!(!is_digits(Some(&json!(""))));
        assert!(!is_digits(Some(&json!(-1))));
        assert!(!is_digits(None));
    }

    #[test]
    fn multifield_rows_are_added_only_for_new_values() {
        let rows = json!([{"ID": "1", "VALUE": "+7 (926) 123-45-67", "VALUE_TYPE": "WORK"}]);
        let add = |values: Json, kind: &str| {
            multifield_add(Some(&rows), Some(&values), Some(&json!(kind))).unwrap()
        };
        assert_eq!(
            add(
                json!(["8 926 123 45 67", "+7 900 000-00-00", "79000000000"]),
                "phone"
            ),
            json!([{"VALUE": "+7 900 000-00-00", "VALUE_TYPE": "WORK"}])
        );
        let mails = json!([{"VALUE": "Ivan@Example.ru"}]);
        assert_eq!(
            multifield_add(
                Some(&mails),
                Some(&json!("ivan@example.ru, new@x.ru")),
                Some(&json!("email"))
            )
            .unwrap(),
            json!([{"VALUE": "new@x.ru", "VALUE_TYPE": "WORK"}])
        );
        assert_eq!(
            multifield_add(
                Some(&mails),
                Some(&json!("ivan@example.ru")),
                Some(&json!("web"))
            )
            .unwrap(),
            json!([{"VALUE": "ivan@example.ru", "VALUE_TYPE": "WORK"}]),
            "other kinds compare exactly"
        );
        assert_eq!(
            multifield_add(None, Some(&json!("")), Some(&json!("phone"))).unwrap(),
            json!([])
        );
        assert_eq!(
            multifield_add(None, Some(&json!("a")), None).unwrap(),
            json!([{"VALUE": "a", "VALUE_TYPE": "WORK"}])
        );
    }
}
