//! Issue 15, items 3-5: status write-backs in full batches of 50, otmechalka written side by
//! side (bounded), deals' product rows and sellers batched and cached. Counts, never times.

use emulators::bitrix24::{Emulator, Portal};
use emulators::otmechalka::{OtmechalkaConfig, OtmechalkaEmulator};
use serde_json::{Value, json};

use crate::harness::*;

fn otmechalka_with_room() -> OtmechalkaEmulator {
    // 5 ms an answer, as in the benchmark: requests that are sent together overlap there.
    OtmechalkaEmulator::start(OtmechalkaConfig {
        latency: std::time::Duration::from_millis(5),
        max_active_clients: 100_000,
        ..OtmechalkaConfig::default()
    })
    .unwrap()
}

fn run_pipeline(
    name: &str,
    s: &Scratch,
    emu: &Emulator,
    otm: &OtmechalkaEmulator,
) -> std::process::Output {
    run(etl_run(
        &root().join("pipelines").join(name),
        &s.state(),
        Some(emu),
        Some(otm),
    )
    .args(["--set", "source.incremental.settle_secs=0", "--journal"])
    .arg(s.path("j.json")))
}

fn journal_count(s: &Scratch, outcome: &str) -> u64 {
    read_json(&s.path("j.json"))["counts"][outcome]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn contact_status_write_backs_go_out_fifty_to_a_batch() {
    let emu = b24(Portal::bulk_contacts(437));
    let otm = otmechalka_with_room();
    let s = Scratch::new();
    let out = run_pipeline("contacts.yaml", &s, &emu, &otm);
    assert!(out.status.success(), "{}", stdout(&out));

    let sizes = batch_sizes(&emu, "crm.contact.update");
    let (last, full) = sizes.split_last().expect("status write-backs were sent");
    assert!(full.iter().all(|&n| n == 50), "{sizes:?}");
    assert!(*last >= 1 && *last <= 50, "{sizes:?}");
    // Every record that succeeded or failed got its status, whichever hook wrote it.
    let total: usize = sizes.iter().sum();
    let written = journal_count(&s, "ok") + journal_count(&s, "failed");
    assert_eq!(total as u64, written, "{}", stdout(&out));
    assert_eq!(emu.mutations("crm.contact.update"), written);
    assert!(written > 400);

    // Records were written to otmechalka side by side, never more than the default 8 at once.
    let c = otm.counters();
    assert!(c.max_in_flight > 1, "{c:?}");
    assert!(c.max_in_flight <= 8, "{c:?}");

    // The second run over unchanged data writes nothing and reads a handful of pages.
    emu.clear_log();
    let writes_before = otm.counters().writes;
    let out = run_pipeline("contacts.yaml", &s, &emu, &otm);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(batch_sizes(&emu, "crm.contact.update").is_empty());
    assert_eq!(otm.counters().writes, writes_before);
}

#[test]
fn otmechalka_concurrency_is_set_on_the_connection() {
    let emu = b24(Portal::bulk_contacts(120));
    let otm = otmechalka_with_room();
    let s = Scratch::new();
    let text = std::fs::read_to_string(root().join("pipelines/contacts.yaml"))
        .unwrap()
        .replace(
            "    token: ${secret:OTMECHALKA_TOKEN}\n",
            "    token: ${secret:OTMECHALKA_TOKEN}\n    concurrency: 2\n",
        );
    let p = s.write("contacts.yaml", &text);
    let out = run(etl_run(&p, &s.state(), Some(&emu), Some(&otm))
        .args(["--set", "source.incremental.settle_secs=0"]));
    assert!(out.status.success(), "{}", stdout(&out));
    let c = otm.counters();
    assert!(c.max_in_flight >= 1 && c.max_in_flight <= 2, "{c:?}");

    let out = run(etl().arg("validate").arg(s.write(
        "bad.yaml",
        &text.replace("concurrency: 2", "concurrency: 0"),
    )));
    assert!(!out.status.success(), "{}", stdout(&out));
}

#[test]
fn deal_product_rows_and_sellers_are_batched_and_cached() {
    let mut portal = Portal::bulk_contacts(100);
    portal.add_bulk_deals(300, 43, true);
    let emu = b24(portal);
    let otm = otmechalka_with_room();
    let s = Scratch::new();
    let out = run_pipeline("deals.yaml", &s, &emu, &otm);
    assert!(out.status.success(), "{}", stdout(&out));

    // The product rows of 40 deals in one command, 2,000 in one request: the deals that reach
    // the step (those with a known branch) in one request, and each of them in one command.
    let rows = batch_sizes(&emu, "crm.item.productrow.list");
    assert_eq!(rows.len(), 1, "{rows:?}");
    let commands = product_row_owners(&emu);
    assert!(commands.iter().all(|c| c.len() <= 40), "{commands:?}");
    let asked: Vec<String> = commands.concat().iter().map(|v| v.to_string()).collect();
    let mut distinct = asked.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(asked.len(), distinct.len(), "no deal is asked for twice");
    // Every deal that got as far as otmechalka (whose clients this test did not sync) had its
    // product rows asked for.
    let at_sink = reached_the_sink(&s);
    assert!(at_sink.len() > 100, "{}", at_sink.len());
    for key in &at_sink {
        assert!(asked.contains(&format!("\"{key}\"")), "{key}");
    }
    // Each seller is fetched once per run, whatever the number of its deals.
    let sellers: Vec<Value> = emu
        .calls("user.get")
        .iter()
        .map(|c| c.params["ID"].clone())
        .collect();
    let mut distinct = sellers.clone();
    distinct.sort_by_key(|v| v.to_string());
    distinct.dedup();
    assert_eq!(sellers.len(), distinct.len(), "{sellers:?}");

    let sizes = batch_sizes(&emu, "crm.deal.update");
    let (_, full) = sizes.split_last().expect("status write-backs were sent");
    assert!(full.iter().all(|&n| n == 50), "{sizes:?}");
}

/// The records the journal says otmechalka refused: those that passed every step before it.
fn reached_the_sink(s: &Scratch) -> Vec<String> {
    let journal = read_json(&s.path("j.json"));
    journal["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("sink[0]"))
        })
        .map(|r| r["key"].as_str().unwrap().to_string())
        .collect()
}

