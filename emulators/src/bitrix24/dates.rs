//! Portal-local datetimes: fast formatting of unix seconds as B24 prints them
//! (`2024-06-01T10:00:00+03:00`) and lenient parsing of what clients send in filters and fields.
//!
//! Hand-written instead of chrono so that generating and filtering a million rows stays cheap.

/// Offset of the emulated portal (Moscow, like the seed portal): +03:00.
pub const DEFAULT_OFFSET_SECS: i32 = 3 * 3600;

/// Days since 1970-01-01 for a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`].
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Unix seconds -> `YYYY-MM-DDTHH:MM:SS+HH:MM` in the given offset.
pub fn format_ts(ts: i64, offset_secs: i32) -> String {
    let local = ts + offset_secs as i64;
    let days = local.div_euclid(86_400);
    let secs = local.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let sign = if offset_secs < 0 { '-' } else { '+' };
    let off = offset_secs.unsigned_abs();
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}{sign}{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        off / 3600,
        off / 60 % 60
    )
}

/// A B24 "date" field value: midnight UTC of that day rendered in the portal offset
/// (real portals print birthdates as `2014-11-26T03:00:00+03:00`).
pub fn format_date(y: i64, m: u32, d: u32, offset_secs: i32) -> String {
    format_ts(days_from_civil(y, m, d) * 86_400, offset_secs)
}

/// Current unix time in seconds (float).
pub fn now_f64() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn num(b: &[u8]) -> Option<i64> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0i64, |a, c| a * 10 + (c - b'0') as i64))
}

/// Parse a datetime the way a portal would accept it in a filter or a field:
/// `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS[.frac]]` (or a space instead of `T`), optionally
/// followed by `Z`, `+HH:MM`, `-HH:MM` or `+HHMM`; and `DD.MM.YYYY[ HH:MM[:SS]]`.
/// Values without an offset are portal-local time. Returns unix seconds.
/// A `+` turned into a space by a non-encoding client (`10:00:00 03:00`) does not parse.
pub fn parse_datetime(s: &str, default_offset: i32) -> Option<i64> {
    let b = s.trim().as_bytes();
    let (y, mo, d, rest) = if b.len() >= 10 && b[4] == b'-' && b[7] == b'-' {
        (num(&b[0..4])?, num(&b[5..7])?, num(&b[8..10])?, &b[10..])
    } else if b.len() >= 10 && b[2] == b'.' && b[5] == b'.' {
        (num(&b[6..10])?, num(&b[3..5])?, num(&b[0..2])?, &b[10..])
    } else {
        return None;
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let mut secs = 0i64;
    let mut rest = rest;
    if !rest.is_empty()
        && (rest[0] == b'T' || rest[0] == b' ')
        && rest.len() >= 6
        && rest[3] == b':'
    {
        let h = num(&rest[1..3])?;
        let mi = num(&rest[4..6])?;
        secs = h * 3600 + mi * 60;
        rest = &rest[6..];
        if rest.len() >= 3 && rest[0] == b':' {
            secs += num(&rest[1..3])?;
            rest = &rest[3..];
            if !rest.is_empty() && rest[0] == b'.' {
                let n = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
                rest = &rest[1 + n..];
            }
        }
        if h > 24 || mi > 59 {
            return None;
        }
    }
    let offset = match rest {
        [] => default_offset as i64,
        [b'Z'] | [b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] | [sign @ (b'+' | b'-'), h1, h2, m1, m2] => {
            let v = num(&[*h1, *h2])? * 3600 + num(&[*m1, *m2])? * 60;
            if *sign == b'-' { -v } else { v }
        }
        [sign @ (b'+' | b'-'), h1, h2] => {
            let v = num(&[*h1, *h2])? * 3600;
            if *sign == b'-' { -v } else { v }
        }
        _ => return None,
    };
    Some(days_from_civil(y, mo as u32, d as u32) * 86_400 + secs - offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_forms() {
        let ts = parse_datetime("2024-06-01T10:00:00+03:00", 0).unwrap();
        assert_eq!(ts, 1_717_225_200);
        assert_eq!(
            format_ts(ts, DEFAULT_OFFSET_SECS),
            "2024-06-01T10:00:00+03:00"
        );
        assert_eq!(format_ts(ts, 0), "2024-06-01T07:00:00+00:00");
        assert_eq!(
            parse_datetime("2024-06-01T10:00:00", DEFAULT_OFFSET_SECS),
            Some(ts)
        );
        assert_eq!(parse_datetime("2024-06-01 07:00:00Z", 0), Some(ts));
        assert_eq!(parse_datetime("2024-06-01T09:00:00+0200", 0), Some(ts));
        assert_eq!(
            parse_datetime("01.06.2024 10:00", DEFAULT_OFFSET_SECS),
            Some(ts)
        );
        assert_eq!(parse_datetime("2024-06-01T10:00:00.123+03:00", 0), Some(ts));
        assert_eq!(parse_datetime("2024-06-01", 0), Some(1_717_200_000));
        assert_eq!(parse_datetime("2024-06-01T10:00:00 03:00", 0), None);
        assert_eq!(parse_datetime("yesterday", 0), None);
        assert_eq!(
            format_date(2009, 11, 29, DEFAULT_OFFSET_SECS),
            "2009-11-29T03:00:00+03:00"
        );
        assert_eq!(format_ts(-1, 0), "1969-12-31T23:59:59+00:00");
    }
}
