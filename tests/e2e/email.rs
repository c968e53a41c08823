//! The `email` sink against a real SMTP server on 127.0.0.1 (aiosmtpd), messages parsed back.

use crate::harness::*;
use crate::smtp::*;
use crate::xlsx_read::only_xlsx;

const ROWS: &str = r#"{"ID": 1, "TITLE": "ООО Ромашка"}
{"ID": 2, "TITLE": "ИП Иванов"}
"#;

const PEOPLE: &str = r#"{"ID": 1, "NAME": "Иван", "LAST_NAME": "Петров", "EMAIL": "ivan@example.ru"}
{"ID": 2, "NAME": "Мария", "LAST_NAME": "Сидорова", "EMAIL": "maria@example.ru"}
{"ID": 3, "NAME": "Олег", "LAST_NAME": "Котов", "EMAIL": ""}
{"ID": 4, "NAME": "Пётр", "LAST_NAME": "Орлов", "EMAIL": "petr@example.ru"}
{"ID": 1, "NAME": "Иван", "LAST_NAME": "Петров", "EMAIL": "IVAN@example.ru"}
{"ID": 5, "NAME": "Анна", "LAST_NAME": "Лис", "EMAIL": "не адрес"}
"#;

fn pipeline(s: &Scratch, extra: &str) -> std::path::PathBuf {
    s.write("rows.jsonl", ROWS);
    s.write("people.jsonl", PEOPLE);
    let d = s.dir.path().display();
    s.write(
        "p.yaml",
        &format!(
            r#"name: mail
source:
  type: table
  inputs:
    rows:
      source: {{type: jsonl, path: {d}/rows.jsonl}}
    people:
      source: {{type: jsonl, path: {d}/people.jsonl}}
  output: rows
  publish: [people]
sinks:
  - type: xlsx
    id: report
    path: "${{env:REPORT_OUTPUT_DIR}}/Отчёт {{{{ run.today }}}}.xlsx"
    columns:
      - {{title: Компания, field: TITLE}}
  - type: email
    smtp_url: ${{env:SMTP_URL}}
    from: ${{env:REPORT_FROM}}
    recipients:
      dataset: people
      name: "{{{{ recipient.LAST_NAME }}}} {{{{ recipient.NAME }}}}"
    subject: "Отчёт на {{{{ run.today }}}}"
    body: |
      Здравствуйте, {{{{ recipient.NAME }}}}!
      Во вложении {{{{ files[0].name }}}}: {{{{ rows }}}} строк.
{extra}"#
        ),
    )
}

fn etl_run(s: &Scratch, p: &std::path::Path, smtp_url: &str) -> std::process::Output {
    run(etl()
        .arg("run")
        .arg(p)
        .arg("--state")
        .arg(s.state())
        .arg("--journal")
        .arg(s.path("j.json"))
        .env("SMTP_URL", smtp_url)
        .env("REPORT_FROM", "Отчёты <reports@example.ru>")
        .env("REPORT_OUTPUT_DIR", s.path("reports")))
}

#[test]
fn each_recipient_gets_the_report_and_problems_are_in_the_journal() {
    let s = Scratch::new();
    let server = SmtpServer::start(
        s.dir.path(),
        Options {
            refuse: vec!["maria@example.ru".into()],
            ..Default::default()
        },
    );
    let p = pipeline(&s, "");
    let out = etl_run(&s, &p, &server.url("smtp"));
    assert_success(&out);

    let journal = read_json(&s.path("j.json"));
    let c = &journal["counters"];
    assert_eq!(
        (
            c["email.sent"].as_i64(),
            c["email.refused"].as_i64(),
            c["email.no_address"].as_i64()
        ),
        (Some(2), Some(1), Some(2)),
        "{c}"
    );
    let log = journal["log"].to_string();
    assert!(
        log.contains("Котов Олег (ID 3) has no e-mail address; the report was not sent to them"),
        "{log}"
    );
    assert!(
        log.contains("Лис Анна (ID 5) has an invalid e-mail address"),
        "{log}"
    );
    assert!(
        log.contains("Сидорова Мария (ID 2) <maria@example.ru> refused by the server"),
        "{log}"
    );

    let today = chrono::Local::now().format("%Y-%m-%d").to_string();
    let file = only_xlsx(&s.path("reports"));
    assert_eq!(
        file.file_name().unwrap().to_string_lossy(),
        format!("Отчёт {today}.xlsx")
    );
    let bytes = std::fs::read(&file).unwrap();
    let mails = server.messages();
    let to: Vec<&str> = mails.iter().map(|m| m.to.as_str()).collect();
    assert_eq!(
        to,
        [
            "Орлов Пётр <petr@example.ru>",
            "Петров Иван <ivan@example.ru>"
        ]
    );
    let m = &mails[1];
    assert_eq!(m.from, "Отчёты <reports@example.ru>");
    assert_eq!(m.subject, format!("Отчёт на {today}"));
    assert!(m.body.contains("Здравствуйте, Иван!"), "{}", m.body);
    assert!(
        m.body
            .contains(&format!("Во вложении Отчёт {today}.xlsx: 2 строк.")),
        "{}",
        m.body
    );
    assert_eq!(m.attachments.len(), 1);
    let (name, ctype, content) = &m.attachments[0];
    assert_eq!(name, &format!("Отчёт {today}.xlsx"));
    assert_eq!(
        ctype,
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    );
    assert!(content == &bytes, "the attachment is the workbook written");
}

