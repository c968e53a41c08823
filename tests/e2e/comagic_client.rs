//! The Data API client against the emulator, over real HTTP.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::NaiveDateTime;
use serde_json::{Map, Value as Json, json};

use emulators::comagic::*;
use emulators::kit::{Fault, FaultRule, Scope};
use etl::connectors::comagic::data_api::*;
use etl::connectors::comagic::report_reader::*;
use etl::connectors::http::transport::Transport;

fn t(s: &str) -> NaiveDateTime {
    parse_time(s, false).unwrap()
}

fn connection(emu: &DataApiEmulator, key: bool) -> DataApiConnection {
    DataApiConnection {
        url: emu.url(),
        access_token: key.then(|| emu.token().to_string()),
        login: Some(emu.config().login.clone()),
        password: Some(emu.config().password.clone()),
        transport: Transport {
            timeout_secs: 1,
            retries: 2,
        },
        max_wait_secs: 30,
        limit_wait_secs: 1,
        reserve_points: 0,
        max_offset: 100_000,
    }
}

/// One call every 10 days over 2025.
fn year_of_calls() -> Vec<Call> {
    (0..36)
        .map(|i| {
            Call::new(
                i + 1,
                t("2025-01-01 12:00:00") + chrono::Duration::days(10 * i as i64),
                "79161234567",
                false,
            )
        })
        .collect()
}

async fn read_all(reader: &mut ReportReader) -> Vec<Json> {
    let mut rows = Vec::new();
    while let Some(page) = reader.next_page().await.unwrap() {
        rows.extend(page);
    }
    rows
}

