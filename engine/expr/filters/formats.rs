//! The text formats other systems expect: phones as `7XXXXXXXXXX`, calendar dates, money with
//! two decimals, dates moved by days. Plain functions on text, shared by the filters and by
//! connectors that normalise the same values.

/// Phone to `7XXXXXXXXXX`: digits only, a leading 8 becomes 7, ten digits get a 7 in front;
/// anything else is an error (a wrong number must not reach another system).
pub fn normalize_phone(raw: &str) -> Result<String, String> {
    // Room for a leading 7; ASCII digits are single bytes, never part of another character.
    let mut digits = String::with_capacity(11);
    digits.push('7');
    digits.extend(raw.bytes().filter(u8::is_ascii_digit).map(char::from));
    match &digits.as_bytes()[1..] {
        [first @ (b'7' | b'8'), ..] if digits.len() == 12 => {
            // 7XXXXXXXXXX stays, 8XXXXXXXXXX becomes 7XXXXXXXXXX: drop one of the leading two.
            digits.remove(if *first == b'7' { 0 } else { 1 });
            Ok(digits)
        }
        _ if digits.len() == 11 => Ok(digits),
        _ => Err(format!(
            "invalid phone number \"{raw}\": expected 10 digits, or 11 starting with 7 or 8"
        )),
    }
}

/// `2014-11-26T03:00:00+03:00` -> `2014-11-26`: the calendar date as written, in its own offset
/// (Bitrix24 stores dates as local midnight, so converting to UTC would give the previous day).
pub fn iso_date(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(raw) {
        return Ok(ymd(dt.date_naive()));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"] {
        if let Ok(dt) = chrono::NaiveDateTime::parse_from_str(raw, fmt) {
            return Ok(dt.date().format("%Y-%m-%d").to_string());
        }
    }
    for fmt in ["%Y-%m-%d", "%d.%m.%Y"] {
        if let Ok(d) = chrono::NaiveDate::parse_from_str(raw, fmt) {
            return Ok(d.format("%Y-%m-%d").to_string());
        }
    }
    Err(format!(
        "invalid date \"{raw}\": expected ISO 8601 such as 2020-12-13T03:00:00+03:00"
    ))
}

/// `%Y-%m-%d` without chrono's format machinery (parsing the pattern on every call).
fn ymd(d: chrono::NaiveDate) -> String {
    use chrono::Datelike;
    if !(0..=9999).contains(&d.year()) {
        return d.format("%Y-%m-%d").to_string();
    }
    let mut out = String::with_capacity(10);
    for (n, width) in [(d.year() as u32, 4), (d.month(), 2), (d.day(), 2)] {
        if width == 2 {
            out.push('-');
        }
        for p in (0..width).rev() {
            out.push(char::from(b'0' + (n / 10u32.pow(p) % 10) as u8));
        }
    }
    out
}

/// A date (`2025-01-31`) or ISO 8601 date-time moved by `n` days (negative: back), in the same
/// form: `{{ run.today | add_days(-30) }}` -> `2025-01-01`.
pub fn shift_days(raw: &str, n: i64) -> Result<String, String> {
    let raw = raw.trim();
    let delta = chrono::Duration::days(n);
    if let Ok(d) = chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        return Ok((d + delta).format("%Y-%m-%d").to_string());
    }
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(raw) {
        return Ok((dt + delta).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false));
    }
    if let Ok(dt) = chrono::NaiveDateTime::parse_from_str(raw, "%Y-%m-%d %H:%M:%S") {
        return Ok((dt + delta).format("%Y-%m-%d %H:%M:%S").to_string());
    }
    Err(format!(
        "invalid date \"{raw}\": expected YYYY-MM-DD or ISO 8601"
    ))
}

/// Money as a string with two decimals: `9000` -> `"9000.00"`, `"8700.5"` -> `"8700.50"`.
pub fn format_money(raw: &str) -> Result<String, String> {
    match exact_money(raw.trim()) {
        Some(text) => Ok(text),
        None => format_money_float(raw),
    }
}

