//! Compact storage of one field value (24 bytes, mostly without a heap allocation).
//!
//! B24 rows are dominated by short strings: string IDs (`"39910"`), flags (`"Y"`), and
//! datetimes (`"2024-06-01T10:00:00+03:00"`). Those are kept as integers, instants or inline
//! bytes and turned back into the exact same JSON on output, which cuts a million-row table to
//! a fraction of what `serde_json::Value` cells take and makes date filters parse-free.

use super::dates::{format_ts, parse_datetime};
use serde_json::Value;
use std::borrow::Cow;

const INLINE: usize = 22;

/// One stored field.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    /// The row has no value for this column.
    Absent,
    Null,
    Bool(bool),
    /// A JSON integer.
    Int(i64),
    /// A string holding a canonical decimal integer (`"42"`).
    IntStr(i64),
    /// A string holding a canonical `YYYY-MM-DDTHH:MM:SS±HH:MM` datetime.
    Date {
        ts: i64,
        off: i32,
    },
    /// A short string, inline.
    Small {
        len: u8,
        buf: [u8; INLINE],
    },
    Str(Box<str>),
    /// A non-empty array of JSON integers (enumeration UFs, UF_DEPARTMENT).
    IntList(Box<[i64]>),
    /// A non-empty multi-field array in the canonical B24 shape.
    Multi(Box<[MultiItem]>),
    /// Anything else: floats, other arrays, objects.
    Json(Box<Value>),
}

fn canonical_int(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let digits = b.strip_prefix(b"-").unwrap_or(b);
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if (digits[0] == b'0' && digits.len() > 1) || (digits == b"0" && b.len() > 1) {
        return None;
    }
    s.parse().ok()
}

fn canonical_date(s: &str) -> Option<(i64, i32)> {
    let b = s.as_bytes();
    if b.len() != 25
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[22] != b':'
    {
        return None;
    }
    if !(b[19] == b'+' || b[19] == b'-') {
        return None;
    }
    let n = |r: std::ops::Range<usize>| -> Option<i64> {
        b[r.clone()]
            .iter()
            .all(u8::is_ascii_digit)
            .then(|| b[r].iter().fold(0i64, |a, c| a * 10 + (c - b'0') as i64))
    };
    let (y, mo, d, h, mi, se) = (
        n(0..4)?,
        n(5..7)?,
        n(8..10)?,
        n(11..13)?,
        n(14..16)?,
        n(17..19)?,
    );
    let (oh, om) = (n(20..22)?, n(23..25)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let dim = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&mo)
        || d < 1
        || d > dim[(mo - 1) as usize]
        || h > 23
        || mi > 59
        || se > 59
        || om > 59
    {
        return None;
    }
    let off = ((oh * 3600 + om * 60) * if b[19] == b'-' { -1 } else { 1 }) as i32;
    if b[19] == b'-' && off == 0 {
        return None; // "-00:00" would print back as "+00:00"
    }
    let ts =
        super::dates::days_from_civil(y, mo as u32, d as u32) * 86_400 + h * 3600 + mi * 60 + se
            - off as i64;
    Some((ts, off))
}

/// Value types of multi-field rows that are stored compactly.
const VALUE_TYPES: [&str; 21] = [
    "WORK",
    "MOBILE",
    "FAX",
    "HOME",
    "PAGER",
    "MAILING",
    "OTHER",
    "FACEBOOK",
    "VK",
    "LIVEJOURNAL",
    "TWITTER",
    "TELEGRAM",
    "SKYPE",
    "VIBER",
    "INSTAGRAM",
    "BITRIX24",
    "OPENLINE",
    "IMOL",
    "ICQ",
    "MSN",
    "JABBER",
];
const TYPE_IDS: [&str; 5] = ["PHONE", "EMAIL", "WEB", "IM", "LINK"];

/// One `{ID, VALUE_TYPE, VALUE, TYPE_ID}` element of a multi-field, compact.
#[derive(Clone, Debug, PartialEq)]
pub struct MultiItem {
    pub id: i64,
    pub value: Box<str>,
    value_type: u8,
    type_id: u8,
}

