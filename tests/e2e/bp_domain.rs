//! The business-process actions of issue 12 (pipelines/bp/invoice_from_deal, smtp_send,
//! callback, booking_info, booking_rename), each driven like Bitrix24 drives it: the emulated
//! portal builds the handler request of a workflow reaching the action, `etl run PIPELINE
//! --request FILE` answers it as the run-as user, and the portal records the one
//! `bizproc.event.send`. E-mail goes to a real SMTP server (aiosmtpd with TLS and AUTH).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Output;

use emulators::bitrix24::{BackgroundEmulator, EventSend, Fault, Portal, Workflow};
use serde_json::{Value, json};

use crate::harness::*;
use crate::smtp::*;

/// One request of a workflow, as a file `etl run --request` reads.
struct Request {
    file: PathBuf,
    event_token: String,
}

fn request(emu: &BackgroundEmulator, s: &Scratch, wf: &Workflow, name: &str) -> Request {
    let req = emu.prepare_workflow(wf);
    Request {
        file: s.write(name, &req.body()),
        event_token: req.event_token,
    }
}

/// Answer `req` with pipelines/bp/`pipeline` as the installed application.
fn answer(
    emu: &BackgroundEmulator,
    s: &Scratch,
    pipeline: &str,
    req: &Request,
    extra: &[(&str, &str)],
) -> Output {
    let mut cmd = etl();
    cmd.arg("run")
        .arg(root().join("pipelines/bp").join(pipeline))
        .arg("--request")
        .arg(&req.file)
        .arg("--state")
        .arg(s.state())
        .arg("--no-progress")
        .env_remove("B24_WEBHOOK_URL")
        .env_remove("SSL_CERT_FILE");
    for (k, v) in emu.app_vars() {
        cmd.env(k, v);
    }
    for (k, v) in extra {
        if k.starts_with("settings.") {
            cmd.arg("--set").arg(format!("{k}={v}"));
        } else {
            cmd.env(k, v);
        }
    }
    let out = run(&mut cmd);
    assert_success(&out);
    out
}

/// The workflow's one reply.
fn reply(emu: &BackgroundEmulator, req: &Request, out: &Output) -> EventSend {
    let sends = emu.event_sends_for(&req.event_token);
    assert_eq!(sends.len(), 1, "{sends:?}\n{}{}", stdout(out), stderr(out));
    sends[0].clone()
}

/// Run one workflow through an action; its reply.
fn act(
    emu: &BackgroundEmulator,
    pipeline: &str,
    wf: Workflow,
    extra: &[(&str, &str)],
) -> EventSend {
    let s = Scratch::new();
    let req = request(emu, &s, &wf, "request.txt");
    let out = answer(emu, &s, pipeline, &req, extra);
    reply(emu, &req, &out)
}

// ---------------------------------------------------------------------------------------------
// Invoice from a deal

const INVOICE: &str = "invoice_from_deal.yaml";

