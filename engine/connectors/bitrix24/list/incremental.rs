//! Incremental reads: ascending (DATE_MODIFY, ID) from the cursor, at full pages whatever the
//! dates look like.
//!
//! The rows to read are cut into DATE_MODIFY *windows*. A window is every row whose date lies
//! in `[from, to]` (`>` instead of `>=` once the rows at `from` are all delivered; `to` is the
//! settle limit, or the date at which the window probe found more than `WINDOW_ROWS` rows).
//! A window is read by ID keyset rounds (see `scan`), at 2,450 rows or more per request no
//! matter how many rows share a second, held in memory, and only once fully read are its rows
//! sorted and delivered, each with its own cursor (date, ID).
//!
//! Why no record is skipped or repeated:
//! - Within a window, every row in the date range is read exactly once: the rounds read
//!   disjoint ID ranges that cover all IDs. Rows at the cursor's date with an ID at or below the
//!   cursor's were delivered before and are dropped; so the first delivered row is the one just
//!   after the cursor in (date, ID) order, and every later one follows in that order.
//! - Consecutive windows meet exactly: the next one starts strictly after the date that ended
//!   this one, and this one held every row up to and including that date.
//! - A crash or stop between records resumes from the last record's cursor (date, ID): the
//!   window starts at `>= date` and drops what is at or before the cursor.
//! - A record modified while the run reads gets a DATE_MODIFY after the settle limit, so it
//!   leaves every window of this run: read before the change it is delivered once (its old
//!   state), read after it is not seen; either way it comes again next run with its new date.
//!   Windows end at or before the settle limit, a date in the past, so no record can enter one
//!   while it is read.
//! - The settle limit is measured on the portal's clock. The first request's filter can only
//!   use the host's (no answer told the portal's yet); once one has, the limit is the earlier of
//!   the two and rows after it are dropped from the window, which then ends the run: they come
//!   again next run, since the cursor stays before them.
use std::cmp::Ordering;
use std::time::Instant;

use chrono::{DateTime, Duration, FixedOffset};

use serde_json::{Value as Json, json};

use super::raw::{RawRow, parse, pick};
use super::scan::WindowProbe;
use super::{ListSource, Position, as_text};
use crate::runtime::{Fatal, parallel};

/// Rows a window may hold (plus the rest of the second at its end): the window probe's offset.
const WINDOW_ROWS: usize = 120_000;

/// One DATE_MODIFY window.
#[derive(Clone, Debug)]
pub(super) struct Window {
    /// Rows at or before `cursor` (date, ID) were delivered before: read `>= from`, drop
    /// them. Without a cursor, read `> from`.
    from: String,
    cursor: Option<Key>,
    /// The window's last date when the window probe cut it; the settle limit otherwise.
    to: Option<String>,
}

impl Window {
    pub fn resume(date: String, id: String) -> Window {
        Window {
            from: date.clone(),
            cursor: Some(Key::new(date, id)),
            to: None,
        }
    }

    pub fn after(date: String) -> Window {
        Window {
            from: date,
            cursor: None,
            to: None,
        }
    }

    fn filter(&self, field: &str) -> Vec<(String, Json)> {
        let mut f = vec![match self.cursor {
            Some(_) => (format!(">={field}"), Json::from(self.from.clone())),
            None => (format!(">{field}"), Json::from(self.from.clone())),
        }];
        if let Some(to) = &self.to {
            // Replaces the settle limit, which is later.
            f.push((format!("<={field}"), Json::from(to.clone())));
        }
        f
    }

    /// Already delivered: at the cursor's date with an ID at or below the cursor's.
    fn delivered(&self, key: &Key) -> bool {
        self.cursor.as_ref().is_some_and(|c| {
            key.cmp_dates(c) == Ordering::Equal && key.cmp_ids(c) != Ordering::Greater
        })
    }
}

/// A row's place in (date, ID) order, parsed once: a 100,000-row window is sorted with about
/// 1.7 million comparisons, too many to parse two dates in each.
#[derive(Clone, Debug)]
pub(super) struct Key {
    date: String,
    id: String,
    instant: Option<DateTime<FixedOffset>>,
    number: Option<u64>,
}

impl Key {
    fn new(date: String, id: String) -> Key {
        Key {
            instant: DateTime::parse_from_rfc3339(&date).ok(),
            number: id.parse().ok(),
            date,
            id,
        }
    }

    /// DATE_MODIFY values as instants (the portal's offset may differ between values in
    /// theory), as text when one is not a date.
    fn cmp_dates(&self, other: &Key) -> Ordering {
        match (&self.instant, &other.instant) {
            (Some(a), Some(b)) => a.cmp(b),
            _ => self.date.cmp(&other.date),
        }
    }

