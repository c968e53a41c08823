//! Data generators: `Portal::demo()` (a small hand-shaped portal in the form of seed 001, for
//! the sandbox and e2e tests) and deterministic bulk generators for benchmarks.

use super::cell::{Cell, MultiItem};
use super::data::{Portal, Row, Table};
use super::dates::{civil_from_days, days_from_civil, format_date, format_ts, parse_datetime};
use super::schema::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// Instant the demo portal is anchored at: 2024-06-10T12:00:00+03:00.
pub const DEMO_NOW: i64 = 1_718_010_000;

const MALE_FIRST: [&str; 12] = [
    "Василий",
    "Дмитрий",
    "Сергей",
    "Павел",
    "Алексей",
    "Игорь",
    "Андрей",
    "Михаил",
    "Олег",
    "Николай",
    "Кирилл",
    "Артём",
];
const FEMALE_FIRST: [&str; 12] = [
    "Елена",
    "Ирина",
    "Анна",
    "Ольга",
    "Татьяна",
    "Наталья",
    "Мария",
    "Светлана",
    "Юлия",
    "Екатерина",
    "Дарья",
    "Полина",
];
const LAST: [(&str, &str); 12] = [
    ("Зарудный", "Зарудная"),
    ("Свеклов", "Свеклова"),
    ("Кузнецов", "Кузнецова"),
    ("Орлов", "Орлова"),
    ("Морозов", "Морозова"),
    ("Волков", "Волкова"),
    ("Лебедев", "Лебедева"),
    ("Соколов", "Соколова"),
    ("Новиков", "Новикова"),
    ("Козлов", "Козлова"),
    ("Петров", "Петрова"),
    ("Смирнов", "Смирнова"),
];
const CHILD_FIRST: [&str; 12] = [
    "Кирилл",
    "Маша",
    "Артём",
    "Соня",
    "Миша",
    "Алиса",
    "Егор",
    "Вера",
    "Лев",
    "Ева",
    "Тимофей",
    "Варя",
];
const TRANSLIT: [&str; 12] = [
    "zarudny",
    "sveklov",
    "kuznetsov",
    "orlov",
    "morozov",
    "volkov",
    "lebedev",
    "sokolov",
    "novikov",
    "kozlov",
    "petrov",
    "smirnov",
];

/// (PRODUCT_ID, PRODUCT_NAME, PRICE_BRUTTO, DISCOUNT_SUM, MEASURE_NAME)
const PRODUCTS: [(u64, &str, f64, f64, &str); 6] = [
    (60130, " 6 КМС индивидуальные 45 мин", 9000.0, 300.0, "мес"),
    (60132, "8 групповых занятий", 6400.0, 0.0, "шт"),
    (60134, "12 групповых занятий", 9000.0, 900.0, "шт"),
    (60140, "Онлайн групповое 4 занятия", 3200.0, 0.0, "шт"),
    (60142, "Онлайн индивидуальное 45 мин", 2500.0, 0.0, "шт"),
    (60150, "Разовое занятие", 1200.0, 0.0, "шт"),
];

fn ts(s: &str) -> i64 {
    parse_datetime(s, 3 * 3600).expect("valid literal")
}

fn obj(v: Value) -> Row {
    match v {
        Value::Object(m) => m,
        _ => Row::new(),
    }
}

/// A product row in the crm.deal.productrows.get shape (mixed number/string types).
pub fn product_row(product: usize, sort: u64) -> Row {
    let (pid, name, brutto, discount, measure) = PRODUCTS[product % PRODUCTS.len()];
    let price = brutto - discount;
    let rate = if brutto > 0.0 {
        (discount / brutto * 10_000.0).round() / 100.0
    } else {
        0.0
    };
    obj(json!({
        "PRODUCT_ID": pid,
        "PRODUCT_NAME": name,
        "ORIGINAL_PRODUCT_NAME": name,
        "PRODUCT_DESCRIPTION": null,
        "PRICE": price,
        "PRICE_EXCLUSIVE": price,
        "PRICE_NETTO": brutto,
        "PRICE_BRUTTO": brutto,
        "PRICE_ACCOUNT": format!("{price:.2}"),
        "QUANTITY": 1,
        "DISCOUNT_TYPE_ID": 1,
        "DISCOUNT_RATE": rate,
        "DISCOUNT_SUM": discount,
        "TAX_RATE": 0,
        "TAX_INCLUDED": "N",
        "CUSTOMIZED": "Y",
        "MEASURE_CODE": if measure == "мес" { 1 } else { 796 },
        "MEASURE_NAME": measure,
        "SORT": sort,
    }))
}

fn date_of(t: i64, offset: i32) -> String {
    let (y, m, d) = civil_from_days((t + offset as i64).div_euclid(86_400));
    format_date(y, m, d, offset)
}

