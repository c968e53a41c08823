//! `bizproc.activity.add/update/list/delete`, `bizproc.event.send`, `bizproc.activity.log`,
//! after Bitrix's own `Bitrix\Bizproc\RestService`: registration needs the application context
//! (an OAuth token, not a webhook) and an administrator; event answers need a token the
//! portal issued.

use super::*;
use crate::bitrix24::bizproc::{ActivityLogLine, EventSend, RegisteredActivity};

fn access_denied(description: &str) -> ApiError {
    ApiError::new(403, "ACCESS_DENIED", description)
}

fn invalid(description: &str) -> ApiError {
    ApiError::new(400, "ERROR_ACTIVITY_VALIDATION_FAILURE", description)
}

fn not_found() -> ApiError {
    ApiError::new(
        400,
        "ERROR_ACTIVITY_NOT_FOUND",
        "Activity or Robot not found!",
    )
}

/// The application context and an administrator, checked in the portal's order.
fn app_admin(env: &Env) -> Result<&str, ApiError> {
    let app = env
        .client_id
        .as_deref()
        .ok_or_else(|| access_denied("Application context required"))?;
    if !env.admin {
        return Err(access_denied("Access denied!"));
    }
    Ok(app)
}

/// Keys upper-cased recursively, except the keys of PROPERTIES, RETURN_PROPERTIES and OPTIONS
/// (property names and option keys keep their case).
fn prepare(v: &Value, keep_keys: bool) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| {
                    let key = if keep_keys {
                        k.clone()
                    } else {
                        k.to_uppercase()
                    };
                    let keep =
                        matches!(key.as_str(), "PROPERTIES" | "RETURN_PROPERTIES" | "OPTIONS");
                    let x = prepare(x, keep);
                    (key, x)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|x| prepare(x, false)).collect()),
        other => other.clone(),
    }
}

/// PHP `empty()`: null, "", "0", false, 0, empty array.
fn empty(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty() || s == "0",
        Some(Value::Bool(b)) => !b,
        Some(Value::Number(n)) => n.as_f64() == Some(0.0),
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
    }
}

fn validate_code(code: Option<&Value>) -> Result<String, ApiError> {
    if empty(code) {
        return Err(invalid("Empty activity code!"));
    }
    let code = code.and_then(scalar_text).unwrap_or_default().into_owned();
    let ok = code
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !ok || code.is_empty() {
        return Err(invalid("Wrong activity code!"));
    }
    Ok(code)
}

/// `HandlerHelper::checkCallback`: an absolute http(s) URL with a host.
fn validate_handler(handler: Option<&Value>) -> Result<(), ApiError> {
    let text = handler.and_then(scalar_text).unwrap_or_default();
    let wrong = || ApiError::new(400, "ERROR_WRONG_HANDLER_URL", "Wrong handler URL");
    let url = url::Url::parse(text.trim()).map_err(|_| wrong())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ApiError::new(
            400,
            "ERROR_UNSUPPORTED_PROTOCOL",
            "Unsupported event handler protocol",
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(wrong());
    }
    Ok(())
}

fn validate_properties(props: &Value) -> Result<(), ApiError> {
    let entries: Vec<(String, &Value)> = match props {
        Value::Object(m) => m.iter().map(|(k, v)| (k.clone(), v)).collect(),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v))
            .collect(),
        _ => return Err(invalid("Wrong properties array!")),
    };
    for (key, prop) in entries {
        let mut chars = key.chars();
        let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return Err(invalid(&format!("Wrong property key ({key})!")));
        }
        if empty(prop.as_object().and_then(|p| p.get("NAME"))) {
            return Err(invalid(&format!("Empty property NAME ({key})!")));
        }
    }
    Ok(())
}

/// A document type the portal knows: `[module, class, type]` of a known module.
fn validate_document_type(dt: &Value) -> Result<(), ApiError> {
    let parts: Vec<String> = match dt {
        Value::Array(a) => a
            .iter()
            .filter_map(|v| scalar_text(v).map(|s| s.into_owned()))
            .collect(),
        _ => Vec::new(),
    };
    let known = ["crm", "lists", "disk", "iblock", "tasks", "rpa"];
    if parts.len() != 3 || parts.iter().any(String::is_empty) || !known.contains(&parts[0].as_str())
    {
        return Err(invalid("Wrong activity DOCUMENT_TYPE!"));
    }
    Ok(())
}

