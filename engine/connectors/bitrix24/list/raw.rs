//! Rows kept as the text they came in. A list read looks into a row for two fields at most
//! (its ID, and its DATE_MODIFY when incremental); the rest is parsed once, when the row is
//! delivered, on every core. Building a JSON tree per row as the answers come, and printing
//! it again to hold it, was most of the reading thread's work.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value as Json;
use serde_json::value::RawValue;

use crate::runtime::parallel;

/// A row as the portal sent it.
pub(super) type RawRow = Box<RawValue>;

/// The rows of a page: the page itself, or its `items` (crm.item.list); none when it is
/// neither a list nor holds one.
pub(super) fn rows_in(page: &RawValue, items: Option<&str>) -> Vec<RawRow> {
    let list = match items {
        None => Some(page),
        Some(key) => serde_json::from_str::<std::collections::HashMap<&str, &RawValue>>(page.get())
            .ok()
            .and_then(|m| m.get(key).copied()),
    };
    list.and_then(|l| serde_json::from_str(l.get()).ok())
        .unwrap_or_default()
}

/// The values of these fields of a row (null where absent), the others skipped unread.
pub(super) fn pick<const N: usize>(row: &RawValue, names: [&str; N]) -> [Json; N] {
    let mut de = serde_json::Deserializer::from_str(row.get());
    Pick(names)
        .deserialize(&mut de)
        .unwrap_or_else(|_| std::array::from_fn(|_| Json::Null))
}

/// Rows parsed, on every core.
pub(super) fn parse_all(rows: &[RawRow]) -> Vec<Json> {
    parallel::map(rows, |r| parse(r))
}

/// A row parsed: it was read as valid JSON, so this cannot fail.
pub(super) fn parse(row: &RawValue) -> Json {
    serde_json::from_str(row.get()).expect("a raw row is JSON")
}

struct Pick<'n, const N: usize>([&'n str; N]);

impl<'de, const N: usize> DeserializeSeed<'de> for Pick<'_, N> {
    type Value = [Json; N];
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, const N: usize> Visitor<'de> for Pick<'_, N> {
    type Value = [Json; N];
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a row (a JSON object)")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = std::array::from_fn(|_| Json::Null);
        while let Some(found) = map.next_key_seed(Which(&self.0))? {
            match found {
                Some(i) => out[i] = map.next_value()?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(out)
    }
}

/// Which of the names a key is, read without allocating (escaped keys included).
struct Which<'a, 'n>(&'a [&'n str]);

impl<'de> DeserializeSeed<'de> for Which<'_, '_> {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Which<'_, '_> {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().position(|n| *n == key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn raw(v: Json) -> RawRow {
        RawValue::from_string(v.to_string()).unwrap()
    }

    #[test]
    fn pick_reads_the_named_fields_and_skips_the_rest() {
        let row = raw(
            json!({"NAME": {"deep": [1, 2]}, "ID": "17", "DATE_MODIFY": "2024-01-01T00:00:00+03:00"}),
        );
        assert_eq!(
            pick(&row, ["DATE_MODIFY", "ID"]),
            [json!("2024-01-01T00:00:00+03:00"), json!("17")]
        );
        assert_eq!(pick(&row, ["MISSING"]), [Json::Null]);
        // An escaped key is still recognised.
        let escaped = RawValue::from_string(r#"{"\u0049D": 5}"#.into()).unwrap();
        assert_eq!(pick(&escaped, ["ID"]), [json!(5)]);
    }

    #[test]
    fn rows_of_a_page_or_of_its_items() {
        let page = raw(json!([{"ID": "1"}, {"ID": "2"}]));
        let rows = rows_in(&page, None);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].get(), r#"{"ID":"2"}"#);
        let items = raw(json!({"items": [{"id": 1}]}));
        assert_eq!(rows_in(&items, Some("items")).len(), 1);
        assert!(rows_in(&raw(json!([])), Some("items")).is_empty());
        assert_eq!(parse_all(&rows), [json!({"ID": "1"}), json!({"ID": "2"})]);
    }
}