impl MultiItem {
    /// None if `value_type`/`type_id` are not standard B24 codes.
    pub fn new(id: i64, value_type: &str, value: &str, type_id: &str) -> Option<MultiItem> {
        Some(MultiItem {
            id,
            value: value.into(),
            value_type: VALUE_TYPES.iter().position(|t| *t == value_type)? as u8,
            type_id: TYPE_IDS.iter().position(|t| *t == type_id)? as u8,
        })
    }

    fn from_value(v: &Value) -> Option<MultiItem> {
        let o = v.as_object()?;
        let keys: Vec<&str> = o.keys().map(String::as_str).collect();
        if keys != ["ID", "VALUE_TYPE", "VALUE", "TYPE_ID"] {
            return None;
        }
        let id = canonical_int(o["ID"].as_str()?)?;
        let value_type = VALUE_TYPES
            .iter()
            .position(|t| Some(*t) == o["VALUE_TYPE"].as_str())? as u8;
        let type_id = TYPE_IDS
            .iter()
            .position(|t| Some(*t) == o["TYPE_ID"].as_str())? as u8;
        Some(MultiItem {
            id,
            value: o["VALUE"].as_str()?.into(),
            value_type,
            type_id,
        })
    }

    fn to_value(&self) -> Value {
        let mut m = serde_json::Map::with_capacity(4);
        m.insert("ID".into(), Value::String(self.id.to_string()));
        m.insert(
            "VALUE_TYPE".into(),
            Value::String(VALUE_TYPES[self.value_type as usize].into()),
        );
        m.insert("VALUE".into(), Value::String(self.value.to_string()));
        m.insert(
            "TYPE_ID".into(),
            Value::String(TYPE_IDS[self.type_id as usize].into()),
        );
        Value::Object(m)
    }
}

impl Cell {
    pub fn from_value(v: Value) -> Cell {
        match v {
            Value::Null => Cell::Null,
            Value::Bool(b) => Cell::Bool(b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Cell::Int(i),
                None => Cell::Json(Box::new(Value::Number(n))),
            },
            Value::String(s) => Cell::from_string(s),
            Value::Array(a)
                if !a.is_empty() && a.iter().all(|x| x.as_i64().is_some() && x.is_i64()) =>
            {
                Cell::IntList(a.iter().filter_map(Value::as_i64).collect())
            }
            Value::Array(a) if !a.is_empty() => match a
                .iter()
                .map(MultiItem::from_value)
                .collect::<Option<Box<[MultiItem]>>>()
            {
                Some(items) => Cell::Multi(items),
                None => Cell::Json(Box::new(Value::Array(a))),
            },
            other => Cell::Json(Box::new(other)),
        }
    }

    pub fn from_opt(v: Option<Value>) -> Cell {
        v.map_or(Cell::Absent, Cell::from_value)
    }

    pub fn from_string(s: String) -> Cell {
        match Cell::compact(&s) {
            Some(c) => c,
            None => Cell::Str(s.into_boxed_str()),
        }
    }

    /// A string value without an intermediate `String` when it fits inline.
    pub fn text(s: &str) -> Cell {
        Cell::compact(s).unwrap_or_else(|| Cell::Str(s.into()))
    }

    fn compact(s: &str) -> Option<Cell> {
        if let Some(n) = canonical_int(s) {
            return Some(Cell::IntStr(n));
        }
        if let Some((ts, off)) = canonical_date(s) {
            return Some(Cell::Date { ts, off });
        }
        if s.len() <= INLINE {
            let mut buf = [0u8; INLINE];
            buf[..s.len()].copy_from_slice(s.as_bytes());
            return Some(Cell::Small {
                len: s.len() as u8,
                buf,
            });
        }
        None
    }

    pub fn is_absent(&self) -> bool {
        matches!(self, Cell::Absent)
    }

    /// The JSON value (None if absent).
    pub fn to_value(&self) -> Option<Value> {
        Some(match self {
            Cell::Absent => return None,
            Cell::Null => Value::Null,
            Cell::Bool(b) => Value::Bool(*b),
            Cell::Int(i) => Value::from(*i),
            Cell::IntStr(i) => Value::String(i.to_string()),
            Cell::Date { ts, off } => Value::String(format_ts(*ts, *off)),
            Cell::Small { .. } | Cell::Str(_) => {
                Value::String(self.as_str().unwrap_or_default().to_string())
            }
            Cell::IntList(a) => Value::Array(a.iter().map(|i| Value::from(*i)).collect()),
            Cell::Multi(items) => Value::Array(items.iter().map(MultiItem::to_value).collect()),
            Cell::Json(v) => (**v).clone(),
        })
    }

