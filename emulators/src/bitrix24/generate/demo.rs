//! The demo portal: a small deterministic portal shaped like seed 001, for the sandbox and the
//! e2e tests.
use super::*;

impl Portal {
    /// Users and departments of the demo portal. User 1 is the webhook's technical user.
    pub(super) fn demo_people(&mut self) {
        let deps = [
            json!({"ID": "1", "NAME": "Русская шахматная школа", "SORT": 500, "UF_HEAD": "1"}),
            json!({"ID": "5", "NAME": "Отдел продаж", "SORT": 100, "PARENT": "1", "UF_HEAD": "932"}),
            json!({"ID": "7", "NAME": "Тренеры", "SORT": 200, "PARENT": "1", "UF_HEAD": "3486"}),
            json!({"ID": "9", "NAME": "Онлайн-продажи", "SORT": 300, "PARENT": "5"}),
        ];
        for d in deps {
            self.insert("department", obj(d));
        }
        for (id, active, name, last, email, deps, utype, pos) in DEMO_USERS {
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
        p.demo_people();
        p.demo_companies();
        // contacts: 30 students, IDs 39900, 39902, ...
        let contact_ids: Vec<u64> = (0..30usize).map(|i| p.demo_contact(i)).collect();
        // deals: 40 season-ticket sales, IDs 96000, 96002, ...
        for j in 0..40usize {
            p.demo_deal(j, &contact_ids);
        }
        p.demo_leads();
        p.demo_activities(&contact_ids);
        p.demo_bp();
        p
    }

    fn demo_companies(&mut self) {
        let p = self;
        let off = p.offset_secs;
        for (i, title) in COMPANIES.iter().enumerate() {
            let created = ts("2023-09-01T10:00:00") + i as i64 * 86_400 * 17;
            p.insert(
                "company",
                obj(json!({
                    "ID": (i + 1).to_string(), "TITLE": title, "COMPANY_TYPE": if i % 3 == 0 { "PARTNER" } else { "CUSTOMER" },
                    "INDUSTRY": "EDUCATION", "EMPLOYEES": "EMPLOYEES_2", "REVENUE": "0.00", "CURRENCY_ID": "RUB", "COMMENTS": "",
                    "OPENED": "Y", "HAS_PHONE": "N", "HAS_EMAIL": "N", "LEAD_ID": null,
                    "ASSIGNED_BY_ID": SELLERS[i % SELLERS.len()], "CREATED_BY_ID": "1", "MODIFY_BY_ID": "1",
                    "DATE_CREATE": format_ts(created, off), "DATE_MODIFY": format_ts(created + 86_400 * 30, off),
                })),
            );
        }
    }

    /// Demo contact `i`: inserted, linked to its company; its ID.
    fn demo_contact(&mut self, i: usize) -> u64 {
        let off = self.offset_secs;
        let base = ts(DEMO_BASE);
        let id = 39_900 + 2 * i as u64;
        let (name, last, child_first, child_last) = demo_names(i);
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
        let modified = created
            + if i.is_multiple_of(4) {
                3 * 86_400 + 600
            } else {
                1_800
            };
        let (phones, emails) = demo_channels(i);
        let status = match i {
            0 | 1 => "Успешно",
            3 => "Не заполнены фамилия и имя ученика",
            _ => "",
        };
        let company = i.is_multiple_of(2).then(|| (i / 2) % COMPANIES.len() + 1);
        let mut row = obj(json!({
            "ID": id.to_string(), "HONORIFIC": null, "NAME": name, "SECOND_NAME": "", "LAST_NAME": last, "PHOTO": null,
            "BIRTHDATE": "", "TYPE_ID": "CLIENT", "SOURCE_ID": (["CALL", "WEB", "55", "RECOMMENDATION"][i % 4]),
            "SOURCE_DESCRIPTION": null, "POST": null, "COMMENTS": if i.is_multiple_of(6) { "комментарий" } else { "" },
            "OPENED": "Y", "EXPORT": "Y", "HAS_PHONE": if phones.is_empty() { "N" } else { "Y" },
            "HAS_EMAIL": if emails.is_empty() { "N" } else { "Y" }, "HAS_IMOL": "N",
            "COMPANY_ID": company.map(|c| c.to_string()), "LEAD_ID": i.is_multiple_of(3).then(|| (133_000 + i * 17).to_string()),
            "ORIGINATOR_ID": null, "ORIGIN_ID": null,
            "ASSIGNED_BY_ID": SELLERS[i % SELLERS.len()], "CREATED_BY_ID": SELLERS[i % SELLERS.len()], "MODIFY_BY_ID": "10390",
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
        self.insert("contact", row);
        if let Some(c) = company {
            self.link_contact_company(id, c as u64, true);
        }
        id
    }

    /// Demo deal `j` of a contact, with its product rows and contact links.
    fn demo_deal(&mut self, j: usize, contact_ids: &[u64]) {
        let off = self.offset_secs;
        let base = ts(DEMO_BASE);
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
        let id = 96_000 + 2 * j as u64;
        let contact = contact_ids[(j * 7) % contact_ids.len()];
        let stage = stages[j % stages.len()];
        let semantic = match stage {
            "WON" => "S",
            "LOSE" => "F",
            _ => "P",
        };
        let (branch, payment) = demo_deal_codes(j);
        let assigned = if j == 23 {
            "15001"
        } else {
            ["932", "10390", "12288", "12290"][j % 4]
        };
        let created = base + 3_600 * 5 + j as i64 * 64_800 + (j as i64 * 1_531) % 7_200;
        let modified = created + if j.is_multiple_of(3) { 2 * 86_400 } else { 900 };
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
        let crow = self.get("contact", contact).unwrap_or_default();
        let title = demo_deal_title(&crow, j);
        let company = crow
            .get("COMPANY_ID")
            .and_then(Value::as_str)
            .map(str::to_string);
        self.insert(
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
            self.add_product_row(id, r);
        }
        self.link_deal_contact(id, contact, true);
        if j % 10 == 6 {
            self.link_deal_contact(id, contact_ids[(j * 7 + 1) % contact_ids.len()], false);
        }
    }

    fn demo_leads(&mut self) {
        let p = self;
        let off = p.offset_secs;
        let base = ts(DEMO_BASE);
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
    }

    fn demo_activities(&mut self, contact_ids: &[u64]) {
        let p = self;
        let off = p.offset_secs;
        // activities: 150 over the two months before DEMO_NOW and two weeks after
        let deal_ids = p.ids("deal");
        let responsible = [932, 10390, 12288, 12290, 3486, 15001];
        for a in 0..150usize {
            let (owner_type, owner) = match a % 3 {
                0 => (2, deal_ids[(a * 7) % deal_ids.len()]),
                1 => (3, contact_ids[(a * 11) % contact_ids.len()]),
                _ => (4, (a % COMPANIES.len() + 1) as u64),
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
    }
}

/// When the demo's contacts start being created.
const DEMO_BASE: &str = "2024-05-15T09:30:00";

/// Who sells: the managers deals and contacts are assigned to.
const SELLERS: [&str; 4] = ["932", "10390", "12288", "12290"];

const COMPANIES: [&str; 8] = [
    "ООО Ромашка",
    "АО Шахматный клуб",
    "ИП Кузнецов",
    "ООО Гамбит",
    "Школа №57",
    "ООО Эндшпиль",
    "ЧОУ Лицей Ладья",
    "ООО Рокировка",
];

/// Parent's first and last name, the student's first and last name of demo contact `i`.
fn demo_names(i: usize) -> (String, String, String, String) {
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
    (name, last, child_first, child_last)
}

/// Phones and e-mails of demo contact `i`.
fn demo_channels(i: usize) -> (Vec<Value>, Vec<Value>) {
    let mut phones = Vec::new();
    if i != 11 && i != 22 {
        phones.push(json!({"VALUE_TYPE": if i.is_multiple_of(3) { "MOBILE" } else { "WORK" }, "VALUE": phone_formats(i)}));
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
        emails.push(json!({"VALUE_TYPE": if i.is_multiple_of(2) { "WORK" } else { "HOME" }, "VALUE": if i == 9 { e.to_uppercase() } else { e }}));
    }
    (phones, emails)
}

/// Branch and payment method codes of demo deal `j`.
fn demo_deal_codes(j: usize) -> (Value, Value) {
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
    (branch, payment)
}

fn demo_deal_title(crow: &Row, j: usize) -> String {
    if j % 4 == 1 {
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
    }
}

/// The demo portal's users: ID, active, first and last name, e-mail, departments, type, position.
/// User 1 is the webhook's technical user.
#[allow(clippy::type_complexity)]
const DEMO_USERS: [(u64, bool, &str, &str, &str, &[u64], &str, &str); 8] = [
    (
        1,
        true,
        "Интеграция",
        "Техническая",
        "integration@example.ru",
        &[1],
        "employee",
        "Технический пользователь",
    ),
    (
        932,
        true,
        "Андрей",
        "Сергеев",
        "a.sergeev@example.ru",
        &[5],
        "employee",
        "Руководитель отдела продаж",
    ),
    (
        3486,
        true,
        "Ольга",
        "Петрова",
        "o.petrova@example.ru",
        &[7],
        "employee",
        "Старший тренер",
    ),
    (
        10390,
        true,
        "Мария",
        "Иванова",
        "m.ivanova@example.ru",
        &[5],
        "employee",
        "Менеджер",
    ),
    (
        12288,
        true,
        "Василий",
        "Василенко",
        "employee@inbox.ru",
        &[5, 9],
        "employee",
        "Менеджер",
    ),
    (
        12290,
        true,
        "Екатерина",
        "Орлова",
        "e.orlova@example.ru",
        &[9],
        "employee",
        "Менеджер онлайн-школы",
    ),
    (
        15001,
        false,
        "Игорь",
        "Смирнов",
        "i.smirnov@example.ru",
        &[5],
        "employee",
        "Менеджер (уволен)",
    ),
    (
        15002,
        true,
        "Партнёр",
        "Внешний",
        "partner@example.org",
        &[],
        "extranet",
        "",
    ),
];
