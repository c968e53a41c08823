//! Resource booking (RD api-reference/calendar): `calendar.resource.list`,
//! `calendar.resource.booking.list` and `calendar.event.update`. A booking (the value of a
//! `resourcebooking` field) is a set of events in `calendar_event` sharing a `BOOKING_ID`:
//! one `CAL_TYPE=resource` event per resource and one `CAL_TYPE=user` event per user. A user's
//! event can be edited by its owner or by a user the owner's calendar section
//! (`calendar_section.EDITORS`) grants.

use super::*;

pub(super) fn resource_list(portal: &Portal) -> Reply {
    let rows = portal
        .table("calendar_resource")
        .map(|t| {
            t.ids()
                .filter_map(|id| t.get(id))
                .map(Value::Object)
                .collect()
        })
        .unwrap_or_default();
    rows_reply(rows)
}

fn id_set(v: Option<&Value>) -> Option<Vec<u64>> {
    match v? {
        Value::Array(a) => Some(a.iter().filter_map(id_of).collect()),
        Value::Object(o) => Some(o.values().filter_map(id_of).collect()),
        other => Some(id_of(other).into_iter().collect()),
    }
}

/// `{filter:{resourceIdList:[booking IDs]}}` or `{filter:{resourceTypeIdList:[resource IDs]}}`.
pub(super) fn booking_list(
    portal: &Portal,
    params: &Map<String, Value>,
) -> Result<Reply, ApiError> {
    let empty = Map::new();
    let filter = map_param(params, "filter")?.unwrap_or(&empty);
    let bookings = id_set(get_ci(filter, "resourceIdList"));
    let resources = id_set(get_ci(filter, "resourceTypeIdList"));
    let (key, ids) = match (bookings, resources) {
        (Some(b), None) => ("BOOKING_ID", b),
        (None, Some(r)) => ("SECTION_ID", r),
        _ => {
            return Err(ApiError::legacy(
                "One of resourceTypeIdList or resourceIdList must be given",
            ));
        }
    };
    let Some(t) = portal.table("calendar_event") else {
        return Ok(rows_reply(Vec::new()));
    };
    let rows = t
        .ids()
        .filter(|id| {
            t.value(*id, key)
                .and_then(|v| id_of(&v))
                .is_some_and(|v| ids.contains(&v))
                && (key == "BOOKING_ID"
                    || t.value(*id, "CAL_TYPE").as_ref().and_then(Value::as_str)
                        == Some("resource"))
        })
        .filter_map(|id| t.get(id))
        .map(Value::Object)
        .collect();
    Ok(rows_reply(rows))
}

fn may_edit(portal: &Portal, owner: u64, section: Option<u64>, caller: u64) -> bool {
    if owner == caller {
        return true;
    }
    let editors = section
        .and_then(|s| portal.table("calendar_section")?.value(s, "EDITORS"))
        .unwrap_or(Value::Null);
    editors
        .as_array()
        .is_some_and(|a| a.iter().filter_map(id_of).any(|u| u == caller))
}

/// `calendar.event.update {id, type, ownerId, name, description}` -> the event ID.
pub(super) fn event_update(
    portal: &mut Portal,
    params: &Map<String, Value>,
    env: &Env,
) -> Result<Reply, ApiError> {
    let text = |k: &str| {
        get_ci(params, k)
            .and_then(scalar_text)
            .map(|s| s.into_owned())
    };
    let id = get_ci(params, "id").and_then(id_of).unwrap_or(0);
    let owner = get_ci(params, "ownerId").and_then(id_of).unwrap_or(0);
    let cal_type = text("type").unwrap_or_default();
    let ev = portal.get("calendar_event", id).unwrap_or_default();
    let field = |k: &str| ev.get(k).and_then(id_of);
    let matches = !ev.is_empty()
        && ev.get("CAL_TYPE").and_then(Value::as_str) == Some(cal_type.as_str())
        && field("OWNER_ID") == Some(owner);
    if !matches {
        return Err(ApiError::legacy("Event not found"));
    }
    if !may_edit(portal, owner, field("SECTION_ID"), env.user_id) {
        return Err(ApiError::legacy("Access denied"));
    }
    let t = portal.table_mut("calendar_event");
    if let Some(name) = text("name") {
        // The column holds 255 characters.
        let cut: String = name.chars().take(255).collect();
        t.set(id, "NAME", Some(json!(cut)));
    }
    if let Some(d) = text("description") {
        t.set(id, "DESCRIPTION", Some(json!(d)));
    }
    portal.count_mutation("calendar.event.update");
    Ok(Reply::value(json!(id)))
}
