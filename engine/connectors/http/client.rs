//! Shared HTTP plumbing: one TLS setup, timeouts, retries with backoff and jitter for requests
//! that are safe to repeat, and the split between "this record was rejected" (4xx) and
//! "the system is unavailable" (connection errors, timeouts, 5xx after retries).

use std::sync::Once;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use serde_json::Value as Json;

use crate::runtime::error::ConnectorError;
use crate::runtime::metrics;

/// How a request failed, in the shared vocabulary: `Rejected` (4xx), `Unavailable`
/// (connection refused, timeout, 5xx or a non-JSON answer); a caller that sent a write turns an
/// `Unavailable` that may have reached the service into `Unknown`.
pub type HttpError = ConnectorError<HttpRejection>;

/// The service answered 4xx: this request (record) was refused; the message is the body's.
#[derive(Debug, Clone, thiserror::Error)]
#[error("HTTP {status}: {message}")]
pub struct HttpRejection {
    pub status: u16,
    pub message: String,
}

/// A reqwest client with our TLS provider (ring) installed once per process. It follows no
/// redirect: an API that moves is reported, not followed.
pub fn client(timeout: Duration) -> reqwest::Client {
    client_with_redirects(timeout, reqwest::redirect::Policy::none())
}

/// [`client`] with its own redirect policy (downloads, which storage links redirect).
pub fn client_with_redirects(
    timeout: Duration,
    redirects: reqwest::redirect::Policy,
) -> reqwest::Client {
    static TLS: Once = Once::new();
    TLS.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("b24-etl/", env!("CARGO_PKG_VERSION")))
        .redirect(redirects)
        .build()
        .expect("HTTP client")
}

/// Backoff for retries: exponential from `base`, with jitter.
pub fn backoff(retries: usize, base: Duration) -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(base)
        .with_max_delay(Duration::from_secs(30))
        .with_max_times(retries)
        .with_jitter()
}

/// Send a request and decode its JSON body; classify failures. Counted in `/metrics` under
/// the system `http`; connectors with a name of their own use [`send_json_for`].
pub async fn send_json(req: reqwest::RequestBuilder) -> Result<(u16, Json), HttpError> {
    send_json_for("http", req).await
}

/// [`send_json`], counted in `/metrics` as a request to `system` (e.g. `otmechalka`).
pub async fn send_json_for(
    system: &str,
    req: reqwest::RequestBuilder,
) -> Result<(u16, Json), HttpError> {
    let resp = req.send().await.map_err(|e| {
        metrics::request(system, "error");
        HttpError::Unavailable(describe(&e))
    })?;
    let status = resp.status().as_u16();
    metrics::request(system, &status.to_string());
    let text = resp
        .text()
        .await
        .map_err(|e| HttpError::Unavailable(describe(&e)))?;
    let body: Option<Json> = serde_json::from_str(&text).ok();
    if status >= 500 {
        return Err(HttpError::Unavailable(format!(
            "HTTP {status}: {}",
            snippet(&text)
        )));
    }
    if status >= 400 {
        return Err(HttpError::Rejected(HttpRejection {
            status,
            message: body
                .as_ref()
                .map(error_message)
                .unwrap_or_else(|| snippet(&text)),
        }));
    }
    match body {
        Some(b) => Ok((status, b)),
        None if text.trim().is_empty() => Ok((status, Json::Null)),
        None => Err(HttpError::Unavailable(format!(
            "HTTP {status} with a non-JSON body: {}",
            snippet(&text)
        ))),
    }
}

/// A read that is safe to repeat: retried on unavailability with backoff.
pub async fn get_json(
    make: impl Fn() -> reqwest::RequestBuilder,
    retries: usize,
) -> Result<Json, HttpError> {
    get_json_for("http", make, retries).await
}

/// [`get_json`], counted in `/metrics` as requests to `system`.
pub async fn get_json_for(
    system: &str,
    make: impl Fn() -> reqwest::RequestBuilder,
    retries: usize,
) -> Result<Json, HttpError> {
    (|| async { send_json_for(system, make()).await.map(|(_, b)| b) })
        .retry(backoff(retries, Duration::from_millis(200)))
        .sleep(tokio::time::sleep)
        .when(|e| matches!(e, HttpError::Unavailable(_)))
        .await
}

/// The human part of an error body: `detail`, `message`, `error_description`, or field errors.
pub fn error_message(body: &Json) -> String {
    for key in ["detail", "message", "error_description", "error"] {
        if let Some(s) = body
            .get(key)
            .and_then(Json::as_str)
            .filter(|s| !s.is_empty())
        {
            return s.to_string();
        }
    }
    if let Some(errors) = body.get("errors").and_then(Json::as_object) {
        return errors
            .iter()
            .map(|(field, msgs)| {
                let text = match msgs {
                    Json::Array(list) => list
                        .iter()
                        .map(|m| {
                            m.as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| m.to_string())
                        })
                        .collect::<Vec<_>>()
                        .join("; "),
                    Json::String(s) => s.clone(),
                    other => other.to_string(),
                };
                format!("{field}: {text}")
            })
            .collect::<Vec<_>>()
            .join("; ");
    }
    snippet(&body.to_string())
}

fn snippet(text: &str) -> String {
    let t: String = text.trim().chars().take(300).collect();
    if t.is_empty() {
        "(empty body)".into()
    } else {
        t
    }
}

/// reqwest's error with its cause, which says what actually happened (refused, timed out...).
pub fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "request timed out".to_string()
    } else if e.is_connect() {
        "connection failed".to_string()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    crate::secrets::redact(&text)
}
