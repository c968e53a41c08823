//! The store's tests, written once and run against each backend: `sqlite` on a temporary file,
//! `postgres` in a fresh schema of the server named by `ETL_TEST_POSTGRES` (see
//! [`super::testing`]: CI fails rather than skips when it is missing).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;

use super::*;

/// Where a test's state lives; `open` may be called several times (several processes).
struct Fixture {
    location: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Fixture {
    fn sqlite() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        Fixture {
            location: dir.path().join("s/state.db"),
            _dir: Some(dir),
        }
    }

    fn postgres(label: &str) -> Option<Fixture> {
        let base = testing::postgres_url()?;
        Some(Fixture {
            location: PathBuf::from(testing::fresh_postgres_schema(&base, label)),
            _dir: None,
        })
    }

    fn open(&self) -> Store {
        Store::open(&self.location).unwrap()
    }
}

/// `#[test] fn sqlite()` and `#[test] fn postgres()` for each test body.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn sqlite() {
                super::$name(&super::Fixture::sqlite());
            }
            #[test]
            fn postgres() {
                if let Some(f) = super::Fixture::postgres(stringify!($name)) {
                    super::$name(&f);
                }
            }
        }
    )*};
}

on_both_backends!(
    checkpoints_round_trip,
    fingerprints_are_read_in_batches_and_the_last_write_wins,
    kv_tables_round_trip_with_values_masked,
    install_tokens_are_kept_sealed_and_older_plain_ones_still_read,
    runs_are_recorded_and_described,
    migrations_are_applied_once,
    a_lease_is_exclusive_until_dropped,
    lease_figures,
    bp_requests_are_accepted_once_claimed_once_and_forget_their_secrets,
);

fn checkpoints_round_trip(f: &Fixture) {
    let store = f.open();
    assert_eq!(store.cursor("p").unwrap(), None);
    let fp = vec![("source".to_string(), "1".to_string(), "abc".to_string())];
    store
        .commit("p", &fp, Some(&json!({"DATE_MODIFY": "x", "ID": "1"})))
        .unwrap();
    assert_eq!(store.cursor("p").unwrap().unwrap()["ID"], "1");
    assert_eq!(
        store.fingerprints("p", "source", &["1", "2"]).unwrap(),
        vec![Some("abc".into()), None]
    );
    // Another process sees the checkpoint.
    assert_eq!(f.open().cursor("p").unwrap().unwrap()["ID"], "1");
    assert!(store.reset("p").unwrap() >= 2);
    assert_eq!(store.cursor("p").unwrap(), None);
}

fn fingerprints_are_read_in_batches_and_the_last_write_wins(f: &Fixture) {
    let store = f.open();
    let fp = |s: &str, k: &str, h: &str| (s.to_string(), k.to_string(), h.to_string());
    store
        .commit(
            "p",
            &[
                fp("source", "1", "old"),
                fp("source", "2", "b"),
                fp("sink:x", "1", "c"),
                fp("source", "1", "new"),
            ],
            None,
        )
        .unwrap();
    assert_eq!(store.cursor("p").unwrap(), None, "no cursor was given");
    assert_eq!(
        store
            .fingerprints("p", "source", &["3", "1", "2", "1"])
            .unwrap(),
        vec![
            None,
            Some("new".into()),
            Some("b".into()),
            Some("new".into())
        ]
    );
    assert_eq!(
        store.fingerprints("p", "sink:x", &["1"]).unwrap(),
        vec![Some("c".into())]
    );
    assert_eq!(
        store.fingerprints("other", "source", &["1"]).unwrap(),
        vec![None]
    );
    assert_eq!(store.fingerprints("p", "source", &[]).unwrap(), vec![]);
}

fn kv_tables_round_trip_with_values_masked(f: &Fixture) {
    crate::secrets::register("kvsecretvalue42");
    let store = f.open();
    store
        .kv_put_all(
            "p",
            "phones",
            &[
                ("b".into(), json!({"n": 2})),
                ("a".into(), json!("denied for kvsecretvalue42")),
                ("b".into(), json!({"n": 3})),
            ],
        )
        .unwrap();
    assert_eq!(
        store.kv_get("p", "phones", "b").unwrap(),
        Some(json!({"n": 3}))
    );
    assert_eq!(store.kv_get("p", "phones", "zz").unwrap(), None);
    assert_eq!(
        store.kv_all("p", "phones").unwrap(),
        vec![
            ("a".to_string(), json!("denied for ***")),
            ("b".to_string(), json!({"n": 3}))
        ]
    );
    assert_eq!(store.kv_all("p", "other").unwrap(), vec![]);
}

