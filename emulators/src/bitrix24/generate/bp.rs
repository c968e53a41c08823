//! Demo data for the business-process actions (seed 002): the fields those actions read and
//! write on the existing demo records (a user's personal data, a company's address) and the
//! kinds of records only they use (legacy invoices). Nothing the other demo data sets hold is
//! added to or removed, so their lists and counts stay as they were.

use super::*;

/// Legacy invoices of the demo portal: (ID, deal index, STATUS_ID).
const DEMO_INVOICES: [(u64, usize, &str); 3] = [(501, 0, "P"), (502, 1, "N"), (503, 3, "S")];

impl Portal {
    pub(super) fn demo_bp(&mut self) {
        self.demo_bp_people();
        self.demo_invoices();
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
