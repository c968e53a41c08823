//! Legacy invoices (`crm.invoice.*`, RD crm/outdated/invoice): one row per invoice in the
//! `invoice` table, with `ACCOUNT_NUMBER`, `STATUS_ID` (`INVOICE_STATUS`: N, S, P, D),
//! `PRODUCT_ROWS` and `INVOICE_PROPERTIES` as the portal returns them.

use super::*;

pub(super) fn invoice_get(portal: &Portal, params: &Map<String, Value>) -> Result<Reply, ApiError> {
    let id = param_id(params)?;
    let row = portal
        .get("invoice", id)
        .ok_or_else(|| ApiError::legacy("Not found"))?;
    Ok(Reply::value(Value::Object(row)))
}

/// `crm.invoice.list`: the legacy list (filter by `XML_ID`, `UF_DEAL_ID`, …); product rows and
/// properties only come with `crm.invoice.get`.
pub(super) fn invoice_list(
    portal: &Portal,
    params: &Map<String, Value>,
) -> Result<Reply, ApiError> {
    let mut reply = super::requisites::table_list(portal, "invoice", params)?;
    if let Value::Array(rows) = &mut reply.result {
        for r in rows.iter_mut() {
            if let Value::Object(m) = r {
                m.remove("PRODUCT_ROWS");
                m.remove("INVOICE_PROPERTIES");
            }
        }
    }
    Ok(reply)
}

fn number(v: Option<&Value>) -> f64 {
    match v {
        Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
        Some(Value::String(s)) => s.trim().parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

/// The required fields of `crm.invoice.add`, as the legacy proxy names them.
fn check_invoice(fields: &Map<String, Value>, rows: &[Value]) -> Result<(), ApiError> {
    for req in ["ORDER_TOPIC", "PERSON_TYPE_ID", "PAY_SYSTEM_ID"] {
        let ok = get_ci(fields, req)
            .and_then(scalar_text)
            .is_some_and(|s| !s.trim().is_empty() && s.trim() != "0");
        if !ok {
            return Err(ApiError::legacy(&format!(
                "The field {req} is not defined or empty."
            )));
        }
    }
    if rows.is_empty() {
        return Err(ApiError::legacy("Invoice must contain products."));
    }
    Ok(())
}

/// `crm.invoice.add {fields}` -> the new ID; ACCOUNT_NUMBER follows the ID (default numbering).
pub(super) fn invoice_add(
    portal: &mut Portal,
    params: &Map<String, Value>,
    env: &Env,
) -> Result<Reply, ApiError> {
    let fields = map_param(params, "fields")?.cloned().unwrap_or_default();
    let rows: Vec<Value> = get_ci(&fields, "PRODUCT_ROWS")
        .and_then(list_of)
        .unwrap_or_default();
    check_invoice(&fields, &rows)?;
    let id = portal.table_mut("invoice").next_id().max(1);
    let now = format_ts(env.now, portal.offset_secs);
    let mut stored_rows = Vec::new();
    let mut price = 0.0;
    for (i, r) in rows.iter().enumerate() {
        let mut r = r.as_object().cloned().unwrap_or_default();
        price += number(get_ci(&r, "PRICE")) * number(get_ci(&r, "QUANTITY"));
        r.insert("ID".into(), json!((id * 100 + i as u64 + 1).to_string()));
        stored_rows.push(Value::Object(r));
    }
    let mut row = Map::new();
    for (k, v) in &fields {
        row.insert(k.trim().to_ascii_uppercase(), v.clone());
    }
    row.insert("ID".into(), json!(id.to_string()));
    row.insert("ACCOUNT_NUMBER".into(), json!(id.to_string()));
    let status = row
        .get("STATUS_ID")
        .and_then(scalar_text)
        .map(|s| s.into_owned());
    row.insert(
        "STATUS_ID".into(),
        json!(
            status
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "N".into())
        ),
    );
    row.insert("PRICE".into(), json!(format!("{price:.2}")));
    row.insert("PAYED".into(), json!("N"));
    row.entry("CURRENCY").or_insert(json!("RUB"));
    row.entry("XML_ID").or_insert(json!(""));
    row.entry("RESPONSIBLE_ID")
        .or_insert(json!(env.user_id.to_string()));
    for k in ["DATE_INSERT", "DATE_UPDATE", "DATE_STATUS", "DATE_BILL"] {
        row.insert(k.into(), json!(now));
    }
    row.insert("PRODUCT_ROWS".into(), Value::Array(stored_rows));
    portal.insert("invoice", row);
    portal.count_mutation("crm.invoice.add");
    Ok(Reply::value(json!(id)))
}

/// `crm.invoice.getexternallink {id}`: the invoice's public payment page.
pub(super) fn invoice_external_link(
    portal: &Portal,
    params: &Map<String, Value>,
) -> Result<Reply, ApiError> {
    let id = param_id(params)?;
    if !portal.table("invoice").is_some_and(|t| t.contains(id)) {
        return Err(ApiError::legacy("Not found"));
    }
    let hash = format!("{:016x}", id.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    Ok(Reply::value(json!(format!(
        "{}/pub/payment.php?invoice_id={id}&hash={hash}",
        portal.base_url
    ))))
}
