//! A pipeline's `schedule:`: a cron expression in a time zone, for `etl serve` to run it by.
//!
//! Expressions have six fields with seconds first (`0 */5 * * * *`, the `cron` crate's syntax)
//! or the classic five (`*/5 * * * *`, read as "at second 0"). The time zone is an IANA name
//! (`Europe/Moscow`); without one, UTC. "Every day at 03:00" then means 03:00 in that zone,
//! daylight saving included.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

#[derive(Clone, Debug)]
pub struct Schedule {
    /// The expression as written, for logs.
    pub expression: String,
    pub tz: Tz,
    cron: cron::Schedule,
}

impl Schedule {
    /// Parse `expression` in the zone `tz` (`None`: UTC). The error says which part is wrong.
    pub fn parse(expression: &str, tz: Option<&str>) -> Result<Schedule, ScheduleError> {
        let tz = match tz {
            None => Tz::UTC,
            Some(name) => Tz::from_str(name).map_err(|_| {
                ScheduleError::TimeZone(format!(
                    "unknown time zone `{name}`; expected an IANA name such as `Europe/Moscow` or `UTC`"
                ))
            })?,
        };
        let fields = expression.split_whitespace().count();
        let text = match fields {
            5 => format!("0 {}", expression.trim()),
            6 | 7 => expression.trim().to_string(),
            _ => {
                return Err(ScheduleError::Expression(format!(
                    "a cron expression has 5 fields (minute hour day month weekday) or 6 with seconds first; `{expression}` has {fields}"
                )));
            }
        };
        let cron = cron::Schedule::from_str(&text).map_err(|e| {
            ScheduleError::Expression(format!("invalid cron expression `{expression}`: {e}"))
        })?;
        if cron.upcoming(tz).next().is_none() {
            return Err(ScheduleError::Expression(format!(
                "cron expression `{expression}` never fires"
            )));
        }
        Ok(Schedule {
            expression: expression.to_string(),
            tz,
            cron,
        })
    }

    /// The first tick strictly after `now`.
    pub fn next_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .after(&now.with_timezone(&self.tz))
            .next()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// Which part of a schedule is wrong, so the loader can point at it.
#[derive(Debug, Clone, PartialEq)]
pub enum ScheduleError {
    Expression(String),
    TimeZone(String),
}

impl std::fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScheduleError::Expression(m) | ScheduleError::TimeZone(m) => f.write_str(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_and_six_field_expressions_in_a_time_zone() {
        let s = Schedule::parse("0 3 * * *", Some("Europe/Moscow")).unwrap();
        let now = DateTime::parse_from_rfc3339("2026-01-10T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        // 03:00 in Moscow is 00:00 UTC.
        assert_eq!(
            s.next_after(now).unwrap().to_rfc3339(),
            "2026-01-11T00:00:00+00:00"
        );
        let every_two = Schedule::parse("*/2 * * * * *", None).unwrap();
        assert_eq!(
            every_two.next_after(now).unwrap().to_rfc3339(),
            "2026-01-10T12:00:02+00:00"
        );
    }

    #[test]
    fn wrong_expressions_and_zones_are_named() {
        assert!(matches!(
            Schedule::parse("0 3 * *", None),
            Err(ScheduleError::Expression(m)) if m.contains("has 4")
        ));
        assert!(matches!(
            Schedule::parse("0 99 * * *", None),
            Err(ScheduleError::Expression(m)) if m.starts_with("invalid cron expression")
        ));
        assert!(matches!(
            Schedule::parse("0 3 * * *", Some("Mars/Olympus")),
            Err(ScheduleError::TimeZone(m)) if m.contains("Mars/Olympus")
        ));
    }
}
