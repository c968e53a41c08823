//! Requisites and what an invoice needs around them: `crm.requisite.list`,
//! `crm.requisite.bankdetail.list`, `crm.address.list`, `crm.requisite.link.register`,
//! `crm.persontype.list`, `crm.paysystem.list`. Requisites, bank details and addresses are
//! tables (`requisite`, `bankdetail`, `address`) served by the CRM list machinery.

use super::*;

/// A list over a table that may not exist yet (then it is empty, as on a fresh portal).
pub(super) fn table_list(
    portal: &Portal,
    name: &str,
    params: &Map<String, Value>,
) -> Result<Reply, ApiError> {
    let empty_table;
    let t = match portal.table(name) {
        Some(t) => t,
        None => {
            empty_table = Table::new(name, Vec::new());
            &empty_table
        }
    };
    let empty = Map::new();
    let filter = map_param(params, "filter")?.unwrap_or(&empty);
    let mut order = parse_order(get_ci(params, "order"));
    if order.is_empty() {
        order.push(("ID".into(), false));
    }
    let f = Filter::compile(t, filter, portal.offset_secs);
    let cols = resolve_select(t, get_ci(params, "select"));
    let page = run_list(t, &f, &order, start_param(params));
    Ok(list_reply(t, page, Some(&cols)))
}

/// `crm.address.list`: addresses have no ID of their own (TYPE_ID + ENTITY_TYPE_ID + ENTITY_ID).
pub(super) fn address_list(
    portal: &Portal,
    params: &Map<String, Value>,
) -> Result<Reply, ApiError> {
    let mut reply = table_list(portal, "address", params)?;
    if let Value::Array(rows) = &mut reply.result {
        for r in rows.iter_mut() {
            if let Value::Object(m) = r {
                m.remove("ID");
            }
        }
    }
    Ok(reply)
}

pub(super) fn persontype_list() -> Reply {
    rows_reply(vec![
        json!({"ID": "1", "NAME": "CRM_CONTACT"}),
        json!({"ID": "2", "NAME": "CRM_COMPANY"}),
    ])
}

/// Payment systems of the legacy invoices: one per kind of buyer and handler.
pub(super) fn paysystem_list() -> Reply {
    let ps = |id: u32, name: &str, person: u32, handler: &str| {
        json!({"ID": id.to_string(), "NAME": name, "ACTIVE": "Y", "SORT": (id * 100).to_string(),
            "DESCRIPTION": "", "PERSON_TYPE_ID": person.to_string(), "ACTION_FILE": handler, "HANDLER": handler})
    };
    rows_reply(vec![
        ps(1, "Квитанция (физ. лица)", 1, "bill"),
        ps(2, "Счёт (юр. лица)", 2, "bill"),
        ps(3, "Банковская карта", 1, "yandexcheckout"),
    ])
}

fn field_id(fields: &Map<String, Value>, name: &str) -> u64 {
    get_ci(fields, name).and_then(id_of).unwrap_or(0)
}

/// `crm.requisite.link.register {fields:{ENTITY_TYPE_ID, ENTITY_ID, REQUISITE_ID,
/// BANK_DETAIL_ID, MC_REQUISITE_ID, MC_BANK_DETAIL_ID}}`: 0 for a missing side; a bank
/// detail must belong to its requisite. Kept in the `requisite_link` table (one per owner).
pub(super) fn link_register(
    portal: &mut Portal,
    params: &Map<String, Value>,
) -> Result<Reply, ApiError> {
    let fields = map_param(params, "fields")?.cloned().unwrap_or_default();
    let owner = match field_id(&fields, "ENTITY_TYPE_ID") {
        2 => "deal",
        5 => "invoice",
        7 => "quote",
        31 => "smart_invoice",
        _ => {
            return Err(ApiError::legacy(
                "The parameter entityTypeId is not defined or invalid.",
            ));
        }
    };
    let owner_id = field_id(&fields, "ENTITY_ID");
    if !portal.table(owner).is_some_and(|t| t.contains(owner_id)) {
        return Err(ApiError::legacy("The owner entity is not found."));
    }
    for (rq, bd) in [
        ("REQUISITE_ID", "BANK_DETAIL_ID"),
        ("MC_REQUISITE_ID", "MC_BANK_DETAIL_ID"),
    ] {
        let (rq_id, bd_id) = (field_id(&fields, rq), field_id(&fields, bd));
        if rq_id > 0 && !portal.table("requisite").is_some_and(|t| t.contains(rq_id)) {
            return Err(ApiError::legacy(&format!(
                "The requisite with ID '{rq_id}' is not found."
            )));
        }
        if bd_id > 0 {
            let parent = portal
                .table("bankdetail")
                .and_then(|t| t.value(bd_id, "ENTITY_ID"))
                .and_then(|v| id_of(&v));
            if parent != Some(rq_id) {
                return Err(ApiError::legacy(&format!(
                    "The bank details with ID '{bd_id}' is not found."
                )));
            }
        }
    }
    let link_id = field_id(&fields, "ENTITY_TYPE_ID") * 1_000_000_000 + owner_id;
    let mut row = Map::new();
    row.insert("ID".into(), json!(link_id.to_string()));
    for k in [
        "ENTITY_TYPE_ID",
        "ENTITY_ID",
        "REQUISITE_ID",
        "BANK_DETAIL_ID",
        "MC_REQUISITE_ID",
        "MC_BANK_DETAIL_ID",
    ] {
        row.insert(k.into(), json!(field_id(&fields, k).to_string()));
    }
    portal.insert("requisite_link", row);
    portal.count_mutation("crm.requisite.link.register");
    Ok(Reply::value(json!(true)))
}