fn install_tokens_are_kept_sealed_and_older_plain_ones_still_read(f: &Fixture) {
    let tokens = json!({"access_token": "install-acc", "refresh_token": "install-ref"});
    // Kept before sealing existed: read as it is.
    f.open()
        .kv_put_secret("app", "oauth", "old", &tokens)
        .unwrap();
    let store = sealed(f);
    assert_eq!(
        store.kv_get("app", "oauth", "old").unwrap(),
        Some(tokens.clone())
    );
    store.kv_put_secret("app", "oauth", "new", &tokens).unwrap();
    let raw = store
        .backend()
        .kv_get("app", "oauth", "new")
        .unwrap()
        .unwrap();
    assert!(!raw.contains("install-"), "{raw}");
    assert_eq!(store.kv_get("app", "oauth", "new").unwrap(), Some(tokens));
    let other = f.open();
    other.seal_secrets_with("another-client-secret");
    assert_eq!(other.kv_get("app", "oauth", "new").unwrap(), None);
}

fn runs_are_recorded_and_described(f: &Fixture) {
    let store = f.open();
    let first = store.run_started("p", "2026-01-01T00:00:00Z").unwrap();
    let second = store.run_started("p", "2026-01-02T00:00:00Z").unwrap();
    assert!(second > first);
    store.run_finished(second, "ok", &json!({"ok": 3})).unwrap();
    store
        .commit(
            "p",
            &[("source".into(), "1".into(), "h".into())],
            Some(&json!(7)),
        )
        .unwrap();
    store
        .kv_put_all("p", "t", &[("k".into(), json!(1))])
        .unwrap();
    let d = store.describe("p").unwrap();
    assert_eq!(d["cursor"], json!(7));
    assert_eq!(d["fingerprints"], json!({"source": 1}));
    assert_eq!(d["tables"], json!({"t": 1}));
    let runs = d["recent_runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["status"], "ok");
    assert_eq!(runs[0]["summary"], json!({"ok": 3}));
    assert_eq!(runs[1]["finished_at"], Json::Null);
    let shown = d["state"].as_str().unwrap();
    if let Location::Postgres(url) = store.location() {
        let password = url::Url::parse(url).unwrap().password().map(str::to_string);
        if let Some(password) = password {
            assert!(!shown.contains(&password), "{shown}");
            assert!(shown.contains(":***@"), "{shown}");
        }
    }
}

fn migrations_are_applied_once(f: &Fixture) {
    let fresh = Store::open_unmigrated(&f.location).unwrap();
    let before = fresh.migration_status().unwrap();
    assert!(before.iter().all(|m| m.applied_at.is_none()), "{before:?}");
    let all: Vec<i64> = migrations::MIGRATIONS.iter().map(|m| m.version).collect();
    assert_eq!(fresh.migrate().unwrap(), all);
    assert_eq!(fresh.migrate().unwrap(), Vec::<i64>::new());
    // A second process opening the store finds nothing to do.
    let again = f.open();
    let after = again.migration_status().unwrap();
    assert!(after.iter().all(|m| m.applied_at.is_some()), "{after:?}");
    assert_eq!(again.migrate().unwrap(), Vec::<i64>::new());
}

fn a_lease_is_exclusive_until_dropped(f: &Fixture) {
    let (one, two) = (f.open(), f.open());
    let lease = one.try_lease("contacts").unwrap().expect("a free pipeline");
    assert_eq!(lease.pipeline(), "contacts");
    assert!(two.try_lease("contacts").unwrap().is_none());
    assert!(
        one.try_lease("contacts").unwrap().is_none(),
        "not re-entrant"
    );
    let other = two.try_lease("deals").unwrap();
    assert!(other.is_some(), "leases are per pipeline");
    let (by, since) = two.lease_holder("contacts").unwrap().expect("a holder");
    assert_eq!(by, lease.holder().describe());
    assert_eq!(since, lease.holder().since);
    assert!(
        by.ends_with(&format!("/pid {}", std::process::id())),
        "{by}"
    );
    drop(lease);
    assert!(
        two.try_lease("contacts").unwrap().is_some(),
        "released on drop"
    );
}

/// Acquire/release time of a lease (printed; run with `--nocapture` to see it).
fn lease_figures(f: &Fixture) {
    let store = f.open();
    let rounds = 50;
    let (mut acquire, mut release) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..rounds {
        let clock = Instant::now();
        let lease = store.try_lease("bench").unwrap().unwrap();
        acquire += clock.elapsed();
        let clock = Instant::now();
        drop(lease);
        release += clock.elapsed();
    }
    eprintln!(
        "lease on {}: acquire {:?}, release {:?} (mean of {rounds})",
        match store.location() {
            Location::Sqlite(_) => "SQLite",
            Location::Postgres(_) => "PostgreSQL",
        },
        acquire / rounds,
        release / rounds
    );
    let batch: Vec<(String, String, String)> = (0..50)
        .map(|i| ("source".into(), i.to_string(), "h".into()))
        .collect();
    let keys: Vec<String> = (0..50).map(|i| i.to_string()).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let (mut commit, mut read) = (Duration::ZERO, Duration::ZERO);
    for i in 0..rounds {
        let clock = Instant::now();
        store.commit("bench", &batch, Some(&json!(i))).unwrap();
        commit += clock.elapsed();
        let clock = Instant::now();
        store.fingerprints("bench", "source", &keys).unwrap();
        read += clock.elapsed();
    }
    eprintln!(
        "checkpoint of 50 fingerprints and a cursor: {:?}, read of 50 fingerprints: {:?}",
        commit / rounds,
        read / rounds
    );
}

#[test]
fn secrets_never_reach_the_database_file() {
    crate::secrets::register("storedsecretvalue");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = Store::open(&path).unwrap();
    let echoed = json!({"error": "denied for storedsecretvalue"});
    store
        .kv_put_all("p", "t", &[("k".into(), echoed.clone())])
        .unwrap();
    let run = store.run_started("p", "now").unwrap();
    store.run_finished(run, "aborted", &echoed).unwrap();
    drop(store);
    let raw = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
    assert!(
        raw.contains("denied for ***"),
        "the values are kept, masked"
    );
    assert!(!raw.contains("storedsecretvalue"));
}

#[test]
fn a_state_file_from_before_migrations_adopts_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(migrations::MIGRATIONS[0].sqlite)
            .unwrap();
        conn.execute(
            "INSERT INTO cursors(pipeline, value, updated_at) VALUES ('p', '5', 'then')",
            [],
        )
        .unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.cursor("p").unwrap(), Some(json!(5)));
    assert!(
        store
            .migration_status()
            .unwrap()
            .iter()
            .all(|m| m.applied_at.is_some())
    );
}