fn phone_formats(i: usize) -> String {
    let n = 1_234_500 + i * 7919 % 8_000_000;
    let (a, b, c) = (n / 10_000 % 1000, n / 100 % 100, n % 100);
    match i % 7 {
        0 => format!("8 (926) {a:03}-{b:02}-{c:02}"),
        1 => format!("+7 (926) {a:03}{b:02}{c:02}"),
        2 => format!("926{a:03}{b:02}{c:02}"),
        3 => format!("+7903{a:03}{b:02}{c:02}"),
        4 => format!("8-916-{a:03}-{b:02}-{c:02}"),
        5 => format!("7 915 {a:03} {b:02} {c:02}"),
        _ => format!("+7 903 {a:03}-{b:02}-{c:02}"),
    }
}

impl Portal {
    /// Users and departments of the demo portal. User 1 is the webhook's technical user.
    fn demo_people(&mut self) {
        let deps = [
            json!({"ID": "1", "NAME": "Русская шахматная школа", "SORT": 500, "UF_HEAD": "1"}),
            json!({"ID": "5", "NAME": "Отдел продаж", "SORT": 100, "PARENT": "1", "UF_HEAD": "932"}),
            json!({"ID": "7", "NAME": "Тренеры", "SORT": 200, "PARENT": "1", "UF_HEAD": "3486"}),
            json!({"ID": "9", "NAME": "Онлайн-продажи", "SORT": 300, "PARENT": "5"}),
        ];
        for d in deps {
            self.insert("department", obj(d));
        }
        let users = [
            (
                1,
                true,
                "Интеграция",
                "Техническая",
                "integration@example.ru",
                vec![1],
                "employee",
                "Технический пользователь",
            ),
            (
                932,
                true,
                "Андрей",
                "Сергеев",
                "a.sergeev@example.ru",
                vec![5],
                "employee",
                "Руководитель отдела продаж",
            ),
            (
                3486,
                true,
                "Ольга",
                "Петрова",
                "o.petrova@example.ru",
                vec![7],
                "employee",
                "Старший тренер",
            ),
            (
                10390,
                true,
                "Мария",
                "Иванова",
                "m.ivanova@example.ru",
                vec![5],
                "employee",
                "Менеджер",
            ),
            (
                12288,
                true,
                "Василий",
                "Василенко",
                "employee@inbox.ru",
                vec![5, 9],
                "employee",
                "Менеджер",
            ),
            (
                12290,
                true,
                "Екатерина",
                "Орлова",
                "e.orlova@example.ru",
                vec![9],
                "employee",
                "Менеджер онлайн-школы",
            ),
            (
                15001,
                false,
                "Игорь",
                "Смирнов",
                "i.smirnov@example.ru",
                vec![5],
                "employee",
                "Менеджер (уволен)",
            ),
            (
                15002,
                true,
                "Партнёр",
                "Внешний",
                "partner@example.org",
                vec![],
                "extranet",
                "",
            ),
        ];
        for (id, active, name, last, email, deps, utype, pos) in users {
            self.insert(
                "user",
                obj(json!({
                    "ID": id.to_string(), "XML_ID": format!("{id}"), "ACTIVE": active, "NAME": name, "LAST_NAME": last,
                    "SECOND_NAME": "", "EMAIL": email, "LAST_LOGIN": format_ts(DEMO_NOW - 3600 * (id as i64 % 50), 3 * 3600),
                    "DATE_REGISTER": "2019-09-01T10:00:00+03:00", "IS_ONLINE": "N", "PERSONAL_GENDER": "",
                    "PERSONAL_MOBILE": "", "WORK_POSITION": pos, "WORK_PHONE": "", "UF_DEPARTMENT": deps, "USER_TYPE": utype,
                })),
            );
        }
    }

