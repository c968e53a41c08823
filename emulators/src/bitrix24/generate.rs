//! Data generators: `Portal::demo()` (a small hand-shaped portal in the form of seed 001, for
//! the sandbox and e2e tests) and deterministic bulk generators for benchmarks.

use super::cell::{Cell, MultiItem};
use super::data::{Portal, Row, Table};
use super::dates::{civil_from_days, days_from_civil, format_date, format_ts, parse_datetime};
use super::schema::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

mod bp;
mod bulk;
mod demo;

use bulk::*;

/// Instant the demo portal is anchored at: 2024-06-10T12:00:00+03:00.
pub const DEMO_NOW: i64 = 1_718_010_000;

const MALE_FIRST: [&str; 12] = [
    "Василий",
    "Дмитрий",
    "Сергей",
    "Павел",
    "Алексей",
    "Игорь",
    "Андрей",
    "Михаил",
    "Олег",
    "Николай",
    "Кирилл",
    "Артём",
];
const FEMALE_FIRST: [&str; 12] = [
    "Елена",
    "Ирина",
    "Анна",
    "Ольга",
    "Татьяна",
    "Наталья",
    "Мария",
    "Светлана",
    "Юлия",
    "Екатерина",
    "Дарья",
    "Полина",
];
const LAST: [(&str, &str); 12] = [
    ("Зарудный", "Зарудная"),
    ("Свеклов", "Свеклова"),
    ("Кузнецов", "Кузнецова"),
    ("Орлов", "Орлова"),
    ("Морозов", "Морозова"),
    ("Волков", "Волкова"),
    ("Лебедев", "Лебедева"),
    ("Соколов", "Соколова"),
    ("Новиков", "Новикова"),
    ("Козлов", "Козлова"),
    ("Петров", "Петрова"),
    ("Смирнов", "Смирнова"),
];
const CHILD_FIRST: [&str; 12] = [
    "Кирилл",
    "Маша",
    "Артём",
    "Соня",
    "Миша",
    "Алиса",
    "Егор",
    "Вера",
    "Лев",
    "Ева",
    "Тимофей",
    "Варя",
];
const TRANSLIT: [&str; 12] = [
    "zarudny",
    "sveklov",
    "kuznetsov",
    "orlov",
    "morozov",
    "volkov",
    "lebedev",
    "sokolov",
    "novikov",
    "kozlov",
    "petrov",
    "smirnov",
];

/// (PRODUCT_ID, PRODUCT_NAME, PRICE_BRUTTO, DISCOUNT_SUM, MEASURE_NAME)
const PRODUCTS: [(u64, &str, f64, f64, &str); 6] = [
    (60130, " 6 КМС индивидуальные 45 мин", 9000.0, 300.0, "мес"),
    (60132, "8 групповых занятий", 6400.0, 0.0, "шт"),
    (60134, "12 групповых занятий", 9000.0, 900.0, "шт"),
    (60140, "Онлайн групповое 4 занятия", 3200.0, 0.0, "шт"),
    (60142, "Онлайн индивидуальное 45 мин", 2500.0, 0.0, "шт"),
    (60150, "Разовое занятие", 1200.0, 0.0, "шт"),
];

fn ts(s: &str) -> i64 {
    parse_datetime(s, 3 * 3600).expect("valid literal")
}

fn obj(v: Value) -> Row {
    match v {
        Value::Object(m) => m,
        _ => Row::new(),
    }
}

/// A product row in the crm.deal.productrows.get shape (mixed number/string types).
pub fn product_row(product: usize, sort: u64) -> Row {
    let (pid, name, brutto, discount, measure) = PRODUCTS[product % PRODUCTS.len()];
    let price = brutto - discount;
    let rate = if brutto > 0.0 {
        (discount / brutto * 10_000.0).round() / 100.0
    } else {
        0.0
    };
    obj(json!({
        "PRODUCT_ID": pid,
        "PRODUCT_NAME": name,
        "ORIGINAL_PRODUCT_NAME": name,
        "PRODUCT_DESCRIPTION": null,
        "PRICE": price,
        "PRICE_EXCLUSIVE": price,
        "PRICE_NETTO": brutto,
        "PRICE_BRUTTO": brutto,
        "PRICE_ACCOUNT": format!("{price:.2}"),
        "QUANTITY": 1,
        "DISCOUNT_TYPE_ID": 1,
        "DISCOUNT_RATE": rate,
        "DISCOUNT_SUM": discount,
        "TAX_RATE": 0,
        "TAX_INCLUDED": "N",
        "CUSTOMIZED": "Y",
        "MEASURE_CODE": if measure == "мес" { 1 } else { 796 },
        "MEASURE_NAME": measure,
        "SORT": sort,
    }))
}

fn date_of(t: i64, offset: i32) -> String {
    let (y, m, d) = civil_from_days((t + offset as i64).div_euclid(86_400));
    format_date(y, m, d, offset)
}

fn phone_formats(i: usize) -> String {
    let n = 1_234_500 + i * 7919 % 8_000_000;
    let (a, b, c) = (n / 10_000 % 1000, n / 100 % 100, n % 100);
    match i % 7 {
        0 => format!("8 (926) {a:03}-{b:02}-{c:02}"),
        1 => format!("+7 (926) {a:03}{b:02}{c:02}"),
        2 => format!("926{a:03}{b:02}{c:02}"),
        3 => format!("+7903{a:03}{b:02}{c:02}"),
        4 => format!("8-916-{a:03}-{b:02}-{c:02}"),
        5 => format!("7 915 {a:03} {b:02} {c:02}"),
        _ => format!("+7 903 {a:03}-{b:02}-{c:02}"),
    }
}

/// Size of a [`Portal::report_scale`] portal.
#[derive(Clone, Debug)]
pub struct ReportScale {
    pub seed: u64,
    pub departments: usize,
    pub users: usize,
    pub companies: usize,
    pub contacts: usize,
    pub deals: usize,
    pub activities: usize,
    /// activities start between `now - history_days` and `now + 14 days`
    pub history_days: u32,
    pub now: i64,
}

impl Default for ReportScale {
    fn default() -> Self {
        ReportScale {
            seed: 42,
            departments: 12,
            users: 200,
            companies: 20_000,
            contacts: 50_000,
            deals: 100_000,
            activities: 1_000_000,
            history_days: 180,
            now: DEMO_NOW,
        }
    }
}

#[cfg(test)]
mod tests;
