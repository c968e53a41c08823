//! The application side of the portal over HTTP: who an OAuth call (`/rest/METHOD?auth=…`)
//! runs as, the token endpoint (`/oauth/token/`, standing for oauth.bitrix.info), and the
//! emulator's handle on the application (identity getters, tokens, outage switch).

use super::app::TokenError;
use super::*;
use axum::extract::Request;
use std::sync::atomic::Ordering;

/// Who a REST call runs as.
#[derive(Clone, Debug)]
pub(super) struct Caller {
    pub user_id: u64,
    pub scopes: Vec<String>,
    /// `Some(client_id)` for a call made with an application's OAuth token.
    pub client_id: Option<String>,
}

impl Caller {
    /// The incoming webhook's user and scopes.
    pub fn webhook(cfg: &EmulatorConfig) -> Caller {
        Caller {
            user_id: cfg.user_id,
            scopes: cfg.scopes.clone(),
            client_id: None,
        }
    }

    /// The user of the `auth` parameter's access token (removed from the parameters, as the
    /// portal does), or the portal's 401 answer.
    pub fn from_token(
        sh: &Shared,
        cfg: &EmulatorConfig,
        params: &mut Map<String, Value>,
    ) -> Result<Caller, ApiError> {
        let key = params
            .keys()
            .find(|k| k.eq_ignore_ascii_case("auth"))
            .cloned();
        let token = key
            .and_then(|k| params.remove(&k))
            .and_then(|v| params::scalar_text(&v).map(|s| s.trim().to_string()))
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::new(401, "NO_AUTH_FOUND", "Wrong authorization data"))?;
        let user_id = lock(&sh.tokens)
            .check(&token, sh.now())
            .map_err(|e| match e {
                TokenError::Invalid => ApiError::new(
                    401,
                    "invalid_token",
                    "The access token provided is invalid.",
                ),
                TokenError::Expired => ApiError::new(
                    401,
                    "expired_token",
                    "The access token provided has expired.",
                ),
            })?;
        Ok(Caller {
            user_id,
            scopes: cfg.app.scopes.clone(),
            client_id: Some(cfg.app.client_id.clone()),
        })
    }

    pub fn env(&self, cfg: &EmulatorConfig, now: i64) -> Env {
        Env {
            now,
            user_id: self.user_id,
            scopes: self.scopes.clone(),
            client_id: self.client_id.clone(),
            admin: cfg.app.admin_user_ids.contains(&self.user_id),
        }
    }
}

fn base_url(sh: &Shared) -> String {
    match sh.addr.get() {
        Some(a) => format!("http://{a}"),
        None => "http://127.0.0.1".into(),
    }
}

fn oauth_error(status: u16, code: &str, description: &str) -> Response {
    http::json_response(
        status,
        &json!({"error": code, "error_description": description}),
    )
}

/// `GET /oauth/token/?grant_type=refresh_token&client_id&client_secret&refresh_token`.
pub(super) fn token_endpoint(sh: &Shared, req: &Request) -> Response {
    let q = params::parse_query(req.uri().query().unwrap_or(""));
    let get = |k: &str| {
        q.get(k)
            .and_then(params::scalar_text)
            .map(|s| s.into_owned())
            .unwrap_or_default()
    };
    let cfg = sh.cfg();
    if get("grant_type") != "refresh_token" {
        return oauth_error(400, "invalid_request", "Unsupported grant_type");
    }
    if get("client_id") != cfg.app.client_id || get("client_secret") != cfg.app.client_secret {
        return oauth_error(401, "invalid_client", "Invalid client credentials");
    }
    let now = sh.now();
    let Some((user_id, access, refresh)) = lock(&sh.tokens).refresh(&get("refresh_token"), now)
    else {
        return oauth_error(400, "invalid_grant", "Invalid refresh token");
    };
    let base = base_url(sh);
    let domain = base.trim_start_matches("http://").to_string();
    http::json_response(
        200,
        &json!({
            "access_token": access,
            "expires": now.floor() as i64 + app::ACCESS_TTL_SECS,
            "expires_in": app::ACCESS_TTL_SECS,
            "scope": cfg.app.scopes.join(","),
            "domain": domain,
            "server_endpoint": format!("{base}/rest/"),
            "status": "L",
            "client_endpoint": format!("{base}/rest/"),
            "member_id": cfg.app.member_id,
            "user_id": user_id,
            "refresh_token": refresh,
        }),
    )
}

