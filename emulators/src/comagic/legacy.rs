//! An emulator of CoMagic's legacy REST API v1 (`/api/...`, session key), per `comagic-api.md`
//! §4 and §7: login for a 32-hex session key (3-hour sessions), the statistics methods seed 004's
//! `CMInstance` calls, `{"success": false, "message": "102401:Unauthorized"}` for an unknown or
//! expired session, logout, and the tagging methods.
//!
//! Parameters are read from the query string *and* from a form body, also on GET (hexeh's client
//! sends them in the body of a GET). Paths must end in a slash. `communication`, `goal` and `call`
//! treat `date_till` as an exclusive bound (a date means its midnight), which is why the Python
//! class asks for `dateTo + 1 day`; `stat` counts whole days up to `date_till` inclusive.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{Days, NaiveDate, NaiveDateTime};
use serde_json::{Value as Json, json};

use super::data::Rng;
use crate::kit::{self, Conn, Faults, ServerThread};

#[derive(Clone, Debug)]
pub struct LegacyConfig {
    pub login: String,
    pub password: String,
    pub session_ttl: Duration,
    pub latency: Duration,
}

impl Default for LegacyConfig {
    fn default() -> Self {
        LegacyConfig {
            login: "cm-user".into(),
            password: "cm-password-42".into(),
            session_ttl: Duration::from_secs(3 * 3600),
            latency: Duration::ZERO,
        }
    }
}

/// The account's data: sites, and per day and site visits, communications, goals and calls.
#[derive(Clone, Debug)]
pub struct LegacyData {
    pub customers: Vec<Json>,
    pub sites: Vec<Json>,
    pub tags: Vec<Json>,
    /// Rows with `date_time` (`YYYY-MM-DD hh:mm:ss`) and `site_id`.
    pub communications: Vec<Json>,
    pub goals: Vec<Json>,
    /// Rows with `call_date`, `site_id`, `numa`, `numb`, `direction`.
    pub calls: Vec<Json>,
    /// Visits per (site, day).
    pub visits: BTreeMap<(u64, NaiveDate), u64>,
}

