//! Whose calls a client makes (an incoming webhook, or an installed application with the token
//! of the request being answered), and the portal's leaky bucket shared by every client.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde_json::{Map, Value as Json};

use super::{B24Error, Client, ClientConfig};
use crate::connectors::bitrix24::app::AppConfig;
use crate::connectors::bitrix24::app::request::UserTokens;

/// Whose calls these are.
#[derive(Clone, Debug)]
pub enum Auth {
    /// The incoming webhook's user (its code is in the URL).
    Webhook,
    /// An installed application: calls carry `auth=<access token>` of the user of the request
    /// being answered ([`Client::use_tokens`]).
    App(Arc<AppAuth>),
}

impl Auth {
    pub fn app(app: AppConfig) -> Auth {
        Auth::App(Arc::new(AppAuth {
            app,
            tokens: Mutex::new(None),
        }))
    }
}

/// The application and the tokens its calls use now.
#[derive(Debug)]
pub struct AppAuth {
    pub app: AppConfig,
    tokens: Mutex<Option<UserTokens>>,
}

impl Client {
    /// A client of `app` calling as the user of `tokens`, with a standard portal's limits:
    /// for the one-off calls outside a pipeline (a reply, a registration).
    pub fn as_user(app: &AppConfig, tokens: UserTokens) -> Result<Client, String> {
        let client = Client::new(ClientConfig {
            webhook_url: app.endpoint.clone(),
            burst: 50,
            drain_per_second: 2.0,
            timeout: Duration::from_secs(30),
            retries: 3,
            operating_limit: 480.0,
            auth: Auth::app(app.clone()),
        })?;
        client.use_tokens(tokens);
        Ok(client)
    }

    /// As an application: the tokens of the user whose request is being answered.
    pub fn use_tokens(&self, tokens: UserTokens) {
        if let Auth::App(auth) = &self.cfg.auth {
            *auth.tokens.lock().unwrap_or_else(|e| e.into_inner()) = Some(tokens);
        }
    }

    /// As an application: the tokens in use now (renewed ones, after an expiry).
    pub fn tokens(&self) -> Option<UserTokens> {
        match &self.cfg.auth {
            Auth::App(auth) => auth
                .tokens
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            Auth::Webhook => None,
        }
    }

    /// The application this client calls as, if it is one.
    pub fn app(&self) -> Option<&AppConfig> {
        match &self.cfg.auth {
            Auth::App(auth) => Some(&auth.app),
            Auth::Webhook => None,
        }
    }

    /// The body of a call: the parameters, and as an application the user's access token.
    pub(super) fn body(&self, params: &Json) -> Result<Json, B24Error> {
        let Auth::App(_) = &self.cfg.auth else {
            return Ok(params.clone());
        };
        let Some(tokens) = self.tokens() else {
            return Err(B24Error::Unavailable(
                "no user token: Bitrix24 calls as the application need the request being answered"
                    .into(),
            ));
        };
        let mut body = match params {
            Json::Object(map) => map.clone(),
            _ => Map::new(),
        };
        body.insert("auth".into(), Json::String(tokens.access_token));
        Ok(Json::Object(body))
    }

    /// Renew the user's access token once (the first expiry of a call).
    pub(super) async fn renew(&self, method: &str) -> Result<(), B24Error> {
        let (Auth::App(auth), Some(tokens)) = (&self.cfg.auth, self.tokens()) else {
            return Err(B24Error::Unavailable(format!(
                "{method}: the access token has expired"
            )));
        };
        tracing::info!(method, "the user's access token has expired; renewing it");
        let renewed =
            crate::connectors::bitrix24::app::oauth::refresh(&auth.app, &tokens.refresh_token)
                .await
                .map_err(|e| B24Error::Unavailable(format!("renewing the access token: {e}")))?;
        self.use_tokens(renewed);
        Ok(())
    }
}

/// The leaky bucket of the portal at `url`, shared by every client of this process that calls
/// it with the same limits: `etl serve` answers many requests at once, each with its own client.
pub(super) fn portal_bucket(url: &url::Url, cfg: &ClientConfig) -> Arc<DefaultDirectRateLimiter> {
    type Buckets = Mutex<HashMap<String, Arc<DefaultDirectRateLimiter>>>;
    static BUCKETS: LazyLock<Buckets> = LazyLock::new(Default::default);
    let key = format!(
        "{}|{}|{}",
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or_default(),
        cfg.burst,
    ) + &format!("|{}", cfg.drain_per_second);
    let mut buckets = BUCKETS.lock().unwrap_or_else(|e| e.into_inner());
    buckets
        .entry(key)
        .or_insert_with(|| {
            // A little under the portal's own bucket: clocks and latencies differ between us and it.
            let burst = cfg.burst.saturating_sub(2).max(1);
            let period = Duration::from_secs_f64(1.02 / cfg.drain_per_second.max(0.01));
            let quota = Quota::with_period(period)
                .expect("positive period")
                .allow_burst(NonZeroU32::new(burst).expect("burst > 0"));
            Arc::new(RateLimiter::direct(quota))
        })
        .clone()
}
