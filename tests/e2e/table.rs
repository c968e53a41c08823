//! The `table` source: whole data sets read from other sources, operations run on polars.

use serde_json::json;

use crate::harness::*;

const ORDERS: &str = r#"{"ID": "1", "CLIENT": "10", "SUM": "100.50", "DATE": "2024-03-01T10:00:00+03:00", "TAGS": ["a", "b"]}
{"ID": "2", "CLIENT": "10", "SUM": "50", "DATE": "2024-03-05T09:00:00+03:00", "TAGS": []}
{"ID": "3", "CLIENT": "11", "SUM": "7", "DATE": "2024-02-01T00:00:00+03:00", "TAGS": ["c"]}
{"ID": "4", "CLIENT": "99", "SUM": "oops", "DATE": "", "TAGS": false}
"#;

const CLIENTS: &str = r#"{"ID": 10, "NAME": "Альфа", "REGION": "Север"}
{"ID": 11, "NAME": "Бета", "REGION": "Юг"}
{"ID": 12, "NAME": "Гамма", "REGION": "Юг"}
"#;

fn pipeline(s: &Scratch, tables: &str, extra: &str) -> std::path::PathBuf {
    s.write("orders.jsonl", ORDERS);
    s.write("clients.jsonl", CLIENTS);
    let d = s.dir.path().display();
    s.write(
        "p.yaml",
        &format!(
            r#"name: t
source:
  type: table
  inputs:
    orders:
      source: {{type: jsonl, path: {d}/orders.jsonl}}
      columns: {{ID: int, CLIENT: int, SUM: float, DATE: datetime, TAGS: "list[str]"}}
    clients:
      source: {{type: jsonl, path: {d}/clients.jsonl}}
{tables}{extra}
sinks:
  - type: jsonl
    path: {d}/out.jsonl
"#
        ),
    )
}

fn run_ok(s: &Scratch, p: &std::path::Path) -> serde_json::Value {
    let out = run(etl()
        .arg("run")
        .arg(p)
        .arg("--state")
        .arg(s.state())
        .arg("--journal")
        .arg(s.path("j.json")));
    assert_success(&out);
    read_json(&s.path("j.json"))
}

#[test]
fn join_group_and_sort_build_one_row_per_client() {
    let s = Scratch::new();
    let p = pipeline(
        &s,
        r#"  tables:
    per_client:
      from: clients
      ops:
        - join:
            with: orders
            left_on: ID
            right_on: CLIENT
            columns: [{ORDER_ID: ID}, SUM, DATE]
        - group_by:
            by: [ID, NAME]
            agg:
              ORDERS: count(ORDER_ID)
              TOTAL: sum(SUM)
              LAST: max(DATE)
              FIRST_ORDER: first_by(ORDER_ID, DATE)
        - with_columns:
            LABEL: "concat(NAME, ' (', str(ORDERS), ')')"
        - sort: {by: [ORDERS, NAME], descending: [true, false]}
"#,
        "  key: ID\n",
    );
    let journal = run_ok(&s, &p);
    let rows = read_jsonl(&s.path("out.jsonl"));
    assert_eq!(
        rows,
        vec![
            json!({"ID": 10, "NAME": "Альфа", "ORDERS": 2, "TOTAL": 150.5, "LAST": "2024-03-05T09:00:00", "FIRST_ORDER": 1, "LABEL": "Альфа (2)"}),
            json!({"ID": 11, "NAME": "Бета", "ORDERS": 1, "TOTAL": 7.0, "LAST": "2024-02-01T00:00:00", "FIRST_ORDER": 3, "LABEL": "Бета (1)"}),
            json!({"ID": 12, "NAME": "Гамма", "ORDERS": 0, "TOTAL": 0.0, "LAST": null, "FIRST_ORDER": null, "LABEL": "Гамма (0)"}),
        ]
    );
    assert_eq!(journal["records"][0]["key"], "10");
    assert_eq!(journal["counters"]["table.orders.rows"], 4);
    let log = journal["log"].to_string();
    assert!(
        log.contains("1 value(s) of SUM could not be read as Float"),
        "{log}"
    );
}

#[test]
fn explode_filter_concat_and_unique() {
    let s = Scratch::new();
    let p = pipeline(
        &s,
        r#"  tables:
    tags:
      from: orders
      ops:
        - explode: TAGS
        - filter: is_not_null(TAGS) and CLIENT in [10, 11]
        - select: [{ORDER: ID}, {VALUE: TAGS}]
    regions:
      from: clients
      ops:
        - select: [{ORDER: ID * 0}, {VALUE: REGION}]
    all:
      from: tags
      ops:
        - concat: regions
        - unique: {on: VALUE, keep: first}
        - sort: {by: VALUE}
"#,
        "",
    );
    run_ok(&s, &p);
    let values: Vec<String> = read_jsonl(&s.path("out.jsonl"))
        .iter()
        .map(|r| r["VALUE"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(values, vec!["a", "b", "c", "Север", "Юг"]);
}

#[test]
fn published_tables_and_days_relative_to_the_run() {
    let s = Scratch::new();
    let p = pipeline(
        &s,
        r#"  tables:
    recent:
      from: orders
      ops:
        - filter: DATE >= days_ago(settings.window_days)
        - with_columns: {AGE: days_since(DATE)}
  publish: [clients]
"#,
        "",
    );
    // Orders are from 2024; a window wide enough to reach them from today.
    let out = run(etl()
        .arg("run")
        .arg(&p)
        .arg("--state")
        .arg(s.state())
        .args(["--set", "settings.window_days=100000"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows = read_jsonl(&s.path("out.jsonl"));
    assert_eq!(rows.len(), 3);
    let today = chrono::Local::now().date_naive();
    let expected = (today - chrono::NaiveDate::from_ymd_opt(2024, 3, 1).unwrap()).num_days();
    assert_eq!(rows[0]["AGE"], expected);
    let out = run(etl()
        .arg("run")
        .arg(&p)
        .arg("--state")
        .arg(s.state())
        .args(["--set", "settings.window_days=1"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("0 records"), "{}", stdout(&out));
}

#[test]
fn validate_locates_wrong_columns_and_expressions() {
    let s = Scratch::new();
    let p = pipeline(
        &s,
        r#"  tables:
    x:
      from: orders
      ops:
        - filter: CLIENTT == 1
"#,
        "",
    );
    let out = run(etl().arg("validate").arg(&p));
    assert_eq!(out.status.code(), Some(2));
    let text = stdout(&out);
    let line = format!(
        "{}:14:11: table operation failed: not found: unable to find column \"CLIENTT\"",
        p.display()
    );
    assert!(text.contains(&line), "{text}");
    assert!(text.contains("Did you mean \"CLIENT\"?"), "{text}");

    let p = pipeline(
        &s,
        "  tables:\n    x:\n      from: orders\n      ops:\n        - with_columns: {A: \"days_snce(DATE)\"}\n",
        "",
    );
    let text = stdout(&run(etl().arg("validate").arg(&p)));
    assert!(
        text.contains(":14:30: unknown function `days_snce` (did you mean `days_since`?)"),
        "{text}"
    );

    let p = pipeline(&s, "  tables:\n    x:\n      from: order\n", "");
    let text = stdout(&run(etl().arg("validate").arg(&p)));
    assert!(
        text.contains(":12:13: unknown table `order` (did you mean `orders`?)"),
        "{text}"
    );
}
