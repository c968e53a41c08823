//! The generic pieces business-process actions are built from, through the real `etl run`
//! against the emulated portal over its webhook: `bitrix24.call` with `when`, `optional`,
//! `error` and `for_each`; `bitrix24.write` with refusals, unknown outcomes, idempotency lookups
//! and dry runs; the input filters (`b24_id`, `fields_from`, `multifield_add`) on values as a
//! business process sends them.

use emulators::bitrix24::{BackgroundEmulator, Fault, Portal};
use serde_json::{Value, json};

use crate::harness::*;

const CONNECTION: &str = r#"connections:
  b24: {type: bitrix24, webhook_url: "${env:B24_WEBHOOK_URL}"}
"#;

/// A pipeline reading `requests` (one JSON object per line, as `source`) through `steps`, writing
/// `output` (a template) per record to out.jsonl.
fn pipeline(
    s: &Scratch,
    requests: &[Value],
    extra: &str,
    steps: &str,
    output: &str,
) -> std::path::PathBuf {
    let lines: String = requests.iter().map(|r| format!("{r}\n")).collect();
    s.write("requests.jsonl", &lines);
    s.write(
        "p.yaml",
        &format!(
            "name: bp\n{extra}{CONNECTION}source: {{type: jsonl, path: \"{requests}\", key: $.key}}\nsteps:\n{steps}sinks:\n  - type: jsonl\n    path: \"{out}\"\n    value: {output}\n",
            requests = s.path("requests.jsonl").display(),
            out = s.path("out.jsonl").display(),
        ),
    )
}

/// Run it with a journal; returns the journal's records by key, and the output rows.
fn run_ok(s: &Scratch, p: &std::path::Path, emu: &BackgroundEmulator) -> (Value, Vec<Value>) {
    let out = run(etl_run(p, &s.state(), Some(emu), None)
        .arg("--journal")
        .arg(s.path("j.json")));
    assert_success(&out);
    let journal = read_json(&s.path("j.json"));
    let rows = if s.path("out.jsonl").exists() {
        read_jsonl(&s.path("out.jsonl"))
    } else {
        vec![]
    };
    (journal, rows)
}

fn record<'a>(journal: &'a Value, key: &str) -> &'a Value {
    journal["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == key)
        .unwrap_or_else(|| panic!("no record {key} in {journal}"))
}

fn contacts() -> Portal {
    let mut portal = Portal::new();
    portal.insert("contact", row(json!({"ID": "3", "NAME": "Иван", "COMMENTS": "keep me", "PHONE": [{"ID": "31", "VALUE": "+7 926 123-45-67", "VALUE_TYPE": "WORK", "TYPE_ID": "PHONE"}]})));
    portal.insert(
        "contact",
        row(json!({"ID": "4", "NAME": "Мария", "COMMENTS": "keep me too"})),
    );
    portal
}

const CONTACT_FIELDS: &str =
    "settings:\n  contact_fields: {name: NAME, comments: COMMENTS, post: POST}\n";

#[test]
fn an_update_from_business_process_inputs_sends_only_given_fields_and_new_phones() {
    let emu = b24(contacts());
    let s = Scratch::new();
    let requests = [
        json!({"key": "a", "contact_id": "CONTACT_3", "name": "Иван Петров", "comments": "", "post": " ", "phone": "8 (926) 123-45-67, +7 900 111-22-33"}),
        json!({"key": "b", "contact_id": "[4] Мария", "name": "", "comments": "", "post": "", "phone": ""}),
        json!({"key": "c", "contact_id": "999", "name": "X", "comments": "", "post": "", "phone": ""}),
        json!({"key": "d", "contact_id": "нет", "name": "X", "comments": "", "post": "", "phone": ""}),
    ];
    let steps = r#"  - type: map
    fields:
      id: {value: "{{ source.contact_id | b24_id }}", required: true}
      fields: "{{ source | fields_from(settings.contact_fields) }}"
      phones: "{{ source.phone }}"
  - type: bitrix24.call
    id: contact
    connection: b24
    method: crm.contact.get
    params: {id: "{{ record.id }}"}
    error: "Контакт {{ record.id }} не найден: {{ error }}"
  - type: bitrix24.write
    id: updated
    when: "{{ record.fields | length > 0 or record.phones | b24_list | length > 0 }}"
    connection: b24
    method: crm.contact.update
    params:
      id: "{{ record.id }}"
      fields:
        NAME: "{{ record.fields.NAME }}"
        COMMENTS: "{{ record.fields.COMMENTS }}"
        PHONE: "{{ steps.contact.PHONE | multifield_add(record.phones, 'phone') or none }}"
"#;
    let p = pipeline(
        &s,
        &requests,
        CONTACT_FIELDS,
        steps,
        "\"{{ {'id': record.id, 'updated': steps.updated} }}\"",
    );
    let (journal, rows) = run_ok(&s, &p, &emu);
    assert_eq!(
        journal["counts"],
        json!({"ok": 2, "skipped": 0, "failed": 2})
    );
    assert_eq!(
        rows,
        vec![
            json!({"id": 3, "updated": true}),
            json!({"id": 4, "updated": null})
        ]
    );
    assert_eq!(
        record(&journal, "c")["reason"],
        "Контакт 999 не найден: Not found"
    );
    assert!(
        record(&journal, "d")["reason"]
            .as_str()
            .unwrap()
            .contains("required"),
        "{journal}"
    );
    // One update, for contact 3 only: the empty inputs and the phone already there are not sent.
    let updates = emu.calls("crm.contact.update");
    assert_eq!(updates.len(), 1, "{updates:?}");
    assert_eq!(
        updates[0].params["fields"],
        json!({"NAME": "Иван Петров", "PHONE": [{"VALUE": "+7 900 111-22-33", "VALUE_TYPE": "WORK"}]})
    );
    let contact = emu.with_portal(|p| p.get("contact", 3).unwrap());
    assert_eq!(
        contact["COMMENTS"], "keep me",
        "an empty input clears nothing"
    );
    let phones: Vec<&str> = contact["PHONE"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["VALUE"].as_str().unwrap())
        .collect();
    assert_eq!(phones, ["+7 926 123-45-67", "+7 900 111-22-33"]);
    assert_eq!(
        emu.with_portal(|p| p.get("contact", 4).unwrap())["NAME"],
        "Мария"
    );
}

