//! Orders for the emulator: a small hand-written demo set and a deterministic bulk generator.
//!
//! Both are anchored on a day: the `_at` variants take it, the short forms use today in Moscow so
//! that the data falls inside a pipeline's default look-back window (sandbox mode, benchmarks).
//! Everything except that anchor is fixed: same arguments, same orders.

use chrono::{DateTime, Days, Duration, FixedOffset, NaiveDate, TimeZone, Utc};

use super::{Order, Payment, Sum};

/// UTC+03:00, the CRM's time zone.
pub fn moscow() -> FixedOffset {
    FixedOffset::east_opt(3 * 3600).expect("valid offset")
}

fn today_msk() -> NaiveDate {
    Utc::now().with_timezone(&moscow()).date_naive()
}

fn at(day: NaiveDate, days_back: u64, h: u32, m: u32, s: u32) -> DateTime<FixedOffset> {
    let d = day - Days::new(days_back);
    moscow()
        .from_local_datetime(&d.and_hms_opt(h, m, s).expect("valid time"))
        .single()
        .expect("fixed offset")
}

/// The ways users type one mobile number (`ten` = 10 digits without the country code).
pub fn phone_formats(ten: &str) -> [String; 10] {
    let (a, b, c, d) = (&ten[0..3], &ten[3..6], &ten[6..8], &ten[8..10]);
    [
        format!("8 ({a}) {b}-{c}-{d}"),
        format!("+7 {a} {b}{c}{d}"),
        format!("+7 ({a}) {b}-{c}-{d}"),
        format!("8{ten}"),
        format!("7{ten}"),
        format!("+7{ten}"),
        ten.to_string(),
        format!("8-{a}-{b}-{c}-{d}"),
        format!("+7 {a} {b} {c} {d}"),
        format!("8 {a} {b} {c} {d}"),
    ]
}

const SERVICES: [&str; 12] = [
    "Общий анализ крови",
    "Биохимический анализ крови",
    "УЗИ брюшной полости",
    "Консультация терапевта",
    "ПЦР-тест на COVID-19",
    "Витамин D (25-OH)",
    "Ферритин",
    "Гормоны щитовидной железы (ТТГ, Т4 св.)",
    "Коагулограмма",
    "Общий анализ мочи",
    "Липидный профиль",
    "Гликированный гемоглобин (HbA1c)",
];

fn order(
    id: u64,
    created_at: DateTime<FixedOffset>,
    phone: &str,
    service: &str,
    sums: Vec<Sum>,
) -> Order {
    let payments = sums
        .into_iter()
        .enumerate()
        .map(|(i, sum)| Payment {
            sum,
            paid_at: created_at + Duration::minutes(5 + 90 * i as i64),
        })
        .collect();
    Order {
        id,
        number: format!("ORD-{id:06}"),
        created_at,
        phone: phone.to_string(),
        service: service.to_string(),
        payments,
    }
}

/// [`orders_demo_at`] anchored on today in Moscow.
pub fn orders_demo() -> Vec<Order> {
    orders_demo_at(today_msk())
}

