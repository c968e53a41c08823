//! Seed 001: pipelines/contacts.yaml and pipelines/deals.yaml against emulated Bitrix24 and
//! otmechalka services, every corner case of the seed, and crash safety.

use std::path::PathBuf;
use std::time::Duration;

use emulators::bitrix24::{Emulator, Fault as B24Fault, Portal};
use emulators::kit::{Fault, FaultRule};
use emulators::otmechalka::OtmechalkaEmulator;
use serde_json::{Value, json};

use crate::harness::*;

pub(crate) const STATUS: &str = "UF_CRM_SYNC_STATUS";

pub(crate) fn pipeline(name: &str) -> PathBuf {
    root().join("pipelines").join(name)
}

/// A well-formed student contact; `patch` overrides fields (null removes them).
pub(crate) fn contact(id: u64, patch: Value) -> serde_json::Map<String, Value> {
    let mut c = row(json!({
        "ID": id.to_string(), "NAME": "Иван", "LAST_NAME": "Петров",
        "PHONE": [{"ID": "1", "VALUE_TYPE": "WORK", "VALUE": "8 (926) 123-45-67", "TYPE_ID": "PHONE"}],
        "EMAIL": [{"ID": "2", "VALUE_TYPE": "WORK", "VALUE": "ivan.petrov@gmail.com", "TYPE_ID": "EMAIL"}],
        "DATE_CREATE": "2024-01-01T10:00:00+03:00", "DATE_MODIFY": format!("2024-05-01T10:00:{:02}+03:00", id % 60),
        "UF_CRM_57AD7FAF7E6C4": "Петров", "UF_CRM_1608028374": "Василий", "UF_CRM_1607943642": "2009-11-29T03:00:00+03:00",
        "UF_CRM_58D15BB9CA8F4": [410], "UF_CRM_1470852549": [48], STATUS: ""
    }));
    for (k, v) in patch.as_object().unwrap() {
        if v.is_null() {
            c.remove(k);
        } else {
            c.insert(k.clone(), v.clone());
        }
    }
    c
}

pub(crate) fn status(emu: &Emulator, entity: &str, id: u64) -> Value {
    emu.with_portal(|p| {
        p.get(entity, id)
            .unwrap()
            .get(STATUS)
            .cloned()
            .unwrap_or(Value::Null)
    })
}

pub(crate) fn contacts_portal() -> Portal {
    let mut p = Portal::new();
    p.insert("contact", contact(1, json!({})));
    p.insert(
        "contact",
        contact(
            2,
            json!({"UF_CRM_58D15BB9CA8F4": [404], "UF_CRM_1470852549": [48, 12708], "EMAIL": null}),
        ),
    );
    p.insert("contact", contact(3, json!({"UF_CRM_58D15BB9CA8F4": ["404", "410", "999"], "UF_CRM_1470852549": ["48"], "UF_CRM_1607943642": ""})));
    p.insert(
        "contact",
        contact(
            4,
            json!({"UF_CRM_57AD7FAF7E6C4": "", "UF_CRM_1608028374": ""}),
        ),
    );
    p.insert(
        "contact",
        contact(5, json!({"NAME": "Наталья Зарудная", "LAST_NAME": ""})),
    );
    p.insert("contact", contact(6, json!({"PHONE": null})));
    p.insert(
        "contact",
        contact(7, json!({"UF_CRM_58D15BB9CA8F4": [406]})),
    );
    p.insert(
        "contact",
        contact(
            8,
            json!({"UF_CRM_58D15BB9CA8F4": [404], "UF_CRM_1470852549": [52]}),
        ),
    );
    p.insert(
        "contact",
        contact(9, json!({"EMAIL": [{"VALUE": "not-an-email"}]})),
    );
    p.insert(
        "contact",
        contact(10, json!({"PHONE": [{"VALUE": "12345"}]})),
    );
    // Created before SYNC_START_DATE: ignored.
    p.insert(
        "contact",
        contact(11, json!({"DATE_CREATE": "2020-01-01T10:00:00+03:00"})),
    );
    p
}