#[test]
fn a_refused_write_fails_its_record_with_the_portals_words_unless_optional() {
    let emu = b24(contacts());
    let s = Scratch::new();
    let requests = [
        json!({"key": "strict-missing", "id": "998", "lenient": false}),
        json!({"key": "lenient-missing", "id": "999", "lenient": true}),
        json!({"key": "strict-found", "id": "3", "lenient": false}),
        json!({"key": "templated", "id": "997", "lenient": false, "explain": true}),
    ];
    let steps = r#"  - type: bitrix24.write
    id: strict
    when: "{{ not source.lenient and not source.explain }}"
    connection: b24
    method: crm.contact.update
    params: {id: "{{ source.id }}", fields: {POST: "{{ source.key }}"}}
  - type: bitrix24.write
    id: lenient
    when: "{{ source.lenient }}"
    optional: true
    connection: b24
    method: crm.contact.update
    params: {id: "{{ source.id }}", fields: {POST: "{{ source.key }}"}}
  - type: bitrix24.write
    id: explained
    when: "{{ source.explain }}"
    error: "Контакт не изменён: {{ error }}"
    connection: b24
    method: crm.contact.update
    params: {id: "{{ source.id }}", fields: {POST: "{{ source.key }}"}}
"#;
    let p = pipeline(
        &s,
        &requests,
        "",
        steps,
        "\"{{ {'key': source.key, 'strict': steps.strict, 'lenient': steps.lenient} }}\"",
    );
    let (journal, rows) = run_ok(&s, &p, &emu);
    assert_eq!(
        journal["counts"],
        json!({"ok": 2, "skipped": 0, "failed": 2})
    );
    assert_eq!(
        record(&journal, "strict-missing")["reason"],
        "Contact is not found"
    );
    assert_eq!(
        record(&journal, "templated")["reason"],
        "Контакт не изменён: Contact is not found"
    );
    assert_eq!(
        rows,
        vec![
            json!({"key": "lenient-missing", "strict": null, "lenient": null}),
            json!({"key": "strict-found", "strict": true, "lenient": null}),
        ]
    );
    // Each record made exactly the one call its `when` chose, each a request of its own.
    assert_eq!(emu.requests("crm.contact.update"), 4);
    assert_eq!(emu.requests("batch"), 0, "writes are not batched");
    assert_eq!(
        emu.with_portal(|p| p.get("contact", 3).unwrap())["POST"],
        "strict-found"
    );
}

fn deals() -> Portal {
    let mut portal = Portal::new();
    for d in 1..=3u64 {
        portal.insert(
            "deal",
            row(json!({"ID": d.to_string(), "TITLE": format!("deal {d}"), "ASSIGNED_BY_ID": "1"})),
        );
    }
    for u in 1..=2u64 {
        portal.insert("user", row(json!({"ID": u.to_string(), "ACTIVE": true, "NAME": format!("U{u}"), "LAST_NAME": "X"})));
    }
    portal
}

