//! The Bitrix24 connector against the emulated portal over TCP: chained keyset exports,
//! tie-safe incremental reads, batched lookups and updates, limits, faults and error handling.

use std::collections::HashSet;
use std::time::Duration;

use emulators::bitrix24::{BackgroundEmulator, EmulatorConfig, Fault, Portal};
use serde_json::json;

use crate::harness::*;

fn export_pipeline(s: &Scratch, extra_source: &str) -> std::path::PathBuf {
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
  select: [ID, NAME, DATE_MODIFY]
{extra_source}
sinks:
  - {{type: jsonl, path: "{out}"}}
"#,
            out = s.path("out.jsonl").display()
        ),
    )
}

fn ids(s: &Scratch) -> Vec<u64> {
    read_jsonl(&s.path("out.jsonl"))
        .iter()
        .map(|r| r["ID"].as_str().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn full_export_reads_2500_rows_per_request_without_limit_refusals() {
    let emu = b24(Portal::bulk_contacts(6000));
    let s = Scratch::new();
    let p = export_pipeline(&s, "");
    let out = run(&mut etl_run(&p, &s.state(), Some(&emu), None));
    assert_success(&out);
    let got = ids(&s);
    assert_eq!(got, (1..=6000).collect::<Vec<u64>>());
    // 6,000 rows at 50 chained pages of 50 per request: 3 HTTP requests, all of them batches.
    assert_eq!(emu.http_requests(), 3);
    assert_eq!(emu.requests("batch"), 3);
    assert_eq!(emu.limit_refusals(), 0);
}

/// A portal of contacts with these (ID, DATE_MODIFY) pairs.
fn contacts_modified(rows: impl IntoIterator<Item = (u64, String)>) -> Portal {
    let mut portal = Portal::new();
    for (id, date) in rows {
        portal.insert("contact", row(json!({"ID": id.to_string(), "NAME": format!("n{id}"), "DATE_CREATE": "2024-01-01T00:00:00+03:00", "DATE_MODIFY": date})));
    }
    portal
}

/// One incremental export of `portal` from 2024-01-01, which must finish; the pipeline is kept
/// for further runs.
fn export_incrementally(portal: Portal) -> (BackgroundEmulator, Scratch, std::path::PathBuf) {
    let emu = b24(portal);
    let s = Scratch::new();
    let p = export_pipeline(
        &s,
        "  incremental: {field: DATE_MODIFY, start: \"2024-01-01T00:00:00+03:00\"}",
    );
    let out = run(&mut etl_run(&p, &s.state(), Some(&emu), None));
    assert_success(&out);
    (emu, s, p)
}

#[test]
fn a_tie_of_200_records_on_one_date_modify_is_delivered_exactly_once_across_pages() {
    // IDs are a permutation of 1..=330 (331 is prime), so ID order and DATE_MODIFY order differ.
    let (emu, s, p) = export_incrementally(contacts_modified((1..=330u64).map(|i| {
        let date = match i {
            1..=60 => format!("2024-05-01T10:00:{:02}+03:00", i % 60),
            61..=260 => "2024-05-02T12:00:00+03:00".to_string(),
            _ => format!("2024-05-03T09:{:02}:00+03:00", i % 60),
        };
        (i * 7 % 331, date)
    })));
    let rows = read_jsonl(&s.path("out.jsonl"));
    let got: Vec<u64> = rows
        .iter()
        .map(|r| r["ID"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(got.len(), 330, "every record once");
    assert_eq!(
        got.iter().collect::<HashSet<_>>().len(),
        330,
        "no duplicates"
    );
    // Ascending (DATE_MODIFY, ID).
    let keys: Vec<(String, u64)> = rows
        .iter()
        .map(|r| {
            (
                r["DATE_MODIFY"].as_str().unwrap().to_string(),
                r["ID"].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);

    // Nothing changed: the next run delivers nothing.
    let out = run(&mut etl_run(&p, &s.state(), Some(&emu), None));
    assert_eq!(out.status.code(), Some(0));
    assert!(ids(&s).is_empty(), "second run re-delivered {:?}", ids(&s));

    // Three records change (one inside the tie): exactly those come next.
    emu.with_portal(|p| {
        for id in [5u64, 100, 300] {
            p.set_field(
                "contact",
                id,
                "DATE_MODIFY",
                json!("2024-06-01T08:00:00+03:00"),
            );
        }
    });
    let out = run(&mut etl_run(&p, &s.state(), Some(&emu), None));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(ids(&s), vec![5, 100, 300]);
}

#[test]
fn a_tie_of_thousands_is_read_in_few_requests() {
    let (emu, s, _) = export_incrementally(contacts_modified((1..=6000u64).map(|i| {
        let day = if i <= 5000 { 2 } else { 3 };
        (i, format!("2024-05-0{day}T12:00:00+03:00"))
    })));
    assert_eq!(ids(&s), (1..=6000).collect::<Vec<u64>>());
    // Ties cost nothing: 6,000 rows at 2,450 or more per request.
    assert!(emu.http_requests() <= 3, "{} requests", emu.http_requests());
}

/// Reads 10,000 records whose DATE_MODIFY seconds hold `least` to `least + spread` records
/// each, IDs in no particular order; checks each came once and returns the HTTP requests made.
fn read_seconds_of_ties(least: u64, spread: u64) -> u64 {
    let t0 = chrono::DateTime::parse_from_rfc3339("2024-05-02T12:00:00+03:00").unwrap();
    let (mut second, mut left_in_second) = (0i64, 0u64);
    let (emu, s, _) = export_incrementally(contacts_modified((0..10_000u64).map(|n| {
        if left_in_second == 0 {
            second += 1;
            left_in_second = least + (second as u64 * 37) % (spread + 1);
        }
        left_in_second -= 1;
        let id = (n * 7_919) % 10_000 + 1; // a permutation of 1..=10,000
        (id, (t0 + chrono::Duration::seconds(second)).to_rfc3339())
    })));
    assert_exactly_once_in_order(&s, 10_000);
    emu.http_requests()
}

/// The output holds `n` distinct records in ascending (DATE_MODIFY, ID) order.
fn assert_exactly_once_in_order(s: &Scratch, n: usize) {
    let keys = modify_keys(&read_jsonl(&s.path("out.jsonl")));
    assert_eq!(keys.len(), n, "every record once");
    let distinct: HashSet<u64> = keys.iter().map(|k| k.1).collect();
    assert_eq!(distinct.len(), n, "no duplicates");
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "(DATE_MODIFY, ID) order"
    );
}

fn modify_keys(rows: &[serde_json::Value]) -> Vec<(String, u64)> {
    rows.iter()
        .map(|r| {
            (
                r["DATE_MODIFY"].as_str().unwrap().to_string(),
                r["ID"].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect()
}

/// What a second run meets after the first one wrote its statuses back at the portal's pace
/// (2 batches of 50 a second): every record changed, about a hundred in each second.
#[test]
fn ties_of_a_hundred_records_a_second_cost_few_requests() {
    // 10,000 rows at 2,450 or more per request: 5.
    let requests = read_seconds_of_ties(60, 80);
    assert!(requests <= 5, "{requests} requests");
}

/// Write-backs slowed down by lookups and otmechalka: a few dozen a second.
#[test]
fn sparse_ties_take_one_tie_page_per_step() {
    let requests = read_seconds_of_ties(20, 30);
    assert!(requests <= 5, "{requests} requests");
}

/// An Enterprise portal drains 5 requests a second: 250 write-backs a second.
#[test]
fn denser_ties_deepen_the_tie_pages_of_each_step() {
    let requests = read_seconds_of_ties(200, 100);
    assert!(requests <= 5, "{requests} requests");
}

#[test]
fn all_distinct_dates_read_2450_rows_per_request() {
    let requests = read_seconds_of_ties(1, 0);
    assert!(requests <= 5, "{requests} requests");
}

#[test]
fn a_tie_of_5000_with_shuffled_ids_among_distinct_dates_costs_nothing_extra() {
    let t0 = chrono::DateTime::parse_from_rfc3339("2024-05-02T12:00:00+03:00").unwrap();
    let (emu, s, p) = export_incrementally(contacts_modified((0..10_000u64).map(|n| {
        let second = match n {
            3_000..8_000 => 3_000,
            _ => n as i64,
        };
        (
            (n * 7_919) % 10_000 + 1,
            (t0 + chrono::Duration::seconds(second)).to_rfc3339(),
        )
    })));
    assert_exactly_once_in_order(&s, 10_000);
    assert!(emu.http_requests() <= 5, "{} requests", emu.http_requests());
    // The cursor is exact: nothing changed, nothing comes again.
    let out = run(&mut etl_run(&p, &s.state(), Some(&emu), None));
    assert_eq!(out.status.code(), Some(0));
    assert!(ids(&s).is_empty(), "second run re-delivered {:?}", ids(&s));
}

/// Windows cut by the window probe (here at 1,000 rows) meet exactly, ties across a cut
/// included.
#[test]
fn date_modify_windows_meet_exactly() {
    let t0 = chrono::DateTime::parse_from_rfc3339("2024-05-02T12:00:00+03:00").unwrap();
    let emu = b24(contacts_modified((0..5_000u64).map(|n| {
        let second = if (900..1_400).contains(&n) {
            900
        } else {
            (n / 3) as i64
        };
        (
            (n * 7_919) % 5_000 + 1,
            (t0 + chrono::Duration::seconds(second)).to_rfc3339(),
        )
    })));
    let s = Scratch::new();
    let p = export_pipeline(
        &s,
        "  incremental: {field: DATE_MODIFY, start: \"2024-01-01T00:00:00+03:00\", window_rows: 1000}",
    );
    let out = run(&mut etl_run(&p, &s.state(), Some(&emu), None));
    assert_success(&out);
    assert_exactly_once_in_order(&s, 5_000);
    let out = run(&mut etl_run(&p, &s.state(), Some(&emu), None));
    assert_eq!(out.status.code(), Some(0));
    assert!(ids(&s).is_empty(), "second run re-delivered {:?}", ids(&s));
}

/// The 100,000-contact first run: 41 requests, incremental or not.
#[test]
fn a_100000_record_read_takes_41_requests() {
    for incremental in [
        "",
        "  incremental: {field: DATE_MODIFY, start: \"2000-01-01T00:00:00+03:00\"}",
    ] {
        let emu = b24_with(EmulatorConfig::unlimited(), Portal::bulk_contacts(100_000));
        let s = Scratch::new();
        let p = export_pipeline(&s, incremental);
        let out = run(&mut etl_run(&p, &s.state(), Some(&emu), None));
        assert_success(&out);
        let rows = read_jsonl(&s.path("out.jsonl"));
        assert!(rows.len() >= 100_000, "{}", rows.len());
        assert!(
            emu.http_requests() <= 41,
            "{incremental}: {} requests",
            emu.http_requests()
        );
    }
}

/// A run killed at some point resumes from its cursor: the next run delivers exactly the
/// records after the last one whose cursor was kept, in order, and the one after nothing.
#[test]
fn a_killed_run_resumes_exactly_at_its_cursor() {
    let t0 = chrono::DateTime::parse_from_rfc3339("2024-05-02T12:00:00+03:00").unwrap();
    let portal = || {
        contacts_modified((0..6_000u64).map(|n| {
            (
                (n * 7_919) % 6_000 + 1,
                (t0 + chrono::Duration::seconds((n / 90) as i64)).to_rfc3339(),
            )
        }))
    };
    let (_, full, _) = export_incrementally(portal());
    let all = modify_keys(&read_jsonl(&full.path("out.jsonl")));
    for delay_ms in [150u64, 400, 900] {
        let emu = b24(portal());
        emu.update_config(|c| c.latency = Duration::from_millis(5));
        let s = Scratch::new();
        let p = export_pipeline(
            &s,
            "  incremental: {field: DATE_MODIFY, start: \"2024-01-01T00:00:00+03:00\"}",
        );
        let mut child = etl_run(&p, &s.state(), Some(&emu), None)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let out = run(&mut etl_run(&p, &s.state(), Some(&emu), None));
        assert_success(&out);
        let resumed = modify_keys(&read_jsonl(&s.path("out.jsonl")));
        assert!(
            all.ends_with(&resumed),
            "after a kill at {delay_ms} ms the next run delivered {} records that are not the tail",
            resumed.len()
        );
        let out = run(&mut etl_run(&p, &s.state(), Some(&emu), None));
        assert_eq!(out.status.code(), Some(0));
        assert!(ids(&s).is_empty(), "a finished run left {:?}", ids(&s));
    }
}

#[test]
fn storms_of_503_and_html_answers_lose_and_duplicate_nothing() {
    let emu = b24(Portal::bulk_contacts(3000));
    emu.faults().storm(0.3, 7, Fault::QueryLimit);
    emu.faults().push(Fault::HtmlBadGateway);
    emu.faults().push(Fault::InternalError);
    let s = Scratch::new();
    let p = export_pipeline(&s, "");
    let out = run(&mut etl_run(&p, &s.state(), Some(&emu), None));
    assert_success(&out);
    assert_eq!(ids(&s), (1..=3000).collect::<Vec<u64>>());
    assert!(emu.responses_with_status(503) > 0 && emu.responses_with_status(502) > 0);
}

fn update_pipeline(s: &Scratch, ids: &[u64]) -> std::path::PathBuf {
    let lines: String = ids
        .iter()
        .map(|i| format!("{{\"ID\": \"{i}\"}}\n"))
        .collect();
    s.write("ids.jsonl", &lines);
    s.write(
        "update.yaml",
        &format!(
            r#"name: update
connections:
  b24: {{type: bitrix24, webhook_url: "${{env:B24_WEBHOOK_URL}}"}}
source: {{type: jsonl, path: "{ids}", key: $.ID}}
sinks:
  - type: bitrix24.update
    connection: b24
    method: crm.contact.update
    record_id: "{{{{ source.ID }}}}"
    fields:
      COMMENTS: "synced {{{{ source.ID }}}}"
"#,
            ids = s.path("ids.jsonl").display()
        ),
    )
}

#[test]
fn updates_go_50_per_batch_and_command_errors_fail_only_their_record() {
    let emu = b24(Portal::bulk_contacts(120));
    let s = Scratch::new();
    let mut targets: Vec<u64> = (1..=120).collect();
    targets.insert(10, 999_999); // no such contact
    let p = update_pipeline(&s, &targets);
    let out = run(etl_run(&p, &s.state(), Some(&emu), None)
        .arg("--journal")
        .arg(s.path("j.json")));
    assert_success(&out);
    let j = read_json(&s.path("j.json"));
    assert_eq!(j["counts"], json!({"ok": 120, "skipped": 0, "failed": 1}));
    let failed = j["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["outcome"] == "failed")
        .unwrap()
        .clone();
    assert_eq!(failed["key"], "999999");
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("not found"),
        "{failed}"
    );
    assert_eq!(emu.requests("batch"), 3, "121 updates in batches of 50");
    assert_eq!(emu.mutations("crm.contact.update"), 120);
    assert_eq!(
        emu.with_portal(|p| p.get("contact", 7).unwrap()["COMMENTS"].clone()),
        json!("synced 7")
    );
}

#[test]
fn a_write_then_500_is_checked_not_applied_twice() {
    let emu = b24(Portal::bulk_contacts(60));
    emu.faults()
        .on_method("crm.contact.update", Fault::WriteThenFail, 1);
    let s = Scratch::new();
    let p = update_pipeline(&s, &(1..=60).collect::<Vec<u64>>());
    let out = run(etl_run(&p, &s.state(), Some(&emu), None)
        .arg("--journal")
        .arg(s.path("j.json")));
    assert_success(&out);
    assert_eq!(read_json(&s.path("j.json"))["counts"]["ok"], 60);
    // The first batch (50 updates) ran once; the check found them done, so only the last 10
    // were sent in a second batch. Nothing was applied twice.
    assert_eq!(emu.mutations("crm.contact.update"), 60);
    assert!(
        emu.requests("crm.contact.list") >= 1,
        "the outcome was checked by reading back"
    );
}

#[test]
fn a_lost_update_batch_whose_writes_did_not_happen_is_sent_again_once() {
    let emu = b24(Portal::bulk_contacts(20));
    emu.faults()
        .on_method("crm.contact.update", Fault::HtmlBadGateway, 1);
    let s = Scratch::new();
    let p = update_pipeline(&s, &(1..=20).collect::<Vec<u64>>());
    let out = run(&mut etl_run(&p, &s.state(), Some(&emu), None));
    assert_success(&out);
    assert_eq!(emu.mutations("crm.contact.update"), 20);
}

#[test]
fn lookups_are_packed_into_batches_and_cached_per_run() {
    let mut portal = Portal::new();
    for u in 1..=3u64 {
        portal.insert("user", row(json!({"ID": u.to_string(), "ACTIVE": true, "NAME": format!("U{u}"), "LAST_NAME": "X"})));
    }
    for d in 1..=120u64 {
        portal.insert("deal", row(json!({"ID": d.to_string(), "TITLE": "d", "ASSIGNED_BY_ID": (d % 3 + 1).to_string(), "STAGE_ID": "WON"})));
    }
    let emu = b24(portal);
    let s = Scratch::new();
    let p = s.write(
        "lookup.yaml",
        &format!(
            r#"name: lookup
connections:
  b24: {{type: bitrix24, webhook_url: "${{env:B24_WEBHOOK_URL}}"}}
source: {{type: bitrix24.list, connection: b24, method: crm.deal.list, select: [ID, ASSIGNED_BY_ID]}}
steps:
  - type: bitrix24.call
    id: seller
    connection: b24
    method: user.get
    params: {{ID: "{{{{ source.ASSIGNED_BY_ID }}}}"}}
    result: $[0]
  - type: map
    fields:
      deal: "{{{{ source.ID }}}}"
      seller: "{{{{ steps.seller.NAME }}}}"
sinks: [{{type: jsonl, path: "{out}"}}]
"#,
            out = s.path("out.jsonl").display()
        ),
    );
    let out = run(&mut etl_run(&p, &s.state(), Some(&emu), None));
    assert_success(&out);
    let rows = read_jsonl(&s.path("out.jsonl"));
    assert_eq!(rows.len(), 120);
    assert_eq!(rows[0], json!({"deal": "1", "seller": "U2"}));
    assert_eq!(emu.requests("user.get"), 3, "each user fetched once");
    assert!(
        emu.http_requests() <= 3 + 1,
        "lookups ride in batches: {}",
        emu.http_requests()
    );
}

#[test]
fn a_wrong_webhook_code_says_so_and_never_shows_the_code() {
    let emu = b24(Portal::bulk_contacts(5));
    let s = Scratch::new();
    let p = export_pipeline(&s, "");
    let wrong = emu
        .webhook_url()
        .replace("b24emulator0code", "wrong0code0123456");
    let out = run(etl_run(&p, &s.state(), None, None)
        .env("B24_WEBHOOK_URL", &wrong)
        .arg("--journal")
        .arg(s.path("j.json")));
    assert_eq!(out.status.code(), Some(1));
    let all = format!(
        "{}{}{}",
        stdout(&out),
        stderr(&out),
        std::fs::read_to_string(s.path("j.json")).unwrap()
    );
    assert!(all.contains("rejected the webhook"), "{all}");
    assert!(
        !all.contains("wrong0code0123456"),
        "the code leaked:\n{all}"
    );
}

#[test]
fn operating_time_limit_parks_the_method_until_its_reset() {
    let config = EmulatorConfig {
        operating_limit_secs: 0.2,
        op_time_per_call: 0.15,
        op_time_per_row: 0.0,
        operating_window: Duration::from_secs(1),
        ..EmulatorConfig::default()
    };
    let emu = b24_with(config, Portal::bulk_contacts(5));
    let s = Scratch::new();
    // Five updates in one batch: the portal runs two, refuses the rest until the window moves.
    let p = update_pipeline(&s, &[1, 2, 3, 4, 5]);
    let out = run(etl_run(&p, &s.state(), Some(&emu), None)
        .arg("--journal")
        .arg(s.path("j.json")));
    assert_success(&out);
    assert!(
        emu.limit_refusals() >= 1,
        "the budget was exceeded at least once"
    );
    assert_eq!(read_json(&s.path("j.json"))["counts"]["ok"], 5);
    assert_eq!(
        emu.mutations("crm.contact.update"),
        5,
        "refused commands ran once, later"
    );
}

#[test]
fn a_moved_portal_is_followed() {
    let emu = b24(Portal::bulk_contacts(10));
    let moved = emu.webhook_url().replace("127.0.0.1", "localhost");
    emu.faults().push(Fault::Moved(moved));
    let s = Scratch::new();
    let p = export_pipeline(&s, "");
    let out = run(&mut etl_run(&p, &s.state(), Some(&emu), None));
    assert_success(&out);
    assert_eq!(ids(&s).len(), 10);
}

#[test]
fn an_unreachable_portal_aborts_the_run() {
    let s = Scratch::new();
    let p = export_pipeline(&s, "");
    let out = run(etl_run(&p, &s.state(), None, None)
        .env("B24_WEBHOOK_URL", "http://127.0.0.1:9/rest/1/abcdef123456/"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("Bitrix24 unavailable"),
        "{}",
        stdout(&out)
    );
}