/// Two sites and `days` days up to `last_day` of deterministic activity.
pub fn legacy_demo(last_day: NaiveDate, days: u64) -> LegacyData {
    let mut rng = Rng(404);
    let sites = vec![
        json!({"id": 1201, "domain": "clinic.example.ru", "customer_id": 48512, "name": "Клиника"}),
        json!({"id": 1202, "domain": "lab.example.ru", "customer_id": 48512, "name": "Лаборатория"}),
    ];
    let mut data = LegacyData {
        customers: vec![json!({"id": 48512, "name": "Клиника «Здоровье»", "status": "active"})],
        tags: vec![
            json!({"id": 547, "name": "Продажа"}),
            json!({"id": 601, "name": "Целевой"}),
            json!({"id": 602, "name": "Спам"}),
        ],
        sites,
        communications: Vec::new(),
        goals: Vec::new(),
        calls: Vec::new(),
        visits: BTreeMap::new(),
    };
    let (mut comm_id, mut goal_id, mut call_id) = (700_000u64, 800_000u64, 900_000u64);
    for d in 0..days {
        let day = last_day - Days::new(days - 1 - d);
        for site in [1201u64, 1202] {
            data.visits.insert((site, day), 100 + rng.below(400));
            for _ in 0..(2 + rng.below(4)) {
                let at = day
                    .and_hms_opt(
                        8 + rng.below(14) as u32,
                        rng.below(60) as u32,
                        rng.below(60) as u32,
                    )
                    .unwrap();
                let time = at.format("%Y-%m-%d %H:%M:%S").to_string();
                let visitor = 5_000_000 + rng.below(100_000);
                let ac_id = 30 + rng.below(3);
                let numa = format!("79{:09}", rng.below(1_000_000_000));
                let lost = rng.below(100) < 20;
                comm_id += 1;
                call_id += 1;
                data.calls.push(json!({
                    "id": call_id, "call_date": time, "session_start": time, "communication_type": "call",
                    "status": if lost { "lost" } else { "normal" }, "numa": numa, "numb": "74993720000",
                    "direction": "in", "wait_time": rng.below(30), "duration": if lost { 0 } else { 30 + rng.below(600) },
                    "file_link": if lost { json!([]) } else { json!([format!("//app.comagic.ru/system/media/talk/{call_id}/a1b2c3/")]) },
                    "operator_name": "Оператор", "scenario_name": "Основной", "is_transfer": false, "tags": [],
                    "communication_number": 1, "site_id": site, "ac_id": ac_id, "visitor_id": visitor,
                    "visitor_type": "new", "visits_count": 1, "country": "Россия", "region": "Москва", "city": "Москва",
                    "search_engine": "yandex", "search_query": null, "page_url": format!("https://{}/", if site == 1201 { "clinic.example.ru" } else { "lab.example.ru" }),
                    "referrer": "https://yandex.ru/", "ua_client_id": null, "utm_source": "yandex", "utm_medium": "cpc", "utm_campaign": "brand"
                }));
                data.communications.push(json!({
                    "id": comm_id, "date_time": time, "communication_type": "call", "site_id": site, "ac_id": ac_id,
                    "visitor_id": visitor, "is_goal": !lost, "is_first": rng.below(2) == 0, "tags": [], "call_id": call_id
                }));
            }
            for _ in 0..rng.below(3) {
                let at = day
                    .and_hms_opt(9 + rng.below(12) as u32, rng.below(60) as u32, 0)
                    .unwrap();
                goal_id += 1;
                data.goals.push(json!({
                    "id": goal_id, "goal_id": 70 + rng.below(3), "goal_name": "Запись на приём", "date_time": at.format("%Y-%m-%d %H:%M:%S").to_string(),
                    "site_id": site, "ac_id": 30 + rng.below(3), "visitor_id": 5_000_000 + rng.below(100_000), "tags": []
                }));
            }
        }
    }
    data
}

/// One request as the emulator saw it (session key and password masked).
#[derive(Clone, Debug)]
pub struct LegacyRequest {
    pub method: String,
    pub path: String,
    pub params: BTreeMap<String, String>,
    pub success: bool,
}

#[derive(Clone, Debug, Default)]
pub struct LegacyStats {
    pub requests: u64,
    pub logins: u64,
    pub logouts: u64,
    pub unauthorized: u64,
}

struct World {
    data: LegacyData,
    sessions: HashMap<String, Instant>,
    log: Vec<LegacyRequest>,
    stats: LegacyStats,
    /// After this many more authorised requests, the session in use expires.
    expire_after: Option<u32>,
    rng: Rng,
}

struct Shared {
    config: LegacyConfig,
    world: Mutex<World>,
    faults: Faults<String>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn ok(data: Json) -> Json {
    json!({"success": true, "data": data})
}

fn fail(message: impl Into<String>) -> Json {
    json!({"success": false, "message": message.into()})
}

/// `YYYY-MM-DD` (its midnight) or `YYYY-MM-DD hh:mm:ss`.
fn time(text: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%d %H:%M:%S")
        .ok()
        .or_else(|| {
            NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
                .ok()
                .map(|d| d.and_time(chrono::NaiveTime::MIN))
        })
}

const METHODS: &[&str] = &[
    "customer_list",
    "site",
    "tag",
    "stat",
    "communication",
    "goal",
    "call",
    "tag_communication",
    "tag_communication_sale",
    "untag_communication",
];

impl Shared {
    fn process(
        &self,
        method: &Method,
        path: &str,
        params: &BTreeMap<String, String>,
    ) -> (StatusCode, Json) {
        let mut w = lock(&self.world);
        let (status, body) = self.route(&mut w, method, path, params);
        let mut logged = params.clone();
        for k in ["session_key", "password"] {
            if logged.contains_key(k) {
                logged.insert(k.into(), "***".into());
            }
        }
        let success = body["success"] == true;
        w.log.push(LegacyRequest {
            method: method.to_string(),
            path: path.to_string(),
            params: logged,
            success,
        });
        (status, body)
    }

