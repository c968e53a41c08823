//! Benchmarks against the emulators, run by hand (they take minutes and print figures):
//!
//!     cargo test --release --test e2e bench_ -- --ignored --nocapture --test-threads 1
//!
//! Bitrix24 behaves like a standard cloud plan (burst 50, drain 2/s) with 20 ms latency per
//! request; otmechalka answers in 5 ms.

use std::time::{Duration, Instant};

use emulators::bitrix24::{EmulatorConfig, Portal};
use emulators::otmechalka::{OtmechalkaConfig, OtmechalkaEmulator};

use crate::harness::*;

fn portal_config() -> EmulatorConfig {
    EmulatorConfig {
        latency: Duration::from_millis(20),
        log_requests: false,
        ..EmulatorConfig::default()
    }
}

fn timed(cmd: &mut std::process::Command) -> (std::process::Output, Duration, String) {
    let mut wrapped = std::process::Command::new("/usr/bin/time");
    wrapped.arg("-f").arg("%M");
    wrapped.arg(cmd.get_program()).args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => wrapped.env(k, v),
            None => wrapped.env_remove(k),
        };
    }
    let start = Instant::now();
    let out = wrapped.output().unwrap();
    let elapsed = start.elapsed();
    let peak_kb = stderr(&out)
        .lines()
        .last()
        .unwrap_or("0")
        .trim()
        .to_string();
    (
        out,
        elapsed,
        format!("{:.0} MB", peak_kb.parse::<f64>().unwrap_or(0.0) / 1024.0),
    )
}

/// How many records of a journal ended how (and why), to tell re-reads from real work.
fn print_outcomes(journal: &std::path::Path) {
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for r in read_json(journal)["records"].as_array().unwrap() {
        let reason: String = r["reason"]
            .as_str()
            .unwrap_or("")
            .chars()
            .take(60)
            .collect();
        *outcomes
            .entry(format!("{} {reason}", r["outcome"]))
            .or_default() += 1;
    }
    println!("  {outcomes:?}");
}

#[test]
#[ignore]
fn bench_bitrix24_export_and_updates() {
    let emu = b24_with(portal_config(), Portal::bulk_contacts(100_000));
    let s = Scratch::new();
    let p = s.write(
        "export.yaml",
        &format!(
            "name: export\nconnections:\n  b24: {{type: bitrix24, webhook_url: \"${{env:B24_WEBHOOK_URL}}\"}}\nsource: {{type: bitrix24.list, connection: b24, method: crm.contact.list, select: [ID, NAME, LAST_NAME, PHONE, DATE_MODIFY]}}\nsinks: [{{type: jsonl, path: \"{}\"}}]\n",
            s.path("out.jsonl").display()
        ),
    );
    let (out, t, mem) = timed(&mut etl_run(&p, &s.state(), Some(&emu), None));
    assert!(out.status.success(), "{}", stdout(&out));
    println!(
        "export of 100,000 contacts: {} HTTP requests, {} QUERY_LIMIT_EXCEEDED, {:.1} s, peak {mem}, {} rows",
        emu.http_requests(),
        emu.limit_refusals(),
        t.as_secs_f64(),
        read_jsonl(&s.path("out.jsonl")).len()
    );

    // A fresh bucket, as for a run that starts on a quiet portal.
    emu.reset_limits();
    let (before, refused_before) = (emu.http_requests(), emu.limit_refusals());
    let ids: String = (1..=10_000)
        .map(|i| format!("{{\"ID\": \"{i}\"}}\n"))
        .collect();
    s.write("ids.jsonl", &ids);
    let p = s.write(
        "update.yaml",
        &format!(
            "name: update\nconnections:\n  b24: {{type: bitrix24, webhook_url: \"${{env:B24_WEBHOOK_URL}}\"}}\nsource: {{type: jsonl, path: \"{}\", key: $.ID}}\nsinks:\n  - {{type: bitrix24.update, connection: b24, method: crm.contact.update, record_id: \"{{{{ source.ID }}}}\", fields: {{UF_CRM_SYNC_STATUS: Успешно}}}}\n",
            s.path("ids.jsonl").display()
        ),
    );
    let (out, t, mem) = timed(&mut etl_run(&p, &s.state(), Some(&emu), None));
    assert!(out.status.success(), "{}", stdout(&out));
    let requests = emu.http_requests() - before;
    // The first 48 batches (2,400 updates) go out at once (our bucket keeps 2 of the portal's
    // 50 in reserve), taking about 48 x 20 ms; the rest is paced by the drain.
    let burst_secs = 48.0 * 0.02;
    let after_burst = (10_000.0 - 2_400.0) / (t.as_secs_f64() - burst_secs);
    println!(
        "10,000 status updates: {requests} HTTP requests, {} QUERY_LIMIT_EXCEEDED, {:.1} s, {:.0} updates/s overall, ~{:.0} updates/s after the burst, peak {mem}",
        emu.limit_refusals() - refused_before,
        t.as_secs_f64(),
        10_000.0 / t.as_secs_f64(),
        after_burst
    );
}