#[test]
fn for_each_makes_one_batched_call_per_element_and_keeps_their_order() {
    let emu = b24(deals());
    let s = Scratch::new();
    let requests = [
        json!({"key": "a", "users": "user_2, user_1; user_2", "deals": ["3", "77", "1"]}),
        json!({"key": "b", "users": "", "deals": []}),
        json!({"key": "c", "users": "[1] U1", "deals": ["2"], "skip_deals": true}),
    ];
    let steps = r#"  - type: bitrix24.call
    id: users
    connection: b24
    method: user.get
    for_each: "{{ source.users | b24_list }}"
    params: {ID: "{{ item | b24_id }}"}
    result: $[0]
  - type: bitrix24.call
    id: rows
    when: "{{ not source.skip_deals }}"
    connection: b24
    method: crm.deal.productrows.get
    for_each: "{{ source.deals }}"
    optional: true
    params: {id: "{{ item }}"}
"#;
    let p = pipeline(
        &s,
        &requests,
        "",
        steps,
        "\"{{ {'users': steps.users | map(attribute='NAME') | list, 'rows': steps.rows} }}\"",
    );
    let (journal, rows) = run_ok(&s, &p, &emu);
    assert_eq!(journal["counts"]["ok"], 3, "{journal}");
    assert_eq!(
        rows,
        vec![
            json!({"users": ["U2", "U1", "U2"], "rows": [[], null, []]}),
            json!({"users": [], "rows": []}),
            json!({"users": ["U1"], "rows": null}),
        ]
    );
    // Distinct calls only, packed into batches: two users, three deals.
    assert_eq!(emu.requests("user.get"), 2);
    assert_eq!(emu.requests("crm.deal.productrows.get"), 3);
    assert_eq!(
        emu.requests("batch"),
        2,
        "one batch per step for the whole run"
    );
}

#[test]
fn a_refused_call_in_a_for_each_fails_the_record_with_the_error_template() {
    let emu = b24(deals());
    let s = Scratch::new();
    let requests = [json!({"key": "a", "deals": ["1", "55"]})];
    let steps = r#"  - type: bitrix24.call
    id: rows
    connection: b24
    method: crm.deal.productrows.get
    for_each: "{{ source.deals }}"
    params: {id: "{{ item }}"}
    error: "Сделка {{ item }}: {{ error }}"
"#;
    let p = pipeline(&s, &requests, "", steps, "\"{{ steps.rows }}\"");
    let (journal, rows) = run_ok(&s, &p, &emu);
    assert!(rows.is_empty());
    assert_eq!(record(&journal, "a")["reason"], "Сделка 55: Not found");
}

/// Contacts created once per request, found again by ORIGIN_ID.
fn create_steps(idempotent: bool) -> String {
    let lookup = if idempotent {
        r#"    idempotency:
      lookup:
        method: crm.contact.list
        params: {filter: {ORIGIN_ID: "{{ source.key | sha256 }}"}, select: [ID]}
        result: $[0].ID
"#
    } else {
        ""
    };
    format!(
        r#"  - type: bitrix24.write
    id: created
    connection: b24
    method: crm.contact.add
    params:
      fields: {{NAME: "{{{{ source.name }}}}", ORIGIN_ID: "{{{{ source.key | sha256 }}}}"}}
{lookup}"#
    )
}

fn created_ids(emu: &BackgroundEmulator, name: &str) -> Vec<String> {
    emu.with_portal(|p| {
        (1..=20u64)
            .filter_map(|id| p.get("contact", id))
            .filter(|c| c["NAME"] == name)
            .map(|c| c["ID"].as_str().unwrap().to_string())
            .collect()
    })
}

#[test]
fn a_write_whose_answer_is_lost_is_found_by_its_lookup_not_made_twice() {
    let emu = b24(contacts());
    emu.faults()
        .on_method("crm.contact.add", Fault::WriteThenFail, 1);
    let s = Scratch::new();
    let p = pipeline(
        &s,
        &[json!({"key": "ev1", "name": "Новый"})],
        "",
        &create_steps(true),
        "\"{{ {'created': steps.created} }}\"",
    );
    let (journal, rows) = run_ok(&s, &p, &emu);
    assert_eq!(journal["counts"]["ok"], 1, "{journal}");
    let made = created_ids(&emu, "Новый");
    assert_eq!(made.len(), 1, "created once");
    assert_eq!(emu.mutations("crm.contact.add"), 1);
    assert_eq!(emu.requests("crm.contact.list"), 1, "looked up once");
    assert_eq!(rows, vec![json!({"created": made[0]})]);
}