    fn route(
        &self,
        w: &mut World,
        method: &Method,
        path: &str,
        params: &BTreeMap<String, String>,
    ) -> (StatusCode, Json) {
        if !path.ends_with('/') {
            return (
                StatusCode::NOT_FOUND,
                fail(format!("Not found: {path} (paths end with a slash)")),
            );
        }
        let effective = params
            .get("action")
            .map(|a| a.to_uppercase())
            .unwrap_or_else(|| method.to_string());
        match path {
            "/api/login/" => {
                let (Some(login), Some(password)) = (params.get("login"), params.get("password"))
                else {
                    return (StatusCode::OK, fail("login and password are required"));
                };
                if *login != self.config.login || *password != self.config.password {
                    return (StatusCode::OK, fail("Wrong login or password"));
                }
                let key: String = (0..4)
                    .map(|_| format!("{:08x}", w.rng.next() as u32))
                    .collect();
                w.sessions
                    .insert(key.clone(), Instant::now() + self.config.session_ttl);
                w.stats.logins += 1;
                (StatusCode::OK, ok(json!({"session_key": key})))
            }
            "/api/logout/" => {
                if let Some(key) = params.get("session_key") {
                    w.sessions.remove(key);
                }
                w.stats.logouts += 1;
                (StatusCode::OK, json!({"success": true}))
            }
            _ => {
                let Some(name) = path
                    .strip_prefix("/api/v1/")
                    .and_then(|p| p.strip_suffix('/'))
                    .filter(|n| METHODS.contains(n))
                else {
                    return (StatusCode::NOT_FOUND, fail(format!("Not found: {path}")));
                };
                let live = params
                    .get("session_key")
                    .and_then(|k| w.sessions.get(k).map(|exp| (k.clone(), *exp)));
                let Some((key, expires)) = live.filter(|(_, exp)| Instant::now() < *exp) else {
                    w.stats.unauthorized += 1;
                    return (StatusCode::OK, fail("102401:Unauthorized"));
                };
                let _ = expires;
                if let Some(n) = w.expire_after.as_mut() {
                    if *n == 0 {
                        w.sessions.remove(&key);
                        w.expire_after = None;
                        w.stats.unauthorized += 1;
                        return (StatusCode::OK, fail("102401:Unauthorized"));
                    }
                    *n -= 1;
                }
                let write = name.starts_with("tag_") || name.starts_with("untag_");
                let allowed = if write {
                    effective == "POST"
                } else {
                    effective == "GET"
                };
                if !allowed {
                    return (
                        StatusCode::METHOD_NOT_ALLOWED,
                        fail(format!("{effective} is not allowed on {path}")),
                    );
                }
                (StatusCode::OK, self.method(w, name, params))
            }
        }
    }

