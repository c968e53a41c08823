//! Records <-> polars columns. Inputs are read into typed columns batch by batch (the JSON of a
//! batch is dropped as soon as its values are in the columns); output tables go back to records
//! a slice at a time.
//!
//! Values are read leniently, the way Bitrix24 writes them: IDs and numbers as strings, `Y`/`N`
//! booleans, ISO date-times with the portal's offset (kept as the wall-clock time written),
//! `[]`/`false`/`""` for empty. A value that cannot be read becomes null and is counted.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime};
use indexmap::IndexMap;
use polars::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};
use serde_json::Value as Json;

use super::expr::datetime_type;
use crate::syntax::de::{capture_node, from_node};
use crate::syntax::session;

/// The type of an input column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema)]
pub enum ColumnType {
    /// Text.
    #[serde(rename = "str")]
    Str,
    /// A whole number (`"37"` and `37` alike).
    #[serde(rename = "int")]
    Int,
    /// A number with decimals (`"19999.99"`).
    #[serde(rename = "float")]
    Float,
    /// `Y`/`N`, `true`/`false`, `1`/`0`.
    #[serde(rename = "bool")]
    Bool,
    /// A calendar date (`2024-08-15`, or the date part of a date-time as written).
    #[serde(rename = "date")]
    Date,
    /// A date-time; ISO 8601 with an offset is kept as the wall-clock time written.
    #[serde(rename = "datetime")]
    Datetime,
    /// A list of whole numbers (`UF_DEPARTMENT: [1, 5]`, `COMPANY_IDS: ["3"]`).
    #[serde(rename = "list[int]")]
    ListInt,
    /// A list of texts.
    #[serde(rename = "list[str]")]
    ListStr,
}

impl ColumnType {
    pub fn dtype(self) -> DataType {
        match self {
            ColumnType::Str => DataType::String,
            ColumnType::Int => DataType::Int64,
            ColumnType::Float => DataType::Float64,
            ColumnType::Bool => DataType::Boolean,
            ColumnType::Date => DataType::Date,
            ColumnType::Datetime => datetime_type(),
            ColumnType::ListInt => DataType::List(Box::new(DataType::Int64)),
            ColumnType::ListStr => DataType::List(Box::new(DataType::String)),
        }
    }
}

/// One declared column: a type, or `{type, from}` to read it from another field.
#[derive(Clone, Debug, JsonSchema)]
#[schemars(untagged)]
pub enum ColumnSpec {
    Type(ColumnType),
    Full(ColumnFull),
}

#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ColumnFull {
    #[serde(rename = "type")]
    pub kind: ColumnType,
    /// The record field to read (`companyIds`, or a dotted path `fm.EMAIL`); default: the column's name.
    #[serde(default)]
    pub from: Option<String>,
}

impl<'de> Deserialize<'de> for ColumnSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let node = capture_node(d)?;
        let result = if node.as_map().is_some() {
            from_node::<ColumnFull>(&node).map(ColumnSpec::Full)
        } else {
            from_node::<ColumnType>(&node).map(ColumnSpec::Type)
        };
        result.map_err(|diag| {
            session::report(diag);
            serde::de::Error::custom("invalid column")
        })
    }
}

impl ColumnSpec {
    pub fn kind(&self) -> ColumnType {
        match self {
            ColumnSpec::Type(t) => *t,
            ColumnSpec::Full(f) => f.kind,
        }
    }
}

/// A column being filled.
enum Builder {
    Str(StringChunkedBuilder),
    Int(Vec<Option<i64>>),
    Float(Vec<Option<f64>>),
    Bool(Vec<Option<bool>>),
    Date(Vec<Option<i32>>),
    Datetime(Vec<Option<i64>>),
    ListInt(ListPrimitiveChunkedBuilder<Int64Type>),
    ListStr(ListStringChunkedBuilder),
}

struct ColumnIn {
    name: String,
    from: Vec<String>,
    kind: ColumnType,
    builder: Builder,
    bad: usize,
    first_bad: Option<String>,
}

/// Reads records into the declared (or inferred) columns of one input.
pub struct FrameBuilder {
    input: String,
    columns: Vec<ColumnIn>,
    rows: usize,
    /// The offset of the first date-time written with one (the portal's zone): values keep
    /// their wall-clock time, so the run's "now" must be taken in this zone to compare with them.
    offset: Option<FixedOffset>,
}

