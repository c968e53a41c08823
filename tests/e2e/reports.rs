//! Seed 000: the three activity reports, run as shipped (`pipelines/*.yaml`) against an emulated
//! Bitrix24 portal and a real SMTP server, workbooks read back with calamine and the sheet XML,
//! e-mails parsed back.

use calamine::{Data, DataType};
use chrono::{Duration, Local};
use emulators::bitrix24::Portal;
use serde_json::json;

use crate::harness::*;
use crate::smtp::{Options, SmtpServer};
use crate::xlsx_read::*;

const PORTAL_URL: &str = "https://demo.bitrix24.ru";

/// Noon of the day `days` before today (negative: after), local time, as Bitrix24 writes it:
/// whole calendar days from now whatever the time the test runs.
fn ago(days: i64) -> String {
    let day = Local::now().date_naive() - Duration::days(days);
    let noon = day
        .and_hms_opt(12, 0, 0)
        .unwrap()
        .and_local_timezone(Local)
        .earliest()
        .unwrap();
    noon.format("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

fn today() -> String {
    Local::now().format("%Y-%m-%d").to_string()
}

/// A portal in the machine's time zone, with departments and people:
/// department 1 "Отдел продаж" (head: Котов, who works in department 3), 2 "Маркетинг" (head: Ким),
/// 3 "Склад". Петров and Ким (also in 2) are in 1; Сидорова is in 1 but dismissed; Лис is in 2
/// and has no e-mail; Орлов is in 3.
fn portal() -> Portal {
    let mut p = Portal::new();
    p.offset_secs = Local::now().offset().local_minus_utc();
    for (id, name, head) in [(1, "Отдел продаж", 3), (2, "Маркетинг", 6), (3, "Склад", 5)]
    {
        p.insert("department", row(json!({"ID": id.to_string(), "NAME": name, "SORT": 100 * id, "UF_HEAD": head.to_string()})));
    }
    for (id, name, last, active, email, deps) in [
        (1, "Иван", "Петров", true, "ivan@example.ru", vec![1]),
        (2, "Мария", "Сидорова", false, "maria@example.ru", vec![1]),
        (3, "Олег", "Котов", true, "oleg@example.ru", vec![3]),
        (4, "Анна", "Лис", true, "", vec![2]),
        (5, "Пётр", "Орлов", true, "petr@example.ru", vec![3]),
        (6, "Ольга", "Ким", true, "olga@example.ru", vec![1, 2]),
    ] {
        p.insert(
            "user",
            row(json!({"ID": id.to_string(), "ACTIVE": active, "NAME": name, "LAST_NAME": last, "EMAIL": email, "UF_DEPARTMENT": deps, "USER_TYPE": "employee"})),
        );
    }
    p
}

fn company(p: &mut Portal, id: u64, assigned: u64) {
    p.insert("company", row(json!({"ID": id.to_string(), "TITLE": format!("Компания {id}"), "ASSIGNED_BY_ID": assigned.to_string()})));
}

fn contact(p: &mut Portal, id: u64, companies: &[u64]) {
    p.insert(
        "contact",
        row(json!({"ID": id.to_string(), "NAME": format!("Контакт {id}"), "COMPANY_ID": companies.first().map(|c| c.to_string())})),
    );
    for (i, c) in companies.iter().enumerate() {
        p.link_contact_company(id, *c, i == 0);
    }
}

fn deal(p: &mut Portal, id: u64, company: Option<u64>, contacts: &[u64]) {
    p.insert(
        "deal",
        row(json!({"ID": id.to_string(), "TITLE": format!("Сделка {id}"), "COMPANY_ID": company.map(|c| c.to_string()).unwrap_or_default(), "CONTACT_ID": contacts.first().map(|c| c.to_string())})),
    );
    for (i, c) in contacts.iter().enumerate() {
        p.link_deal_contact(id, *c, i == 0);
    }
}

fn lead(p: &mut Portal, id: u64, company: u64) {
    p.insert("lead", row(json!({"ID": id.to_string(), "TITLE": format!("Лид {id}"), "COMPANY_ID": company.to_string()})));
}

/// An activity bound to (owner type, owner id), `days` ago; its deadline is its start.
fn activity(
    p: &mut Portal,
    id: u64,
    owner: (u64, u64),
    days: i64,
    completed: bool,
    responsible: u64,
    type_id: u64,
) {
    activity_at(
        p,
        id,
        owner,
        (ago(days), ago(days + 1)),
        completed,
        responsible,
        type_id,
    );
}

/// An activity bound to (owner type, owner id) at `when` (start, end, deadline), created at `created`.
fn activity_at(
    p: &mut Portal,
    id: u64,
    owner: (u64, u64),
    (when, created): (String, String),
    completed: bool,
    responsible: u64,
    type_id: u64,
) {
    p.insert(
        "activity",
        row(json!({"ID": id.to_string(), "OWNER_TYPE_ID": owner.0.to_string(), "OWNER_ID": owner.1.to_string(), "TYPE_ID": type_id.to_string(),
            "SUBJECT": format!("Дело {id}"), "COMPLETED": if completed { "Y" } else { "N" }, "RESPONSIBLE_ID": responsible.to_string(),
            "START_TIME": when, "END_TIME": when, "DEADLINE": when, "CREATED": created, "LAST_UPDATED": when})),
    );
}

const COMPANY: u64 = 4;
const CONTACT: u64 = 3;
const DEAL: u64 = 2;
const LEAD: u64 = 1;

/// The portal of the report tests: every link rule, the department rules, the windows.
fn full_portal() -> Portal {
    let mut p = portal();
    for c in 1..=8 {
        company(&mut p, c, if c % 2 == 0 { 1 } else { 6 });
    }
    contact(&mut p, 10, &[2, 3]);
    contact(&mut p, 11, &[5]);
    contact(&mut p, 12, &[]);
    deal(&mut p, 20, Some(4), &[11]);
    deal(&mut p, 21, None, &[12]);
    lead(&mut p, 30, 6);
    activity(&mut p, 1, (COMPANY, 1), 2, true, 1, 2); // company 1
    activity(&mut p, 6, (COMPANY, 1), 10, true, 1, 1); // company 1, outside 7 days
    activity(&mut p, 2, (CONTACT, 10), 3, true, 6, 4); // contact -> companies 2 and 3
    activity(&mut p, 3, (DEAL, 20), 4, false, 1, 3); // deal -> company 4, and contact 11's company 5
    activity(&mut p, 4, (LEAD, 30), 1, false, 3, 2); // lead -> company 6 (by a head from another department)
    activity(&mut p, 5, (CONTACT, 12), 5, true, 1, 2); // contact without companies -> none
    activity(&mut p, 7, (DEAL, 21), 6, false, 4, 1); // deal without company, contact without companies -> none
    activity(&mut p, 8, (COMPANY, 8), 200, true, 1, 2); // outside half a year
    activity(&mut p, 10, (COMPANY, 2), -3, false, 1, 1); // planned: not activity yet, deadline not passed
    activity(&mut p, 11, (COMPANY, 1), 1, true, 5, 2); // by someone from department 3
    activity(&mut p, 12, (COMPANY, 3), 2, true, 2, 2); // by a dismissed employee
    p
}

struct Run {
    s: Scratch,
    smtp: SmtpServer,
    journal: serde_json::Value,
    file: std::path::PathBuf,
}

fn run_report(pipeline: &str, portal: Portal, departments: &str) -> Run {
    run_report_in(pipeline, portal, departments, None)
}

/// [`run_report`] with the machine's time zone set for the run (`TZ`, a POSIX zone).
fn run_report_in(pipeline: &str, portal: Portal, departments: &str, tz: Option<&str>) -> Run {
    let s = Scratch::new();
    let smtp = SmtpServer::start(s.dir.path(), Options::default());
    let emu = b24(portal);
    let out = run(etl_run(
        &root().join("pipelines").join(pipeline),
        &s.state(),
        Some(&emu),
        None,
    )
    .arg("--journal")
    .arg(s.path("journal.json"))
    .args(["--set", &format!("settings.department_ids={departments}")])
    .env("SMTP_URL", smtp.url("smtp"))
    .env("REPORT_FROM", "Отчёты CRM <crm@example.ru>")
    .env("REPORT_OUTPUT_DIR", s.path("reports"))
    .env("B24_PORTAL_URL", PORTAL_URL)
    .envs(tz.map(|tz| ("TZ", tz))));
    assert_success(&out);
    let journal = read_json(&s.path("journal.json"));
    let file = only_xlsx(&s.path("reports"));
    Run {
        s,
        smtp,
        journal,
        file,
    }
}

fn text(d: &Data) -> String {
    match d {
        Data::Empty => String::new(),
        other => other.to_string(),
    }
}

/// (sheet, rows as texts of the named columns).
fn table(file: &std::path::Path, columns: &[&str]) -> Vec<(String, Vec<Vec<String>>)> {
    sheets(file)
        .iter()
        .map(|sh| {
            let idx: Vec<usize> = columns.iter().map(|c| sh.col(c)).collect();
            (
                sh.name.clone(),
                sh.data()
                    .iter()
                    .map(|r| idx.iter().map(|i| text(&r[*i])).collect())
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn companies_without_activity_resolves_every_link_and_sorts_longest_first() {
    let r = run_report("companies_without_activity.yaml", full_portal(), "[1, 2]");
    assert_eq!(
        r.file.file_name().unwrap().to_string_lossy(),
        format!("Компании без активности {}.xlsx", today())
    );
    let sh = &sheets(&r.file)[0];
    assert_eq!(sh.name, "Компании");
    assert_eq!(
        sh.header(),
        [
            "Компания",
            "Ответственный",
            "Дней без активности",
            "Последняя активность",
            "Тип активности",
            "Тема активности",
            "Активностей за период"
        ]
    );
    let got = table(
        &r.file,
        &[
            "Компания",
            "Дней без активности",
            "Тема активности",
            "Активностей за период",
            "Ответственный",
        ],
    );
    let expected: Vec<Vec<&str>> = vec![
        // none within half a year: the longest, first (company 8's activity is 200 days old;
        // company 2's only other one is still planned)
        vec!["Компания 7", "", "", "0", "Ким Ольга"],
        vec!["Компания 8", "", "", "0", "Петров Иван"],
        // deal 20: its company 4, and company 5 of its contact 11
        vec!["Компания 4", "4", "Дело 3", "1", "Петров Иван"],
        vec!["Компания 5", "4", "Дело 3", "1", "Ким Ольга"],
        // contact 10: both of its companies
        vec!["Компания 2", "3", "Дело 2", "1", "Петров Иван"],
        vec!["Компания 3", "2", "Дело 12", "2", "Ким Ольга"],
        // bound to the company; any responsible counts here
        vec!["Компания 1", "1", "Дело 11", "3", "Ким Ольга"],
        // lead 30's company
        vec!["Компания 6", "1", "Дело 4", "1", "Петров Иван"],
    ];
    assert_eq!(
        got[0].1,
        expected
            .iter()
            .map(|r| r.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    );

    // Types: numbers are numbers, the date a real date-time, links to the company cards.
    let first_with = &sh.data()[2];
    assert_eq!(first_with[sh.col("Дней без активности")], Data::Float(4.0));
    let last = first_with[sh.col("Последняя активность")]
        .as_datetime()
        .expect("a date-time");
    let expected =
        chrono::NaiveDateTime::parse_from_str(&ago(4)[..19], "%Y-%m-%dT%H:%M:%S").unwrap();
    assert!(
        (last - expected).num_seconds().abs() <= 1,
        "{last} vs {expected}"
    );
    assert_eq!(
        first_with[sh.col("Тип активности")],
        Data::String("Задача".into())
    );
    let links = links(&r.file, 1);
    assert_eq!(links[0], format!("{PORTAL_URL}/crm/company/details/7/"));
    assert_eq!(links.len(), 8);
    assert_frozen_header_and_filter(&sheet_xml(&r.file)[0], 'G', 9);

    // Each recipient got the workbook; Лис has no address, Сидорова is dismissed, Орлов elsewhere.
    let c = &r.journal["counters"];
    assert_eq!(
        (
            c["email.sent"].as_i64(),
            c["email.no_address"].as_i64(),
            c["email.refused"].as_i64()
        ),
        (Some(3), Some(1), Some(0)),
        "{c}"
    );
    assert!(
        r.journal["log"]
            .to_string()
            .contains("Лис Анна (ID 4) has no e-mail address"),
        "{}",
        r.journal["log"]
    );
    let mails = r.smtp.messages();
    let to: Vec<&str> = mails.iter().map(|m| m.to.as_str()).collect();
    assert_eq!(
        to,
        [
            "Ким Ольга <olga@example.ru>",
            "Котов Олег <oleg@example.ru>",
            "Петров Иван <ivan@example.ru>"
        ]
    );
    let bytes = std::fs::read(&r.file).unwrap();
    for m in &mails {
        assert_eq!(m.subject, format!("Компании без активности на {}", today()));
        assert_eq!(m.from, "Отчёты CRM <crm@example.ru>");
        assert_eq!(m.attachments.len(), 1);
        assert_eq!(
            m.attachments[0].0,
            format!("Компании без активности {}.xlsx", today())
        );
        assert!(m.attachments[0].2 == bytes);
        assert!(m.body.contains("(8 компаний)"), "{}", m.body);
    }
    assert!(
        mails[2].body.starts_with("Здравствуйте, Иван!"),
        "{}",
        mails[2].body
    );
    drop(r.s);
}

#[test]
fn completed_activities_of_the_departments_with_their_companies_a_sheet_per_department() {
    let r = run_report("completed_activities.yaml", full_portal(), "[1, 2]");
    assert_eq!(
        r.file.file_name().unwrap().to_string_lossy(),
        format!("Выполненные активности {}.xlsx", today())
    );
    let got = table(
        &r.file,
        &["Ответственный", "Компания", "Тема", "Тип", "Привязана к"],
    );
    let sheet = |name: &str| {
        got.iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no sheet {name}"))
            .1
            .clone()
    };
    let rows = |v: Vec<Vec<&str>>| {
        v.into_iter()
            .map(|r| r.into_iter().map(str::to_string).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    };
    assert_eq!(got.len(), 2, "{got:?}");
    // Ким works in both departments; a contact's activity counts for both of its companies; one
    // that reaches no company is listed without one; Котов (head) has none completed; activities
    // of the dismissed Сидорова, of Орлов (department 3) and older than 7 days are not here.
    assert_eq!(
        sheet("Отдел продаж"),
        rows(vec![
            vec!["Ким Ольга", "Компания 2", "Дело 2", "Письмо", "Контакт 10"],
            vec!["Ким Ольга", "Компания 3", "Дело 2", "Письмо", "Контакт 10"],
            vec![
                "Петров Иван",
                "Компания 1",
                "Дело 1",
                "Звонок",
                "Компания 1"
            ],
            vec!["Петров Иван", "", "Дело 5", "Звонок", "Контакт 12"],
        ])
    );
    assert_eq!(
        sheet("Маркетинг"),
        rows(vec![
            vec!["Ким Ольга", "Компания 2", "Дело 2", "Письмо", "Контакт 10"],
            vec!["Ким Ольга", "Компания 3", "Дело 2", "Письмо", "Контакт 10"]
        ])
    );
    let sh = &sheets(&r.file)[0];
    for col in ["Начало", "Окончание", "Крайний срок"] {
        assert!(
            matches!(sh.data()[0][sh.col(col)], Data::DateTime(_)),
            "{col}"
        );
    }
    for xml in sheet_xml(&r.file) {
        assert!(xml.contains(r#"state="frozen""#) && xml.contains("<autoFilter"));
    }
    // The row without a company has no link.
    assert_eq!(links(&r.file, 1).len(), 3);
    assert_eq!(r.smtp.messages().len(), 3);
}

#[test]
fn expired_activities_with_days_overdue_most_overdue_first() {
    let r = run_report("expired_activities.yaml", full_portal(), "[1, 2]");
    let got = table(
        &r.file,
        &["Ответственный", "Компания", "Тема", "Дней просрочки"],
    );
    let rows = |v: Vec<Vec<&str>>| {
        v.into_iter()
            .map(|r| r.into_iter().map(str::to_string).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    };
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["Отдел продаж", "Маркетинг"]);
    // A deal's activity: its company and its contact's company; a head's activity (Котов heads
    // department 1 from department 3); planned activities are not overdue.
    assert_eq!(
        got[0].1,
        rows(vec![
            vec!["Петров Иван", "Компания 4", "Дело 3", "4"],
            vec!["Петров Иван", "Компания 5", "Дело 3", "4"],
            vec!["Котов Олег", "Компания 6", "Дело 4", "1"]
        ])
    );
    assert_eq!(got[1].1, rows(vec![vec!["Лис Анна", "", "Дело 7", "6"]]));
    let sh = &sheets(&r.file)[0];
    assert_eq!(sh.data()[0][sh.col("Дней просрочки")], Data::Float(4.0));
    assert_eq!(r.journal["counters"]["email.sent"], 3);
}

/// The resolution rules one at a time: an activity bound to one entity, the companies it counts for.
fn companies_of(owner: (u64, u64), setup: impl FnOnce(&mut Portal)) -> Vec<String> {
    let mut p = portal();
    for c in 1..=6 {
        company(&mut p, c, 1);
    }
    setup(&mut p);
    activity(&mut p, 1, owner, 1, true, 1, 2);
    let r = run_report("completed_activities.yaml", p, "[1]");
    let got = table(&r.file, &["Компания"]);
    got[0].1.iter().map(|r| r[0].clone()).collect()
}

#[test]
fn rule_company_is_that_company() {
    assert_eq!(companies_of((COMPANY, 3), |_| {}), ["Компания 3"]);
}

#[test]
fn rule_contact_is_each_of_its_companies() {
    assert_eq!(
        companies_of((CONTACT, 10), |p| contact(p, 10, &[2, 5])),
        ["Компания 2", "Компания 5"]
    );
}

#[test]
fn rule_deal_is_its_company_and_its_contacts_companies() {
    let got = companies_of((DEAL, 20), |p| {
        contact(p, 10, &[2]);
        contact(p, 11, &[3, 4]);
        deal(p, 20, Some(1), &[10, 11]);
    });
    assert_eq!(
        got,
        ["Компания 1", "Компания 2", "Компания 3", "Компания 4"]
    );
    // The same company through two links counts once.
    let got = companies_of((DEAL, 20), |p| {
        contact(p, 10, &[1]);
        deal(p, 20, Some(1), &[10]);
    });
    assert_eq!(got, ["Компания 1"]);
}

#[test]
fn rule_lead_is_its_company() {
    assert_eq!(companies_of((LEAD, 30), |p| lead(p, 30, 6)), ["Компания 6"]);
}

#[test]
fn rule_no_company_is_listed_without_one() {
    assert_eq!(companies_of((CONTACT, 10), |p| contact(p, 10, &[])), [""]);
    assert_eq!(companies_of((DEAL, 20), |p| deal(p, 20, None, &[])), [""]);
}

/// Offsets (portal, machine) in seconds east of UTC that put the portal's clock at about 01:30
/// now, whatever the time the test runs, and the machine's three hours behind it (a Moscow
/// portal seen from a UTC server): the machine's date is still the portal's yesterday.
fn portal_just_past_midnight() -> (i32, i32) {
    use chrono::Timelike;
    let utc = chrono::Utc::now().num_seconds_from_midnight() as i32;
    let mut portal = (90 * 60 - utc).rem_euclid(86_400) / 60 * 60;
    if portal > 13 * 3600 + 1800 {
        portal -= 86_400;
    }
    (portal, portal - 3 * 3600)
}

/// A fixed zone for `TZ`: POSIX counts hours west of UTC.
fn posix_tz(offset_secs: i32) -> String {
    let sign = if offset_secs >= 0 { '-' } else { '+' };
    let abs = offset_secs.unsigned_abs();
    format!("ETL{sign}{}:{:02}", abs / 3600, abs % 3600 / 60)
}

/// `days` days and 13 minutes before now, written as the portal writes it (with its offset),
/// and a day earlier (for the creation time).
fn before_now(days: i64, offset_secs: i32) -> (String, String) {
    let zone = chrono::FixedOffset::east_opt(offset_secs).unwrap();
    let at = chrono::Utc::now() - Duration::days(days) - Duration::minutes(13);
    let write = |t: chrono::DateTime<chrono::Utc>| {
        t.with_timezone(&zone)
            .format("%Y-%m-%dT%H:%M:%S%:z")
            .to_string()
    };
    (write(at), write(at - Duration::days(1)))
}

/// Days are counted on the portal's calendar: an activity 7 days and 13 minutes before a run at
/// 01:30 portal time is 7 days old, also when the machine's clock (three hours behind) still
/// shows the day before.
#[test]
fn days_without_activity_count_on_the_portals_calendar_at_the_day_boundary() {
    let (portal_offset, machine_offset) = portal_just_past_midnight();
    let mut p = portal();
    p.offset_secs = portal_offset;
    company(&mut p, 1, 1);
    company(&mut p, 2, 1);
    let (seven, created) = before_now(7, portal_offset);
    activity_at(&mut p, 1, (COMPANY, 1), (seven, created), true, 1, 2);
    let tz = posix_tz(machine_offset);
    let r = run_report_in("companies_without_activity.yaml", p, "[1]", Some(&tz));
    let got = table(&r.file, &["Компания", "Дней без активности"]);
    assert_eq!(
        got[0].1,
        [["Компания 2", ""], ["Компания 1", "7"]].map(|r| r.map(str::to_string).to_vec()),
        "portal offset {portal_offset}s, TZ={tz}"
    );
}

/// The same for the days overdue: a deadline 2 days and 13 minutes before a run at 01:30 portal
/// time is 2 days overdue.
#[test]
fn days_overdue_count_on_the_portals_calendar_at_the_day_boundary() {
    let (portal_offset, machine_offset) = portal_just_past_midnight();
    let mut p = portal();
    p.offset_secs = portal_offset;
    company(&mut p, 1, 1);
    activity_at(
        &mut p,
        1,
        (COMPANY, 1),
        before_now(2, portal_offset),
        false,
        1,
        2,
    );
    let tz = posix_tz(machine_offset);
    let r = run_report_in("expired_activities.yaml", p, "[1]", Some(&tz));
    let got = table(&r.file, &["Компания", "Тема", "Дней просрочки"]);
    assert_eq!(
        got[0].1,
        [["Компания 1", "Дело 1", "2"]].map(|r| r.map(str::to_string).to_vec()),
        "portal offset {portal_offset}s, TZ={tz}"
    );
}
