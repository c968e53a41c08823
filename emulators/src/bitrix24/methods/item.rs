//! `crm.item.get` and `crm.item.update` (the universal API, camelCase, `result.item`) over the
//! legacy tables. For a deal, `categoryId` moves it to another pipeline (the one thing
//! `crm.deal.update` cannot do): without a `stageId` it lands on the pipeline's first stage,
//! and a stage must belong to the pipeline.

use super::dictionaries::{DEAL_CATEGORIES, deal_stages};
use super::*;
use crate::bitrix24::items::{to_camel, to_upper_snake};

pub(super) fn entity_of(type_id: i64) -> Option<&'static str> {
    Some(match type_id {
        1 => "lead",
        2 => "deal",
        3 => "contact",
        4 => "company",
        31 => "smart_invoice",
        _ => return None,
    })
}

fn not_found() -> ApiError {
    ApiError::new(400, "NOT_FOUND", "Element not found")
}

/// The entity of `entityTypeId` and the existing item `id`.
pub(super) fn target(
    portal: &Portal,
    params: &Map<String, Value>,
) -> Result<(&'static str, u64), ApiError> {
    let type_id = get_ci(params, "entityTypeId").and_then(as_i64).unwrap_or(0);
    let entity = entity_of(type_id)
        .ok_or_else(|| ApiError::new(400, "NOT_FOUND", "Smart process not found"))?;
    let id = get_ci(params, "id").and_then(id_of).unwrap_or(0);
    if !portal.table(entity).is_some_and(|t| t.contains(id)) {
        return Err(not_found());
    }
    Ok((entity, id))
}

/// An item in the universal API's shape: camelCase keys, IDs as numbers, bindings as lists.
pub(super) fn item_view(portal: &Portal, entity: &str, id: u64) -> Value {
    let mut item = Map::new();
    for (k, v) in portal.get(entity, id).unwrap_or_default() {
        let is_id = k == "ID" || k.ends_with("_ID");
        let v = match (&v, is_id) {
            (Value::String(s), true) => s.trim().parse::<i64>().map_or(v.clone(), Value::from),
            _ => v,
        };
        item.insert(to_camel(&k), v);
    }
    let ids = |rows: &[Row], key: &str| -> Vec<u64> {
        rows.iter()
            .filter_map(|r| r.get(key).and_then(id_of))
            .collect()
    };
    match entity {
        "deal" => {
            item.insert(
                "contactIds".into(),
                json!(ids(portal.deal_contacts(id), "CONTACT_ID")),
            );
        }
        "contact" => {
            item.insert(
                "companyIds".into(),
                json!(ids(portal.contact_companies(id), "COMPANY_ID")),
            );
        }
        _ => {}
    }
    json!({ "item": item })
}

pub(super) fn item_get(portal: &Portal, params: &Map<String, Value>) -> Result<Reply, ApiError> {
    let (entity, id) = target(portal, params)?;
    Ok(Reply::value(item_view(portal, entity, id)))
}

/// A deal's new pipeline and stage from `categoryId`/`stageId` (either may be absent).
fn deal_move(
    portal: &Portal,
    id: u64,
    fields: &Map<String, Value>,
) -> Result<Option<(u64, String)>, ApiError> {
    let cat_given = get_ci(fields, "categoryId").and_then(id_of);
    let stage_given = get_ci(fields, "stageId")
        .and_then(scalar_text)
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    if cat_given.is_none() && stage_given.is_none() {
        return Ok(None);
    }
    let current = portal
        .table("deal")
        .and_then(|t| t.value(id, "CATEGORY_ID"))
        .and_then(|v| id_of(&v))
        .unwrap_or(0);
    let category = cat_given.unwrap_or(current);
    if !DEAL_CATEGORIES.iter().any(|c| c.0 == category) {
        return Err(ApiError::new(400, "NOT_FOUND", "Category not found"));
    }
    let stages = deal_stages(category);
    let stage = match stage_given {
        Some(s) if stages.contains(&s.as_str()) => s,
        Some(s) => {
            return Err(ApiError::new(
                400,
                "INVALID_ARG_VALUE",
                &format!("Stage {s} is not a stage of category {category}"),
            ));
        }
        None if category == current => return Ok(None),
        None => stages.first().map(|s| s.to_string()).unwrap_or_default(),
    };
    Ok(Some((category, stage)))
}

