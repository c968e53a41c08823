//! `crm.*` methods on one record or its links: get, fields, add, update, delete, product rows,
//! contact and company links, and how a write changes the portal (field normalisation,
//! multi-fields, DATE_MODIFY, the deal's OPPORTUNITY).

use super::*;

pub(super) fn entity_get(
    portal: &Portal,
    entity: &str,
    params: &Map<String, Value>,
) -> Result<Reply, ApiError> {
    let id = param_id(params)?;
    let t = portal
        .table(entity)
        .ok_or_else(ApiError::method_not_found)?;
    let raw = t.raw(id).ok_or_else(|| ApiError::legacy("Not found"))?;
    let all: Vec<usize> = (0..t.columns().len()).collect();
    Ok(Reply::value(Value::Object(project(t, raw, &all))))
}

pub(super) fn entity_fields(portal: &Portal, entity: &str) -> Result<Reply, ApiError> {
    let t = portal
        .table(entity)
        .ok_or_else(ApiError::method_not_found)?;
    let m: Map<String, Value> = t
        .schema()
        .iter()
        .map(|d| (d.name.clone(), d.describe()))
        .collect();
    Ok(Reply::value(Value::Object(m)))
}

fn not_found(entity: &str) -> ApiError {
    ApiError::legacy(&format!("{} is not found", entity_title(entity)))
}

pub(super) fn entity_update(
    portal: &mut Portal,
    method: &str,
    entity: &str,
    params: &Map<String, Value>,
    env: &Env,
) -> Result<Reply, ApiError> {
    let id = param_id(params)?;
    if !portal.table(entity).is_some_and(|t| t.contains(id)) {
        return Err(not_found(entity));
    }
    let mut fields = map_param(params, "fields")?.cloned().unwrap_or_default();
    if entity == "deal" {
        // «You cannot move a deal to another pipeline here» (crm.item.update does it).
        fields.retain(|k, _| !k.trim().eq_ignore_ascii_case("CATEGORY_ID"));
    }
    apply_fields(portal, entity, id, &fields);
    touch(portal, entity, id, env);
    portal.count_mutation(method);
    Ok(Reply::value(json!(true)))
}

pub(super) fn entity_add(
    portal: &mut Portal,
    method: &str,
    entity: &str,
    params: &Map<String, Value>,
    env: &Env,
) -> Result<Reply, ApiError> {
    let fields = map_param(params, "fields")?.cloned().unwrap_or_default();
    if entity == "activity" {
        for req in ["OWNER_ID", "OWNER_TYPE_ID", "TYPE_ID", "SUBJECT"] {
            let ok = fields
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(req))
                .is_some_and(|(_, v)| scalar_text(v).is_some_and(|s| !s.trim().is_empty()));
            if !ok {
                return Err(ApiError::legacy(&format!(
                    "The field {req} is not defined or empty."
                )));
            }
        }
    }
    let id = portal.table_mut(entity).next_id();
    let now = format_ts(env.now, portal.offset_secs);
    let user = env.user_id.to_string();
    let mut row = Row::new();
    row.insert("ID".into(), json!(id.to_string()));
    let t = portal.table(entity).expect("table");
    for (f, v) in [
        ("DATE_CREATE", &now),
        ("CREATED", &now),
        ("CREATED_BY_ID", &user),
        ("AUTHOR_ID", &user),
        ("ASSIGNED_BY_ID", &user),
        ("RESPONSIBLE_ID", &user),
        ("OPENED", &"Y".to_string()),
        ("COMPLETED", &"N".to_string()),
    ] {
        if t.col(f).is_some() {
            row.insert(f.into(), json!(v));
        }
    }
    portal.insert(entity, row);
    apply_fields(portal, entity, id, &fields);
    touch(portal, entity, id, env);
    portal.count_mutation(method);
    Ok(Reply::value(json!(id)))
}

pub(super) fn entity_delete(
    portal: &mut Portal,
    method: &str,
    entity: &str,
    params: &Map<String, Value>,
) -> Result<Reply, ApiError> {
    let id = param_id(params)?;
    if !portal.table_mut(entity).remove(id) {
        return Err(not_found(entity));
    }
    portal.count_mutation(method);
    Ok(Reply::value(json!(true)))
}

fn existing(portal: &Portal, entity: &str, id: u64) -> Result<(), ApiError> {
    if portal.table(entity).is_some_and(|t| t.contains(id)) {
        Ok(())
    } else {
        Err(ApiError::legacy("Not found"))
    }
}

pub(super) fn product_rows_get(
    portal: &Portal,
    params: &Map<String, Value>,
) -> Result<Reply, ApiError> {
    let id = param_id(params)?;
    existing(portal, "deal", id)?;
    let rows = portal
        .product_rows(id)
        .iter()
        .cloned()
        .map(Value::Object)
        .collect();
    Ok(rows_reply(rows))
}