#[tokio::test]
async fn reports_page_to_total_items_over_three_month_windows() {
    let emu = DataApiEmulator::start(DataApiConfig::default(), year_of_calls()).unwrap();
    let api = Arc::new(DataApi::new(connection(&emu, true)).unwrap());
    let mut params = Map::new();
    params.insert("fields".into(), json!(["id", "start_time"]));
    let mut reader = ReportReader::new(
        api.clone(),
        "get.calls_report",
        t("2025-01-01 00:00:00"),
        t("2025-12-31 23:59:59"),
        params.clone(),
        4,
    );
    let rows = read_all(&mut reader).await;
    let ids: Vec<u64> = rows.iter().map(|r| r["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, (1..=36).collect::<Vec<_>>());
    let log = emu.requests_of("get.calls_report");
    assert!(log.iter().all(|r| r.error.is_none()), "{log:?}");
    // 4 windows of 9, 10, 9 and 8 calls: 3 + 3 + 3 + 2 pages
    assert_eq!(log.len(), 11);
    assert_eq!(log[2].params["offset"], 8);

    // offsets capped at 5: a window with more rows than offsets can reach is read in parts
    let mut conn = connection(&emu, true);
    conn.max_offset = 5;
    let api = Arc::new(DataApi::new(conn).unwrap());
    let mut reader = ReportReader::new(
        api,
        "get.calls_report",
        t("2025-01-01 00:00:00"),
        t("2025-12-31 23:59:59"),
        params,
        2,
    );
    let rows = read_all(&mut reader).await;
    let ids: Vec<u64> = rows.iter().map(|r| r["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, (1..=36).collect::<Vec<_>>());
    let log = emu.requests_of("get.calls_report");
    assert!(
        log[11..]
            .iter()
            .all(|r| r.params["offset"].as_u64().unwrap() <= 5 && r.error.is_none())
    );
}

#[tokio::test]
async fn the_minute_budget_is_waited_for_not_exceeded() {
    let config = DataApiConfig {
        minute_limit: 4,
        minute_window: Duration::from_millis(1500),
        ..Default::default()
    };
    let emu = DataApiEmulator::start(config, year_of_calls()).unwrap();
    let api = DataApi::new(connection(&emu, true)).unwrap();
    for _ in 0..10 {
        api.call("get.account", Map::new(), Effect::Read)
            .await
            .unwrap();
    }
    let s = emu.stats();
    assert_eq!((s.limit_exceeded, s.points), (0, 10));
    assert!(api.stats.budget_waits.load(Ordering::Relaxed) >= 2);
    assert_eq!(api.stats.points.load(Ordering::Relaxed), 10);

    // someone else spends the budget: -32029 once, waited out, then done
    emu.spend(1000);
    let before = emu.stats().points;
    api.call("get.account", Map::new(), Effect::Read)
        .await
        .unwrap();
    assert_eq!(emu.stats().limit_exceeded, 1);
    assert_eq!(emu.stats().points, before + 1);
}

#[tokio::test]
async fn login_tokens_are_renewed_once_permanent_keys_are_not() {
    let emu = DataApiEmulator::start(DataApiConfig::default(), year_of_calls()).unwrap();
    let api = DataApi::new(connection(&emu, false)).unwrap();
    api.call("get.account", Map::new(), Effect::Read)
        .await
        .unwrap();
    emu.rpc_fault(RpcFaultRule::new(
        Some("get.account"),
        RpcFault::ExpireToken,
    ));
    api.call("get.account", Map::new(), Effect::Read)
        .await
        .unwrap();
    assert_eq!(emu.stats().logins, 2);
    // an answer that keeps saying "expired" is not retried forever
    emu.rpc_fault(
        RpcFaultRule::new(
            Some("get.account"),
            RpcFault::Error {
                code: -32001,
                mnemonic: "access_token_expired".into(),
            },
        )
        .times(2),
    );
    let e = api
        .call("get.account", Map::new(), Effect::Read)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, CallError::Rejected(r) if r.mnemonic == "access_token_expired"),
        "{e}"
    );
    api.logout().await;
    assert_eq!(emu.stats().logouts, 1);

    let api = DataApi::new(connection(&emu, true)).unwrap();
    emu.rpc_fault(RpcFaultRule::new(
        None,
        RpcFault::Error {
            code: -32001,
            mnemonic: "access_token_blocked".into(),
        },
    ));
    let e = api
        .call("get.account", Map::new(), Effect::Read)
        .await
        .unwrap_err();
    assert!(
        e.to_string().starts_with("-32001 access_token_blocked"),
        "{e}"
    );
    assert!(!e.to_string().contains(emu.token()));

    let mut bad = connection(&emu, false);
    bad.password = Some("nope-nope".into());
    let e = DataApi::new(bad)
        .unwrap()
        .call("get.account", Map::new(), Effect::Read)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("auth_error"), "{e}");
}

#[tokio::test]
async fn reads_are_retried_writes_with_unknown_outcome_are_not() {
    let emu = DataApiEmulator::start(DataApiConfig::default(), year_of_calls()).unwrap();
    let api = DataApi::new(connection(&emu, true)).unwrap();
    emu.faults()
        .add(FaultRule::new(Fault::Status(502)).on(Scope::Only("get.account".to_string())));
    emu.rpc_fault(RpcFaultRule::new(
        Some("get.account"),
        RpcFault::Error {
            code: -32603,
            mnemonic: "internal_error".into(),
        },
    ));
    let before = emu.stats().requests;
    api.call("get.account", Map::new(), Effect::Read)
        .await
        .unwrap();
    // 502 from the proxy, -32603, then the answer
    assert_eq!(emu.stats().requests - before, 3);

    let comm = emu.calls()[0].communication_id;
    let mut sale = Map::new();
    for (k, v) in [
        ("communication_id", json!(comm)),
        ("communication_type", json!("call")),
        ("date_time", json!("2025-01-02 00:00:00")),
        ("transaction_value", json!(100)),
    ] {
        sale.insert(k.into(), v);
    }
    emu.faults().add(
        FaultRule::new(Fault::Slow(Duration::from_secs(3)))
            .on(Scope::Only("set.tag_sales".to_string())),
    );
    let e = api
        .call("set.tag_sales", sale.clone(), Effect::Write)
        .await
        .unwrap_err();
    assert!(matches!(e, CallError::Unknown(_)), "{e}");
    assert_eq!(
        emu.communication(comm).unwrap().sales.len(),
        1,
        "the sale was made although the client gave up"
    );
    assert_eq!(emu.stats().by_method["set.tag_sales"], 1);

    let mut early = sale;
    early.insert("date_time".into(), json!("2024-01-01 00:00:00"));
    let e = api
        .call("set.tag_sales", early, Effect::Write)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, CallError::Rejected(r) if r.is_params() && r.field.as_deref() == Some("date_time")),
        "{e}"
    );

    emu.faults().add(
        FaultRule::new(Fault::Status(500))
            .on(Scope::Only("get.account".to_string()))
            .times(10),
    );
    let e = api
        .call("get.account", Map::new(), Effect::Read)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, CallError::Unavailable(m) if m.contains("HTTP 500")),
        "{e}"
    );
}

#[test]
fn missing_credentials_are_a_configuration_error() {
    let conn = DataApiConnection {
        url: "https://dataapi.comagic.ru/v2.0".into(),
        access_token: Some(String::new()),
        login: None,
        password: None,
        transport: Transport {
            timeout_secs: 1,
            retries: 0,
        },
        max_wait_secs: 1,
        limit_wait_secs: 1,
        reserve_points: 0,
        max_offset: 1,
    };
    let e = DataApi::new(conn).err().unwrap();
    assert!(e.contains("COMAGIC_ACCESS_TOKEN"), "{e}");
}
