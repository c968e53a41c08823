//! Reading Data API reports over periods of any length: report times, windows of at most three
//! months (the API's limit), and [`ReportReader`], which pages through `limit`/`offset` and splits
//! a window further when offsets cannot reach its end.

use std::collections::VecDeque;
use std::sync::Arc;

use chrono::NaiveDateTime;
use serde_json::{Map, Value as Json, json};

use super::data_api::{CallError, DataApi, Effect};

const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// `YYYY-MM-DD hh:mm:ss`.
pub fn format_time(t: &NaiveDateTime) -> String {
    t.format(TIME_FORMAT).to_string()
}

/// A report time: `YYYY-MM-DD hh:mm:ss`, ISO 8601 (its local time), or a date (its start, or
/// with `end_of_day` its last second).
pub fn parse_time(text: &str, end_of_day: bool) -> Result<NaiveDateTime, String> {
    let t = text.trim();
    if let Ok(v) = NaiveDateTime::parse_from_str(t, TIME_FORMAT) {
        return Ok(v);
    }
    if let Ok(v) = chrono::DateTime::parse_from_rfc3339(t) {
        return Ok(v.naive_local());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        let time = if end_of_day {
            chrono::NaiveTime::from_hms_opt(23, 59, 59)
        } else {
            Some(chrono::NaiveTime::MIN)
        };
        return Ok(d.and_time(time.expect("valid time")));
    }
    Err(format!(
        "invalid date-time \"{t}\": expected YYYY-MM-DD hh:mm:ss, YYYY-MM-DD or ISO 8601"
    ))
}

/// `[from, till]` in windows of at most 3 calendar months (the API's limit), in order.
pub fn split_range(
    from: NaiveDateTime,
    till: NaiveDateTime,
) -> Vec<(NaiveDateTime, NaiveDateTime)> {
    let mut out = Vec::new();
    let mut start = from;
    while start <= till {
        let limit = start
            .checked_add_months(chrono::Months::new(3))
            .unwrap_or(till)
            - chrono::Duration::seconds(1);
        let end = limit.min(till);
        out.push((start, end));
        start = end + chrono::Duration::seconds(1);
    }
    out
}

/// `[from, till]` in `n` windows of equal length.
fn split_even(
    from: NaiveDateTime,
    till: NaiveDateTime,
    n: u64,
) -> Vec<(NaiveDateTime, NaiveDateTime)> {
    let secs = (till - from).num_seconds().max(0) as u64 + 1;
    let n = n.clamp(1, secs);
    let step = secs.div_ceil(n);
    let mut out = Vec::new();
    let mut start = from;
    while start <= till {
        let end = (start + chrono::Duration::seconds(step as i64 - 1)).min(till);
        out.push((start, end));
        start = end + chrono::Duration::seconds(1);
    }
    out
}

/// Reads one `get.*_report` over any window, page by page.
pub struct ReportReader {
    api: Arc<DataApi>,
    method: String,
    params: Map<String, Json>,
    page_size: u64,
    windows: VecDeque<(NaiveDateTime, NaiveDateTime)>,
    current: Option<(NaiveDateTime, NaiveDateTime, u64)>,
    /// Requests made, windows read.
    pub requests: u64,
}

impl ReportReader {
    /// `params` are the report's own (`fields`, `filter`, `sort`); dates, `limit` and `offset`
    /// are added here.
    pub fn new(
        api: Arc<DataApi>,
        method: &str,
        from: NaiveDateTime,
        till: NaiveDateTime,
        params: Map<String, Json>,
        page_size: u64,
    ) -> ReportReader {
        ReportReader {
            api,
            method: method.to_string(),
            params,
            page_size: page_size.clamp(1, 10_000),
            windows: split_range(from, till).into(),
            current: None,
            requests: 0,
        }
    }

    /// The next page of rows; `None` when every window is read.
    pub async fn next_page(&mut self) -> Result<Option<Vec<Json>>, CallError> {
        loop {
            let (from, till, offset) = match self.current {
                Some(c) => c,
                None => match self.windows.pop_front() {
                    Some((f, t)) => (f, t, 0),
                    None => return Ok(None),
                },
            };
            let mut p = self.params.clone();
            p.insert("date_from".into(), json!(format_time(&from)));
            p.insert("date_till".into(), json!(format_time(&till)));
            p.insert("limit".into(), json!(self.page_size));
            p.insert("offset".into(), json!(offset));
            let reply = self.api.call(&self.method, p, Effect::Read).await?;
            self.requests += 1;
            let rows = match reply.data {
                Json::Array(rows) => rows,
                Json::Null => Vec::new(),
                other => vec![other],
            };
            let total = reply.total_items.unwrap_or(offset + rows.len() as u64);
            let reach = self.api.max_offset() + self.page_size;
            if offset == 0 && total > reach && till > from {
                // Offsets cannot reach the end of this window: read it in shorter ones.
                let parts = split_even(from, till, total.div_ceil(reach) + 1);
                for w in parts.into_iter().rev() {
                    self.windows.push_front(w);
                }
                self.current = None;
                continue;
            }
            let next = offset + rows.len() as u64;
            self.current = if rows.is_empty() || next >= total {
                None
            } else {
                Some((from, till, next))
            };
            return Ok(Some(rows));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> NaiveDateTime {
        parse_time(s, false).unwrap()
    }

    #[test]
    fn long_ranges_split_into_three_month_windows() {
        let w = split_range(t("2025-01-01 00:00:00"), t("2025-12-31 23:59:59"));
        assert_eq!(w.len(), 4);
        assert_eq!(w[0], (t("2025-01-01 00:00:00"), t("2025-03-31 23:59:59")));
        assert_eq!(w[1].0, t("2025-04-01 00:00:00"));
        assert_eq!(w[3].1, t("2025-12-31 23:59:59"));
        assert_eq!(
            split_range(t("2025-01-01 00:00:00"), t("2025-01-02 00:00:00")).len(),
            1
        );
        let even = split_even(t("2025-01-01 00:00:00"), t("2025-01-01 00:00:09"), 3);
        assert_eq!(
            even,
            vec![
                (t("2025-01-01 00:00:00"), t("2025-01-01 00:00:03")),
                (t("2025-01-01 00:00:04"), t("2025-01-01 00:00:07")),
                (t("2025-01-01 00:00:08"), t("2025-01-01 00:00:09")),
            ]
        );
        assert_eq!(
            parse_time("2025-02-03", true).unwrap(),
            t("2025-02-03 23:59:59")
        );
        assert_eq!(
            parse_time("2025-02-03T10:00:00+03:00", false).unwrap(),
            t("2025-02-03 10:00:00")
        );
    }
}
