//! `etl serve` answering Bitrix24 business-process actions (`POST /bp/<code>`), against the
//! emulated portal's installed application: the workflow's request as Bitrix24's queue server
//! sends it, the action run as the workflow's user, exactly one `bizproc.event.send`, the
//! durable outbox across a `kill -9`, and no token anywhere in serve's output or state.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use emulators::bitrix24::workflow::post_form;
use emulators::bitrix24::{Emulator, Portal, Workflow, WorkflowRequest};
use serde_json::{Value, json};

use crate::harness::*;

pub const CODE: &str = "b24etl_test_update_deal";

/// A running `etl serve` with its output in files (read by the secrets sweep).
pub struct BpServe {
    child: Child,
    pub addr: String,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl Drop for BpServe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl BpServe {
    pub fn url(&self, code: &str) -> String {
        format!("http://{}/bp/{code}", self.addr)
    }

    /// `kill -9`: no chance to finish anything.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait: serve closes its state (SQLite folds its WAL back into the file).
    pub fn stop(mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }

    #[allow(dead_code)]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// A directory holding the action fixture (tests/fixtures/bp/update_deal.yaml) in `bp/`.
pub fn action_dir(s: &Scratch) -> PathBuf {
    let text = std::fs::read_to_string(root().join("tests/fixtures/bp/update_deal.yaml")).unwrap();
    s.write("pipelines/bp/update_deal.yaml", &text);
    s.path("pipelines")
}

/// `etl serve` over `dir` as the emulated portal's application, logging at info.
pub fn serve_bp(
    emu: &Emulator,
    dir: &Path,
    state: &Path,
    journal: &Path,
    extra: &[&str],
) -> BpServe {
    let out = journal.with_extension(format!("out.{}", rand_suffix()));
    let err = journal.with_extension(format!("err.{}", rand_suffix()));
    let mut cmd = etl();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--pipelines"])
        .arg(dir)
        .arg("--state")
        .arg(state)
        .arg("--journal")
        .arg(journal)
        .args(["--bp-claim-secs", "2", "--bp-max-backoff", "1"])
        .args(extra)
        .env("ETL_LOG", "info")
        .env("B24_APP_ENDPOINT", emu.app_endpoint())
        .env("B24_APP_MEMBER_ID", emu.member_id())
        .env("B24_APP_TOKEN", emu.application_token())
        .env("B24_APP_CLIENT_ID", emu.client_id())
        .env("B24_APP_CLIENT_SECRET", emu.client_secret())
        .env("B24_OAUTH_URL", emu.oauth_url())
        .env_remove("ETL_SERVE_TOKEN")
        .stdout(Stdio::from(std::fs::File::create(&out).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&err).unwrap()));
    let child = cmd.spawn().unwrap();
    let mut server = BpServe {
        child,
        addr: String::new(),
        stdout: out,
        stderr: err,
    };
    wait_until("serve listens", || {
        let text = std::fs::read_to_string(&server.stdout).unwrap_or_default();
        match text
            .lines()
            .find_map(|l| l.strip_prefix("listening on http://"))
        {
            Some(addr) => {
                server.addr = addr.trim().to_string();
                true
            }
            None => {
                if let Ok(Some(status)) = server.child.try_wait() {
                    panic!(
                        "serve exited ({status}): {}",
                        std::fs::read_to_string(&server.stderr).unwrap_or_default()
                    );
                }
                false
            }
        }
    });
    server
}

fn rand_suffix() -> u32 {
    rand::random()
}

/// Poll `cond` until it holds (a generous limit: counts are asserted, not durations).
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "timed out waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A portal with deals `1..=n` titled "Deal <id>", its application's tokens issued by requests.
pub fn portal_with_deals(n: usize) -> Portal {
    let mut portal = Portal::new();
    for i in 1..=n {
        portal.insert("deal", row(json!({"TITLE": format!("Deal {i}")})));
    }
    portal
}

pub fn rename(deal: u64, title: &str) -> Workflow {
    Workflow::new(CODE, &format!("DEAL_{deal}"))
        .with_properties(json!({"deal_id": deal.to_string(), "title": title}))
}

/// The secrets a request carries.
fn secrets_of(request: &WorkflowRequest) -> Vec<String> {
    [
        "event_token",
        "auth[access_token]",
        "auth[refresh_token]",
        "auth[application_token]",
    ]
    .iter()
    .filter_map(|k| request.get(k).map(str::to_string))
    .collect()
}

/// Headers announcing a 2 MiB form, and no body: the answer's status.
fn announce_large_body(addr: &str) -> u16 {
    use std::io::{BufRead as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "POST /bp/{CODE} HTTP/1.1\r\nHost: {addr}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        2 << 20
    )
    .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(stream)
        .read_line(&mut line)
        .unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn post(url: &str, request: &WorkflowRequest) -> u16 {
    post_form(url, &request.body()).expect("serve answers")
}

fn title(emu: &Emulator, deal: u64) -> String {
    emu.with_portal(|p| p.get("deal", deal).unwrap()["TITLE"].clone())
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn journal_lines(path: &Path) -> Vec<Value> {
    if path.exists() {
        read_jsonl(path)
    } else {
        Vec::new()
    }
}

/// The bytes of `file` (empty when absent) as text.
fn contents(file: &Path) -> String {
    let mut bytes = Vec::new();
    if let Ok(mut f) = std::fs::File::open(file) {
        f.read_to_end(&mut bytes).unwrap();
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Every file serve wrote, and its state, hold none of `secrets`.
fn assert_nowhere(secrets: &[String], files: &[PathBuf]) {
    for file in files {
        let text = contents(file);
        for secret in secrets.iter().filter(|s| s.len() >= 4) {
            assert!(
                !text.contains(secret.as_str()),
                "a secret is in {}",
                file.display()
            );
        }
    }
}

/// Serve's state file and its companions (`-wal`, `-shm`).
fn state_files(state: &Path) -> Vec<PathBuf> {
    let name = state.file_name().unwrap().to_string_lossy().to_string();
    ["", "-wal", "-shm"]
        .iter()
        .map(|suffix| state.with_file_name(format!("{name}{suffix}")))
        .collect()
}

#[test]
fn a_workflow_is_answered_once_as_its_user_and_no_secret_stays() {
    let emu = b24(portal_with_deals(3));
    let s = Scratch::new();
    let (state, journal) = (s.state(), s.path("journal.jsonl"));
    let server = serve_bp(&emu, &action_dir(&s), &state, &journal, &[]);
    let url = server.url(CODE);

    // Success: the deal renamed as user 5, exactly one reply with the return values.
    let ok = emu.prepare_workflow(&rename(1, "Переименована"));
    assert_eq!(post(&url, &ok), 200);
    wait_until("the reply", || {
        !emu.event_sends_for(&ok.event_token).is_empty()
    });
    let sends = emu.event_sends_for(&ok.event_token);
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0].return_values, json!({"result": "true"}));
    assert!(sends[0].closed_action);
    assert_eq!(title(&emu, 1), "Переименована");

    // The same delivery again: nothing runs, no second reply.
    let updates = emu.requests("batch");
    assert_eq!(post(&url, &ok), 200);
    // A refusal: the deal does not exist; the reason goes to the log, the result is "false".
    let refused = emu.prepare_workflow(&rename(999, "x"));
    assert_eq!(post(&url, &refused), 200);
    wait_until("the refusal's reply", || {
        !emu.event_sends_for(&refused.event_token).is_empty()
    });
    let sends = emu.event_sends_for(&refused.event_token);
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0].return_values, json!({"result": "false"}));
    assert!(
        sends[0].log_message.contains("not found"),
        "{}",
        sends[0].log_message
    );
    // Requests are worked on in order of arrival on one pool: the duplicate ran nothing.
    assert_eq!(
        emu.requests("batch"),
        updates + 1,
        "only the refused one ran"
    );
    assert_eq!(emu.event_sends_for(&ok.event_token).len(), 1);

    // A missing required input: no CRM call, the seed's words.
    let mut missing = emu.prepare_workflow(&rename(2, "y"));
    missing.set("properties[deal_id]", "");
    let batches = emu.requests("batch");
    assert_eq!(post(&url, &missing), 200);
    wait_until("the missing input's reply", || {
        !emu.event_sends_for(&missing.event_token).is_empty()
    });
    let send = &emu.event_sends_for(&missing.event_token)[0];
    assert_eq!(
        send.log_message,
        "Не заполнен обязательный параметр: ID Сделки"
    );
    assert_eq!(emu.requests("batch"), batches);

    // use_subscription=N: the action runs, nothing is sent, the journal shows the reply.
    let mut quiet_wf = rename(3, "Тихо");
    quiet_wf.use_subscription = false;
    let quiet = emu.prepare_workflow(&quiet_wf);
    assert_eq!(post(&url, &quiet), 200);
    wait_until("the quiet run", || journal_lines(&journal).len() == 4);
    assert_eq!(title(&emu, 3), "Тихо");
    assert!(emu.event_sends_for(&quiet.event_token).is_empty());

    // An unknown action: 404 to the caller, and the workflow is told.
    let unknown = emu.prepare_workflow(&Workflow::new("b24etl_nope", "DEAL_1"));
    assert_eq!(post(&server.url("b24etl_nope"), &unknown), 404);
    wait_until("the unknown action's reply", || {
        !emu.event_sends_for(&unknown.event_token).is_empty()
    });
    let sends = emu.event_sends_for(&unknown.event_token);
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0].log_message, "Неизвестное действие b24etl_nope");
    assert_eq!(post(&server.url("b24etl_nope"), &unknown), 404);

    wait_until("five journal lines", || journal_lines(&journal).len() == 5);
    let lines = journal_lines(&journal);
    let by_key = |key: &str| {
        lines
            .iter()
            .find(|l| l["event_key"] == key)
            .cloned()
            .unwrap_or_else(|| panic!("no line for {key}: {lines:?}"))
    };
    let ok_line = by_key(&etl::connectors::bitrix24::app::request::event_key(
        &ok.event_token,
    ));
    assert_eq!(ok_line["code"], CODE);
    assert_eq!(ok_line["outcome"], "ok");
    assert_eq!(ok_line["return_values"], json!({"result": "true"}));
    assert_eq!(ok_line["workflow_id"], ok.workflow_id.as_str());
    assert_eq!(ok_line["attempts"], 1);
    assert!(ok_line["duration_ms"].as_i64().is_some());
    let quiet_line = by_key(&etl::connectors::bitrix24::app::request::event_key(
        &quiet.event_token,
    ));
    assert_eq!(
        quiet_line["would_send"],
        json!({"return_values": {"result": "true"}, "log_message": "OK"})
    );
    assert!(quiet_line.get("return_values").is_none());

    // The sweep: no token of any request, nor the app's secrets, in anything serve wrote.
    let mut secrets: Vec<String> = [&ok, &refused, &missing, &quiet, &unknown]
        .iter()
        .flat_map(|r| secrets_of(r))
        .collect();
    secrets.push(emu.client_secret());
    let (out, err) = (server.stdout.clone(), server.stderr.clone());
    server.stop();
    // The sweep reads real output: the log names the request by its key, the state has its row.
    let log = std::fs::read_to_string(&err).unwrap();
    let ok_key = etl::connectors::bitrix24::app::request::event_key(&ok.event_token);
    assert!(log.contains(&ok_key), "{log}");
    assert!(std::fs::metadata(&state).unwrap().len() > 0);
    let mut files = vec![out, err, journal.clone()];
    files.extend(state_files(&state));
    assert_nowhere(&secrets, &files);
    let store = etl::state::Store::open(&state).unwrap();
    let row = store
        .bp_get(&etl::connectors::bitrix24::app::request::event_key(
            &ok.event_token,
        ))
        .unwrap()
        .expect("the dedupe record stays");
    assert!(row.tokens.is_none() && row.event_token.is_none() && row.request.is_none());
}

