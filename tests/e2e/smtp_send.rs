//! The `smtp.send` step against a real SMTP server on 127.0.0.1 (aiosmtpd, `smtp_server.py`):
//! plain, implicit TLS and STARTTLS with a login, a private CA trusted through `SSL_CERT_FILE`,
//! To/Cc/Bcc, HTML, attachments fetched from a local HTTP server, refusals named in `skipped`.

use std::path::{Path, PathBuf};
use std::process::Output;

use mailparse::{DispositionType, ParsedMail};
use serde_json::{Value, json};

use crate::harness::*;
use crate::smtp::*;

const PASSWORD: &str = "Pa55-word-for-tests";
const WRONG_PASSWORD: &str = "Wrong-pa55word-here";

/// A pipeline reading `records` (one JSON object each) and sending one message per record; the
/// step's outcome is written to out.jsonl.
fn pipeline(s: &Scratch, records: &[Value]) -> PathBuf {
    let lines: Vec<String> = records.iter().map(Value::to_string).collect();
    s.write("in.jsonl", &(lines.join("\n") + "\n"));
    let d = s.dir.path().display();
    s.write(
        "p.yaml",
        &format!(
            r#"name: mail
source: {{type: jsonl, path: {d}/in.jsonl}}
steps:
  - type: smtp.send
    id: mail
    server:
      host: "{{{{ source.host }}}}"
      port: "{{{{ source.port }}}}"
      security: "{{{{ source.security }}}}"
      auth: "{{{{ source.auth | default('N') }}}}"
      login: "{{{{ source.login }}}}"
      password: "{{{{ source.password }}}}"
    from: "{{{{ source.from }}}}"
    to: "{{{{ source.to }}}}"
    cc: "{{{{ source.cc }}}}"
    bcc: ["{{{{ source.bcc }}}}"]
    subject: "{{{{ source.subject }}}}"
    body: "{{{{ source.body }}}}"
    body_type: "{{{{ source.body_type | default('text') }}}}"
    attachments: "{{{{ source.attachments }}}}"
    max_attachment_mb: 1
    timeout_secs: 10
sinks:
  - {{type: jsonl, path: {d}/out.jsonl, value: "{{{{ steps.mail }}}}"}}
"#
        ),
    )
}

fn record(server: &SmtpServer, security: &str, extra: Value) -> Value {
    let mut r = json!({
        "host": "127.0.0.1",
        "port": server.port,
        "security": security,
        "from": "robot@example.ru:Робот Почтовый",
        "to": "ivan@example.ru:Иван Петров",
        "subject": "Счёт №5",
        "body": "Здравствуйте! Счёт во вложении.",
    });
    r.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    r
}

fn etl_send(s: &Scratch, p: &Path, ca: Option<&Path>, dry_run: bool) -> Output {
    let mut cmd = etl();
    cmd.arg("run")
        .arg(p)
        .arg("--state")
        .arg(s.state())
        .arg("--journal")
        .arg(s.path("j.json"))
        .arg("--no-progress")
        .env_remove("SSL_CERT_FILE");
    if dry_run {
        cmd.arg("--dry-run");
    }
    if let Some(ca) = ca {
        cmd.env("SSL_CERT_FILE", ca);
    }
    run(&mut cmd)
}

fn outcomes(s: &Scratch) -> Vec<Value> {
    read_jsonl(&s.path("out.jsonl"))
}

/// Neither password is in anything the run left behind or printed.
fn assert_no_password(s: &Scratch, out: &Output) {
    let mut texts = vec![("stdout", stdout(out)), ("stderr", stderr(out))];
    for f in ["j.json", "out.jsonl", "state.db", "state.db-wal"] {
        if let Ok(t) = std::fs::read(s.path(f)) {
            texts.push((f, String::from_utf8_lossy(&t).into_owned()));
        }
    }
    for (what, text) in texts {
        for p in [PASSWORD, WRONG_PASSWORD] {
            assert!(!text.contains(p), "the password is in {what}: {text}");
        }
    }
}

