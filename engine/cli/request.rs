//! `etl run PIPELINE --request FILE`: replay one captured business-process request (the form
//! body Bitrix24 POSTs to the handler, or the same as JSON) through an action pipeline, print
//! the reply, and send it as `etl serve` would (`bizproc.event.send`) unless it is a dry run
//! or the workflow does not wait for one (`use_subscription=N`).

use std::path::Path;
use std::sync::Arc;

use serde_json::Value as Json;

use crate::connectors::bitrix24::app::AppConfig;
use crate::connectors::bitrix24::app::form;
use crate::connectors::bitrix24::app::request::BpRequest;
use crate::connectors::bitrix24::app::{reply, take_renewed_tokens};
use crate::secrets;

/// The request in `path`: JSON when it reads as a JSON object, else a form body with PHP
/// bracket keys. Its tokens are registered as secrets before anything is printed.
pub fn read(path: &Path) -> Result<Arc<Json>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the request {}: {e}", path.display()))?;
    let trimmed = text.trim();
    let value = if trimmed.starts_with('{') {
        serde_json::from_str(trimmed)
            .map_err(|e| format!("the request {} is not valid JSON: {e}", path.display()))?
    } else {
        form::parse(trimmed)
    };
    // Parsing registers the tokens; a request that is not one is the source's to refuse.
    let _ = BpRequest::from_form(&value);
    Ok(Arc::new(value))
}

/// Print the reply; send it unless `dry_run` or the workflow waits for none. Err: the reply
/// could not be delivered (the workflow keeps waiting).
pub async fn answer(input: &Json, answer: Option<&Json>, dry_run: bool) -> Result<(), String> {
    let Some(answer) = answer else {
        return Err("the run produced no reply".into());
    };
    let text = serde_json::to_string_pretty(answer).unwrap_or_default();
    println!("{}", secrets::redact(&text));
    let request = BpRequest::from_form(input).map_err(|r| r.reason)?;
    if !request.use_subscription {
        eprintln!("use_subscription=N: the workflow waits for no reply; nothing sent");
        return Ok(());
    }
    if dry_run {
        eprintln!("[dry-run] bizproc.event.send: not sent");
        return Ok(());
    }
    let app = AppConfig::from_env()?;
    // A run that renewed the user's token spent the request's refresh token: reply with the
    // renewed pair.
    let tokens = take_renewed_tokens(&request.event_key()).unwrap_or(request.tokens.clone());
    reply::deliver(&app, tokens, &request.event_token, answer)
        .await
        .map(|_| eprintln!("reply sent (bizproc.event.send)"))
        .map_err(|e| secrets::redact(&format!("the reply could not be sent: {e}")))
}