#[test]
fn requests_that_fail_authentication_reach_nothing() {
    let emu = b24(portal_with_deals(1));
    let s = Scratch::new();
    let (state, journal) = (s.state(), s.path("journal.jsonl"));
    let server = serve_bp(&emu, &action_dir(&s), &state, &journal, &[]);
    let url = server.url(CODE);
    let old = (emu.now() as i64 - 7200).to_string();
    let cases: [(&str, &str, u16); 6] = [
        (
            "auth[application_token]",
            "0123456789abcdef0123456789abcdef",
            401,
        ),
        ("auth[member_id]", "another-portal", 403),
        ("auth[client_endpoint]", "https://evil.example/rest/", 403),
        ("ts", &old, 403),
        ("event_token", "", 400),
        ("auth[application_token]", "", 400),
    ];
    let before = emu.http_requests();
    let mut keys = Vec::new();
    for (field, value, status) in cases {
        let mut request = emu.prepare_workflow(&rename(1, "Взлом"));
        request.set(field, value);
        assert_eq!(post(&url, &request), status, "{field}={value}");
        keys.push(etl::connectors::bitrix24::app::request::event_key(
            &request.event_token,
        ));
    }
    // A body announced over 1 MiB is refused before it is read.
    assert_eq!(announce_large_body(&server.addr), 413);
    // A valid request: the one that runs, so the sweep below sees work done.
    let good = emu.prepare_workflow(&rename(1, "Законно"));
    assert_eq!(post(&url, &good), 200);
    wait_until("the good reply", || {
        !emu.event_sends_for(&good.event_token).is_empty()
    });
    assert_eq!(title(&emu, 1), "Законно");
    assert_eq!(
        emu.event_sends().len(),
        1,
        "only the good request was answered"
    );
    // batch (the update) and bizproc.event.send: the refused requests reached nothing.
    assert_eq!(emu.http_requests() - before, 2);
    server.stop();
    let store = etl::state::Store::open(&state).unwrap();
    for key in keys {
        assert!(
            store.bp_get(&key).unwrap().is_none(),
            "a refused request was stored"
        );
    }
}

