//! `crm.timeline.comment.add` (RD crm-timeline-comment-add.md): only a lowercase `fields`
//! parameter is read (since crm 23.100.0); comments are kept in the `timeline_comment` table.

use super::*;

/// `lead`, `deal`, `contact`, `company` (lowercase, as the method expects) -> table.
fn owner_table(entity_type: &str) -> Option<&'static str> {
    Some(match entity_type {
        "lead" => "lead",
        "deal" => "deal",
        "contact" => "contact",
        "company" => "company",
        _ => return None,
    })
}

pub(super) fn comment_add(
    portal: &mut Portal,
    params: &Map<String, Value>,
    env: &Env,
) -> Result<Reply, ApiError> {
    // Exact key: `Fields`, `FIELDS`, `arFields` are not accepted any more.
    let Some(Value::Object(fields)) = params.get("fields") else {
        return Err(ApiError::new(
            400,
            "100",
            "Could not find value for parameter {fields}",
        ));
    };
    let text = |k: &str| {
        get_ci(fields, k)
            .and_then(scalar_text)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let entity_type = text("ENTITY_TYPE");
    let comment = get_ci(fields, "COMMENT")
        .and_then(scalar_text)
        .map(|s| s.into_owned())
        .unwrap_or_default();
    let entity_id = get_ci(fields, "ENTITY_ID").and_then(id_of).unwrap_or(0);
    if entity_type.is_empty() || entity_id == 0 {
        return Err(ApiError::new(
            400,
            "100",
            "Required fields ENTITY_TYPE, ENTITY_ID are not set",
        ));
    }
    let owner = owner_table(&entity_type)
        .filter(|t| portal.table(t).is_some_and(|t| t.contains(entity_id)))
        .ok_or_else(|| ApiError::new(400, "OWNER_NOT_FOUND", "Owner of the element not found"))?;
    if comment.trim().is_empty() {
        return Err(ApiError::new(400, "INVALID_ARG_VALUE", "Empty comment"));
    }
    let author = get_ci(fields, "AUTHOR_ID")
        .and_then(id_of)
        .unwrap_or(env.user_id);
    let id = portal.table_mut("timeline_comment").next_id();
    let row = json!({
        "ID": id.to_string(), "ENTITY_TYPE": owner, "ENTITY_ID": entity_id.to_string(),
        "COMMENT": comment, "AUTHOR_ID": author.to_string(),
        "CREATED": format_ts(env.now, portal.offset_secs),
    });
    if let Value::Object(row) = row {
        portal.insert("timeline_comment", row);
    }
    portal.count_mutation("crm.timeline.comment.add");
    Ok(Reply::value(json!(id)))
}