#[test]
fn a_lost_write_that_did_not_happen_is_made_again_after_the_lookup_finds_nothing() {
    let emu = b24(contacts());
    emu.faults()
        .on_method("crm.contact.add", Fault::HtmlBadGateway, 1);
    let s = Scratch::new();
    let p = pipeline(
        &s,
        &[json!({"key": "ev2", "name": "Другой"})],
        "",
        &create_steps(true),
        "\"{{ {'created': steps.created} }}\"",
    );
    let (_, rows) = run_ok(&s, &p, &emu);
    let made = created_ids(&emu, "Другой");
    assert_eq!(made.len(), 1);
    assert_eq!(
        emu.requests("crm.contact.add"),
        2,
        "sent, looked up, sent again"
    );
    assert_eq!(emu.requests("crm.contact.list"), 1);
    assert_eq!(
        rows,
        vec![json!({"created": made[0].parse::<u64>().unwrap()})]
    );
}

#[test]
fn without_a_lookup_an_unknown_outcome_fails_the_record_and_is_not_repeated() {
    let emu = b24(contacts());
    emu.faults()
        .on_method("crm.contact.add", Fault::WriteThenFail, 1);
    let s = Scratch::new();
    let requests = [
        json!({"key": "ev3", "name": "Третий"}),
        json!({"key": "ev4", "name": "Четвёртый"}),
    ];
    let p = pipeline(
        &s,
        &requests,
        "",
        &create_steps(false),
        "\"{{ steps.created }}\"",
    );
    let (journal, rows) = run_ok(&s, &p, &emu);
    assert_eq!(
        journal["counts"],
        json!({"ok": 1, "skipped": 0, "failed": 1})
    );
    let reason = record(&journal, "ev3")["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.contains("outcome is unknown"), "{reason}");
    assert_eq!(
        emu.requests("crm.contact.add"),
        2,
        "one per record, none repeated"
    );
    assert_eq!(created_ids(&emu, "Третий").len(), 1, "it did happen, once");
    assert_eq!(rows.len(), 1);
}

#[test]
fn an_unavailable_portal_ends_the_run() {
    let emu = b24(contacts());
    emu.faults()
        .on_method("crm.contact.update", Fault::OverloadLimit, 1);
    let s = Scratch::new();
    let steps = r#"  - type: bitrix24.write
    connection: b24
    method: crm.contact.update
    params: {id: 3, fields: {POST: x}}
"#;
    let p = pipeline(
        &s,
        &[json!({"key": "a"}), json!({"key": "b"})],
        "",
        steps,
        "\"{{ source }}\"",
    );
    let out = run(&mut etl_run(&p, &s.state(), Some(&emu), None));
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(said.contains("OVERLOAD_LIMIT"), "{said}");
    assert_eq!(
        emu.requests("crm.contact.update"),
        1,
        "nothing after the failure"
    );
}

#[test]
fn a_dry_run_prints_each_write_and_makes_none() {
    let emu = b24(contacts());
    let s = Scratch::new();
    let steps = r#"  - type: bitrix24.write
    id: updated
    connection: b24
    method: crm.contact.update
    params: {id: "{{ source.id }}", fields: {POST: "{{ source.post }}", COMMENTS: "{{ source.none }}"}}
"#;
    let requests = [
        json!({"key": "a", "id": 3, "post": "CEO"}),
        json!({"key": "b", "id": 4, "post": "CTO"}),
    ];
    let p = pipeline(&s, &requests, "", steps, "\"{{ source }}\"");
    let out = run(etl_run(&p, &s.state(), Some(&emu), None).arg("--dry-run"));
    assert_success(&out);
    let text = stdout(&out);
    assert!(
        text.contains(r#"[dry-run] updated (bitrix24.write): crm.contact.update {"id":3,"fields":{"POST":"CEO"}}"#),
        "{text}"
    );
    assert!(
        text.contains(r#"{"id":4,"fields":{"POST":"CTO"}}"#),
        "{text}"
    );
    assert_eq!(emu.requests("crm.contact.update"), 0);
    assert!(!text.contains("b24emulator0code") && !stderr(&out).contains("b24emulator0code"));
}

#[test]
fn item_outside_for_each_is_refused_when_the_pipeline_loads() {
    let s = Scratch::new();
    let steps = r#"  - type: bitrix24.call
    id: x
    connection: b24
    method: user.get
    params: {ID: "{{ item }}"}
"#;
    let p = pipeline(&s, &[json!({"key": "a"})], "", steps, "\"{{ source }}\"");
    let out = run(etl()
        .arg("validate")
        .arg(&p)
        .env("B24_WEBHOOK_URL", "https://x.bitrix24.ru/rest/1/abc/"));
    assert_ne!(out.status.code(), Some(0));
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(said.contains("only a call with `for_each`"), "{said}");
}