/// `1001`, `-5`, `8700.5`, `300,25`: a decimal with at most two fraction digits and at most 15
/// digits in all comes back unchanged from the trip through f64, so what `format_money_float`
/// prints is the text itself padded to two decimals; this skips the float formatting.
fn exact_money(s: &str) -> Option<String> {
    let body = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = match body.find(['.', ',']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    let int_ok =
        (1..=13).contains(&int.len()) && digits(int) && (int == "0" || !int.starts_with('0'));
    let frac_ok = frac.is_none_or(|f| (1..=2).contains(&f.len()) && digits(f));
    if !int_ok || !frac_ok {
        return None;
    }
    let frac = frac.unwrap_or("");
    let mut out = String::with_capacity(s.len() + 3);
    out.push_str(&s[..s.len() - body.len()]);
    out.push_str(int);
    out.push('.');
    out.push_str(frac);
    out.push_str(&"00"[frac.len()..]);
    Some(out)
}

fn format_money_float(raw: &str) -> Result<String, String> {
    let n: f64 = raw
        .trim()
        .replace(',', ".")
        .replace(' ', "")
        .parse()
        .map_err(|_| format!("invalid amount \"{raw}\""))?;
    if !n.is_finite() {
        return Err(format!("invalid amount \"{raw}\""));
    }
    Ok(format!("{n:.2}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_normalise_to_eleven_digits() {
        assert_eq!(normalize_phone("8 (926) 123-45-67").unwrap(), "79261234567");
        assert_eq!(normalize_phone("+7 (926) 1234567").unwrap(), "79261234567");
        assert_eq!(normalize_phone("9265672098").unwrap(), "79265672098");
        assert!(normalize_phone("12345").is_err());
        assert!(normalize_phone("+1 650 253 00001").is_err());
        assert!(normalize_phone("59261234567").is_err());
    }

    #[test]
    fn dates_keep_their_calendar_day() {
        assert_eq!(iso_date("2014-11-26T03:00:00+03:00").unwrap(), "2014-11-26");
        assert_eq!(iso_date("2009-11-29T00:00:00+03:00").unwrap(), "2009-11-29");
        assert_eq!(iso_date("2020-12-22").unwrap(), "2020-12-22");
        assert!(iso_date("yesterday").is_err());
    }

    #[test]
    fn exact_money_and_dates_print_like_the_general_formatting() {
        let mut inputs: Vec<String> = [
            "0",
            "-0",
            "7",
            "1001",
            "-5",
            "8700.5",
            "300,25",
            "0.05",
            "-0.5",
            "1.005",
            "2.675",
            "007",
            "1e3",
            "1.",
            ".5",
            "+5",
            "1,234.5",
            "9999999999999.99",
            "99999999999999",
            "12 000",
            "-",
            "",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut x: u64 = 12345;
        for _ in 0..20000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let int = (x >> 20) % 10u64.pow((x % 14) as u32).max(1);
            inputs.push(match x % 4 {
                0 => format!("{int}"),
                1 => format!("{int}.{}", (x >> 8) % 10),
                2 => format!("-{int},{:02}", (x >> 8) % 100),
                _ => format!("{int}.{:02}", (x >> 8) % 100),
            });
        }
        for s in &inputs {
            if let Some(fast) = exact_money(s) {
                assert_eq!(Ok(fast), format_money_float(s), "{s}");
            }
        }
        assert!(exact_money("300,25").is_some() && exact_money("1e3").is_none());
        for days in (-800_000..3_000_000).step_by(997) {
            let d = chrono::NaiveDate::from_num_days_from_ce_opt(days).unwrap();
            assert_eq!(ymd(d), d.format("%Y-%m-%d").to_string());
        }
    }

    #[test]
    fn days_shift_in_the_same_form() {
        assert_eq!(shift_days("2025-03-01", -1).unwrap(), "2025-02-28");
        assert_eq!(
            shift_days("2025-01-31T10:00:00+03:00", 1).unwrap(),
            "2025-02-01T10:00:00+03:00"
        );
        assert_eq!(
            shift_days("2025-01-31 23:59:59", 30).unwrap(),
            "2025-03-02 23:59:59"
        );
        assert!(shift_days("soon", 1).is_err());
    }

    #[test]
    fn money_has_two_decimals() {
        assert_eq!(format_money("9000").unwrap(), "9000.00");
        assert_eq!(format_money("8700.5").unwrap(), "8700.50");
        assert_eq!(format_money("300,25").unwrap(), "300.25");
        assert!(format_money("n/a").is_err());
    }
}
