//! Seed 004: `pipelines/comagic_stats.yaml` against the legacy API v1 emulator; the session is
//! always ended.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use emulators::comagic::{LegacyConfig, LegacyEmulator, legacy_demo};
use emulators::kit::{Fault, FaultRule, Scope};
use serde_json::Value;

use crate::harness::*;

struct World {
    api: LegacyEmulator,
    scratch: Scratch,
}

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

impl World {
    fn new() -> World {
        World {
            api: LegacyEmulator::start(LegacyConfig::default(), legacy_demo(day("2025-02-10"), 50))
                .unwrap(),
            scratch: Scratch::new(),
        }
    }

    fn command(&self) -> Command {
        let mut cmd = etl();
        cmd.current_dir(root())
            .args([
                "run",
                "pipelines/comagic_stats.yaml",
                "--no-progress",
                "--set",
                "settings.date_from=2025-01-25",
                "--set",
                "settings.date_to=2025-01-31",
                "--state",
            ])
            .arg(self.scratch.state())
            .arg("--journal")
            .arg(self.scratch.path("journal.json"))
            .env("COMAGIC_API_URL", self.api.url())
            .env("COMAGIC_LOGIN", &self.api.config().login)
            .env("COMAGIC_PASSWORD", &self.api.config().password)
            .env("REPORT_OUTPUT_DIR", self.scratch.path("out"));
        cmd
    }

    fn rows(&self) -> Vec<Value> {
        let dir = self.scratch.path("out");
        let file = std::fs::read_dir(&dir)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        read_jsonl(&file)
    }

    fn assert_session_ended(&self) {
        let s = self.api.stats();
        assert_eq!(self.api.open_sessions(), 0, "{s:?}");
        assert!(s.logouts >= 1, "{s:?}");
    }
}

fn count(rows: &[Value], report: &str) -> usize {
    rows.iter().filter(|r| r["report"] == report).count()
}

#[test]
fn pulls_the_period_with_the_seeds_parameters_and_logs_out() {
    let w = World::new();
    let out = run(&mut w.command());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows = w.rows();
    let data = w.api.data();
    let in_period = |t: &Value| {
        t.as_str()
            .is_some_and(|t| ("2025-01-25".."2025-02-01").contains(&&t[..10]))
    };
    assert_eq!(count(&rows, "site"), 2);
    assert_eq!(count(&rows, "stat"), 2);
    assert_eq!(
        count(&rows, "communication"),
        data.communications
            .iter()
            .filter(|c| in_period(&c["date_time"]))
            .count()
    );
    assert_eq!(
        count(&rows, "goal"),
        data.goals
            .iter()
            .filter(|c| in_period(&c["date_time"]))
            .count()
    );
    assert_eq!(
        count(&rows, "call"),
        data.calls
            .iter()
            .filter(|c| in_period(&c["call_date"]))
            .count()
    );
    // the last day is there: date_till is dateTo + 1 day for communications, goals and calls
    assert!(rows.iter().any(
        |r| r["report"] == "call" && r["call_date"].as_str().unwrap().starts_with("2025-01-31")
    ));
    let stat = rows.iter().find(|r| r["report"] == "stat").unwrap();
    assert_eq!(
        (stat["date_from"].as_str(), stat["date_till"].as_str()),
        (Some("2025-01-25"), Some("2025-01-31"))
    );
    assert!(
        rows.iter()
            .filter(|r| r["report"] == "call")
            .flat_map(|r| r["file_link"].as_array().unwrap())
            .all(|l| l.as_str().unwrap().starts_with("https://app.comagic.ru/"))
    );
    let log = w.api.log();
    let comm = log
        .iter()
        .find(|r| r.path == "/api/v1/communication/")
        .unwrap();
    assert_eq!(
        (
            comm.params["date_from"].as_str(),
            comm.params["date_till"].as_str()
        ),
        ("2025-01-25", "2025-02-01")
    );
    let stat = log.iter().find(|r| r.path == "/api/v1/stat/").unwrap();
    assert_eq!(stat.params["date_till"], "2025-01-31");
    assert_eq!(log.last().unwrap().path, "/api/logout/");
    let s = w.api.stats();
    assert_eq!((s.logins, s.logouts), (1, 1));
    w.assert_session_ended();
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!all.contains(&w.api.config().password));
}

#[test]
fn logs_in_again_on_102401_unauthorized() {
    let w = World::new();
    w.api.expire_session_after(3);
    let out = run(&mut w.command());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(w.api.stats().logins, 2);
    assert_eq!(w.api.stats().unauthorized, 1);
    assert_eq!(count(&w.rows(), "stat"), 2);
    w.assert_session_ended();
}

#[test]
fn the_session_is_ended_after_a_failure() {
    let w = World::new();
    w.api.faults().add(
        FaultRule::new(Fault::Status(503))
            .on(Scope::Only("goal".to_string()))
            .times(100),
    );
    let out = run(&mut w.command());
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let journal = read_json(&w.scratch.path("journal.json"));
    assert_eq!(journal["status"], "aborted");
    assert!(
        journal["error"]
            .as_str()
            .unwrap()
            .contains("CoMagic API v1 unavailable: goal: HTTP 503"),
        "{journal}"
    );
    w.assert_session_ended();
    assert_eq!(w.api.log().last().unwrap().path, "/api/logout/");
}

#[test]
fn the_session_is_ended_after_ctrl_c() {
    let w = World::new();
    // the call statistics take forever: the run is interrupted while waiting for them
    w.api.faults().add(
        FaultRule::new(Fault::Slow(Duration::from_secs(60))).on(Scope::Only("call".to_string())),
    );
    let child = w
        .command()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !w.api.log().iter().any(|r| r.path == "/api/v1/call/") {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the run never reached the call statistics"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let journal = read_json(&w.scratch.path("journal.json"));
    assert!(
        journal["error"].as_str().unwrap().contains("interrupted"),
        "{journal}"
    );
    w.assert_session_ended();
    assert_eq!(w.api.stats().logouts, 1);
}