/// Deals 100 (company 1 and contact 10), 101 (company 2 only, no requisites), 102 (contact 11
/// only), 103 (no products), 104 (no company, no contact). Company 1 has two requisites (the
/// first by ID, 11, was created second) and its 11 two bank details (21 first); the seller,
/// company 8, a requisite 13 with bank detail 23; contact 11 a person's requisite 14.
fn invoice_portal() -> Portal {
    let mut p = Portal::new();
    let deal = |id: u64, title: &str, company: u64, contact: u64| {
        row(
            json!({"ID": id.to_string(), "TITLE": title, "COMPANY_ID": company.to_string(),
            "CONTACT_ID": contact.to_string(), "ASSIGNED_BY_ID": "5", "CURRENCY_ID": "RUB",
            "STAGE_ID": "NEW", "UF_CRM_PROMO": "не переносится"}),
        )
    };
    p.insert("deal", deal(100, "Шахматы для школы", 1, 10));
    p.insert("deal", deal(101, "Только компания", 2, 0));
    p.insert("deal", deal(102, "Только контакт", 0, 11));
    p.insert("deal", deal(103, "Без товаров", 1, 10));
    p.insert("deal", deal(104, "Без клиента", 0, 0));
    let product = |id: u64, name: &str, price: f64, qty: f64, tax: f64| {
        row(
            json!({"PRODUCT_ID": id, "PRODUCT_NAME": name, "PRICE": price, "QUANTITY": qty,
            "DISCOUNT_SUM": 0, "TAX_RATE": tax, "TAX_INCLUDED": "Y", "MEASURE_CODE": 796,
            "MEASURE_NAME": "шт"}),
        )
    };
    for deal in [100, 101, 102, 104] {
        p.add_product_row(deal, product(7, "Доска шахматная", 1500.0, 2.0, 20.0));
        p.add_product_row(deal, product(8, "Часы шахматные", 3200.0, 1.0, 0.0));
    }
    p.insert(
        "company",
        row(
            json!({"ID": "1", "TITLE": "Ромашка (карточка)", "ADDRESS": "адрес из карточки",
        "PHONE": [{"ID": "1", "VALUE": "+7 495 000-00-01", "VALUE_TYPE": "WORK"}],
        "EMAIL": [{"ID": "2", "VALUE": "office@romashka.ru", "VALUE_TYPE": "WORK"}]}),
        ),
    );
    p.insert(
        "company",
        row(
            json!({"ID": "2", "TITLE": "Лютик", "ADDRESS": "Москва, ул. Лютиковая, 2",
        "PHONE": [{"ID": "3", "VALUE": "+7 495 000-00-02", "VALUE_TYPE": "WORK"}],
        "EMAIL": [{"ID": "4", "VALUE": "info@lutik.ru", "VALUE_TYPE": "WORK"}]}),
        ),
    );
    p.insert(
        "company",
        row(json!({"ID": "8", "TITLE": "Рокировка", "IS_MY_COMPANY": "Y"})),
    );
    let contact = |id: u64, last: &str, name: &str, second: &str, phone: &str, email: &str| {
        row(
            json!({"ID": id.to_string(), "LAST_NAME": last, "NAME": name, "SECOND_NAME": second,
            "PHONE": [{"ID": format!("{id}1"), "VALUE": phone, "VALUE_TYPE": "WORK"}],
            "EMAIL": [{"ID": format!("{id}2"), "VALUE": email, "VALUE_TYPE": "WORK"}]}),
        )
    };
    p.insert(
        "contact",
        contact(
            10,
            "Петров",
            "Иван",
            "Сергеевич",
            "+7 926 111-11-11",
            "petrov@example.ru",
        ),
    );
    p.insert(
        "contact",
        contact(
            11,
            "Зарудная",
            "Елена",
            "",
            "+7 926 222-22-22",
            "elena@example.ru",
        ),
    );
    let rq = |id: u64, etype: u64, eid: u64, name: &str, inn: &str| {
        row(
            json!({"ID": id.to_string(), "ENTITY_TYPE_ID": etype.to_string(), "ENTITY_ID": eid.to_string(),
            "PRESET_ID": "1", "NAME": name, "RQ_COMPANY_NAME": if etype == 4 { json!(name) } else { Value::Null },
            "RQ_NAME": if etype == 3 { json!(name) } else { Value::Null }, "RQ_INN": inn,
            "RQ_KPP": if etype == 4 { json!("770101001") } else { Value::Null }}),
        )
    };
    // Inserted out of order: the first by ID is not the first created.
    p.insert(
        "requisite",
        rq(12, 4, 1, "ООО «Ромашка» (старые)", "7700000000"),
    );
    p.insert("requisite", rq(11, 4, 1, "ООО «Ромашка»", "7701234567"));
    p.insert("requisite", rq(13, 4, 8, "ООО «Рокировка»", "7709876543"));
    p.insert(
        "requisite",
        rq(14, 3, 11, "Зарудная Елена Викторовна", "770400112233"),
    );
    let bank = |id: u64, rq: u64, name: &str| {
        row(
            json!({"ID": id.to_string(), "ENTITY_ID": rq.to_string(), "NAME": name, "RQ_BANK_NAME": name}),
        )
    };
    p.insert("bankdetail", bank(22, 11, "АО Альфа-Банк"));
    p.insert("bankdetail", bank(21, 11, "ПАО Сбербанк"));
    p.insert("bankdetail", bank(23, 13, "ПАО Сбербанк"));
    let addr = |n: u64, rq: u64, type_id: u64, a1: &str| {
        row(
            json!({"ID": n.to_string(), "TYPE_ID": type_id.to_string(), "ENTITY_TYPE_ID": "8",
            "ENTITY_ID": rq.to_string(), "ADDRESS_1": a1, "CITY": "Москва", "POSTAL_CODE": "125009"}),
        )
    };
    p.insert("address", addr(1, 11, 1, "ул. Тверская, 7, офис 12"));
    p.insert("address", addr(2, 11, 6, "ул. Тверская, 7"));
    p.insert("address", addr(3, 14, 1, "ул. Арбат, 3"));
    p
}

fn invoice_request(deal: &str, my_company: &str) -> Workflow {
    Workflow::new("b24etl_invoice_from_deal", &format!("DEAL_{deal}")).with_properties(json!({
        "deal_id": deal, "pay_system_company": "2", "pay_system_contact": "1", "my_company_id": my_company}))
}

fn invoices(emu: &BackgroundEmulator) -> Vec<serde_json::Map<String, Value>> {
    emu.with_portal(|p| {
        p.ids("invoice")
            .into_iter()
            .filter_map(|id| p.get("invoice", id))
            .collect()
    })
}

fn requisite_links(emu: &BackgroundEmulator) -> Vec<Value> {
    emu.calls("crm.requisite.link.register")
        .into_iter()
        .map(|c| c.params["fields"].clone())
        .collect()
}

