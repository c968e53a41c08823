//! The orders emulator over real HTTP.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::*;
use crate::kit::test_http_client;

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

/// What a pipeline would do with the phone: digits, 10 -> 7 + digits, 8XXXXXXXXXX -> 7XXXXXXXXXX.
fn normalise(phone: &str) -> Option<String> {
    let d: String = phone.chars().filter(char::is_ascii_digit).collect();
    match d.len() {
        10 => Some(format!("7{d}")),
        11 if d.starts_with('8') || d.starts_with('7') => Some(format!("7{}", &d[1..])),
        _ => None,
    }
}

async fn get(emu: &OrdersEmulator, query: &str) -> (StatusCode, Value) {
    let r = test_http_client(Duration::from_secs(5))
        .get(format!("{}/api/orders{query}", emu.url()))
        .bearer_auth(emu.token())
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap())
}

#[test]
fn generators_are_deterministic_and_cover_the_formats() {
    let a = orders_bulk_at(500, 120, 7, day("2025-01-31"));
    assert_eq!(a, orders_bulk_at(500, 120, 7, day("2025-01-31")));
    assert_ne!(a, orders_bulk_at(500, 120, 8, day("2025-01-31")));
    assert_eq!(a.len(), 500);
    let phones: HashSet<String> = a.iter().map(|o| normalise(&o.phone).unwrap()).collect();
    assert_eq!(phones.len(), 120);
    assert!(phones.iter().all(|p| p.len() == 11 && p.starts_with("79")));
    let ids: Vec<u64> = a.iter().map(|o| o.id).collect();
    assert_eq!(ids, (1..=500).collect::<Vec<_>>());
    assert!(a.windows(2).all(|w| w[0].created_at <= w[1].created_at));
    assert!(
        a.iter()
            .all(|o| o.created_at.date_naive() > day("2025-01-01"))
    );
    let raw = serde_json::to_value(&a).unwrap();
    let sums: Vec<&Value> = raw
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|o| o["payments"].as_array().unwrap())
        .map(|p| &p["sum"])
        .collect();
    assert!(
        sums.iter().any(|s| s.is_string())
            && sums.iter().any(|s| s.is_i64())
            && sums.iter().any(|s| s.is_f64())
    );
    assert_eq!(
        raw[0]["created_at"].as_str().unwrap().len(),
        "2025-01-02T10:15:00+03:00".len()
    );

    let demo = orders_demo_at(day("2025-01-31"));
    assert_eq!(demo.len(), 12);
    let first = serde_json::to_value(&demo[0]).unwrap();
    assert_eq!(
        first,
        json!({"id": 1, "number": "ORD-000001", "created_at": "2025-01-24T09:12:00+03:00", "phone": "8 (916) 123-45-67",
               "service": "Общий анализ крови", "payments": [{"sum": 1500, "paid_at": "2025-01-24T09:17:00+03:00"}]})
    );
    let same: f64 = demo
        .iter()
        .filter(|o| normalise(&o.phone).as_deref() == Some("79161234567"))
        .map(Order::total)
        .sum();
    assert_eq!(same, 1500.0 + 2300.5 + 1250.0);
    assert_eq!(phone_formats("9161234567")[0], "8 (916) 123-45-67");
    assert_eq!(phone_formats("9161234567")[1], "+7 916 1234567");
}

#[tokio::test]
async fn pages_through_all_orders_from_date() {
    let orders = orders_bulk_at(250, 40, 1, day("2025-01-31"));
    let emu = OrdersEmulator::start(OrdersConfig::default(), orders.clone()).unwrap();
    let mut seen = Vec::new();
    let mut page = Some(1);
    while let Some(p) = page {
        let (s, body) = get(&emu, &format!("?date_from=2024-12-01&page={p}")).await;
        assert_eq!(s, StatusCode::OK);
        let batch = body["orders"].as_array().unwrap();
        assert!(batch.len() <= 100);
        seen.extend(batch.iter().map(|o| o["id"].as_u64().unwrap()));
        page = body["next_page"].as_u64();
    }
    assert_eq!(seen, (1..=250).collect::<Vec<_>>());
    assert_eq!(emu.requests(), 3);
    assert_eq!(
        emu.queries()[2],
        OrdersQuery {
            date_from: Some("2024-12-01".into()),
            page: Some("3".into())
        }
    );

    // date_from keeps created_at >= that Moscow midnight
    let cut = day("2025-01-20");
    let expected = orders
        .iter()
        .filter(|o| o.created_at.date_naive() >= cut)
        .count();
    let (_, body) = get(&emu, "?date_from=2025-01-20&page=1").await;
    let (_, body2) = get(&emu, "?date_from=2025-01-20&page=2").await;
    let got = body["orders"].as_array().unwrap().len() + body2["orders"].as_array().unwrap().len();
    assert_eq!(got, expected);
    assert!(body["orders"][0]["created_at"].as_str().unwrap() >= "2025-01-20");
    // past the end: empty, no next page; no page means page 1
    let (_, body) = get(&emu, "?date_from=2024-12-01&page=9").await;
    assert_eq!(body, json!({"orders": [], "next_page": null}));
    assert_eq!(get(&emu, "").await.1["next_page"], json!(2));
}

