//! `comagic.legacy_api`: the legacy REST API v1 (seed 004's `CMInstance`): login for a session
//! key, GET requests with the envelope checked, one re-login on `102401:Unauthorized`, and
//! `logout` (the `comagic.legacy_stats` source calls it when the run ends, however it ends).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value as Json;

use crate::config::component::ConnectionConfig;
use crate::connectors::http::client;
use crate::connectors::http::transport::Transport;
use crate::runtime::error::ConnectorError;
use crate::runtime::metrics;

pub const SYSTEM: &str = "CoMagic API v1";

/// The `system` label of this client's requests in `/metrics`.
const METRIC_SYSTEM: &str = "comagic_v1";

/// CoMagic's legacy REST API v1 (session key).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LegacyConnection {
    /// The API base, `https://api.comagic.ru/api/` (UIS: `https://api.uiscom.ru/api/`).
    #[schemars(example = &"${env:COMAGIC_API_URL}")]
    pub url: String,
    /// The account user's login.
    #[schemars(example = &"${env:COMAGIC_LOGIN}")]
    pub login: String,
    /// Their password.
    #[schemars(example = &"${secret:COMAGIC_PASSWORD}")]
    pub password: String,
    #[serde(flatten)]
    pub transport: Transport<60, 3>,
}

impl ConnectionConfig for LegacyConnection {
    fn build(self) -> Result<Arc<dyn std::any::Any + Send + Sync>, String> {
        Ok(Arc::new(LegacyApi::new(self)?))
    }
}

/// How a request failed, in the shared vocabulary: `Rejected` is the API's
/// `{"success": false, "message": ...}`; `Unavailable` a transport failure after retries.
pub type LegacyError = ConnectorError;

/// The client: one session at a time, opened on first use.
pub struct LegacyApi {
    base: String,
    login: String,
    password: String,
    retries: usize,
    http: reqwest::Client,
    session: tokio::sync::Mutex<Option<String>>,
    pub logins: AtomicU64,
    pub logouts: AtomicU64,
}

impl LegacyApi {
    pub fn new(c: LegacyConnection) -> Result<LegacyApi, String> {
        let mut base = c.url.trim().to_string();
        if url::Url::parse(&base).is_err() {
            return Err(format!(
                "CoMagic API v1: `{}` is not a URL (expected https://api.comagic.ru/api/)",
                c.url
            ));
        }
        if !base.ends_with('/') {
            base.push('/');
        }
        if c.login.trim().is_empty() || c.password.is_empty() {
            return Err("CoMagic API v1: set COMAGIC_LOGIN and COMAGIC_PASSWORD".into());
        }
        crate::secrets::register(&c.password);
        Ok(LegacyApi {
            base,
            login: c.login.trim().to_string(),
            password: c.password,
            retries: c.transport.retries,
            http: client::client(c.transport.timeout()),
            session: tokio::sync::Mutex::new(None),
            logins: AtomicU64::new(0),
            logouts: AtomicU64::new(0),
        })
    }

    /// One request with the envelope checked; retried in transport (GET) with backoff.
    async fn request(
        &self,
        make: impl Fn() -> reqwest::RequestBuilder,
        retry: bool,
    ) -> Result<Json, LegacyError> {
        let mut failures = 0;
        loop {
            let outcome = match make().send().await {
                Err(e) => {
                    metrics::request(METRIC_SYSTEM, "error");
                    Err(client::describe(&e))
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    metrics::request(METRIC_SYSTEM, &status.to_string());
                    match resp.text().await {
                        Err(e) => Err(client::describe(&e)),
                        Ok(text) => match serde_json::from_str::<Json>(&text) {
                            Ok(v) if v.get("success").is_some() => Ok(v),
                            _ => Err(crate::secrets::redact(&format!(
                                "HTTP {status}: {}",
                                text.trim().chars().take(200).collect::<String>()
                            ))),
                        },
                    }
                }
            };
            match outcome {
                Ok(v) if v["success"] == true => {
                    return Ok(v.get("data").cloned().unwrap_or(Json::Null));
                }
                Ok(v) => {
                    return Err(LegacyError::Rejected(
                        v["message"].as_str().unwrap_or("no message").to_string(),
                    ));
                }
                Err(m) => {
                    failures += 1;
                    if !retry || failures > self.retries {
                        return Err(LegacyError::Unavailable(m));
                    }
                    tokio::time::sleep(Duration::from_millis(
                        300 * (1 << failures.min(5)) + rand::random::<u64>() % 200,
                    ))
                    .await;
                }
            }
        }
    }

    async fn open_session(&self, session: &mut Option<String>) -> Result<String, LegacyError> {
        if let Some(k) = session {
            return Ok(k.clone());
        }
        let form = [
            ("login", self.login.as_str()),
            ("password", self.password.as_str()),
        ];
        let url = format!("{}login/", self.base);
        let data = self
            .request(|| self.http.post(&url).form(&form), true)
            .await
            .map_err(|e| match e {
                LegacyError::Rejected(m) => LegacyError::Rejected(format!("login: {m}")),
                other => other.context("login"),
            })?;
        let key = data
            .get("session_key")
            .and_then(Json::as_str)
            .ok_or_else(|| {
                LegacyError::Unavailable("login: no session_key in the answer".into())
            })?;
        crate::secrets::register(key);
        self.logins.fetch_add(1, Ordering::Relaxed);
        *session = Some(key.to_string());
        Ok(key.to_string())
    }

    /// `GET /api/v1/<method>/` with `params`; the session is opened first (and once more when
    /// the API says `102401:Unauthorized`).
    pub async fn get(
        &self,
        method: &str,
        params: &[(String, String)],
    ) -> Result<Json, LegacyError> {
        let mut session = self.session.lock().await;
        let url = format!("{}v1/{method}/", self.base);
        let mut relogged = false;
        loop {
            let key = self.open_session(&mut session).await?;
            let mut query: Vec<(&str, &str)> = vec![("session_key", key.as_str())];
            query.extend(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            match self
                .request(|| self.http.get(&url).query(&query), true)
                .await
            {
                Err(LegacyError::Rejected(m)) if m.starts_with("102401") && !relogged => {
                    tracing::info!(method, "CoMagic session ended ({m}); logging in again");
                    relogged = true;
                    *session = None;
                }
                Err(LegacyError::Rejected(m)) => {
                    return Err(LegacyError::Rejected(format!("{method}: {m}")));
                }
                Err(e) => return Err(e.context(method)),
                Ok(data) => return Ok(data),
            }
        }
    }

    /// End the session, if one is open (any answer is accepted, as `endSession` does).
    pub async fn logout(&self) {
        let mut session = self.session.lock().await;
        let Some(key) = session.take() else { return };
        let url = format!("{}logout/", self.base);
        let query = [("session_key", key.as_str())];
        match self
            .request(|| self.http.get(&url).query(&query), false)
            .await
        {
            Ok(_) | Err(LegacyError::Rejected(_)) => {}
            Err(e) => tracing::warn!("CoMagic logout failed: {e}"),
        }
        self.logouts.fetch_add(1, Ordering::Relaxed);
    }
}
