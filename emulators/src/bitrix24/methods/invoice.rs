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
