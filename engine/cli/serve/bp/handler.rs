//! The HTTP side: read the body (form or JSON, at most 1 MiB), authenticate, accept once.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json, json};

use super::Bp;
use super::run::{identity, stored_form, unknown_answer};
use super::work::spawn;
use crate::connectors::bitrix24::app::form;
use crate::connectors::bitrix24::app::request::{BpRequest, Refusal};
use crate::secrets::redact;
use crate::state::bp::{BpStatus, NewBpRequest, now_ms};

/// Largest handler request body.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Where `POST /bp/install` keeps the administrator's tokens (`etl activities sync` reads them).
pub const INSTALL_KV: (&str, &str, &str) = ("_app", "oauth", "install");

fn reply(status: StatusCode, body: Json) -> Response {
    (status, axum::Json(body)).into_response()
}

fn refuse(status: u16, reason: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    reply(status, json!({"error": redact(reason)}))
}

/// The body as JSON: a PHP-bracket form (what Bitrix24 sends) or JSON (tests, replays).
async fn read_body(headers: &HeaderMap, body: Body) -> Result<Json, Response> {
    let too_large = || refuse(413, &format!("request body over {MAX_BODY_BYTES} bytes"));
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if announced.is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| too_large())?;
    let kind = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if kind.starts_with("application/x-www-form-urlencoded") {
        let text = String::from_utf8_lossy(&bytes);
        Ok(form::parse(&text))
    } else if kind.starts_with("application/json") {
        match serde_json::from_slice::<Json>(&bytes) {
            Ok(v @ Json::Object(_)) => Ok(v),
            _ => Err(refuse(400, "the body is not a JSON object")),
        }
    } else {
        Err(refuse(
            415,
            "send application/x-www-form-urlencoded (or application/json)",
        ))
    }
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

/// `POST /bp/<code>`: a workflow reached the action `code`.
pub async fn action(
    State(bp): State<Arc<Bp>>,
    Path(code): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let form = match read_body(&headers, body).await {
        Ok(form) => form,
        Err(refused) => return refused,
    };
    let request = match BpRequest::from_form(&form) {
        Ok(r) => r,
        Err(Refusal { status, reason }) => return refuse(status, &reason),
    };
    if let Err(Refusal { status, reason }) = request.authenticate(&bp.app, now_secs()) {
        tracing::warn!(code, status, "business-process request refused: {reason}");
        return refuse(status, &reason);
    }
    let known = request.code == code && bp.actions.contains_key(&code);
    let received_ms = now_ms();
    let new = NewBpRequest {
        key: request.event_key(),
        code: request.code.clone(),
        workflow_id: request.workflow_id.clone(),
        document: json!(request.document_id),
        use_subscription: request.use_subscription,
        received_ms,
        deadline_ms: received_ms + bp.settings.retry_window.as_millis() as i64,
        status: if known {
            BpStatus::Pending
        } else {
            BpStatus::Reply
        },
        request: stored_form(&form),
        tokens: json!(request.tokens),
        event_token: request.event_token.clone(),
        answer: (!known).then(|| unknown_answer(&request)),
    };
    let key = new.key.clone();
    let fresh = match bp.store(move |s| s.bp_receive(&new)).await {
        Ok(fresh) => fresh,
        Err(e) => {
            tracing::error!(event_key = key, "cannot accept the request: {e}");
            return refuse(503, "the state store is unavailable");
        }
    };
    tracing::info!(
        event_key = key,
        code = request.code,
        workflow_id = request.workflow_id,
        duplicate = !fresh,
        known,
        "business-process request"
    );
    if fresh {
        spawn(&bp, key.clone());
    }
    match (known, fresh) {
        (true, true) => reply(StatusCode::OK, json!({"accepted": true})),
        (true, false) => reply(StatusCode::OK, json!({"duplicate": true})),
        (false, _) => reply(
            StatusCode::NOT_FOUND,
            json!({"error": format!("unknown action `{code}`"), "duplicate": !fresh, "request": identity(&request)}),
        ),
    }
}

/// `POST /bp/install`: the app's `ONAPPINSTALL` event, authenticated like any request. The
/// installing administrator's tokens are kept for `etl activities sync`.
pub async fn install(State(bp): State<Arc<Bp>>, headers: HeaderMap, body: Body) -> Response {
    let form = match read_body(&headers, body).await {
        Ok(form) => form,
        Err(refused) => return refused,
    };
    let event = match BpRequest::from_event(&form) {
        Ok(r) => r,
        Err(Refusal { status, reason }) => return refuse(status, &reason),
    };
    if let Err(Refusal { status, reason }) = event.authenticate(&bp.app, now_secs()) {
        tracing::warn!(status, "install event refused: {reason}");
        return refuse(status, &reason);
    }
    if !event.code.eq_ignore_ascii_case("ONAPPINSTALL") {
        return refuse(400, "only the ONAPPINSTALL event is handled here");
    }
    if event.tokens.access_token.is_empty() || event.tokens.refresh_token.is_empty() {
        return refuse(400, "the install event carries no tokens");
    }
    let tokens = json!({
        "access_token": event.tokens.access_token,
        "refresh_token": event.tokens.refresh_token,
        "user_id": event.tokens.user_id,
    });
    let (pipeline, table, key) = INSTALL_KV;
    match bp
        .store(move |s| s.kv_put_secret(pipeline, table, key, &tokens))
        .await
    {
        Ok(()) => {
            tracing::info!(
                user_id = event.tokens.user_id,
                "the application was installed; its tokens are kept for `etl activities sync`"
            );
            reply(StatusCode::OK, json!({"installed": true}))
        }
        Err(e) => {
            tracing::error!("cannot keep the install tokens: {e}");
            refuse(503, "the state store is unavailable")
        }
    }
}