#[test]
#[ignore]
fn bench_seed001_first_and_second_sync() {
    let mut portal = Portal::bulk_contacts(10_000);
    portal.add_bulk_deals(15_000, 43, true);
    // The call log tells write requests (batches of updates) from reads.
    let emu = b24_with(
        EmulatorConfig {
            log_requests: true,
            ..portal_config()
        },
        portal,
    );
    let otm = OtmechalkaEmulator::start(OtmechalkaConfig {
        latency: Duration::from_millis(5),
        max_active_clients: 100_000,
        ..OtmechalkaConfig::default()
    })
    .unwrap();
    let s = Scratch::new();
    for (round, settle) in [("first", "5"), ("second", "0")] {
        for pipeline in ["contacts.yaml", "deals.yaml"] {
            // Counters and the call log start afresh for each run (max in flight included), and
            // the portal's bucket is drained, as on a quiet portal: the deals run is not charged
            // for the burst the contacts run used up.
            emu.reset_limits();
            emu.clear_log();
            otm.reset_counters();
            let (b0, o0, w0) = (
                emu.http_requests(),
                otm.counters().total,
                otm.counters().writes,
            );
            let u0 = emu.mutations("crm.contact.update") + emu.mutations("crm.deal.update");
            let mut cmd = etl_run(
                &root().join("pipelines").join(pipeline),
                &s.state(),
                Some(&emu),
                Some(&otm),
            );
            cmd.args([
                "--set",
                &format!("source.incremental.settle_secs={settle}"),
                "--journal",
            ])
            .arg(s.path("j.json"));
            let (out, t, mem) = timed(&mut cmd);
            assert_success(&out);
            let u1 = emu.mutations("crm.contact.update") + emu.mutations("crm.deal.update");
            println!(
                "{round} run, {pipeline}: {} | Bitrix24 {} requests ({} status writes, {} QUERY_LIMIT_EXCEEDED so far) | otmechalka {} requests ({} writes) | {:.1} s | peak {mem}",
                read_json(&s.path("j.json"))["counts"],
                emu.http_requests() - b0,
                u1 - u0,
                emu.limit_refusals(),
                otm.counters().total - o0,
                otm.counters().writes - w0,
                t.as_secs_f64()
            );
            print_outcomes(&s.path("j.json"));
            print_write_figures(&emu, &otm, u1 - u0, t);
        }
        std::thread::sleep(Duration::from_millis(1100));
    }
}

/// Issue 15 (b): write requests and their sizes, reads, the portal's floor (requests beyond the
/// burst of 50 at 2 a second) against the wall time, and otmechalka's concurrency.
fn print_write_figures(
    emu: &emulators::bitrix24::BackgroundEmulator,
    otm: &OtmechalkaEmulator,
    updates: u64,
    t: Duration,
) {
    let batches = emu.calls("batch");
    let is_update = |v: &serde_json::Value| v.as_str().is_some_and(|s| s.contains(".update"));
    let sizes: Vec<usize> = batches
        .iter()
        .map(|c| {
            c.params["cmd"]
                .as_object()
                .map_or(0, |m| m.values().filter(|v| is_update(v)).count())
        })
        .filter(|&n| n > 0)
        .collect();
    let requests = emu.http_requests();
    let writes = sizes.len();
    let floor = requests.saturating_sub(50) as f64 / 2.0;
    let secs = t.as_secs_f64();
    println!(
        "  Bitrix24: {writes} write requests ({} full of 50, last {:?}), {} read requests, refused: {} with 503, {} with 429; floor {floor:.1} s, wall {secs:.1} s ({:+.1} %); {:.1} updates/s; otmechalka max in flight {}",
        sizes.iter().filter(|&&n| n == 50).count(),
        sizes.last(),
        requests - writes as u64,
        emu.responses_with_status(503),
        emu.responses_with_status(429),
        if floor > 0.0 {
            (secs / floor - 1.0) * 100.0
        } else {
            0.0
        },
        updates as f64 / secs,
        otm.counters().max_in_flight
    );
}

