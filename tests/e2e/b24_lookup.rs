//! `bitrix24.lookup`: rows for many records with one list command per group of keys, filed back
//! under each record by a field of the row; refusals per command; parameters that cannot depend
//! on the record.

use emulators::bitrix24::generate::product_row;
use emulators::bitrix24::{Fault, Portal};
use emulators::kit::{FaultRule, Scope};
use serde_json::{Value, json};

use crate::harness::*;

/// Deals 1..=6; deal 2 has two product rows, deal 5 none.
fn portal() -> Portal {
    let mut p = Portal::new();
    for d in 1..=6u64 {
        p.insert(
            "deal",
            row(json!({"ID": d.to_string(), "TITLE": "d", "STAGE_ID": "WON"})),
        );
        if d != 5 {
            p.add_product_row(d, product_row(d as usize, 10));
        }
    }
    p.add_product_row(2, product_row(0, 20));
    p
}

fn pipeline(s: &Scratch, lookup: &str) -> std::path::PathBuf {
    s.write(
        "lookup.yaml",
        &format!(
            r#"name: lookup
connections:
  b24: {{type: bitrix24, webhook_url: "${{env:B24_WEBHOOK_URL}}"}}
source: {{type: bitrix24.list, connection: b24, method: crm.deal.list, select: [ID]}}
steps:
  - type: bitrix24.lookup
    id: rows
    connection: b24
    method: crm.item.productrow.list
    key: "{{{{ source.ID }}}}"
    rows: $.productRows
    match: ownerId
    keys_per_call: 4
{lookup}
  - type: map
    fields:
      deal: "{{{{ source.ID }}}}"
      products: "{{{{ steps.rows | map(attribute='productName') | list if steps.rows is not none else none }}}}"
sinks: [{{type: jsonl, path: "{out}"}}]
"#,
            out = s.path("out.jsonl").display()
        ),
    )
}

fn run_lookup(s: &Scratch, emu: &emulators::bitrix24::BackgroundEmulator, lookup: &str) -> Value {
    let p = pipeline(s, lookup);
    let out = run(etl_run(&p, &s.state(), Some(emu), None)
        .arg("--journal")
        .arg(s.path("j.json")));
    assert_success(&out);
    read_json(&s.path("j.json"))
}

const OWNER_FILTER: &str = r#"    params:
      filter: {"=ownerType": D, "=ownerId": "{{ keys }}"}"#;

#[test]
fn each_record_gets_the_rows_of_its_key_from_one_command_per_group() {
    let emu = b24(portal());
    let s = Scratch::new();
    run_lookup(&s, &emu, OWNER_FILTER);
    let out = read_jsonl(&s.path("out.jsonl"));
    let products = |deal: &str| {
        out.iter()
            .find(|r| r["deal"] == deal)
            .map(|r| r["products"].as_array().unwrap().len())
    };
    assert_eq!(out.len(), 6);
    assert_eq!(
        (1..=6)
            .map(|d| products(&d.to_string()))
            .collect::<Vec<_>>(),
        [Some(1), Some(2), Some(1), Some(1), Some(0), Some(1)]
    );
    // Six deals, four keys a command: two commands, in one request.
    let owners: Vec<Value> = emu
        .calls("crm.item.productrow.list")
        .iter()
        .map(|c| c.params["filter"]["=ownerId"].clone())
        .collect();
    assert_eq!(owners, [json!(["1", "2", "3", "4"]), json!(["5", "6"])]);
    assert_eq!(batch_sizes(&emu, "crm.item.productrow.list"), [2]);
}

#[test]
fn a_refused_command_fails_its_records_with_the_portals_reason_or_gives_null() {
    let emu = b24(portal());
    let s = Scratch::new();
    // Without =ownerType the portal refuses every command.
    let refused = r#"    params:
      filter: {"=ownerId": "{{ keys }}"}"#;
    let journal = run_lookup(&s, &emu, refused);
    assert_eq!(journal["counts"]["failed"], 6, "{journal}");
    let reason = journal["records"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("=ownerType and =ownerId"), "{reason}");

    let s = Scratch::new();
    let journal = run_lookup(&s, &emu, &format!("{refused}\n    optional: true"));
    assert_eq!(journal["counts"]["ok"], 6, "{journal}");
    let out = read_jsonl(&s.path("out.jsonl"));
    assert!(out.iter().all(|r| r["products"].is_null()), "{out:?}");
}

fn validate() -> std::process::Command {
    let mut cmd = etl();
    cmd.arg("validate")
        .env("B24_WEBHOOK_URL", "http://127.0.0.1:9/rest/1/code/");
    cmd
}

#[test]
fn parameters_that_use_the_record_and_groups_out_of_range_are_refused_before_running() {
    let s = Scratch::new();
    let uses_source = r#"    params:
      filter: {"=ownerType": D, "=ownerId": "{{ source.ID }}"}"#;
    let out = run(validate().arg(pipeline(&s, uses_source)));
    assert_eq!(out.status.code(), Some(2));
    assert!(stdout(&out).contains("uses `source`"), "{}", stdout(&out));

    let s = Scratch::new();
    let text = std::fs::read_to_string(pipeline(&s, OWNER_FILTER))
        .unwrap()
        .replace("keys_per_call: 4", "keys_per_call: 60");
    let out = run(validate().arg(s.write("big.yaml", &text)));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stdout(&out).contains("keys_per_call must be 1 to 50"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn rows_deleted_between_two_pages_of_a_group_make_it_read_again_whole() {
    // Deals 1-4 are one group of 64 rows (deal 1 has 60): two pages.
    let mut p = portal();
    for n in 0..59 {
        p.add_product_row(1, product_row(n, 30 + n as u64));
    }
    let emu = b24(p);
    // The second request with product rows (the group's second page) waits before it runs,
    // and meanwhile deal 2 loses a row of the first page: that page's rows shift by one.
    let hang = FaultRule::new(Fault::Hang(std::time::Duration::from_millis(1500)))
        .on(Scope::Only("crm.item.productrow.list".into()))
        .after(1);
    emu.faults().add(hang);
    let s = Scratch::new();
    let path = pipeline(&s, OWNER_FILTER);
    let child = etl_run(&path, &s.state(), Some(&emu), None)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while emu.calls("crm.item.productrow.list").len() < 2 {
        assert!(
            started.elapsed().as_secs() < 20,
            "the first pages never came"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    emu.with_portal(|p| {
        let second = p.product_rows(2)[1].clone();
        p.set_product_rows(2, vec![second]);
    });
    let out = child.wait_with_output().unwrap();
    assert_success(&out);

    let out = read_jsonl(&s.path("out.jsonl"));
    let products = |deal: &str| {
        out.iter()
            .find(|r| r["deal"] == deal)
            .map(|r| r["products"].as_array().unwrap().len())
    };
    assert_eq!((products("1"), products("2")), (Some(60), Some(1)));
    // The group's first page was asked for twice: the read that did not add up, and again.
    let first_pages = emu
        .calls("crm.item.productrow.list")
        .iter()
        .filter(|c| c.params["filter"]["=ownerId"][0] == "1" && c.params.get("start").is_none())
        .count();
    assert_eq!(first_pages, 2);
}
