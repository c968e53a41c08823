//! The `xlsx` sink, read back with a real XLSX reader.

use calamine::{Data, DataType};

use crate::harness::*;
use crate::xlsx_read::*;

const ROWS: &str = r#"{"ID": "7", "TITLE": "ООО Ромашка", "DEPT": "Продажи", "SUM": "19999.99", "WHEN": "2024-08-15T10:38:21+03:00", "TAGS": ["a", "b"]}
{"ID": "8", "TITLE": "ИП Иванов", "DEPT": "Опт: Юг/Север", "SUM": 5, "WHEN": "2024-08-16", "TAGS": []}
{"ID": "9", "TITLE": "АО \"Кедр\"", "DEPT": "Продажи", "SUM": null, "WHEN": "", "TAGS": null}
"#;

fn pipeline(s: &Scratch, sink_extra: &str, portal: &str) -> std::path::PathBuf {
    s.write("in.jsonl", ROWS);
    let d = s.dir.path().display();
    s.write(
        "p.yaml",
        &format!(
            r##"name: report
settings:
  portal_url: "{portal}"
source:
  type: jsonl
  path: {d}/in.jsonl
  key: $.ID
sinks:
  - type: xlsx
    id: report
    path: "{d}/out/Отчёт {{{{ run.today }}}}.xlsx"
{sink_extra}    columns:
      - title: Компания
        field: TITLE
        link: "{{{{ settings.portal_url }}}}/crm/company/details/{{{{ record.ID }}}}/"
      - {{title: Сумма, field: SUM, type: number, format: "#,##0.00"}}
      - {{title: Номер, field: ID, type: integer}}
      - {{title: Дата и время, field: WHEN, type: datetime}}
      - {{title: Дата, field: WHEN, type: date}}
      - {{title: Метки, field: TAGS}}
      - {{title: Подпись, value: "{{{{ record.TITLE }}}} ({{{{ record.DEPT }}}})"}}
"##
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
fn typed_cells_header_links_and_file_name() {
    let s = Scratch::new();
    let p = pipeline(&s, "", "https://demo.bitrix24.ru");
    let journal = run_ok(&s, &p);
    let today = chrono::Local::now().format("%Y-%m-%d").to_string();
    let file = s.path(&format!("out/Отчёт {today}.xlsx"));
    assert!(file.exists(), "{}", file.display());
    assert_eq!(journal["counters"]["report.rows"], 3);
    assert!(
        journal["log"][0]
            .as_str()
            .unwrap()
            .contains("3 rows on 1 sheet(s)"),
        "{}",
        journal["log"]
    );

    let sheets = sheets(&file);
    assert_eq!(sheets.len(), 1);
    let sh = &sheets[0];
    assert_eq!(sh.name, "Отчёт");
    assert_eq!(
        sh.header(),
        [
            "Компания",
            "Сумма",
            "Номер",
            "Дата и время",
            "Дата",
            "Метки",
            "Подпись"
        ]
    );
    let r = &sh.data()[0];
    assert_eq!(r[0], Data::String("ООО Ромашка".into()));
    assert_eq!(r[1], Data::Float(19999.99));
    assert_eq!(r[2], Data::Float(7.0));
    let when = r[3].as_datetime().expect("a real date-time");
    assert_eq!(when.to_string(), "2024-08-15 10:38:21");
    assert!(matches!(r[4], Data::DateTime(_)));
    assert_eq!(
        r[4].as_datetime().unwrap().to_string(),
        "2024-08-15 00:00:00"
    );
    assert_eq!(r[5], Data::String("a, b".into()));
    assert_eq!(r[6], Data::String("ООО Ромашка (Продажи)".into()));
    // Empty values leave empty cells.
    let r = &sh.data()[2];
    assert_eq!(
        (&r[1], &r[3], &r[5]),
        (&Data::Empty, &Data::Empty, &Data::Empty)
    );

    let xml = &sheet_xml(&file)[0];
    assert_frozen_header_and_filter(xml, 'G', 4);
    assert!(
        xml.contains(r#"<c r="A1" s="1" t="inlineStr"><is><t>Компания</t>"#),
        "header cell"
    );
    assert_eq!(
        links(&file, 1),
        vec![
            "https://demo.bitrix24.ru/crm/company/details/7/",
            "https://demo.bitrix24.ru/crm/company/details/8/",
            "https://demo.bitrix24.ru/crm/company/details/9/"
        ]
    );
}

#[test]
fn a_sheet_per_value_and_no_links_without_a_portal() {
    let s = Scratch::new();
    let p = pipeline(&s, "    sheet_by: DEPT\n", "");
    run_ok(&s, &p);
    let file = only_xlsx(&s.path("out"));
    let sheets = sheets(&file);
    let names: Vec<&str> = sheets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["Продажи", "Опт  Юг Север"]);
    assert_eq!(sheets[0].data().len(), 2);
    assert_eq!(sheets[1].data().len(), 1);
    for (i, xml) in sheet_xml(&file).iter().enumerate() {
        assert_frozen_header_and_filter(xml, 'G', sheets[i].rows.len());
        assert!(!xml.contains("<hyperlinks>"), "links without a portal URL");
    }
}

#[test]
fn no_rows_still_give_a_workbook_with_its_header_and_dry_run_writes_none() {
    let s = Scratch::new();
    let p = pipeline(&s, "", "");
    s.write("in.jsonl", "");
    let out = run(etl()
        .arg("run")
        .arg(&p)
        .arg("--state")
        .arg(s.state())
        .arg("--dry-run"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!s.path("out").exists());
    assert!(
        stdout(&out).contains("[dry-run] report: would write"),
        "{}",
        stdout(&out)
    );
    run_ok(&s, &p);
    let file = only_xlsx(&s.path("out"));
    let sheets = sheets(&file);
    assert_eq!(sheets[0].rows.len(), 1);
    assert_eq!(sheets[0].header()[0], "Компания");
}

#[test]
fn large_reports_stream_and_keep_links_beyond_excels_limit() {
    let s = Scratch::new();
    let mut rows = String::new();
    let n = 70_000;
    for i in 0..n {
        rows.push_str(&format!("{{\"ID\": {i}, \"TITLE\": \"Компания {i}\", \"SUM\": {i}, \"WHEN\": \"2024-01-01T00:00:00+03:00\"}}\n"));
    }
    let p = pipeline(&s, "", "https://demo.bitrix24.ru");
    s.write("in.jsonl", &rows);
    let journal = run_ok(&s, &p);
    assert_eq!(journal["counters"]["report.rows"], n);
    let log = journal["log"].to_string();
    assert!(log.contains("4470 link(s) beyond Excel's 65530 hyperlinks per sheet were written as HYPERLINK formulas"), "{log}");
    let file = only_xlsx(&s.path("out"));
    let sheets = sheets(&file);
    assert_eq!(sheets[0].data().len(), n);
    assert_eq!(
        sheets[0].data()[n - 1][0],
        Data::String(format!("Компания {}", n - 1))
    );
    assert_eq!(links(&file, 1).len(), 65_530);
    let xml = &sheet_xml(&file)[0];
    assert!(xml.contains(r#"<f>HYPERLINK("https://demo.bitrix24.ru/crm/company/details/69999/","Компания 69999")</f>"#));
}
