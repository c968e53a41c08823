//! The portal's clock. Windows measured against DATE_MODIFY (the incremental settle window)
//! must use the time of the portal that stamps it: a host whose clock runs ahead would
//! otherwise read records of a second that is still going on and move its cursor past records
//! that are yet to be stamped in it.
//!
//! Every answer carries a `time` block (`finish` in unix seconds, `date_finish` with the
//! portal's offset); the last one, plus the monotonic time since it arrived, is the portal's
//! now. Before any answer there is none: the first request's filter uses the host's clock and
//! the rows it let through past the portal's limit are dropped (see `list/incremental.rs`).

use std::sync::Mutex;
use std::time::Instant;

use chrono::{DateTime, FixedOffset};
use serde_json::Value as Json;

#[derive(Default)]
pub struct PortalClock {
    last: Mutex<Option<(DateTime<FixedOffset>, Instant)>>,
}

impl PortalClock {
    /// Remember the time an answer's `time` block says the portal finished it.
    pub fn note(&self, time: &Json) {
        if let Some(at) = time_of_answer(time) {
            *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some((at, Instant::now()));
        }
    }

    /// The portal's now, if any answer told it.
    pub fn now(&self) -> Option<DateTime<FixedOffset>> {
        let last = *self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.map(|(at, seen)| at + chrono::Duration::from_std(seen.elapsed()).unwrap_or_default())
    }
}

/// `finish` (fractional unix seconds) in the offset of `date_finish`; `date_finish` alone
/// when `finish` is missing.
fn time_of_answer(time: &Json) -> Option<DateTime<FixedOffset>> {
    let dated = time["date_finish"]
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok());
    let offset = dated
        .map(|d| *d.offset())
        .unwrap_or_else(|| FixedOffset::east_opt(0).expect("UTC offset"));
    match time["finish"].as_f64() {
        Some(finish) => {
            DateTime::from_timestamp(finish.floor() as i64, ((finish.fract()) * 1e9) as u32)
                .map(|t| t.with_timezone(&offset))
        }
        None => dated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_portal_time_comes_from_the_answers() {
        let clock = PortalClock::default();
        assert!(clock.now().is_none());
        clock.note(&json!({"finish": 1717225200.5, "date_finish": "2024-06-01T10:00:00+03:00"}));
        let now = clock.now().unwrap();
        assert_eq!(now.offset().local_minus_utc(), 3 * 3600);
        assert!(now.timestamp_millis() >= 1_717_225_200_500);
        assert!(now.timestamp_millis() < 1_717_225_210_000);
    }
}
