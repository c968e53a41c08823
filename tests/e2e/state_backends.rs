//! The state on SQLite and on PostgreSQL: contacts.yaml gives the same result on both, a second
//! `etl run` of a running pipeline refuses with exit code 3 and writes nothing, and a run killed
//! with kill -9 leaves no lease behind. PostgreSQL is the server of `ETL_TEST_POSTGRES` (CI fails
//! when it is missing; a developer's run skips that half and says so).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use emulators::bitrix24::{EmulatorConfig, Portal};
use etl::state::{Store, testing};
use serde_json::json;

use crate::harness::*;
use crate::seed001::{contact, contacts_portal, pipeline, snapshot, status};

/// The states a test runs on: a SQLite file in `s`, and a fresh PostgreSQL schema.
fn states(s: &Scratch, label: &str) -> Vec<(&'static str, PathBuf)> {
    let mut all = vec![("sqlite", s.state())];
    if let Some(base) = testing::postgres_url() {
        all.push((
            "postgres",
            PathBuf::from(testing::fresh_postgres_schema(&base, label)),
        ));
    }
    all
}

fn many_contacts(n: u64) -> Portal {
    let mut p = Portal::new();
    for id in 1..=n {
        p.insert("contact", contact(id, json!({})));
    }
    p
}

#[test]
fn contacts_sync_the_same_on_sqlite_and_postgres() {
    let s = Scratch::new();
    let mut results = Vec::new();
    for (backend, state) in states(&s, "same") {
        let (b24, otm) = (b24(contacts_portal()), otmechalka());
        for round in ["first", "second"] {
            let out = run(
                etl_run(&pipeline("contacts.yaml"), &state, Some(&b24), Some(&otm))
                    .args(["--set", "source.incremental.settle_secs=0"]),
            );
            assert_eq!(
                out.status.code(),
                Some(0),
                "{backend}, {round} run: {}",
                stderr(&out)
            );
        }
        let statuses: Vec<_> = (1..=11).map(|id| status(&b24, "contact", id)).collect();
        results.push((backend, snapshot(&otm), statuses, otm.counters().writes));
    }
    let (_, clients, statuses, writes) = &results[0];
    assert_eq!(clients.0.len(), 3, "{clients:?}");
    for (backend, c, st, w) in &results[1..] {
        assert_eq!(c, clients, "{backend}: otmechalka as on SQLite");
        assert_eq!(st, statuses, "{backend}: Bitrix24 statuses as on SQLite");
        assert_eq!(
            w, writes,
            "{backend}: the second run wrote nothing here either"
        );
    }
}

