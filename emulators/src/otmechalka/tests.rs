//! The emulator over real HTTP, as the `etl` binary will talk to it.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::*;
use crate::kit::test_http_client;

fn client_body(origin_id: &str) -> Value {
    json!({
        "origin_id": origin_id, "last_name": "Петров", "first_name": "Василий",
        "phone": "79261234567", "email": "ivan.petrov@gmail.com",
        "courses": ["Он-лайн Групповое", "Он-лайн индивидуальные"], "branchoffices": ["+Он-лайн `МСК"],
        "birthdate": "2009-11-29", "gender": "M", "additional_data": "Петров Иван"
    })
}

fn ticket_body(origin_id: &str, client: &str) -> Value {
    json!({
        "origin_id": origin_id, "client_origin_id": client,
        "ticket_type": "6 КМС индивидуальные 45 мин",
        "price_initial": "9000.00", "discount": "300.00", "price_final": "8700.00",
        "selling_date": "2020-12-13", "selling_branchoffice": "2634",
        "employee": "Андрей Сергеев", "payment_method": "ONLINE"
    })
}

struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    fn new(emu: &OtmechalkaEmulator) -> Self {
        let http = test_http_client(Duration::from_secs(5));
        Self {
            http,
            base: emu.url(),
            token: emu.token().to_string(),
        }
    }
    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap())
    }
    async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap())
    }
}

#[tokio::test]
async fn upsert_flow_get_404_create_get_update() {
    let emu = OtmechalkaEmulator::start(OtmechalkaConfig::default()).unwrap();
    let api = Api::new(&emu);

    let (s, b) = api.get("/api/clients/39558/").await;
    assert_eq!(
        (s, b),
        (StatusCode::NOT_FOUND, json!({"detail": "Not found."}))
    );

    let (s, created) = api.post("/api/clients/", &client_body("39558")).await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    assert!(created["id"].as_u64().is_some());
    assert_eq!(created["courses"], json!(["10985", "10986"]));
    assert_eq!(created["branchoffices"], json!(["2633"]));
    assert_eq!(
        created["groups"],
        json!([
            "Он-лайн Групповое / +Он-лайн `МСК",
            "Он-лайн индивидуальные / +Он-лайн `МСК"
        ])
    );

    let (s, got) = api.get("/api/clients/39558/").await;
    assert_eq!((s, &got), (StatusCode::OK, &created));

    let mut changed = client_body("39558");
    changed["phone"] = json!("79267654321");
    changed["courses"] = json!(["10987", 10988]);
    changed["branchoffices"] = json!(["2634"]);
    changed.as_object_mut().unwrap().remove("origin_id"); // may be left out on update
    let (s, updated) = api.post("/api/clients/39558/", &changed).await;
    assert_eq!(s, StatusCode::OK, "{updated}");
    assert_eq!(updated["id"], created["id"]);
    assert_eq!(
        updated["course_names"],
        json!(["Групповые занятия", "Индивидуальные занятия"])
    );

    let stored = emu.client("39558").unwrap();
    assert_eq!(stored.phone, "79267654321");
    assert_eq!(emu.clients().len(), 1);
    let c = emu.counters();
    assert_eq!(
        (
            c.gets,
            c.creates,
            c.updates,
            c.writes,
            c.applied_writes,
            c.total
        ),
        (2, 1, 1, 2, 2, 4)
    );

    // update of an absent client, mismatched origin_id
    let (s, b) = api.post("/api/clients/1/", &client_body("1")).await;
    assert_eq!(
        (s, b),
        (StatusCode::NOT_FOUND, json!({"detail": "Not found."}))
    );
    let (s, b) = api.post("/api/clients/39558/", &client_body("777")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        b["errors"]["origin_id"][0]
            .as_str()
            .unwrap()
            .starts_with("Does not match the origin_id in the URL")
    );
    emu.shutdown();
}

