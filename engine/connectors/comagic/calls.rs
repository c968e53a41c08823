//! The rows of `get.calls_report` seed 003 looks at, shared by `comagic.find_communication` (which
//! picks the call an order came from) and `comagic.tag_sales` (which reads a communication again
//! when a write's outcome is unknown); the time windows the step has already read; money and
//! comment formatting.

use chrono::NaiveDateTime;
use serde_json::{Map, Value as Json, json};

use super::data_api::{CallError, DataApi, Effect};
use super::report_reader::{format_time, parse_time};

/// The parts of a `get.calls_report` row that matter here.
#[derive(Clone, Debug)]
pub struct CallRow {
    pub id: u64,
    pub communication_id: u64,
    pub communication_type: String,
    pub start_time: NaiveDateTime,
    pub is_lost: bool,
    /// The sale the communication carries, in kopecks.
    pub sale_kop: Option<i64>,
    pub tag_ids: Vec<u64>,
}

const FIELDS: &[&str] = &[
    "id",
    "communication_id",
    "communication_type",
    "start_time",
    "contact_phone_number",
    "is_lost",
    "tags",
    "sale_date",
    "sale_cost",
];

impl CallRow {
    /// The row and its caller number.
    pub fn from_json(v: &Json) -> Option<(String, CallRow)> {
        let phone = v.get("contact_phone_number")?.as_str()?.to_string();
        let row = CallRow {
            id: v.get("id")?.as_u64()?,
            communication_id: v.get("communication_id")?.as_u64()?,
            communication_type: v
                .get("communication_type")
                .and_then(Json::as_str)
                .unwrap_or("call")
                .to_string(),
            start_time: parse_time(v.get("start_time")?.as_str()?, false).ok()?,
            is_lost: v.get("is_lost").and_then(Json::as_bool).unwrap_or(false),
            sale_kop: v
                .get("sale_cost")
                .and_then(Json::as_f64)
                .map(|c| (c * 100.0).round() as i64),
            tag_ids: v
                .get("tags")
                .and_then(Json::as_array)
                .map(|tags| {
                    tags.iter()
                        .filter_map(|t| t.get("tag_id").and_then(Json::as_u64))
                        .collect()
                })
                .unwrap_or_default(),
        };
        Some((phone, row))
    }

    pub fn has_sale(&self, sale_tag: u64) -> bool {
        self.sale_kop.is_some() || self.tag_ids.contains(&sale_tag)
    }

    /// Whether it carries exactly this sale already.
    pub fn carries(&self, sale_tag: u64, amount_kop: i64) -> bool {
        self.has_sale(sale_tag) && self.sale_kop == Some(amount_kop)
    }
}

/// `get.calls_report` parameters for [`CallRow`]s, oldest first; dates and paging are added by
/// the caller.
pub fn report_params() -> Map<String, Json> {
    let mut p = Map::new();
    p.insert("fields".into(), json!(FIELDS));
    p.insert(
        "sort".into(),
        json!([{"field": "start_time", "order": "asc"}]),
    );
    p
}

/// The call as CoMagic has it now (`None`: it is gone).
pub async fn reread(api: &DataApi, call: &CallRow) -> Result<Option<CallRow>, CallError> {
    let mut p = report_params();
    p.insert("date_from".into(), json!(format_time(&call.start_time)));
    p.insert("date_till".into(), json!(format_time(&call.start_time)));
    p.insert("limit".into(), json!(100));
    let reply = api.call("get.calls_report", p, Effect::Read).await?;
    Ok(reply
        .data
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(CallRow::from_json)
        .map(|(_, c)| c)
        .find(|c| c.id == call.id))
}

/// Roubles with two decimals.
pub fn money(kop: i64) -> String {
    format!("{}.{:02}", kop / 100, (kop % 100).abs())
}

/// At most 255 characters, cut at a character boundary with an ellipsis.
pub fn clip_comment(text: &str) -> String {
    let text = text.trim();
    if text.chars().count() <= 255 {
        return text.to_string();
    }
    let mut out: String = text.chars().take(254).collect();
    out.push('…');
    out
}

/// Merge `[a, b]` into a sorted list of disjoint intervals (seconds are whole: adjacent ones join).
pub fn cover(list: &mut Vec<(NaiveDateTime, NaiveDateTime)>, a: NaiveDateTime, b: NaiveDateTime) {
    list.push((a, b));
    list.sort();
    let mut out: Vec<(NaiveDateTime, NaiveDateTime)> = Vec::with_capacity(list.len());
    for (x, y) in list.drain(..) {
        match out.last_mut() {
            Some(last) if x <= last.1 + chrono::Duration::seconds(1) => last.1 = last.1.max(y),
            _ => out.push((x, y)),
        }
    }
    *list = out;
}

/// The parts of `[a, b]` not in `list`.
pub fn uncovered(
    list: &[(NaiveDateTime, NaiveDateTime)],
    a: NaiveDateTime,
    b: NaiveDateTime,
) -> Vec<(NaiveDateTime, NaiveDateTime)> {
    let mut out = Vec::new();
    let mut start = a;
    for &(x, y) in list {
        if y < start || x > b {
            continue;
        }
        if x > start {
            out.push((start, x - chrono::Duration::seconds(1)));
        }
        start = start.max(y + chrono::Duration::seconds(1));
        if start > b {
            break;
        }
    }
    if start <= b {
        out.push((start, b));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> NaiveDateTime {
        parse_time(s, false).unwrap()
    }

    #[test]
    fn intervals_merge_and_subtract() {
        let mut list = Vec::new();
        cover(
            &mut list,
            t("2025-01-10 00:00:00"),
            t("2025-01-20 00:00:00"),
        );
        cover(
            &mut list,
            t("2025-01-01 00:00:00"),
            t("2025-01-05 00:00:00"),
        );
        cover(
            &mut list,
            t("2025-01-20 00:00:01"),
            t("2025-01-25 00:00:00"),
        );
        assert_eq!(
            list,
            vec![
                (t("2025-01-01 00:00:00"), t("2025-01-05 00:00:00")),
                (t("2025-01-10 00:00:00"), t("2025-01-25 00:00:00"))
            ]
        );
        let gaps = uncovered(&list, t("2025-01-03 00:00:00"), t("2025-01-30 00:00:00"));
        assert_eq!(
            gaps,
            vec![
                (t("2025-01-05 00:00:01"), t("2025-01-09 23:59:59")),
                (t("2025-01-25 00:00:01"), t("2025-01-30 00:00:00"))
            ]
        );
        assert!(uncovered(&list, t("2025-01-11 00:00:00"), t("2025-01-12 00:00:00")).is_empty());
    }

    #[test]
    fn comments_fit_in_255_characters() {
        assert_eq!(clip_comment(" УЗИ "), "УЗИ");
        let long = "Общий анализ крови, ".repeat(20);
        let c = clip_comment(&long);
        assert_eq!(c.chars().count(), 255);
        assert!(c.ends_with('…'));
        assert_eq!(money(150_050), "1500.50");
    }
}