/// The second-run request count at full scale without waiting for the rate limit: the same
/// 10,000 contacts on a portal without limits (the count of requests does not depend on them).
#[test]
#[ignore]
fn bench_seed001_second_run_requests() {
    let emu = b24_with(EmulatorConfig::unlimited(), Portal::bulk_contacts(10_000));
    let otm = OtmechalkaEmulator::start(OtmechalkaConfig {
        max_active_clients: 100_000,
        ..OtmechalkaConfig::default()
    })
    .unwrap();
    let s = Scratch::new();
    for round in ["first", "second"] {
        let b0 = emu.http_requests();
        let w0 = otm.counters().writes;
        let u0 = emu.mutations("crm.contact.update");
        let mut cmd = etl_run(
            &root().join("pipelines").join("contacts.yaml"),
            &s.state(),
            Some(&emu),
            Some(&otm),
        );
        cmd.args(["--set", "source.incremental.settle_secs=0", "--journal"])
            .arg(s.path("j.json"));
        let out = run(&mut cmd);
        assert!(out.status.success(), "{}", stdout(&out));
        println!(
            "{round} run: {} | Bitrix24 {} requests, {} status writes | otmechalka {} writes",
            read_json(&s.path("j.json"))["counts"],
            emu.http_requests() - b0,
            emu.mutations("crm.contact.update") - u0,
            otm.counters().writes - w0
        );
        print_outcomes(&s.path("j.json"));
        std::thread::sleep(Duration::from_millis(1100));
    }
}

/// Issue 15 (a): the first run of contacts.yaml over 100,000 contacts in --dry-run, then
/// pipelines/contacts.yaml's select, its settings filled in: the fixed fields first.
const CONTACTS_SELECT: [&str; 13] = [
    "ID",
    "NAME",
    "LAST_NAME",
    "PHONE",
    "EMAIL",
    "DATE_CREATE",
    "DATE_MODIFY",
    "UF_CRM_57AD7FAF7E6C4",
    "UF_CRM_1608028374",
    "UF_CRM_1607943642",
    "UF_CRM_58D15BB9CA8F4",
    "UF_CRM_1470852549",
    "UF_CRM_SYNC_STATUS",
];

/// fast_bitrix24's get_all (bench/fast_bitrix24_get_all.py) on a fresh bucket of the same portal.
#[test]
#[ignore]
fn bench_contacts_first_run_against_fast_bitrix24() {
    let emu = b24_with(portal_config(), Portal::bulk_contacts(100_000));
    let otm = OtmechalkaEmulator::start(OtmechalkaConfig {
        latency: Duration::from_millis(5),
        max_active_clients: 1_000_000,
        ..OtmechalkaConfig::default()
    })
    .unwrap();
    let s = Scratch::new();
    let mut cmd = etl_run(
        &root().join("pipelines").join("contacts.yaml"),
        &s.state(),
        Some(&emu),
        Some(&otm),
    );
    cmd.arg("--dry-run").arg("--journal").arg(s.path("j.json"));
    let (out, t, mem) = timed(&mut cmd);
    assert_success(&out);
    let ours = (emu.http_requests(), t.as_secs_f64());
    println!(
        "contacts.yaml first run, 100,000 contacts, --dry-run: {} Bitrix24 requests ({} batch), {} QUERY_LIMIT_EXCEEDED, {:.2} s, peak {mem}, {}",
        ours.0,
        emu.requests("batch"),
        emu.limit_refusals(),
        ours.1,
        read_json(&s.path("j.json"))["counts"]
    );

    // The read alone: the same source into a jsonl file (no mapping, no lookups).
    emu.reset_limits();
    let before = emu.http_requests();
    let p = s.write(
        "read.yaml",
        &format!(
            "name: read\nconnections:\n  b24: {{type: bitrix24, webhook_url: \"${{env:B24_WEBHOOK_URL}}\"}}\nsource: {{type: bitrix24.list, connection: b24, method: crm.contact.list, select: [{}], incremental: {{field: DATE_MODIFY, start: \"2000-01-01T00:00:00+03:00\"}}}}\nsinks: [{{type: jsonl, path: \"{}\"}}]\n",
            CONTACTS_SELECT.join(", "),
            s.path("out.jsonl").display()
        ),
    );
    let (out, t, mem) = timed(&mut etl_run(&p, &s.state(), Some(&emu), None));
    assert!(out.status.success(), "{}", stdout(&out));
    println!(
        "the read alone (incremental, contacts.yaml's select, jsonl sink): {} requests, {:.2} s, peak {mem}",
        emu.http_requests() - before,
        t.as_secs_f64()
    );

    // fast_bitrix24 reading the fixed fields of the select, and then all of it (the same rows
    // and fields as the pipeline reads).
    let script = root().join("bench").join("fast_bitrix24_get_all.py");
    for (label, fields) in [
        ("fixed fields", &CONTACTS_SELECT[..7]),
        ("contacts.yaml's select", &CONTACTS_SELECT[..]),
    ] {
        emu.reset_limits();
        let before = emu.http_requests();
        let started = Instant::now();
        let out = std::process::Command::new("python3")
            .arg(&script)
            .arg(emu.webhook_url())
            .args(fields)
            .output()
            .unwrap();
        let theirs = started.elapsed().as_secs_f64();
        assert_success(&out);
        println!(
            "fast_bitrix24 get_all, same portal, {label}: {} requests, {} (rows, seconds in get_all), {:.2} s with interpreter start; ours/theirs = {:.2}",
            emu.http_requests() - before,
            stdout(&out).trim(),
            theirs,
            ours.1 / theirs
        );
    }
}
