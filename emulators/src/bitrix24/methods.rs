//! Method dispatch and the method implementations, on a locked [`Portal`].

use super::data::{Portal, Row, Table, id_of};
use super::dates::{format_date, format_ts, parse_datetime};
use super::filter::{Filter, parse_order, present, project, resolve_select, run_list};
use super::params::{as_i64, get_ci, list_of, scalar_text, truthy};
use super::schema::{FieldDef, FieldKind, MULTI_FIELDS};
use serde_json::{Map, Value, json};

mod activity;
mod bizproc;
mod calendar;
mod crm;
mod dictionaries;
mod disk;
mod invoice;
mod item;
mod links;
mod productrow;
mod requisites;
mod telephony;
mod timeline;

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
    /// The application's client id when the call came with an OAuth token (`None` through a
    /// webhook): what `bizproc.activity.*` call the application context.
    pub client_id: Option<String>,
    /// The caller is a portal administrator.
    pub admin: bool,
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
            ("item", "list" | "get" | "update" | "add" | "productrow.set" | "productrow.list") => {
                true
            }
            ("requisite", "list" | "bankdetail.list" | "link.register") => true,
            ("address", "list") | ("persontype", "list") | ("paysystem", "list") => true,
            ("company", "contact.items.set") => true,
            ("timeline", "comment.add") => true,
            ("status", "list") | ("currency", "list") | ("category", "list") => true,
            ("invoice", "get" | "add" | "list" | "getexternallink") => true,
            _ => false,
        };
        return known.then_some("crm");
    }
    match method {
        "user.get" | "user.current" => Some("user"),
        "department.get" => Some("department"),
        "batch" | "scope" | "server.time" | "profile" => Some(""),
        "bizproc.activity.add"
        | "bizproc.activity.update"
        | "bizproc.activity.list"
        | "bizproc.activity.delete"
        | "bizproc.activity.log"
        | "bizproc.event.send" => Some("bizproc"),
        "voximplant.line.get" | "voximplant.callback.start" => Some("telephony"),
        "calendar.resource.list" | "calendar.resource.booking.list" | "calendar.event.update" => {
            Some("calendar")
        }
        "disk.file.get" => Some("disk"),
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
    if let Some(reply) = call_named(portal, method, params, env) {
        return reply;
    }
    let rest = method
        .strip_prefix("crm.")
        .ok_or_else(ApiError::method_not_found)?;
    let (entity, op) = rest
        .split_once('.')
        .ok_or_else(ApiError::method_not_found)?;
    match op {
        "list" => entity_list(portal, entity, params),
        "get" => crm::entity_get(portal, entity, params),
        "fields" => crm::entity_fields(portal, entity),
        "update" => crm::entity_update(portal, method, entity, params, env),
        "add" => crm::entity_add(portal, method, entity, params, env),
        "delete" => crm::entity_delete(portal, method, entity, params),
        _ => Err(ApiError::method_not_found()),
    }
}

/// The methods with a name of their own (not `crm.ENTITY.OP`); `None` for the others.
fn call_named(
    portal: &mut Portal,
    method: &str,
    params: &Map<String, Value>,
    env: &Env,
) -> Option<Result<Reply, ApiError>> {
    Some(match method {
        "user.get" => user_get(portal, params),
        "user.current" => {
            let t = portal.table("user").expect("user table");
            t.raw(env.user_id)
                .map(|raw| Reply::value(Value::Object(present(t, raw))))
                .ok_or_else(|| ApiError::new(401, "NO_AUTH_FOUND", "Wrong authorization data"))
        }
        "profile" => {
            let t = portal.table("user").expect("user table");
            let u = t.get(env.user_id).unwrap_or_default();
            Ok(Reply::value(json!({
                "ID": env.user_id.to_string(), "ADMIN": true,
                "NAME": u.get("NAME").cloned().unwrap_or(json!("")),
                "LAST_NAME": u.get("LAST_NAME").cloned().unwrap_or(json!("")),
                "TIME_ZONE": "Europe/Moscow", "TIME_ZONE_OFFSET": portal.offset_secs,
            })))
        }
        "department.get" => department_get(portal, params),
        "scope" => Ok(Reply::value(json!(env.scopes))),
        "server.time" => Ok(Reply::value(json!(format_ts(env.now, portal.offset_secs)))),
        "crm.deal.productrows.get" => crm::product_rows_get(portal, params),
        "crm.deal.productrows.set" => crm::product_rows_set(portal, method, params, env),
        "crm.deal.contact.items.get" | "crm.contact.company.items.get" => {
            crm::links_get(portal, method, params)
        }
        "crm.item.list" => super::items::item_list(portal, params),
        "crm.company.contact.items.get" => crm::company_contacts_get(portal, params),
        "crm.item.get" => item::item_get(portal, params),
        "crm.item.update" => item::item_update(portal, params, env),
        "crm.company.contact.items.set" => links::company_contact_items_set(portal, params, env),
        "crm.activity.add" => activity::activity_add(portal, params, env),
        "crm.timeline.comment.add" => timeline::comment_add(portal, params, env),
        "crm.status.list" => dictionaries::status_list(portal, params),
        "crm.currency.list" => Ok(dictionaries::currency_list()),
        "crm.category.list" => dictionaries::category_list(params),
        "crm.invoice.get" => invoice::invoice_get(portal, params),
        "crm.invoice.add" => invoice::invoice_add(portal, params, env),
        "crm.invoice.list" => invoice::invoice_list(portal, params),
        "crm.invoice.getexternallink" => invoice::invoice_external_link(portal, params),
        "crm.requisite.list" => requisites::table_list(portal, "requisite", params),
        "crm.requisite.bankdetail.list" => requisites::table_list(portal, "bankdetail", params),
        "crm.address.list" => requisites::address_list(portal, params),
        "crm.requisite.link.register" => requisites::link_register(portal, params),
        "crm.persontype.list" => Ok(requisites::persontype_list()),
        "crm.paysystem.list" => Ok(requisites::paysystem_list()),
        "crm.item.add" => item::item_add(portal, params, env),
        "crm.item.productrow.set" => item::productrow_set(portal, params),
        "crm.item.productrow.list" => productrow::productrow_list(portal, params),
        "voximplant.line.get" => Ok(telephony::line_get(portal)),
        "voximplant.callback.start" => telephony::callback_start(portal, params, env),
        "calendar.resource.list" => Ok(calendar::resource_list(portal)),
        "calendar.resource.booking.list" => calendar::booking_list(portal, params),
        "calendar.event.update" => calendar::event_update(portal, params, env),
        "disk.file.get" => disk::file_get(portal, params, env),
        "bizproc.activity.add" => bizproc::activity_add(portal, params, env),
        "bizproc.activity.update" => bizproc::activity_update(portal, params, env),
        "bizproc.activity.list" => bizproc::activity_list(portal, env),
        "bizproc.activity.delete" => bizproc::activity_delete(portal, params, env),
        "bizproc.event.send" => bizproc::event_send(portal, params, env),
        "bizproc.activity.log" => bizproc::activity_log(portal, params),
        _ => return None,
    })
}

/// `rows` as a reply (with its row count for the operating time).
fn rows_reply(rows: Vec<Value>) -> Reply {
    let n = rows.len();
    Reply {
        rows: n,
        ..Reply::value(Value::Array(rows))
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

#[cfg(test)]
mod bp_invoice_tests;
#[cfg(test)]
mod bp_tests;
#[cfg(test)]
mod tests;