    fn method(&self, w: &mut World, name: &str, p: &Params) -> Json {
        let d = &w.data;
        match name {
            "customer_list" => ok(json!(d.customers)),
            "site" => ok(json!(
                d.sites
                    .iter()
                    .filter(|s| matches(p, s, &[("customer_id", "customer_id")]))
                    .collect::<Vec<_>>()
            )),
            "tag" => ok(json!(d.tags)),
            "stat" => stat(d, p),
            "communication" | "goal" => communications(d, name, p),
            "call" => calls(d, p),
            "tag_communication" | "untag_communication" | "tag_communication_sale" => {
                let needed: &[&str] = if name == "tag_communication_sale" {
                    &["object_id", "object_type", "cost", "date_time"]
                } else {
                    &["object_id", "object_type", "mark_id"]
                };
                match needed.iter().find(|k| !p.contains_key(**k)) {
                    Some(k) => fail(format!("{k} is required")),
                    None => json!({"success": true}),
                }
            }
            _ => fail("Unknown method"),
        }
    }
}

type Params = BTreeMap<String, String>;

fn num(p: &Params, k: &str) -> Option<u64> {
    p.get(k).and_then(|v| v.parse::<u64>().ok())
}

/// `date_from` and `date_till`, both required; the error is the answer.
fn window(p: &Params) -> Result<(NaiveDateTime, NaiveDateTime), Json> {
    let from = p
        .get("date_from")
        .and_then(|s| time(s))
        .ok_or_else(|| fail("date_from is required (YYYY-MM-DD)"))?;
    let till = p
        .get("date_till")
        .and_then(|s| time(s))
        .ok_or_else(|| fail("date_till is required (YYYY-MM-DD)"))?;
    Ok((from, till))
}

fn in_window(row: &Json, field: &str, from: NaiveDateTime, till: NaiveDateTime) -> bool {
    row[field]
        .as_str()
        .and_then(time)
        .is_some_and(|t| t >= from && t < till)
}

/// Whether the row agrees with every (parameter, field) pair the request gives.
fn matches(p: &Params, row: &Json, keys: &[(&str, &str)]) -> bool {
    keys.iter().all(|(param, field)| {
        p.get(*param)
            .is_none_or(|v| row[*field].to_string().trim_matches('"') == v)
    })
}

/// `stat`: a site's counters over whole days, `date_till` inclusive.
fn stat(d: &LegacyData, p: &Params) -> Json {
    let Some(site) = num(p, "site_id") else {
        return fail("site_id is required");
    };
    let (from, till) = match window(p) {
        Ok(w) => w,
        Err(e) => return e,
    };
    // whole days, date_till inclusive
    let (from_day, till_day) = (from.date(), till.date());
    let days = |t: &Json, f: &str| {
        t[f].as_str()
            .and_then(time)
            .is_some_and(|x| x.date() >= from_day && x.date() <= till_day)
    };
    let site_rows = |rows: &Vec<Json>, f: &str| {
        rows.iter()
            .filter(|r| r["site_id"] == site && days(r, f) && matches(p, r, &[("ac_id", "ac_id")]))
            .count()
    };
    let visits: u64 = d
        .visits
        .range((site, from_day)..=(site, till_day))
        .map(|(_, v)| v)
        .sum();
    ok(json!([{
        "site_id": site, "date_from": from_day.to_string(), "date_till": till_day.to_string(),
        "visitors": visits * 8 / 10, "visits": visits, "calls": site_rows(&d.calls, "call_date"),
        "goals": site_rows(&d.goals, "date_time"), "communications": site_rows(&d.communications, "date_time"),
        "chats": 0, "offline_messages": 0
    }]))
}

/// `communication` and `goal`: the rows of the window matching the filters.
fn communications(d: &LegacyData, name: &str, p: &Params) -> Json {
    if num(p, "site_id").is_none() {
        return fail("site_id is required");
    }
    let (from, till) = match window(p) {
        Ok(w) => w,
        Err(e) => return e,
    };
    let rows = if name == "communication" {
        &d.communications
    } else {
        &d.goals
    };
    let keys: &[(&str, &str)] = if name == "communication" {
        &[("site_id", "site_id"), ("ac_id", "ac_id")]
    } else {
        &[
            ("site_id", "site_id"),
            ("ac_id", "ac_id"),
            ("id", "goal_id"),
            ("visitor_id", "visitor_id"),
        ]
    };
    let only_first = p.get("only_first").is_some_and(|v| v == "true" || v == "1");
    let not_goal = p
        .get("show_not_goal")
        .is_none_or(|v| v == "true" || v == "1");
    ok(json!(
        rows.iter()
            .filter(|r| in_window(r, "date_time", from, till) && matches(p, r, keys))
            .filter(|r| !only_first || r["is_first"] == true)
            .filter(|r| not_goal || r.get("is_goal").is_none_or(|g| *g == true))
            .collect::<Vec<_>>()
    ))
}

/// `call`: the calls of the window matching the filters.
fn calls(d: &LegacyData, p: &Params) -> Json {
    let (from, till) = match window(p) {
        Ok(w) => w,
        Err(e) => return e,
    };
    let keys: &[(&str, &str)] = &[
        ("site_id", "site_id"),
        ("ac_id", "ac_id"),
        ("id", "id"),
        ("visitor_id", "visitor_id"),
        ("direction", "direction"),
        ("numa", "numa"),
        ("numb", "numb"),
    ];
    ok(json!(
        d.calls
            .iter()
            .filter(|r| in_window(r, "call_date", from, till) && matches(p, r, keys))
            .collect::<Vec<_>>()
    ))
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    lock(&shared.world).stats.requests += 1;
    let mut params = BTreeMap::new();
    for (k, v) in url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()) {
        params.insert(k.into_owned(), v.into_owned());
    }
    // hexeh's client sends GET parameters as a form body
    for (k, v) in url::form_urlencoded::parse(&body) {
        params
            .entry(k.into_owned())
            .or_insert_with(|| v.into_owned());
    }
    let path = uri.path().to_string();
    let kind = path
        .trim_start_matches("/api/")
        .trim_start_matches("v1/")
        .trim_end_matches('/')
        .to_string();
    let write = method == Method::POST;
    let work = || {
        let (status, body) = shared.process(&method, &path, &params);
        (status, axum::Json(body)).into_response()
    };
    kit::respond(
        &shared.faults,
        &kind,
        write,
        &conn,
        shared.config.latency,
        work,
    )
    .await
}