pub(crate) fn run_contacts(
    s: &Scratch,
    b24: &Emulator,
    otm: &OtmechalkaEmulator,
    extra: &[&str],
) -> std::process::Output {
    run(
        etl_run(&pipeline("contacts.yaml"), &s.state(), Some(b24), Some(otm))
            .arg("--journal")
            .arg(s.path("j.json"))
            .args(extra),
    )
}

#[test]
fn contacts_follow_the_seed_mapping_and_write_the_status_back() {
    let b24 = b24(contacts_portal());
    let otm = otmechalka();
    let s = Scratch::new();
    let out = run_contacts(&s, &b24, &otm, &[]);
    assert_success(&out);

    let c1 = otm.client("1").expect("client 1");
    assert_eq!(
        (
            c1.last_name.as_str(),
            c1.first_name.as_str(),
            c1.phone.as_str()
        ),
        ("Петров", "Василий", "79261234567")
    );
    assert_eq!(c1.email.as_deref(), Some("ivan.petrov@gmail.com"));
    assert_eq!(c1.birthdate.as_deref(), Some("2009-11-29"));
    assert_eq!(c1.gender, "M");
    assert_eq!(c1.additional_data.as_deref(), Some("Петров Иван"));
    assert_eq!(
        c1.course_names,
        vec!["Он-лайн Групповое", "Он-лайн индивидуальные"]
    );
    assert_eq!(c1.branchoffice_names, vec!["+Он-лайн `МСК"]);

    let c2 = otm.client("2").expect("client 2: chess in two branches");
    assert_eq!(
        c2.course_names,
        vec!["Групповые занятия", "Индивидуальные занятия"]
    );
    assert_eq!(
        c2.branchoffice_names,
        vec!["+ ЦДШ `МСК", "+ СКОЛКОВО `МСК *"]
    );
    assert_eq!(c2.email, None);

    let c3 = otm
        .client("3")
        .expect("client 3: online and chess, unknown product ignored");
    assert_eq!(c3.course_names.len(), 4);
    assert_eq!(c3.branchoffice_names, vec!["+Он-лайн `МСК", "+ ЦДШ `МСК"]);
    assert_eq!(c3.birthdate, None);

    for id in [4, 5, 6, 7, 8, 9, 10, 11] {
        assert!(
            otm.client(&id.to_string()).is_none(),
            "contact {id} must not reach otmechalka"
        );
    }
    for id in [1, 2, 3, 7, 8] {
        assert_eq!(
            status(&b24, "contact", id),
            json!("Успешно"),
            "contact {id}"
        );
    }
    assert_eq!(
        status(&b24, "contact", 4),
        json!("field last_name is required")
    );
    assert_eq!(
        status(&b24, "contact", 5),
        json!(
            "Имя и фамилия родителя записаны в одно поле: NAME = \"Наталья Зарудная\", LAST_NAME пуст"
        )
    );
    assert_eq!(status(&b24, "contact", 6), json!("field phone is required"));
    assert!(
        status(&b24, "contact", 9)
            .as_str()
            .unwrap()
            .contains("email"),
        "otmechalka's message: {}",
        status(&b24, "contact", 9)
    );
    assert!(
        status(&b24, "contact", 10)
            .as_str()
            .unwrap()
            .contains("invalid phone number \"12345\"")
    );
    assert_eq!(
        status(&b24, "contact", 11),
        json!(""),
        "created before sync_start_date: untouched"
    );
    let j = read_json(&s.path("j.json"));
    assert_eq!(j["counts"], json!({"ok": 5, "skipped": 0, "failed": 5}));
    // Status write-back in batches: one batch for the successes, one for the errors.
    assert_eq!(b24.mutations("crm.contact.update"), 10);
}

