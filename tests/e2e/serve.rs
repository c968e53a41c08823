//! `etl serve` closed by default: the bearer token, `serve_settings:`, `/healthz`, `/metrics`
//! (read back with a Prometheus text parser) and `schedule:`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

pub const TOKEN: &str = "serve-test-token-7f3a";

pub struct Server {
    child: Child,
    pub addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `etl serve` on a free port over the pipelines in `dir`, with `ETL_SERVE_TOKEN` = `token`.
pub fn serve(dir: &Path, state: &Path, token: Option<&str>) -> Server {
    let mut cmd = etl();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--pipelines"])
        .arg(dir)
        .arg("--state")
        .arg(state)
        .env_remove("ETL_SERVE_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(t) = token {
        cmd.env("ETL_SERVE_TOKEN", t);
    }
    let mut child = cmd.spawn().unwrap();
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

/// A plain HTTP/1.1 GET with an optional `Authorization` value; (status, body text).
pub fn get_text(addr: &str, path: &str, authorization: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text[9..12].parse().unwrap();
    (status, text.split_once("\r\n\r\n").unwrap().1.to_string())
}

fn get(addr: &str, path: &str, authorization: Option<&str>) -> (u16, Value) {
    let (status, body) = get_text(addr, path, authorization);
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (status, json)
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

/// A pipelines directory with `once.yaml` (copies one record to out.jsonl, the label from
/// settings; `label` may come from the query) and, if asked, `tick.yaml` every 2 seconds.
fn pipelines(s: &Scratch, tick: bool) -> std::path::PathBuf {
    let d = s.dir.path().display();
    s.write("in.jsonl", "{\"ID\": \"1\"}\n");
    s.write(
        "pipelines/once.yaml",
        &format!(
            "name: once\nsettings:\n  label: a\n  hidden: x\nserve_settings: [label]\nsource: {{type: jsonl, path: {d}/in.jsonl, key: $.ID}}\nsteps:\n  - type: map\n    fields:\n      label: \"{{{{ settings.label }}}}\"\nsinks:\n  - {{type: jsonl, path: {d}/out.jsonl}}\n"
        ),
    );
    if tick {
        s.write(
            "pipelines/tick.yaml",
            &format!(
                "name: tick\nschedule: {{cron: \"*/2 * * * * *\", tz: Europe/Moscow}}\nsource: {{type: jsonl, path: {d}/in.jsonl, key: $.ID}}\nsinks:\n  - {{type: jsonl, path: {d}/tick.jsonl}}\n"
            ),
        );
    }
    s.path("pipelines")
}

/// The value of the sample `name` with `labels` in /metrics, parsed as Prometheus text.
fn metric(addr: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let (status, text) = get_text(addr, "/metrics", None);
    assert_eq!(status, 200, "{text}");
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("/metrics is not Prometheus text: {e}\n{text}"));
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => panic!("{name} is not a number"),
        })
}

#[test]
fn run_needs_the_token_and_a_wrong_one_runs_nothing() {
    let s = Scratch::new();
    let server = serve(&pipelines(&s, false), &s.state(), Some(TOKEN));
    for auth in [
        None,
        Some("Bearer wrong-token"),
        Some("Bearer serve-test-token-7f3"),
        Some("Basic c2VydmU="),
    ] {
        let (status, body) = get(&server.addr, "/run/once", auth);
        assert_eq!(status, 401, "{auth:?}: {body}");
        assert_eq!(body["success"], false);
    }
    // also for pipelines that do not exist: nothing is told without the token
    assert_eq!(get(&server.addr, "/run/nope", None).0, 401);
    assert!(
        !s.path("out.jsonl").exists(),
        "a refused request ran the pipeline"
    );
    assert_eq!(
        metric(&server.addr, "etl_runs_total", &[("pipeline", "once")]),
        None
    );

    let (status, body) = get(&server.addr, "/run/once?label=b", Some(&bearer()));
    assert_eq!(status, 200, "{body}");
    assert_eq!(read_jsonl(&s.path("out.jsonl"))[0]["label"], "b");
}

