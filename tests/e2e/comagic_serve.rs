//! `etl serve` (seed 003's main.py): `GET /run/<pipeline>` answers the journal; one run of a
//! pipeline at a time.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use emulators::comagic::DataApiConfig;
use emulators::kit::{Fault, FaultRule, Scope};
use serde_json::Value;

use crate::comagic_sales::World;
use crate::harness::*;

struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(w: &World) -> Server {
    let mut child = etl()
        .current_dir(root())
        .args(["serve", "--listen", "127.0.0.1:0", "--state"])
        .arg(w.scratch.state())
        .env("COMAGIC_DATA_API_URL", w.api.url())
        .env("COMAGIC_ACCESS_TOKEN", w.api.token())
        .env("ORDERS_API_URL", w.orders.url())
        .env("ORDERS_API_TOKEN", w.orders.token())
        .env_remove("COMAGIC_LOGIN")
        .env_remove("COMAGIC_PASSWORD")
        .env("ETL_SERVE_TOKEN", crate::serve::TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("{line}"))
        .to_string();
    Server { child, addr }
}

/// A plain HTTP/1.1 GET with serve's token; (status, JSON body).
fn get(addr: &str, path: &str) -> (u16, Value) {
    let bearer = format!("Bearer {}", crate::serve::TOKEN);
    let (status, body) = crate::serve::get_text(addr, path, Some(&bearer));
    let body = body.as_str();
    (
        status,
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}")),
    )
}

#[test]
fn runs_pipelines_and_answers_their_journal() {
    let w = World::new(DataApiConfig::default());
    let server = serve(&w);
    let (status, body) = get(&server.addr, "/run/comagic_sales");
    assert_eq!(
        (
            status,
            body["success"].clone(),
            body["journal"]["phones_analyzed"].clone()
        ),
        (200, Value::Bool(true), 0.into()),
        "{body}"
    );
    let (status, body) = get(&server.addr, "/run/comagic_sales?update_db");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["journal"]["tags_applied"], 6, "{body}");
    assert!(
        body["journal"]["log"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l == "79851112233:no communication")
    );
    let (status, body) = get(&server.addr, "/run/comagic_sales?update_db");
    assert_eq!(
        (status, body["journal"]["problem"].clone()),
        (200, 6.into()),
        "{body}"
    );
    let (status, body) = get(&server.addr, "/run/no_such_pipeline");
    assert_eq!(status, 404);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("ERROR: no pipeline named `no_such_pipeline`"),
        "{body}"
    );
    let (status, body) = get(&server.addr, "/");
    assert_eq!(status, 200);
    assert!(
        body["pipelines"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "comagic_stats")
    );
}

#[test]
fn a_second_request_while_a_run_is_going_gets_a_busy_answer() {
    let w = World::new(DataApiConfig::default());
    let server = serve(&w);
    // the first run waits on CoMagic for a while
    w.api.faults().add(
        FaultRule::new(Fault::Slow(Duration::from_secs(3))).on(Scope::Only("get.tags".to_string())),
    );
    let addr = server.addr.clone();
    let first = std::thread::spawn(move || get(&addr, "/run/comagic_sales?update_db"));
    let started = Instant::now();
    while w.api.requests_of("get.tags").is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the first run never reached CoMagic"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, body) = get(&server.addr, "/run/comagic_sales");
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["success"], false);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("already running"),
        "{body}"
    );
    let (status, body) = first.join().unwrap();
    assert_eq!(
        (status, body["journal"]["tags_applied"].clone()),
        (200, 6.into()),
        "{body}"
    );
    // and once it is over, the pipeline runs again
    assert_eq!(get(&server.addr, "/run/comagic_sales").0, 200);
}

#[test]
fn an_aborted_run_answers_success_false() {
    let w = World::new(DataApiConfig::default());
    let server = serve(&w);
    w.orders.faults().fail_next(20, Fault::Status(503));
    let (status, body) = get(&server.addr, "/run/comagic_sales?update_db");
    assert_eq!(status, 500, "{body}");
    assert_eq!(body.as_object().unwrap().len(), 2, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("ERROR: HTTP source 127.0.0.1"),
        "{body}"
    );
}

#[test]
fn metrics_count_requests_by_system_and_status() {
    let w = World::new(DataApiConfig::default());
    let server = serve(&w);
    assert_eq!(get(&server.addr, "/run/comagic_sales?update_db").0, 200);
    let (status, text) = crate::serve::get_text(&server.addr, "/metrics", None);
    assert_eq!(status, 200);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    for system in ["comagic", "http"] {
        assert!(
            scrape
                .samples
                .iter()
                .any(|s| s.metric == "etl_requests_total"
                    && s.labels.get("system") == Some(system)
                    && s.labels.get("status") == Some("200")),
            "no 200 requests of {system} in\n{text}"
        );
    }
    assert!(
        text.contains(r#"etl_runs_total{pipeline="comagic_sales",result="finished"} 1"#),
        "{text}"
    );
}