#[test]
fn a_second_run_of_a_running_pipeline_refuses_with_exit_3() {
    let clean = {
        let (b24, otm, s) = (b24(many_contacts(150)), otmechalka(), Scratch::new());
        let out = run(&mut etl_run(
            &pipeline("contacts.yaml"),
            &s.state(),
            Some(&b24),
            Some(&otm),
        ));
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        snapshot(&otm)
    };
    let s = Scratch::new();
    for (backend, state) in states(&s, "busy") {
        let b24 = b24(many_contacts(150));
        b24.update_config(|c| c.latency = Duration::from_millis(20));
        let otm = otmechalka();
        let first = etl_run(&pipeline("contacts.yaml"), &state, Some(&b24), Some(&otm))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let first_pid = first.id();
        // The first run holds the lease once it has recorded itself as the holder.
        let store = Store::open(&state).unwrap();
        let clock = Instant::now();
        while store.lease_holder("contacts").unwrap().is_none() {
            assert!(
                clock.elapsed() < Duration::from_secs(20),
                "{backend}: no lease taken"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let journal = s.path(&format!("refused-{backend}.json"));
        let second = run(
            etl_run(&pipeline("contacts.yaml"), &state, Some(&b24), Some(&otm))
                .arg("--journal")
                .arg(&journal),
        );
        let reset = run(etl()
            .args(["state", "reset", "contacts", "--state"])
            .arg(&state));
        let first = first.wait_with_output().unwrap();
        assert_eq!(
            reset.status.code(),
            Some(3),
            "{backend}: {}",
            stderr(&reset)
        );
        assert_eq!(
            first.status.code(),
            Some(0),
            "{backend}: {}",
            stderr(&first)
        );
        assert_eq!(
            second.status.code(),
            Some(3),
            "{backend}: {}",
            stderr(&second)
        );
        let message = stderr(&second);
        assert!(
            message.contains("pipeline `contacts` is already running (lease held since ")
                && message.contains(&format!("/pid {first_pid})")),
            "{backend}: {message}"
        );
        assert!(
            !journal.exists(),
            "{backend}: the refused run wrote no journal"
        );
        assert_eq!(
            snapshot(&otm),
            clean,
            "{backend}: otmechalka as after one run"
        );
        assert_eq!(
            otm.counters().creates,
            150,
            "{backend}: each client created once"
        );
        let runs = store.describe("contacts").unwrap()["recent_runs"].clone();
        assert_eq!(
            runs.as_array().unwrap().len(),
            1,
            "{backend}: one run recorded: {runs}"
        );
        assert!(
            store.try_lease("contacts").unwrap().is_some(),
            "{backend}: released"
        );
    }
}

#[test]
fn a_run_killed_with_kill_9_leaves_no_lease_behind() {
    let s = Scratch::new();
    for (backend, state) in states(&s, "kill") {
        let b24 = b24(many_contacts(100));
        b24.update_config(|c| c.latency = Duration::from_millis(10));
        let otm = otmechalka();
        let mut child = etl_run(&pipeline("contacts.yaml"), &state, Some(&b24), Some(&otm))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let store = Store::open(&state).unwrap();
        let clock = Instant::now();
        while store.lease_holder("contacts").unwrap().is_none() {
            assert!(
                clock.elapsed() < Duration::from_secs(20),
                "{backend}: no lease taken"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(200));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        // PostgreSQL ends the session when it sees the socket close: give it a moment.
        let clock = Instant::now();
        loop {
            let out = run(&mut etl_run(
                &pipeline("contacts.yaml"),
                &state,
                Some(&b24),
                Some(&otm),
            ));
            match out.status.code() {
                Some(0) => break,
                Some(3) if clock.elapsed() < Duration::from_secs(5) => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                code => panic!("{backend}: {code:?} {}", stderr(&out)),
            }
        }
        assert_eq!(otm.clients().len(), 100, "{backend}");
        assert_eq!(
            otm.counters().creates,
            100,
            "{backend}: nothing created twice"
        );
    }
}

/// Records/s and state operations per record of the contacts sync on each backend (emulated
/// services, no rate limit, no latency). Run by hand:
///
///     ETL_TEST_POSTGRES=postgres://... cargo test --release --test e2e bench_state_backends -- --ignored --nocapture
#[test]
#[ignore]
fn bench_state_backends() {
    let n = 2000;
    let s = Scratch::new();
    for (backend, state) in states(&s, "bench") {
        let config = EmulatorConfig {
            bucket_capacity: f64::INFINITY,
            operating_limit_secs: f64::INFINITY,
            log_requests: false,
            ..EmulatorConfig::default()
        };
        let (b24, otm) = (b24_with(config, many_contacts(n)), otmechalka());
        for round in ["first", "second"] {
            let clock = Instant::now();
            let out = run(
                etl_run(&pipeline("contacts.yaml"), &state, Some(&b24), Some(&otm)).args([
                    "--log",
                    "etl=debug",
                    "--set",
                    "source.incremental.settle_secs=0",
                ]),
            );
            let elapsed = clock.elapsed();
            assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
            let operations: f64 = stderr(&out)
                .lines()
                .find(|l| l.contains("state store"))
                .and_then(|l| l.split("operations=").nth(1))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(f64::NAN);
            eprintln!(
                "{backend:>8} {round:>6} sync of {n} contacts: {elapsed:.2?}, {:.0} records/s, {:.2} state operations per record",
                n as f64 / elapsed.as_secs_f64(),
                operations / n as f64
            );
        }
    }
}

#[test]
fn etl_state_migrate_shows_and_applies_the_migrations() {
    let s = Scratch::new();
    for (backend, state) in states(&s, "migrate") {
        let migrate = |extra: &[&str]| {
            let out = run(etl()
                .args(["state", "migrate", "--state"])
                .arg(&state)
                .args(extra));
            assert_eq!(out.status.code(), Some(0), "{backend}: {}", stderr(&out));
            stdout(&out)
        };
        let known = etl::state::migrations::MIGRATIONS.len();
        let listed = migrate(&["--status"]);
        assert!(listed.contains("   1  pending"), "{backend}: {listed}");
        assert!(
            listed.ends_with(&format!("\n{known} pending\n")),
            "{backend}: {listed}"
        );
        let applied = migrate(&[]);
        let versions: Vec<String> = (1..=known).map(|v| v.to_string()).collect();
        assert!(
            applied.contains(&format!(
                "applied {known} migration(s): {}",
                versions.join(", ")
            )),
            "{backend}: {applied}"
        );
        let again = migrate(&[]);
        assert!(
            again.contains(&format!("{known:>4}  applied 20")),
            "{backend}: {again}"
        );
        assert!(again.ends_with("0 pending\n"), "{backend}: {again}");
        if let Some(password) = url::Url::parse(&state.to_string_lossy())
            .ok()
            .and_then(|u| u.password().map(str::to_string))
        {
            assert!(!again.contains(&password), "{backend}: {again}");
        }
    }
}
