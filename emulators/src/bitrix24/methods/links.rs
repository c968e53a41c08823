//! Set-valued bindings: a deal's `CONTACT_IDS`, a contact's `COMPANY_IDS` («the field is
//! completely replaced», RD crm-deal-update.md) and `crm.company.contact.items.set`.

use super::*;

/// IDs of a set-valued field: a list, a PHP map, one scalar; `[]`/"" empties the set.
fn id_list(v: &Value) -> Vec<u64> {
    match v {
        Value::Array(a) => a.iter().filter_map(id_of).collect(),
        Value::Object(o) => o.values().filter_map(id_of).collect(),
        other => id_of(other).into_iter().collect(),
    }
}

/// Apply `CONTACT_IDS` of a deal or `COMPANY_IDS` of a contact, if given: the set is replaced
/// and the single-valued field follows its first element.
pub(super) fn apply_link_sets(
    portal: &mut Portal,
    entity: &str,
    id: u64,
    fields: &Map<String, Value>,
) {
    let (key, single) = match entity {
        "deal" => ("CONTACT_IDS", "CONTACT_ID"),
        "contact" => ("COMPANY_IDS", "COMPANY_ID"),
        _ => return,
    };
    let Some(v) = get_ci(fields, key) else { return };
    let ids = id_list(v);
    if entity == "deal" {
        portal.set_deal_contacts(id, &ids);
    } else {
        portal.set_contact_companies(id, &ids);
    }
    let first = ids.first().map(|i| json!(i.to_string()));
    portal.table_mut(entity).set(id, single, first);
}

/// `crm.company.contact.items.set {id, items:[{CONTACT_ID, SORT, IS_PRIMARY}]}`.
pub(super) fn company_contact_items_set(
    portal: &mut Portal,
    params: &Map<String, Value>,
    env: &Env,
) -> Result<Reply, ApiError> {
    let id = get_ci(params, "id")
        .and_then(id_of)
        .filter(|i| *i > 0)
        .ok_or_else(|| {
            ApiError::legacy("The parameter ownerEntityID is invalid or not defined.")
        })?;
    let items: Vec<Value> = get_ci(params, "items")
        .and_then(list_of)
        .ok_or_else(|| ApiError::legacy("The parameter items must be array."))?;
    if !portal.table("company").is_some_and(|t| t.contains(id)) {
        return Err(ApiError::legacy("Not found"));
    }
    let mut ids: Vec<u64> = Vec::new();
    for item in &items {
        let Some(c) = item
            .as_object()
            .and_then(|o| get_ci(o, "CONTACT_ID"))
            .and_then(id_of)
        else {
            continue;
        };
        if !ids.contains(&c) {
            ids.push(c);
        }
    }
    portal.set_company_contacts(id, &ids);
    super::crm::touch(portal, "company", id, env);
    portal.count_mutation("crm.company.contact.items.set");
    Ok(Reply::value(json!(true)))
}
