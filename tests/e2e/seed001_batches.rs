//! Issue 15, items 3-5: status write-backs in full batches of 50, otmechalka written side by
//! side (bounded), deals' product rows and sellers batched and cached. Counts, never times.

use emulators::bitrix24::{Emulator, Portal};
use emulators::otmechalka::{OtmechalkaConfig, OtmechalkaEmulator};
use serde_json::Value;

use crate::harness::*;

/// The number of `method` commands in each `batch` request, in the order they came.
fn batch_sizes(emu: &Emulator, method: &str) -> Vec<usize> {
    emu.calls("batch")
        .iter()
        .map(|c| {
            c.params["cmd"]
                .as_object()
                .map(|cmd| {
                    cmd.values()
                        .filter(|v| {
                            v.as_str()
                                .is_some_and(|s| s.split('?').next() == Some(method))
                        })
                        .count()
                })
                .unwrap_or(0)
        })
        .filter(|&n| n > 0)
        .collect()
}

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

    let rows = batch_sizes(&emu, "crm.deal.productrows.get");
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|&n| n <= 50), "{rows:?}");
    // One product-rows command per deal that reached the step, never one request per deal.
    let asked: usize = rows.iter().sum();
    assert_eq!(emu.requests("crm.deal.productrows.get") as usize, asked);
    assert!(rows.len() * 20 <= asked, "{rows:?}");
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