    /// Borrowed text of a string cell.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Cell::Small { len, buf } => std::str::from_utf8(&buf[..*len as usize]).ok(),
            Cell::Str(s) => Some(s),
            Cell::Json(v) => v.as_str(),
            _ => None,
        }
    }
}

/// A scalar seen by filters and ordering: a stored cell, a JSON value, or an element of a
/// compact array (an integer or a multi-field VALUE).
#[derive(Clone, Copy, Debug)]
pub enum Scalar<'a> {
    C(&'a Cell),
    V(&'a Value),
    I(i64),
    S(&'a str),
}

/// Elements of an array value; multi-field objects yield their `VALUE`.
pub enum Elems<'a> {
    Json(std::slice::Iter<'a, Value>),
    Ints(std::slice::Iter<'a, i64>),
    Multi(std::slice::Iter<'a, MultiItem>),
}

impl<'a> Iterator for Elems<'a> {
    type Item = Scalar<'a>;
    fn next(&mut self) -> Option<Scalar<'a>> {
        match self {
            Elems::Json(it) => it.next().map(|v| match v {
                Value::Object(o) => o.get("VALUE").map_or(Scalar::V(&Value::Null), Scalar::V),
                other => Scalar::V(other),
            }),
            Elems::Ints(it) => it.next().map(|i| Scalar::I(*i)),
            Elems::Multi(it) => it.next().map(|m| Scalar::S(&m.value)),
        }
    }
}

impl<'a> Scalar<'a> {
    pub fn is_null(&self) -> bool {
        matches!(
            self,
            Scalar::C(Cell::Absent | Cell::Null) | Scalar::V(Value::Null)
        )
    }

    /// null, "", [] and false count as empty (`filter[FIELD]=""`).
    pub fn is_empty(&self) -> bool {
        match self {
            Scalar::C(Cell::Absent | Cell::Null | Cell::Bool(false)) => true,
            Scalar::C(Cell::Small { len, .. }) => *len == 0,
            Scalar::C(Cell::Json(v)) => Scalar::V(v).is_empty(),
            Scalar::C(_) | Scalar::I(_) => false,
            Scalar::S(s) => s.is_empty(),
            Scalar::V(Value::Null | Value::Bool(false)) => true,
            Scalar::V(Value::String(s)) => s.is_empty(),
            Scalar::V(Value::Array(a)) => a.is_empty(),
            Scalar::V(_) => false,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Scalar::C(Cell::Bool(b)) | Scalar::V(Value::Bool(b)) => Some(*b),
            Scalar::C(Cell::Json(v)) => v.as_bool(),
            _ => None,
        }
    }

    /// Text as PHP would print it (booleans as Y/N, B24 style).
    pub fn text(&self) -> Cow<'a, str> {
        match *self {
            Scalar::C(c) => match c {
                Cell::Absent | Cell::Null | Cell::IntList(_) | Cell::Multi(_) => Cow::Borrowed(""),
                Cell::Bool(true) => Cow::Borrowed("Y"),
                Cell::Bool(false) => Cow::Borrowed("N"),
                Cell::Int(i) | Cell::IntStr(i) => Cow::Owned(i.to_string()),
                Cell::Date { ts, off } => Cow::Owned(format_ts(*ts, *off)),
                Cell::Small { .. } | Cell::Str(_) => Cow::Borrowed(c.as_str().unwrap_or_default()),
                Cell::Json(v) => Scalar::V(v).text(),
            },
            Scalar::I(i) => Cow::Owned(i.to_string()),
            Scalar::S(s) => Cow::Borrowed(s),
            Scalar::V(v) => match v {
                Value::String(s) => Cow::Borrowed(s),
                Value::Bool(true) => Cow::Borrowed("Y"),
                Value::Bool(false) => Cow::Borrowed("N"),
                Value::Number(n) => Cow::Owned(n.to_string()),
                _ => Cow::Borrowed(""),
            },
        }
    }

    pub fn num(&self) -> Option<f64> {
        match self {
            Scalar::C(Cell::Int(i) | Cell::IntStr(i)) | Scalar::I(i) => Some(*i as f64),
            Scalar::C(Cell::Json(v)) => Scalar::V(v).num(),
            Scalar::C(c @ (Cell::Small { .. } | Cell::Str(_))) => c.as_str()?.trim().parse().ok(),
            Scalar::S(s) => s.trim().parse().ok(),
            Scalar::V(Value::Number(n)) => n.as_f64(),
            Scalar::V(Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// Unix seconds of a datetime value.
    pub fn ts(&self) -> Option<i64> {
        match self {
            Scalar::C(Cell::Date { ts, .. }) => Some(*ts),
            Scalar::C(c @ (Cell::Small { .. } | Cell::Str(_))) => {
                parse_datetime(c.as_str()?, super::dates::DEFAULT_OFFSET_SECS)
            }
            Scalar::C(Cell::Json(v)) => Scalar::V(v).ts(),
            Scalar::V(Value::String(s)) => parse_datetime(s, super::dates::DEFAULT_OFFSET_SECS),
            Scalar::S(s) => parse_datetime(s, super::dates::DEFAULT_OFFSET_SECS),
            _ => None,
        }
    }

    /// Elements if this is an array (multiple field / multi-field).
    pub fn elems(&self) -> Option<Elems<'a>> {
        match *self {
            Scalar::C(Cell::IntList(a)) => Some(Elems::Ints(a.iter())),
            Scalar::C(Cell::Multi(a)) => Some(Elems::Multi(a.iter())),
            Scalar::C(Cell::Json(v)) => v.as_array().map(|a| Elems::Json(a.iter())),
            Scalar::V(Value::Array(a)) => Some(Elems::Json(a.iter())),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_exactly() {
        assert_eq!(std::mem::size_of::<Cell>(), 24);
        for v in [
            json!("39910"),
            json!("0"),
            json!("007"),
            json!("-5"),
            json!("+5"),
            json!(""),
            json!("Y"),
            json!("2024-06-01T10:00:00+03:00"),
            json!("2024-06-01T10:00:00-05:30"),
            json!("2024-06-01T10:00:00Z"),
            json!("2024-13-01T10:00:00+03:00"),
            json!("Очень длинная строка, больше двадцати двух байт"),
            json!(12),
            json!(1.5),
            json!(true),
            json!(null),
            json!([48, 12708]),
            json!({"a": 1}),
            json!("99999999999999999999"),
            json!("2024-02-30T10:00:00+03:00"),
            json!("2024-06-01T10:00:00-00:00"),
            json!([]),
            json!([1, 2.5]),
            json!([{"ID": "5", "VALUE_TYPE": "WORK", "VALUE": "+7 926", "TYPE_ID": "PHONE"}]),
            json!([{"VALUE_TYPE": "WORK", "ID": "5", "VALUE": "+7 926", "TYPE_ID": "PHONE"}]),
            json!([{"ID": "5", "VALUE_TYPE": "CUSTOM", "VALUE": "x", "TYPE_ID": "PHONE"}]),
        ] {
            assert_eq!(Cell::from_value(v.clone()).to_value(), Some(v));
        }
        assert!(matches!(Cell::from_value(json!("42")), Cell::IntStr(42)));
        assert!(matches!(
            Cell::from_value(json!("2024-06-01T10:00:00+03:00")),
            Cell::Date { .. }
        ));
        assert!(matches!(Cell::from_value(json!("Y")), Cell::Small { .. }));
        assert!(matches!(
            Cell::from_value(json!([48, 12708])),
            Cell::IntList(_)
        ));
        let m = Cell::from_value(
            json!([{"ID": "5", "VALUE_TYPE": "WORK", "VALUE": "+7 926", "TYPE_ID": "PHONE"}]),
        );
        assert!(matches!(m, Cell::Multi(_)));
        assert_eq!(
            Scalar::C(&m)
                .elems()
                .unwrap()
                .map(|e| e.text().into_owned())
                .collect::<Vec<_>>(),
            vec!["+7 926"]
        );
        let c = Cell::from_value(json!("2024-06-01T10:00:00+03:00"));
        assert_eq!(Scalar::C(&c).ts(), Some(1_717_225_200));
        assert_eq!(
            Scalar::C(&Cell::from_value(json!("12.50"))).num(),
            Some(12.5)
        );
        assert!(
            Scalar::C(&Cell::Absent).is_empty()
                && Scalar::C(&Cell::from_value(json!(""))).is_empty()
        );
    }
}
