//! Renewing a user's access token with its refresh token at the OAuth server
//! (`GET oauth_url?grant_type=refresh_token&client_id&client_secret&refresh_token`). Access
//! tokens live an hour, refresh tokens 180 days; each renewal hands out a new pair.

use std::time::Duration;

use serde_json::Value as Json;

use super::AppConfig;
use super::request::UserTokens;
use crate::connectors::http::client::{client, describe};
use crate::runtime::error::ConnectorError;
use crate::secrets;

/// A new pair for `refresh_token`. `Rejected`: the OAuth server refused this token or the app's
/// credentials; `Unavailable`: it could not be asked.
pub async fn refresh(app: &AppConfig, refresh_token: &str) -> Result<UserTokens, ConnectorError> {
    let http = client(Duration::from_secs(30));
    let sent = http
        .get(&app.oauth_url)
        .query(&[
            ("grant_type", "refresh_token"),
            ("client_id", app.client_id.as_str()),
            ("client_secret", app.client_secret.as_str()),
            ("refresh_token", refresh_token),
        ])
        .send()
        .await
        .map_err(|e| ConnectorError::Unavailable(format!("the OAuth server: {}", describe(&e))))?;
    let status = sent.status().as_u16();
    let body: Json = sent.json().await.unwrap_or(Json::Null);
    let text = |k: &str| body[k].as_str().unwrap_or_default().to_string();
    if status >= 500 || (body.is_null() && status != 200) {
        return Err(ConnectorError::Unavailable(format!(
            "the OAuth server answered HTTP {status}"
        )));
    }
    if !body["error"].is_null() || text("access_token").is_empty() {
        return Err(ConnectorError::Rejected(format!(
            "the OAuth server refused to renew the token: {} {}",
            text("error"),
            text("error_description")
        )));
    }
    let tokens = UserTokens {
        access_token: text("access_token"),
        refresh_token: text("refresh_token"),
        user_id: body["user_id"].to_string().trim_matches('"').to_string(),
    };
    secrets::register(&tokens.access_token);
    secrets::register(&tokens.refresh_token);
    Ok(tokens)
}
