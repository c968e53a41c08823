//! Bitrix24 as an installed application (OAuth), for business-process actions (seed 002).
//!
//! - [`AppConfig`]: the app's identity on the portal, from `B24_APP_*` (its secrets registered).
//! - `bitrix24.app`: a connection whose calls run as the user Bitrix24 names in the request
//!   being answered («Запускать от имени»): `auth=<access token>` to the app endpoint, one
//!   refresh through the OAuth server when that token has expired.
//! - [`form`] and [`request`]: the handler request as Bitrix24 sends it, and its authentication.
//! - `bitrix24.bp_activity`: the source that declares an action and answers its requests.

mod activity;
mod declare;
pub mod form;
pub mod oauth;
pub mod register;
pub mod reply;
pub mod request;

use std::any::Any;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;

use super::client::{Auth, Client};
use super::{PortalLimits, default_burst, default_drain, default_operating};
use crate::config::Registry;
use crate::config::component::ConnectionConfig;
use crate::connectors::http::transport::Transport;
use crate::secrets;

pub use activity::{ActivityConfig, take_renewed_tokens};
pub use declare::{Declaration, Property};

pub fn register(r: &mut Registry) {
    r.connection::<AppConnection>("bitrix24.app");
    r.source::<ActivityConfig>("bitrix24.bp_activity");
}

/// The official OAuth server, where access tokens are renewed.
pub const OAUTH_URL: &str = "https://oauth.bitrix.info/oauth/token/";

/// The installed application: where its calls go and how it proves itself.
#[derive(Clone, Debug)]
pub struct AppConfig {
    /// The portal's REST endpoint for app calls, `https://portal.bitrix24.ru/rest/`.
    pub endpoint: String,
    pub member_id: String,
    /// The app's `application_token`: every request from the portal carries it.
    pub application_token: String,
    pub client_id: String,
    pub client_secret: String,
    pub oauth_url: String,
}

/// The environment variables of the app, each with what it is.
const ENV: [(&str, &str); 6] = [
    (
        "B24_APP_ENDPOINT",
        "the portal's REST endpoint for app calls",
    ),
    ("B24_APP_MEMBER_ID", "the portal's member_id"),
    ("B24_APP_TOKEN", "the app's application_token"),
    ("B24_APP_CLIENT_ID", "the app's client_id"),
    ("B24_APP_CLIENT_SECRET", "the app's client_secret"),
    ("B24_OAUTH_URL", "the OAuth server"),
];

impl AppConfig {
    /// From `B24_APP_ENDPOINT`, `B24_APP_MEMBER_ID`, `B24_APP_TOKEN`, `B24_APP_CLIENT_ID`,
    /// `B24_APP_CLIENT_SECRET` and `B24_OAUTH_URL` (default: the official server). The error
    /// names every variable that is missing.
    pub fn from_env() -> Result<AppConfig, String> {
        AppConfig::from_env_at(None)
    }

    /// As [`AppConfig::from_env`], with the endpoint given (a pipeline's `endpoint:`) rather
    /// than read from `B24_APP_ENDPOINT`.
    pub fn from_env_at(endpoint: Option<String>) -> Result<AppConfig, String> {
        let get = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let endpoint = endpoint.filter(|e| !e.trim().is_empty());
        let missing: Vec<String> = ENV[..5]
            .iter()
            .filter(|(name, _)| !(*name == "B24_APP_ENDPOINT" && endpoint.is_some()))
            .filter(|(name, _)| get(name).is_none())
            .map(|(name, what)| format!("{name} ({what})"))
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "the Bitrix24 application is not configured: set {}",
                missing.join(", ")
            ));
        }
        AppConfig::new(
            endpoint.unwrap_or_else(|| get("B24_APP_ENDPOINT").unwrap_or_default()),
            get("B24_APP_MEMBER_ID").unwrap_or_default(),
            get("B24_APP_TOKEN").unwrap_or_default(),
            get("B24_APP_CLIENT_ID").unwrap_or_default(),
            get("B24_APP_CLIENT_SECRET").unwrap_or_default(),
            get("B24_OAUTH_URL").unwrap_or_else(|| OAUTH_URL.to_string()),
        )
    }

    /// Checks the URLs and registers the secrets.
    pub fn new(
        endpoint: String,
        member_id: String,
        application_token: String,
        client_id: String,
        client_secret: String,
        oauth_url: String,
    ) -> Result<AppConfig, String> {
        let mut endpoint = endpoint.trim().to_string();
        if !endpoint.ends_with('/') {
            endpoint.push('/');
        }
        for (name, url) in [
            ("B24_APP_ENDPOINT", &endpoint),
            ("B24_OAUTH_URL", &oauth_url),
        ] {
            let parsed = url::Url::parse(url).map_err(|e| format!("{name} is not a URL: {e}"))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(format!("{name} must start with https://"));
            }
        }
        secrets::register(&application_token);
        secrets::register(&client_secret);
        Ok(AppConfig {
            endpoint,
            member_id: member_id.trim().to_string(),
            application_token,
            client_id,
            client_secret,
            oauth_url,
        })
    }

    /// The portal's domain as requests name it (`auth[domain]`): the endpoint's host[:port].
    pub fn domain(&self) -> String {
        url::Url::parse(&self.endpoint)
            .ok()
            .and_then(|u| {
                u.host_str().map(|h| match u.port() {
                    Some(p) => format!("{h}:{p}"),
                    None => h.to_string(),
                })
            })
            .unwrap_or_default()
    }
}