fn validate_activity(data: &Map<String, Value>) -> Result<String, ApiError> {
    if data.is_empty() {
        return Err(invalid("Empty data!"));
    }
    let code = validate_code(data.get("CODE"))?;
    validate_handler(data.get("HANDLER"))?;
    if empty(data.get("NAME")) {
        return Err(invalid("Empty activity NAME!"));
    }
    for key in ["PROPERTIES", "RETURN_PROPERTIES"] {
        if let Some(p) = data.get(key).filter(|v| !v.is_null()) {
            validate_properties(p)?;
        }
    }
    if let Some(dt) = data.get("DOCUMENT_TYPE").filter(|v| !v.is_null()) {
        validate_document_type(dt)?;
    }
    if data
        .get("FILTER")
        .is_some_and(|f| !f.is_null() && !f.is_object() && !f.is_array())
    {
        return Err(invalid("Wrong activity FILTER!"));
    }
    Ok(code)
}

fn prepared(params: &Map<String, Value>) -> Map<String, Value> {
    match prepare(&Value::Object(params.clone()), false) {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn position(portal: &Portal, app: &str, code: &str) -> Option<usize> {
    portal
        .bizproc
        .activities
        .iter()
        .position(|a| a.app_id == app && a.code == code)
}

pub(super) fn activity_add(
    portal: &mut Portal,
    params: &Map<String, Value>,
    env: &Env,
) -> Result<Reply, ApiError> {
    let app = app_admin(env)?.to_string();
    let mut data = prepared(params);
    data.remove("AUTH");
    let code = validate_activity(&data)?;
    if position(portal, &app, &code).is_some() {
        return Err(ApiError::new(
            400,
            "ERROR_ACTIVITY_ALREADY_INSTALLED",
            "Activity or Robot already installed!",
        ));
    }
    let auth_user = data.get("AUTH_USER_ID").and_then(as_i64).unwrap_or(0);
    data.insert("AUTH_USER_ID".into(), json!(auth_user));
    data.insert("IS_ROBOT".into(), json!("N"));
    let placement = data.get("USE_PLACEMENT").and_then(scalar_text).as_deref() == Some("Y");
    data.insert(
        "USE_PLACEMENT".into(),
        json!(if placement { "Y" } else { "N" }),
    );
    data.insert("CODE".into(), json!(code));
    portal.bizproc.activities.push(RegisteredActivity {
        app_id: app,
        code,
        fields: data,
    });
    portal.count_mutation("bizproc.activity.add");
    Ok(Reply::value(json!(true)))
}

/// The fields `bizproc.activity.update` may change, each validated like on add.
fn update_fields(fields: &Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let mut to_update = Map::new();
    if let Some(h) = fields.get("HANDLER").filter(|v| !v.is_null()) {
        validate_handler(Some(h))?;
        to_update.insert("HANDLER".into(), h.clone());
    }
    if let Some(u) = fields.get("AUTH_USER_ID").filter(|v| !v.is_null()) {
        to_update.insert("AUTH_USER_ID".into(), json!(as_i64(u).unwrap_or(0)));
    }
    for key in ["USE_SUBSCRIPTION", "DESCRIPTION", "PLACEMENT_HANDLER"] {
        if let Some(v) = fields.get(key).filter(|v| !v.is_null()) {
            to_update.insert(key.into(), v.clone());
        }
    }
    if let Some(p) = fields.get("USE_PLACEMENT").filter(|v| !v.is_null()) {
        let y = scalar_text(p).as_deref() == Some("Y");
        to_update.insert("USE_PLACEMENT".into(), json!(if y { "Y" } else { "N" }));
    }
    if !empty(fields.get("NAME")) {
        to_update.insert("NAME".into(), fields["NAME"].clone());
    }
    for key in ["PROPERTIES", "RETURN_PROPERTIES"] {
        if let Some(p) = fields.get(key).filter(|v| !v.is_null()) {
            validate_properties(p)?;
            to_update.insert(key.into(), p.clone());
        }
    }
    if let Some(dt) = fields.get("DOCUMENT_TYPE").filter(|v| !v.is_null()) {
        if !empty(Some(dt)) {
            validate_document_type(dt)?;
        }
        let v = if empty(Some(dt)) {
            Value::Null
        } else {
            dt.clone()
        };
        to_update.insert("DOCUMENT_TYPE".into(), v);
    }
    if let Some(f) = fields.get("FILTER").filter(|v| !v.is_null()) {
        if !empty(Some(f)) && !f.is_object() && !f.is_array() {
            return Err(invalid("Wrong activity FILTER!"));
        }
        let v = if empty(Some(f)) {
            Value::Null
        } else {
            f.clone()
        };
        to_update.insert("FILTER".into(), v);
    }
    if to_update.is_empty() {
        return Err(invalid("No fields to update"));
    }
    Ok(to_update)
}

pub(super) fn activity_update(
    portal: &mut Portal,
    params: &Map<String, Value>,
    env: &Env,
) -> Result<Reply, ApiError> {
    let app = app_admin(env)?.to_string();
    let data = prepared(params);
    let code = validate_code(data.get("CODE"))?;
    let pos = position(portal, &app, &code).ok_or_else(not_found)?;
    let fields = match data.get("FIELDS") {
        Some(Value::Object(f)) if !f.is_empty() => f.clone(),
        _ => return Err(invalid("No fields to update")),
    };
    let changes = update_fields(&fields)?;
    portal.bizproc.activities[pos].fields.extend(changes);
    portal.count_mutation("bizproc.activity.update");
    Ok(Reply::value(json!(true)))
}

pub(super) fn activity_list(portal: &Portal, env: &Env) -> Result<Reply, ApiError> {
    let app = app_admin(env)?;
    let codes: Vec<Value> = portal
        .bizproc
        .activities
        .iter()
        .filter(|a| a.app_id == app)
        .map(|a| json!(a.code))
        .collect();
    Ok(rows_reply(codes))
}

pub(super) fn activity_delete(
    portal: &mut Portal,
    params: &Map<String, Value>,
    env: &Env,
) -> Result<Reply, ApiError> {
    let app = app_admin(env)?.to_string();
    let code = validate_code(get_ci(params, "CODE"))?;
    let pos = position(portal, &app, &code).ok_or_else(not_found)?;
    portal.bizproc.activities.remove(pos);
    portal.count_mutation("bizproc.activity.delete");
    Ok(Reply::value(json!(true)))
}

/// A token the portal issued, else `ACCESS_DENIED` (the portal cannot unsign it).
fn event_token(portal: &Portal, params: &Map<String, Value>) -> Result<String, ApiError> {
    let token = get_ci(params, "EVENT_TOKEN")
        .and_then(scalar_text)
        .unwrap_or_default()
        .into_owned();
    if portal.bizproc.knows(&token) {
        Ok(token)
    } else {
        Err(access_denied("Access denied!"))
    }
}

/// Any user, any context; a send for an action already closed is ignored (still `true`).
pub(super) fn event_send(
    portal: &mut Portal,
    params: &Map<String, Value>,
    env: &Env,
) -> Result<Reply, ApiError> {
    let token = event_token(portal, params)?;
    let return_values = get_ci(params, "RETURN_VALUES")
        .cloned()
        .unwrap_or(Value::Null);
    let log_message = get_ci(params, "LOG_MESSAGE")
        .and_then(scalar_text)
        .unwrap_or_default()
        .into_owned();
    let closed_action = portal.bizproc.close(&token, env.now);
    portal.bizproc.sends.push(EventSend {
        event_token: token,
        return_values,
        log_message,
        closed_action,
    });
    portal.count_mutation("bizproc.event.send");
    Ok(Reply::value(json!(true)))
}

pub(super) fn activity_log(
    portal: &mut Portal,
    params: &Map<String, Value>,
) -> Result<Reply, ApiError> {
    let token = event_token(portal, params)?;
    let message = get_ci(params, "LOG_MESSAGE");
    if empty(message) {
        return Err(ApiError::new(
            400,
            "ERROR_EMPTY_LOG_MESSAGE",
            "Empty log message!",
        ));
    }
    let log_message = message
        .and_then(scalar_text)
        .unwrap_or_default()
        .into_owned();
    portal.bizproc.logs.push(ActivityLogLine {
        event_token: token,
        log_message,
    });
    Ok(Reply::value(json!(true)))
}