#[test]
fn a_postgres_url_is_recognised_and_its_password_is_a_secret() {
    for url in [
        "postgres://etl:pgpassword123@db.internal:5432/etl",
        "postgresql://etl:pgpassword123@db.internal/etl",
    ] {
        let location = Location::parse(Path::new(url));
        assert!(matches!(location, Location::Postgres(_)), "{url}");
        assert!(!location.display().contains("pgpassword123"));
        assert_eq!(
            crate::secrets::redact(url).matches("pgpassword123").count(),
            0
        );
    }
    assert_eq!(
        Location::parse(Path::new(".etl/state.db")),
        Location::Sqlite(".etl/state.db".into())
    );
}

#[test]
fn an_unreachable_postgres_is_an_error_without_the_password() {
    let url = "postgres://etl:unreachablepw77@127.0.0.1:1/etl?connect_timeout=2";
    let err = Store::open(Path::new(url))
        .err()
        .expect("no server on port 1");
    assert!(err.contains("cannot connect"), "{err}");
    assert!(!err.contains("unreachablepw77"), "{err}");
}

/// `etl serve` keeps one store for hours: when the server drops its connection (a restart, a
/// failover, an idle timeout), the operation under way fails and the next one reconnects.
#[test]
fn a_dropped_postgres_connection_is_reopened() {
    let Some(base) = testing::postgres_url() else {
        return;
    };
    let name = format!("etl_reconnect_{}", rand::random::<u32>());
    let mut url = url::Url::parse(&testing::fresh_postgres_schema(&base, "reconnect")).unwrap();
    url.query_pairs_mut().append_pair("application_name", &name);
    let store = Store::open(Path::new(url.as_str())).unwrap();
    store.commit("p", &[], Some(&json!(1))).unwrap();
    let admin = base.clone();
    let kill = format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{name}'"
    );
    let gone = format!("SELECT count(*) FROM pg_stat_activity WHERE application_name = '{name}'");
    std::thread::spawn(move || {
        let mut c = ::postgres::Client::connect(&admin, ::postgres::NoTls).unwrap();
        c.batch_execute(&kill).unwrap();
        // pg_terminate_backend only signals: wait (bounded) until the backend is gone, so the
        // store's next call meets the cut connection rather than racing it.
        for _ in 0..100 {
            let left: i64 = c.query_one(gone.as_str(), &[]).unwrap().get(0);
            if left == 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    })
    .join()
    .unwrap();
    let first = store.cursor("p"); // may fail: the connection was cut under it
    if let Err(e) = first {
        assert!(
            e.contains("terminating connection"),
            "the server's reason: {e}"
        );
    }
    assert_eq!(store.cursor("p").unwrap(), Some(json!(1)));
}

