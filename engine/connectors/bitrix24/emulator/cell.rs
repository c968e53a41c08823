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
    /// Anything else: floats, arrays, objects.
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
    if b.len() != 25 || b[10] != b'T' || !(b[19] == b'+' || b[19] == b'-') {
        return None;
    }
    let h: i32 = s.get(20..22)?.parse().ok()?;
    let m: i32 = s.get(23..25)?.parse().ok()?;
    let off = (h * 3600 + m * 60) * if b[19] == b'-' { -1 } else { 1 };
    let ts = parse_datetime(s, 0)?;
    (format_ts(ts, off) == s).then_some((ts, off))
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
            other => Cell::Json(Box::new(other)),
        }
    }

    pub fn from_opt(v: Option<Value>) -> Cell {
        v.map_or(Cell::Absent, Cell::from_value)
    }

    pub fn from_string(s: String) -> Cell {
        if let Some(n) = canonical_int(&s) {
            return Cell::IntStr(n);
        }
        if let Some((ts, off)) = canonical_date(&s) {
            return Cell::Date { ts, off };
        }
        if s.len() <= INLINE {
            let mut buf = [0u8; INLINE];
            buf[..s.len()].copy_from_slice(s.as_bytes());
            return Cell::Small {
                len: s.len() as u8,
                buf,
            };
        }
        Cell::Str(s.into_boxed_str())
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

/// A scalar seen by filters and ordering: a stored cell or an element of an array value.
#[derive(Clone, Copy, Debug)]
pub enum Scalar<'a> {
    C(&'a Cell),
    V(&'a Value),
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
            Scalar::C(_) => false,
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
                Cell::Absent | Cell::Null => Cow::Borrowed(""),
                Cell::Bool(true) => Cow::Borrowed("Y"),
                Cell::Bool(false) => Cow::Borrowed("N"),
                Cell::Int(i) | Cell::IntStr(i) => Cow::Owned(i.to_string()),
                Cell::Date { ts, off } => Cow::Owned(format_ts(*ts, *off)),
                Cell::Small { .. } | Cell::Str(_) => Cow::Borrowed(c.as_str().unwrap_or_default()),
                Cell::Json(v) => Scalar::V(v).text(),
            },
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
            Scalar::C(Cell::Int(i) | Cell::IntStr(i)) => Some(*i as f64),
            Scalar::C(Cell::Json(v)) => Scalar::V(v).num(),
            Scalar::C(c @ (Cell::Small { .. } | Cell::Str(_))) => c.as_str()?.trim().parse().ok(),
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
            _ => None,
        }
    }

    /// Elements if this is an array (multiple field / multi-field).
    pub fn array(&self) -> Option<&'a [Value]> {
        match *self {
            Scalar::C(Cell::Json(v)) => v.as_array().map(Vec::as_slice),
            Scalar::V(Value::Array(a)) => Some(a.as_slice()),
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
        ] {
            assert_eq!(Cell::from_value(v.clone()).to_value(), Some(v));
        }
        assert!(matches!(Cell::from_value(json!("42")), Cell::IntStr(42)));
        assert!(matches!(
            Cell::from_value(json!("2024-06-01T10:00:00+03:00")),
            Cell::Date { .. }
        ));
        assert!(matches!(Cell::from_value(json!("Y")), Cell::Small { .. }));
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