fn ok_reply(r: &EventSend) -> (String, String) {
    let v = &r.return_values;
    assert_eq!(v["error_text"], "OK", "{r:?}");
    let number = v["invoice_number"].as_str().unwrap().to_string();
    let link = v["payment_link"].as_str().unwrap().to_string();
    assert!(!number.is_empty(), "{r:?}");
    (number, link)
}

#[test]
fn an_invoice_for_company_and_contact_takes_requisites_from_the_company_and_the_person_from_the_contact()
 {
    let emu = b24(invoice_portal());
    let r = act(&emu, INVOICE, invoice_request("DEAL_100", "8"), &[]);
    let (number, link) = ok_reply(&r);
    let all = invoices(&emu);
    assert_eq!(all.len(), 1);
    let inv = &all[0];
    assert_eq!(inv["ACCOUNT_NUMBER"], json!(number));
    assert!(
        link.contains(&format!("invoice_id={}", inv["ID"].as_str().unwrap())),
        "{link}"
    );
    assert!(
        r.log_message.contains(&format!("Создан счёт № {number}")),
        "{}",
        r.log_message
    );
    // A company buyer: its person type and payment system.
    assert_eq!(inv["PERSON_TYPE_ID"], json!("2"));
    assert_eq!(inv["PAY_SYSTEM_ID"], json!(2));
    assert_eq!(
        (
            inv["UF_DEAL_ID"].clone(),
            inv["UF_COMPANY_ID"].clone(),
            inv["UF_CONTACT_ID"].clone(),
            inv["UF_MYCOMPANY_ID"].clone()
        ),
        (json!(100), json!(1), json!(10), json!(8))
    );
    assert_eq!(inv["ORDER_TOPIC"], "Шахматы для школы");
    // Requisite and name from the company's first requisite, the person from the contact.
    assert_eq!(
        inv["INVOICE_PROPERTIES"],
        json!({"COMPANY": "ООО «Ромашка»", "COMPANY_ADR": "125009, Москва, ул. Тверская, 7",
            "INN": "7701234567", "KPP": "770101001", "CONTACT_PERSON": "Петров Иван Сергеевич",
            "PHONE": "+7 926 111-11-11", "EMAIL": "petrov@example.ru"})
    );
    // The deal's rows, its user fields nowhere.
    let rows = inv["PRODUCT_ROWS"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (
            rows[0]["PRODUCT_ID"].clone(),
            rows[0]["PRODUCT_NAME"].clone(),
            rows[0]["PRICE"].clone(),
            rows[0]["QUANTITY"].clone(),
            rows[0]["VAT_RATE"].clone()
        ),
        (
            json!(7),
            json!("Доска шахматная"),
            json!(1500.0),
            json!(2.0),
            json!(0.2)
        )
    );
    assert_eq!(rows[1]["PRODUCT_NAME"], "Часы шахматные");
    assert_eq!(inv["PRICE"], "6200.00");
    assert!(!json!(inv).to_string().contains("не переносится"));
    // First requisite and first bank detail by ID on both sides.
    assert_eq!(
        requisite_links(&emu),
        vec![
            json!({"ENTITY_TYPE_ID": 5, "ENTITY_ID": inv["ID"].as_str().unwrap().parse::<u64>().unwrap(),
            "REQUISITE_ID": "11", "BANK_DETAIL_ID": "21", "MC_REQUISITE_ID": "13", "MC_BANK_DETAIL_ID": "23"})
        ]
    );
}

#[test]
fn an_invoice_for_a_company_only_uses_its_card_when_it_has_no_requisite_and_links_the_seller_alone()
{
    let emu = b24(invoice_portal());
    let r = act(&emu, INVOICE, invoice_request("101", "8"), &[]);
    ok_reply(&r);
    let inv = &invoices(&emu)[0];
    assert_eq!(
        (inv["PERSON_TYPE_ID"].clone(), inv["PAY_SYSTEM_ID"].clone()),
        (json!("2"), json!(2))
    );
    assert_eq!(
        inv["INVOICE_PROPERTIES"],
        json!({"COMPANY": "Лютик", "COMPANY_ADR": "Москва, ул. Лютиковая, 2",
            "PHONE": "+7 495 000-00-02", "EMAIL": "info@lutik.ru"})
    );
    assert!(inv.get("UF_CONTACT_ID").is_none());
    let links = requisite_links(&emu);
    assert_eq!(links.len(), 1);
    assert_eq!(
        (
            links[0]["REQUISITE_ID"].clone(),
            links[0]["BANK_DETAIL_ID"].clone(),
            links[0]["MC_REQUISITE_ID"].clone()
        ),
        (json!(0), json!(0), json!("13"))
    );
}