#[tokio::test]
async fn duplicate_create_is_409_and_validation_is_400_with_field_messages() {
    let emu = OtmechalkaEmulator::start(OtmechalkaConfig::default()).unwrap();
    let api = Api::new(&emu);
    assert_eq!(
        api.post("/api/clients/", &client_body("1")).await.0,
        StatusCode::CREATED
    );
    let (s, b) = api.post("/api/clients/", &client_body("1")).await;
    assert_eq!(
        (s, b),
        (
            StatusCode::CONFLICT,
            json!({"detail": "Client with origin_id \"1\" already exists."})
        )
    );

    let mut bad = client_body("2");
    bad["phone"] = json!("8 (926) 123-45-67");
    bad["courses"] = json!([]);
    bad.as_object_mut().unwrap().remove("gender");
    let (s, b) = api.post("/api/clients/", &bad).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        b["errors"]["phone"],
        json!([
            "Phone must be 11 digits starting with 7, e.g. \"79261234567\"; got \"8 (926) 123-45-67\"."
        ])
    );
    assert_eq!(
        b["errors"]["courses"],
        json!(["At least one course is required."])
    );
    assert_eq!(b["errors"]["gender"], json!(["This field is required."]));
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .starts_with("Invalid input: phone: Phone must be 11 digits")
    );
    assert_eq!(emu.clients().len(), 1);
    let c = emu.counters();
    assert_eq!((c.creates, c.writes, c.applied_writes), (3, 3, 1));
}