/// A running legacy API on 127.0.0.1; stops on [`shutdown`](Self::shutdown) or drop.
pub struct LegacyEmulator {
    server: ServerThread,
    shared: Arc<Shared>,
}

impl LegacyEmulator {
    pub fn start(config: LegacyConfig, data: LegacyData) -> io::Result<Self> {
        let shared = Arc::new(Shared {
            config,
            world: Mutex::new(World {
                data,
                sessions: HashMap::new(),
                log: Vec::new(),
                stats: LegacyStats::default(),
                expire_after: None,
                rng: Rng(0x1E6A),
            }),
            faults: Faults::default(),
        });
        let server = ServerThread::spawn(
            "comagic-legacy-api",
            Router::new().fallback(handle).with_state(shared.clone()),
        )?;
        Ok(LegacyEmulator { server, shared })
    }

    /// `http://127.0.0.1:PORT/api/`: the value for `COMAGIC_API_URL`.
    pub fn url(&self) -> String {
        format!("{}/api/", self.server.url())
    }

    pub fn config(&self) -> &LegacyConfig {
        &self.shared.config
    }

    pub fn data(&self) -> LegacyData {
        lock(&self.shared.world).data.clone()
    }

    pub fn stats(&self) -> LegacyStats {
        lock(&self.shared.world).stats.clone()
    }

    pub fn log(&self) -> Vec<LegacyRequest> {
        lock(&self.shared.world).log.clone()
    }

    /// Sessions that are open (logged in, not out, not expired).
    pub fn open_sessions(&self) -> usize {
        lock(&self.shared.world)
            .sessions
            .values()
            .filter(|e| Instant::now() < **e)
            .count()
    }

    /// After `n` more authorised requests, the session in use expires (the next gets 102401).
    pub fn expire_session_after(&self, n: u32) {
        lock(&self.shared.world).expire_after = Some(n);
    }

    /// Transport faults keyed by method (`call`, `goal`, `login`, `logout`...).
    pub fn faults(&self) -> &Faults<String> {
        &self.shared.faults
    }

    pub fn shutdown(mut self) {
        self.server.stop();
    }
}
