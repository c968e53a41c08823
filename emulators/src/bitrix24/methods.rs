//! Method dispatch and the method implementations, on a locked [`Portal`].

use super::data::{Portal, Row, Table, id_of};
use super::dates::{format_date, format_ts, parse_datetime};
use super::filter::{Filter, parse_order, present, project, resolve_select, run_list};
use super::params::{as_i64, get_ci, scalar_text, truthy};
use super::schema::{FieldDef, FieldKind, MULTI_FIELDS};
use serde_json::{Map, Value, json};

/// An error answer: HTTP status, `error`, `error_description`.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub description: String,
}

impl ApiError {
    pub fn new(status: u16, code: &str, description: &str) -> ApiError {
        ApiError {
            status,
            code: code.to_string(),
            description: description.to_string(),
        }
    }
    /// Legacy CRM validation error: HTTP 400 with an empty `error`.
    pub fn legacy(description: &str) -> ApiError {
        ApiError::new(400, "", description)
    }
    pub fn method_not_found() -> ApiError {
        ApiError::new(404, "ERROR_METHOD_NOT_FOUND", "Method not found!")
    }
    pub fn insufficient_scope() -> ApiError {
        ApiError::new(
            403,
            "insufficient_scope",
            "The request requires higher privileges than provided by the webhook token",
        )
    }
    pub fn body(&self) -> Value {
        json!({"error": self.code, "error_description": self.description})
    }
}

/// A successful method result.
#[derive(Clone, Debug)]
pub struct Reply {
    pub result: Value,
    /// list methods: `total` (0 when start=-1)
    pub total: Option<usize>,
    pub next: Option<usize>,
    /// rows returned (charged to operating time)
    pub rows: usize,
    /// a COUNT ran (list with start >= 0): extra latency
    pub counted: bool,
}

impl Reply {
    fn value(result: Value) -> Reply {
        Reply {
            result,
            total: None,
            next: None,
            rows: 1,
            counted: false,
        }
    }
}

/// What a method call knows about its surroundings.
#[derive(Clone, Debug)]
pub struct Env {
    /// unix seconds of the call
    pub now: i64,
    /// the webhook's user
    pub user_id: u64,
    pub scopes: Vec<String>,
}

const CRM_ENTITIES: [&str; 4] = ["contact", "deal", "company", "lead"];

/// Scope a method needs (`""` = none); None for unknown methods.
pub fn scope_of(method: &str) -> Option<&'static str> {
    if let Some(rest) = method.strip_prefix("crm.") {
        let (entity, op) = rest.split_once('.')?;
        let known = match (entity, op) {
            (e, "list" | "get" | "update" | "add" | "delete" | "fields")
                if CRM_ENTITIES.contains(&e) =>
            {
                true
            }
            ("activity", "list" | "get" | "add" | "delete" | "fields") => true,
            ("deal", "productrows.get" | "productrows.set" | "contact.items.get") => true,
            ("contact", "company.items.get") | ("company", "contact.items.get") => true,
            ("item", "list") => true,
            _ => false,
        };
        return known.then_some("crm");
    }
    match method {
        "user.get" | "user.current" => Some("user"),
        "department.get" => Some("department"),
        "batch" | "scope" | "server.time" | "profile" => Some(""),
        _ => None,
    }
}

fn entity_title(entity: &str) -> &'static str {
    match entity {
        "contact" => "Contact",
        "deal" => "Deal",
        "company" => "Company",
        "lead" => "Lead",
        "activity" => "Activity",
        _ => "Element",
    }
}

fn param_id(params: &Map<String, Value>) -> Result<u64, ApiError> {
    get_ci(params, "id")
        .and_then(id_of)
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::legacy("ID is not defined or invalid."))
}

fn map_param<'a>(
    params: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a Map<String, Value>>, ApiError> {
    match get_ci(params, name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(Value::Array(a)) if a.is_empty() => Ok(None),
        Some(_) => Err(ApiError::legacy(&format!(
            "Parameter '{name}' must be array."
        ))),
    }
}

fn start_param(params: &Map<String, Value>) -> i64 {
    get_ci(params, "start")
        .and_then(as_i64)
        .map_or(0, |s| if s < 0 { -1 } else { s })
}

