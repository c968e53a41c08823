//! What an operator meets first: `--journal -` under shell redirects and sockets, secrets masked
//! by value in every output (the state database included), and logs fit for files and journald.

use std::io::Read as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use emulators::bitrix24::{EmulatorConfig, Fault, Portal};
use serde_json::{Value as Json, json};

use crate::harness::*;

const PEOPLE: &str = "{\"ID\": \"1\", \"NAME\": \"Иван\"}\n{\"ID\": \"2\", \"NAME\": \"Мария\"}\n{\"ID\": \"3\", \"NAME\": \"Олег\"}\n";

/// Three records from a file to the stdout sink.
fn stdout_pipeline(s: &Scratch) -> std::path::PathBuf {
    s.write("in.jsonl", PEOPLE);
    s.write(
        "p.yaml",
        &format!(
            "name: people\nsource: {{type: jsonl, path: \"{}\", key: $.ID}}\nsinks:\n  - {{type: stdout}}\n",
            s.path("in.jsonl").display()
        ),
    )
}

/// Stdout of a run with `--journal -`: the stdout sink's lines first, then the journal document.
fn split_sink_lines_and_journal(text: &str) -> (Vec<Json>, Json) {
    let start = text
        .find("{\"pipeline\"")
        .unwrap_or_else(|| panic!("no journal in stdout:\n{text}"));
    let lines = text[..start]
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let journal = serde_json::from_str(&text[start..])
        .unwrap_or_else(|e| panic!("the journal is not one JSON document ({e}):\n{text}"));
    (lines, journal)
}

#[test]
fn journal_to_stdout_appends_to_a_redirected_file_after_the_sink_output() {
    let s = Scratch::new();
    let p = stdout_pipeline(&s);
    let log = s.write("cron.log", "earlier run\n");
    let command = format!(
        "exec '{}' run '{}' --state '{}' --no-progress --journal - >> '{}'",
        env!("CARGO_BIN_EXE_etl"),
        p.display(),
        s.state().display(),
        log.display()
    );
    let out = run(Command::new("sh").arg("-c").arg(&command));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = std::fs::read_to_string(&log).unwrap();
    let rest = text
        .strip_prefix("earlier run\n")
        .unwrap_or_else(|| panic!("the earlier content was lost:\n{text}"));
    let (lines, journal) = split_sink_lines_and_journal(rest);
    let names: Vec<&str> = lines.iter().map(|l| l["NAME"].as_str().unwrap()).collect();
    assert_eq!(names, ["Иван", "Мария", "Олег"], "{text}");
    assert_eq!(journal["counts"]["ok"], 3, "{text}");
    assert_eq!(journal["records"].as_array().unwrap().len(), 3);
    // The human summary went to stderr, not into the JSON.
    assert!(
        stderr(&out).contains("people: finished"),
        "{}",
        stderr(&out)
    );
}

