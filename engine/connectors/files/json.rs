//! JSON text to `serde_json::Value`, exactly as `serde_json::from_str` does it, only cheaper.
//!
//! Two things cost `serde_json` most for records like ours: its generic deserializer machinery
//! (a visitor call per value and key), and objects built by inserting entries one by one into an
//! empty index map, which grows (and rebuilds its hash index) two or three times per record.
//!
//! [`Reader::parse`] first tries a small direct parser for the common shapes: objects, arrays,
//! strings (simple escapes included), integers, `true`, `false`, `null`. It gives up on anything
//! else (floats, `\u` escapes, errors of any kind, deep nesting) and the line goes through
//! `serde_json`'s deserializer instead, still with objects built at their final size. Either way
//! the value, key order, duplicate keys (the last value wins, at the first key's position) and
//! error messages are `serde_json`'s.

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value as Json};

/// Parses JSON documents, reusing its buffers from one to the next.
#[derive(Default)]
pub struct Reader {
    buffers: Buffers,
}

impl Reader {
    /// Parse one JSON document (white space around it allowed, like `serde_json::from_str`).
    pub fn parse(&mut self, text: &str) -> serde_json::Result<Json> {
        let mut fast = Fast {
            text,
            at: 0,
            depth: 0,
            buffers: &mut self.buffers,
        };
        if let Some(value) = fast.document() {
            return Ok(value);
        }
        let mut de = serde_json::Deserializer::from_str(text);
        let value = ValueSeed {
            buffers: &mut self.buffers,
        }
        .deserialize(&mut de)?;
        de.end()?;
        Ok(value)
    }
}

/// Entry buffers for objects being read, one per nesting level in use, reused across objects.
type Buffers = Vec<Vec<(String, Json)>>;

/// Objects are built from all their entries at once: `collect` sizes the map for all of them.
fn object(entries: &mut Vec<(String, Json)>) -> Json {
    Json::Object(entries.drain(..).collect::<Map<String, Json>>())
}