#[test]
fn the_install_event_keeps_the_admin_tokens_for_registration() {
    let emu = b24(portal_with_deals(0));
    let s = Scratch::new();
    let (state, journal) = (s.state(), s.path("journal.jsonl"));
    let server = serve_bp(&emu, &action_dir(&s), &state, &journal, &[]);
    let (access, refresh) = emu.issue_tokens(1);
    let form = |app_token: &str| {
        let ts = (emu.now() as i64).to_string();
        let fields = [
            ("event", "ONAPPINSTALL"),
            ("data[VERSION]", "1"),
            ("ts", ts.as_str()),
            ("auth[access_token]", access.as_str()),
            ("auth[refresh_token]", refresh.as_str()),
            ("auth[user_id]", "1"),
            ("auth[member_id]", &emu.member_id()),
            ("auth[client_endpoint]", &emu.app_endpoint()),
            ("auth[domain]", &emu.domain()),
            ("auth[application_token]", app_token),
        ];
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish()
    };
    let url = server.url("install");
    assert_eq!(post_form(&url, &form("wrong-token-wrong")).unwrap(), 401);
    assert_eq!(
        post_form(&url, &form(&emu.application_token())).unwrap(),
        200
    );
    server.stop();
    // Kept sealed with the app's client secret: the state files never hold them as text.
    assert_nowhere(&[access.clone(), refresh.clone()], &state_files(&state));
    let store = etl::state::Store::open(&state).unwrap();
    store.seal_secrets_with(&emu.client_secret());
    let kept = store.kv_get("_app", "oauth", "install").unwrap().unwrap();
    assert_eq!(
        kept,
        json!({"access_token": access, "refresh_token": refresh, "user_id": "1"})
    );
}

