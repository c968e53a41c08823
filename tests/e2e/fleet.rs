//! `etl serve` replicas on one PostgreSQL state: each scheduled tick runs once across them, and
//! a replica killed with kill -9 mid-run loses its lease, so the pipeline completes on another
//! one with nothing lost or duplicated. PostgreSQL is the server of `ETL_TEST_POSTGRES` (CI fails
//! when it is missing; a developer's run skips these tests and says so).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use emulators::bitrix24::Portal;
use etl::state::{Store, testing};
use serde_json::{Value, json};

use crate::harness::*;
use crate::seed001::{contact, pipeline, snapshot};

/// Every 2 seconds.
const EVERY_2S: &str = "{cron: \"*/2 * * * * *\", tz: Europe/Moscow}";

/// One `etl serve` replica, its log (JSON lines, info) in a file of its own.
struct Replica {
    child: Child,
    log: PathBuf,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Replica {
    fn start(dir: &Path, state: &Path, log: PathBuf, env: &[(&str, String)]) -> Replica {
        let mut cmd = etl();
        cmd.args(["--log", "info", "--log-format", "json"])
            .args(["serve", "--listen", "127.0.0.1:0", "--pipelines"])
            .arg(dir)
            .arg("--state")
            .arg(state)
            .env_remove("ETL_SERVE_TOKEN")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(File::create(&log).unwrap());
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("listening on http://"), "{line}");
        Replica { child, log }
    }

    fn ticks(&self, message: &str) -> Vec<String> {
        ticks_logged(&self.log, message)
    }
}

