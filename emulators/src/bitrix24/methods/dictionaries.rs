//! The portal's reference lists: `crm.status.list` (every status type, deal stages per
//! pipeline), `crm.currency.list`, `crm.category.list` (deal pipelines). Fixed data in the
//! demo portal's words; the lists go through the same filter and order as the CRM lists.

use super::*;

/// (ENTITY_ID, STATUS_ID, NAME, SORT, SEMANTICS)
const STATUSES: &[(&str, &str, &str, u32, &str)] = &[
    ("STATUS", "NEW", "Не обработан", 10, ""),
    ("STATUS", "IN_PROCESS", "В работе", 20, ""),
    ("STATUS", "PROCESSED", "Обработан", 30, ""),
    ("STATUS", "CONVERTED", "Качественный лид", 40, "S"),
    ("STATUS", "JUNK", "Некачественный лид", 50, "F"),
    ("SOURCE", "CALL", "Звонок", 10, ""),
    ("SOURCE", "EMAIL", "Электронная почта", 20, ""),
    ("SOURCE", "WEB", "Веб-сайт", 30, ""),
    ("SOURCE", "ADVERTISING", "Реклама", 40, ""),
    ("SOURCE", "PARTNER", "Существующий клиент", 50, ""),
    ("SOURCE", "OTHER", "Другое", 60, ""),
    ("CONTACT_TYPE", "CLIENT", "Клиенты", 10, ""),
    ("CONTACT_TYPE", "SUPPLIER", "Поставщики", 20, ""),
    ("CONTACT_TYPE", "PARTNER", "Партнеры", 30, ""),
    ("CONTACT_TYPE", "OTHER", "Другое", 40, ""),
    ("COMPANY_TYPE", "CUSTOMER", "Клиент", 10, ""),
    ("COMPANY_TYPE", "SUPPLIER", "Поставщик", 20, ""),
    ("COMPANY_TYPE", "PARTNER", "Партнер", 30, ""),
    ("COMPANY_TYPE", "OTHER", "Другое", 40, ""),
    ("INDUSTRY", "IT", "Информационные технологии", 10, ""),
    ("INDUSTRY", "EDUCATION", "Образование", 20, ""),
    ("INDUSTRY", "MANUFACTURING", "Производство", 30, ""),
    ("INDUSTRY", "OTHER", "Другое", 40, ""),
    ("EMPLOYEES", "EMPLOYEES_1", "менее 50", 10, ""),
    ("EMPLOYEES", "EMPLOYEES_2", "50-250", 20, ""),
    ("EMPLOYEES", "EMPLOYEES_3", "250-500", 30, ""),
    ("EMPLOYEES", "EMPLOYEES_4", "более 500", 40, ""),
    ("DEAL_TYPE", "SALE", "Продажа", 10, ""),
    ("DEAL_TYPE", "COMPLEX", "Комплексная продажа", 20, ""),
    ("DEAL_TYPE", "SERVICE", "Сервисное обслуживание", 30, ""),
    ("DEAL_STAGE", "NEW", "Новая", 10, ""),
    ("DEAL_STAGE", "PREPARATION", "Подготовка документов", 20, ""),
    ("DEAL_STAGE", "EXECUTING", "В работе", 30, ""),
    ("DEAL_STAGE", "WON", "Сделка успешна", 60, "S"),
    ("DEAL_STAGE", "LOSE", "Сделка провалена", 70, "F"),
    ("DEAL_STAGE_1", "C1:NEW", "Новая", 10, ""),
    ("DEAL_STAGE_1", "C1:EXECUTING", "В работе", 20, ""),
    ("DEAL_STAGE_1", "C1:WON", "Сделка успешна", 60, "S"),
    ("DEAL_STAGE_1", "C1:LOSE", "Сделка провалена", 70, "F"),
    ("HONORIFIC", "HNR_RU_1", "г-н", 10, ""),
    ("HONORIFIC", "HNR_RU_2", "г-жа", 20, ""),
    ("INVOICE_STATUS", "N", "Новый", 10, ""),
    ("INVOICE_STATUS", "S", "Отправлен клиенту", 20, ""),
    ("INVOICE_STATUS", "P", "Оплачен", 130, "S"),
    ("INVOICE_STATUS", "D", "Отклонён", 140, "F"),
];