#[test]
fn twenty_concurrent_workflows_get_twenty_replies() {
    let emu = b24(portal_with_deals(20));
    let s = Scratch::new();
    let (state, journal) = (s.state(), s.path("journal.jsonl"));
    let server = serve_bp(&emu, &action_dir(&s), &state, &journal, &[]);
    let url = server.url(CODE);
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (1..=20u64)
            .map(|deal| {
                let (emu, url) = (&emu, url.clone());
                scope.spawn(move || {
                    emu.run_workflow(&url, &rename(deal, &format!("Параллельно {deal}")))
                        .unwrap()
                        .status
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(statuses, vec![200; 20], "no request is refused (no 409)");
    wait_until("twenty replies", || emu.event_sends().len() >= 20);
    wait_until("twenty journal lines", || {
        journal_lines(&journal).len() == 20
    });
    let sends = emu.event_sends();
    assert_eq!(sends.len(), 20);
    assert!(
        sends
            .iter()
            .all(|s| s.return_values == json!({"result": "true"}))
    );
    for deal in 1..=20 {
        assert_eq!(title(&emu, deal), format!("Параллельно {deal}"));
    }
}

#[test]
fn bitrix24_down_briefly_is_retried_and_replied() {
    let emu = b24(portal_with_deals(1));
    let s = Scratch::new();
    let (state, journal) = (s.state(), s.path("journal.jsonl"));
    let server = serve_bp(&emu, &action_dir(&s), &state, &journal, &[]);
    emu.set_unavailable(true);
    let run = emu
        .run_workflow(&server.url(CODE), &rename(1, "После сбоя"))
        .unwrap();
    assert_eq!(run.status, 200);
    wait_until("the run meets the outage", || {
        emu.responses_with_status(503) >= 1
    });
    emu.set_unavailable(false);
    wait_until("the reply", || {
        !emu.event_sends_for(&run.event_token).is_empty()
    });
    wait_until("the journal line", || journal_lines(&journal).len() == 1);
    let sends = emu.event_sends_for(&run.event_token);
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0].return_values, json!({"result": "true"}));
    assert_eq!(title(&emu, 1), "После сбоя");
    let line = &journal_lines(&journal)[0];
    assert_eq!(line["outcome"], "ok");
    assert!(line["attempts"].as_u64().unwrap() >= 1, "{line}");
}

#[test]
fn an_outage_longer_than_the_retry_window_is_answered_once_after_a_kill_and_restart() {
    let emu = b24(portal_with_deals(1));
    let s = Scratch::new();
    let (state, journal) = (s.state(), s.path("journal.jsonl"));
    let dir = action_dir(&s);
    let window = ["--bp-retry-window", "2"];
    let server = serve_bp(&emu, &dir, &state, &journal, &window);
    emu.set_unavailable(true);
    let run = emu
        .run_workflow(&server.url(CODE), &rename(1, "Никогда"))
        .unwrap();
    assert_eq!(run.status, 200);
    let key = etl::connectors::bitrix24::app::request::event_key(&run.event_token);
    // The window passes: the failure is the answer, and it waits in the outbox.
    let status = || {
        etl::state::Store::open(&state)
            .unwrap()
            .bp_get(&key)
            .unwrap()
            .map(|row| row.status)
    };
    wait_until("the failure waits in the outbox", || {
        status() == Some(etl::state::bp::BpStatus::Reply)
    });
    // Until it is replied, the state keeps the request's event token, sealed with the app's
    // client secret: the files never hold it as text.
    let as_text = state_files(&state)
        .iter()
        .any(|f| contents(f).contains(&run.event_token));
    assert!(!as_text, "the event token is in the state as text");
    let store = etl::state::Store::open(&state).unwrap();
    store.seal_secrets_with(&emu.client_secret());
    let kept = store.bp_get(&key).unwrap().unwrap().event_token;
    assert_eq!(kept.as_ref(), Some(&run.event_token), "the outbox keeps it");
    drop(store);
    server.kill9();
    let server = serve_bp(&emu, &dir, &state, &journal, &window);
    let refused_before = emu.responses_with_status(503);
    wait_until("the restarted serve tries to deliver", || {
        emu.responses_with_status(503) > refused_before
    });
    emu.set_unavailable(false);
    wait_until("the failure reply", || {
        !emu.event_sends_for(&run.event_token).is_empty()
    });
    wait_until("replied", || {
        status() == Some(etl::state::bp::BpStatus::Replied)
    });
    let sends = emu.event_sends_for(&run.event_token);
    assert_eq!(sends.len(), 1, "exactly one reply");
    assert_eq!(sends[0].return_values, json!({"result": "false"}));
    assert!(
        sends[0].log_message.contains("unavailable"),
        "{}",
        sends[0].log_message
    );
    assert_eq!(title(&emu, 1), "Deal 1", "the update never went through");
    let lines = journal_lines(&journal);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["outcome"], "failed");
    let (out, err) = (server.stdout.clone(), server.stderr.clone());
    server.stop();
    let mut files = vec![out, err, journal];
    files.extend(state_files(&state));
    assert_nowhere(std::slice::from_ref(&run.event_token), &files);
}

#[test]
fn replicas_on_postgresql_accept_and_answer_each_event_once() {
    let Some(base) = etl::state::testing::postgres_url() else {
        return;
    };
    let state = PathBuf::from(etl::state::testing::fresh_postgres_schema(
        &base,
        "bp_replicas",
    ));
    let emu = b24(portal_with_deals(10));
    let s = Scratch::new();
    let dir = action_dir(&s);
    let (journal_a, journal_b) = (s.path("a.jsonl"), s.path("b.jsonl"));
    let a = serve_bp(&emu, &dir, &state, &journal_a, &[]);
    let b = serve_bp(&emu, &dir, &state, &journal_b, &[]);
    let requests: Vec<WorkflowRequest> = (1..=10)
        .map(|deal| emu.prepare_workflow(&rename(deal, &format!("Реплики {deal}"))))
        .collect();
    // Each event reaches both replicas at once (a queue redelivering while the first runs).
    let statuses: Vec<(u16, u16)> = std::thread::scope(|scope| {
        let handles: Vec<_> = requests
            .iter()
            .map(|r| {
                let (ua, ub) = (a.url(CODE), b.url(CODE));
                scope.spawn(move || {
                    let other = std::thread::spawn({
                        let body = r.body();
                        move || post_form(&ub, &body).unwrap()
                    });
                    (post(&ua, r), other.join().unwrap())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        statuses.iter().all(|&(x, y)| x == 200 && y == 200),
        "{statuses:?}"
    );
    wait_until("ten replies", || emu.event_sends().len() >= 10);
    wait_until("ten journal lines", || {
        journal_lines(&journal_a).len() + journal_lines(&journal_b).len() >= 10
    });
    for r in &requests {
        assert_eq!(emu.event_sends_for(&r.event_token).len(), 1);
    }
    assert_eq!(emu.event_sends().len(), 10);
    assert_eq!(
        journal_lines(&journal_a).len() + journal_lines(&journal_b).len(),
        10
    );
}

#[test]
fn a_request_left_mid_run_by_kill_9_runs_again_after_a_restart() {
    left_mid_run_then_restarted(BpServe::kill9);
}

#[test]
fn a_request_interrupted_by_sigterm_runs_again_after_a_restart_not_answered_failed() {
    left_mid_run_then_restarted(BpServe::stop);
}

/// Serve goes away (`stop`) while a request's run meets an outage; restarted with Bitrix24
/// back, it runs the request again and answers it once.
fn left_mid_run_then_restarted(stop: fn(BpServe)) {
    let emu = b24(portal_with_deals(1));
    let s = Scratch::new();
    let (state, journal) = (s.state(), s.path("journal.jsonl"));
    let dir = action_dir(&s);
    let server = serve_bp(&emu, &dir, &state, &journal, &[]);
    emu.set_unavailable(true);
    // Sent as JSON (what tests and replays may send) rather than the form.
    let request = emu.prepare_workflow(&rename(1, "После перезапуска"));
    let as_json = etl::connectors::bitrix24::app::form::parse(&request.body());
    assert_eq!(post_json(&server.addr, &as_json), 200);
    wait_until("the run meets the outage", || {
        emu.responses_with_status(503) >= 1
    });
    stop(server);
    emu.set_unavailable(false);
    let server = serve_bp(&emu, &dir, &state, &journal, &[]);
    wait_until("the reply", || {
        !emu.event_sends_for(&request.event_token).is_empty()
    });
    wait_until("the journal line", || journal_lines(&journal).len() == 1);
    let sends = emu.event_sends_for(&request.event_token);
    assert_eq!(sends.len(), 1);
    assert_eq!(
        sends[0].return_values,
        json!({"result": "true"}),
        "{}",
        sends[0].log_message
    );
    assert_eq!(title(&emu, 1), "После перезапуска");
    let line = &journal_lines(&journal)[0];
    assert!(
        line["attempts"].as_u64().unwrap() >= 2,
        "a rerun is a new attempt: {line}"
    );
    drop(server);
}

/// POST a JSON body; the answer's status.
fn post_json(addr: &str, body: &Value) -> u16 {
    use std::io::{BufRead as _, Write as _};
    let text = body.to_string();
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "POST /bp/{CODE} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    )
    .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(stream)
        .read_line(&mut line)
        .unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}