    /// A small deterministic portal shaped like seed 001 (chess school: contacts = students
    /// with parent data, deals = season tickets with product rows), plus companies, links and
    /// activities for the activity reports of seed 000. Fixed dates around 2024-06-10.
    pub fn demo() -> Portal {
        let mut p = Portal::new();
        let off = p.offset_secs;
        p.demo_people();
        let sellers = ["932", "10390", "12288", "12290"];

        // companies
        let companies = [
            "ООО Ромашка",
            "АО Шахматный клуб",
            "ИП Кузнецов",
            "ООО Гамбит",
            "Школа №57",
            "ООО Эндшпиль",
            "ЧОУ Лицей Ладья",
            "ООО Рокировка",
        ];
        for (i, title) in companies.iter().enumerate() {
            let created = ts("2023-09-01T10:00:00") + i as i64 * 86_400 * 17;
            p.insert(
                "company",
                obj(json!({
                    "ID": (i + 1).to_string(), "TITLE": title, "COMPANY_TYPE": if i % 3 == 0 { "PARTNER" } else { "CUSTOMER" },
                    "INDUSTRY": "EDUCATION", "EMPLOYEES": "EMPLOYEES_2", "REVENUE": "0.00", "CURRENCY_ID": "RUB", "COMMENTS": "",
                    "OPENED": "Y", "HAS_PHONE": "N", "HAS_EMAIL": "N", "LEAD_ID": null,
                    "ASSIGNED_BY_ID": sellers[i % sellers.len()], "CREATED_BY_ID": "1", "MODIFY_BY_ID": "1",
                    "DATE_CREATE": format_ts(created, off), "DATE_MODIFY": format_ts(created + 86_400 * 30, off),
                })),
            );
        }

        // contacts: 30 students, IDs 39900, 39902, ...
        let base = ts("2024-05-15T09:30:00");
        let mut contact_ids = Vec::new();
        for i in 0..30usize {
            let id = 39_900 + 2 * i as u64;
            contact_ids.push(id);
            let female_parent = i % 3 != 1;
            let (lm, lf) = LAST[i % LAST.len()];
            let mut name = if female_parent {
                FEMALE_FIRST[i % 12]
            } else {
                MALE_FIRST[i % 12]
            }
            .to_string();
            let mut last = if female_parent { lf } else { lm }.to_string();
            if i == 5 {
                name = "Наталья Зарудная".into();
                last = String::new();
            }
            if i == 17 {
                name = "Олег Быстров".into();
                last = String::new();
            }
            let child_female = i % 2 == 1;
            let mut child_first = CHILD_FIRST[(i * 5) % 12].to_string();
            let mut child_last = if child_female { lf } else { lm }.to_string();
            if i == 3 {
                child_first.clear();
                child_last.clear();
            }
            if i == 8 {
                child_first.clear();
            }
            let product: Value = match i {
                14 => json!([406]),
                27 => json!([406]),
                _ if i % 5 == 1 => json!([410]),
                _ if i % 7 == 2 => json!([404, 410]),
                _ => json!([404]),
            };
            let branch: Value = match i {
                25 | 27 => json!([52]),
                _ if i % 4 == 3 => json!([12708]),
                _ if i % 9 == 4 => json!([48, 12708]),
                _ => json!([48]),
            };
            let birth = if i == 19 {
                String::new()
            } else {
                format_date(
                    2010 + (i as i64 % 8),
                    1 + (i as u32 * 5) % 12,
                    1 + (i as u32 * 7) % 28,
                    off,
                )
            };
            let created = base + i as i64 * 86_400 + (i as i64 * 3_917) % 30_000;
            let modified = created + if i % 4 == 0 { 3 * 86_400 + 600 } else { 1_800 };
            let mut phones = Vec::new();
            if i != 11 && i != 22 {
                phones.push(json!({"VALUE_TYPE": if i % 3 == 0 { "MOBILE" } else { "WORK" }, "VALUE": phone_formats(i)}));
                if i % 6 == 2 {
                    phones.push(json!({"VALUE_TYPE": "HOME", "VALUE": phone_formats(i + 100)}));
                }
            }
            let mut emails = Vec::new();
            if i % 5 != 3 {
                let e = format!(
                    "{}.{}@{}",
                    TRANSLIT[(i * 7) % 12],
                    TRANSLIT[i % 12],
                    ["gmail.com", "mail.ru", "yandex.ru", "inbox.ru"][i % 4]
                );
                emails.push(json!({"VALUE_TYPE": if i % 2 == 0 { "WORK" } else { "HOME" }, "VALUE": if i == 9 { e.to_uppercase() } else { e }}));
            }
            let status = match i {
                0 | 1 => "Успешно",
                3 => "Не заполнены фамилия и имя ученика",
                _ => "",
            };
            let company = (i % 2 == 0).then(|| (i / 2) % companies.len() + 1);
            let mut row = obj(json!({
                "ID": id.to_string(), "HONORIFIC": null, "NAME": name, "SECOND_NAME": "", "LAST_NAME": last, "PHOTO": null,
                "BIRTHDATE": "", "TYPE_ID": "CLIENT", "SOURCE_ID": (["CALL", "WEB", "55", "RECOMMENDATION"][i % 4]),
                "SOURCE_DESCRIPTION": null, "POST": null, "COMMENTS": if i % 6 == 0 { "комментарий" } else { "" },
                "OPENED": "Y", "EXPORT": "Y", "HAS_PHONE": if phones.is_empty() { "N" } else { "Y" },
                "HAS_EMAIL": if emails.is_empty() { "N" } else { "Y" }, "HAS_IMOL": "N",
                "COMPANY_ID": company.map(|c| c.to_string()), "LEAD_ID": (i % 3 == 0).then(|| (133_000 + i * 17).to_string()),
                "ORIGINATOR_ID": null, "ORIGIN_ID": null,
                "ASSIGNED_BY_ID": sellers[i % sellers.len()], "CREATED_BY_ID": sellers[i % sellers.len()], "MODIFY_BY_ID": "10390",
                "DATE_CREATE": format_ts(created, off), "DATE_MODIFY": format_ts(modified, off),
                UF_STUDENT_LAST_NAME: child_last, UF_STUDENT_FIRST_NAME: child_first, UF_STUDENT_BIRTHDATE: birth,
                UF_PRODUCT: product, UF_BRANCH: branch, "UF_CRM_1470854727": [62], UF_SYNC_STATUS: status,
            }));
            if !phones.is_empty() {
                row.insert("PHONE".into(), Value::Array(phones));
            }
            if !emails.is_empty() {
                row.insert("EMAIL".into(), Value::Array(emails));
            }
            p.insert("contact", row);
            if let Some(c) = company {
                p.link_contact_company(id, c as u64, true);
            }
        }

        // deals: 40 season-ticket sales, IDs 96000, 96002, ...
        let stages = [
            "WON",
            "WON",
            "NEW",
            "WON",
            "PREPARATION",
            "WON",
            "WON",
            "LOSE",
            "WON",
            "EXECUTING",
        ];
        for j in 0..40usize {
            let id = 96_000 + 2 * j as u64;
            let contact = contact_ids[(j * 7) % contact_ids.len()];
            let stage = stages[j % stages.len()];
            let semantic = match stage {
                "WON" => "S",
                "LOSE" => "F",
                _ => "P",
            };
            let branch: Value = match j {
                13 => json!([186, 12706]),
                21 => json!([190]),
                33 => json!([]),
                _ if j % 3 == 2 => json!([12706]),
                _ => json!([186]),
            };
            let payment: Value = match j {
                17 => Value::Null,
                _ if j % 5 < 2 => json!("450"),
                _ if j % 5 == 2 => json!("452"),
                _ => json!("454"),
            };
            let assigned = if j == 23 {
                "15001"
            } else {
                ["932", "10390", "12288", "12290"][j % 4]
            };
            let created = base + 3_600 * 5 + j as i64 * 64_800 + (j as i64 * 1_531) % 7_200;
            let modified = created + if j % 3 == 0 { 2 * 86_400 } else { 900 };
            let sale = if j == 29 {
                String::new()
            } else {
                date_of(created, off)
            };
            let product_count = if j == 31 {
                0
            } else if j % 9 == 4 {
                2
            } else {
                1
            };
            let rows: Vec<Row> = (0..product_count)
                .map(|k| product_row(j + k * 3, 10 * (k as u64 + 1)))
                .collect();
            let opportunity: f64 = rows
                .iter()
                .map(|r| r["PRICE"].as_f64().unwrap_or(0.0))
                .sum();
            let crow = p.get("contact", contact).unwrap_or_default();
            let title = if j % 4 == 1 {
                format!("chessrussian.ru #{}", 19_148 + j)
            } else {
                let s = |k: &str| {
                    crow.get(k)
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string()
                };
                format!("{} {}", s(UF_STUDENT_LAST_NAME), s(UF_STUDENT_FIRST_NAME))
                    .trim()
                    .to_string()
            };
            let company = crow
                .get("COMPANY_ID")
                .and_then(Value::as_str)
                .map(str::to_string);
            p.insert(
                "deal",
                obj(json!({
                    "ID": id.to_string(), "TITLE": title, "TYPE_ID": "SALE", "CATEGORY_ID": "0", "STAGE_ID": stage,
                    "STAGE_SEMANTIC_ID": semantic, "IS_NEW": if stage == "NEW" { "Y" } else { "N" }, "IS_RECURRING": "N",
                    "IS_RETURN_CUSTOMER": if j % 7 == 3 { "Y" } else { "N" }, "IS_REPEATED_APPROACH": "N",
                    "PROBABILITY": if stage == "WON" { "100" } else { "42" }, "CURRENCY_ID": "RUB",
                    "OPPORTUNITY": format!("{opportunity:.2}"), "IS_MANUAL_OPPORTUNITY": "N", "TAX_VALUE": "0.00",
                    "COMPANY_ID": company, "CONTACT_ID": contact.to_string(),
                    "BEGINDATE": date_of(created, off), "CLOSEDATE": date_of(created + 86_400, off),
                    "OPENED": "Y", "CLOSED": if semantic == "P" { "N" } else { "Y" }, "COMMENTS": null,
                    "SOURCE_ID": null, "SOURCE_DESCRIPTION": null, "LEAD_ID": null, "ADDITIONAL_INFO": null,
                    "ORIGINATOR_ID": if j % 4 == 1 { json!("8") } else { Value::Null }, "ORIGIN_ID": if j % 4 == 1 { json!((19_148 + j).to_string()) } else { Value::Null },
                    "MOVED_TIME": format_ts(modified, off),
                    "ASSIGNED_BY_ID": assigned, "CREATED_BY_ID": assigned, "MODIFY_BY_ID": "10390",
                    "DATE_CREATE": format_ts(created, off), "DATE_MODIFY": format_ts(modified, off),
                    UF_BRANCH: branch, UF_SALE_DATE: sale, UF_PAYMENT_METHOD: payment, UF_SYNC_STATUS: "",
                })),
            );
            for r in rows {
                p.add_product_row(id, r);
            }
            p.link_deal_contact(id, contact, true);
            if j % 10 == 6 {
                p.link_deal_contact(id, contact_ids[(j * 7 + 1) % contact_ids.len()], false);
            }
        }

        // leads
        for k in 0..5u64 {
            let created = base - 86_400 * (k as i64 + 1);
            p.insert(
                "lead",
                obj(json!({
                    "ID": (133_900 + k).to_string(), "TITLE": format!("Заявка с сайта #{k}"), "NAME": FEMALE_FIRST[k as usize],
                    "LAST_NAME": LAST[k as usize].1, "STATUS_ID": if k < 2 { "NEW" } else { "IN_PROCESS" }, "SOURCE_ID": "WEB",
                    "OPPORTUNITY": "0.00", "CURRENCY_ID": "RUB", "HAS_PHONE": "Y", "HAS_EMAIL": "N",
                    "ASSIGNED_BY_ID": "932", "CREATED_BY_ID": "1", "MODIFY_BY_ID": "1",
                    "DATE_CREATE": format_ts(created, off), "DATE_MODIFY": format_ts(created + 600, off),
                    "PHONE": [{"VALUE_TYPE": "WORK", "VALUE": phone_formats(200 + k as usize)}],
                })),
            );
        }

        // activities: 150 over the two months before DEMO_NOW and two weeks after
        let deal_ids = p.ids("deal");
        let responsible = [932, 10390, 12288, 12290, 3486, 15001];
        for a in 0..150usize {
            let (owner_type, owner) = match a % 3 {
                0 => (2, deal_ids[(a * 7) % deal_ids.len()]),
                1 => (3, contact_ids[(a * 11) % contact_ids.len()]),
                _ => (4, (a % companies.len() + 1) as u64),
            };
            let start = DEMO_NOW - 60 * 86_400 + a as i64 * 40_000 + (a as i64 * 7_919) % 3_600;
            p.insert(
                "activity",
                activity_row(
                    a as u64 + 1,
                    owner_type,
                    owner,
                    a,
                    start,
                    responsible[a % responsible.len()],
                    DEMO_NOW,
                    off,
                ),
            );
        }
        p
    }