#[tokio::test]
async fn auth_routes_and_media_type() {
    let emu = OtmechalkaEmulator::start(OtmechalkaConfig {
        token: "secret".into(),
        ..Default::default()
    })
    .unwrap();
    let http = test_http_client(Duration::from_secs(5));
    let url = |p: &str| format!("{}{p}", emu.url());

    let r = http.get(url("/api/clients/1/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"detail": "Authentication credentials were not provided."})
    );
    let r = http
        .get(url("/api/clients/1/"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"detail": "Invalid token."})
    );

    let r = http
        .get(url("/api/clients/1"))
        .bearer_auth("secret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(
        r.json::<Value>().await.unwrap()["detail"]
            .as_str()
            .unwrap()
            .starts_with("No such endpoint: GET /api/clients/1.")
    );
    let r = http
        .delete(url("/api/clients/1/"))
        .bearer_auth("secret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    let r = http
        .post(url("/api/clients/"))
        .bearer_auth("secret")
        .form(&[("origin_id", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = http
        .post(url("/api/clients/"))
        .bearer_auth("secret")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(
        r.json::<Value>().await.unwrap()["detail"]
            .as_str()
            .unwrap()
            .starts_with("JSON parse error")
    );

    // percent-encoded origin ids are decoded
    emu.seed_client(client_body("a b")).unwrap();
    let r = http
        .get(url("/api/clients/a%20b/"))
        .bearer_auth("secret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let c = emu.counters();
    assert_eq!((c.unauthorized, c.other, c.total), (2, 2, 7));
}

#[tokio::test]
async fn active_client_limit_is_enforced_and_archiving_frees_a_slot() {
    let emu = OtmechalkaEmulator::start(OtmechalkaConfig {
        max_active_clients: 3,
        ..Default::default()
    })
    .unwrap();
    let api = Api::new(&emu);
    for i in 1..=3 {
        assert_eq!(
            api.post("/api/clients/", &client_body(&i.to_string()))
                .await
                .0,
            StatusCode::CREATED
        );
    }
    let (s, b) = api.post("/api/clients/", &client_body("4")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        b,
        json!({"detail": "Active clients limit reached: the account has 3 active clients of 3 allowed. Archive clients to add new ones."})
    );
    // updates of existing clients still work at the limit
    assert_eq!(
        api.post("/api/clients/3/", &client_body("3")).await.0,
        StatusCode::OK
    );
    assert!(emu.archive_client("1"));
    assert_eq!(
        api.get("/api/clients/1/").await.1["is_archived"],
        json!(true)
    );
    assert_eq!(
        api.post("/api/clients/", &client_body("4")).await.0,
        StatusCode::CREATED
    );
    assert_eq!((emu.active_clients(), emu.clients().len()), (3, 4));
}

#[tokio::test]
async fn ticket_create_if_absent() {
    let emu = OtmechalkaEmulator::start(OtmechalkaConfig::default()).unwrap();
    let api = Api::new(&emu);

    // unknown client
    let (s, b) = api
        .post("/api/tickets/", &ticket_body("96038", "39910"))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        b["errors"]["client_origin_id"],
        json!(["Client with origin_id \"39910\" does not exist."])
    );

    emu.seed_client(client_body("39910")).unwrap();
    assert_eq!(
        api.get("/api/tickets/96038/").await.0,
        StatusCode::NOT_FOUND
    );
    let (s, t) = api
        .post("/api/tickets/", &ticket_body("96038", "39910"))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    assert_eq!(t["client_id"], json!(emu.client("39910").unwrap().id));
    assert_eq!(t["valid_until"], json!("2021-02-11"));
    assert_eq!(
        (t["visits_total"].clone(), t["is_paid"].clone()),
        (json!(6), json!(true))
    );
    assert_eq!(t["groups"], json!(["Индивидуальные занятия / + ЦДШ `МСК"]));
    let (s, got) = api.get("/api/tickets/96038/").await;
    assert_eq!((s, &got), (StatusCode::OK, &t));

    let (s, b) = api
        .post("/api/tickets/", &ticket_body("96038", "39910"))
        .await;
    assert_eq!(
        (s, b),
        (
            StatusCode::CONFLICT,
            json!({"detail": "Ticket with origin_id \"96038\" already exists."})
        )
    );
    let mut bad = ticket_body("96039", "39910");
    bad["price_final"] = json!(8700);
    let (s, b) = api.post("/api/tickets/", &bad).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        b["errors"]["price_final"],
        json!(["Must be a string with two decimals, e.g. \"9000.00\"; got 8700."])
    );
    assert_eq!(emu.tickets().len(), 1);
    let c = emu.counters();
    assert_eq!(
        (c.ticket_gets, c.ticket_creates, c.applied_writes),
        (2, 4, 1)
    );
}

#[tokio::test]
async fn faults_status_html_drop_and_apply_then_fail() {
    let emu = OtmechalkaEmulator::start(OtmechalkaConfig::default()).unwrap();
    let api = Api::new(&emu);
    let url = format!("{}/api/clients/1/", emu.url());

    emu.faults().fail_next(1, Fault::Status(500));
    emu.faults().fail_next(1, Fault::Status(503));
    assert_eq!(
        api.get("/api/clients/1/").await,
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"detail": "Injected fault: HTTP 500"})
        )
    );
    assert_eq!(
        api.get("/api/clients/1/").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(api.get("/api/clients/1/").await.0, StatusCode::NOT_FOUND);

    emu.faults().fail_next(1, Fault::Html(502));
    let r = api
        .http
        .get(&url)
        .bearer_auth(emu.token())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(r.text().await.unwrap().contains("<h1>502 Bad Gateway</h1>"));

    // a dropped connection: the client sees a transport error, nothing is stored
    emu.faults()
        .add(FaultRule::new(Fault::Drop).on(Scope::Only(Endpoint::ClientCreate)));
    let err = api
        .http
        .post(format!("{}/api/clients/", emu.url()))
        .bearer_auth(emu.token())
        .json(&client_body("1"))
        .send()
        .await;
    assert!(err.is_err(), "expected a transport error, got {err:?}");
    assert!(emu.client("1").is_none());

    // applied, then 500: the write is there, a retry of the create gets 409
    emu.faults()
        .add(FaultRule::new(Fault::ApplyThenStatus(500)).on(Scope::Writes));
    assert_eq!(
        api.post("/api/clients/", &client_body("1")).await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert!(emu.client("1").is_some());
    assert_eq!(
        api.post("/api/clients/", &client_body("1")).await.0,
        StatusCode::CONFLICT
    );

    // applied, then the connection dropped
    emu.faults()
        .add(FaultRule::new(Fault::ApplyThenDrop).on(Scope::Writes));
    let err = api
        .http
        .post(format!("{}/api/clients/", emu.url()))
        .bearer_auth(emu.token())
        .json(&client_body("2"))
        .send()
        .await;
    assert!(err.is_err());
    assert!(emu.client("2").is_some());

    // the second write fails, reads pass by
    emu.faults().add(
        FaultRule::new(Fault::Status(500))
            .on(Scope::Writes)
            .after(1),
    );
    assert_eq!(api.get("/api/clients/2/").await.0, StatusCode::OK);
    assert_eq!(
        api.post("/api/clients/2/", &client_body("2")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        api.post("/api/clients/2/", &client_body("2")).await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(emu.faults().pending(), 0);
    assert_eq!(emu.faults().fired(), 7);
    let c = emu.counters();
    assert_eq!((c.creates, c.updates, c.applied_writes), (4, 2, 3));
}

#[tokio::test]
async fn slow_response_applies_the_write_even_if_the_client_times_out() {
    let emu = OtmechalkaEmulator::start(OtmechalkaConfig::default()).unwrap();
    emu.faults()
        .fail_next(1, Fault::Slow(Duration::from_millis(400)));
    let http = test_http_client(Duration::from_millis(100));
    let r = http
        .post(format!("{}/api/clients/", emu.url()))
        .bearer_auth(emu.token())
        .json(&client_body("1"))
        .send()
        .await;
    assert!(r.unwrap_err().is_timeout());
    assert!(emu.client("1").is_some());
}

#[tokio::test]
async fn latency_is_added_to_every_request() {
    let emu = OtmechalkaEmulator::start(OtmechalkaConfig {
        latency: Duration::from_millis(30),
        ..Default::default()
    })
    .unwrap();
    let api = Api::new(&emu);
    let t = Instant::now();
    api.get("/api/clients/1/").await;
    api.get("/api/clients/1/").await;
    assert!(t.elapsed() >= Duration::from_millis(60));
}

#[test]
fn usable_from_sync_code_and_stops_on_shutdown() {
    let emu = OtmechalkaEmulator::start(OtmechalkaConfig::default()).unwrap();
    let addr = emu.addr();
    assert!(emu.url().starts_with("http://127.0.0.1:"));
    assert!(std::net::TcpStream::connect(addr).is_ok());
    emu.shutdown();
    assert!(std::net::TcpStream::connect(addr).is_err());
}

#[test]
fn a_dropped_connection_sends_no_bytes() {
    use std::io::{Read, Write};
    let emu = OtmechalkaEmulator::start(OtmechalkaConfig::default()).unwrap();
    emu.faults().fail_next(1, Fault::Drop);
    let mut s = std::net::TcpStream::connect(emu.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET /api/clients/1/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
        emu.token()
    )
    .unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got); // EOF or reset, either way nothing arrives
    assert_eq!(String::from_utf8_lossy(&got), "");
    assert_eq!(emu.counters().gets, 1);
}

#[tokio::test]
async fn serve_forever_serves_on_the_given_address() {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let server = tokio::spawn(serve_forever(OtmechalkaConfig::default(), addr));
    let http = test_http_client(Duration::from_secs(5));
    let url = format!("http://{addr}/api/clients/1/");
    let mut status = None;
    for _ in 0..50 {
        if let Ok(r) = http.get(&url).bearer_auth("otm-test-token").send().await {
            status = Some(r.status());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(status, Some(StatusCode::NOT_FOUND));
    server.abort();
}