impl FrameBuilder {
    pub fn new(input: &str, columns: &IndexMap<String, ColumnSpec>) -> FrameBuilder {
        let columns = columns
            .iter()
            .map(|(name, spec)| {
                let from = match spec {
                    ColumnSpec::Full(ColumnFull { from: Some(f), .. }) => {
                        f.split('.').map(str::to_string).collect()
                    }
                    _ => vec![name.clone()],
                };
                let kind = spec.kind();
                ColumnIn {
                    name: name.clone(),
                    from,
                    kind,
                    builder: new_builder(name, kind),
                    bad: 0,
                    first_bad: None,
                }
            })
            .collect();
        FrameBuilder {
            input: input.to_string(),
            columns,
            rows: 0,
            offset: None,
        }
    }

    /// Columns for records whose shape is not declared: every top-level field, typed by its values.
    pub fn inferred(input: &str, records: &[Json]) -> FrameBuilder {
        let mut seen: IndexMap<String, ColumnType> = IndexMap::new();
        let mut kinds: BTreeMap<String, Vec<ColumnType>> = BTreeMap::new();
        for r in records {
            if let Json::Object(m) = r {
                for (k, v) in m {
                    seen.entry(k.clone()).or_insert(ColumnType::Str);
                    if let Some(t) = infer(v) {
                        kinds.entry(k.clone()).or_default().push(t);
                    }
                }
            }
        }
        let columns: IndexMap<String, ColumnSpec> = seen
            .into_keys()
            .map(|k| {
                let ts = kinds.remove(&k).unwrap_or_default();
                let t = match ts.first() {
                    Some(first) if ts.iter().all(|t| t == first) => *first,
                    _ if !ts.is_empty()
                        && ts
                            .iter()
                            .all(|t| matches!(t, ColumnType::Int | ColumnType::Float)) =>
                    {
                        ColumnType::Float
                    }
                    _ if !ts.is_empty()
                        && ts
                            .iter()
                            .all(|t| matches!(t, ColumnType::ListInt | ColumnType::ListStr)) =>
                    {
                        ColumnType::ListStr
                    }
                    _ => ColumnType::Str,
                };
                (k, ColumnSpec::Type(t))
            })
            .collect();
        FrameBuilder::new(input, &columns)
    }

    pub fn push(&mut self, record: &Json) {
        self.rows += 1;
        for c in &mut self.columns {
            let mut v = Some(record);
            for part in &c.from {
                v = v.and_then(|x| x.get(part));
            }
            let v = v.unwrap_or(&Json::Null);
            // Until one value shows the zone (values without an offset cost one failed parse).
            if self.offset.is_none() && matches!(c.kind, ColumnType::Datetime | ColumnType::Date) {
                self.offset = v.as_str().and_then(written_offset);
            }
            let ok = append(&mut c.builder, v);
            if !ok {
                c.bad += 1;
                if c.first_bad.is_none() {
                    c.first_bad = Some(v.to_string());
                }
            }
        }
    }

