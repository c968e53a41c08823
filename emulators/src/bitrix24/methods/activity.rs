//! `crm.activity.add` with the REST proxy's rules (RD crm-activity-add.md): owner, type,
//! subject, responsible and communications are required; ORIGIN_ID/ORIGINATOR_ID are stored
//! so a client can find its own activity again (`crm.activity.list` filtered by ORIGIN_ID).

use super::*;

/// CRM object types an activity can belong to (RD crm/data-types.md#object_type).
pub(super) fn owner_entity(type_id: i64) -> Option<&'static str> {
    Some(match type_id {
        1 => "lead",
        2 => "deal",
        3 => "contact",
        4 => "company",
        31 => "smart_invoice",
        _ => return None,
    })
}

fn field_text(fields: &Map<String, Value>, name: &str) -> String {
    get_ci(fields, name)
        .and_then(scalar_text)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn field_int(fields: &Map<String, Value>, name: &str) -> i64 {
    get_ci(fields, name).and_then(as_i64).unwrap_or(0)
}

/// The communications as stored: each needs a non-empty VALUE.
fn communications(fields: &Map<String, Value>, type_id: i64) -> Result<Vec<Value>, ApiError> {
    let invalid = || ApiError::legacy("The field COMMUNICATIONS is not defined or invalid.");
    let items: Vec<Value> = get_ci(fields, "COMMUNICATIONS")
        .and_then(list_of)
        .ok_or_else(invalid)?;
    let mut out = Vec::new();
    for item in items {
        let o = item.as_object().ok_or_else(invalid)?;
        let value = field_text(o, "VALUE");
        if value.is_empty() {
            return Err(invalid());
        }
        let comm_type = if value.contains('@') {
            "EMAIL"
        } else {
            "PHONE"
        };
        out.push(json!({
            "VALUE": value,
            "ENTITY_ID": field_int(o, "ENTITY_ID").to_string(),
            "ENTITY_TYPE_ID": field_int(o, "ENTITY_TYPE_ID").to_string(),
            "TYPE": comm_type,
        }));
    }
    if out.is_empty() {
        return Err(invalid());
    }
    if type_id == 2 && out.len() > 1 {
        return Err(ApiError::legacy(
            "The only one communication is allowed for activity of specified type.",
        ));
    }
    Ok(out)
}

/// The checks of the REST proxy, in its order; the owner must exist (else «Access denied.»).
fn validate(portal: &Portal, fields: &Map<String, Value>) -> Result<Vec<Value>, ApiError> {
    let owner_type = field_int(fields, "OWNER_TYPE_ID");
    let owner_id = field_int(fields, "OWNER_ID");
    let Some(owner) = owner_entity(owner_type) else {
        return Err(ApiError::legacy(
            "The field OWNER_TYPE_ID is not defined or invalid.",
        ));
    };
    if owner_id <= 0 {
        return Err(ApiError::legacy(
            "The field OWNER_ID is not defined or invalid.",
        ));
    }
    let type_id = field_int(fields, "TYPE_ID");
    if !matches!(type_id, 1 | 2 | 4 | 6) {
        return Err(ApiError::legacy(
            "The field TYPE_ID is not defined or invalid.",
        ));
    }
    if field_text(fields, "SUBJECT").is_empty() {
        return Err(ApiError::legacy(
            "The field SUBJECT is not defined or empty.",
        ));
    }
    let responsible = field_int(fields, "RESPONSIBLE_ID") as u64;
    if !portal
        .table("user")
        .is_some_and(|t| t.contains(responsible))
    {
        return Err(ApiError::legacy(
            "The field RESPONSIBLE_ID is not defined or invalid.",
        ));
    }
    let comms = communications(fields, type_id)?;
    if !portal
        .table(owner)
        .is_some_and(|t| t.contains(owner_id as u64))
    {
        return Err(ApiError::legacy("Access denied."));
    }
    Ok(comms)
}

pub(super) fn activity_add(
    portal: &mut Portal,
    params: &Map<String, Value>,
    env: &Env,
) -> Result<Reply, ApiError> {
    let fields = map_param(params, "fields")?.cloned().unwrap_or_default();
    let comms = validate(portal, &fields)?;
    let off = portal.offset_secs;
    let now = format_ts(env.now, off);
    let type_id = field_int(&fields, "TYPE_ID");
    let completed = field_text(&fields, "COMPLETED").eq_ignore_ascii_case("Y");
    let time = |name: &str| {
        let t = field_text(&fields, name);
        parse_datetime(&t, off).map_or_else(|| now.clone(), |ts| format_ts(ts, off))
    };
    let (start, end) = (time("START_TIME"), time("END_TIME"));
    let provider = match type_id {
        1 => "CRM_MEETING",
        2 => "VOXIMPLANT_CALL",
        4 => "CRM_EMAIL",
        _ => "REST_APP",
    };
    let text_or = |name: &str, default: &str| {
        Some(field_text(&fields, name))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| default.into())
    };
    let id = portal.table_mut("activity").next_id();
    let row = json!({
        "ID": id.to_string(),
        "OWNER_ID": field_int(&fields, "OWNER_ID").to_string(),
        "OWNER_TYPE_ID": field_int(&fields, "OWNER_TYPE_ID").to_string(),
        "TYPE_ID": type_id.to_string(),
        "PROVIDER_ID": provider,
        "PROVIDER_TYPE_ID": text_or("PROVIDER_TYPE_ID", if type_id == 2 { "CALL" } else { "" }),
        "SUBJECT": field_text(&fields, "SUBJECT"),
        "COMPLETED": if completed { "Y" } else { "N" },
        "STATUS": if completed { "2" } else { "1" },
        "RESPONSIBLE_ID": field_int(&fields, "RESPONSIBLE_ID").to_string(),
        "PRIORITY": text_or("PRIORITY", "2"),
        "DESCRIPTION": field_text(&fields, "DESCRIPTION"),
        "DESCRIPTION_TYPE": text_or("DESCRIPTION_TYPE", "1"),
        "DIRECTION": text_or("DIRECTION", "0"),
        "LOCATION": field_text(&fields, "LOCATION"),
        "CREATED": now, "LAST_UPDATED": now,
        "AUTHOR_ID": env.user_id.to_string(), "EDITOR_ID": env.user_id.to_string(),
        "START_TIME": start, "END_TIME": end, "DEADLINE": start,
        "ORIGINATOR_ID": get_ci(&fields, "ORIGINATOR_ID").cloned().unwrap_or(Value::Null),
        "ORIGIN_ID": get_ci(&fields, "ORIGIN_ID").cloned().unwrap_or(Value::Null),
        "COMMUNICATIONS": comms,
    });
    if let Value::Object(row) = row {
        portal.insert("activity", row);
    }
    if type_id == 4 && completed && text_or("DIRECTION", "0") == "2" {
        // An outgoing e-mail marked completed is sent by the portal (RD: DIRECTION=2 and
        // COMPLETED=N keep it unsent); counted so tests can tell.
        portal.count_mutation("crm.activity.email_sent");
    }
    portal.count_mutation("crm.activity.add");
    Ok(Reply::value(json!(id)))
}