#[test]
fn only_serve_settings_come_from_the_query() {
    let s = Scratch::new();
    let server = serve(&pipelines(&s, false), &s.state(), Some(TOKEN));
    let (status, body) = get(&server.addr, "/run/once?hidden=y", Some(&bearer()));
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("`hidden` cannot be set from the query"),
        "{body}"
    );
    let (status, _) = get(&server.addr, "/run/once?label=c&x=1", Some(&bearer()));
    assert_eq!(status, 400);
    assert!(
        !s.path("out.jsonl").exists(),
        "a refused request ran the pipeline"
    );
}

#[test]
fn without_a_token_run_is_disabled_but_health_and_metrics_answer() {
    let s = Scratch::new();
    let server = serve(&pipelines(&s, false), &s.state(), None);
    let (status, body) = get(&server.addr, "/run/once", Some("Bearer "));
    assert_eq!(status, 403, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("ETL_SERVE_TOKEN"),
        "{body}"
    );
    assert!(!s.path("out.jsonl").exists());
    let (status, body) = get(&server.addr, "/healthz", None);
    assert_eq!((status, body["status"].clone()), (200, "ok".into()));
    assert_eq!(get_text(&server.addr, "/metrics", None).0, 200);
}

#[test]
fn metrics_are_prometheus_text_with_runs_records_and_durations() {
    let s = Scratch::new();
    let server = serve(&pipelines(&s, false), &s.state(), Some(TOKEN));
    assert_eq!(get(&server.addr, "/run/once", Some(&bearer())).0, 200);
    let runs = [("pipeline", "once"), ("result", "finished")];
    assert_eq!(metric(&server.addr, "etl_runs_total", &runs), Some(1.0));
    let ok = [("pipeline", "once"), ("outcome", "ok")];
    assert_eq!(metric(&server.addr, "etl_records_total", &ok), Some(1.0));
    assert_eq!(
        metric(
            &server.addr,
            "etl_run_duration_seconds_count",
            &[("pipeline", "once")]
        ),
        Some(1.0)
    );
}

#[test]
fn a_scheduled_pipeline_runs_again_and_again_in_one_serve() {
    let s = Scratch::new();
    let server = serve(&pipelines(&s, true), &s.state(), Some(TOKEN));
    let runs = [("pipeline", "tick"), ("result", "finished")];
    let started = Instant::now();
    loop {
        let done = metric(&server.addr, "etl_runs_total", &runs).unwrap_or(0.0);
        if done >= 3.0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the schedule ran {done} time(s) in a minute"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(s.path("tick.jsonl").exists());
    // the unscheduled pipeline never ran by itself
    assert_eq!(
        metric(&server.addr, "etl_runs_total", &[("pipeline", "once")]),
        None
    );
    let (_, index) = get(&server.addr, "/", Some(&bearer()));
    assert_eq!(index["scheduled"], serde_json::json!(["tick"]));
}

#[test]
fn validate_points_at_a_wrong_schedule_and_an_unknown_serve_setting() {
    let s = Scratch::new();
    let d = s.dir.path().display();
    let p = s.write(
        "bad.yaml",
        &format!(
            "name: bad\nsettings: {{label: a}}\nserve_settings: [label, nope]\nschedule:\n  cron: \"0 61 * * *\"\n  tz: Europe/Moscow\nsource: {{type: jsonl, path: {d}/in.jsonl}}\nsinks:\n  - {{type: jsonl, path: {d}/out.jsonl}}\n"
        ),
    );
    let out = run(etl().arg("validate").arg(&p));
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let text = stdout(&out);
    let file = p.display();
    assert!(
        text.contains(&format!(
            "{file}:3:25: `nope` is not a setting of this pipeline"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("{file}:5:9: invalid cron expression `0 61 * * *`")),
        "{text}"
    );
}

#[test]
fn a_request_body_over_the_limit_is_refused() {
    let s = Scratch::new();
    let server = serve(&pipelines(&s, false), &s.state(), Some(TOKEN));
    let mut stream = TcpStream::connect(&server.addr).unwrap();
    let body = "x".repeat(200_000);
    // The server may answer and close before reading the whole body.
    let _ = write!(
        stream,
        "POST /run/once HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        server.addr,
        bearer(),
        body.len()
    );
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(!s.path("out.jsonl").exists());
}
