//! The application context over real HTTP: OAuth calls, the token endpoint, the outage
//! switch, bizproc registration and answers, and running a workflow against a handler.

use super::*;
use std::time::Duration;

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

async fn call(c: &reqwest::Client, emu: &Emulator, method: &str, body: Value) -> (u16, Value) {
    let r = c
        .post(format!("{}{method}", emu.app_endpoint()))
        .json(&body)
        .send()
        .await
        .expect("send");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get_text(c: &reqwest::Client, url: String) -> (u16, String) {
    let r = c.get(url).send().await.expect("send");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

fn cfg() -> EmulatorConfig {
    let mut c = EmulatorConfig::unlimited();
    c.scopes.push("bizproc".into());
    c
}

#[tokio::test]
async fn oauth_path_runs_as_the_tokens_user() {
    let emu = Emulator::start(cfg(), Portal::demo()).await.unwrap();
    let c = client();
    let (access, _) = emu.issue_tokens(932);
    let (s, b) = get_text(
        &c,
        format!("{}profile.json?auth={access}", emu.app_endpoint()),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let b: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(b["result"]["ID"], "932");
    // POST form and JSON, batch too
    let r = c
        .post(format!("{}user.current", emu.app_endpoint()))
        .form(&[("auth", access.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (s, b) = call(
        &c,
        &emu,
        "batch",
        json!({"auth": access, "cmd": {"me": "user.current", "s": "scope"}}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["result"]["result"]["me"]["ID"], "932");
    assert!(
        b["result"]["result"]["s"]
            .as_array()
            .unwrap()
            .contains(&json!("bizproc"))
    );
    assert_eq!(emu.calls("user.current").len(), 2);
    assert!(emu.calls("user.current")[0].params.get("auth").is_none());
    // refusals
    let (s, b) = call(&c, &emu, "profile", json!({"auth": "nope"})).await;
    assert_eq!(
        (s, b),
        (
            401,
            json!({"error": "invalid_token", "error_description": "The access token provided is invalid."})
        )
    );
    let (s, b) = call(&c, &emu, "profile", json!({})).await;
    assert_eq!((s, b["error"].clone()), (401, json!("NO_AUTH_FOUND")));
    assert!(emu.expire_access_token(&access));
    let (s, b) = call(&c, &emu, "profile", json!({"auth": access})).await;
    assert_eq!(
        (s, b),
        (
            401,
            json!({"error": "expired_token", "error_description": "The access token provided has expired."})
        )
    );
    // an hour of the emulator's clock expires a token too
    let (access, _) = emu.issue_tokens(1);
    emu.advance_time(Duration::from_secs(3601));
    let (s, _) = call(&c, &emu, "profile", json!({"auth": access})).await;
    assert_eq!(s, 401);
    // faults apply as on the webhook path
    let (access, _) = emu.issue_tokens(1);
    emu.faults().push(Fault::InternalError);
    let (s, _) = call(&c, &emu, "profile", json!({"auth": access})).await;
    assert_eq!(s, 500);
}

#[tokio::test]
async fn token_endpoint_rotates_refresh_tokens() {
    let emu = Emulator::start(cfg(), Portal::demo()).await.unwrap();
    let c = client();
    let (_, refresh) = emu.issue_tokens(5);
    let url = |client_secret: &str, refresh: &str| {
        format!(
            "{}?grant_type=refresh_token&client_id={}&client_secret={client_secret}&refresh_token={refresh}",
            emu.oauth_url(),
            emu.client_id()
        )
    };
    let (s, b) = get_text(&c, url(&emu.client_secret(), &refresh)).await;
    assert_eq!(s, 200, "{b}");
    let b: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(b["user_id"], 5);
    assert_eq!(b["expires_in"], 3600);
    assert_eq!(b["status"], "L");
    assert_eq!(b["member_id"], emu.member_id());
    assert_eq!(b["client_endpoint"], emu.app_endpoint());
    assert_eq!(b["domain"], emu.domain());
    assert_ne!(b["refresh_token"], json!(refresh));
    let new_access = b["access_token"].as_str().unwrap().to_string();
    let (s, b2) = call(&c, &emu, "profile", json!({"auth": new_access})).await;
    assert_eq!((s, b2["result"]["ID"].clone()), (200, json!("5")));
    // the used refresh token is spent
    let (s, b2) = get_text(&c, url(&emu.client_secret(), &refresh)).await;
    assert_eq!(s, 400);
    assert!(b2.contains("invalid_grant"), "{b2}");
    let (s, b2) = get_text(&c, url("wrong", b["refresh_token"].as_str().unwrap())).await;
    assert_eq!(s, 401);
    assert!(b2.contains("invalid_client"), "{b2}");
    assert_eq!(emu.token_refreshes(), 1);
    // the environment handed to an application can refresh too
    let vars: std::collections::HashMap<_, _> = emu.app_vars().into_iter().collect();
    assert_eq!(vars["B24_APP_ENDPOINT"], emu.app_endpoint());
    assert_eq!(vars["B24_OAUTH_URL"], emu.oauth_url());
    let (s, _) = get_text(
        &c,
        url(
            &vars["B24_APP_CLIENT_SECRET"],
            &vars["B24_APP_REFRESH_TOKEN"],
        ),
    )
    .await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn outage_switch_answers_503_html_everywhere() {
    let emu = Emulator::start(cfg(), Portal::demo()).await.unwrap();
    let c = client();
    let (access, refresh) = emu.issue_tokens(1);
    emu.set_unavailable(true);
    let (s, b) = get_text(&c, format!("{}profile?auth={access}", emu.app_endpoint())).await;
    assert_eq!(s, 503);
    assert!(b.contains("<html>"));
    let (s, _) = get_text(&c, format!("{}profile", emu.webhook_url())).await;
    assert_eq!(s, 503);
    let (s, _) = get_text(&c, format!("{}?refresh_token={refresh}", emu.oauth_url())).await;
    assert_eq!(s, 503);
    emu.set_unavailable(false);
    let (s, _) = get_text(&c, format!("{}profile?auth={access}", emu.app_endpoint())).await;
    assert_eq!(s, 200);
    assert_eq!(emu.token_refreshes(), 0);
}

fn activity(code: &str) -> Value {
    json!({
        "code": code, "handler": "https://etl.example.ru/bp/x", "auth_user_id": "1",
        "use_subscription": "Y", "name": {"ru": "Изменение сделки"},
        "properties": {"deal_id": {"Name": "ID сделки", "Type": "int", "Required": "Y"},
            "stage": {"Name": "Стадия", "Type": "select", "Options": {"NEW": "Новая", "won": "Успех"}}},
        "return_properties": {"result": {"Name": "Результат", "Type": "string"}},
        "document_type": ["crm", "CCrmDocumentDeal", "DEAL"],
    })
}

fn with_auth(mut v: Value, token: &str) -> Value {
    v["auth"] = json!(token);
    v
}

#[tokio::test]
async fn activity_registration_rules() {
    let emu = Emulator::start(cfg(), Portal::demo()).await.unwrap();
    let c = client();
    // a webhook is no application
    let r = c
        .post(format!("{}bizproc.activity.add", emu.webhook_url()))
        .json(&activity("b24etl_x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let b: Value = r.json().await.unwrap();
    assert_eq!(
        b,
        json!({"error": "ACCESS_DENIED", "error_description": "Application context required"})
    );
    let (user, _) = emu.issue_tokens(932);
    let (s, b) = call(
        &c,
        &emu,
        "bizproc.activity.add",
        with_auth(activity("a"), &user),
    )
    .await;
    assert_eq!(
        (s, b["error_description"].clone()),
        (403, json!("Access denied!"))
    );
    let (admin, _) = emu.issue_tokens(1);
    let add = |v: Value| call(&c, &emu, "bizproc.activity.add", with_auth(v, &admin));
    let (s, b) = add(activity("b24etl_update_deal")).await;
    assert_eq!((s, b["result"].clone()), (200, json!(true)), "{b}");
    let (s, b) = add(activity("b24etl_update_deal")).await;
    assert_eq!(
        (s, b["error"].clone(), b["error_description"].clone()),
        (
            400,
            json!("ERROR_ACTIVITY_ALREADY_INSTALLED"),
            json!("Activity or Robot already installed!")
        )
    );
    let stored = &emu.registered_activities()[0];
    assert_eq!(stored.code, "b24etl_update_deal");
    assert_eq!(stored.fields["PROPERTIES"]["deal_id"]["NAME"], "ID сделки");
    assert_eq!(
        stored.fields["PROPERTIES"]["stage"]["OPTIONS"]["won"],
        "Успех"
    );
    assert_eq!(stored.fields["NAME"]["RU"], "Изменение сделки");
    assert_eq!(stored.fields["AUTH_USER_ID"], 1);
    let cases = [
        (json!({"code": ""}), "Empty data!"),
        (json!({"name": "x"}), "Empty activity code!"),
        (json!({"code": "bad code!"}), "Wrong activity code!"),
        (
            json!({"code": "ok", "handler": "https://h/x"}),
            "Empty activity NAME!",
        ),
        (
            json!({"code": "ok", "handler": "https://h/x", "name": "n", "properties": "x"}),
            "Wrong properties array!",
        ),
        (
            json!({"code": "ok", "handler": "https://h/x", "name": "n", "properties": {"1x": {"Name": "a"}}}),
            "Wrong property key (1x)!",
        ),
        (
            json!({"code": "ok", "handler": "https://h/x", "name": "n", "return_properties": {"r": {"Type": "string"}}}),
            "Empty property NAME (r)!",
        ),
        (
            json!({"code": "ok", "handler": "https://h/x", "name": "n", "document_type": ["crm"]}),
            "Wrong activity DOCUMENT_TYPE!",
        ),
    ];
    for (body, want) in cases {
        let mut body = body;
        if body["code"] == "" {
            body = json!({});
        }
        let (s, b) = add(body.clone()).await;
        assert_eq!(
            (s, b["error_description"].clone()),
            (400, json!(want)),
            "{body}"
        );
    }
    let (s, b) = add(json!({"code": "ok", "handler": "ftp://h/x", "name": "n"})).await;
    assert_eq!(
        (s, b["error"].clone()),
        (400, json!("ERROR_UNSUPPORTED_PROTOCOL"))
    );
    let (s, b) = add(json!({"code": "ok", "handler": "not a url", "name": "n"})).await;
    assert_eq!(
        (s, b["error"].clone()),
        (400, json!("ERROR_WRONG_HANDLER_URL"))
    );
    // list, update, delete
    let (_, b) = call(&c, &emu, "bizproc.activity.list", json!({"auth": admin})).await;
    assert_eq!(b["result"], json!(["b24etl_update_deal"]));
    let upd = |v: Value| call(&c, &emu, "bizproc.activity.update", with_auth(v, &admin));
    let (s, b) = upd(json!({"code": "b24etl_update_deal"})).await;
    assert_eq!(
        (s, b["error_description"].clone()),
        (400, json!("No fields to update"))
    );
    let (s, b) = upd(json!({"code": "b24etl_update_deal", "fields": {"NOPE": 1}})).await;
    assert_eq!(
        (s, b["error_description"].clone()),
        (400, json!("No fields to update"))
    );
    let (s, b) = upd(json!({"code": "missing", "fields": {"name": "x"}})).await;
    assert_eq!(
        (s, b["error"].clone()),
        (400, json!("ERROR_ACTIVITY_NOT_FOUND"))
    );
    let (s, _) = upd(json!({"code": "b24etl_update_deal", "fields": {"handler": "https://etl.example.ru/bp/y", "name": "Новое"}})).await;
    assert_eq!(s, 200);
    let stored = &emu.registered_activities()[0];
    assert_eq!(
        (
            stored.fields["HANDLER"].clone(),
            stored.fields["NAME"].clone()
        ),
        (json!("https://etl.example.ru/bp/y"), json!("Новое"))
    );
    let del = |code: &str| {
        call(
            &c,
            &emu,
            "bizproc.activity.delete",
            json!({"auth": admin, "code": code}),
        )
    };
    assert_eq!(del("b24etl_update_deal").await.0, 200);
    let (s, b) = del("b24etl_update_deal").await;
    assert_eq!(
        (s, b["error_description"].clone()),
        (400, json!("Activity or Robot not found!"))
    );
    assert!(emu.registered_activities().is_empty());
}

/// A handler that records each request body and answers 200.
fn recording_handler() -> (crate::kit::ServerThread, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let app = axum::Router::new().route(
        "/bp/{code}",
        axum::routing::post(move |body: String| {
            let s2 = s2.clone();
            async move {
                s2.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    (
        crate::kit::ServerThread::spawn("handler", app).unwrap(),
        seen,
    )
}

#[tokio::test]
async fn run_workflow_posts_the_form_and_event_send_closes_once() {
    let emu = Emulator::start(cfg(), Portal::demo()).await.unwrap();
    let c = client();
    let (handler, seen) = recording_handler();
    let url = format!("{}/bp/b24etl_update_deal", handler.url());
    let mut wf = Workflow::new("b24etl_update_deal", "DEAL_123").with_properties(
        json!({"deal_id": "123", "title": "Новая сделка", "to": ["a@x.ru", "b@x.ru"], "stage": ""}),
    );
    wf.user_id = 932;
    let run = emu.run_workflow(&url, &wf).unwrap();
    assert_eq!(run.status, 200);
    let parts: Vec<&str> = run.event_token.split('|').collect();
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[0], run.workflow_id);
    let body = seen.lock().unwrap()[0].clone();
    assert!(body.contains("document_id%5B2%5D=DEAL_123"), "{body}");
    let form = params::parse_query(&body);
    assert_eq!(form["workflow_id"], json!(run.workflow_id));
    assert_eq!(form["code"], "b24etl_update_deal");
    assert_eq!(
        form["document_id"],
        json!(["crm", "CCrmDocumentDeal", "DEAL_123"])
    );
    assert_eq!(form["document_type"][2], "DEAL");
    assert_eq!(form["properties"]["title"], "Новая сделка");
    assert_eq!(form["properties"]["to"], json!(["a@x.ru", "b@x.ru"]));
    assert_eq!(form["properties"]["stage"], "");
    assert_eq!(form["use_subscription"], "Y");
    assert_eq!(form["timeout_duration"], "0");
    assert_eq!(form["event_token"], json!(run.event_token));
    let auth = &form["auth"];
    assert_eq!(auth["application_token"], json!(emu.application_token()));
    assert_eq!(auth["member_id"], json!(emu.member_id()));
    assert_eq!(auth["client_endpoint"], json!(emu.app_endpoint()));
    assert_eq!(auth["domain"], json!(emu.domain()));
    assert_eq!(auth["user_id"], "932");
    assert_eq!(auth["expires_in"], "3600");
    let ts: f64 = form["ts"].as_str().unwrap().parse().unwrap();
    assert!((emu.now() - ts).abs() < 5.0);
    // answer with the request's own token, twice: one closes the action, one is ignored
    let access = auth["access_token"].as_str().unwrap().to_string();
    let send = |token: String| {
        call(
            &c,
            &emu,
            "bizproc.event.send",
            json!({"auth": access, "event_token": token,
            "return_values": {"result": "true"}, "log_message": "ok"}),
        )
    };
    assert_eq!(send(run.event_token.clone()).await.1["result"], true);
    assert_eq!(send(run.event_token.clone()).await.1["result"], true);
    let (s, b) = send(format!("{}x", run.event_token)).await;
    assert_eq!(
        (s, b["error"].clone(), b["error_description"].clone()),
        (403, json!("ACCESS_DENIED"), json!("Access denied!"))
    );
    let sends = emu.event_sends_for(&run.event_token);
    assert_eq!(sends.len(), 2);
    assert_eq!(sends.iter().filter(|s| s.closed_action).count(), 1);
    assert_eq!(sends[0].return_values, json!({"result": "true"}));
    assert_eq!(sends[0].log_message, "ok");
    // upper-case parameter names, a webhook, and activity.log
    let r = c
        .post(format!("{}bizproc.activity.log", emu.webhook_url()))
        .json(&json!({"EVENT_TOKEN": run.event_token, "LOG_MESSAGE": ""}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"], "ERROR_EMPTY_LOG_MESSAGE");
    let (s, _) = call(
        &c,
        &emu,
        "bizproc.activity.log",
        json!({"auth": access, "EVENT_TOKEN": run.event_token, "LOG_MESSAGE": "step"}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(emu.activity_logs()[0].log_message, "step");
    // use_subscription=N closes at once; the timeout closes too
    wf.use_subscription = false;
    let quiet = emu.run_workflow(&url, &wf).unwrap();
    assert_eq!(
        params::parse_query(&seen.lock().unwrap()[1])["use_subscription"],
        "N"
    );
    send(quiet.event_token.clone()).await;
    assert!(!emu.event_sends_for(&quiet.event_token)[0].closed_action);
    wf.use_subscription = true;
    wf.timeout_duration = 60;
    let timed = emu.prepare_workflow(&wf);
    emu.advance_time(Duration::from_secs(61));
    let (access, _) = emu.issue_tokens(1);
    call(
        &c,
        &emu,
        "bizproc.event.send",
        json!({"auth": access, "event_token": timed.event_token}),
    )
    .await;
    assert!(!emu.event_sends_for(&timed.event_token)[0].closed_action);
}

#[tokio::test]
async fn prepared_request_can_be_tampered_and_sent() {
    let emu = Emulator::start(cfg(), Portal::demo()).await.unwrap();
    let (handler, seen) = recording_handler();
    let mut req = emu.prepare_workflow(&Workflow::new("b24etl_x", "LEAD_7"));
    assert_eq!(req.get("document_id[1]"), Some("CCrmDocumentLead"));
    req.set("auth[application_token]", "forged");
    req.remove("ts");
    let status =
        workflow::post_form(&format!("{}/bp/b24etl_x", handler.url()), &req.body()).unwrap();
    assert_eq!(status, 200);
    let form = params::parse_query(&seen.lock().unwrap()[0]);
    assert_eq!(form["auth"]["application_token"], "forged");
    assert!(form.get("ts").is_none());
}

#[tokio::test]
async fn http_trigger_fires_a_workflow() {
    let emu = Emulator::start(cfg(), Portal::demo()).await.unwrap();
    let (handler, seen) = recording_handler();
    let c = client();
    let r = c
        .post(format!("{}/_emulator/workflow", emu.base_url()))
        .json(&json!({"handler": format!("{}/bp/b24etl_update_deal", handler.url()), "code": "b24etl_update_deal",
            "document_id": "DEAL_96000", "properties": {"deal_id": "96000"}, "user_id": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["status"], 200);
    let form = params::parse_query(&seen.lock().unwrap()[0]);
    assert_eq!(form["event_token"], b["event_token"]);
    assert_eq!(form["properties"]["deal_id"], "96000");
    let r = c
        .post(format!("{}/_emulator/workflow", emu.base_url()))
        .json(&json!({"handler": "http://127.0.0.1:1/bp/x", "code": "x", "document_id": "DEAL_1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 502);
}

#[tokio::test]
async fn invoice_add_commits_then_answers_500() {
    let emu = Emulator::start(cfg(), Portal::demo()).await.unwrap();
    let c = client();
    let (access, _) = emu.issue_tokens(1);
    emu.faults()
        .on_method("crm.invoice.add", Fault::WriteThenFail, 1);
    let fields = json!({"ORDER_TOPIC": "Сделка", "PERSON_TYPE_ID": 2, "PAY_SYSTEM_ID": 2, "XML_ID": "b24etl:ev1",
        "PRODUCT_ROWS": [{"PRODUCT_NAME": "8 занятий", "PRICE": 6400, "QUANTITY": 1}]});
    let (s, b) = call(
        &c,
        &emu,
        "crm.invoice.add",
        json!({"auth": access, "fields": fields}),
    )
    .await;
    assert_eq!(
        (s, b["error"].clone()),
        (500, json!("INTERNAL_SERVER_ERROR"))
    );
    let (s, b) = call(&c, &emu, "crm.invoice.list", json!({"auth": access, "filter": {"XML_ID": "b24etl:ev1"}, "select": ["ID", "ACCOUNT_NUMBER"]})).await;
    assert_eq!(s, 200);
    assert_eq!(
        b["result"].as_array().unwrap().len(),
        1,
        "the invoice was committed"
    );
    assert_eq!(emu.mutations("crm.invoice.add"), 1);
}

#[tokio::test]
async fn drive_download_url_serves_the_file() {
    let emu = Emulator::start(cfg(), Portal::demo()).await.unwrap();
    let c = client();
    let id = emu.add_disk_file("отчёт.csv", b"a;b\n1;2\n", None);
    let (access, _) = emu.issue_tokens(1);
    let (s, b) = call(&c, &emu, "disk.file.get", json!({"auth": access, "id": id})).await;
    assert_eq!(s, 200);
    assert_eq!(b["result"]["SIZE"], "8");
    let url = b["result"]["DOWNLOAD_URL"].as_str().unwrap().to_string();
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        r.headers()[axum::http::header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .contains("utf-8''")
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"a;b\n1;2\n");
    let (s, _) = get_text(&c, url.replace("token=", "token=x")).await;
    assert_eq!(s, 404);
    assert_eq!(emu.requests("disk.download"), 1);
}