#[test]
fn an_invoice_for_a_contact_only_is_a_persons_invoice_and_a_wrong_seller_still_gives_one() {
    let emu = b24(invoice_portal());
    let r = act(&emu, INVOICE, invoice_request("102", "999"), &[]);
    ok_reply(&r);
    assert!(
        r.log_message
            .contains("Компания-продавец 999 не найдена: счёт без реквизитов продавца"),
        "{}",
        r.log_message
    );
    let inv = &invoices(&emu)[0];
    // A contact buyer: the person type and payment system for contacts.
    assert_eq!(
        (inv["PERSON_TYPE_ID"].clone(), inv["PAY_SYSTEM_ID"].clone()),
        (json!("1"), json!(1))
    );
    assert!(inv.get("UF_MYCOMPANY_ID").is_none() && inv.get("UF_COMPANY_ID").is_none());
    assert_eq!(
        inv["INVOICE_PROPERTIES"],
        json!({"FIO": "Зарудная Елена Викторовна", "ADDRESS": "125009, Москва, ул. Арбат, 3",
            "INN": "770400112233", "PHONE": "+7 926 222-22-22", "EMAIL": "elena@example.ru"})
    );
    let links = requisite_links(&emu);
    assert_eq!(
        (
            links[0]["REQUISITE_ID"].clone(),
            links[0]["MC_REQUISITE_ID"].clone(),
            links[0]["MC_BANK_DETAIL_ID"].clone()
        ),
        (json!("14"), json!(0), json!(0))
    );
}

#[test]
fn an_invoice_without_a_seller_or_any_requisite_links_nothing() {
    let emu = b24(invoice_portal());
    ok_reply(&act(&emu, INVOICE, invoice_request("101", ""), &[]));
    let inv = &invoices(&emu)[0];
    assert!(inv.get("UF_MYCOMPANY_ID").is_none());
    assert!(requisite_links(&emu).is_empty());
    assert_eq!(
        emu.calls("crm.company.get").len(),
        1,
        "the seller is not looked up"
    );
}

#[test]
fn refusals_create_nothing_and_answer_the_reason_with_an_empty_link_and_number() {
    let emu = b24(invoice_portal());
    for (deal, reason) in [
        ("555", "Сделка 555 не найдена"),
        ("103", "В сделке нет товаров: счёт не создан"),
        (
            "104",
            "В сделке не указаны ни компания, ни контакт: счёт не создан",
        ),
        ("", "Не заполнен обязательный параметр: ID сделки"),
    ] {
        let r = act(&emu, INVOICE, invoice_request(deal, "8"), &[]);
        assert_eq!(
            r.return_values,
            json!({"payment_link": "", "invoice_number": "", "error_text": reason}),
            "{r:?}"
        );
        assert!(r.log_message.contains(reason), "{}", r.log_message);
    }
    assert_eq!(emu.mutations("crm.invoice.add"), 0);
    assert!(emu.calls("crm.invoice.add").is_empty());
    assert!(invoices(&emu).is_empty());
}

#[test]
fn a_request_delivered_twice_makes_one_invoice_and_answers_it_both_times() {
    let emu = b24(invoice_portal());
    let s = Scratch::new();
    let req = request(&emu, &s, &invoice_request("100", "8"), "request.txt");
    answer(&emu, &s, INVOICE, &req, &[]);
    answer(&emu, &s, INVOICE, &req, &[]);
    let sends = emu.event_sends_for(&req.event_token);
    assert_eq!(sends.len(), 2);
    assert_eq!(sends[0].return_values, sends[1].return_values);
    ok_reply(&sends[1]);
    assert_eq!(invoices(&emu).len(), 1);
    assert_eq!(emu.mutations("crm.invoice.add"), 1);
    assert_eq!(requisite_links(&emu).len(), 2, "linking again is harmless");
}

#[test]
fn an_invoice_add_that_commits_then_answers_500_is_found_by_its_xml_id_not_made_twice() {
    let emu = b24(invoice_portal());
    emu.faults()
        .on_method("crm.invoice.add", Fault::WriteThenFail, 1);
    let r = act(&emu, INVOICE, invoice_request("100", "8"), &[]);
    let (number, _) = ok_reply(&r);
    let all = invoices(&emu);
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0]["ACCOUNT_NUMBER"], json!(number));
    assert!(all[0]["XML_ID"].as_str().unwrap().starts_with("b24etl:"));
    assert_eq!(emu.calls("crm.invoice.add").len(), 1);
}

