//! Call logs for the Data API emulator, made to match a set of CRM orders: each ordering phone
//! called some time before its first order (plus lost calls, calls after the order and calls from
//! numbers that never ordered). Deterministic for given arguments.

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDateTime};

use super::dataapi::Call;
use crate::orders::{Order, moscow};

/// SplitMix64, as the orders emulator uses: tiny and stable across dependency upgrades.
pub(crate) struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The first order time of every valid phone, in the account's time zone (Moscow).
pub fn first_orders(orders: &[Order]) -> BTreeMap<String, NaiveDateTime> {
    let mut first: BTreeMap<String, NaiveDateTime> = BTreeMap::new();
    for o in orders {
        let Ok(phone) = normalize_phone(&o.phone) else {
            continue;
        };
        let at = o.created_at.with_timezone(&moscow()).naive_local();
        first
            .entry(phone)
            .and_modify(|t| *t = (*t).min(at))
            .or_insert(at);
    }
    first
}

/// `n_calls` calls (at least the ones the orders need): for every ordering phone except about
/// `missing_pct` percent, 1-3 answered calls within the 29 days before its first order, sometimes a
/// lost call closer to the order and a call after it; the rest come from numbers that never
/// ordered, over the 60 days before the latest order. Sorted by time, ids from 1.
pub fn calls_for_orders(
    orders: &[Order],
    n_calls: usize,
    missing_pct: u64,
    seed: u64,
) -> Vec<Call> {
    let mut rng = Rng(seed ^ 0xC0_4A61C);
    let first = first_orders(orders);
    let mut calls = Vec::with_capacity(n_calls.max(first.len() * 3));
    let push = |calls: &mut Vec<Call>, phone: &str, at: NaiveDateTime, lost: bool| {
        calls.push(Call::new(0, at, phone, lost));
    };
    for (phone, anchor) in &first {
        if rng.below(100) < missing_pct {
            continue;
        }
        let k = 1 + rng.below(3);
        for _ in 0..k {
            let back = 3600 + rng.below(29 * 86_400 - 3600) as i64;
            push(&mut calls, phone, *anchor - Duration::seconds(back), false);
        }
        if rng.below(100) < 20 {
            let back = 60 + rng.below(3000) as i64;
            push(&mut calls, phone, *anchor - Duration::seconds(back), true);
        }
        if rng.below(100) < 30 {
            let after = 3600 + rng.below(2 * 86_400) as i64;
            push(&mut calls, phone, *anchor + Duration::seconds(after), false);
        }
    }
    let latest = first
        .values()
        .max()
        .copied()
        .unwrap_or_else(|| chrono::Utc::now().with_timezone(&moscow()).naive_local());
    let span = 60 * 86_400u64;
    while calls.len() < n_calls {
        let phone = format!("7{}", 9_000_000_000 + rng.below(1_000_000_000));
        if first.contains_key(&phone) {
            continue;
        }
        let at = latest - Duration::seconds(rng.below(span) as i64);
        let lost = rng.below(100) < 15;
        push(&mut calls, &phone, at, lost);
    }
    calls.sort_by_key(|c| c.start_time);
    for (i, c) in calls.iter_mut().enumerate() {
        c.id = i as u64 + 1;
        c.communication_id = 50_000_000 + (i as u64 + 1) * 3;
    }
    calls
}

/// A small call log for [`orders_demo`](crate::orders::orders_demo):
/// every ordering phone called before its first order, except 79851112233 (ordered today, never
/// called), plus a few dozen calls from other numbers.
pub fn calls_demo(orders: &[Order]) -> Vec<Call> {
    let mut calls = calls_for_orders(orders, 40, 0, 3);
    calls.retain(|c| c.contact_phone_number != DEMO_PHONE_WITHOUT_CALLS);
    for (i, c) in calls.iter_mut().enumerate() {
        c.id = i as u64 + 1;
        c.communication_id = 50_000_000 + (i as u64 + 1) * 3;
    }
    calls
}

/// The demo phone that has orders but no calls.
pub const DEMO_PHONE_WITHOUT_CALLS: &str = "79851112233";

/// A Russian phone as the service stores it, `7XXXXXXXXXX`: CoMagic normalises on its own, so
/// the emulator keeps its own copy of the rule rather than borrowing the engine's filter.
fn normalize_phone(raw: &str) -> Result<String, String> {
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    match digits.len() {
        10 => Ok(format!("7{digits}")),
        11 if digits.starts_with('7') || digits.starts_with('8') => {
            Ok(format!("7{}", &digits[1..]))
        }
        _ => Err(format!("invalid phone number \"{raw}\"")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orders::{orders_bulk_at, orders_demo_at};

    fn day(s: &str) -> chrono::NaiveDate {
        chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn every_ordering_phone_called_before_its_first_order() {
        let orders = orders_bulk_at(400, 100, 5, day("2025-01-31"));
        let calls = calls_for_orders(&orders, 2000, 10, 9);
        assert_eq!(calls, calls_for_orders(&orders, 2000, 10, 9));
        assert_eq!(calls.len(), 2000);
        let first = first_orders(&orders);
        let with_calls = first
            .iter()
            .filter(|(p, at)| {
                calls.iter().any(|c| {
                    &c.contact_phone_number == *p
                        && !c.is_lost
                        && c.start_time <= **at
                        && c.start_time >= **at - Duration::days(30)
                })
            })
            .count();
        assert!(with_calls > 80 && with_calls < 100, "{with_calls}");
        assert!(calls.windows(2).all(|w| w[0].start_time <= w[1].start_time));

        let demo = orders_demo_at(day("2025-01-31"));
        let calls = calls_demo(&demo);
        assert!(
            !calls
                .iter()
                .any(|c| c.contact_phone_number == DEMO_PHONE_WITHOUT_CALLS)
        );
        assert!(
            calls
                .iter()
                .any(|c| c.contact_phone_number == "79161234567")
        );
    }
}
