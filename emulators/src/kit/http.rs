//! Answers every HTTP emulator gives the same way: DRF-style JSON errors, the nginx error page,
//! bearer-token checks, and [`respond`], which runs one request through latency and the fault
//! queue.

use std::time::Duration;

use axum::{
    Json,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

use super::faults::{Fault, Faults};
use super::server::Conn;

/// `{"detail": detail}` with the given status.
pub fn json_error(status: StatusCode, detail: impl Into<String>) -> Response {
    (status, Json(json!({ "detail": detail.into() }))).into_response()
}

/// The page nginx shows when the service behind it fails.
pub fn html_error(status: StatusCode) -> Response {
    let title = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    );
    let body = format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    );
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// Checks `Authorization: Bearer <token>`; the error is the 401 response to send (DRF wording).
#[allow(clippy::result_large_err)] // the error is the response itself, built once per bad request
pub fn check_bearer(headers: &HeaderMap, token: &str) -> Result<(), Response> {
    let unauthorized = |detail: &str| {
        let mut resp = json_error(StatusCode::UNAUTHORIZED, detail);
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        resp
    };
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(unauthorized(
            "Authentication credentials were not provided.",
        ));
    };
    let value = value.to_str().unwrap_or("");
    let mut parts = value.splitn(2, ' ');
    let scheme = parts.next().unwrap_or("");
    let given = parts.next().unwrap_or("").trim();
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(unauthorized(
            "Invalid authorization header. Expected 'Bearer <token>'.",
        ));
    }
    if given.is_empty() {
        return Err(unauthorized(
            "Invalid token header. No credentials provided.",
        ));
    }
    if given != token {
        return Err(unauthorized("Invalid token."));
    }
    Ok(())
}

/// Runs one request through latency and the fault queue. `work` is the whole handling of the
/// request (token check included); it is synchronous, so a write is either fully applied or not
/// at all, whatever the client does meanwhile.
pub async fn respond<K: PartialEq + Clone>(
    faults: &Faults<K>,
    kind: &K,
    is_write: bool,
    conn: &Conn,
    latency: Duration,
    work: impl FnOnce() -> Response,
) -> Response {
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let injected = |code: u16| json_error(status(code), format!("Injected fault: HTTP {code}"));
    match faults.take(kind, is_write) {
        None => work(),
        Some(Fault::Status(code)) => injected(code),
        Some(Fault::Html(code)) => html_error(status(code)),
        Some(Fault::Drop) => {
            conn.kill();
            injected(500)
        }
        Some(Fault::Slow(delay)) => {
            let resp = work();
            tokio::time::sleep(delay).await;
            resp
        }
        Some(Fault::ApplyThenStatus(code)) => {
            let _ = work();
            injected(code)
        }
        Some(Fault::ApplyThenDrop) => {
            let _ = work();
            conn.kill();
            injected(500)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_check() {
        let mut h = HeaderMap::new();
        assert!(check_bearer(&h, "t").is_err());
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        assert!(check_bearer(&h, "t").is_err());
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Token t"));
        assert!(check_bearer(&h, "t").is_err());
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        assert!(check_bearer(&h, "t").is_ok());
    }
}