/// Call a method. `method` is lower-case without `.json`.
pub fn call(
    portal: &mut Portal,
    method: &str,
    params: &Map<String, Value>,
    env: &Env,
) -> Result<Reply, ApiError> {
    if scope_of(method).is_none() {
        return Err(ApiError::method_not_found());
    }
    match method {
        "user.get" => return user_get(portal, params),
        "user.current" => {
            let t = portal.table("user").expect("user table");
            return t
                .raw(env.user_id)
                .map(|raw| Reply::value(Value::Object(present(t, raw))))
                .ok_or_else(|| ApiError::new(401, "NO_AUTH_FOUND", "Wrong authorization data"));
        }
        "profile" => {
            let t = portal.table("user").expect("user table");
            let u = t.get(env.user_id).unwrap_or_default();
            return Ok(Reply::value(json!({
                "ID": env.user_id.to_string(), "ADMIN": true,
                "NAME": u.get("NAME").cloned().unwrap_or(json!("")),
                "LAST_NAME": u.get("LAST_NAME").cloned().unwrap_or(json!("")),
                "TIME_ZONE": "Europe/Moscow", "TIME_ZONE_OFFSET": portal.offset_secs,
            })));
        }
        "department.get" => return department_get(portal, params),
        "scope" => return Ok(Reply::value(json!(env.scopes))),
        "server.time" => return Ok(Reply::value(json!(format_ts(env.now, portal.offset_secs)))),
        "crm.deal.productrows.get" => {
            let id = param_id(params)?;
            if !portal.table("deal").is_some_and(|t| t.contains(id)) {
                return Err(ApiError::legacy("Not found"));
            }
            let rows: Vec<Value> = portal
                .product_rows(id)
                .iter()
                .cloned()
                .map(Value::Object)
                .collect();
            let n = rows.len();
            return Ok(Reply {
                rows: n,
                ..Reply::value(Value::Array(rows))
            });
        }
        "crm.deal.productrows.set" => {
            let id = param_id(params)?;
            if !portal.table("deal").is_some_and(|t| t.contains(id)) {
                return Err(ApiError::legacy("Not found"));
            }
            let rows: Vec<Row> = match get_ci(params, "rows") {
                Some(Value::Array(a)) => a.iter().filter_map(|v| v.as_object().cloned()).collect(),
                Some(Value::Object(o)) => {
                    o.values().filter_map(|v| v.as_object().cloned()).collect()
                }
                _ => Vec::new(),
            };
            portal.set_product_rows(id, rows);
            recompute_opportunity(portal, id);
            touch(portal, "deal", id, env);
            portal.count_mutation(method);
            return Ok(Reply::value(json!(true)));
        }
        "crm.deal.contact.items.get" | "crm.contact.company.items.get" => {
            let id = param_id(params)?;
            let owner = if method.starts_with("crm.deal") {
                "deal"
            } else {
                "contact"
            };
            if !portal.table(owner).is_some_and(|t| t.contains(id)) {
                return Err(ApiError::legacy("Not found"));
            }
            let links = if owner == "deal" {
                portal.deal_contacts(id)
            } else {
                portal.contact_companies(id)
            };
            let rows: Vec<Value> = links.iter().cloned().map(Value::Object).collect();
            let n = rows.len();
            return Ok(Reply {
                rows: n,
                ..Reply::value(Value::Array(rows))
            });
        }
        "crm.item.list" => return super::items::item_list(portal, params),
        "crm.company.contact.items.get" => {
            let id = param_id(params)?;
            if !portal.table("company").is_some_and(|t| t.contains(id)) {
                return Err(ApiError::legacy("Not found"));
            }
            let rows: Vec<Value> = portal
                .company_contacts(id)
                .into_iter()
                .enumerate()
                .map(|(i, c)| json!({"CONTACT_ID": c, "SORT": 10 * (i + 1), "ROLE_ID": 0, "IS_PRIMARY": if i == 0 { "Y" } else { "N" }}))
                .collect();
            let n = rows.len();
            return Ok(Reply {
                rows: n,
                ..Reply::value(Value::Array(rows))
            });
        }
        _ => {}
    }
    let rest = method
        .strip_prefix("crm.")
        .ok_or_else(ApiError::method_not_found)?;
    let (entity, op) = rest
        .split_once('.')
        .ok_or_else(ApiError::method_not_found)?;
    match op {
        "list" => entity_list(portal, entity, params),
        "get" => {
            let id = param_id(params)?;
            let t = portal
                .table(entity)
                .ok_or_else(ApiError::method_not_found)?;
            let raw = t.raw(id).ok_or_else(|| ApiError::legacy("Not found"))?;
            let all: Vec<usize> = (0..t.columns().len()).collect();
            Ok(Reply::value(Value::Object(project(t, raw, &all))))
        }
        "fields" => {
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
        "update" => {
            let id = param_id(params)?;
            if !portal.table(entity).is_some_and(|t| t.contains(id)) {
                return Err(ApiError::legacy(&format!(
                    "{} is not found",
                    entity_title(entity)
                )));
            }
            let fields = map_param(params, "fields")?.cloned().unwrap_or_default();
            apply_fields(portal, entity, id, &fields);
            touch(portal, entity, id, env);
            portal.count_mutation(method);
            Ok(Reply::value(json!(true)))
        }
        "add" => {
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
        "delete" => {
            let id = param_id(params)?;
            if !portal.table_mut(entity).remove(id) {
                return Err(ApiError::legacy(&format!(
                    "{} is not found",
                    entity_title(entity)
                )));
            }
            portal.count_mutation(method);
            Ok(Reply::value(json!(true)))
        }
        _ => Err(ApiError::method_not_found()),
    }
}

fn list_reply(t: &Table, page: super::filter::Page, cols: Option<&[usize]>) -> Reply {
    let rows: Vec<Value> = page
        .ids
        .iter()
        .filter_map(|id| t.raw(*id))
        .map(|raw| {
            Value::Object(match cols {
                Some(c) => project(t, raw, c),
                None => present(t, raw),
            })
        })
        .collect();
    let n = rows.len();
    Reply {
        result: Value::Array(rows),
        total: Some(page.total.unwrap_or(0)),
        next: page.next,
        rows: n,
        counted: page.total.is_some(),
    }
}

fn entity_list(
    portal: &Portal,
    entity: &str,
    params: &Map<String, Value>,
) -> Result<Reply, ApiError> {
    let t = portal
        .table(entity)
        .ok_or_else(ApiError::method_not_found)?;
    let empty = Map::new();
    let filter = map_param(params, "filter")?.unwrap_or(&empty);
    let order_v = match get_ci(params, "order") {
        Some(v @ Value::Object(_)) => Some(v),
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) if a.is_empty() => None,
        Some(_) => return Err(ApiError::legacy("Parameter 'order' must be array.")),
    };
    let mut order = parse_order(order_v);
    if order.is_empty() && entity == "activity" {
        order.push(("START_TIME".into(), false));
    }
    let f = Filter::compile(t, filter, portal.offset_secs);
    let cols = resolve_select(t, get_ci(params, "select"));
    let page = run_list(t, &f, &order, start_param(params));
    Ok(list_reply(t, page, Some(&cols)))
}

/// user.get: `filter{}` and/or top-level filter keys, `sort`/`order` strings, `start`.
fn user_get(portal: &Portal, params: &Map<String, Value>) -> Result<Reply, ApiError> {
    let t = portal.table("user").expect("user table");
    let mut filter = Map::new();
    for (k, v) in params {
        let lk = k.to_ascii_lowercase();
        if matches!(
            lk.as_str(),
            "sort" | "order" | "start" | "filter" | "select" | "admin_mode" | "auth"
        ) {
            continue;
        }
        filter.insert(k.clone(), v.clone());
    }
    if let Some(Value::Object(m)) = get_ci(params, "filter") {
        filter.extend(m.clone());
    }
    let sort = get_ci(params, "sort")
        .and_then(scalar_text)
        .map(|s| s.trim().to_ascii_uppercase())
        .filter(|s| !s.is_empty());
    let desc = get_ci(params, "order")
        .and_then(scalar_text)
        .is_some_and(|s| s.trim().eq_ignore_ascii_case("desc"));
    let order = vec![(sort.unwrap_or_else(|| "ID".into()), desc)];
    let f = Filter::compile(t, &filter, portal.offset_secs);
    let page = run_list(t, &f, &order, start_param(params));
    Ok(list_reply(t, page, None))
}

/// department.get: top-level filters (ID, NAME, SORT, PARENT, UF_HEAD), lowercase `sort` +
/// `order`, `START`.
fn department_get(portal: &Portal, params: &Map<String, Value>) -> Result<Reply, ApiError> {
    let t = portal.table("department").expect("department table");
    let mut filter = Map::new();
    for (k, v) in params {
        let lk = k.to_ascii_lowercase();
        if k == "sort" || lk == "order" || lk == "start" || lk == "auth" {
            continue;
        }
        filter.insert(k.clone(), v.clone());
    }
    let sort = params
        .get("sort")
        .and_then(scalar_text)
        .map(|s| s.trim().to_ascii_uppercase())
        .filter(|s| !s.is_empty());
    let desc = get_ci(params, "order")
        .and_then(scalar_text)
        .is_some_and(|s| s.trim().eq_ignore_ascii_case("desc"));
    let order = vec![(sort.unwrap_or_else(|| "ID".into()), desc)];
    let f = Filter::compile(t, &filter, portal.offset_secs);
    let page = run_list(t, &f, &order, start_param(params));
    Ok(list_reply(t, page, None))
}

/// A deal's amount follows its product rows unless it was entered by hand.
fn recompute_opportunity(portal: &mut Portal, deal_id: u64) {
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
fn touch(portal: &mut Portal, entity: &str, id: u64, env: &Env) {
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
                            let (y, m, d) = super::dates::civil_from_days(
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
fn apply_fields(portal: &mut Portal, entity: &str, id: u64, fields: &Map<String, Value>) {
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
    let t = portal.table_mut(entity);
    for (flag, mf) in [("HAS_PHONE", "PHONE"), ("HAS_EMAIL", "EMAIL")] {
        if t.col(flag).is_some() {
            let has = matches!(t.value(id, mf), Some(Value::Array(a)) if !a.is_empty());
            t.set(id, flag, Some(json!(if has { "Y" } else { "N" })));
        }
    }
}

fn apply_multi(portal: &mut Portal, entity: &str, id: u64, name: &str, v: &Value) {
    let items: Vec<Value> = match v {
        Value::Array(a) => a.clone(),
        Value::Object(o) => o.values().cloned().collect(),
        Value::Null => Vec::new(),
        other => vec![json!({"VALUE": other})],
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        Env {
            now: 1_717_225_200,
            user_id: 1,
            scopes: vec!["crm".into()],
        }
    }
    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn update_rules() {
        let mut p = Portal::new();
        p.insert("contact", obj(json!({"ID": 43, "NAME": "A", "DATE_MODIFY": "2020-01-01T00:00:00+03:00",
            "PHONE": [{"ID": "222", "VALUE": "1"}, {"ID": "223", "VALUE": "2"}, {"ID": "224", "VALUE": "3"}, {"ID": "225", "VALUE": "4"}]})));
        let r = call(&mut p, "crm.contact.update", &obj(json!({"ID": "43", "FIELDS": {
            "NAME": "B", "NO_SUCH": 1, "DATE_CREATE": "x", "UF_CRM_1470852549": ["48", "12708"],
            "UF_CRM_1607943642": "29.11.2009", "OPENED": true,
            "PHONE": [{"ID": 223, "VALUE": "444444", "VALUE_TYPE": "MOBILE"}, {"ID": 222, "DELETE": "Y"}, {"ID": "224"}, {"ID": 225, "VALUE": ""}, {"VALUE": "+4930123", "VALUE_TYPE": "WORK"}, {"ID": 999, "VALUE": "x"}]
        }})), &env()).unwrap();
        assert_eq!(r.result, json!(true));
        let row = p.get("contact", 43).unwrap();
        assert_eq!(row["NAME"], "B");
        assert!(!row.contains_key("NO_SUCH"));
        assert!(row.get("DATE_CREATE").is_none());
        assert_eq!(row["DATE_MODIFY"], "2024-06-01T10:00:00+03:00");
        assert_eq!(row["MODIFY_BY_ID"], "1");
        assert_eq!(row["UF_CRM_1470852549"], json!([48, 12708]));
        assert_eq!(row["UF_CRM_1607943642"], "2009-11-29T03:00:00+03:00");
        assert_eq!(row["OPENED"], "Y");
        assert_eq!(row["HAS_PHONE"], "Y");
        let phones = row["PHONE"].as_array().unwrap();
        assert_eq!(phones.len(), 2);
        assert_eq!(
            phones[0],
            json!({"ID": "223", "VALUE": "444444", "VALUE_TYPE": "MOBILE", "TYPE_ID": "PHONE"})
        );
        assert_eq!(phones[1]["VALUE"], "+4930123");
        assert_eq!(p.mutations("crm.contact.update"), 1);
        // errors
        let e = call(
            &mut p,
            "crm.contact.update",
            &obj(json!({"id": 999, "fields": {}})),
            &env(),
        )
        .unwrap_err();
        assert_eq!(
            (e.status, e.code.as_str(), e.description.as_str()),
            (400, "", "Contact is not found")
        );
        let e = call(&mut p, "crm.contact.get", &obj(json!({"id": "x"})), &env()).unwrap_err();
        assert_eq!(e.description, "ID is not defined or invalid.");
        let e = call(&mut p, "crm.contact.get", &obj(json!({"id": 5})), &env()).unwrap_err();
        assert_eq!(
            e.body(),
            json!({"error": "", "error_description": "Not found"})
        );
        let e = call(
            &mut p,
            "crm.contact.list",
            &obj(json!({"filter": "x"})),
            &env(),
        )
        .unwrap_err();
        assert_eq!(e.description, "Parameter 'filter' must be array.");
        assert_eq!(
            call(&mut p, "crm.nope.list", &Map::new(), &env()).unwrap_err(),
            ApiError::method_not_found()
        );
    }

    #[test]
    fn add_get_fields_and_users() {
        let mut p = Portal::new();
        let r = call(
            &mut p,
            "crm.deal.add",
            &obj(json!({"fields": {"TITLE": "T", "CONTACT_ID": 5, "OPPORTUNITY": 10.5}})),
            &env(),
        )
        .unwrap();
        assert_eq!(r.result, json!(1));
        let g = call(&mut p, "crm.deal.get", &obj(json!({"id": 1})), &env())
            .unwrap()
            .result;
        assert_eq!(g["ID"], "1");
        assert_eq!(g["CONTACT_ID"], "5");
        assert_eq!(g["OPPORTUNITY"], "10.5");
        assert_eq!(g["DATE_CREATE"], "2024-06-01T10:00:00+03:00");
        assert_eq!(g["COMMENTS"], Value::Null);
        assert_eq!(p.deal_contacts(1)[0]["CONTACT_ID"], 5);
        let f = call(&mut p, "crm.deal.fields", &Map::new(), &env())
            .unwrap()
            .result;
        assert_eq!(
            f["UF_CRM_1490347942"]["items"][0],
            json!({"ID": "450", "VALUE": "Наличные"})
        );
        assert_eq!(f["ID"]["isReadOnly"], true);
        p.insert(
            "user",
            obj(json!({"ID": 1, "ACTIVE": true, "NAME": "A", "UF_DEPARTMENT": [1]})),
        );
        p.insert(
            "user",
            obj(json!({"ID": 2, "ACTIVE": false, "NAME": "B", "UF_DEPARTMENT": [1, 5]})),
        );
        p.insert(
            "user",
            obj(json!({"ID": 3, "ACTIVE": true, "NAME": "C", "UF_DEPARTMENT": [5]})),
        );
        let ids = |params: Value, p: &mut Portal| -> Vec<String> {
            let r = call(p, "user.get", &obj(params), &env()).unwrap();
            r.result
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u["ID"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(ids(json!({"ACTIVE": true}), &mut p), vec!["1", "3"]);
        assert_eq!(
            ids(
                json!({"FILTER": {"ACTIVE": "Y"}, "sort": "ID", "order": "DESC"}),
                &mut p
            ),
            vec!["3", "1"]
        );
        assert_eq!(ids(json!({"UF_DEPARTMENT": "5"}), &mut p), vec!["2", "3"]);
        assert_eq!(ids(json!({"ID": "2"}), &mut p), vec!["2"]);
        p.insert(
            "department",
            obj(json!({"ID": 1, "NAME": "Root", "SORT": 500})),
        );
        p.insert(
            "department",
            obj(json!({"ID": 5, "NAME": "Sales", "SORT": 100, "PARENT": "1", "UF_HEAD": "3"})),
        );
        let r = call(&mut p, "department.get", &obj(json!({"PARENT": 1})), &env()).unwrap();
        assert_eq!(
            r.result,
            json!([{"ID": "5", "NAME": "Sales", "SORT": 100, "PARENT": "1", "UF_HEAD": "3"}])
        );
        assert_eq!(r.total, Some(1));
        let r = call(
            &mut p,
            "department.get",
            &obj(json!({"sort": "SORT", "order": "ASC"})),
            &env(),
        )
        .unwrap();
        assert_eq!(r.result[0]["ID"], "5");
        assert!(r.result[1].get("UF_HEAD").is_none());
    }
}