    /// IDs as numbers when they are numbers.
    fn cmp_ids(&self, other: &Key) -> Ordering {
        match (self.number, other.number) {
            (Some(a), Some(b)) => a.cmp(&b),
            _ => self.id.cmp(&other.id),
        }
    }

    fn cmp(&self, other: &Key) -> Ordering {
        self.cmp_dates(other).then_with(|| self.cmp_ids(other))
    }
}

/// The settle limit of a run: records modified after it are left for the next run.
#[derive(Clone, Debug)]
pub(super) struct SettleLimit {
    settle: Duration,
    /// When the run opened the source, on the host's monotonic clock.
    opened: Instant,
    /// The limit by the clock known when the run opened (the host's, or the portal's when an
    /// earlier answer told it).
    at_open: DateTime<FixedOffset>,
}

impl SettleLimit {
    pub fn start(settle_secs: u64, portal_now: Option<DateTime<FixedOffset>>) -> SettleLimit {
        let settle = Duration::seconds(settle_secs as i64);
        let now = portal_now.unwrap_or_else(|| chrono::Local::now().fixed_offset());
        SettleLimit {
            settle,
            opened: Instant::now(),
            at_open: now - settle,
        }
    }

    /// The bound sent with the filter.
    pub fn server_bound(&self) -> DateTime<FixedOffset> {
        self.at_open
    }

    /// The limit on the portal's clock, read back to the moment the run opened, when an answer
    /// told that clock; never later than the bound sent.
    fn effective(&self, portal_now: Option<DateTime<FixedOffset>>) -> DateTime<FixedOffset> {
        let elapsed = Duration::from_std(self.opened.elapsed()).unwrap_or_default();
        match portal_now.map(|now| now - elapsed - self.settle) {
            Some(portal) if portal < self.at_open => portal,
            _ => self.at_open,
        }
    }
}

/// A row of a window waiting for delivery, with its cursor and place in the order.
pub(super) struct Held {
    key: Key,
    /// The row as it came, parsed on every core when delivered: a 100,000-row window held
    /// parsed took 570 MB instead of 139 MB, and longer.
    row: RawRow,
}

impl ListSource {
    /// Delivers the next records of the window read last, in order, each with its cursor.
    pub(super) fn deliver_sorted(&mut self) {
        let n = self.sorted.len().min(super::DELIVERY);
        let held: Vec<Held> = self.sorted.drain(..n).collect();
        let rows: Vec<Json> = parallel::map(&held, |h| parse(&h.row));
        for (held, row) in held.into_iter().zip(rows) {
            let cursor = json!({ "date": held.key.date, "id": held.key.id });
            self.push(row, Some(cursor));
        }
    }

    /// Reads one whole window and delivers its rows in (date, ID) order; then moves to the
    /// next window, or ends when this one reached the settle limit.
    pub(super) async fn fetch_incremental(&mut self) -> Result<(), Fatal> {
        let Position::Window(mut window) = self.state.clone() else {
            unreachable!("opened")
        };
        let inc = self.cfg.incremental.as_ref().expect("incremental");
        let (field, window_rows) = (inc.field.clone(), inc.window_rows.unwrap_or(WINDOW_ROWS));
        let (filter, probed) = loop {
            let filter = window.filter(&field);
            // The window probe goes with the first round of a window not cut yet.
            let probe = window.to.is_none().then(|| WindowProbe {
                field: field.clone(),
                offset: window_rows,
            });
            let mut probed = self.probe(&filter, "0", probe.as_ref()).await?;
            match probed.0.window_too_big.take() {
                Some(to) => window.to = Some(to),
                None => break (filter, probed),
            }
        };
        // Held as text as the answers come (see `Held`), without what was delivered before.
        let keep = |rows: Vec<RawRow>| -> Vec<Held> {
            rows.into_iter()
                .map(|row| {
                    let [date, id] = pick(&row, [field.as_str(), self.cfg.id_field.as_str()]);
                    (Key::new(as_text(&date), as_text(&id)), row)
                })
                .filter(|(key, _)| !window.delivered(key))
                .map(|(key, row)| Held { key, row })
                .collect()
        };
        let mut held = self.read_rounds(&filter, probed, &keep).await?;
        let beyond = self.drop_unsettled(&mut held);
        held.sort_by(|a, b| a.key.cmp(&b.key));
        self.sorted = held.into();
        match window.to {
            Some(to) if !beyond => self.state = Position::Window(Window::after(to)),
            _ => self.done = true,
        }
        Ok(())
    }

    /// Drops the rows after the settle limit as the portal's clock puts it; true when there
    /// were any (later windows hold only such rows, so the run's reading ends here).
    fn drop_unsettled(&self, held: &mut Vec<Held>) -> bool {
        let Some(settle) = &self.settle else {
            return false;
        };
        let limit = settle.effective(self.client.portal_now());
        let before = held.len();
        held.retain(|h| h.key.instant.is_none_or(|d| d <= limit));
        held.len() < before
    }
}