/// The `tick` field of the log lines in `log` whose message is `message`.
fn ticks_logged(log: &Path, message: &str) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["fields"]["message"] == message)
        .map(|l| l["fields"]["tick"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The ticks with `message` in all `logs`, tick -> how many times.
fn all_ticks(logs: &[PathBuf], message: &str) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for log in logs {
        for tick in ticks_logged(log, message) {
            *seen.entry(tick).or_default() += 1;
        }
    }
    seen
}

/// `(recorded, finished)` run records of `pipeline`, read from the state's `runs` table.
fn run_records(state: &Path, pipeline: &str) -> (i64, i64) {
    let config = postgres::Config::from_str(&state.to_string_lossy()).unwrap();
    let pipeline = pipeline.to_string();
    // On a thread of its own: the synchronous client must not meet another runtime.
    std::thread::spawn(move || {
        let mut c = config.connect(postgres::NoTls).unwrap();
        let row = c
            .query_one(
                "SELECT count(*), count(finished_at) FROM runs WHERE pipeline=$1",
                &[&pipeline],
            )
            .unwrap();
        (row.get(0), row.get(1))
    })
    .join()
    .unwrap()
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let clock = Instant::now();
    while !done() {
        assert!(clock.elapsed() < limit, "waited {limit:?} for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn four_replicas_on_one_postgres_run_each_tick_once() {
    let Some(base) = testing::postgres_url() else {
        return;
    };
    let state = PathBuf::from(testing::fresh_postgres_schema(&base, "fleet_ticks"));
    let s = Scratch::new();
    let d = s.dir.path().display();
    s.write("in.jsonl", "{\"ID\": \"1\"}\n");
    s.write(
        "pipelines/tick.yaml",
        &format!(
            "name: tick\nschedule: {EVERY_2S}\nsource: {{type: jsonl, path: {d}/in.jsonl, key: $.ID}}\nsinks:\n  - {{type: jsonl, path: {d}/tick.jsonl}}\n"
        ),
    );
    let replicas: Vec<Replica> = (0..4)
        .map(|i| {
            Replica::start(
                &s.path("pipelines"),
                &state,
                s.path(&format!("replica{i}.log")),
                &[],
            )
        })
        .collect();
    let logs: Vec<PathBuf> = replicas.iter().map(|r| r.log.clone()).collect();
    // Five ticks or more (about 10 s), then a moment when every tick started has finished.
    wait_for("five scheduled runs", Duration::from_secs(60), || {
        all_ticks(&logs, "scheduled run finished").len() >= 5
    });
    wait_for(
        "the runs started to finish",
        Duration::from_secs(30),
        || {
            all_ticks(&logs, "scheduled run started").len()
                == all_ticks(&logs, "scheduled run finished").len()
        },
    );
    drop(replicas); // SIGKILL, all four
    let started = all_ticks(&logs, "scheduled run started");
    let finished = all_ticks(&logs, "scheduled run finished");
    let twice: Vec<_> = started.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "ticks run more than once: {twice:?}");
    // No tick between the first and the last run was lost: they are 2 s apart.
    let times: Vec<chrono::DateTime<chrono::Utc>> = started
        .keys()
        .map(|t| {
            chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S UTC")
                .unwrap_or_else(|e| panic!("{t}: {e}"))
                .and_utc()
        })
        .collect();
    for pair in times.windows(2) {
        assert_eq!(
            (pair[1] - pair[0]).num_seconds(),
            2,
            "ticks {} and {} ran with none between: {started:?}",
            pair[0],
            pair[1]
        );
    }
    let (recorded, done) = run_records(&state, "tick");
    assert_eq!(
        done as usize,
        finished.len(),
        "one finished run record per tick finished: {finished:?}"
    );
    assert!(
        recorded as usize <= started.len() && recorded >= done,
        "{recorded} run records for {} ticks started",
        started.len()
    );
    // The replicas share the fingerprints: the one record went out once, not once per replica.
    assert_eq!(read_jsonl(&s.path("tick.jsonl")).len(), 1);
}

#[test]
fn a_replica_killed_mid_run_leaves_the_run_to_another_one() {
    let Some(base) = testing::postgres_url() else {
        return;
    };
    // More contacts than the source hands over at once (500): the run is still writing when
    // the replica is killed.
    const N: u64 = 600;
    let contacts = |n: u64| {
        let mut p = Portal::new();
        for id in 1..=n {
            p.insert("contact", contact(id, json!({})));
        }
        p
    };
    let clean = {
        let (b24, otm, s) = (b24(contacts(N)), otmechalka(), Scratch::new());
        let out = run(&mut etl_run(
            &pipeline("contacts.yaml"),
            &s.state(),
            Some(&b24),
            Some(&otm),
        ));
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        snapshot(&otm)
    };
    let state = PathBuf::from(testing::fresh_postgres_schema(&base, "fleet_kill"));
    let s = Scratch::new();
    let shipped = std::fs::read_to_string(pipeline("contacts.yaml")).unwrap();
    s.write(
        "pipelines/contacts.yaml",
        &format!("{shipped}\nschedule: {EVERY_2S}\n"),
    );
    let b24 = b24(contacts(N));
    b24.update_config(|c| c.latency = Duration::from_millis(20));
    let otm = otmechalka();
    let env = [
        ("B24_WEBHOOK_URL", b24.webhook_url()),
        ("OTMECHALKA_URL", otm.url()),
        ("OTMECHALKA_TOKEN", otm.token().to_string()),
    ];
    let mut replicas: Vec<Replica> = (0..3)
        .map(|i| {
            Replica::start(
                &s.path("pipelines"),
                &state,
                s.path(&format!("replica{i}.log")),
                &env,
            )
        })
        .collect();
    // Mid-run: some clients written (and checkpointed), most not.
    wait_for("the first run to write", Duration::from_secs(60), || {
        otm.counters().creates >= 30
    });
    let store = Store::open(&state).unwrap();
    let (holder, _) = store.lease_holder("contacts").unwrap().expect("a holder");
    let pid: u32 = holder.rsplit("/pid ").next().unwrap().parse().unwrap();
    let victim = replicas
        .iter()
        .position(|r| r.child.id() == pid)
        .unwrap_or_else(|| panic!("the holder {holder} is a replica"));
    assert!(
        (otm.clients().len() as u64) < N,
        "still mid-run when killed: {}",
        otm.clients().len()
    );
    drop(replicas.remove(victim)); // SIGKILL
    // Another replica takes the lease at a later tick and completes the run.
    wait_for(
        "a run to finish on another replica",
        Duration::from_secs(120),
        || {
            replicas
                .iter()
                .any(|r| !r.ticks("scheduled run finished").is_empty())
                && otm.clients().len() as u64 == N
        },
    );
    drop(replicas);
    assert_eq!(snapshot(&otm), clean, "otmechalka as after a clean run");
    assert_eq!(otm.counters().creates, N, "nothing created twice");
    let runs = store.describe("contacts").unwrap()["recent_runs"].clone();
    assert!(
        runs.as_array()
            .unwrap()
            .iter()
            .any(|r| r["status"] == "finished"),
        "a run finished: {runs}"
    );
}

#[test]
fn run_of_a_pipeline_leased_elsewhere_is_409_naming_the_holder() {
    use crate::serve::{TOKEN, get_text, serve};
    let s = Scratch::new();
    let d = s.dir.path().display();
    s.write("in.jsonl", "{\"ID\": \"1\"}\n");
    s.write(
        "pipelines/once.yaml",
        &format!(
            "name: once\nsource: {{type: jsonl, path: {d}/in.jsonl, key: $.ID}}\nsinks:\n  - {{type: jsonl, path: {d}/out.jsonl}}\n"
        ),
    );
    let mut states = vec![("sqlite", s.state())];
    if let Some(base) = testing::postgres_url() {
        let url = testing::fresh_postgres_schema(&base, "fleet_409");
        states.push(("postgres", PathBuf::from(url)));
    }
    for (backend, state) in states {
        let server = serve(&s.path("pipelines"), &state, Some(TOKEN));
        let bearer = format!("Bearer {TOKEN}");
        let store = Store::open(&state).unwrap();
        let lease = store.try_lease("once").unwrap().expect("the lease is free");
        let (status, body) = get_text(&server.addr, "/run/once", Some(&bearer));
        assert_eq!(status, 409, "{backend}: {body}");
        let answer: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(answer["success"], false, "{backend}: {body}");
        let message = answer["message"].as_str().unwrap();
        assert!(
            message.starts_with("ERROR: pipeline `once` is already running (lease held since ")
                && message.ends_with(&format!("/pid {})", std::process::id())),
            "{backend}: {message}"
        );
        assert!(!s.path("out.jsonl").exists(), "{backend}: nothing ran");
        drop(lease);
        let (status, body) = get_text(&server.addr, "/run/once", Some(&bearer));
        assert_eq!(status, 200, "{backend}: {body}");
        assert!(
            store.try_lease("once").unwrap().is_some(),
            "{backend}: the run released its lease"
        );
        std::fs::remove_file(s.path("out.jsonl")).unwrap();
    }
}