/// Deal pipelines: (ID, NAME, SORT).
pub(crate) const DEAL_CATEGORIES: &[(u64, &str, u32)] =
    &[(0, "Общая", 100), (1, "Повторные продажи", 200)];

/// Stages of a deal pipeline, in order.
pub(crate) fn deal_stages(category: u64) -> Vec<&'static str> {
    let entity = if category == 0 {
        "DEAL_STAGE".to_string()
    } else {
        format!("DEAL_STAGE_{category}")
    };
    STATUSES
        .iter()
        .filter(|s| s.0 == entity)
        .map(|s| s.1)
        .collect()
}

fn status_table() -> Table {
    let mut t = Table::new("status", Vec::new());
    for (i, (entity, status, name, sort, semantics)) in STATUSES.iter().enumerate() {
        let category = entity
            .strip_prefix("DEAL_STAGE_")
            .unwrap_or(if *entity == "DEAL_STAGE" { "0" } else { "" });
        let mut row = json!({
            "ID": (i + 1).to_string(), "ENTITY_ID": entity, "STATUS_ID": status, "NAME": name,
            "NAME_INIT": name, "SORT": sort.to_string(), "SYSTEM": "Y", "COLOR": "#39A8EF",
            "SEMANTICS": if semantics.is_empty() { Value::Null } else { json!(semantics) },
        });
        if !category.is_empty() {
            row["CATEGORY_ID"] = json!(category);
        }
        if let Value::Object(m) = row {
            t.insert(m);
        }
    }
    t
}

/// `crm.status.list {filter, order}`: all rows at once (no paging), like the portal.
pub(super) fn status_list(portal: &Portal, params: &Map<String, Value>) -> Result<Reply, ApiError> {
    let t = status_table();
    let empty = Map::new();
    let filter = map_param(params, "filter")?.unwrap_or(&empty);
    let mut order = parse_order(get_ci(params, "order"));
    if order.is_empty() {
        order.push(("SORT".into(), false));
    }
    let f = Filter::compile(&t, filter, portal.offset_secs);
    let page = run_list(&t, &f, &order, -1);
    let rows: Vec<Value> = page
        .ids
        .iter()
        .filter_map(|id| t.raw(*id))
        .map(|raw| Value::Object(present(&t, raw)))
        .collect();
    Ok(rows_reply(rows))
}

pub(super) fn currency_list() -> Reply {
    let currency = |code: &str, name: &str, amount: &str, sort: u32, base: &str| {
        json!({
            "CURRENCY": code, "AMOUNT_CNT": 1, "AMOUNT": amount, "SORT": sort, "BASE": base,
            "FULL_NAME": name, "LID": "ru", "FORMAT_STRING": format!("# {code}"),
            "DEC_POINT": ".", "THOUSANDS_SEP": " ", "DECIMALS": 2,
        })
    };
    rows_reply(vec![
        currency("RUB", "Российский рубль", "1.0000", 100, "Y"),
        currency("USD", "Доллар США", "90.0000", 200, "N"),
        currency("EUR", "Евро", "98.0000", 300, "N"),
    ])
}

/// `crm.category.list {entityTypeId}`: deal pipelines; other types have the default one.
pub(super) fn category_list(params: &Map<String, Value>) -> Result<Reply, ApiError> {
    let type_id = get_ci(params, "entityTypeId").and_then(as_i64).unwrap_or(0);
    if !matches!(type_id, 2 | 31) {
        return Err(ApiError::new(400, "NOT_FOUND", "Smart process not found"));
    }
    let cats: Vec<Value> = match type_id {
        2 => DEAL_CATEGORIES
            .iter()
            .map(|(id, name, sort)| {
                json!({"id": id, "name": name, "sort": sort, "entityTypeId": 2, "isDefault": if *id == 0 { "Y" } else { "N" }})
            })
            .collect(),
        _ => vec![json!({"id": 1, "name": "Счета", "sort": 500, "entityTypeId": 31, "isDefault": "Y"})],
    };
    let n = cats.len();
    Ok(Reply {
        total: Some(n),
        rows: n,
        ..Reply::value(json!({ "categories": cats }))
    })
}