#[test]
fn smtp_down_ends_the_run_and_keeps_the_files() {
    let s = Scratch::new();
    let p = pipeline(&s, "");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = etl_run(&s, &p, &format!("smtp://127.0.0.1:{port}"));
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let journal = read_json(&s.path("j.json"));
    assert_eq!(journal["status"], "aborted");
    assert!(
        journal["error"]
            .as_str()
            .unwrap()
            .starts_with("smtp unavailable: sending to ivan@example.ru"),
        "{}",
        journal["error"]
    );
    assert!(only_xlsx(&s.path("reports")).exists());
}

#[test]
fn starttls_and_tls_with_a_login() {
    let s = Scratch::new();
    for (mode, scheme, query) in [
        ("starttls", "smtp", "?tls=required"),
        ("smtps", "smtps", ""),
    ] {
        let dir = s.path(mode);
        std::fs::create_dir_all(&dir).unwrap();
        let certs = make_certs(&dir);
        let p = pipeline(&s, &format!("    ca_file: {}\n", certs.ca_cert.display()));
        let server = SmtpServer::start(
            &dir,
            Options {
                tls: Some(mode),
                certs: Some(certs),
                login: Some("robot:pa ss".into()),
                ..Default::default()
            },
        );
        let url = format!("{scheme}://robot:pa%20ss@localhost:{}{query}", server.port);
        let out = etl_run(&s, &p, &url);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{mode}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        assert_eq!(server.messages().len(), 3, "{mode}");
        assert!(!stdout(&out).contains("pa ss") && !stdout(&out).contains("pa%20ss"));

        let wrong = format!("{scheme}://robot:wrong@localhost:{}{query}", server.port);
        let out = etl_run(&s, &p, &wrong);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{mode}: a refused login ends the run"
        );
        assert_eq!(server.messages().len(), 3);
    }
    // Without the CA the server's certificate is not trusted: the run ends, nothing is sent.
    let server = SmtpServer::start(
        s.dir.path(),
        Options {
            tls: Some("smtps"),
            certs: Some(make_certs(s.dir.path())),
            ..Default::default()
        },
    );
    let p2 = pipeline(&s, "");
    let out = etl_run(&s, &p2, &format!("smtps://localhost:{}", server.port));
    assert_eq!(out.status.code(), Some(1));
    assert!(server.messages().is_empty());
}

#[test]
fn dry_run_sends_nothing() {
    let s = Scratch::new();
    let server = SmtpServer::start(s.dir.path(), Options::default());
    let p = pipeline(&s, "");
    let out = run(etl()
        .arg("run")
        .arg(&p)
        .arg("--state")
        .arg(s.state())
        .arg("--dry-run")
        .env("SMTP_URL", server.url("smtp"))
        .env("REPORT_FROM", "reports@example.ru")
        .env("REPORT_OUTPUT_DIR", s.path("reports")));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("[dry-run] email: would send to 3 recipient(s)"),
        "{}",
        stdout(&out)
    );
    assert!(server.messages().is_empty());
}