/// A stored message with the headers the tests look at.
struct Received {
    headers: Vec<(String, String)>,
    html: String,
    text: String,
    attachments: Vec<(String, Vec<u8>)>,
}

impl Received {
    fn header(&self, name: &str) -> String {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn received(server: &SmtpServer) -> Vec<Received> {
    server
        .raw_messages()
        .iter()
        .map(|raw| {
            let parsed = mailparse::parse_mail(raw).unwrap();
            let headers = parsed
                .headers
                .iter()
                .map(|h| (h.get_key(), h.get_value()))
                .collect();
            let mut r = Received {
                headers,
                html: String::new(),
                text: String::new(),
                attachments: Vec::new(),
            };
            walk(&parsed, &mut r);
            r
        })
        .collect()
}

fn walk(part: &ParsedMail, r: &mut Received) {
    for p in &part.subparts {
        walk(p, r);
    }
    if !part.subparts.is_empty() {
        return;
    }
    let disposition = part.get_content_disposition();
    if disposition.disposition == DispositionType::Attachment {
        let name = disposition
            .params
            .get("filename")
            .cloned()
            .unwrap_or_default();
        r.attachments.push((name, part.get_body_raw().unwrap()));
    } else if part.ctype.mimetype == "text/html" {
        r.html.push_str(&part.get_body().unwrap());
    } else if part.ctype.mimetype == "text/plain" {
        r.text.push_str(&part.get_body().unwrap());
    }
}

#[test]
fn plain_to_cc_bcc_html_and_attachments_with_bad_items_skipped_and_named() {
    let s = Scratch::new();
    let server = SmtpServer::start(
        s.dir.path(),
        Options {
            refuse: vec!["refused@example.ru".into()],
            ..Default::default()
        },
    );
    let pdf: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let http = file_server(
        "application/pdf",
        vec![
            ("report.pdf", pdf.clone()),
            ("big.bin", vec![7u8; 1024 * 1024 + 1]),
        ],
    );
    let files = format!("http://127.0.0.1:{http}/files");
    let p = pipeline(
        &s,
        &[
            record(
                &server,
                "none",
                json!({
                    "to": "ivan@example.ru:Иван Петров, не адрес; refused@example.ru",
                    "cc": ["maria@example.ru", "oleg@example.ru:Олег"],
                    "bcc": "boss@example.ru:Шеф",
                    "body_type": "html",
                    "body": "<p>Здравствуйте, <b>Иван</b>!</p>",
                    "attachments": [
                        format!("{files}/report.pdf"),
                        {"url": format!("{files}/report.pdf"), "name": "Счёт №5.pdf"},
                        format!("{files}/missing.pdf"),
                        format!("{files}/big.bin"),
                        "ftp://127.0.0.1/x.pdf",
                    ],
                }),
            ),
            record(
                &server,
                "none",
                json!({"to": "не адрес; тоже нет", "cc": "", "bcc": ""}),
            ),
            record(&server, "none", json!({"to": "refused@example.ru"})),
        ],
    );
    let out = etl_send(&s, &p, None, false);
    assert_success(&out);

    let results = outcomes(&s);
    assert_eq!(results.len(), 3, "{results:?}");
    let first = &results[0];
    assert_eq!(first["result"], "OK", "{first}");
    assert_eq!(first["error"], "", "{first}");
    assert_eq!(first["recipients"], 4, "{first}");
    assert!(
        first["message_id"]
            .as_str()
            .unwrap()
            .ends_with("@example.ru>"),
        "{first}"
    );
    let skipped: Vec<&str> = first["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(skipped.len(), 5, "{skipped:?}");
    let has = |prefix: &str, part: &str| {
        skipped
            .iter()
            .any(|x| x.starts_with(prefix) && x.contains(part))
    };
    assert!(has("не адрес", "недопустимый адрес"), "{skipped:?}");
    assert!(has("missing.pdf", "HTTP 404"), "{skipped:?}");
    assert!(has("big.bin", "больше 1 МБ"), "{skipped:?}");
    assert!(has("x.pdf", "http(s)"), "{skipped:?}");
    assert!(has("refused@example.ru", "550"), "{skipped:?}");

    let second = &results[1];
    assert_eq!(second["result"], "ERROR", "{second}");
    assert_eq!(second["error"], "Нет ни одного допустимого получателя");
    assert_eq!(second["skipped"].as_array().unwrap().len(), 2, "{second}");

    let third = &results[2];
    assert_eq!(third["result"], "ERROR", "{third}");
    let error = third["error"].as_str().unwrap();
    assert!(
        error.starts_with("Сервер отклонил всех получателей: RCPT TO: 550"),
        "{error}"
    );
    assert!(
        third["skipped"][0]
            .as_str()
            .unwrap()
            .starts_with("refused@example.ru ("),
        "{third}"
    );

    let mails = received(&server);
    assert_eq!(
        mails.len(),
        1,
        "one message: the second record had nobody to send to, the third only a refused address"
    );
    let m = &mails[0];
    assert_eq!(m.header("From"), "Робот Почтовый <robot@example.ru>");
    // The headers are written before the server answers RCPT: the refused address stays in To.
    assert_eq!(
        m.header("To"),
        "Иван Петров <ivan@example.ru>, refused@example.ru"
    );
    assert_eq!(m.header("Cc"), "maria@example.ru, Олег <oleg@example.ru>");
    assert_eq!(m.header("Subject"), "Счёт №5");
    // Bcc: delivered (the envelope), named in no header the recipients see.
    let rcpt = m.header("X-RcptTo");
    for a in [
        "ivan@example.ru",
        "maria@example.ru",
        "oleg@example.ru",
        "boss@example.ru",
    ] {
        assert!(rcpt.contains(a), "{a} not in the envelope: {rcpt}");
    }
    assert!(!rcpt.contains("refused@example.ru"), "{rcpt}");
    for (k, v) in &m.headers {
        if k != "X-RcptTo" {
            assert!(!k.eq_ignore_ascii_case("bcc"), "a Bcc header: {v}");
            assert!(
                !v.contains("boss@example.ru") && !v.contains("Шеф"),
                "{k}: {v}"
            );
        }
    }
    assert!(
        m.html.contains("<p>Здравствуйте, <b>Иван</b>!</p>"),
        "{}",
        m.html
    );
    assert!(m.text.is_empty(), "{}", m.text);
    let names: Vec<&str> = m.attachments.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["report.pdf", "Счёт №5.pdf"]);
    assert!(m.attachments.iter().all(|(_, b)| *b == pdf));

    let journal = read_json(&s.path("j.json"));
    let c = &journal["counters"];
    assert_eq!(
        (
            c["mail.sent"].as_i64(),
            c["mail.error"].as_i64(),
            c["mail.skipped"].as_i64()
        ),
        (Some(1), Some(2), Some(8)),
        "{c}"
    );
    // Counts only: no address reaches the journal.
    assert!(!journal.to_string().contains("@example.ru"), "{journal}");
}

#[test]
fn implicit_tls_and_starttls_with_a_login_trust_the_ca_in_ssl_cert_file() {
    for (server_mode, security) in [("smtps", "ssl"), ("starttls", "tls")] {
        let s = Scratch::new();
        let certs = make_certs(s.dir.path());
        let server = SmtpServer::start(
            s.dir.path(),
            Options {
                tls: Some(server_mode),
                certs: Some(make_certs_copy(&certs)),
                login: Some(format!("robot:{PASSWORD}")),
                ..Default::default()
            },
        );
        let login = json!({"auth": "Y", "login": "robot", "password": PASSWORD});
        let p = pipeline(&s, &[record(&server, security, login)]);

        // Without the private CA the server's certificate is not trusted: ERROR, nothing sent.
        let out = etl_send(&s, &p, None, false);
        assert_success(&out);
        let r = &outcomes(&s)[0];
        assert_eq!(r["result"], "ERROR", "{security}: {r}");
        assert!(
            r["error"]
                .as_str()
                .unwrap()
                .to_lowercase()
                .contains("certificate"),
            "{security}: {r}"
        );
        assert!(received(&server).is_empty());
        assert_no_password(&s, &out);

        let out = etl_send(&s, &p, Some(&certs.ca_cert), false);
        assert_success(&out);
        let r = &outcomes(&s)[0];
        assert_eq!(r["result"], "OK", "{security}: {r}");
        assert_eq!(r["skipped"], json!([]), "{security}: {r}");
        let mails = received(&server);
        assert_eq!(mails.len(), 1, "{security}");
        assert_eq!(mails[0].header("To"), "Иван Петров <ivan@example.ru>");
        assert_eq!(mails[0].text.trim(), "Здравствуйте! Счёт во вложении.");
        assert!(mails[0].html.is_empty());
        assert_no_password(&s, &out);
    }
}

/// The certificate paths as `Options` wants them (it takes the set by value).
fn make_certs_copy(c: &Certs) -> Certs {
    Certs {
        ca_cert: c.ca_cert.clone(),
        server_cert: c.server_cert.clone(),
        server_key: c.server_key.clone(),
    }
}

#[test]
fn a_wrong_password_is_an_error_with_the_servers_reason_and_the_password_appears_nowhere() {
    let s = Scratch::new();
    let certs = make_certs(s.dir.path());
    let server = SmtpServer::start(
        s.dir.path(),
        Options {
            tls: Some("starttls"),
            certs: Some(make_certs_copy(&certs)),
            login: Some(format!("robot:{PASSWORD}")),
            ..Default::default()
        },
    );
    let wrong = json!({"auth": "Y", "login": "robot", "password": WRONG_PASSWORD});
    let p = pipeline(&s, &[record(&server, "tls", wrong)]);
    let out = etl_send(&s, &p, Some(&certs.ca_cert), false);
    assert_success(&out);
    let r = &outcomes(&s)[0];
    assert_eq!(r["result"], "ERROR", "{r}");
    let error = r["error"].as_str().unwrap();
    assert!(error.starts_with("AUTH: 535"), "{error}");
    assert!(
        error.contains("Authentication credentials invalid"),
        "{error}"
    );
    assert!(received(&server).is_empty());
    let journal = read_json(&s.path("j.json"));
    assert_eq!(journal["counters"]["mail.error"], 1, "{journal}");
    assert_no_password(&s, &out);
}

#[test]
fn dry_run_tells_what_would_be_sent_and_sends_nothing() {
    let s = Scratch::new();
    let server = SmtpServer::start(s.dir.path(), Options::default());
    let extra = json!({
        "auth": "Y", "login": "robot", "password": PASSWORD,
        "cc": "maria@example.ru", "bcc": "boss@example.ru",
    });
    let p = pipeline(&s, &[record(&server, "none", extra)]);
    let out = etl_send(&s, &p, None, true);
    assert_success(&out);
    let text = stdout(&out);
    let line = text
        .lines()
        .find(|l| l.contains("(smtp.send)"))
        .unwrap_or_else(|| panic!("no dry-run line: {text}"));
    assert!(line.contains("would send \"Счёт №5\""), "{line}");
    assert!(line.contains("to 3 recipient(s)"), "{line}");
    assert!(!line.contains("Здравствуйте"), "no body: {line}");
    assert!(received(&server).is_empty());
    assert_no_password(&s, &out);
}

#[test]
fn a_security_mode_it_does_not_know_fails_the_record() {
    let s = Scratch::new();
    let server = SmtpServer::start(s.dir.path(), Options::default());
    let login = json!({"auth": "Y", "login": "robot", "password": PASSWORD});
    let p = pipeline(&s, &[record(&server, "tls13", login)]);
    let out = etl_send(&s, &p, None, false);
    let journal = read_json(&s.path("j.json"));
    assert_eq!(journal["counts"]["failed"], 1, "{journal}");
    assert!(
        journal
            .to_string()
            .contains("`tls13` is none of ssl, tls, none"),
        "{journal}{}",
        stderr(&out)
    );
    assert!(received(&server).is_empty());
    assert_no_password(&s, &out);
}