#[test]
fn smart_mode_makes_a_new_invoice_with_the_same_rules() {
    let emu = b24(invoice_portal());
    // An invoice made earlier, by hand.
    emu.act(
        "crm.item.add",
        json!({"entityTypeId": 31, "fields": {"title": "Старый счёт", "companyId": 2}}),
    )
    .unwrap();
    let smart = [("settings.invoice_mode", "smart")];
    let s = Scratch::new();
    let req = request(&emu, &s, &invoice_request("100", "8"), "request.txt");
    emu.faults()
        .on_method("crm.item.add", Fault::WriteThenFail, 1);
    let out = answer(&emu, &s, INVOICE, &req, &smart);
    let (number, _) = ok_reply(&reply(&emu, &req, &out));
    answer(&emu, &s, INVOICE, &req, &smart);
    assert!(emu.calls("crm.invoice.add").is_empty());
    let ids = emu.with_portal(|p| p.ids("smart_invoice"));
    assert_eq!(
        ids.len(),
        2,
        "one new invoice despite the lost answer and the second delivery"
    );
    let ids = &ids[1..];
    let item = emu
        .act("crm.item.get", json!({"entityTypeId": 31, "id": ids[0]}))
        .unwrap()["item"]
        .clone();
    assert_eq!(item["accountNumber"], json!(number));
    assert_eq!(
        (
            item["companyId"].clone(),
            item["contactId"].clone(),
            item["mycompanyId"].clone(),
            item["parentId2"].clone()
        ),
        (json!(1), json!(10), json!(8), json!(100))
    );
    let rows = item["productRows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[0]["productName"].clone(), rows[0]["price"].clone()),
        (json!("Доска шахматная"), json!(1500.0))
    );
    let links = requisite_links(&emu);
    assert_eq!(
        (
            links[0]["ENTITY_TYPE_ID"].clone(),
            links[0]["REQUISITE_ID"].clone()
        ),
        (json!(31), json!("11"))
    );
}

// ---------------------------------------------------------------------------------------------
// SMTP

const PASSWORD: &str = "Mailbox-pa55-for-bp";

fn smtp_request(server: &SmtpServer, security: &str, extra: Value) -> Workflow {
    let mut props = json!({
        "to": ["ivan@example.ru:Иван Петров, не-адрес", "maria@example.ru"],
        "cc": ["boss@example.ru:Начальник"],
        "bcc": ["audit@example.ru"],
        "subject": "Счёт №5",
        "body": "<p>Здравствуйте!</p>",
        "body_type": "html",
        "attachments": [],
        "smtp_host": "127.0.0.1",
        "smtp_security": security,
        "smtp_port": server.port.to_string(),
        "from": "robot@example.ru : Робот",
        "smtp_auth": "Y",
        "smtp_login": "robot",
        "smtp_password": PASSWORD,
    });
    props
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    Workflow::new("b24etl_smtp_send", "DEAL_1").with_properties(props)
}

fn tls_server(s: &Scratch, tls: &'static str) -> (SmtpServer, PathBuf) {
    let certs = make_certs(s.dir.path());
    let ca = certs.ca_cert.clone();
    let server = SmtpServer::start(
        s.dir.path(),
        Options {
            tls: Some(tls),
            certs: Some(certs),
            login: Some(format!("robot:{PASSWORD}")),
            ..Default::default()
        },
    );
    (server, ca)
}

/// Nothing the run printed or left, nor what the portal received, holds the password.
fn assert_no_password(emu: &BackgroundEmulator, s: &Scratch, out: &Output) {
    let mut texts = vec![stdout(out), stderr(out)];
    for f in ["state.db", "state.db-wal"] {
        if let Ok(t) = std::fs::read(s.path(f)) {
            texts.push(String::from_utf8_lossy(&t).into_owned());
        }
    }
    texts.push(format!("{:?}", emu.event_sends()));
    for t in texts {
        assert!(!t.contains(PASSWORD), "the password is in {t}");
    }
}

#[test]
fn a_mail_over_implicit_tls_with_login_goes_to_to_cc_and_bcc_with_drive_and_url_attachments_and_names_what_it_skipped()
 {
    let s = Scratch::new();
    let (server, ca) = tls_server(&s, "smtps");
    let emu = b24(Portal::demo());
    let files = file_server(
        "text/plain",
        vec![("price%20list.txt", b"URL file".to_vec())],
    );
    let wf = smtp_request(
        &server,
        "ssl",
        json!({"attachments": ["1", "2", format!("http://127.0.0.1:{files}/files/price%20list.txt")]}),
    );
    let req = request(&emu, &s, &wf, "request.txt");
    let out = answer(
        &emu,
        &s,
        "smtp_send.yaml",
        &req,
        &[("SSL_CERT_FILE", ca.to_str().unwrap())],
    );
    let r = reply(&emu, &req, &out);
    assert_eq!(r.return_values, json!({"result": "OK"}), "{r:?}");
    assert!(
        r.log_message
            .starts_with("Письмо отправлено: 4 получателей"),
        "{}",
        r.log_message
    );
    assert!(r.log_message.contains("не-адрес"), "{}", r.log_message);
    assert!(
        r.log_message.contains("2 (файл Диска недоступен)"),
        "{}",
        r.log_message
    );
    let mails = server.messages();
    assert_eq!(mails.len(), 1);
    // Bcc: in the envelope (the server's X-RcptTo), in no header the recipients see.
    let raw = server.raw_messages()[0].clone();
    let parsed = mailparse::parse_mail(&raw).unwrap();
    for h in &parsed.headers {
        let (k, v) = (h.get_key(), h.get_value());
        if k == "X-RcptTo" {
            assert!(
                v.contains("audit@example.ru") && v.contains("boss@example.ru"),
                "{v}"
            );
        } else {
            assert!(
                !k.eq_ignore_ascii_case("bcc") && !v.contains("audit@example.ru"),
                "{k}: {v}"
            );
        }
    }
    let names: Vec<&str> = mails[0].attachments.iter().map(|a| a.0.as_str()).collect();
    assert_eq!(names, vec!["price list.txt", "Прайс.txt"], "{names:?}");
    assert_no_password(&emu, &s, &out);
}