    /// `n` contacts (IDs 1..=n) in the demo's field shape, plus the demo users/departments.
    pub fn bulk_contacts(n: usize) -> Portal {
        let mut p = Portal::new();
        p.demo_people();
        p.add_bulk_contacts(n, 42);
        p
    }

    /// `n` deals (IDs 1..=n) with one or two product rows each over `n / 2` contacts.
    pub fn bulk_deals(n: usize) -> Portal {
        let mut p = Portal::new();
        p.demo_people();
        p.add_bulk_contacts((n / 2).max(1), 42);
        p.add_bulk_deals(n, 43, true);
        p
    }

    /// A portal sized for activity-report benchmarks.
    pub fn report_scale(spec: &ReportScale) -> Portal {
        let mut p = Portal::new();
        let off = p.offset_secs;
        let mut rng = StdRng::seed_from_u64(spec.seed);
        // departments: a root and children
        for d in 1..=spec.departments.max(1) as u64 {
            let mut row =
                obj(json!({"ID": d.to_string(), "NAME": format!("Отдел {d}"), "SORT": 100 * d}));
            if d > 1 {
                row.insert("PARENT".into(), json!(((d - 2) / 3 + 1).to_string()));
            }
            p.insert("department", row);
        }
        let users = spec.users.max(1) as u64;
        for u in 1..=users {
            let dep = if u == 1 {
                1
            } else {
                rng.random_range(1..=spec.departments.max(1) as u64)
            };
            let (first, last) = if u % 2 == 0 {
                (MALE_FIRST[u as usize % 12], LAST[u as usize % 12].0)
            } else {
                (FEMALE_FIRST[u as usize % 12], LAST[u as usize % 12].1)
            };
            p.insert(
                "user",
                obj(json!({"ID": u.to_string(), "ACTIVE": u % 17 != 0, "NAME": first, "LAST_NAME": last, "SECOND_NAME": "",
                    "EMAIL": format!("user{u}@example.ru"), "UF_DEPARTMENT": [dep], "USER_TYPE": "employee", "WORK_POSITION": "Менеджер"})),
            );
        }
        for d in 1..=spec.departments.max(1) as u64 {
            let head = rng.random_range(1..=users);
            p.set_field("department", d, "UF_HEAD", json!(head.to_string()));
        }
        let companies = spec.companies as u64;
        let t = p.table_mut("company");
        let cols: Vec<usize> = [
            "ID",
            "TITLE",
            "COMPANY_TYPE",
            "ASSIGNED_BY_ID",
            "CREATED_BY_ID",
            "MODIFY_BY_ID",
            "DATE_CREATE",
            "DATE_MODIFY",
            "OPENED",
            "CURRENCY_ID",
        ]
        .iter()
        .map(|c| t.ensure_col(c))
        .collect();
        let t0 = ts("2022-01-01T09:00:00");
        for c in 1..=companies {
            let created = t0 + rng.random_range(0..(2 * 365 * 86_400));
            let vals = [
                num(c),
                Cell::text(&format!("Компания {c}")),
                Cell::text(if c % 4 == 0 { "PARTNER" } else { "CUSTOMER" }),
                num(rng.random_range(1..=users)),
                num(1),
                num(1),
                Cell::Date { ts: created, off },
                Cell::Date {
                    ts: created + rng.random_range(0..90 * 86_400),
                    off,
                },
                Cell::text("Y"),
                Cell::text("RUB"),
            ];
            insert_cols(t, c, &cols, vals);
        }
        p.add_bulk_contacts(spec.contacts, spec.seed.wrapping_add(1));
        if companies > 0 {
            for c in 1..=spec.contacts as u64 {
                if rng.random_bool(0.6) {
                    let co = rng.random_range(1..=companies);
                    p.set_field("contact", c, "COMPANY_ID", json!(co.to_string()));
                    p.link_contact_company(c, co, true);
                }
            }
        }
        p.add_bulk_deals(spec.deals, spec.seed.wrapping_add(2), false);
        if companies > 0 {
            for d in 1..=spec.deals as u64 {
                if rng.random_bool(0.3) {
                    p.set_field(
                        "deal",
                        d,
                        "COMPANY_ID",
                        json!(rng.random_range(1..=companies).to_string()),
                    );
                }
            }
        }
        // activities
        let deals = spec.deals as u64;
        let contacts = spec.contacts as u64;
        let now = spec.now;
        let t = p.table_mut("activity");
        let names = activity_columns();
        let cols: Vec<usize> = names.iter().map(|c| t.ensure_col(c)).collect();
        for a in 1..=spec.activities as u64 {
            let pick = rng.random_range(0..3);
            let (ot, owner) = match pick {
                0 if deals > 0 => (2, rng.random_range(1..=deals)),
                1 if contacts > 0 => (3, rng.random_range(1..=contacts)),
                _ if companies > 0 => (4, rng.random_range(1..=companies)),
                _ => (3, 1),
            };
            let start = now - spec.history_days as i64 * 86_400
                + rng.random_range(0..(spec.history_days as i64 + 14) * 86_400);
            let resp = rng.random_range(1..=users);
            let vals = activity_cells(
                a,
                ot,
                owner,
                rng.random_range(0..1000),
                start,
                resp,
                now,
                off,
            );
            insert_cols(t, a, &cols, vals);
        }
        p
    }

