//! Benchmark of `etl serve` answering business-process actions, run by hand (it prints figures):
//!
//!     cargo test --test e2e bench_bp_serve -- --ignored --nocapture
//!
//! The emulated portal behaves like a standard cloud plan (burst 50, drain 2/s) with 20 ms
//! latency per request. For 1, 8 and 50 workflows in flight at once, each workflow renames a
//! deal with the shipped action `pipelines/bp/update_deal.yaml` (`crm.deal.update`) and waits
//! for its
//! `bizproc.event.send`: the time from sending the handler request to the reply arriving at the
//! portal (median, p99), the portal requests per reply, and serve's peak memory (VmHWM).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use emulators::bitrix24::{Emulator, EmulatorConfig, Workflow};
use serde_json::json;

use crate::bp_serve::{BpServe, portal_with_deals, serve_bp};
use crate::harness::*;

fn portal_config() -> EmulatorConfig {
    EmulatorConfig {
        latency: Duration::from_millis(20),
        log_requests: false,
        ..EmulatorConfig::default()
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

fn peak_rss_kb(server: &BpServe) -> u64 {
    std::fs::read_to_string(format!("/proc/{}/status", server.pid()))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// `workflows` requests, `in_flight` at a time, each waiting for its reply; the latencies.
fn drive(emu: &Emulator, server: &BpServe, workflows: u64, in_flight: u64) -> Vec<Duration> {
    let next = Mutex::new(1u64);
    let latencies = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..in_flight {
            scope.spawn(|| {
                loop {
                    let deal = {
                        let mut n = next.lock().unwrap();
                        if *n > workflows {
                            return;
                        }
                        *n += 1;
                        *n - 1
                    };
                    let request = emu.prepare_workflow(&rename(deal));
                    let start = Instant::now();
                    let status = emulators::bitrix24::workflow::post_form(
                        &server.url(CODE),
                        &request.body(),
                    )
                    .unwrap();
                    assert_eq!(status, 200);
                    // Polled finely: the figure is the latency, within 2 ms.
                    while emu.event_sends_for(&request.event_token).is_empty() {
                        assert!(start.elapsed() < Duration::from_secs(300), "no reply");
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    latencies.lock().unwrap().push(start.elapsed());
                }
            });
        }
    });
    latencies.into_inner().unwrap()
}

const CODE: &str = "b24etl_update_deal";

/// The shipped «Изменение Сделки» renaming `deal`.
fn rename(deal: u64) -> Workflow {
    Workflow::new(CODE, &format!("DEAL_{deal}"))
        .with_properties(json!({"deal_id": deal.to_string(), "title": format!("Bench {deal}")}))
}

/// A directory with the shipped update_deal.yaml in `bp/`.
fn action_dir(s: &Scratch) -> std::path::PathBuf {
    let text = std::fs::read_to_string(root().join("pipelines/bp/update_deal.yaml")).unwrap();
    s.write("pipelines/bp/update_deal.yaml", &text);
    s.path("pipelines")
}

#[test]
#[ignore]
fn bench_bp_serve() {
    println!("in flight | workflows | median ms | p99 ms | portal requests/reply | serve VmHWM MB");
    for (in_flight, workflows) in [(1u64, 20u64), (8, 40), (50, 50)] {
        let emu = b24_with(portal_config(), portal_with_deals(workflows as usize));
        let s = Scratch::new();
        let (state, journal) = (s.state(), s.path("journal.jsonl"));
        let server = serve_bp(&emu, &action_dir(&s), &state, &journal, &[]);
        let before = emu.http_requests();
        let mut latencies = drive(&emu, &server, workflows, in_flight);
        let requests = emu.http_requests() - before;
        latencies.sort();
        assert_eq!(latencies.len() as u64, workflows);
        assert_eq!(emu.event_sends().len() as u64, workflows, "one reply each");
        println!(
            "{in_flight:>9} | {workflows:>9} | {:>9} | {:>6} | {:>21.2} | {:>14.1}",
            percentile(&latencies, 0.5).as_millis(),
            percentile(&latencies, 0.99).as_millis(),
            requests as f64 / workflows as f64,
            peak_rss_kb(&server) as f64 / 1024.0
        );
    }
}
