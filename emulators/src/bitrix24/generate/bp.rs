//! Demo data for the business-process actions (seed 002): the fields those actions read and
//! write on the existing demo records (a user's personal data, a company's address) and the
//! kinds of records only they use (legacy invoices, requisites, bookings, lines, Drive files). Nothing the other demo data sets hold is
//! added to or removed, so their lists and counts stay as they were.

use super::*;

/// Legacy invoices of the demo portal: (ID, deal index, STATUS_ID).
const DEMO_INVOICES: [(u64, usize, &str); 3] = [(501, 0, "P"), (502, 1, "N"), (503, 3, "S")];

impl Portal {
    pub(super) fn demo_bp(&mut self) {
        self.demo_bp_people();
        self.demo_invoices();
        self.demo_requisites();
        self.demo_calendar();
        self.demo_telephony_and_drive();
    }

    /// Company 1 has two requisites (the first, 11, with two bank details and a legal
    /// address); company 8 is the seller (requisite 13); contact 39900 a person's requisite
    /// (14); company 2 has none.
    fn demo_requisites(&mut self) {
        let rq = |id: u64, etype: u64, eid: u64, preset: u64, name: &str, inn: &str, kpp: &str| {
            json!({"ID": id.to_string(), "ENTITY_TYPE_ID": etype.to_string(), "ENTITY_ID": eid.to_string(),
                "PRESET_ID": preset.to_string(), "NAME": name, "ACTIVE": "Y", "SORT": "500",
                "RQ_COMPANY_NAME": if etype == 4 { json!(name) } else { Value::Null },
                "RQ_NAME": if etype == 3 { json!(name) } else { Value::Null },
                "RQ_INN": inn, "RQ_KPP": kpp, "RQ_OGRN": null, "XML_ID": null, "ORIGINATOR_ID": null,
                "DATE_CREATE": "2024-01-10T10:00:00+03:00", "CREATED_BY_ID": "1"})
        };
        for r in [
            rq(11, 4, 1, 1, "ООО «Ромашка»", "7701234567", "770101001"),
            rq(
                12,
                4,
                1,
                1,
                "ООО «Ромашка» (старые)",
                "7701234567",
                "770101002",
            ),
            rq(13, 4, 8, 1, "ООО «Рокировка»", "7709876543", "770901001"),
            rq(14, 3, 39900, 3, "Зарудная Елена", "770400112233", ""),
        ] {
            self.insert("requisite", obj(r));
        }
        let bd = |id: u64, rq: u64, bank: &str, acc: &str| {
            json!({"ID": id.to_string(), "ENTITY_ID": rq.to_string(), "COUNTRY_ID": "1", "NAME": bank,
                "RQ_BANK_NAME": bank, "RQ_BIK": "044525225", "RQ_ACC_NUM": acc,
                "RQ_COR_ACC_NUM": "30101810400000000225", "ACTIVE": "Y", "SORT": "500"})
        };
        for b in [
            bd(21, 11, "ПАО Сбербанк", "40702810900000000011"),
            bd(22, 11, "АО Альфа-Банк", "40702810900000000022"),
            bd(23, 13, "ПАО Сбербанк", "40702810900000000033"),
        ] {
            self.insert("bankdetail", obj(b));
        }
        let addr = |n: u64, rq: u64, type_id: u64, a1: &str| {
            json!({"ID": n.to_string(), "TYPE_ID": type_id.to_string(), "ENTITY_TYPE_ID": "8",
                "ENTITY_ID": rq.to_string(), "ADDRESS_1": a1, "ADDRESS_2": null, "CITY": "Москва",
                "POSTAL_CODE": "125009", "REGION": null, "PROVINCE": "Москва", "COUNTRY": "Россия",
                "COUNTRY_CODE": "RU", "ANCHOR_TYPE_ID": "4", "ANCHOR_ID": "1"})
        };
        for a in [
            addr(1, 11, 6, "ул. Тверская, 7"),
            addr(2, 11, 1, "ул. Тверская, 7, офис 12"),
            addr(3, 13, 6, "Ленинский пр-т, 1"),
        ] {
            self.insert("address", obj(a));
        }
    }

    /// Two resources and two bookings: booking 301 (resource 1, users 932 and 10390, user
    /// 10390 lets 1 edit his calendar, 932 does not), booking 302 (resource 2, no users).
    fn demo_calendar(&mut self) {
        for (id, name) in [(1, "Переговорная"), (2, "Зал для занятий")] {
            self.insert(
                "calendar_resource",
                obj(json!({"ID": id.to_string(), "NAME": name, "CREATED_BY": "1"})),
            );
        }
        for (id, owner, editors) in [(932u64, 932u64, json!([])), (10390, 10390, json!([1]))] {
            self.insert(
                "calendar_section",
                obj(json!({"ID": id.to_string(), "OWNER_ID": owner.to_string(), "CAL_TYPE": "user", "EDITORS": editors})),
            );
        }
        let ev = |id: u64, booking: u64, cal: &str, owner: u64, section: u64, name: &str| {
            json!({"ID": id.to_string(), "PARENT_ID": id.to_string(), "BOOKING_ID": booking.to_string(),
                "NAME": name, "DESCRIPTION": "Услуга: Пробное занятие", "DATE_FROM": "11.06.2024 10:00:00",
                "DATE_TO": "11.06.2024 11:30:00", "TZ_FROM": "Europe/Moscow", "TZ_TO": "Europe/Moscow",
                "CAL_TYPE": cal, "OWNER_ID": owner.to_string(), "SECTION_ID": section.to_string(), "DELETED": "N"})
        };
        for e in [
            ev(4001, 301, "resource", 0, 1, "Бронирование: Переговорная"),
            ev(4002, 301, "user", 932, 932, "Бронирование"),
            ev(4003, 301, "user", 10390, 10390, "Бронирование"),
            ev(4004, 302, "resource", 0, 2, "Бронирование: Зал"),
        ] {
            self.insert("calendar_event", obj(e));
        }
    }