    /// Append `n` contacts (IDs continue after the current maximum), deterministic from `seed`.
    pub fn add_bulk_contacts(&mut self, n: usize, seed: u64) {
        let off = self.offset_secs;
        let mut rng = StdRng::seed_from_u64(seed);
        let first_id = self.table("contact").map_or(1, Table::next_id);
        let mut mf = first_id * 2 + 10_000_000;
        let t = self.table_mut("contact");
        let names = [
            "ID",
            "NAME",
            "SECOND_NAME",
            "LAST_NAME",
            "TYPE_ID",
            "SOURCE_ID",
            "OPENED",
            "EXPORT",
            "HAS_PHONE",
            "HAS_EMAIL",
            "ASSIGNED_BY_ID",
            "CREATED_BY_ID",
            "MODIFY_BY_ID",
            "DATE_CREATE",
            "DATE_MODIFY",
            "COMMENTS",
            UF_STUDENT_LAST_NAME,
            UF_STUDENT_FIRST_NAME,
            UF_STUDENT_BIRTHDATE,
            UF_PRODUCT,
            UF_BRANCH,
            UF_SYNC_STATUS,
            "PHONE",
            "EMAIL",
        ];
        let cols: Vec<usize> = names.iter().map(|c| t.ensure_col(c)).collect();
        let t0 = ts("2023-01-01T09:00:00");
        let span = 500 * 86_400i64;
        let sellers = ["932", "10390", "12288", "12290"];
        for k in 0..n as u64 {
            let id = first_id + k;
            let i = rng.random_range(0..12usize);
            let female = rng.random_bool(0.7);
            let created = t0 + (k as i64 * span) / (n as i64).max(1) + rng.random_range(0..3600);
            let modified = created
                + if rng.random_bool(0.3) {
                    rng.random_range(0..60 * 86_400)
                } else {
                    rng.random_range(0..3_600)
                };
            let phone = MultiItem::new(mf as i64, "WORK", &phone_formats(id as usize), "PHONE")
                .expect("standard codes");
            let has_email = rng.random_bool(0.5);
            let email = has_email.then(|| {
                MultiItem::new(
                    mf as i64 + 1,
                    "WORK",
                    &format!("{}{id}@example.ru", TRANSLIT[i]),
                    "EMAIL",
                )
                .expect("standard codes")
            });
            mf += 2;
            let child_female = rng.random_bool(0.5);
            let vals = vec![
                num(id),
                Cell::text(if female {
                    FEMALE_FIRST[i]
                } else {
                    MALE_FIRST[i]
                }),
                Cell::text(""),
                Cell::text(if female { LAST[i].1 } else { LAST[i].0 }),
                Cell::text("CLIENT"),
                Cell::text(["CALL", "WEB", "55"][i % 3]),
                Cell::text("Y"),
                Cell::text("Y"),
                Cell::text("Y"),
                Cell::text(if has_email { "Y" } else { "N" }),
                Cell::text(sellers[i % 4]),
                Cell::text(sellers[i % 4]),
                num(1),
                Cell::Date { ts: created, off },
                Cell::Date { ts: modified, off },
                Cell::text(""),
                Cell::text(if child_female {
                    LAST[(i + 3) % 12].1
                } else {
                    LAST[(i + 3) % 12].0
                }),
                Cell::text(CHILD_FIRST[rng.random_range(0..12)]),
                date_cell(
                    days_from_civil(
                        2010 + rng.random_range(0..10),
                        rng.random_range(1..=12),
                        rng.random_range(1..=28),
                    ) * 86_400,
                    0,
                    off,
                ),
                Cell::IntList(Box::new([if rng.random_bool(0.2) { 410 } else { 404 }])),
                Cell::IntList(Box::new([if rng.random_bool(0.25) { 12708 } else { 48 }])),
                Cell::text(""),
                Cell::Multi(Box::new([phone])),
                email.map_or(Cell::Absent, |e| Cell::Multi(Box::new([e]))),
            ];
            insert_cols(t, id, &cols, vals);
        }
    }