#[test]
fn a_second_run_over_unchanged_data_writes_nothing_anywhere() {
    let b24 = b24(contacts_portal());
    let otm = otmechalka();
    let s = Scratch::new();
    assert_eq!(run_contacts(&s, &b24, &otm, &[]).status.code(), Some(0));
    let writes = otm.counters().writes;
    let updates = b24.mutations("crm.contact.update");
    let requests = b24.http_requests();
    // Read even the records our own status write-back just touched (settle_secs=0): they are
    // recognised as unchanged.
    let out = run_contacts(
        &s,
        &b24,
        &otm,
        &["--set", "source.incremental.settle_secs=0"],
    );
    assert_success(&out);
    assert_eq!(otm.counters().writes, writes, "no write to otmechalka");
    assert_eq!(
        b24.mutations("crm.contact.update"),
        updates,
        "no write to Bitrix24"
    );
    let j = read_json(&s.path("j.json"));
    assert_eq!(j["counts"]["skipped"], 10, "{}", j["counts"]);
    assert!(
        b24.http_requests() - requests <= 2,
        "a handful of Bitrix24 requests"
    );

    // A real change is synced again. (A second later than the write-backs, as it would be.)
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let now = chrono::Utc::now().with_timezone(&chrono::FixedOffset::east_opt(3 * 3600).unwrap());
    b24.with_portal(|p| {
        p.set_field("contact", 1, "UF_CRM_1608028374", json!("Василиса"));
        p.set_field(
            "contact",
            1,
            "DATE_MODIFY",
            json!(now.to_rfc3339_opts(chrono::SecondsFormat::Secs, false)),
        );
    });
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = run_contacts(
        &s,
        &b24,
        &otm,
        &["--set", "source.incremental.settle_secs=0"],
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(otm.client("1").unwrap().first_name, "Василиса");
    assert_eq!(otm.counters().writes, writes + 1);
}

#[test]
fn bitrix24_unavailable_ends_the_run_at_once() {
    let otm = otmechalka();
    let s = Scratch::new();
    let out = run(
        etl_run(&pipeline("contacts.yaml"), &s.state(), None, Some(&otm))
            .env("B24_WEBHOOK_URL", "http://127.0.0.1:9/rest/1/abcdef123456/"),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("Bitrix24 unavailable"));
    assert_eq!(otm.counters().total, 0);
}

#[test]
fn otmechalka_unavailable_ends_the_run_and_the_next_run_resumes() {
    let mut portal = Portal::new();
    for id in 1..=120 {
        portal.insert("contact", contact(id, json!({})));
    }
    let b24 = b24(portal);
    let otm = otmechalka();
    // After 60 requests (30 clients: a GET and a POST each) otmechalka answers 503 to everything.
    // One record at a time, so that the 60 requests are exactly 30 whole clients.
    otm.faults()
        .add(FaultRule::new(Fault::Status(503)).after(60).times(100_000));
    let s = Scratch::new();
    let out = run_contacts(
        &s,
        &b24,
        &otm,
        &["--set", "connections.otmechalka.concurrency=1"],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("otmechalka unavailable"),
        "{}",
        stdout(&out)
    );
    let synced = otm.clients().len();
    assert_eq!(synced, 30, "what was synced stays synced");
    let statuses = (1..=120)
        .filter(|id| status(&b24, "contact", *id) == json!("Успешно"))
        .count();
    assert!(statuses <= 30);

    otm.faults().clear();
    let out = run_contacts(&s, &b24, &otm, &[]);
    assert_success(&out);
    assert_eq!(otm.clients().len(), 120);
    assert_eq!(otm.counters().creates, 120, "no client created twice");
    assert!((1..=120).all(|id| status(&b24, "contact", id) == json!("Успешно")));
}

/// A won deal with one product row, for contact `contact_id`.
pub(crate) fn deal(id: u64, contact_id: u64, patch: Value) -> serde_json::Map<String, Value> {
    let mut d = row(json!({
        "ID": id.to_string(), "TITLE": "Абонемент", "STAGE_ID": "WON", "CONTACT_ID": contact_id.to_string(),
        "ASSIGNED_BY_ID": "932", "DATE_CREATE": "2024-01-02T10:00:00+03:00", "DATE_MODIFY": format!("2024-05-02T10:00:{:02}+03:00", id % 60),
        "UF_CRM_1470852549": [186], "UF_CRM_58D1057919A6F": "2024-04-13T03:00:00+03:00", "UF_CRM_1490347942": 450, STATUS: ""
    }));
    for (k, v) in patch.as_object().unwrap() {
        d.insert(k.clone(), v.clone());
    }
    d
}

pub(crate) fn product_row(name: &str) -> serde_json::Map<String, Value> {
    row(
        json!({"PRODUCT_ID": 60130, "PRODUCT_NAME": name, "PRICE": 8700, "PRICE_BRUTTO": 9000, "DISCOUNT_SUM": 300, "QUANTITY": 1}),
    )
}

#[test]
fn deals_become_tickets_with_the_seed_rules() {
    let mut p = Portal::new();
    p.insert(
        "user",
        row(json!({"ID": "932", "ACTIVE": true, "NAME": "Андрей", "LAST_NAME": "Сергеев"})),
    );
    p.insert("contact", contact(1, json!({})));
    for (id, patch) in [
        (101, json!({})),                                  // a good deal, cash
        (102, json!({"UF_CRM_1490347942": 451})),          // cashless
        (103, json!({})),                                  // two product rows
        (104, json!({"UF_CRM_1470852549": [186, 12706]})), // two known branches
        (105, json!({"UF_CRM_1470852549": [999]})),        // unsupported branch only
        (106, json!({})),                                  // a ticket exists already
        (107, json!({"STAGE_ID": "NEW"})),                 // not won: not selected
    ] {
        p.insert("deal", deal(id, 1, patch));
        p.add_product_row(id, product_row(" 6 КМС индивидуальные 45 мин"));
    }
    p.add_product_row(103, product_row("8 групповых занятий"));
    let b24 = b24(p);
    let otm = otmechalka();
    let s = Scratch::new();
    assert_eq!(run_contacts(&s, &b24, &otm, &[]).status.code(), Some(0));
    otm.seed_ticket(json!({"origin_id": "106", "client_origin_id": "1", "ticket_type": "Разовое занятие", "price_initial": "1200.00",
        "discount": "0.00", "price_final": "1200.00", "selling_date": "2024-01-01", "selling_branchoffice": "+ ЦДШ `МСК",
        "employee": "Кто-то", "payment_method": "CASH"})).unwrap();

    let out = run(
        etl_run(&pipeline("deals.yaml"), &s.state(), Some(&b24), Some(&otm))
            .arg("--journal")
            .arg(s.path("d.json")),
    );
    assert_success(&out);
    let t = otm.ticket("101").expect("ticket 101");
    assert_eq!(t.client_origin_id, "1");
    assert_eq!(t.ticket_type, "6 КМС индивидуальные 45 мин");
    assert_eq!(
        (
            t.price_initial.as_str(),
            t.discount.as_str(),
            t.price_final.as_str()
        ),
        ("9000.00", "300.00", "8700.00")
    );
    assert_eq!(t.selling_date, "2024-04-13");
    assert_eq!(t.selling_branchoffice_name, "+ ЦДШ `МСК");
    assert_eq!(t.employee, "Андрей Сергеев");
    assert_eq!(t.payment_method, "CASH");
    assert_eq!(otm.ticket("102").unwrap().payment_method, "ONLINE");
    assert!(
        otm.ticket("103").is_none()
            && otm.ticket("104").is_none()
            && otm.ticket("105").is_none()
            && otm.ticket("107").is_none()
    );
    assert_eq!(
        otm.ticket("106").unwrap().employee,
        "Кто-то",
        "an existing ticket is left alone"
    );

    assert_eq!(status(&b24, "deal", 101), json!("Успешно"));
    assert_eq!(
        status(&b24, "deal", 103),
        json!("В сделке 2 товарных позиций, ожидается ровно одна")
    );
    assert_eq!(
        status(&b24, "deal", 104),
        json!("У сделки больше одного филиала: + ЦДШ `МСК, + СКОЛКОВО `МСК *")
    );
    assert_eq!(status(&b24, "deal", 105), json!("Успешно"));
    assert_eq!(status(&b24, "deal", 106), json!("Успешно"));
    assert_eq!(status(&b24, "deal", 107), json!(""));
    assert_eq!(b24.requests("user.get"), 1, "the seller is fetched once");
    assert_eq!(otm.counters().ticket_creates, 2);

    // Nothing changed: no write anywhere, even reading the write-backs.
    let (writes, updates) = (otm.counters().writes, b24.mutations("crm.deal.update"));
    let out = run(
        etl_run(&pipeline("deals.yaml"), &s.state(), Some(&b24), Some(&otm))
            .args(["--set", "source.incremental.settle_secs=0"]),
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        (otm.counters().writes, b24.mutations("crm.deal.update")),
        (writes, updates)
    );

    // Later, the manager removes the second product row of deal 103: the next run creates its
    // ticket.
    std::thread::sleep(Duration::from_millis(1100));
    let one_row = json!([product_row("8 групповых занятий")]);
    b24.act(
        "crm.deal.productrows.set",
        json!({"id": 103, "rows": one_row}),
    )
    .unwrap();
    let out = run(
        etl_run(&pipeline("deals.yaml"), &s.state(), Some(&b24), Some(&otm))
            .args(["--set", "source.incremental.settle_secs=0"]),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert_eq!(
        otm.ticket("103")
            .unwrap_or_else(|| panic!("{}", stdout(&out)))
            .ticket_type,
        "8 групповых занятий"
    );
    assert_eq!(status(&b24, "deal", 103), json!("Успешно"));
}

/// What otmechalka holds, for comparing runs.
pub(crate) fn snapshot(otm: &OtmechalkaEmulator) -> (Vec<String>, Vec<String>) {
    let mut clients: Vec<String> = otm
        .clients()
        .iter()
        .map(|c| {
            format!(
                "{}|{}|{}|{}|{:?}",
                c.origin_id, c.last_name, c.first_name, c.phone, c.courses
            )
        })
        .collect();
    clients.sort();
    let mut tickets: Vec<String> = otm
        .tickets()
        .iter()
        .map(|t| format!("{}|{}|{}", t.origin_id, t.ticket_type, t.price_final))
        .collect();
    tickets.sort();
    (clients, tickets)
}

#[test]
fn kill_9_at_random_points_loses_and_repeats_nothing() {
    let portal = || {
        let mut p = Portal::new();
        for id in 1..=150 {
            p.insert("contact", contact(id, json!({})));
        }
        p
    };
    let clean = {
        let (b24, otm, s) = (b24(portal()), otmechalka(), Scratch::new());
        assert_eq!(run_contacts(&s, &b24, &otm, &[]).status.code(), Some(0));
        snapshot(&otm)
    };
    assert_eq!(clean.0.len(), 150);
    let mut rng_state: u64 = 0x9e37_79b9_7f4a_7c15;
    for round in 0..10 {
        let b24 = b24(portal());
        b24.update_config(|c| c.latency = std::time::Duration::from_millis(5));
        let otm = otmechalka();
        let s = Scratch::new();
        // Kill at a pseudo-random moment of the run, then run again until it finishes.
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        let delay = std::time::Duration::from_millis(50 + rng_state % 900);
        let mut child = etl_run(
            &pipeline("contacts.yaml"),
            &s.state(),
            Some(&b24),
            Some(&otm),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let before = otm.clients().len();
        let out = run_contacts(&s, &b24, &otm, &[]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "round {round}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        assert_eq!(
            snapshot(&otm),
            clean,
            "round {round} (killed after {delay:?} with {before} clients)"
        );
        assert_eq!(
            otm.counters().creates,
            150,
            "round {round}: a client was created twice"
        );
        assert!(
            (1..=150).all(|id| status(&b24, "contact", id) == json!("Успешно")),
            "round {round}"
        );
    }
}

#[test]
fn the_sandbox_runs_contacts_on_a_fresh_machine() {
    let out = run(etl()
        .current_dir(root())
        .args([
            "run",
            "pipelines/contacts.yaml",
            "--sandbox",
            "--no-progress",
        ])
        .env_remove("B24_WEBHOOK_URL"));
    assert_success(&out);
    assert!(
        stdout(&out).contains("contacts: finished"),
        "{}",
        stdout(&out)
    );
}

#[allow(dead_code)]
fn unused(_: B24Fault) {}