    fn demo_telephony_and_drive(&mut self) {
        for (n, line, name) in [
            (1, "reg151083", "Облачная АТС (9)"),
            (2, "sip7", "Офисная АТС"),
        ] {
            self.insert(
                "voximplant_line",
                obj(json!({"ID": n.to_string(), "LINE_ID": line, "NAME": name})),
            );
        }
        self.add_disk_file("Прайс.txt", "Прайс-лист: шахматы 1200 ₽\n".as_bytes(), None);
        self.add_disk_file("Договор.txt", b"private", Some(&[932]));
    }

    fn demo_bp_people(&mut self) {
        let personal = json!({
            "PERSONAL_PROFESSION": "Менеджер", "PERSONAL_WWW": "https://sergeev.example.ru",
            "PERSONAL_BIRTHDAY": "1988-03-14T00:00:00+03:00", "PERSONAL_PHOTO": "https://cdn.example.ru/u932.jpg",
            "PERSONAL_PHONE": "+7 495 000-09-32", "PERSONAL_CITY": "Москва", "PERSONAL_COUNTRY": "1",
            "WORK_COMPANY": "Русская шахматная школа", "UF_PHONE_INNER": "932", "UF_SKYPE": "a.sergeev",
        });
        for (k, v) in personal.as_object().into_iter().flatten() {
            self.set_field("user", 932, k, v.clone());
        }
        for (k, v) in [
            ("ADDRESS", "ул. Тверская, 7"),
            ("ADDRESS_2", "офис 12"),
            ("ADDRESS_CITY", "Москва"),
        ] {
            self.set_field("company", 1, k, json!(v));
        }
    }

    fn demo_invoices(&mut self) {
        let off = self.offset_secs;
        let deal_ids = self.ids("deal");
        for (id, deal_index, status) in DEMO_INVOICES {
            let deal_id = deal_ids[deal_index];
            let deal = self.get("deal", deal_id).unwrap_or_default();
            let text = |k: &str| {
                deal.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            let rows: Vec<Value> = self
                .product_rows(deal_id)
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    json!({
                        "ID": (id * 10 + i as u64).to_string(), "PRODUCT_ID": r.get("PRODUCT_ID").cloned().unwrap_or(json!(0)),
                        "PRODUCT_NAME": r.get("PRODUCT_NAME").cloned().unwrap_or(json!("")),
                        "QUANTITY": r.get("QUANTITY").cloned().unwrap_or(json!(1)), "PRICE": r.get("PRICE").cloned().unwrap_or(json!(0)),
                        "VAT_RATE": "0.00", "VAT_INCLUDED": "Y", "DISCOUNT_PRICE": "0.00", "MEASURE_CODE": 796,
                        "MEASURE_NAME": r.get("MEASURE_NAME").cloned().unwrap_or(json!("шт")), "CUSTOMIZED": "Y", "SORT": 10 * (i + 1),
                    })
                })
                .collect();
            let bill = DEMO_NOW - 86_400 * (id as i64 - 495);
            self.insert(
                "invoice",
                obj(json!({
                    "ID": id.to_string(), "ACCOUNT_NUMBER": id.to_string(), "ORDER_TOPIC": format!("Счёт по сделке №{deal_id}"),
                    "STATUS_ID": status, "PAYED": if status == "P" { "Y" } else { "N" }, "CURRENCY": "RUB",
                    "PRICE": text("OPPORTUNITY"), "TAX_VALUE": "0.00", "PERSON_TYPE_ID": "1", "PAY_SYSTEM_ID": "1",
                    "DATE_BILL": format_ts(bill, off), "DATE_PAY_BEFORE": format_ts(bill + 10 * 86_400, off),
                    "DATE_INSERT": format_ts(bill, off), "DATE_UPDATE": format_ts(bill + 3600, off), "DATE_STATUS": format_ts(bill + 3600, off),
                    "UF_DEAL_ID": deal_id.to_string(), "UF_CONTACT_ID": text("CONTACT_ID"),
                    "UF_COMPANY_ID": if text("COMPANY_ID").is_empty() { "0".to_string() } else { text("COMPANY_ID") },
                    "UF_MYCOMPANY_ID": "0", "RESPONSIBLE_ID": text("ASSIGNED_BY_ID"), "COMMENTS": "", "USER_DESCRIPTION": "",
                    "XML_ID": "", "LID": "s1", "IS_RECURRING": "N", "REASON_MARKED": "",
                    "INVOICE_PROPERTIES": {"FIO": "", "EMAIL": "", "PHONE": ""}, "PRODUCT_ROWS": rows,
                })),
            );
        }
    }
}
