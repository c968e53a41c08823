//! `voximplant.line.get` (`{LINE_ID: name}`) and `voximplant.callback.start` (RD
//! telephony/voximplant): lines are the `voximplant_line` table, each started callback is
//! kept in `voximplant_callback` for tests.

use super::*;

pub(super) fn line_get(portal: &Portal) -> Reply {
    let mut lines = Map::new();
    if let Some(t) = portal.table("voximplant_line") {
        for id in t.ids() {
            let text = |k| {
                t.value(id, k)
                    .and_then(|v| scalar_text(&v).map(|s| s.into_owned()))
            };
            if let (Some(line), Some(name)) = (text("LINE_ID"), text("NAME")) {
                lines.insert(line, json!(name));
            }
        }
    }
    Reply::value(Value::Object(lines))
}

fn line_exists(portal: &Portal, line: &str) -> bool {
    portal.table("voximplant_line").is_some_and(|t| {
        t.ids()
            .any(|id| t.value(id, "LINE_ID").as_ref().and_then(Value::as_str) == Some(line))
    })
}

pub(super) fn callback_start(
    portal: &mut Portal,
    params: &Map<String, Value>,
    env: &Env,
) -> Result<Reply, ApiError> {
    let text = |k: &str| {
        get_ci(params, k)
            .and_then(scalar_text)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let (line, number, speech) = (
        text("FROM_LINE"),
        text("TO_NUMBER"),
        text("TEXT_TO_PRONOUNCE"),
    );
    if !line_exists(portal, &line) {
        return Err(ApiError::new(
            400,
            "ERROR_CORE",
            &format!("Could not find line {line}"),
        ));
    }
    let digits = number.chars().filter(char::is_ascii_digit).count();
    let allowed = number
        .chars()
        .all(|c| c.is_ascii_digit() || " +-()".contains(c));
    if !(10..=15).contains(&digits) || !allowed {
        return Err(ApiError::new(
            400,
            "ERROR_CORE",
            "Phone number is not correct",
        ));
    }
    if speech.is_empty() {
        return Err(ApiError::new(
            400,
            "ERROR_CORE",
            "Text to pronounce is empty",
        ));
    }
    let id = portal.table_mut("voximplant_callback").next_id();
    let call_id = format!(
        "callback.{}.{}",
        crate::bitrix24::app::random_token(32),
        env.now
    );
    let row = json!({"ID": id.to_string(), "CALL_ID": call_id, "FROM_LINE": line, "TO_NUMBER": number,
        "TEXT_TO_PRONOUNCE": speech, "VOICE": text("VOICE"), "USER_ID": env.user_id.to_string()});
    if let Value::Object(row) = row {
        portal.insert("voximplant_callback", row);
    }
    portal.count_mutation("voximplant.callback.start");
    Ok(Reply::value(json!({"RESULT": true, "CALL_ID": call_id})))
}