/// The installed application: identity, tokens, and the portal's availability.
impl Emulator {
    /// The portal's REST endpoint for application calls: `http://127.0.0.1:PORT/rest/`
    /// (what `B24_APP_ENDPOINT` is set to).
    pub fn app_endpoint(&self) -> String {
        format!("{}/rest/", self.base_url())
    }
    /// The portal's domain, `127.0.0.1:PORT` (`auth[domain]`).
    pub fn domain(&self) -> String {
        self.addr().to_string()
    }
    /// The token endpoint, `http://127.0.0.1:PORT/oauth/token/` (what `B24_OAUTH_URL` is).
    pub fn oauth_url(&self) -> String {
        format!("{}/oauth/token/", self.base_url())
    }
    pub fn client_id(&self) -> String {
        self.shared.cfg().app.client_id
    }
    pub fn client_secret(&self) -> String {
        self.shared.cfg().app.client_secret
    }
    pub fn application_token(&self) -> String {
        self.shared.cfg().app.application_token
    }
    pub fn member_id(&self) -> String {
        self.shared.cfg().app.member_id
    }

    /// The environment of an application on this portal, as issue 11 names it:
    /// `B24_APP_ENDPOINT`, `B24_APP_MEMBER_ID`, `B24_APP_TOKEN`, `B24_APP_CLIENT_ID`,
    /// `B24_APP_CLIENT_SECRET`, `B24_OAUTH_URL` and `B24_APP_REFRESH_TOKEN` (a fresh refresh
    /// token of the administrator, user 1, for registration).
    pub fn app_vars(&self) -> Vec<(&'static str, String)> {
        let (_, refresh) = self.issue_tokens(1);
        vec![
            ("B24_APP_ENDPOINT", self.app_endpoint()),
            ("B24_APP_MEMBER_ID", self.member_id()),
            ("B24_APP_TOKEN", self.application_token()),
            ("B24_APP_CLIENT_ID", self.client_id()),
            ("B24_APP_CLIENT_SECRET", self.client_secret()),
            ("B24_OAUTH_URL", self.oauth_url()),
            ("B24_APP_REFRESH_TOKEN", refresh),
        ]
    }
    /// A fresh OAuth pair `(access_token, refresh_token)` for `user_id`, valid for an hour of
    /// the emulator's clock.
    pub fn issue_tokens(&self, user_id: u64) -> (String, String) {
        lock(&self.shared.tokens).issue(user_id, self.shared.now())
    }
    /// Make an access token expired (its calls answer 401 `expired_token`); false if unknown.
    pub fn expire_access_token(&self, access_token: &str) -> bool {
        lock(&self.shared.tokens).expire(access_token)
    }
    /// Successful refreshes at the token endpoint.
    pub fn token_refreshes(&self) -> u64 {
        lock(&self.shared.tokens).refreshes()
    }
    /// A portal-wide outage (true) or its end (false): meanwhile every `/rest/…` and
    /// `/oauth/…` request answers HTTP 503 with an nginx HTML page and nothing runs.
    pub fn set_unavailable(&self, down: bool) {
        self.shared.unavailable.store(down, Ordering::SeqCst);
    }

    /// Actions registered through `bizproc.activity.add` (and not deleted), in order.
    pub fn registered_activities(&self) -> Vec<bizproc::RegisteredActivity> {
        lock(&self.shared.portal).bizproc.activities().to_vec()
    }
    /// Every accepted `bizproc.event.send`, oldest first (repeats included).
    pub fn event_sends(&self) -> Vec<bizproc::EventSend> {
        lock(&self.shared.portal).bizproc.sends().to_vec()
    }
    /// Accepted sends for one event token.
    pub fn event_sends_for(&self, event_token: &str) -> Vec<bizproc::EventSend> {
        lock(&self.shared.portal)
            .bizproc
            .sends()
            .iter()
            .filter(|s| s.event_token == event_token)
            .cloned()
            .collect()
    }
    /// Every accepted `bizproc.activity.log` line.
    pub fn activity_logs(&self) -> Vec<bizproc::ActivityLogLine> {
        lock(&self.shared.portal).bizproc.logs().to_vec()
    }
}