/// How many bytes at the start of `bytes` are plain string content: not `"`, `\\` or a control
/// character. Eight bytes at a time (SWAR): a byte below 0x20, or one that is zero after xor
/// with `"` or `\\`, borrows into its top bit; borrows only spread to later bytes, so the lowest
/// flagged byte is the first special one.
fn plain_len(bytes: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |v: u64, n: u64| v.wrapping_sub(ONES * n) & !v & HIGH;
    let mut i = 0;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let x = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        let special = below(x, 0x20)
            | below(x ^ (ONES * u64::from(b'"')), 1)
            | below(x ^ (ONES * u64::from(b'\\')), 1);
        if special != 0 {
            return i + (special.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    i + bytes[i..]
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .unwrap_or(bytes.len() - i)
}

/// The direct parser: `None` means "not handled here", never "invalid".
struct Fast<'t, 'b> {
    text: &'t str,
    at: usize,
    depth: usize,
    buffers: &'b mut Buffers,
}

impl Fast<'_, '_> {
    fn document(&mut self) -> Option<Json> {
        let value = self.value()?;
        self.space();
        (self.at == self.text.len()).then_some(value)
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn space(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        self.space();
        (self.peek()? == byte).then(|| self.at += 1)
    }

    fn value(&mut self) -> Option<Json> {
        self.space();
        match self.peek()? {
            b'"' => self.string().map(Json::String),
            b'{' => self.nested(Self::object),
            b'[' => self.nested(Self::array),
            b't' => self.word("true", Json::Bool(true)),
            b'f' => self.word("false", Json::Bool(false)),
            b'n' => self.word("null", Json::Null),
            b'-' | b'0'..=b'9' => self.integer(),
            _ => None,
        }
    }

    fn word(&mut self, word: &str, value: Json) -> Option<Json> {
        self.text[self.at..].starts_with(word).then(|| {
            self.at += word.len();
            value
        })
    }

    /// serde_json allows 128 levels; leave anything near that to it.
    fn nested(&mut self, f: fn(&mut Self) -> Option<Json>) -> Option<Json> {
        self.depth += 1;
        if self.depth > 100 {
            return None;
        }
        let value = f(self);
        self.depth -= 1;
        value
    }

    fn object(&mut self) -> Option<Json> {
        self.at += 1; // {
        let mut entries = self.buffers.pop().unwrap_or_default();
        let done = self.entries(&mut entries);
        let value = done.map(|()| object(&mut entries));
        entries.clear();
        self.buffers.push(entries);
        value
    }

    fn entries(&mut self, entries: &mut Vec<(String, Json)>) -> Option<()> {
        self.space();
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(());
        }
        loop {
            self.space();
            if self.peek()? != b'"' {
                return None;
            }
            let key = self.string()?;
            // serde_json's marker for a raw value: leave it to serde_json.
            if entries.is_empty() && key == "$serde_json::private::RawValue" {
                return None;
            }
            self.eat(b':')?;
            let value = self.value()?;
            entries.push((key, value));
            self.space();
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn array(&mut self) -> Option<Json> {
        self.at += 1; // [
        let mut items = Vec::new();
        self.space();
        if self.peek()? == b']' {
            self.at += 1;
            return Some(Json::Array(items));
        }
        loop {
            items.push(self.value()?);
            self.space();
            match self.peek()? {
                b',' => self.at += 1,
                b']' => {
                    self.at += 1;
                    return Some(Json::Array(items));
                }
                _ => return None,
            }
        }
    }

    /// A string at `"`: plain text and the one-letter escapes; `\u` escapes and raw control
    /// characters (an error) are left to serde_json.
    fn string(&mut self) -> Option<String> {
        self.at += 1; // "
        let bytes = self.text.as_bytes();
        let mut out: Option<String> = None;
        loop {
            let start = self.at;
            self.at += plain_len(&bytes[start..]);
            // Both ends are ASCII bytes, so this is a whole piece of the UTF-8 text.
            let piece = &self.text[start..self.at];
            match *bytes.get(self.at)? {
                b'"' => {
                    self.at += 1;
                    return Some(match out {
                        Some(mut s) => {
                            s.push_str(piece);
                            s
                        }
                        None => piece.to_string(),
                    });
                }
                b'\\' => {
                    let s = out.get_or_insert_with(String::new);
                    s.push_str(piece);
                    s.push(match *bytes.get(self.at + 1)? {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        _ => return None,
                    });
                    self.at += 2;
                }
                _ => return None,
            }
        }
    }

    /// Integers that serde_json keeps as integers: `0`, or no leading zero, within u64 (or down
    /// to i64::MIN), and not followed by a fraction or exponent. `-0` is a float there.
    fn integer(&mut self) -> Option<Json> {
        let negative = self.peek()? == b'-';
        let start = self.at + usize::from(negative);
        let bytes = self.text.as_bytes();
        let digits = bytes[start..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let end = start + digits;
        if digits == 0
            || (digits > 1 && bytes[start] == b'0')
            || matches!(bytes.get(end), Some(b'.' | b'e' | b'E'))
        {
            return None;
        }
        let magnitude: u64 = self.text[start..end].parse().ok()?;
        self.at = end;
        match negative {
            false => Some(Json::from(magnitude)),
            true if magnitude == 0 || magnitude > 1 << 63 => None,
            true => Some(Json::from((magnitude as i64).wrapping_neg())),
        }
    }
}

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
        let value = object(&mut entries);
        self.buffers.push(entries);
        result.map(|()| value)
    }
}

/// Append `value` as compact JSON, byte for byte what `serde_json::to_writer` writes (strings
/// are copied in runs between the bytes that need escaping, found as in reading).
pub fn write(out: &mut Vec<u8>, value: &Json) {
    match value {
        Json::Null => out.extend_from_slice(b"null"),
        Json::Bool(true) => out.extend_from_slice(b"true"),
        Json::Bool(false) => out.extend_from_slice(b"false"),
        Json::Number(n) => serde_json::to_writer(&mut *out, n).expect("writing to a Vec"),
        Json::String(s) => write_str(out, s),
        Json::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(out, item);
            }
            out.push(b']');
        }
        Json::Object(map) => {
            out.push(b'{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, k);
                out.push(b':');
                write(out, v);
            }
            out.push(b'}');
        }
    }
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let mut rest = s.as_bytes();
    loop {
        let plain = plain_len(rest);
        out.extend_from_slice(&rest[..plain]);
        let Some(&b) = rest.get(plain) else { break };
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x08 => b'b',
            0x0c => b'f',
            _ => 0,
        };
        if short == 0 {
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
        } else {
            out.extend_from_slice(&[b'\\', short]);
        }
        rest = &rest[plain + 1..];
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_len_finds_the_first_special_byte() {
        for b in 0u8..=255 {
            // 21 bytes: two full words and a tail
            for at in 0..21 {
                let mut text = vec![b'a'; 21];
                text[at] = b;
                let special = b == b'"' || b == b'\\' || b < 0x20;
                assert_eq!(
                    plain_len(&text),
                    if special { at } else { 21 },
                    "byte {b} at {at}"
                );
                // a later special byte does not hide an earlier one
                text[(at + 3).min(20)] = b'"';
                let first = if special { at } else { (at + 3).min(20) };
                assert_eq!(plain_len(&text), first, "byte {b} at {at}, quote after");
            }
        }
    }

    #[test]
    fn writes_what_serde_json_writes() {
        let values = [
            serde_json::json!({"a": [1, -2, 1.5, 1e300, -0.0, 18446744073709551615u64, null, true, false], "b": {}, "c": []}),
            Json::String((0u8..128).map(char::from).collect()),
            serde_json::json!("Иван \"Петров\" \\ 😀\u{7f}\u{80}\u{2028}"),
            serde_json::json!([
                "",
                "x",
                "12345678",
                "1234567\"",
                "\"1234567",
                "abcdefgh\u{1}ijklmnop",
                "ключ\tзначение"
            ]),
            serde_json::json!({"ключ\n": "значение", "": ""}),
            serde_json::json!(0.1),
        ];
        for v in &values {
            let mut ours = Vec::new();
            write(&mut ours, v);
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string(v).unwrap()
            );
        }
        for b in 0u8..128 {
            for at in 0..10 {
                let s: String = "abcdefghij"
                    .chars()
                    .take(at)
                    .chain([char::from(b)])
                    .chain("klmnopqrstu".chars())
                    .collect();
                let mut ours = Vec::new();
                write(&mut ours, &Json::String(s.clone()));
                assert_eq!(
                    String::from_utf8(ours).unwrap(),
                    serde_json::to_string(&s).unwrap(),
                    "byte {b} at {at}"
                );
            }
        }
    }

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
            &format!("{}1{}", "[".repeat(100), "]".repeat(100)),
            // integers at the edges, and what serde_json makes floats of
            "[0, -1, 9223372036854775807, 9223372036854775808, 18446744073709551615, 18446744073709551616]",
            "[-9223372036854775808, -9223372036854775809, -0, 0.0, 1e2, 1E2, -0.5, 12.50]",
            "[01]",
            "[-]",
            "[1.]",
            "[- 1]",
            "[+1]",
            "[1,]",
            "[,1]",
            "[] []",
            "[1 2]",
            "{\"a\":}",
            "{\"a\" :1 , \"b\" : [ ] }",
            // strings and escapes
            r#"["a\"b", "c\\d", "e\/f", "\b\f\n\r\t", "\u0041\u00e9", "\ud83d\ude00", "\x", "\u12", "tab\there"]"#,
            "[\"raw\ttab\"]",
            "[\"raw\u{1}control\"]",
            "[\"unterminated]",
            "{\"a\": \"b\"",
            "{1: 2}",
            "{\"a\": tru}",
            "[true, false, null, nul]",
            " \t\r\n{\"x\" : [ true , false , null ] }\n ",
            r#"{"a": {"b": 1}, "$serde_json::private::RawValue": "[1]", "a": {"c": 2}}"#,
        ];
        let mut reader = Reader::default();
        // The usual record takes the direct path.
        let record = r#"{"ID": "1", "NAME": "Олег", "PHONE": [{"ID": "1", "VALUE": "8 (926) 237-82-18"}], "PRODUCTS": [404, 410], "X": {"a\"b": [true, null, -5]}}"#;
        let mut fast = Fast {
            text: record,
            at: 0,
            depth: 0,
            buffers: &mut reader.buffers,
        };
        assert!(fast.document().is_some());
        for text in texts {
            let ours = reader.parse(text).map_err(|e| e.to_string());
            let theirs = serde_json::from_str::<Json>(text).map_err(|e| e.to_string());
            assert_eq!(ours, theirs, "{text}");
            if let (Ok(a), Ok(b)) = (&ours, &theirs) {
                assert_eq!(a.to_string(), b.to_string(), "key order of {text}");
            }
        }
    }
}