pub(super) fn product_rows_set(
    portal: &mut Portal,
    method: &str,
    params: &Map<String, Value>,
    env: &Env,
) -> Result<Reply, ApiError> {
    let id = param_id(params)?;
    existing(portal, "deal", id)?;
    let rows: Vec<Row> = get_ci(params, "rows")
        .and_then(list_of)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|v| match v {
            Value::Object(row) => Some(row),
            _ => None,
        })
        .collect();
    portal.set_product_rows(id, rows);
    recompute_opportunity(portal, id);
    touch(portal, "deal", id, env);
    portal.count_mutation(method);
    Ok(Reply::value(json!(true)))
}

/// `crm.deal.contact.items.get` and `crm.contact.company.items.get`.
pub(super) fn links_get(
    portal: &Portal,
    method: &str,
    params: &Map<String, Value>,
) -> Result<Reply, ApiError> {
    let id = param_id(params)?;
    let owner = if method.starts_with("crm.deal") {
        "deal"
    } else {
        "contact"
    };
    existing(portal, owner, id)?;
    let links = if owner == "deal" {
        portal.deal_contacts(id)
    } else {
        portal.contact_companies(id)
    };
    Ok(rows_reply(
        links.iter().cloned().map(Value::Object).collect(),
    ))
}

pub(super) fn company_contacts_get(
    portal: &Portal,
    params: &Map<String, Value>,
) -> Result<Reply, ApiError> {
    let id = param_id(params)?;
    existing(portal, "company", id)?;
    let rows = portal
        .company_contacts(id)
        .into_iter()
        .enumerate()
        .map(|(i, c)| json!({"CONTACT_ID": c, "SORT": 10 * (i + 1), "ROLE_ID": 0, "IS_PRIMARY": if i == 0 { "Y" } else { "N" }}))
        .collect();
    Ok(rows_reply(rows))
}

/// A deal's amount follows its product rows unless it was entered by hand.
pub(super) fn recompute_opportunity(portal: &mut Portal, deal_id: u64) {
    let number = |v: Option<&Value>| match v {
        Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
        Some(Value::String(s)) => s.parse().unwrap_or(0.0),
        _ => 0.0,
    };
    let sum: f64 = portal
        .product_rows(deal_id)
        .iter()
        .map(|r| number(r.get("PRICE")) * number(r.get("QUANTITY")))
        .sum();
    let t = portal.table_mut("deal");
    let manual = t.value(deal_id, "IS_MANUAL_OPPORTUNITY") == Some(Value::from("Y"));
    if !manual {
        t.set(
            deal_id,
            "OPPORTUNITY",
            Some(Value::String(format!("{sum:.2}"))),
        );
    }
}

/// Stamp a write: DATE_MODIFY/LAST_UPDATED = now (portal offset, seconds), MODIFY_BY_ID/EDITOR_ID.
pub(super) fn touch(portal: &mut Portal, entity: &str, id: u64, env: &Env) {
    let now = format_ts(env.now, portal.offset_secs);
    let t = portal.table_mut(entity);
    for (f, v) in [
        ("DATE_MODIFY", now.clone()),
        ("LAST_UPDATED", now),
        ("MODIFY_BY_ID", env.user_id.to_string()),
        ("EDITOR_ID", env.user_id.to_string()),
    ] {
        if t.col(f).is_some() {
            t.set(id, f, Some(Value::String(v)));
        }
    }
}

fn normalize_scalar(def: Option<&FieldDef>, kind: FieldKind, v: &Value, offset: i32) -> Value {
    let type_ = def.map_or("", |d| d.type_.as_str());
    let multiple = def.is_some_and(|d| d.multiple);
    match v {
        Value::Null => Value::Null,
        Value::Array(_) | Value::Object(_) => v.clone(),
        _ => {
            let text = match v {
                Value::Bool(true) => "Y".to_string(),
                Value::Bool(false) => "N".to_string(),
                other => scalar_text(other).unwrap_or_default().into_owned(),
            };
            match (type_, kind) {
                ("boolean", FieldKind::Bool) => {
                    Value::Bool(truthy(v) && !text.eq_ignore_ascii_case("n"))
                }
                ("enumeration" | "integer", _) if multiple => text
                    .trim()
                    .parse::<i64>()
                    .map_or(Value::String(text), |n| json!(n)),
                (_, FieldKind::Date) if !text.trim().is_empty() => {
                    match parse_datetime(&text, offset) {
                        Some(ts) if type_ == "date" => {
                            let (y, m, d) = crate::bitrix24::dates::civil_from_days(
                                (ts + offset as i64).div_euclid(86_400),
                            );
                            Value::String(format_date(y, m, d, offset))
                        }
                        Some(ts) => Value::String(format_ts(ts, offset)),
                        None => Value::String(text),
                    }
                }
                _ => Value::String(text),
            }
        }
    }
}