/// A Bitrix24 portal reached as an installed application: calls run with the token of the
/// request being answered («Запускать от имени»). A key left out is read from its variable:
/// `B24_APP_ENDPOINT`, `B24_APP_MEMBER_ID`, `B24_APP_TOKEN`, `B24_APP_CLIENT_ID`,
/// `B24_APP_CLIENT_SECRET`, `B24_OAUTH_URL` (`etl serve` authenticates requests with those).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppConnection {
    /// The portal's REST endpoint for app calls, `https://portal.bitrix24.ru/rest/`.
    #[schemars(example = &"${env:B24_APP_ENDPOINT}")]
    pub endpoint: Option<String>,
    /// The portal's `member_id`.
    pub member_id: Option<String>,
    /// The app's `application_token` (secret).
    #[schemars(example = &"${secret:B24_APP_TOKEN}")]
    pub application_token: Option<String>,
    pub client_id: Option<String>,
    /// The app's `client_secret` (secret).
    #[schemars(example = &"${secret:B24_APP_CLIENT_SECRET}")]
    pub client_secret: Option<String>,
    /// The OAuth server that renews tokens (default: `https://oauth.bitrix.info/oauth/token/`).
    pub oauth_url: Option<String>,
    /// Leaky bucket capacity of the portal (250 on Enterprise).
    #[serde(default = "default_burst")]
    #[schemars(range(min = 1))]
    pub burst: u32,
    /// Leaky bucket drain per second (5 on Enterprise).
    #[serde(default = "default_drain")]
    #[schemars(range(min = 0.1))]
    pub drain_per_second: f64,
    /// Per-method operating-time budget over 10 minutes, in seconds.
    #[serde(default = "default_operating")]
    pub operating_limit_secs: f64,
    /// `timeout_secs` (at most 59: Bitrix24 itself ends requests at 60) and `retries`.
    #[serde(flatten)]
    pub transport: Transport<50, 5>,
}

impl AppConnection {
    /// The app: the keys given, the environment for the others.
    fn app(&self) -> Result<AppConfig, String> {
        let all_given = [
            &self.endpoint,
            &self.member_id,
            &self.application_token,
            &self.client_id,
            &self.client_secret,
        ]
        .iter()
        .all(|v| v.is_some());
        let env = if all_given {
            None
        } else {
            Some(AppConfig::from_env_at(self.endpoint.clone())?)
        };
        let pick = |given: &Option<String>, from_env: fn(&AppConfig) -> &String| {
            given
                .clone()
                .or_else(|| env.as_ref().map(|e| from_env(e).clone()))
                .unwrap_or_default()
        };
        AppConfig::new(
            pick(&self.endpoint, |e| &e.endpoint),
            pick(&self.member_id, |e| &e.member_id),
            pick(&self.application_token, |e| &e.application_token),
            pick(&self.client_id, |e| &e.client_id),
            pick(&self.client_secret, |e| &e.client_secret),
            self.oauth_url
                .clone()
                .or_else(|| env.as_ref().map(|e| e.oauth_url.clone()))
                .unwrap_or_else(|| OAUTH_URL.to_string()),
        )
    }
}

impl AppConnection {
    fn limits(&self) -> PortalLimits {
        PortalLimits {
            burst: self.burst,
            drain_per_second: self.drain_per_second,
            operating_limit_secs: self.operating_limit_secs,
        }
    }
}

impl ConnectionConfig for AppConnection {
    fn build(self) -> Result<Arc<dyn Any + Send + Sync>, String> {
        let app = self.app()?;
        let base = app.endpoint.clone();
        let cfg = self
            .limits()
            .client_config(base, &self.transport, Auth::app(app))?;
        Ok(Arc::new(Client::new(cfg)?))
    }
}