#[tokio::test]
async fn small_pages_and_runtime_changes() {
    let today = day("2025-01-31");
    let emu = OrdersEmulator::start(
        OrdersConfig {
            page_size: 5,
            ..Default::default()
        },
        orders_demo_at(today),
    )
    .unwrap();
    let (_, body) = get(&emu, "?date_from=2025-01-01").await;
    assert_eq!(body["orders"].as_array().unwrap().len(), 5);
    assert_eq!(body["next_page"], json!(2));
    let (_, body) = get(&emu, "?date_from=2025-01-01&page=3").await;
    assert_eq!(
        (body["orders"].as_array().unwrap().len(), &body["next_page"]),
        (1, &Value::Null)
    );

    // a changed sum is visible on the next request
    assert!(emu.update_order(3, |o| o.payments[0].sum = Sum::text("2400.00")));
    let pay = Payment {
        sum: Sum::int(100),
        paid_at: orders_demo_at(today)[0].created_at,
    };
    assert!(emu.add_payment(1, pay));
    assert!(!emu.add_payment(
        999,
        Payment {
            sum: Sum::int(1),
            paid_at: orders_demo_at(today)[0].created_at
        }
    ));
    let mut new = orders_demo_at(today)[0].clone();
    new.id = 13;
    new.phone = "+7 999 000 00 00".into();
    emu.push_order(new);
    let (_, b1) = get(&emu, "?date_from=2025-01-01&page=1").await;
    let all: Vec<Value> = b1["orders"].as_array().unwrap().clone();
    let o3 = all.iter().find(|o| o["id"] == json!(3)).unwrap();
    assert_eq!(o3["payments"][0]["sum"], json!("2400.00"));
    let o1 = all.iter().find(|o| o["id"] == json!(1)).unwrap();
    assert_eq!(o1["payments"].as_array().unwrap().len(), 2);
    assert!(all.iter().any(|o| o["id"] == json!(13)));
    assert_eq!(emu.orders().len(), 13);
}

#[tokio::test]
async fn errors_and_faults() {
    let emu = OrdersEmulator::start(OrdersConfig::default(), orders_demo()).unwrap();
    let http = test_http_client(Duration::from_secs(5));
    let r = http
        .get(format!("{}/api/orders", emu.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        get(&emu, "?date_from=01.01.2025").await,
        (
            StatusCode::BAD_REQUEST,
            json!({"detail": "date_from must be a date YYYY-MM-DD; got \"01.01.2025\"."})
        )
    );
    assert_eq!(get(&emu, "?page=0").await.0, StatusCode::BAD_REQUEST);
    let r = http
        .get(format!("{}/api/order", emu.url()))
        .bearer_auth(emu.token())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    emu.faults().fail_next(1, Fault::Status(500));
    assert_eq!(
        get(&emu, "").await,
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"detail": "Injected fault: HTTP 500"})
        )
    );
    assert_eq!(get(&emu, "").await.0, StatusCode::OK);

    emu.faults().add(
        FaultRule::new(Fault::Slow(Duration::from_millis(150)))
            .on(Scope::Only(OrdersEndpoint::List)),
    );
    let t = Instant::now();
    assert_eq!(get(&emu, "").await.0, StatusCode::OK);
    assert!(t.elapsed() >= Duration::from_millis(150));
    assert_eq!(emu.requests(), 7);
    emu.shutdown();
}