    /// Append `n` deals over the existing contacts; with `product_rows`, one or two rows each.
    pub fn add_bulk_deals(&mut self, n: usize, seed: u64, product_rows: bool) {
        let off = self.offset_secs;
        let mut rng = StdRng::seed_from_u64(seed);
        let contacts = self.ids("contact");
        let first_id = self.table("deal").map_or(1, Table::next_id);
        let t = self.table_mut("deal");
        let names = [
            "ID",
            "TITLE",
            "TYPE_ID",
            "CATEGORY_ID",
            "STAGE_ID",
            "STAGE_SEMANTIC_ID",
            "CURRENCY_ID",
            "OPPORTUNITY",
            "CONTACT_ID",
            "OPENED",
            "CLOSED",
            "ASSIGNED_BY_ID",
            "CREATED_BY_ID",
            "MODIFY_BY_ID",
            "DATE_CREATE",
            "DATE_MODIFY",
            "BEGINDATE",
            "CLOSEDATE",
            UF_BRANCH,
            UF_SALE_DATE,
            UF_PAYMENT_METHOD,
            UF_SYNC_STATUS,
        ];
        let cols: Vec<usize> = names.iter().map(|c| t.ensure_col(c)).collect();
        let t0 = ts("2023-01-01T10:00:00");
        let span = 500 * 86_400i64;
        let mut links = Vec::with_capacity(n);
        let mut prows = Vec::new();
        for k in 0..n as u64 {
            let id = first_id + k;
            let won = rng.random_bool(0.7);
            let stage = if won {
                "WON"
            } else {
                ["NEW", "PREPARATION", "LOSE"][rng.random_range(0..3)]
            };
            let created = t0 + (k as i64 * span) / (n as i64).max(1) + rng.random_range(0..3600);
            let modified = created + rng.random_range(0..7 * 86_400);
            let contact = if contacts.is_empty() {
                None
            } else {
                Some(contacts[rng.random_range(0..contacts.len())])
            };
            let p1 = rng.random_range(0..PRODUCTS.len());
            let two = rng.random_bool(0.1);
            let price = |p: usize| PRODUCTS[p].2 - PRODUCTS[p].3;
            let opp = price(p1)
                + if two {
                    price((p1 + 1) % PRODUCTS.len())
                } else {
                    0.0
                };
            let vals = vec![
                num(id),
                Cell::text(&format!("Абонемент #{id}")),
                Cell::text("SALE"),
                num(0),
                Cell::text(stage),
                Cell::text(match stage {
                    "WON" => "S",
                    "LOSE" => "F",
                    _ => "P",
                }),
                Cell::text("RUB"),
                Cell::text(&format!("{opp:.2}")),
                contact.map_or(Cell::Null, num),
                Cell::text("Y"),
                Cell::text(if won || stage == "LOSE" { "Y" } else { "N" }),
                Cell::text(["932", "10390", "12288", "12290"][rng.random_range(0..4)]),
                num(1),
                num(1),
                Cell::Date { ts: created, off },
                Cell::Date { ts: modified, off },
                date_cell(created, off, off),
                date_cell(created + 86_400, off, off),
                Cell::IntList(Box::new([if rng.random_bool(0.3) { 12706 } else { 186 }])),
                date_cell(created, off, off),
                Cell::text(if rng.random_bool(0.4) { "450" } else { "452" }),
                Cell::text(""),
            ];
            insert_cols(t, id, &cols, vals);
            if let Some(c) = contact {
                links.push((id, c));
            }
            if product_rows {
                prows.push((id, p1, two));
            }
        }
        for (d, c) in links {
            self.link_deal_contact(d, c, true);
        }
        for (d, p1, two) in prows {
            self.add_product_row(d, product_row(p1, 10));
            if two {
                self.add_product_row(d, product_row(p1 + 1, 20));
            }
        }
    }
}

