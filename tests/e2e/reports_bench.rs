//! Benchmark of the three activity reports (ignored; run by hand, in release):
//!
//!     cargo test --release --test e2e reports_benchmark -- --ignored --nocapture
//!
//! An emulated portal with 1,000,000 activities, 100,000 companies, 200,000 contacts and 200,000
//! deals (sizes can be changed with BENCH_ACTIVITIES, BENCH_COMPANIES, BENCH_CONTACTS,
//! BENCH_DEALS); each report runs as `etl run` under `/usr/bin/time -v`. Printed per report:
//! Bitrix24 HTTP requests and rows fetched, fetch time, report-building time (everything after
//! the data is fetched: tables, workbook, e-mail) and the peak memory of the `etl` process.
//! E-mails go to a discarding SMTP sink (`BENCH_SMTP=aiosmtpd`: to the Python test server, whose
//! line-by-line reading then dominates the e-mail time).
//! The emulator runs without rate limits here, and the client is told so (request counts do
//! not depend on them; at the cloud's 2 requests/s the fetch takes about requests / 2 seconds).

use std::time::Instant;

use emulators::bitrix24::{EmulatorConfig, Portal, ReportScale};

use crate::harness::*;
use crate::smtp::{Options, SmtpServer};
use crate::smtp_sink::SmtpSink;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn seconds(rfc3339: &serde_json::Value) -> f64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339.as_str().unwrap())
        .unwrap()
        .timestamp_millis() as f64
        / 1000.0
}

/// The start of a report's file name.
fn title(report: &str) -> &'static str {
    match report {
        "companies_without_activity" => "Компании без активности",
        "completed_activities" => "Выполненные активности",
        _ => "Просроченные активности",
    }
}

#[test]
#[ignore]
fn reports_benchmark() {
    let spec = ReportScale {
        seed: 7,
        departments: 12,
        users: 300,
        companies: env_or("BENCH_COMPANIES", 100_000),
        contacts: env_or("BENCH_CONTACTS", 200_000),
        deals: env_or("BENCH_DEALS", 200_000),
        activities: env_or("BENCH_ACTIVITIES", 1_000_000),
        history_days: 180,
        now: chrono::Utc::now().timestamp(),
    };
    let clock = Instant::now();
    let portal = Portal::report_scale(&spec);
    eprintln!(
        "portal: {spec:?} generated in {:.1}s",
        clock.elapsed().as_secs_f64()
    );
    let emu = b24_with(
        EmulatorConfig {
            log_requests: false,
            ..EmulatorConfig::unlimited()
        },
        portal,
    );
    let s = Scratch::new();
    // BENCH_SMTP=aiosmtpd delivers to the Python test server instead of the discarding sink.
    let (_python, sink, smtp_url) = match std::env::var("BENCH_SMTP").as_deref() {
        Ok("aiosmtpd") => {
            let server = SmtpServer::start(s.dir.path(), Options::default());
            let url = server.url("smtp");
            (Some(server), None, url)
        }
        _ => {
            let sink = SmtpSink::start();
            let url = sink.url();
            (None, Some(sink), url)
        }
    };
    println!(
        "| report | rows out | B24 HTTP requests | rows fetched | rows/request | fetch s | report-building s | of which e-mail s | workbook MB | mails | peak RSS MB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for name in [
        "companies_without_activity",
        "completed_activities",
        "expired_activities",
    ] {
        emu.clear_log();
        let journal = s.path(&format!("{name}.json"));
        let out = run(std::process::Command::new("/usr/bin/time")
            .arg("-v")
            .arg(env!("CARGO_BIN_EXE_etl"))
            .arg("run")
            .arg(root().join("pipelines").join(format!("{name}.yaml")))
            .arg("--state")
            .arg(s.state())
            .arg("--no-progress")
            .arg("--journal")
            .arg(&journal)
            .args(["--set", "settings.department_ids=[1, 2, 3]"])
            // The client paces itself to the cloud's 2 requests/s and slows down near the
            // operating-time budget; this portal has neither limit.
            .args(["--set", "connections.b24.drain_per_second=1000"])
            .args(["--set", "connections.b24.burst=1000"])
            .args(["--set", "connections.b24.operating_limit_secs=1000000"])
            .env("B24_WEBHOOK_URL", emu.webhook_url())
            .env("SMTP_URL", &smtp_url)
            .env("REPORT_FROM", "reports@example.ru")
            .env("REPORT_OUTPUT_DIR", s.path("reports"))
            .env("B24_PORTAL_URL", "https://demo.bitrix24.ru")
            .env_remove("ETL_STATE")
            .env_remove("ETL_LOG")
            .stdout(std::process::Stdio::null()));
        let time = stderr(&out);
        assert_eq!(out.status.code(), Some(0), "{name}: {time}");
        let j = read_json(&journal);
        let rss_kb: f64 = time
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("Maximum resident set size (kbytes): ")
            })
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0);
        let log = j["log"].as_array().unwrap();
        let table_line = log
            .iter()
            .filter_map(|l| l.as_str())
            .find(|l| l.starts_with("table: read"))
            .unwrap();
        let fetch: f64 = table_line
            .split(" in ")
            .nth(1)
            .and_then(|t| t.split('s').next())
            .and_then(|t| t.parse().ok())
            .unwrap();
        let total = seconds(&j["finished_at"]) - seconds(&j["started_at"]);
        let fetched: i64 = j["counters"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| {
                k.starts_with("table.") && k.ends_with(".rows") && *k != "table.output.rows"
            })
            .map(|(_, v)| v.as_i64().unwrap())
            .sum();
        let requests = emu.http_requests();
        let seconds_in = |prefix: &str| -> f64 {
            log.iter()
                .filter_map(|l| l.as_str())
                .find(|l| l.starts_with(prefix))
                .and_then(|l| l.rsplit(" in ").next())
                .and_then(|t| t.trim_end_matches(['s', ')']).parse().ok())
                .unwrap_or(0.0)
        };
        let workbook_mb: f64 = std::fs::read_dir(s.path("reports"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(title(name)))
            .map(|e| e.metadata().unwrap().len() as f64 / 1e6)
            .sum();
        println!(
            "| {name} | {} | {requests} | {fetched} | {:.0} | {fetch:.1} | {:.1} | {:.1} | {workbook_mb:.1} | {} | {:.0} |",
            j["counters"]["table.output.rows"],
            fetched as f64 / requests.max(1) as f64,
            total - fetch,
            seconds_in("email: sent"),
            j["counters"]["email.sent"],
            rss_kb / 1024.0,
        );
        eprintln!("{name}: {}", serde_json::to_string(&j["log"]).unwrap());
        assert!(
            rss_kb < 1.5 * 1024.0 * 1024.0,
            "{name}: peak memory {rss_kb} kB"
        );
    }
    if let Some(sink) = sink {
        println!(
            "SMTP sink received {} messages, {:.0} MB",
            sink.received
                .messages
                .load(std::sync::atomic::Ordering::Relaxed),
            sink.received
                .bytes
                .load(std::sync::atomic::Ordering::Relaxed) as f64
                / 1e6
        );
    }
}
