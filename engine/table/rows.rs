//! Tables back to records: the rows polars computed as JSON objects for the pipeline.

use chrono::DateTime;
use polars::prelude::*;
use serde_json::{Map, Value as Json};

/// Rows `offset..offset+len` of `df` as JSON objects. Dates become `YYYY-MM-DD`, date-times
/// `YYYY-MM-DDTHH:MM:SS`, lists arrays.
pub fn rows(df: &DataFrame, offset: usize, len: usize) -> PolarsResult<Vec<Json>> {
    let slice = df.slice(offset as i64, len);
    let n = slice.height();
    let mut out: Vec<Map<String, Json>> =
        (0..n).map(|_| Map::with_capacity(slice.width())).collect();
    for column in slice.columns() {
        let values = series_values(column.as_materialized_series())?;
        let name = column.name().to_string();
        for (row, v) in out.iter_mut().zip(values) {
            row.insert(name.clone(), v);
        }
    }
    Ok(out.into_iter().map(Json::Object).collect())
}

fn format_ms(ms: i64) -> Json {
    match DateTime::from_timestamp_millis(ms) {
        Some(dt) => Json::String(dt.naive_utc().format("%Y-%m-%dT%H:%M:%S").to_string()),
        None => Json::Null,
    }
}

/// Every value of a series as JSON.
pub fn series_values(s: &Series) -> PolarsResult<Vec<Json>> {
    Ok(match s.dtype() {
        DataType::Boolean => s
            .bool()?
            .iter()
            .map(|v| v.map(Json::Bool).unwrap_or(Json::Null))
            .collect(),
        DataType::String => s
            .str()?
            .iter()
            .map(|v| v.map(|t| Json::String(t.to_string())).unwrap_or(Json::Null))
            .collect(),
        DataType::Float32 | DataType::Float64 => s
            .cast(&DataType::Float64)?
            .f64()?
            .iter()
            .map(|v| v.map(Json::from).unwrap_or(Json::Null))
            .collect(),
        dt if dt.is_integer() => s
            .cast(&DataType::Int64)?
            .i64()?
            .iter()
            .map(|v| v.map(Json::from).unwrap_or(Json::Null))
            .collect(),
        DataType::Date => s
            .cast(&DataType::Int32)?
            .i32()?
            .iter()
            .map(|v| {
                v.and_then(|d| DateTime::from_timestamp_millis(d as i64 * super::expr::DAY_MS))
                    .map(|dt| Json::String(dt.date_naive().format("%Y-%m-%d").to_string()))
                    .unwrap_or(Json::Null)
            })
            .collect(),
        DataType::Datetime(unit, _) => {
            let factor_div = match unit {
                TimeUnit::Milliseconds => 1,
                TimeUnit::Microseconds => 1_000,
                TimeUnit::Nanoseconds => 1_000_000,
            };
            s.to_physical_repr()
                .cast(&DataType::Int64)?
                .i64()?
                .iter()
                .map(|v| v.map(|x| format_ms(x / factor_div)).unwrap_or(Json::Null))
                .collect()
        }
        DataType::List(_) => {
            let ca = s.list()?;
            let mut out = Vec::with_capacity(s.len());
            for i in 0..ca.len() {
                out.push(match ca.get_as_series(i) {
                    Some(inner) => Json::Array(series_values(&inner)?),
                    None => Json::Null,
                });
            }
            out
        }
        DataType::Null => vec![Json::Null; s.len()],
        _ => s
            .cast(&DataType::String)?
            .str()?
            .iter()
            .map(|v| v.map(|t| Json::String(t.to_string())).unwrap_or(Json::Null))
            .collect(),
    })
}