#[test]
fn a_wrong_password_over_starttls_is_an_error_with_the_servers_reason() {
    let s = Scratch::new();
    let (server, ca) = tls_server(&s, "starttls");
    let emu = b24(Portal::demo());
    let wf = smtp_request(
        &server,
        "tls",
        json!({"smtp_port": server.port.to_string(), "smtp_password": "Not-the-pa55word"}),
    );
    let req = request(&emu, &s, &wf, "request.txt");
    let out = answer(
        &emu,
        &s,
        "smtp_send.yaml",
        &req,
        &[("SSL_CERT_FILE", ca.to_str().unwrap())],
    );
    let r = reply(&emu, &req, &out);
    assert_eq!(r.return_values, json!({"result": "ERROR"}), "{r:?}");
    assert!(
        r.log_message.starts_with("Письмо не отправлено: "),
        "{}",
        r.log_message
    );
    assert!(r.log_message.contains("535"), "{}", r.log_message);
    assert!(server.messages().is_empty());
    assert!(!r.log_message.contains("Not-the-pa55word"));
}

#[test]
fn a_mail_without_a_single_valid_recipient_is_an_error_and_plain_smtp_without_auth_works() {
    let s = Scratch::new();
    let server = SmtpServer::start(s.dir.path(), Options::default());
    let emu = b24(Portal::demo());
    let bad = smtp_request(
        &server,
        "none",
        json!({"to": ["никому"], "cc": [], "bcc": [], "smtp_auth": "N"}),
    );
    let r = act(&emu, "smtp_send.yaml", bad, &[]);
    assert_eq!(r.return_values, json!({"result": "ERROR"}));
    assert!(
        r.log_message
            .contains("Нет ни одного допустимого получателя"),
        "{}",
        r.log_message
    );
    let good = smtp_request(
        &server,
        "none",
        json!({"body_type": "text", "smtp_auth": "N"}),
    );
    let r = act(&emu, "smtp_send.yaml", good, &[]);
    assert_eq!(r.return_values, json!({"result": "OK"}), "{r:?}");
    assert_eq!(server.messages().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Callback

fn callback(phone: &str, line: &str) -> Workflow {
    Workflow::new("b24etl_callback", "DEAL_1")
        .with_properties(json!({"phone": phone, "line": line, "text": "Клиент просит перезвонить"}))
}

#[test]
fn a_callback_starts_from_the_chosen_line_and_logs_its_call_id() {
    let emu = b24(Portal::demo());
    let r = act(
        &emu,
        "callback.yaml",
        callback("+7 (900) 123-45-67, +7 900 000-00-00", "reg151083"),
        &[],
    );
    assert_eq!(r.return_values, json!({"result": "OK"}), "{r:?}");
    let started = emu.with_portal(|p| p.get("voximplant_callback", 1).unwrap());
    assert_eq!(started["FROM_LINE"], "reg151083");
    assert_eq!(started["TO_NUMBER"], "+7 (900) 123-45-67");
    let call_id = started["CALL_ID"].as_str().unwrap();
    assert!(
        r.log_message.contains(&format!("CALL_ID {call_id}")),
        "{}",
        r.log_message
    );
}

#[test]
fn a_refused_callback_is_an_error_with_bitrix24s_reason() {
    let emu = b24(Portal::demo());
    for (phone, line, reason) in [
        ("+79001234567", "nope", "Could not find line nope"),
        ("12", "sip7", "Phone number is not correct"),
    ] {
        let r = act(&emu, "callback.yaml", callback(phone, line), &[]);
        assert_eq!(r.return_values, json!({"result": "ERROR"}));
        assert_eq!(
            r.log_message,
            format!("Обратный звонок не выполнен: {reason}")
        );
    }
    assert_eq!(emu.with_portal(|p| p.len("voximplant_callback")), 0);
}

#[test]
fn the_five_actions_register_with_the_line_options_read_from_voximplant() {
    let emu = b24(Portal::demo());
    let s = Scratch::new();
    let mut cmd = etl();
    cmd.args(["activities", "sync"]);
    for name in [
        "booking_info",
        "booking_rename",
        "callback",
        "invoice_from_deal",
        "smtp_send",
    ] {
        cmd.arg(root().join(format!("pipelines/bp/{name}.yaml")));
    }
    cmd.args(["--handler-base", "https://etl.example.ru", "--state"])
        .arg(s.state())
        .env_remove("B24_WEBHOOK_URL");
    for (k, v) in emu.app_vars() {
        cmd.env(k, v);
    }
    let out = run(&mut cmd);
    assert_success(&out);
    let registered = emu.registered_activities();
    assert_eq!(registered.len(), 5);
    let by_code = |code: &str| {
        registered
            .iter()
            .find(|a| a.code == code)
            .unwrap_or_else(|| panic!("{code} not registered"))
            .fields
            .clone()
    };
    let line = &by_code("b24etl_callback")["PROPERTIES"]["line"];
    assert_eq!(
        line.get("OPTIONS")
            .or_else(|| line.get("Options"))
            .cloned()
            .unwrap_or_default(),
        json!({"reg151083": "Облачная АТС (9)", "sip7": "Офисная АТС"})
    );
    assert_eq!(emu.calls("voximplant.line.get").len(), 1);
    let invoice = by_code("b24etl_invoice_from_deal");
    assert_eq!(
        invoice["HANDLER"],
        "https://etl.example.ru/bp/b24etl_invoice_from_deal"
    );
    assert!(invoice["RETURN_PROPERTIES"]["error_text"].is_object());
    let smtp = by_code("b24etl_smtp_send");
    assert!(smtp["PROPERTIES"]["smtp_password"].is_object());
    assert!(
        smtp["PROPERTIES"]["to"].to_string().contains("\"Y\""),
        "{}",
        smtp["PROPERTIES"]["to"]
    );
}

// ---------------------------------------------------------------------------------------------
// Resource bookings (demo: booking 301 = resource 1 «Переговорная», users 932 and 10390, of
// whom only 10390 lets user 1 edit his calendar; booking 302 = resource 2, no users)

fn booking(code: &str, value: Value, extra: Value) -> Workflow {
    let mut props = json!({"booking": value});
    props
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    Workflow::new(code, "DEAL_1").with_properties(props)
}

#[test]
fn booking_info_answers_resources_users_times_and_service() {
    let emu = b24(Portal::demo());
    let r = act(
        &emu,
        "booking_info.yaml",
        booking("b24etl_booking_info", json!(["301"]), json!({})),
        &[],
    );
    assert_eq!(
        r.return_values,
        json!({"resource_names": ["Переговорная"], "resource_ids": [1], "users": ["user_932", "user_10390"],
            "date_from": "2024-06-11T10:00:00", "date_to": "2024-06-11T11:30:00", "service_name": "Пробное занятие"}),
        "{r:?}"
    );
    assert!(
        r.log_message.contains("Бронирование 301"),
        "{}",
        r.log_message
    );
}

#[test]
fn booking_info_without_an_id_or_a_booking_answers_empty_values_and_the_reason() {
    let emu = b24(Portal::demo());
    for (value, reason) in [
        (json!(["нет"]), "нет ID бронирования"),
        (json!(["999"]), "Бронирование 999 не найдено"),
    ] {
        let r = act(
            &emu,
            "booking_info.yaml",
            booking("b24etl_booking_info", value, json!({})),
            &[],
        );
        assert_eq!(
            r.return_values,
            json!({"resource_names": [], "resource_ids": [], "users": [], "date_from": "", "date_to": "", "service_name": ""})
        );
        assert!(r.log_message.contains(reason), "{}", r.log_message);
    }
}

#[test]
fn booking_rename_renames_who_it_may_and_names_each_user_it_could_not() {
    let emu = b24(Portal::demo());
    let long = "Пробное занятие ".repeat(20);
    let r = act(
        &emu,
        "booking_rename.yaml",
        booking(
            "b24etl_booking_rename",
            json!(["301"]),
            json!({"name": long, "description": "Зал 2"}),
        ),
        &[],
    );
    assert_eq!(r.return_values, json!({"result": "ERROR"}), "{r:?}");
    assert!(
        r.log_message.contains("пользователь 932"),
        "{}",
        r.log_message
    );
    assert!(!r.log_message.contains("10390 ("), "{}", r.log_message);
    assert!(
        r.log_message.contains("сокращено до 255"),
        "{}",
        r.log_message
    );
    let (renamed, kept) = emu.with_portal(|p| {
        (
            p.get("calendar_event", 4003).unwrap(),
            p.get("calendar_event", 4002).unwrap(),
        )
    });
    let want: String = long.chars().take(255).collect();
    assert_eq!(renamed["NAME"], json!(want));
    assert_eq!(renamed["DESCRIPTION"], "Зал 2");
    assert_eq!(kept["NAME"], "Бронирование");
    let sent: Vec<usize> = emu
        .calls("calendar.event.update")
        .iter()
        .map(|c| c.params["name"].as_str().unwrap().chars().count())
        .collect();
    assert_eq!(sent, vec![255, 255]);
    // Resource events are not renamed.
    assert_eq!(
        emu.with_portal(|p| p.get("calendar_event", 4001).unwrap())["NAME"],
        "Бронирование: Переговорная"
    );
}

#[test]
fn booking_rename_is_ok_when_every_user_is_renamed_or_there_is_none() {
    let emu = b24(Portal::demo());
    emu.with_portal(|p| {
        let mut section = p.get("calendar_section", 932).unwrap();
        section.insert("EDITORS".into(), json!([1]));
        p.insert("calendar_section", section);
    });
    let r = act(
        &emu,
        "booking_rename.yaml",
        booking(
            "b24etl_booking_rename",
            json!("301"),
            json!({"name": "Урок"}),
        ),
        &[],
    );
    assert_eq!(r.return_values, json!({"result": "OK"}), "{r:?}");
    for id in [4002, 4003] {
        assert_eq!(
            emu.with_portal(|p| p.get("calendar_event", id).unwrap())["NAME"],
            "Урок"
        );
    }
    let r = act(
        &emu,
        "booking_rename.yaml",
        booking(
            "b24etl_booking_rename",
            json!(["302"]),
            json!({"name": "Урок"}),
        ),
        &[],
    );
    assert_eq!(r.return_values, json!({"result": "OK"}));
    assert!(
        r.log_message.contains("В бронировании нет пользователей"),
        "{}",
        r.log_message
    );
}

#[test]
fn a_refused_requisite_link_is_logged_and_the_invoice_still_answered() {
    let emu = b24(invoice_portal());
    emu.faults().on_method(
        "crm.requisite.link.register",
        Fault::Status {
            status: 400,
            content_type: "application/json".into(),
            body: r#"{"error":"","error_description":"The requisite with ID '11' is not found."}"#
                .into(),
        },
        1,
    );
    let r = act(&emu, INVOICE, invoice_request("100", "8"), &[]);
    ok_reply(&r);
    assert!(
        r.log_message.contains("Реквизиты не привязаны"),
        "{}",
        r.log_message
    );
    assert_eq!(invoices(&emu).len(), 1);
}

#[test]
fn an_unreachable_server_or_an_untrusted_certificate_is_an_error_with_the_reason() {
    let s = Scratch::new();
    let (server, _ca) = tls_server(&s, "smtps");
    let emu = b24(Portal::demo());
    // No SSL_CERT_FILE: the test CA is not trusted.
    let r = act(
        &emu,
        "smtp_send.yaml",
        smtp_request(&server, "ssl", json!({})),
        &[],
    );
    assert_eq!(r.return_values, json!({"result": "ERROR"}), "{r:?}");
    assert!(
        r.log_message.starts_with("Письмо не отправлено: "),
        "{}",
        r.log_message
    );
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let wf = smtp_request(
        &server,
        "none",
        json!({"smtp_port": closed.to_string(), "smtp_auth": "N"}),
    );
    let r = act(&emu, "smtp_send.yaml", wf, &[]);
    assert_eq!(r.return_values, json!({"result": "ERROR"}), "{r:?}");
    assert!(
        r.log_message.len() > "Письмо не отправлено: ".len(),
        "{}",
        r.log_message
    );
    assert!(server.messages().is_empty());
}

#[test]
fn through_etl_serve_an_invoice_request_delivered_twice_is_answered_once_with_one_invoice() {
    let emu = b24(invoice_portal());
    let s = Scratch::new();
    for name in [
        "invoice_from_deal",
        "smtp_send",
        "callback",
        "booking_info",
        "booking_rename",
    ] {
        let text =
            std::fs::read_to_string(root().join(format!("pipelines/bp/{name}.yaml"))).unwrap();
        s.write(&format!("pipelines/bp/{name}.yaml"), &text);
    }
    let server = crate::bp_serve::serve_bp(
        &emu,
        &s.path("pipelines"),
        &s.state(),
        &s.path("journal.jsonl"),
        &[],
    );
    let url = server.url("b24etl_invoice_from_deal");
    let req = emu.prepare_workflow(&invoice_request("100", "8"));
    for _ in 0..2 {
        let status = emulators::bitrix24::workflow::post_form(&url, &req.body()).unwrap();
        assert_eq!(status, 200);
    }
    // A later request: once it is answered, the duplicate before it has been dealt with.
    let later = emu.prepare_workflow(&invoice_request("102", ""));
    assert_eq!(
        emulators::bitrix24::workflow::post_form(&url, &later.body()).unwrap(),
        200
    );
    crate::bp_serve::wait_until("the replies", || {
        !emu.event_sends_for(&req.event_token).is_empty()
            && !emu.event_sends_for(&later.event_token).is_empty()
    });
    let sends = emu.event_sends_for(&req.event_token);
    assert_eq!(sends.len(), 1, "{sends:?}");
    ok_reply(&sends[0]);
    assert_eq!(invoices(&emu).len(), 2, "one for each event");
    assert_eq!(emu.calls("crm.invoice.add").len(), 2);
}