/// Twelve orders over the 40 days up to `today`:
/// - 79161234567 three times, typed three ways, sums 1500 + "2300.50" + "1250";
/// - 79035551234 twice (one order has two payments, 3200 + "800"), the second 40 days back, outside
///   a 30-day window;
/// - numbers typed without the country code or with dashes, a float sum (1999.99), a Moscow
///   landline (74951234567) with two payments;
/// - an order without payments (79265554433) and one with a phone that is not a number ("12-34");
/// - ids 1..=12 in created_at order except that id 12 is the oldest.
pub fn orders_demo_at(today: NaiveDate) -> Vec<Order> {
    let s = &SERVICES;
    vec![
        order(
            1,
            at(today, 7, 9, 12, 0),
            "8 (916) 123-45-67",
            s[0],
            vec![Sum::int(1500)],
        ),
        order(
            2,
            at(today, 6, 10, 40, 0),
            "+7 (903) 555-12-34",
            s[2],
            vec![Sum::int(3200), Sum::text("800")],
        ),
        order(
            3,
            at(today, 6, 15, 5, 30),
            "+7 916 1234567",
            s[1],
            vec![Sum::text("2300.50")],
        ),
        order(
            4,
            at(today, 5, 11, 0, 0),
            "89031112233",
            s[3],
            vec![Sum::float(1999.99)],
        ),
        order(
            5,
            at(today, 4, 8, 30, 0),
            "8-925-000-11-22",
            s[4],
            vec![Sum::text("2500.00")],
        ),
        order(
            6,
            at(today, 3, 13, 45, 0),
            "9267654321",
            s[5],
            vec![Sum::int(2100)],
        ),
        order(7, at(today, 3, 17, 20, 0), "+79265554433", s[6], vec![]),
        order(
            8,
            at(today, 2, 12, 0, 0),
            "7 (495) 123 45 67",
            s[7],
            vec![Sum::int(1700), Sum::int(900)],
        ),
        order(
            9,
            at(today, 1, 9, 55, 0),
            "+7 916 123 45 67",
            s[8],
            vec![Sum::text("1250")],
        ),
        order(
            10,
            at(today, 1, 16, 10, 0),
            "12-34",
            s[9],
            vec![Sum::int(450)],
        ),
        order(
            11,
            at(today, 0, 10, 0, 0),
            "+7 985 111 22 33",
            s[10],
            vec![Sum::int(3100)],
        ),
        order(
            12,
            at(today, 40, 14, 0, 0),
            "8 903 555 12 34",
            s[11],
            vec![Sum::int(999)],
        ),
    ]
}

/// SplitMix64: tiny, and stable across dependency upgrades (unlike `StdRng`).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// [`orders_bulk_at`] anchored on today in Moscow.
pub fn orders_bulk(n_orders: usize, n_phones: usize, seed: u64) -> Vec<Order> {
    orders_bulk_at(n_orders, n_phones, seed, today_msk())
}

/// `n_orders` orders from `n_phones` distinct mobile numbers (each used at least once when
/// `n_orders >= n_phones`), created over the 30 days up to `today`, each phone typed in a random
/// one of [`phone_formats`]; 0-3 payments (mostly 1) with sums as integers, floats or strings.
/// Ids run 1..=n_orders in created_at order. Same arguments, same orders.
pub fn orders_bulk_at(n_orders: usize, n_phones: usize, seed: u64, today: NaiveDate) -> Vec<Order> {
    const CODES: [u64; 10] = [916, 903, 925, 926, 985, 977, 915, 905, 999, 968];
    let mut rng = Rng(seed);
    let n_phones = n_phones.max(1);
    let mut seen = std::collections::HashSet::with_capacity(n_phones);
    let mut phones = Vec::with_capacity(n_phones);
    while phones.len() < n_phones {
        let ten = CODES[rng.below(10) as usize] * 10_000_000 + rng.below(10_000_000);
        if seen.insert(ten) {
            phones.push(ten.to_string());
        }
    }
    let mut orders: Vec<Order> = (0..n_orders)
        .map(|k| {
            let phone = if k < n_phones {
                &phones[k]
            } else {
                &phones[rng.below(n_phones as u64) as usize]
            };
            let phone = phone_formats(phone)[rng.below(10) as usize].clone();
            let created_at = at(
                today,
                rng.below(30),
                8 + rng.below(13) as u32,
                rng.below(60) as u32,
                rng.below(60) as u32,
            );
            let n_payments = match rng.below(100) {
                0..5 => 0,
                5..75 => 1,
                75..95 => 2,
                _ => 3,
            };
            let sums = (0..n_payments)
                .map(|_| {
                    let rub = (rng.below(400) + 10) as i64 * 50;
                    match rng.below(10) {
                        0..5 => Sum::int(rub),
                        5..7 => Sum::float(rub as f64 + 0.5),
                        7..9 => Sum::text(format!("{rub}.00")),
                        _ => Sum::text(rub.to_string()),
                    }
                })
                .collect();
            let service = SERVICES[rng.below(SERVICES.len() as u64) as usize];
            order(0, created_at, &phone, service, sums)
        })
        .collect();
    orders.sort_by_key(|o| o.created_at);
    for (i, o) in orders.iter_mut().enumerate() {
        o.id = i as u64 + 1;
        o.number = format!("ORD-{:06}", o.id);
    }
    orders
}