fn insert_cols(t: &mut Table, id: u64, cols: &[usize], vals: impl IntoIterator<Item = Cell>) {
    let width = cols.iter().max().map_or(0, |m| m + 1);
    let mut raw: Vec<Cell> = vec![Cell::Absent; width];
    for (c, v) in cols.iter().zip(vals) {
        raw[*c] = v;
    }
    t.insert_raw(id, raw);
}

fn num(i: u64) -> Cell {
    Cell::IntStr(i as i64)
}

/// A "date" field: midnight UTC of the local day of `ts` (as offset `tz` sees it), printed in `off`.
fn date_cell(ts: i64, tz: i32, off: i32) -> Cell {
    Cell::Date {
        ts: (ts + tz as i64).div_euclid(86_400) * 86_400,
        off,
    }
}

fn activity_columns() -> Vec<&'static str> {
    vec![
        "ID",
        "OWNER_ID",
        "OWNER_TYPE_ID",
        "TYPE_ID",
        "PROVIDER_ID",
        "PROVIDER_TYPE_ID",
        "SUBJECT",
        "COMPLETED",
        "STATUS",
        "RESPONSIBLE_ID",
        "PRIORITY",
        "DESCRIPTION",
        "DESCRIPTION_TYPE",
        "DIRECTION",
        "CREATED",
        "AUTHOR_ID",
        "LAST_UPDATED",
        "EDITOR_ID",
        "START_TIME",
        "END_TIME",
        "DEADLINE",
    ]
}

