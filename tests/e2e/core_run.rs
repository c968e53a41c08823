//! Running file pipelines: outcomes, journal, dry run, state.

use crate::harness::*;

const PEOPLE: &str = r#"{"ID": "1", "NAME": "Иван", "LAST_NAME": "Петров", "PHONE": [{"VALUE": "8 (926) 123-45-67"}]}
{"ID": "2", "NAME": "Мария", "LAST_NAME": "Сидорова", "PHONE": [{"VALUE": "12345"}]}
{"ID": "3", "NAME": "Олег", "LAST_NAME": "", "PHONE": [{"VALUE": "9161234567"}]}
"#;

fn pipeline(s: &Scratch) -> std::path::PathBuf {
    s.write("in.jsonl", PEOPLE);
    s.write(
        "p.yaml",
        &format!(
            r#"name: people
source:
  type: jsonl
  path: {dir}/in.jsonl
  key: $.ID
steps:
  - type: filter
    when: "{{{{ source.LAST_NAME }}}}"
    reason: no last name
  - type: map
    fields:
      phone:
        value: "{{{{ source.PHONE | first | attr('VALUE') | phone }}}}"
        required: true
sinks:
  - type: jsonl
    path: {dir}/out.jsonl
"#,
            dir = s.dir.path().display()
        ),
    )
}

#[test]
fn each_record_ends_ok_skipped_or_failed_and_the_journal_says_so() {
    let s = Scratch::new();
    let p = pipeline(&s);
    let out = run(etl()
        .arg("run")
        .arg(&p)
        .arg("--state")
        .arg(s.state())
        .arg("--journal")
        .arg(s.path("j.json")));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let journal = read_json(&s.path("j.json"));
    assert_eq!(
        journal["counts"],
        serde_json::json!({"ok": 1, "skipped": 1, "failed": 1})
    );
    let records = journal["records"].as_array().unwrap();
    assert_eq!(records[1]["outcome"], "failed");
    assert!(
        records[1]["reason"]
            .as_str()
            .unwrap()
            .contains("invalid phone number \"12345\""),
        "{}",
        records[1]
    );
    assert_eq!(
        records[2],
        serde_json::json!({"key": "3", "outcome": "skipped", "reason": "no last name"})
    );
    assert_eq!(
        read_jsonl(&s.path("out.jsonl")),
        vec![serde_json::json!({"phone": "79261234567"})]
    );
    assert!(
        stdout(&out).contains("3 records: 1 ok, 1 skipped, 1 failed"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn dry_run_writes_nothing_and_says_what_it_would_write() {
    let s = Scratch::new();
    let p = pipeline(&s);
    let out = run(etl()
        .arg("run")
        .arg(&p)
        .arg("--state")
        .arg(s.state())
        .arg("--dry-run"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!s.path("out.jsonl").exists());
    assert!(
        stdout(&out)
            .contains(r#"[dry-run] sink[0] (jsonl): write record 1: {"phone":"79261234567"}"#),
        "{}",
        stdout(&out)
    );
}

#[test]
fn set_overrides_settings() {
    let s = Scratch::new();
    s.write("in.jsonl", "{\"ID\": \"1\"}\n");
    let p = s.write(
        "p.yaml",
        &format!(
            "name: s\nsettings:\n  ids: [1]\nsource: {{type: jsonl, path: {d}/in.jsonl}}\nsteps:\n  - type: map\n    fields:\n      ids: \"{{{{ settings.ids }}}}\"\nsinks:\n  - {{type: jsonl, path: {d}/out.jsonl}}\n",
            d = s.dir.path().display()
        ),
    );
    let out = run(etl()
        .arg("run")
        .arg(&p)
        .arg("--state")
        .arg(s.state())
        .args(["--set", "settings.ids=[2, 3]"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        read_jsonl(&s.path("out.jsonl")),
        vec![serde_json::json!({"ids": [2, 3]})]
    );
}

#[test]
fn the_shipped_example_runs_on_a_fresh_machine() {
    let s = Scratch::new();
    let out = run(etl()
        .current_dir(root())
        .args(["run", "pipelines/example.yaml", "--set"])
        .arg(format!(
            "settings.output={}",
            s.path("people.jsonl").display()
        ))
        .arg("--state")
        .arg(s.state()));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(read_jsonl(&s.path("people.jsonl")).len(), 2);
}

#[test]
fn state_show_and_reset() {
    let s = Scratch::new();
    let p = pipeline(&s);
    assert!(
        run(etl().arg("run").arg(&p).arg("--state").arg(s.state()))
            .status
            .success()
    );
    let show = run(etl()
        .args(["state", "show"])
        .arg(&p)
        .arg("--state")
        .arg(s.state()));
    let shown: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(shown["pipeline"], "people");
    assert_eq!(shown["recent_runs"][0]["status"], "finished");
    let reset = run(etl()
        .args(["state", "reset", "people"])
        .arg("--state")
        .arg(s.state()));
    assert!(reset.status.success(), "{}", stderr(&reset));
    assert!(stdout(&reset).contains("people: state reset"));
}
