//! Seed 003: `pipelines/comagic_sales.yaml`, the real `etl` binary against the orders API and
//! CoMagic Data API emulators.

use std::collections::BTreeMap;
use std::process::Output;
use std::time::Duration;

use emulators::comagic::*;
use emulators::kit::{Fault, FaultRule, Scope};
use emulators::orders::{OrdersConfig, OrdersEmulator, Payment, Sum, orders_demo};
use serde_json::{Value, json};

use crate::harness::*;

pub struct World {
    pub orders: OrdersEmulator,
    pub api: DataApiEmulator,
    pub scratch: Scratch,
}

/// Phones of the demo orders that have calls and payments (the ones that get a sale).
pub const TAGGED: [&str; 6] = [
    "74951234567",
    "79031112233",
    "79035551234",
    "79161234567",
    "79250001122",
    "79267654321",
];

impl World {
    pub fn new(config: DataApiConfig) -> World {
        let orders = orders_demo();
        let calls = calls_demo(&orders);
        World {
            orders: OrdersEmulator::start(OrdersConfig::default(), orders).unwrap(),
            api: DataApiEmulator::start(config, calls).unwrap(),
            scratch: Scratch::new(),
        }
    }

    pub fn command(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = etl();
        cmd.current_dir(root())
            .args([
                "run",
                "pipelines/comagic_sales.yaml",
                "--no-progress",
                "--state",
            ])
            .arg(self.scratch.state())
            .arg("--journal")
            .arg(self.scratch.path("journal.json"))
            .args(args)
            .env("COMAGIC_DATA_API_URL", self.api.url())
            .env("COMAGIC_ACCESS_TOKEN", self.api.token())
            .env("ORDERS_API_URL", self.orders.url())
            .env("ORDERS_API_TOKEN", self.orders.token())
            .env_remove("COMAGIC_LOGIN")
            .env_remove("COMAGIC_PASSWORD");
        cmd
    }

