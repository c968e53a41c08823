//! The Data API emulator over real HTTP.

use std::time::Duration;

use chrono::NaiveDateTime;
use serde_json::{Value, json};

use super::*;
use crate::kit::test_http_client;

fn t(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
}

fn calls() -> Vec<Call> {
    vec![
        Call::new(1, t("2025-01-10 10:00:00"), "79161234567", false),
        Call::new(2, t("2025-01-12 11:00:00"), "79161234567", true),
        Call::new(3, t("2025-01-15 12:00:00"), "79035551234", false),
        Call::new(4, t("2025-03-01 09:00:00"), "79161234567", false),
    ]
}

async fn rpc(emu: &DataApiEmulator, body: Value) -> Value {
    let r = test_http_client(Duration::from_secs(5))
        .post(emu.url())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn call(emu: &DataApiEmulator, method: &str, mut params: Value) -> Value {
    params["access_token"] = json!(emu.token());
    rpc(
        emu,
        json!({"jsonrpc": "2.0", "id": "req-1", "method": method, "params": params}),
    )
    .await
}

fn mnemonic(v: &Value) -> &str {
    v["error"]["data"]["mnemonic"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn envelope_errors_are_json_rpc() {
    let emu = DataApiEmulator::start(DataApiConfig::default(), calls()).unwrap();
    let http = test_http_client(Duration::from_secs(5));
    let bad: Value = http
        .post(emu.url())
        .body("{nope")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bad["error"]["code"], -32700);
    assert_eq!(
        mnemonic(
            &rpc(
                &emu,
                json!([{"jsonrpc": "2.0", "id": 1, "method": "get.account"}])
            )
            .await
        ),
        "batch_opreations_not_supported"
    );
    assert_eq!(
        mnemonic(&rpc(&emu, json!({"jsonrpc": "2.0", "method": "get.account"})).await),
        "notifications_not_supported"
    );
    assert_eq!(
        rpc(
            &emu,
            json!({"jsonrpc": "1.0", "id": 1, "method": "get.account"})
        )
        .await["error"]["code"],
        -32600
    );
    let r = rpc(
        &emu,
        json!({"jsonrpc": "2.0", "id": 77, "method": "get.nothing", "params": {}}),
    )
    .await;
    assert_eq!(
        (r["id"].clone(), r["error"]["code"].clone()),
        (json!(77), json!(-32601))
    );
    let r = call(&emu, "get.account", json!({"bogus": 1})).await;
    assert_eq!(
        (mnemonic(&r), r["error"]["data"]["field"].as_str()),
        ("unexpected_parameters", Some("bogus"))
    );
    let r = rpc(&emu, json!({"jsonrpc": "2.0", "id": "x", "method": "get.account", "params": {"access_token": "wrong"}})).await;
    assert_eq!(
        (r["error"]["code"].clone(), mnemonic(&r)),
        (json!(-32001), "access_token_invalid")
    );
    let ok = call(&emu, "get.account", json!({})).await;
    assert_eq!(ok["id"], "req-1");
    assert_eq!(ok["result"]["metadata"]["limits"]["minute_limit"], 10_000);
    // the token never reaches the log
    assert!(
        emu.log()
            .iter()
            .all(|r| !r.params.to_string().contains(emu.token()))
    );
}

#[tokio::test]
async fn login_tokens_expire_and_logout_kills_them() {
    let emu = DataApiEmulator::start(DataApiConfig::default(), calls()).unwrap();
    let login = |password: &str| json!({"jsonrpc": "2.0", "id": 1, "method": "login.user", "params": {"login": "cm-user", "password": password}});
    assert_eq!(mnemonic(&rpc(&emu, login("wrong")).await), "auth_error");
    let r = rpc(&emu, login("cm-password-42")).await;
    let token = r["result"]["data"]["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        r["result"]["data"]["expire_at"].as_i64().unwrap() > chrono::Utc::now().timestamp() + 3000
    );
    let with = |method: &str| json!({"jsonrpc": "2.0", "id": 2, "method": method, "params": {"access_token": token}});
    assert!(rpc(&emu, with("get.account")).await.get("result").is_some());
    emu.rpc_fault(RpcFaultRule::new(
        Some("get.account"),
        RpcFault::ExpireToken,
    ));
    assert_eq!(
        mnemonic(&rpc(&emu, with("get.account")).await),
        "access_token_expired"
    );
    let r = rpc(&emu, login("cm-password-42")).await;
    let token2 = r["result"]["data"]["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let logout = json!({"jsonrpc": "2.0", "id": 3, "method": "logout.user", "params": {"access_token": token2}});
    assert!(rpc(&emu, logout.clone()).await.get("result").is_some());
    assert_eq!(mnemonic(&rpc(&emu, logout).await), "access_token_invalid");
    assert_eq!(
        (emu.stats().logins, emu.stats().logouts, emu.live_tokens()),
        (2, 1, 0)
    );
}

#[tokio::test]
async fn reports_window_fields_filter_sort_and_paging() {
    let emu = DataApiEmulator::start(DataApiConfig::default(), calls()).unwrap();
    let window = json!({"date_from": "2025-01-01 00:00:00", "date_till": "2025-01-31 23:59:59"});
    let r = call(&emu, "get.calls_report", window.clone()).await;
    assert_eq!(r["result"]["metadata"]["total_items"], 3);
    assert_eq!(
        r["result"]["data"][0]["contact_phone_number"],
        "79161234567"
    );

    let mut p = window.clone();
    p["fields"] = json!(["id", "is_lost"]);
    p["filter"] = json!({"filters": [{"field": "contact_phone_number", "operator": "=", "value": "79161234567"},
                                      {"field": "is_lost", "operator": "=", "value": false}], "condition": "and"});
    let r = call(&emu, "get.calls_report", p).await;
    assert_eq!(r["result"]["data"], json!([{"id": 1, "is_lost": false}]));

    let mut p = window.clone();
    p["sort"] = json!([{"field": "start_time", "order": "desc"}]);
    p["limit"] = json!(1);
    p["offset"] = json!(1);
    p["fields"] = json!(["id"]);
    let r = call(&emu, "get.calls_report", p).await;
    assert_eq!(
        (
            r["result"]["data"].clone(),
            r["result"]["metadata"]["total_items"].clone()
        ),
        (json!([{"id": 2}]), json!(3))
    );

    let long = json!({"date_from": "2025-01-01 00:00:00", "date_till": "2025-04-01 00:00:01"});
    assert_eq!(
        mnemonic(&call(&emu, "get.calls_report", long).await),
        "date_interval_limit_reached"
    );
    let mut p = window.clone();
    p["limit"] = json!(10_001);
    assert_eq!(
        mnemonic(&call(&emu, "get.calls_report", p).await),
        "invalid_parameter_value"
    );
    let mut p = window.clone();
    p["filter"] = json!({"field": "talk_duration", "operator": ">", "value": 1});
    assert_eq!(
        mnemonic(&call(&emu, "get.calls_report", p).await),
        "filter_prohibited"
    );
    let mut p = window.clone();
    p["sort"] = json!([{"field": "contact_phone_number", "order": "asc"}]);
    assert_eq!(
        mnemonic(&call(&emu, "get.calls_report", p).await),
        "sort_prohibited"
    );
    assert_eq!(
        mnemonic(&call(&emu, "get.calls_report", json!({})).await),
        "required_parameter_missed"
    );

    let r = call(
        &emu,
        "get.tags",
        json!({"filter": {"field": "name", "operator": "=", "value": "Продажа"}}),
    )
    .await;
    assert_eq!(
        r["result"]["data"],
        json!([{"id": SALE_TAG_ID, "name": "Продажа", "is_system": true, "tag_group_id": null}])
    );

    let r = call(&emu, "get.communications_report", window).await;
    assert_eq!(
        r["result"]["data"][0]["id"],
        emu.calls()[0].communication_id
    );
}

#[tokio::test]
async fn sales_are_not_idempotent_and_unset_clears_them() {
    let emu = DataApiEmulator::start(DataApiConfig::default(), calls()).unwrap();
    let comm = emu.calls()[0].communication_id;
    let sale = json!({"communication_id": comm, "communication_type": "call", "date_time": "2025-01-11 10:00:00",
                      "transaction_value": 1500.5, "comment": "Общий анализ крови"});
    let a = call(&emu, "set.tag_sales", sale.clone()).await;
    let b = call(&emu, "set.tag_sales", sale.clone()).await;
    assert_ne!(a["result"]["data"]["id"], b["result"]["data"]["id"]);
    let c = emu.communication(comm).unwrap();
    assert_eq!(
        (c.sales.len(), c.sale_cost(), c.tags[0].tag_id),
        (2, Some(3001.0), SALE_TAG_ID)
    );

    let mut early = sale.clone();
    early["date_time"] = json!("2025-01-09 10:00:00");
    assert_eq!(
        call(&emu, "set.tag_sales", early).await["error"]["data"]["field"],
        "date_time"
    );
    let mut long = sale.clone();
    long["comment"] = json!("я".repeat(256));
    assert_eq!(
        call(&emu, "set.tag_sales", long).await["error"]["data"]["field"],
        "comment"
    );
    let mut missing = sale.clone();
    missing["communication_id"] = json!(1);
    assert_eq!(
        mnemonic(&call(&emu, "set.tag_sales", missing).await),
        "invalid_parameter_value"
    );

    let unset =
        json!({"communication_id": comm, "communication_type": "call", "tag_id": SALE_TAG_ID});
    assert!(
        call(&emu, "unset.tag_communications", unset)
            .await
            .get("result")
            .is_some()
    );
    let c = emu.communication(comm).unwrap();
    assert_eq!((c.sales.len(), c.tags.len()), (0, 0));
    let r = call(&emu, "get.calls_report", json!({"date_from": "2025-01-10 00:00:00", "date_till": "2025-01-10 23:00:00", "fields": ["sale_cost", "tags"]})).await;
    assert_eq!(
        r["result"]["data"],
        json!([{"sale_cost": null, "tags": []}])
    );
}

#[tokio::test]
async fn points_run_out_and_come_back() {
    let config = DataApiConfig {
        minute_limit: 3,
        // Long enough that four calls fit inside it on a loaded CI machine.
        minute_window: Duration::from_secs(3),
        ..Default::default()
    };
    let emu = DataApiEmulator::start(config, calls()).unwrap();
    for left in [2, 1, 0] {
        let r = call(&emu, "get.account", json!({})).await;
        assert_eq!(r["result"]["metadata"]["limits"]["minute_remaining"], left);
    }
    let r = call(&emu, "get.account", json!({})).await;
    assert_eq!(
        (r["error"]["code"].clone(), mnemonic(&r)),
        (json!(-32029), "limit_exceeded")
    );
    assert!(
        r["error"]["data"]["metadata"]["limits"]["minute_reset"]
            .as_u64()
            .unwrap()
            >= 1
    );
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert!(
        call(&emu, "get.account", json!({}))
            .await
            .get("result")
            .is_some()
    );
    let s = emu.stats();
    assert_eq!(
        (s.points, s.limit_exceeded, s.by_method["get.account"]),
        (4, 1, 5)
    );

    let emu = DataApiEmulator::start(
        DataApiConfig {
            sales_enabled: false,
            ip_whitelisted: true,
            ..Default::default()
        },
        calls(),
    )
    .unwrap();
    let comm = emu.calls()[0].communication_id;
    let r = call(&emu, "set.tag_sales", json!({"communication_id": comm, "communication_type": "call", "date_time": "2025-01-11 10:00:00", "transaction_value": 1})).await;
    assert_eq!(
        (r["error"]["code"].clone(), mnemonic(&r)),
        (json!(-32008), "method_component_disabled")
    );
}

#[tokio::test]
async fn legacy_sessions_params_in_body_and_trailing_slashes() {
    let day = chrono::NaiveDate::parse_from_str("2025-01-31", "%Y-%m-%d").unwrap();
    let emu = LegacyEmulator::start(LegacyConfig::default(), legacy_demo(day, 3)).unwrap();
    let http = test_http_client(Duration::from_secs(5));
    let login: Value = http
        .post(format!("{}login/", emu.url()))
        .form(&[("login", "cm-user"), ("password", "cm-password-42")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = login["data"]["session_key"].as_str().unwrap().to_string();
    assert_eq!(key.len(), 32);
    // hexeh: GET with the parameters in a form body
    let sites: Value = http
        .get(format!("{}v1/site/", emu.url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("session_key={key}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(sites["data"].as_array().unwrap().len(), 2);
    let r = http
        .get(format!("{}v1/site?session_key={key}", emu.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let stat: Value = http
        .get(format!(
            "{}v1/stat/?session_key={key}&site_id=1201&date_from=2025-01-31&date_till=2025-01-31",
            emu.url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stat["data"].as_array().unwrap().len(), 1);
    let bye: Value = http
        .get(format!("{}logout/?session_key={key}", emu.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bye, json!({"success": true}));
    let again: Value = http
        .get(format!("{}v1/tag/?session_key={key}", emu.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        again,
        json!({"success": false, "message": "102401:Unauthorized"})
    );
    assert_eq!(emu.open_sessions(), 0);
    assert!(
        emu.log()
            .iter()
            .all(|r| !r.params.values().any(|v| v == &key))
    );
}
