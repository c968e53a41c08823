//! Tests over real HTTP (reqwest against the server on 127.0.0.1).

use super::*;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use std::time::Duration;

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

fn enc(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

async fn post(c: &reqwest::Client, emu: &Emulator, method: &str, body: Value) -> (u16, Value) {
    let r = c
        .post(format!("{}{method}", emu.webhook_url()))
        .json(&body)
        .send()
        .await
        .expect("send");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get(c: &reqwest::Client, url: String) -> (u16, Value) {
    let r = c.get(url).send().await.expect("send");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn relaxed() -> EmulatorConfig {
    EmulatorConfig::unlimited()
}

#[tokio::test]
async fn pages_next_total_and_start_minus_one() {
    let emu = Emulator::start(relaxed(), Portal::bulk_contacts(120))
        .await
        .unwrap();
    let c = client();
    let (s, b) = get(
        &c,
        format!(
            "{}crm.contact.list.json?start=0&limit=500",
            emu.webhook_url()
        ),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(b["result"].as_array().unwrap().len(), 50);
    assert_eq!(
        (b["next"].clone(), b["total"].clone()),
        (json!(50), json!(120))
    );
    assert_eq!(b["result"][0]["ID"], "1");
    assert!(
        b["result"][0].get("PHONE").is_none(),
        "multi-fields need explicit select"
    );
    assert!(
        b["result"][0].get("UF_CRM_SYNC_STATUS").is_some(),
        "no select = * + UF_*"
    );
    for k in [
        "start",
        "finish",
        "duration",
        "processing",
        "date_start",
        "date_finish",
        "operating",
        "operating_reset_at",
    ] {
        assert!(b["time"].get(k).is_some(), "time.{k}");
    }
    assert!(
        b["time"]["date_start"]
            .as_str()
            .unwrap()
            .ends_with("+03:00")
    );
    let (_, b) = get(
        &c,
        format!("{}crm.contact.list?start=100", emu.webhook_url()),
    )
    .await;
    assert_eq!(b["result"].as_array().unwrap().len(), 20);
    assert!(b.get("next").is_none());
    assert_eq!(b["total"], 120);
    let (_, b) = get(
        &c,
        format!(
            "{}crm.contact.list?start=-1&order[ID]=DESC&select[]=ID&select[]=PHONE",
            emu.webhook_url()
        ),
    )
    .await;
    assert_eq!((b["total"].clone(), b.get("next")), (json!(0), None));
    assert_eq!(b["result"][0]["ID"], "120");
    assert_eq!(
        b["result"][0]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        vec!["ID", "PHONE"]
    );
    // JSON body with upper-case parameter names, filter operators
    let (s, b) = post(
        &c,
        &emu,
        "crm.contact.list",
        json!({"FILTER": {">ID": 100, "<=ID": "105"}, "SELECT": ["ID"], "START": 0}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        b["result"],
        json!([{"ID": "101"}, {"ID": "102"}, {"ID": "103"}, {"ID": "104"}, {"ID": "105"}])
    );
    assert_eq!(b["total"], 5);
    // form body
    let r = c
        .post(format!("{}crm.contact.list", emu.webhook_url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("filter%5B%40ID%5D%5B%5D=3&filter%5B%40ID%5D%5B%5D=4&select%5B%5D=ID")
        .send()
        .await
        .unwrap();
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["result"], json!([{"ID": "3"}, {"ID": "4"}]));
    emu.shutdown().await;
}

#[tokio::test]
async fn auth_scope_and_unknown_method() {
    let cfg = EmulatorConfig {
        scopes: vec!["crm".into()],
        ..relaxed()
    };
    let emu = Emulator::start(cfg, Portal::demo()).await.unwrap();
    let c = client();
    let bad = format!("http://{}/rest/1/wrongcode/crm.contact.list", emu.addr());
    assert_eq!(
        get(&c, bad).await,
        (
            401,
            json!({"error": "NO_AUTH_FOUND", "error_description": "Wrong authorization data"})
        )
    );
    let (s, b) = post(&c, &emu, "crm.contact.lisst", json!({})).await;
    assert_eq!(
        (s, b["error"].as_str(), b["error_description"].as_str()),
        (
            404,
            Some("ERROR_METHOD_NOT_FOUND"),
            Some("Method not found!")
        )
    );
    let (s, b) = post(&c, &emu, "user.get", json!({})).await;
    assert_eq!((s, b["error"].as_str()), (403, Some("insufficient_scope")));
    let (s, b) = post(&c, &emu, "crm.contact.get", json!({"id": 1})).await;
    assert_eq!(
        (s, b),
        (400, json!({"error": "", "error_description": "Not found"}))
    );
    let (s, b) = get(
        &c,
        format!(
            "{}crm.deal.productrows.get.json?ID=96000",
            emu.webhook_url()
        ),
    )
    .await;
    assert_eq!(s, 200);
    assert!(
        b["result"][0]["PRICE"].is_number()
            && b["result"][0]["PRICE_ACCOUNT"].is_string()
            && b["result"][0]["ID"].is_string()
    );
    let (_, b) = post(&c, &emu, "crm.deal.contact.items.get", json!({"id": 96000})).await;
    assert_eq!(b["result"][0]["CONTACT_ID"], 39900);
    assert_eq!(b["result"][0]["IS_PRIMARY"], "Y");
    emu.shutdown().await;
}

fn keyset_batch(after: u64, pages: usize) -> Value {
    let mut cmd = Map::new();
    for i in 0..pages {
        let cursor = if i == 0 {
            after.to_string()
        } else {
            format!("$result[p{}][49][ID]", i - 1)
        };
        cmd.insert(
            format!("p{i}"),
            json!(format!("crm.contact.list?order%5BID%5D=ASC&filter%5B%3EID%5D={cursor}&select%5B%5D=ID&select%5B%5D=DATE_MODIFY&start=-1")),
        );
    }
    json!({"halt": 1, "cmd": cmd})
}

/// IDs of a chained keyset batch, up to and including the first short page (like a correct
/// client: after it, `[49]` references are unresolved and pages are garbage).
fn batch_ids(b: &Value, pages: usize) -> Vec<u64> {
    let mut out = Vec::new();
    for i in 0..pages {
        let page = b["result"]["result"][format!("p{i}")]
            .as_array()
            .cloned()
            .unwrap_or_default();
        out.extend(
            page.iter()
                .map(|r| r["ID"].as_str().unwrap().parse::<u64>().unwrap()),
        );
        if page.len() < 50 {
            break;
        }
    }
    out
}

#[tokio::test]
async fn chained_keyset_batch_json_and_form() {
    let emu = Emulator::start(relaxed(), Portal::bulk_contacts(3000))
        .await
        .unwrap();
    let c = client();
    let (s, b) = post(&c, &emu, "batch", keyset_batch(0, 50)).await;
    assert_eq!(s, 200);
    let ids = batch_ids(&b, 50);
    assert_eq!(ids, (1..=2500).collect::<Vec<u64>>());
    assert_eq!(b["result"]["result_error"], json!([]));
    assert_eq!(b["result"]["result_next"], json!([]));
    assert_eq!(b["result"]["result_total"]["p0"], 0);
    assert!(b["result"]["result_time"]["p49"]["operating"].is_number());
    assert_eq!(emu.requests("batch"), 1);
    assert_eq!(emu.requests("crm.contact.list"), 50);
    // the same as a form body: every command double-encoded
    let batch = keyset_batch(2500, 50);
    let mut form = String::from("halt=1");
    for (k, v) in batch["cmd"].as_object().unwrap() {
        form.push_str(&format!("&cmd%5B{k}%5D={}", enc(v.as_str().unwrap())));
    }
    let r = c
        .post(format!("{}batch.json", emu.webhook_url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    let b: Value = r.json().await.unwrap();
    let ids = batch_ids(&b, 50);
    assert_eq!(
        ids,
        (2501..=3000).collect::<Vec<u64>>(),
        "stops at the short page"
    );
    // p10 was empty, so p11's [49] reference stays literal; PHP coerces it to 0 in `>ID`,
    // and the page starts over from the first row, which is why clients stop at a short page
    assert_eq!(b["result"]["result"]["p10"], json!([]));
    assert_eq!(b["result"]["result"]["p11"][0]["ID"], "1");
    assert_eq!(
        emu.calls("crm.contact.list")[61].params["filter"][">ID"],
        "$result[p10][49][ID]"
    );
    assert_eq!(emu.http_requests(), 2);
    emu.shutdown().await;
}

#[tokio::test]
async fn batch_errors_halt_and_shapes() {
    let emu = Emulator::start(relaxed(), Portal::demo()).await.unwrap();
    let c = client();
    let (s, b) = post(&c, &emu, "batch", json!({"halt": 0, "cmd": {"a": "crm.contact.get?id=1", "b": "user.current", "c": "no.such"}})).await;
    assert_eq!(s, 200);
    assert_eq!(
        b["result"]["result_error"]["a"],
        json!({"error": "", "error_description": "Not found"})
    );
    assert_eq!(
        b["result"]["result_error"]["c"]["error"],
        "ERROR_METHOD_NOT_FOUND"
    );
    assert_eq!(b["result"]["result"]["b"]["ID"], "1");
    let (_, b) = post(
        &c,
        &emu,
        "batch",
        json!({"halt": true, "cmd": {"a": "crm.contact.get?id=1", "b": "user.current"}}),
    )
    .await;
    assert_eq!(
        b["result"]["result"],
        json!([]),
        "everything failed: [] not {{}}"
    );
    let (s, b) = post(
        &c,
        &emu,
        "batch",
        json!({"cmd": {"a": "batch?cmd[x]=user.current"}}),
    )
    .await;
    assert_eq!(
        (s, b["error"].as_str()),
        (405, Some("ERROR_BATCH_METHOD_NOT_ALLOWED"))
    );
    let many: Map<String, Value> = (0..51)
        .map(|i| (format!("c{i}"), json!("user.current")))
        .collect();
    let (s, b) = post(&c, &emu, "batch", json!({"cmd": many})).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("ERROR_BATCH_LENGTH_EXCEEDED"))
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn update_bumps_date_modify_and_is_logged() {
    let emu = Emulator::start(relaxed(), Portal::demo()).await.unwrap();
    let c = client();
    let before = emu.with_portal(|p| p.get("contact", 39910).unwrap()["DATE_MODIFY"].clone());
    let url = format!(
        "{}crm.contact.update.json?ID=39910&FIELDS%5BUF_CRM_SYNC_STATUS%5D={}&FIELDS%5BNOPE%5D=1",
        emu.webhook_url(),
        enc("Успешно")
    );
    let (s, b) = get(&c, url).await;
    assert_eq!((s, b["result"].clone()), (200, json!(true)));
    let row = emu.with_portal(|p| p.get("contact", 39910).unwrap());
    assert_eq!(row["UF_CRM_SYNC_STATUS"], "Успешно");
    let dm = row["DATE_MODIFY"].as_str().unwrap().to_string();
    assert_ne!(json!(dm), before);
    assert!(dm.ends_with("+03:00") && dm.len() == 25, "{dm}");
    let ts = dates::parse_datetime(&dm, 0).unwrap();
    assert!((now_f64() as i64 - ts).abs() <= 5);
    assert_eq!(emu.with_portal(|p| p.mutations("crm.contact.update")), 1);
    let logged = emu.calls("crm.contact.update");
    assert_eq!(logged[0].params["FIELDS"]["UF_CRM_SYNC_STATUS"], "Успешно");
    // a substituted datetime keeps its '+': this finds the row just updated
    let (_, b) = post(&c, &emu, "batch", json!({"halt": 1, "cmd": {
        "g": "crm.contact.get?id=39910",
        "l": "crm.contact.list?filter%5B%3E%3DDATE_MODIFY%5D=$result[g][DATE_MODIFY]&select%5B%5D=ID&order%5BDATE_MODIFY%5D=DESC"
    }})).await;
    assert_eq!(b["result"]["result"]["l"][0]["ID"], "39910", "{b}");
    // multi-field update over JSON
    let (_, _) = post(&c, &emu, "crm.contact.update", json!({"id": 39910, "fields": {"PHONE": [{"VALUE": "+79990001122", "VALUE_TYPE": "MOBILE"}]}})).await;
    let (_, b) = post(
        &c,
        &emu,
        "crm.contact.list",
        json!({"filter": {"PHONE": "+79990001122"}, "select": ["ID", "PHONE"]}),
    )
    .await;
    assert_eq!(b["result"][0]["ID"], "39910");
    assert_eq!(b["result"][0]["PHONE"].as_array().unwrap().len(), 2);
    emu.shutdown().await;
}

#[tokio::test]
async fn leaky_bucket_overflow_503() {
    let cfg = EmulatorConfig {
        bucket_capacity: 3.0,
        bucket_drain_per_sec: 0.001,
        ..EmulatorConfig::default()
    };
    let emu = Emulator::start(cfg, Portal::demo()).await.unwrap();
    let c = client();
    for _ in 0..3 {
        assert_eq!(post(&c, &emu, "user.current", json!({})).await.0, 200);
    }
    let refused = post(
        &c,
        &emu,
        "crm.contact.update",
        json!({"id": 39900, "fields": {"NAME": "X"}}),
    )
    .await;
    assert_eq!(
        refused,
        (
            503,
            json!({"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"})
        )
    );
    assert_ne!(
        emu.with_portal(|p| p.get("contact", 39900).unwrap()["NAME"].clone()),
        "X",
        "refused before execution"
    );
    assert_eq!(emu.limit_refusals(), 1);
    assert_eq!(emu.responses_with_status(503), 1);
    // a batch of many commands costs one token
    emu.update_config(|c| c.bucket_capacity = 1.0);
    emu.reset_limits();
    let cmd: Map<String, Value> = (0..20)
        .map(|i| (format!("u{i}"), json!("user.current")))
        .collect();
    let (s, b) = post(&c, &emu, "batch", json!({"cmd": cmd})).await;
    assert_eq!(s, 200);
    assert_eq!(b["result"]["result"].as_object().unwrap().len(), 20);
    assert_eq!(post(&c, &emu, "user.current", json!({})).await.0, 503);
    assert_eq!(emu.limit_refusals(), 2);
    // the bucket drains with (emulated) time
    emu.advance_time(Duration::from_secs(1000));
    assert_eq!(post(&c, &emu, "user.current", json!({})).await.0, 200);
    emu.shutdown().await;
}

#[tokio::test]
async fn operating_time_limit_429_per_method() {
    let cfg = EmulatorConfig {
        op_time_per_call: 0.6,
        op_time_per_row: 0.0,
        op_time_per_count: 0.0,
        operating_limit_secs: 1.0,
        ..relaxed()
    };
    let emu = Emulator::start(cfg, Portal::demo()).await.unwrap();
    let c = client();
    let (s1, b1) = post(&c, &emu, "crm.contact.list", json!({"select": ["ID"]})).await;
    let (s2, b2) = post(&c, &emu, "crm.contact.list", json!({"select": ["ID"]})).await;
    assert_eq!((s1, s2), (200, 200));
    assert!((b1["time"]["operating"].as_f64().unwrap() - 0.6).abs() < 1e-9);
    assert!((b2["time"]["operating"].as_f64().unwrap() - 1.2).abs() < 1e-9);
    assert!(b2["time"]["operating_reset_at"].as_i64().unwrap() > now_f64() as i64);
    let (s3, b3) = post(&c, &emu, "crm.contact.list", json!({})).await;
    assert_eq!(
        (s3, b3["error"].as_str()),
        (429, Some("OPERATION_TIME_LIMIT"))
    );
    assert_eq!(
        post(&c, &emu, "crm.deal.list", json!({})).await.0,
        200,
        "other methods keep working"
    );
    // inside a batch the blocked method fails per command
    let (s, b) = post(
        &c,
        &emu,
        "batch",
        json!({"cmd": {"a": "crm.contact.list", "b": "crm.company.list"}}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        b["result"]["result_error"]["a"]["error"],
        "OPERATION_TIME_LIMIT"
    );
    assert!(b["result"]["result"]["b"].is_array());
    assert_eq!(emu.limit_refusals(), 2);
    // the window rolls over: the method works again after operating_reset_at
    emu.advance_time(Duration::from_secs(601));
    assert_eq!(post(&c, &emu, "crm.contact.list", json!({})).await.0, 200);
    emu.shutdown().await;
}

#[tokio::test]
async fn latency_and_count_latency() {
    let cfg = EmulatorConfig {
        latency: Duration::from_millis(30),
        count_latency: Duration::from_millis(40),
        ..relaxed()
    };
    let emu = Emulator::start(cfg, Portal::demo()).await.unwrap();
    let c = client();
    let t = std::time::Instant::now();
    post(&c, &emu, "crm.contact.list", json!({"start": -1})).await;
    let keyset = t.elapsed();
    let t = std::time::Instant::now();
    post(&c, &emu, "crm.contact.list", json!({"start": 0})).await;
    let counted = t.elapsed();
    assert!(keyset >= Duration::from_millis(30), "{keyset:?}");
    assert!(counted >= Duration::from_millis(70), "{counted:?}");
    emu.shutdown().await;
}

#[tokio::test]
async fn injected_faults() {
    let emu = Emulator::start(relaxed(), Portal::demo()).await.unwrap();
    let c = client();
    let url = format!("{}crm.contact.get?id=39900", emu.webhook_url());
    emu.faults().push(Fault::InternalError);
    assert_eq!(get(&c, url.clone()).await.0, 500);
    emu.faults().push(Fault::HtmlBadGateway);
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 502);
    assert_eq!(r.headers()["content-type"], "text/html");
    emu.faults()
        .push(Fault::Moved("http://127.0.0.1:9/rest/1/newcode/".into()));
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 302);
    assert_eq!(
        r.headers()["location"],
        "http://127.0.0.1:9/rest/1/newcode/crm.contact.get?id=39900"
    );
    emu.faults()
        .on_method("crm.contact.update", Fault::WriteThenFail, 1);
    let (s, _) = post(
        &c,
        &emu,
        "batch",
        json!({"cmd": {"u": "crm.contact.update?id=39900&fields%5BNAME%5D=Written"}}),
    )
    .await;
    assert_eq!(s, 500);
    assert_eq!(
        emu.with_portal(|p| p.get("contact", 39900).unwrap()["NAME"].clone()),
        "Written"
    );
    emu.faults().push(Fault::DropConnection);
    let r = c.get(&url).send().await;
    let failed = match r {
        Err(_) => true,
        Ok(resp) => resp.bytes().await.is_err(),
    };
    assert!(failed, "connection must drop");
    emu.faults().push(Fault::Slow(Duration::from_millis(300)));
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    assert!(
        quick
            .post(format!("{}crm.contact.update", emu.webhook_url()))
            .json(&json!({"id": 39902, "fields": {"NAME": "Late"}}))
            .send()
            .await
            .is_err()
    );
    assert_eq!(
        emu.with_portal(|p| p.get("contact", 39902).unwrap()["NAME"].clone()),
        "Late"
    );
    emu.faults().storm_503(1.0, 1);
    assert_eq!(get(&c, url.clone()).await.0, 503);
    emu.faults().clear();
    assert_eq!(get(&c, url.clone()).await.0, 200);
    assert_eq!(emu.faults().injected(), 7);
    emu.shutdown().await;
}

#[tokio::test]
async fn user_and_department_get() {
    let emu = Emulator::start(relaxed(), Portal::demo()).await.unwrap();
    let c = client();
    let (_, b) = get(&c, format!("{}user.get.json?ID=12288", emu.webhook_url())).await;
    assert_eq!(b["result"][0]["ACTIVE"], true);
    assert_eq!(b["result"][0]["UF_DEPARTMENT"], json!([5, 9]));
    assert_eq!(b["total"], 1);
    let (_, b) = post(
        &c,
        &emu,
        "user.get",
        json!({"FILTER": {"UF_DEPARTMENT": 5, "ACTIVE": true}, "sort": "ID", "order": "DESC"}),
    )
    .await;
    let ids: Vec<&str> = b["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["ID"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["12288", "10390", "932"]);
    let (_, b) = get(
        &c,
        format!(
            "{}department.get?PARENT=1&sort=SORT&order=DESC",
            emu.webhook_url()
        ),
    )
    .await;
    assert_eq!(
        b["result"],
        json!([{"ID": "7", "NAME": "Тренеры", "SORT": 200, "PARENT": "1", "UF_HEAD": "3486"}, {"ID": "5", "NAME": "Отдел продаж", "SORT": 100, "PARENT": "1", "UF_HEAD": "932"}])
    );
    let (_, b) = post(&c, &emu, "crm.activity.list", json!({"filter": {"OWNER_TYPE_ID": 2}, "order": {"START_TIME": "desc"}, "select": ["ID", "START_TIME"]})).await;
    let t0 = b["result"][0]["START_TIME"].as_str().unwrap().to_string();
    let t1 = b["result"][1]["START_TIME"].as_str().unwrap().to_string();
    assert!(t0 > t1);
    assert_eq!(b["total"], 50);
    emu.shutdown().await;
}

/// Keyset export of 100,000 contacts (40 chained batches) and 10,000 updates (200 batches).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_export_and_updates() {
    let t = std::time::Instant::now();
    let portal = Portal::bulk_contacts(100_000);
    let gen_time = t.elapsed();
    let emu = Emulator::start(
        EmulatorConfig {
            log_requests: false,
            ..relaxed()
        },
        portal,
    )
    .await
    .unwrap();
    let c = client();
    let t = std::time::Instant::now();
    let mut last = 0u64;
    let mut total = 0usize;
    loop {
        let (s, b) = post(&c, &emu, "batch", keyset_batch(last, 50)).await;
        assert_eq!(s, 200);
        let ids = batch_ids(&b, 50);
        total += ids.len();
        match ids.last() {
            Some(l) if ids.len() == 2500 => last = *l,
            _ => break,
        }
    }
    assert_eq!(total, 100_000);
    let export_time = t.elapsed();
    let t = std::time::Instant::now();
    for chunk in 0..200u64 {
        let cmd: Map<String, Value> = (0..50u64)
            .map(|i| {
                let id = chunk * 50 + i + 1;
                (
                    format!("u{id}"),
                    json!(format!(
                        "crm.contact.update?id={id}&fields%5BUF_CRM_SYNC_STATUS%5D=ok"
                    )),
                )
            })
            .collect();
        let (s, b) = post(&c, &emu, "batch", json!({"halt": 0, "cmd": cmd})).await;
        assert_eq!((s, &b["result"]["result_error"]), (200, &json!([])));
    }
    let update_time = t.elapsed();
    assert_eq!(
        emu.with_portal(|p| p.mutations("crm.contact.update")),
        10_000
    );
    eprintln!("generate 100k: {gen_time:?}, export: {export_time:?}, 10k updates: {update_time:?}");
    emu.shutdown().await;
}

/// A blocking caller (like the e2e harness waiting on the etl process) against a background
/// emulator, over a raw socket.
#[test]
fn background_emulator_serves_blocking_callers() {
    use std::io::{Read, Write};
    let emu = Emulator::start_background(relaxed(), Portal::demo()).unwrap();
    let path = format!(
        "/rest/1/{}/user.current.json",
        EmulatorConfig::default().code
    );
    let mut sock = std::net::TcpStream::connect(emu.addr()).unwrap();
    write!(
        sock,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    sock.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("\"ID\":\"1\""), "{out}");
    assert_eq!(emu.requests("user.current"), 1);
    assert_eq!(emu.mutations("crm.contact.update"), 0);
    drop(emu);
}