    /// Run the pipeline; (exit code, the journal it wrote, the process output).
    pub fn run(&self, args: &[&str]) -> (Option<i32>, Value, Output) {
        let _ = std::fs::remove_file(self.scratch.path("journal.json"));
        let out = run(&mut self.command(args));
        let journal = std::fs::read_to_string(self.scratch.path("journal.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null);
        (out.status.code(), journal, out)
    }

    pub fn run_ok(&self, args: &[&str]) -> Value {
        let (code, journal, out) = self.run(args);
        assert_eq!(
            code,
            Some(0),
            "stdout:\n{}\nstderr:\n{}",
            stdout(&out),
            stderr(&out)
        );
        assert_eq!(journal["success"], true, "{journal:#}");
        journal["journal"].clone()
    }

    /// Sales per phone: (communication id, sale values).
    pub fn sales(&self) -> BTreeMap<String, (u64, Vec<f64>)> {
        self.api
            .sold()
            .into_iter()
            .map(|c| {
                (
                    c.contact_phone_number.clone(),
                    (
                        c.communication_id,
                        c.sales.iter().map(|s| s.value).collect(),
                    ),
                )
            })
            .collect()
    }

    pub fn writes(&self) -> usize {
        self.api.requests_of("set.tag_sales").len()
            + self.api.requests_of("unset.tag_communications").len()
    }
}

fn counters(j: &Value) -> [i64; 5] {
    [
        "phones_analyzed",
        "communications_found",
        "tags_applied",
        "tags_removed_updated",
        "problem",
    ]
    .map(|k| j[k].as_i64().unwrap_or(-1))
}

/// The call the default rule picks: the latest answered call within 30 days before the first order.
fn expected_call(world: &World, phone: &str) -> Call {
    let first = first_orders(&world.orders.orders())[phone];
    world
        .api
        .calls_of(phone)
        .into_iter()
        .filter(|c| {
            !c.is_lost
                && c.start_time <= first
                && c.start_time >= first - chrono::Duration::days(30)
        })
        .max_by_key(|c| (c.start_time, c.id))
        .unwrap()
}

#[test]
fn first_run_tags_the_calls_orders_came_from() {
    let w = World::new(DataApiConfig::default());
    let j = w.run_ok(&["--set", "settings.update_db=true"]);
    let [analyzed, found, applied, updated, problem] = counters(&j);
    assert_eq!((analyzed, applied, updated, problem), (8, 6, 0, 0), "{j:#}");
    assert!(found >= 6, "{j:#}");

    let sales = w.sales();
    assert_eq!(sales.keys().map(String::as_str).collect::<Vec<_>>(), TAGGED);
    assert_eq!(
        sales["79161234567"].1,
        vec![5050.5],
        "1500 + 2300.50 + 1250 over three orders"
    );
    assert_eq!(
        sales["79035551234"].1,
        vec![4999.0],
        "3200 + 800, and 999 forty days back"
    );
    assert_eq!(sales["79031112233"].1, vec![1999.99]);
    for phone in TAGGED {
        let chosen = expected_call(&w, phone);
        assert_eq!(sales[phone].0, chosen.communication_id, "{phone}");
        assert!(
            j["log"]
                .as_array()
                .unwrap()
                .contains(&json!(format!("{phone}:{}", chosen.communication_id))),
            "{j:#}"
        );
    }
    // the services are the comment
    let c = w.api.communication(sales["79161234567"].0).unwrap();
    assert_eq!(
        c.sales[0].comment.as_deref(),
        Some("Общий анализ крови, Биохимический анализ крови, Коагулограмма")
    );
    assert!(c.sales[0].date_time >= c.start_time);
    let log = j["log"].as_array().unwrap();
    assert!(log.contains(&json!("79265554433:no payments")), "{j:#}");
    // one tag lookup, a one-row probe, one page for each of the two windows (79035551234's first
    // order is 40 days back), then one write per phone
    assert_eq!(w.api.requests_of("get.tags").len(), 1);
    assert_eq!(w.api.requests_of("get.calls_report").len(), 3);
    assert_eq!(w.api.requests_of("set.tag_sales").len(), 6);
}

#[test]
fn a_phone_without_calls_is_logged() {
    let w = World::new(DataApiConfig::default());
    let j = w.run_ok(&["--set", "settings.update_db=true"]);
    assert!(
        j["log"].as_array().unwrap().contains(&json!(format!(
            "{DEMO_PHONE_WITHOUT_CALLS}:no communication"
        ))),
        "{j:#}"
    );
    assert!(!w.sales().contains_key(DEMO_PHONE_WITHOUT_CALLS));
}

#[test]
fn second_run_changes_nothing_and_counts_problems() {
    let w = World::new(DataApiConfig::default());
    w.run_ok(&["--set", "settings.update_db=true"]);
    let before = (w.sales(), w.writes());
    // refreshing the store again must not count any order twice
    let j = w.run_ok(&["--set", "settings.update_db=true"]);
    assert_eq!(counters(&j)[2..], [0, 0, 6], "{j:#}");
    let j = w.run_ok(&[]);
    assert_eq!(counters(&j)[2..], [0, 0, 6], "{j:#}");
    assert_eq!((w.sales(), w.writes()), before);
}

#[test]
fn a_changed_sum_is_removed_and_set_again() {
    let w = World::new(DataApiConfig::default());
    w.run_ok(&["--set", "settings.update_db=true"]);
    let order = w
        .orders
        .orders()
        .into_iter()
        .find(|o| o.phone == "89031112233")
        .unwrap();
    assert!(w.orders.add_payment(
        order.id,
        Payment {
            sum: Sum::text("500.01"),
            paid_at: order.created_at + chrono::Duration::hours(30)
        }
    ));
    let j = w.run_ok(&["--set", "settings.update_db=true"]);
    assert_eq!(counters(&j)[2..], [0, 1, 5], "{j:#}");
    let sales = w.sales();
    assert_eq!(sales["79031112233"].1, vec![2500.0]);
    assert_eq!(w.api.requests_of("unset.tag_communications").len(), 1);
    assert_eq!(w.api.requests_of("set.tag_sales").len(), 7);
    let c = w.api.communication(sales["79031112233"].0).unwrap();
    assert_eq!(
        c.sales[0].date_time,
        (order.created_at + chrono::Duration::hours(30)).naive_local()
    );
}

#[test]
fn the_point_budget_is_waited_for_and_minus_32029_waited_out() {
    // 4 points a second: the run has to wait for the budget several times
    let w = World::new(DataApiConfig {
        minute_limit: 4,
        minute_window: Duration::from_secs(1),
        ..Default::default()
    });
    // and someone else spends it once under our feet
    w.api.rpc_fault(
        RpcFaultRule::new(
            Some("set.tag_sales"),
            RpcFault::Error {
                code: -32029,
                mnemonic: "limit_exceeded".into(),
            },
        )
        .after(2),
    );
    let j = w.run_ok(&["--set", "settings.update_db=true"]);
    assert_eq!(counters(&j)[2], 6, "{j:#}");
    let limited: Vec<_> = w
        .api
        .log()
        .into_iter()
        .filter(|r| r.error.as_ref().is_some_and(|e| e.0 == -32029))
        .collect();
    assert_eq!(
        limited.len(),
        1,
        "only the injected -32029: the budget itself was never overrun"
    );
    assert_eq!(w.api.stats().limit_exceeded, 0);
    assert!(w.sales().values().all(|(_, s)| s.len() == 1));
    assert_eq!(w.api.requests_of("set.tag_sales").len(), 7);
}

#[test]
fn an_expired_login_token_is_renewed_once() {
    let w = World::new(DataApiConfig::default());
    w.api
        .rpc_fault(RpcFaultRule::new(Some("set.tag_sales"), RpcFault::ExpireToken).after(3));
    let mut cmd = w.command(&["--set", "settings.update_db=true"]);
    cmd.env_remove("COMAGIC_ACCESS_TOKEN")
        .env("COMAGIC_LOGIN", &w.api.config().login)
        .env("COMAGIC_PASSWORD", &w.api.config().password);
    let out = run(&mut cmd);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let journal = read_json(&w.scratch.path("journal.json"));
    assert_eq!(counters(&journal["journal"])[2], 6, "{journal:#}");
    assert_eq!(w.api.stats().logins, 2);
    assert!(w.sales().values().all(|(_, s)| s.len() == 1));
    let all = format!("{}{}{journal}", stdout(&out), stderr(&out));
    assert!(!all.contains(&w.api.config().password));
}

#[test]
fn a_timed_out_sale_is_checked_not_repeated() {
    let w = World::new(DataApiConfig::default());
    // the third sale is made but its answer never arrives in time
    w.api.faults().add(
        FaultRule::new(Fault::Slow(Duration::from_secs(4)))
            .on(Scope::Only("set.tag_sales".to_string()))
            .after(2),
    );
    let j = w.run_ok(&[
        "--set",
        "settings.update_db=true",
        "--set",
        "connections.comagic.timeout_secs=1",
    ]);
    assert_eq!(counters(&j)[2], 6, "{j:#}");
    assert!(
        w.sales().values().all(|(_, s)| s.len() == 1),
        "{:?}",
        w.sales()
    );
    assert_eq!(
        w.api.requests_of("set.tag_sales").len(),
        6,
        "the timed-out sale was read back, not sent again"
    );

    // a sale refused by a proxy (never made) is read back and sent again
    let w = World::new(DataApiConfig::default());
    w.api.faults().add(
        FaultRule::new(Fault::Status(502))
            .on(Scope::Only("set.tag_sales".to_string()))
            .after(1),
    );
    let j = w.run_ok(&["--set", "settings.update_db=true"]);
    assert_eq!(counters(&j)[2], 6, "{j:#}");
    assert!(
        w.sales().values().all(|(_, s)| s.len() == 1),
        "{:?}",
        w.sales()
    );
    assert_eq!(w.api.stats().sales_made, 6);
}

#[test]
fn failures_answer_success_false_without_secrets() {
    let w = World::new(DataApiConfig::default());
    w.api.rpc_fault(RpcFaultRule::new(
        Some("get.tags"),
        RpcFault::Error {
            code: -32001,
            mnemonic: "access_token_blocked".into(),
        },
    ));
    let (code, journal, out) = w.run(&["--set", "settings.update_db=true"]);
    assert_eq!(code, Some(1), "{}", stderr(&out));
    assert_eq!(journal.as_object().unwrap().len(), 2, "{journal:#}");
    assert_eq!(journal["success"], false);
    let message = journal["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "ERROR: CoMagic Data API unavailable: get.tags: -32001 access_token_blocked"
        ),
        "{message}"
    );
    let all = format!("{}{}{journal}", stdout(&out), stderr(&out));
    assert!(
        !all.contains(w.api.token()) && !all.contains(w.orders.token()),
        "{all}"
    );
    assert_eq!(w.writes(), 0);
}

#[test]
fn dry_run_reads_but_writes_nothing() {
    let w = World::new(DataApiConfig::default());
    let (code, _, out) = w.run(&["--set", "settings.update_db=true", "--dry-run"]);
    assert_eq!(code, Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("[dry-run] comagic.tag_sales: tag communication"),
        "{}",
        stdout(&out)
    );
    assert_eq!(w.writes(), 0);
    // nor was the store written
    let (_, journal, _) = w.run(&[]);
    assert_eq!(journal["journal"]["phones_analyzed"], 0, "{journal:#}");
}

#[test]
fn the_report_source_reads_any_period_in_three_month_windows() {
    let t = |s: &str| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap();
    let calls: Vec<Call> = (0..73)
        .map(|i| {
            Call::new(
                i + 1,
                t("2024-06-01 10:00:00") + chrono::Duration::days(5 * i as i64),
                "79161234567",
                i % 4 == 0,
            )
        })
        .collect();
    let api = DataApiEmulator::start(DataApiConfig::default(), calls).unwrap();
    let s = Scratch::new();
    let p = s.write(
        "report.yaml",
        &format!(
            r#"name: calls
connections:
  cm: {{type: comagic.data_api, url: "${{env:COMAGIC_DATA_API_URL}}", access_token: "${{secret:COMAGIC_ACCESS_TOKEN}}"}}
source:
  type: comagic.report
  connection: cm
  method: get.calls_report
  date_from: "2024-06-01"
  date_till: "2025-06-30"
  fields: [id, start_time, is_lost]
  filter: {{field: is_lost, operator: "=", value: false}}
  page_size: 7
sinks:
  - {{type: jsonl, path: "{}/calls.jsonl"}}
"#,
            s.dir.path().display()
        ),
    );
    let out = run(etl()
        .arg("run")
        .arg(&p)
        .arg("--state")
        .arg(s.state())
        .env("COMAGIC_DATA_API_URL", api.url())
        .env("COMAGIC_ACCESS_TOKEN", api.token()));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows = read_jsonl(&s.path("calls.jsonl"));
    assert_eq!(rows.len(), 73 - 19);
    assert!(rows.iter().all(|r| r["is_lost"] == false));
    let log = api.requests_of("get.calls_report");
    assert!(log.iter().all(|r| r.error.is_none()), "{log:?}");
    let windows: std::collections::BTreeSet<(String, String)> = log
        .iter()
        .map(|r| {
            (
                r.params["date_from"].as_str().unwrap().to_string(),
                r.params["date_till"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        windows.len(),
        5,
        "13 months in 3-month windows: {windows:?}"
    );
}