/// The deals each `crm.item.productrow.list` command asked for (its `=ownerId` list).
fn product_row_owners(emu: &Emulator) -> Vec<Vec<Value>> {
    emu.calls("crm.item.productrow.list")
        .iter()
        .map(|c| {
            let owners = &c.params["filter"]["=ownerId"];
            owners
                .as_array()
                .cloned()
                .unwrap_or_else(|| vec![owners.clone()])
        })
        .collect()
}

#[test]
fn a_deal_whose_rows_fill_more_than_a_page_is_read_on_and_its_neighbours_keep_theirs() {
    let mut portal = Portal::bulk_contacts(20);
    portal.add_bulk_deals(60, 7, true);
    // One deal with 75 product rows more (76): its command's rows fill two pages.
    let won = |id: &u64| {
        portal
            .get("deal", *id)
            .is_some_and(|d| d["STAGE_ID"] == "WON")
    };
    let crowded = portal.ids("deal").into_iter().filter(won).nth(3).unwrap();
    for n in 0..75 {
        portal.add_product_row(
            crowded,
            emulators::bitrix24::generate::product_row(n, n as u64),
        );
    }
    let emu = b24(portal);
    let otm = otmechalka_with_room();
    let s = Scratch::new();
    let out = run_pipeline("deals.yaml", &s, &emu, &otm);
    assert!(out.status.success(), "{}", stdout(&out));

    let starts: Vec<Value> = emu
        .calls("crm.item.productrow.list")
        .iter()
        .map(|c| c.params["start"].clone())
        .collect();
    assert!(starts.iter().any(|s| s == "50"), "{starts:?}");
    let journal = read_json(&s.path("j.json"));
    let reason = journal["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"].as_str() == Some(crowded.to_string().as_str()))
        .map(|r| r["reason"].clone());
    assert_eq!(
        reason,
        Some(json!("В сделке 76 товарных позиций, ожидается ровно одна"))
    );
    // The deals asked for in the same command got their own rows, and went on to otmechalka.
    let neighbours = product_row_owners(&emu)
        .into_iter()
        .find(|c| c.iter().any(|k| k == &json!(crowded.to_string())))
        .unwrap();
    let at_sink = reached_the_sink(&s);
    assert!(neighbours.len() > 10, "{neighbours:?}");
    assert!(
        neighbours
            .iter()
            .filter(|k| at_sink.contains(&k.as_str().unwrap().to_string()))
            .count()
            > 5,
        "{neighbours:?} {at_sink:?}"
    );
}