pub(super) fn item_update(
    portal: &mut Portal,
    params: &Map<String, Value>,
    env: &Env,
) -> Result<Reply, ApiError> {
    let (entity, id) = target(portal, params)?;
    let fields = map_param(params, "fields")?.cloned().unwrap_or_default();
    let moved = if entity == "deal" {
        deal_move(portal, id, &fields)?
    } else {
        None
    };
    let legacy: Map<String, Value> = fields
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "categoryId" | "stageId" | "id"))
        .map(|(k, v)| (to_upper_snake(k), v.clone()))
        .collect();
    super::crm::apply_fields(portal, entity, id, &legacy);
    if let Some((category, stage)) = moved {
        let now = format_ts(env.now, portal.offset_secs);
        let t = portal.table_mut("deal");
        t.set(id, "CATEGORY_ID", Some(json!(category.to_string())));
        t.set(id, "STAGE_ID", Some(json!(stage)));
        t.set(id, "MOVED_TIME", Some(json!(now)));
    }
    super::crm::touch(portal, entity, id, env);
    portal.count_mutation("crm.item.update");
    Ok(Reply::value(item_view(portal, entity, id)))
}

/// `crm.item.add {entityTypeId, fields}` -> `{item}`. Smart invoices (31) get the default
/// pipeline's first stage and an `accountNumber` from their ID; other types take the legacy
/// table's fields.
pub(super) fn item_add(
    portal: &mut Portal,
    params: &Map<String, Value>,
    env: &Env,
) -> Result<Reply, ApiError> {
    let type_id = get_ci(params, "entityTypeId").and_then(as_i64).unwrap_or(0);
    let entity = entity_of(type_id)
        .ok_or_else(|| ApiError::new(400, "NOT_FOUND", "Smart process not found"))?;
    let fields = map_param(params, "fields")?.cloned().unwrap_or_default();
    let id = portal.table_mut(entity).next_id();
    let now = format_ts(env.now, portal.offset_secs);
    let user = env.user_id.to_string();
    let mut row = Map::new();
    row.insert("ID".into(), json!(id.to_string()));
    if entity == "smart_invoice" {
        let base = json!({"TITLE": format!("Счёт #{id}"), "ACCOUNT_NUMBER": id.to_string(), "XML_ID": "",
            "CATEGORY_ID": "1", "STAGE_ID": "DT31_1:N", "OPPORTUNITY": 0, "CURRENCY_ID": "RUB",
            "COMPANY_ID": "0", "CONTACT_ID": "0", "MYCOMPANY_ID": "0", "ASSIGNED_BY_ID": user,
            "CREATED_BY": user, "UPDATED_BY": user, "CREATED_TIME": now, "UPDATED_TIME": now});
        row.extend(base.as_object().cloned().unwrap_or_default());
        for (k, v) in &fields {
            let key = to_upper_snake(k);
            if key == "CONTACT_IDS" {
                continue;
            }
            row.insert(key, v.clone());
        }
        portal.insert(entity, row);
    } else {
        portal.insert(entity, row);
        let legacy: Map<String, Value> = fields
            .iter()
            .map(|(k, v)| (to_upper_snake(k), v.clone()))
            .collect();
        super::crm::apply_fields(portal, entity, id, &legacy);
        super::crm::touch(portal, entity, id, env);
    }
    portal.count_mutation("crm.item.add");
    Ok(Reply::value(item_view(portal, entity, id)))
}

/// `crm.item.productrow.set {ownerType:"SI", ownerId, productRows}` -> `{productRows}`; the
/// invoice's amount follows its rows.
pub(super) fn productrow_set(
    portal: &mut Portal,
    params: &Map<String, Value>,
) -> Result<Reply, ApiError> {
    let owner_type = get_ci(params, "ownerType")
        .and_then(scalar_text)
        .unwrap_or_default();
    if owner_type != "SI" {
        return Err(ApiError::new(
            400,
            "INVALID_ARG_VALUE",
            "ownerType is not supported",
        ));
    }
    let owner_id = get_ci(params, "ownerId").and_then(id_of).unwrap_or(0);
    if !portal
        .table("smart_invoice")
        .is_some_and(|t| t.contains(owner_id))
    {
        return Err(not_found());
    }
    let rows: Vec<Value> = get_ci(params, "productRows")
        .and_then(list_of)
        .unwrap_or_default();
    let mut total = 0.0;
    let mut stored = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let mut r = r.as_object().cloned().unwrap_or_default();
        let num = |k: &str| get_ci(&r, k).and_then(|v| scalar_text(v)?.trim().parse::<f64>().ok());
        let (price, qty) = (num("price").unwrap_or(0.0), num("quantity").unwrap_or(1.0));
        total += price * qty;
        r.insert("id".into(), json!(owner_id * 100 + i as u64 + 1));
        r.insert("ownerId".into(), json!(owner_id));
        r.insert("ownerType".into(), json!("SI"));
        r.insert("price".into(), json!(price));
        r.insert("quantity".into(), json!(qty));
        stored.push(Value::Object(r));
    }
    let t = portal.table_mut("smart_invoice");
    t.set(owner_id, "PRODUCT_ROWS", Some(Value::Array(stored.clone())));
    t.set(owner_id, "OPPORTUNITY", Some(json!(total)));
    portal.count_mutation("crm.item.productrow.set");
    Ok(Reply::value(json!({ "productRows": stored })))
}
