//! The otmechalka API client: GET/POST JSON with a bearer token. A 4xx fails the record with the
//! body's message; connection errors, timeouts and 5xx (after retries, where retrying is safe)
//! mean otmechalka is unavailable.

use std::time::Duration;

use serde_json::Value as Json;

use crate::connectors::http::client::{self as http, HttpError};

/// The `system` label of this client's requests in `/metrics`.
const METRIC_SYSTEM: &str = "otmechalka";

pub struct Otmechalka {
    base: String,
    token: String,
    http: reqwest::Client,
    retries: usize,
    /// Records written side by side (see the connection's `concurrency`).
    concurrency: usize,
}

/// What a lookup by origin id found.
pub enum Found {
    Yes(Json),
    No,
}

impl Otmechalka {
    pub fn new(base: &str, token: &str, timeout: Duration, retries: usize) -> Otmechalka {
        Otmechalka {
            base: base.to_string(),
            token: token.to_string(),
            http: http::client(timeout),
            retries,
            concurrency: 1,
        }
    }

    pub fn with_concurrency(mut self, concurrency: usize) -> Otmechalka {
        self.concurrency = concurrency.max(1);
        self
    }

    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET `/api/<kind>/<origin_id>/`; a read, so retried.
    pub async fn find(&self, kind: &str, origin_id: &str) -> Result<Found, HttpError> {
        let url = self.url(&format!("/api/{kind}/{}/", urlencode(origin_id)));
        let result = http::get_json_for(
            METRIC_SYSTEM,
            || self.http.get(&url).bearer_auth(&self.token),
            self.retries,
        )
        .await;
        match result {
            Ok(body) => Ok(Found::Yes(body)),
            Err(HttpError::Rejected(r)) if r.status == 404 => Ok(Found::No),
            Err(e) => Err(e),
        }
    }

    /// POST a body. Not retried once it may have reached the service: then the outcome is
    /// `Unknown` and the caller decides.
    pub async fn post(&self, path: &str, body: &Json) -> Result<Json, HttpError> {
        let url = self.url(path);
        let mut attempt = 0;
        loop {
            let result = http::send_json_for(
                METRIC_SYSTEM,
                self.http.post(&url).bearer_auth(&self.token).json(body),
            )
            .await;
            match result {
                // Never connected: nothing was sent, so sending again is safe.
                Err(HttpError::Unavailable(m))
                    if m.starts_with("connection failed") && attempt < self.retries =>
                {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(200 * (1 << attempt))).await;
                }
                Err(HttpError::Unavailable(m)) if !m.starts_with("connection failed") => {
                    return Err(HttpError::Unknown(m));
                }
                other => return other.map(|(_, b)| b),
            }
        }
    }
}

fn urlencode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}