/// Run with stdout connected to one end of a Unix socket pair (as under systemd) and read it all.
#[cfg(unix)]
#[test]
fn journal_to_stdout_works_when_stdout_is_a_socket() {
    use std::os::unix::net::UnixStream;
    let s = Scratch::new();
    let p = stdout_pipeline(&s);
    let (mut ours, theirs) = UnixStream::pair().unwrap();
    let child = etl()
        .args(["run", "--no-progress", "--journal", "-", "--state"])
        .arg(s.state())
        .arg(&p)
        .stdout(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut text = String::new();
    ours.read_to_string(&mut text).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (lines, journal) = split_sink_lines_and_journal(&text);
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(journal["counts"]["ok"], 3, "{text}");
}

#[test]
fn journal_to_stdout_works_on_a_pipe() {
    let s = Scratch::new();
    let p = stdout_pipeline(&s);
    let out = run(etl()
        .args(["run", "--no-progress", "--journal", "-", "--state"])
        .arg(s.state())
        .arg(&p));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (lines, journal) = split_sink_lines_and_journal(&stdout(&out));
    assert_eq!(lines.len(), 3);
    assert_eq!(journal["status"], "finished");
}

const LETTERS_ONLY_CODE: &str = "qwertyuiopasdfgh";

/// An error body that quotes the request URL, webhook code and all, as some proxies do.
fn echoing(status: u16, error: &str, url: &str) -> Fault {
    Fault::Status {
        status,
        content_type: "application/json".into(),
        body: json!({"error": error, "error_description": format!("request to {url}crm.contact.list failed")})
            .to_string(),
    }
}

fn export_to_stdout(s: &Scratch) -> std::path::PathBuf {
    s.write(
        "export.yaml",
        r#"name: export
connections:
  b24: {type: bitrix24, webhook_url: "${env:B24_WEBHOOK_URL}"}
source:
  type: bitrix24.list
  connection: b24
  method: crm.contact.list
  select: [ID, NAME]
sinks:
  - {type: stdout}
"#,
    )
}

#[test]
fn a_letters_only_webhook_code_is_masked_everywhere_even_in_the_state_database() {
    let config = EmulatorConfig {
        code: LETTERS_ONLY_CODE.into(),
        ..EmulatorConfig::default()
    };
    let emu = b24_with(config, Portal::new());
    let url = emu.webhook_url();
    assert!(url.contains(LETTERS_ONLY_CODE));
    // A contact whose data quotes the URL: the stdout sink prints it.
    emu.with_portal(|p| {
        p.insert(
            "contact",
            row(json!({"ID": "1", "NAME": format!("see {url}"), "DATE_CREATE": "2024-01-01T00:00:00+03:00", "DATE_MODIFY": "2024-01-01T00:00:00+03:00"})),
        )
    });
    let s = Scratch::new();
    let p = export_to_stdout(&s);
    let mut everything = String::new();
    // First run: a 500 quoting the URL is retried (logged), then the export finishes.
    emu.faults()
        .push(echoing(500, "INTERNAL_SERVER_ERROR", &url));
    let first = run(etl_run(&p, &s.state(), Some(&emu), None)
        .args(["--log", "debug", "--journal"])
        .arg(s.path("j1.json")));
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    assert!(stdout(&first).contains("see http"), "{}", stdout(&first));
    assert!(stderr(&first).contains("retrying"), "{}", stderr(&first));
    // Second run: a refusal quoting the URL aborts it; the error reaches every output.
    emu.faults().push(echoing(400, "INVALID_REQUEST", &url));
    let second = run(etl_run(&p, &s.state(), Some(&emu), None)
        .args(["--log", "debug", "--journal"])
        .arg(s.path("j2.json")));
    assert_eq!(second.status.code(), Some(1), "{}", stderr(&second));
    assert!(
        stdout(&second).contains("request to http"),
        "{}",
        stdout(&second)
    );
    for out in [&first, &second] {
        everything.push_str(&stdout(out));
        everything.push_str(&stderr(out));
    }
    for journal in ["j1.json", "j2.json"] {
        everything.push_str(&std::fs::read_to_string(s.path(journal)).unwrap());
    }
    assert!(
        everything.contains("/rest/1/***/"),
        "the URL is shown, masked:\n{everything}"
    );
    assert!(
        !everything.contains(LETTERS_ONLY_CODE),
        "the code leaked:\n{everything}"
    );
    let db = s.state();
    let mut raw = std::fs::read(&db).unwrap();
    if let Ok(wal) = std::fs::read(db.with_extension("db-wal")) {
        raw.extend(wal);
    }
    let raw = String::from_utf8_lossy(&raw);
    assert!(raw.contains("INVALID_REQUEST"), "the failure is recorded");
    assert!(
        !raw.contains(LETTERS_ONLY_CODE),
        "the code leaked into the state database"
    );
}

fn export_to_file(s: &Scratch) -> std::path::PathBuf {
    s.write(
        "export.yaml",
        &format!(
            r#"name: export
connections:
  b24: {{type: bitrix24, webhook_url: "${{env:B24_WEBHOOK_URL}}"}}
source:
  type: bitrix24.list
  connection: b24
  method: crm.contact.list
  select: [ID, NAME]
sinks:
  - {{type: jsonl, path: "{}"}}
"#,
            s.path("out.jsonl").display()
        ),
    )
}

/// An export of five contacts whose first request fails once (a warning in the logs).
fn logged_export(format: &str) -> std::process::Output {
    let emu = b24(Portal::bulk_contacts(5));
    emu.faults().push(Fault::InternalError);
    let s = Scratch::new();
    let p = export_to_file(&s);
    let out = run(etl_run(&p, &s.state(), Some(&emu), None).args([
        "--log",
        "info",
        "--log-format",
        format,
    ]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    out
}

#[test]
fn text_logs_on_a_pipe_are_plain_and_tell_the_start_and_the_summary() {
    let out = logged_export("text");
    let err = stderr(&out);
    assert!(err.contains("retrying"), "{err}");
    assert!(!err.contains("\x1b["), "ANSI colours on a pipe:\n{err:?}");
    assert!(err.contains("run started"), "{err}");
    let summary = err
        .lines()
        .find(|l| l.contains("run finished"))
        .unwrap_or_else(|| panic!("no summary line:\n{err}"));
    assert!(summary.contains("ok=5"), "{summary}");
    assert!(summary.contains("failed=0"), "{summary}");
}

/// A field of a JSON log line, at the top level, among the event's fields or its span's.
fn log_field<'a>(line: &'a Json, name: &str) -> Option<&'a Json> {
    line.get(name)
        .or_else(|| line["fields"].get(name))
        .or_else(|| line["span"].get(name))
}

#[test]
fn json_logs_carry_the_pipeline_and_a_run_id_on_every_line() {
    let out = logged_export("json");
    let err = stderr(&out);
    let lines: Vec<Json> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(lines.len() >= 3, "start, retry, summary:\n{err}");
    let mut run_ids = std::collections::HashSet::new();
    for line in &lines {
        assert_eq!(
            log_field(line, "pipeline"),
            Some(&json!("export")),
            "{line}"
        );
        let id = log_field(line, "run_id").unwrap_or_else(|| panic!("no run_id: {line}"));
        run_ids.insert(id.to_string());
    }
    assert_eq!(run_ids.len(), 1, "one run, one id: {run_ids:?}");
    let summary = lines
        .iter()
        .find(|l| log_field(l, "message") == Some(&json!("run finished")))
        .unwrap_or_else(|| panic!("no summary:\n{err}"));
    assert_eq!(log_field(summary, "ok"), Some(&json!(5)), "{summary}");
}

fn wait_for(child: &mut Child, what: &str, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before {what}"
        );
        assert!(started.elapsed() < Duration::from_secs(60), "never {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_is_reported_as_sigterm() {
    let emu = b24(Portal::bulk_contacts(5));
    emu.faults().push(Fault::Hang(Duration::from_secs(60)));
    let s = Scratch::new();
    let p = export_to_file(&s);
    let mut child = etl_run(&p, &s.state(), Some(&emu), None)
        .arg("--journal")
        .arg(s.path("j.json"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&mut child, "reached the portal", || {
        emu.http_requests() >= 1
    });
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("SIGTERM"), "the log says SIGTERM:\n{err}");
    let error = read_json(&s.path("j.json"))["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(error.contains("SIGTERM"), "{error}");
    assert!(!error.contains("Ctrl-C"), "{error}");
    assert!(!stdout(&out).contains("Ctrl-C"), "{}", stdout(&out));
}
