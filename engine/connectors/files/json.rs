//! JSON text to `serde_json::Value`, as `serde_json::from_str` does it, only cheaper.
//!
//! `serde_json` inserts an object's entries one by one into an empty map, which grows
//! (and rehashes its index) two or three times for a typical record. Here an object's entries
//! are first collected in a reused buffer and the map is then built with the right capacity; the
//! result, duplicate keys included (the last value wins, at the first key's position), and the
//! errors are `serde_json`'s.

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value as Json};

/// Parse one JSON document (trailing white space allowed, like `serde_json::from_str`).
pub fn from_str(text: &str) -> serde_json::Result<Json> {
    let mut buffers = Vec::new();
    let mut de = serde_json::Deserializer::from_str(text);
    let value = ValueSeed {
        buffers: &mut buffers,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// Entry buffers for objects being read, one per nesting level in use, reused across objects.
type Buffers = Vec<Vec<(String, Json)>>;

struct ValueSeed<'b> {
    buffers: &'b mut Buffers,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Json;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Json, D::Error> {
        d.deserialize_any(self)
    }
}

/// The same values as `serde_json::Value`'s own visitor.
impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Json, E> {
        Ok(Number::from_f64(v).map_or(Json::Null, Json::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }

    fn visit_none<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(ValueSeed {
            buffers: &mut *self.buffers,
        })? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let Some(first) = map.next_key::<String>()? else {
            return Ok(Json::Object(Map::new()));
        };
        // serde_json's marker for a raw value: the value is JSON text to parse.
        if first == "$serde_json::private::RawValue" {
            let raw: String = map.next_value()?;
            return serde_json::from_str(&raw).map_err(de::Error::custom);
        }
        let mut entries = self.buffers.pop().unwrap_or_default();
        let value = map.next_value_seed(ValueSeed {
            buffers: &mut *self.buffers,
        });
        let mut result = value.map(|v| entries.push((first, v)));
        while result.is_ok() {
            match map.next_key::<String>() {
                Ok(Some(key)) => {
                    result = map
                        .next_value_seed(ValueSeed {
                            buffers: &mut *self.buffers,
                        })
                        .map(|v| entries.push((key, v)))
                }
                Ok(None) => break,
                Err(e) => result = Err(e),
            }
        }
        // `collect` sizes the map for all entries at once.
        let object: Map<String, Json> = entries.drain(..).collect();
        self.buffers.push(entries);
        result.map(|()| Json::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_values_and_errors_as_serde_json() {
        let texts = [
            r#"{"ID": "1", "NAME": "Иван", "PHONE": [{"VALUE": "8 926", "TYPE": "WORK"}], "N": [404, -1, 1.5, 1e400]}"#,
            r#"{"a": 1, "b": {"c": {"d": [[], {}, [{}]]}}, "a": 2, "e": null, "f": true}"#,
            r#"{"big": 18446744073709551615, "neg": -9223372036854775808, "esc": "a\"\\\/\u00e9\ud83d\ude00"}"#,
            r#"[1, "two", {"three": 3}]"#,
            r#"  "text"  "#,
            "12",
            "{}",
            r#"{"$serde_json::private::RawValue": "[1, 2]"}"#,
            r#"{"a": 1,}"#,
            r#"{"a": 1} x"#,
            r#"{"a": [1, 2}"#,
            r#"{"a" 1}"#,
            r#"{"a": "\ud800"}"#,
            "",
            &format!("{}1{}", "[".repeat(200), "]".repeat(200)),
        ];
        for text in texts {
            let ours = from_str(text).map_err(|e| e.to_string());
            let theirs = serde_json::from_str::<Json>(text).map_err(|e| e.to_string());
            assert_eq!(ours, theirs, "{text}");
            if let (Ok(a), Ok(b)) = (&ours, &theirs) {
                assert_eq!(a.to_string(), b.to_string(), "key order of {text}");
            }
        }
    }
}