fn normalize(def: Option<&FieldDef>, kind: FieldKind, v: &Value, offset: i32) -> Value {
    let multiple = def.is_some_and(|d| d.multiple);
    match v {
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| normalize_scalar(def, kind, x, offset))
                .collect(),
        ),
        Value::Object(o) if multiple => Value::Array(
            o.values()
                .map(|x| normalize_scalar(def, kind, x, offset))
                .collect(),
        ),
        x if multiple && !x.is_null() => {
            if scalar_text(x).is_some_and(|s| s.is_empty()) {
                Value::Array(vec![])
            } else {
                Value::Array(vec![normalize_scalar(def, kind, x, offset)])
            }
        }
        x => normalize_scalar(def, kind, x, offset),
    }
}

/// Apply `fields` of an update/add: unknown fields ignored, read-only fields ignored,
/// multi-fields by the B24 rules (no ID adds; ID+VALUE replaces; DELETE=Y / empty VALUE /
/// bare ID deletes; unmentioned rows kept).
pub(super) fn apply_fields(
    portal: &mut Portal,
    entity: &str,
    id: u64,
    fields: &Map<String, Value>,
) {
    let offset = portal.offset_secs;
    let mut contact_changed = None;
    for (k, v) in fields {
        let name = k.trim().to_ascii_uppercase();
        let t = portal.table(entity).expect("table");
        let Some(col) = t.col(&name) else { continue };
        if name == "ID" {
            continue;
        }
        let def = t.field_def(&name).cloned();
        if def.as_ref().is_some_and(|d| d.read_only) {
            continue;
        }
        let kind = t.kind(col);
        if kind == FieldKind::Multi || MULTI_FIELDS.contains(&name.as_str()) {
            apply_multi(portal, entity, id, &name, v);
            continue;
        }
        let value = normalize(def.as_ref(), kind, v, offset);
        if entity == "deal" && name == "CONTACT_ID" {
            contact_changed = id_of(&value);
        }
        portal.table_mut(entity).set(id, &name, Some(value));
    }
    if let Some(c) = contact_changed {
        portal.link_deal_contact(id, c, true);
    }
    super::links::apply_link_sets(portal, entity, id, fields);
    let t = portal.table_mut(entity);
    for (flag, mf) in [("HAS_PHONE", "PHONE"), ("HAS_EMAIL", "EMAIL")] {
        if t.col(flag).is_some() {
            let has = matches!(t.value(id, mf), Some(Value::Array(a)) if !a.is_empty());
            t.set(id, flag, Some(json!(if has { "Y" } else { "N" })));
        }
    }
}

fn apply_multi(portal: &mut Portal, entity: &str, id: u64, name: &str, v: &Value) {
    let items: Vec<Value> = match (v, list_of(v)) {
        (_, Some(items)) => items,
        (Value::Null, None) => Vec::new(),
        (other, None) => vec![json!({"VALUE": other})],
    };
    let mut current: Vec<Value> = match portal.table(entity).and_then(|t| t.value(id, name)) {
        Some(Value::Array(a)) => a.clone(),
        _ => Vec::new(),
    };
    for item in items {
        let obj = match item {
            Value::Object(o) => o,
            other => {
                let mut o = Map::new();
                o.insert("VALUE".into(), other);
                o
            }
        };
        let value = get_ci(&obj, "VALUE").and_then(|v| scalar_text(v).map(|s| s.into_owned()));
        let vtype = get_ci(&obj, "VALUE_TYPE").and_then(|v| scalar_text(v).map(|s| s.into_owned()));
        match get_ci(&obj, "ID").and_then(id_of) {
            Some(iid) => {
                let Some(pos) = current
                    .iter()
                    .position(|e| e.get("ID").and_then(id_of) == Some(iid))
                else {
                    continue;
                };
                let delete = get_ci(&obj, "DELETE").is_some_and(|d| {
                    scalar_text(d).is_some_and(|s| s.eq_ignore_ascii_case("y")) || d == &json!(true)
                }) || value.as_deref().is_none_or(|s| s.is_empty());
                if delete {
                    current.remove(pos);
                } else if let Value::Object(e) = &mut current[pos] {
                    if let Some(t) = vtype {
                        e.insert("VALUE_TYPE".into(), json!(t));
                    }
                    e.insert("VALUE".into(), json!(value.unwrap_or_default()));
                }
            }
            None => {
                let Some(value) = value.filter(|s| !s.is_empty()) else {
                    continue;
                };
                let mid = portal.alloc_multifield_id();
                current.push(json!({"ID": mid.to_string(), "VALUE_TYPE": vtype.unwrap_or_else(|| "WORK".into()), "VALUE": value, "TYPE_ID": name}));
            }
        }
    }
    let t = portal.table_mut(entity);
    t.set(
        id,
        name,
        if current.is_empty() {
            None
        } else {
            Some(Value::Array(current))
        },
    );
}