fn bp_request(key: &str) -> bp::NewBpRequest {
    let now = bp::now_ms();
    bp::NewBpRequest {
        key: key.into(),
        code: "b24etl_x".into(),
        workflow_id: "wf1".into(),
        document: json!(["crm", "CCrmDocumentDeal", "DEAL_1"]),
        use_subscription: true,
        received_ms: now,
        deadline_ms: now + 60_000,
        status: bp::BpStatus::Pending,
        request: json!({"properties": {"a": "1"}}),
        tokens: json!({"access_token": "acc-secret-1", "refresh_token": "ref-secret-1"}),
        event_token: "event-secret-1".into(),
        answer: None,
    }
}

fn sealed(f: &Fixture) -> Store {
    let store = f.open();
    store.seal_secrets_with("the-app-client-secret");
    store
}

fn bp_requests_are_accepted_once_claimed_once_and_forget_their_secrets(f: &Fixture) {
    use bp::{BpNext, BpStatus};
    let (a, b) = (sealed(f), sealed(f));
    assert!(a.bp_receive(&bp_request("k1")).unwrap());
    // Kept sealed: the columns hold no token, the rows give them back.
    let raw = a.backend().bp_get("k1").unwrap().unwrap();
    let columns = format!("{:?} {:?}", raw.tokens, raw.event_token);
    assert!(!columns.contains("secret-1"), "{columns}");
    assert_eq!(
        b.bp_get("k1").unwrap().unwrap().tokens,
        Some(bp_request("k1").tokens)
    );
    assert_eq!(
        f.open().bp_get("k1").unwrap().unwrap().event_token,
        None,
        "no key, no secret"
    );
    assert!(
        !b.bp_receive(&bp_request("k1")).unwrap(),
        "a second delivery"
    );
    assert_eq!(a.bp_due(10).unwrap(), vec!["k1".to_string()]);
    let row = a.bp_claim("k1", "one", 60_000).unwrap().expect("claimed");
    assert_eq!((row.attempts, row.status), (1, BpStatus::Pending));
    assert_eq!(row.event_token.as_deref(), Some("event-secret-1"));
    assert!(
        b.bp_claim("k1", "two", 60_000).unwrap().is_none(),
        "claimed twice"
    );
    assert!(b.bp_due(10).unwrap().is_empty());
    assert!(!b.bp_extend_claim("k1", "two", 1000).unwrap());
    assert!(a.bp_extend_claim("k1", "one", 1000).unwrap());
    // A claim that expires (a replica killed mid-run) is taken over: a new attempt.
    assert!(a.bp_extend_claim("k1", "one", -1).unwrap());
    let row = b
        .bp_claim("k1", "two", 60_000)
        .unwrap()
        .expect("taken over");
    assert_eq!(row.attempts, 2);
    assert!(!a.bp_extend_claim("k1", "one", 60_000).unwrap(), "lost");
    // Retried later with renewed tokens: not due before its time, and unclaimed.
    let renewed = json!({"access_token": "acc-secret-2", "refresh_token": "ref-secret-2"});
    let later = BpNext::RetryAt {
        at_ms: bp::now_ms() + 60_000,
        tokens: Some(&renewed),
        delivery: false,
    };
    assert!(b.bp_settle("k1", "two", later).unwrap());
    assert!(
        a.bp_claim("k1", "three", 60_000).unwrap().is_none(),
        "not due yet"
    );
    assert_eq!(a.bp_get("k1").unwrap().unwrap().tokens, Some(renewed));
    let soon = BpNext::RetryAt {
        at_ms: 0,
        tokens: None,
        delivery: false,
    };
    assert!(
        !a.bp_settle("k1", "two", soon).unwrap(),
        "released claims settle nothing"
    );
    // Due again once its time comes (here: made due by hand).
    assert!(a.bp_receive(&bp_request("k2")).unwrap());
    let row = a.bp_claim("k2", "three", 60_000).unwrap().expect("claimed");
    assert_eq!(row.attempts, 1);
    let answer = json!({"outcome": "ok", "return_values": {"r": "true"}});
    let answered = BpNext::Answered {
        answer: &answer,
        tokens: None,
    };
    assert!(a.bp_settle("k2", "three", answered).unwrap());
    assert_eq!(a.bp_get("k2").unwrap().unwrap().status, BpStatus::Reply);
    let done = BpNext::Finished {
        status: BpStatus::Replied,
        delivery: true,
    };
    assert!(a.bp_settle("k2", "three", done).unwrap());
    let row = b.bp_get("k2").unwrap().unwrap();
    assert_eq!((row.status, row.deliveries), (BpStatus::Replied, 1));
    assert_eq!(row.answer, Some(answer));
    assert!(row.tokens.is_none() && row.event_token.is_none() && row.request.is_none());
    assert!(row.replied_ms.is_some());
    assert!(a.bp_due(10).unwrap().is_empty());
    assert!(
        !a.bp_receive(&bp_request("k2")).unwrap(),
        "still the dedupe record"
    );
}