#[allow(clippy::too_many_arguments)]
fn activity_cells(
    id: u64,
    owner_type: u64,
    owner: u64,
    variant: usize,
    start: i64,
    responsible: u64,
    now: i64,
    off: i32,
) -> Vec<Cell> {
    let type_id = 1 + (variant % 4) as u64;
    let (provider, ptype, subject) = match type_id {
        1 => ("CRM_MEETING", "MEETING", "Встреча"),
        2 => ("VOXIMPLANT_CALL", "CALL", "Звонок"),
        3 => ("CRM_TASKS_TASK", "TASK", "Задача"),
        _ => ("CRM_EMAIL", "EMAIL", "Письмо"),
    };
    let end = start + 1_800 * (1 + (variant % 3) as i64);
    let completed = start < now && !variant.is_multiple_of(5);
    let deadline = if type_id == 3 { end } else { start };
    let direction = match type_id {
        2 | 4 => 1 + (variant % 2) as u64,
        _ => 0,
    };
    // order of activity_columns()
    vec![
        num(id),
        num(owner),
        num(owner_type),
        num(type_id),
        Cell::text(provider),
        Cell::text(ptype),
        Cell::text(&format!("{subject} #{id}")),
        Cell::text(if completed { "Y" } else { "N" }),
        num(if completed { 2 } else { 1 }),
        num(responsible),
        num(2),
        Cell::text(""),
        num(1),
        num(direction),
        Cell::Date {
            ts: start - 86_400,
            off,
        },
        num(responsible),
        Cell::Date {
            ts: if completed { end } else { start - 86_400 },
            off,
        },
        num(responsible),
        Cell::Date { ts: start, off },
        Cell::Date { ts: end, off },
        Cell::Date { ts: deadline, off },
    ]
}

#[allow(clippy::too_many_arguments)]
fn activity_row(
    id: u64,
    owner_type: u64,
    owner: u64,
    variant: usize,
    start: i64,
    responsible: u64,
    now: i64,
    off: i32,
) -> Row {
    activity_columns()
        .into_iter()
        .zip(activity_cells(
            id,
            owner_type,
            owner,
            variant,
            start,
            responsible,
            now,
            off,
        ))
        .filter_map(|(k, c)| c.to_value().map(|v| (k.to_string(), v)))
        .collect()
}

/// Size of a [`Portal::report_scale`] portal.
#[derive(Clone, Debug)]
pub struct ReportScale {
    pub seed: u64,
    pub departments: usize,
    pub users: usize,
    pub companies: usize,
    pub contacts: usize,
    pub deals: usize,
    pub activities: usize,
    /// activities start between `now - history_days` and `now + 14 days`
    pub history_days: u32,
    pub now: i64,
}

impl Default for ReportScale {
    fn default() -> Self {
        ReportScale {
            seed: 42,
            departments: 12,
            users: 200,
            companies: 20_000,
            contacts: 50_000,
            deals: 100_000,
            activities: 1_000_000,
            history_days: 180,
            now: DEMO_NOW,
        }
    }
}

#[cfg(test)]
mod tests;
