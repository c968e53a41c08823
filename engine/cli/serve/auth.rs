//! Who may start runs: `Authorization: Bearer $ETL_SERVE_TOKEN`, compared in constant time.
//! Without a configured token the protected routes are disabled, never open.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq as _;

use super::{Server, error};

/// Environment variable holding the token `/run` requires.
pub const TOKEN_VAR: &str = "ETL_SERVE_TOKEN";

/// Largest request body accepted (runs are GETs; business-process POSTs are small forms).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The token from the environment; an empty value counts as none.
pub fn configured_token() -> Option<String> {
    std::env::var(TOKEN_VAR)
        .ok()
        .filter(|t| !t.trim().is_empty())
        .inspect(|t| crate::secrets::register(t))
}

/// Does `header` (the Authorization value) carry `token`? The comparison takes the same time
/// wherever the first difference is, so the token cannot be guessed byte by byte.
pub fn bearer_matches(header: Option<&str>, token: &str) -> bool {
    let Some(given) = header.and_then(|h| {
        h.strip_prefix("Bearer ")
            .or_else(|| h.strip_prefix("bearer "))
    }) else {
        return false;
    };
    bool::from(given.trim().as_bytes().ct_eq(token.as_bytes()))
}

/// Middleware of the protected routes.
pub async fn require_token(
    State(server): State<Arc<Server>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(token) = server.token.as_deref() else {
        return error(
            StatusCode::FORBIDDEN,
            format!(
                "running pipelines over HTTP is disabled: set {TOKEN_VAR} to a secret and send it as `Authorization: Bearer <token>`"
            ),
        );
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok());
    if !bearer_matches(given, token) {
        let mut response = error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong token: send `Authorization: Bearer <ETL_SERVE_TOKEN>`",
        );
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    next.run(req).await
}

/// Refuses a body announced as too large before anything reads it (413); bodies read by
/// extractors are capped by `DefaultBodyLimit` as well.
pub async fn limit_body(req: Request, next: Next) -> Response {
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if announced.is_some_and(|n| n > MAX_BODY_BYTES) {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body over {MAX_BODY_BYTES} bytes"),
        );
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_token_matches() {
        assert!(bearer_matches(Some("Bearer s3cret"), "s3cret"));
        assert!(!bearer_matches(Some("Bearer s3cre"), "s3cret"));
        assert!(!bearer_matches(Some("Bearer s3cretX"), "s3cret"));
        assert!(!bearer_matches(Some("Basic s3cret"), "s3cret"));
        assert!(!bearer_matches(Some("s3cret"), "s3cret"));
        assert!(!bearer_matches(None, "s3cret"));
    }
}