    /// Lines for the journal about values that could not be read.
    pub fn problems(&self) -> Vec<String> {
        self.columns
            .iter()
            .filter(|c| c.bad > 0)
            .map(|c| {
                format!(
                    "table input {}: {} value(s) of {} could not be read as {:?} and were left empty (first: {})",
                    self.input,
                    c.bad,
                    c.name,
                    c.kind,
                    c.first_bad.as_deref().unwrap_or("")
                )
            })
            .collect()
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The zone the date-times of this input were written in, if any carried an offset.
    pub fn offset(&self) -> Option<FixedOffset> {
        self.offset
    }

    pub fn finish(self) -> PolarsResult<DataFrame> {
        let height = self.rows;
        let mut cols = Vec::with_capacity(self.columns.len());
        for c in self.columns {
            let name = PlSmallStr::from(c.name.as_str());
            let series = match c.builder {
                Builder::Str(b) => b.finish().into_series(),
                Builder::Int(v) => Series::new(name, v),
                Builder::Float(v) => Series::new(name, v),
                Builder::Bool(v) => Series::new(name, v),
                Builder::Date(v) => Series::new(name, v).cast(&DataType::Date)?,
                Builder::Datetime(v) => Series::new(name, v).cast(&datetime_type())?,
                Builder::ListInt(mut b) => b.finish().into_series(),
                Builder::ListStr(mut b) => b.finish().into_series(),
            };
            cols.push(series.into_column());
        }
        DataFrame::new(height, cols)
    }
}

/// An empty frame with the declared columns (to check a plan when the pipeline loads).
pub fn empty_frame(columns: &IndexMap<String, ColumnSpec>) -> DataFrame {
    FrameBuilder::new("", columns)
        .finish()
        .expect("empty frame")
}

fn new_builder(name: &str, kind: ColumnType) -> Builder {
    let name = PlSmallStr::from(name);
    match kind {
        ColumnType::Str => Builder::Str(StringChunkedBuilder::new(name, 1024)),
        ColumnType::Int => Builder::Int(Vec::new()),
        ColumnType::Float => Builder::Float(Vec::new()),
        ColumnType::Bool => Builder::Bool(Vec::new()),
        ColumnType::Date => Builder::Date(Vec::new()),
        ColumnType::Datetime => Builder::Datetime(Vec::new()),
        ColumnType::ListInt => Builder::ListInt(ListPrimitiveChunkedBuilder::new(
            name,
            1024,
            4096,
            DataType::Int64,
        )),
        ColumnType::ListStr => Builder::ListStr(ListStringChunkedBuilder::new(name, 1024, 4096)),
    }
}

fn infer(v: &Json) -> Option<ColumnType> {
    match v {
        Json::Null => None,
        Json::Bool(_) => Some(ColumnType::Bool),
        Json::Number(n) if n.is_i64() || n.is_u64() => Some(ColumnType::Int),
        Json::Number(_) => Some(ColumnType::Float),
        Json::String(_) | Json::Object(_) => Some(ColumnType::Str),
        Json::Array(items) if items.iter().all(|i| i.is_i64()) => Some(ColumnType::ListInt),
        Json::Array(_) => Some(ColumnType::ListStr),
    }
}

fn is_blank(v: &Json) -> bool {
    match v {
        Json::Null => true,
        Json::String(s) => s.trim().is_empty(),
        Json::Array(a) => a.is_empty(),
        Json::Object(o) => o.is_empty(),
        _ => false,
    }
}

pub fn parse_int(v: &Json) -> Option<i64> {
    match v {
        Json::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        Json::String(s) => {
            let s = s.trim();
            s.parse::<i64>().ok().or_else(|| {
                s.parse::<f64>()
                    .ok()
                    .filter(|f| f.fract() == 0.0 && f.is_finite())
                    .map(|f| f as i64)
            })
        }
        Json::Bool(b) => Some(i64::from(*b)),
        _ => None,
    }
}

pub fn parse_float(v: &Json) -> Option<f64> {
    match v {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => s
            .trim()
            .replace(',', ".")
            .replace(' ', "")
            .parse()
            .ok()
            .filter(|f: &f64| f.is_finite()),
        _ => None,
    }
}

pub fn parse_bool(v: &Json) -> Option<bool> {
    match v {
        Json::Bool(b) => Some(*b),
        Json::Number(n) => n.as_i64().map(|i| i != 0),
        Json::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "y" | "yes" | "true" | "1" | "д" | "да" => Some(true),
            "n" | "no" | "false" | "0" | "н" | "нет" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// A date-time as the wall-clock time written (the offset, if any, is dropped, not applied).
pub fn parse_datetime(text: &str) -> Option<NaiveDateTime> {
    let t = text.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Some(dt.naive_local());
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
        "%d.%m.%Y %H:%M:%S",
        "%d.%m.%Y %H:%M",
    ] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(t, fmt) {
            return Some(dt);
        }
    }
    for fmt in ["%Y-%m-%d", "%d.%m.%Y"] {
        if let Ok(d) = NaiveDate::parse_from_str(t, fmt) {
            return d.and_hms_opt(0, 0, 0);
        }
    }
    None
}

/// The offset a date-time is written with (`2024-03-10T09:00:00+03:00`), if any.
fn written_offset(text: &str) -> Option<FixedOffset> {
    DateTime::parse_from_rfc3339(text.trim())
        .ok()
        .map(|dt| *dt.offset())
}

fn datetime_ms(v: &Json) -> Option<i64> {
    match v {
        Json::String(s) => parse_datetime(s).map(|dt| dt.and_utc().timestamp_millis()),
        _ => None,
    }
}

fn as_text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Append one value; false when it was present but unreadable (it is appended as null).
fn append(b: &mut Builder, v: &Json) -> bool {
    let blank = is_blank(v);
    macro_rules! scalar {
        ($vec:expr, $parse:expr) => {{
            let parsed = if blank { None } else { $parse };
            $vec.push(parsed);
            blank || parsed.is_some()
        }};
    }
    match b {
        Builder::Str(s) => {
            match v {
                Json::Null => s.append_null(),
                Json::String(t) => s.append_value(t),
                other => s.append_value(as_text(other)),
            }
            true
        }
        Builder::Int(vec) => scalar!(vec, parse_int(v)),
        Builder::Float(vec) => scalar!(vec, parse_float(v)),
        Builder::Bool(vec) => scalar!(vec, parse_bool(v)),
        Builder::Datetime(vec) => scalar!(vec, datetime_ms(v)),
        Builder::Date(vec) => scalar!(
            vec,
            datetime_ms(v).map(|ms| ms.div_euclid(super::expr::DAY_MS) as i32)
        ),
        Builder::ListInt(l) => {
            let items: Vec<&Json> = match v {
                Json::Array(a) => a.iter().collect(),
                Json::Null | Json::Bool(false) => {
                    l.append_null();
                    return true;
                }
                Json::String(s) if s.trim().is_empty() => {
                    l.append_null();
                    return true;
                }
                single => vec![single],
            };
            let parsed: Vec<i64> = items.iter().filter_map(|i| parse_int(i)).collect();
            let ok = parsed.len() == items.len();
            l.append_slice(&parsed);
            ok
        }
        Builder::ListStr(l) => {
            match v {
                Json::Array(a) => {
                    let texts: Vec<String> =
                        a.iter().filter(|i| !i.is_null()).map(as_text).collect();
                    l.append_values_iter(texts.iter().map(String::as_str));
                }
                Json::Null | Json::Bool(false) => l.append_null(),
                Json::String(s) if s.trim().is_empty() => l.append_null(),
                single => {
                    let t = as_text(single);
                    l.append_values_iter(std::iter::once(t.as_str()));
                }
            }
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::rows::rows;
    use serde_json::json;

    fn spec(pairs: &[(&str, ColumnType)]) -> IndexMap<String, ColumnSpec> {
        pairs
            .iter()
            .map(|(n, t)| (n.to_string(), ColumnSpec::Type(*t)))
            .collect()
    }

    #[test]
    fn bitrix24_values_are_read_leniently() {
        let mut b = FrameBuilder::new(
            "t",
            &spec(&[
                ("ID", ColumnType::Int),
                ("COMPLETED", ColumnType::Bool),
                ("DEADLINE", ColumnType::Datetime),
                ("COMPANY_IDS", ColumnType::ListInt),
                ("SUBJECT", ColumnType::Str),
            ]),
        );
        b.push(
            &json!({"ID": "37", "COMPLETED": "Y", "DEADLINE": "2024-08-15T10:38:21+03:00", "COMPANY_IDS": ["3", 4], "SUBJECT": "Звонок"}),
        );
        b.push(&json!({"ID": 38, "COMPLETED": "N", "DEADLINE": "", "COMPANY_IDS": false, "SUBJECT": null}));
        b.push(&json!({"ID": "x", "COMPLETED": "N", "DEADLINE": "soon", "COMPANY_IDS": []}));
        assert_eq!(b.problems().len(), 2, "{:?}", b.problems());
        assert!(
            b.problems()[0].contains("1 value(s) of ID could not be read"),
            "{:?}",
            b.problems()
        );
        let df = b.finish().unwrap();
        let rows = rows(&df, 0, 10).unwrap();
        assert_eq!(
            rows[0],
            json!({"ID": 37, "COMPLETED": true, "DEADLINE": "2024-08-15T10:38:21", "COMPANY_IDS": [3, 4], "SUBJECT": "Звонок"})
        );
        assert_eq!(
            rows[1],
            json!({"ID": 38, "COMPLETED": false, "DEADLINE": null, "COMPANY_IDS": null, "SUBJECT": null})
        );
        assert_eq!(rows[2]["COMPANY_IDS"], json!([]));
        assert_eq!(rows[2]["ID"], Json::Null);
    }

    #[test]
    fn undeclared_inputs_are_typed_by_their_values() {
        let records = vec![
            json!({"ID": 1, "NAME": "a", "UF_DEPARTMENT": [1, 2], "ACTIVE": true}),
            json!({"ID": 2, "NAME": "b", "X": 1.5}),
        ];
        let mut b = FrameBuilder::inferred("users", &records);
        for r in &records {
            b.push(r);
        }
        let df = b.finish().unwrap();
        assert_eq!(df.column("ID").unwrap().dtype(), &DataType::Int64);
        assert_eq!(
            df.column("UF_DEPARTMENT").unwrap().dtype(),
            &DataType::List(Box::new(DataType::Int64))
        );
        assert_eq!(df.column("X").unwrap().dtype(), &DataType::Float64);
        assert_eq!(df.column("ACTIVE").unwrap().dtype(), &DataType::Boolean);
    }
}
