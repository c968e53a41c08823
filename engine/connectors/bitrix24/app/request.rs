//! A business-process handler request (what Bitrix24 POSTs when a workflow reaches an action),
//! its authentication, and the record the action's pipeline sees. Tokens stay here: templates
//! see the request without them, and every token is registered as a secret once parsed.

use serde_json::{Map, Value as Json, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppConfig;
use crate::secrets;

/// How old a request may be (`ts`): the queue may delay it, not by hours.
pub const MAX_AGE_SECS: i64 = 3600;
/// How far ahead of our clock a request's `ts` may be.
const MAX_SKEW_SECS: i64 = 300;

/// The OAuth pair of the user the action runs as, and what the portal said about it.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct UserTokens {
    pub access_token: String,
    pub refresh_token: String,
    pub user_id: String,
}

/// One handler request.
#[derive(Clone, Debug)]
pub struct BpRequest {
    pub code: String,
    pub workflow_id: String,
    pub document_id: Vec<String>,
    pub document_type: Vec<String>,
    /// A capability (whoever holds it can close the step): never shown, see [`event_key`].
    pub event_token: String,
    pub properties: Map<String, Json>,
    pub use_subscription: bool,
    pub timeout_duration: i64,
    pub ts: i64,
    pub tokens: UserTokens,
    pub application_token: String,
    pub member_id: String,
    pub client_endpoint: String,
    pub domain: String,
}

/// Why a request is refused before anything runs: the HTTP status and the reason.
#[derive(Debug, PartialEq)]
pub struct Refusal {
    pub status: u16,
    pub reason: String,
}

impl Refusal {
    fn new(status: u16, reason: impl Into<String>) -> Refusal {
        Refusal {
            status,
            reason: reason.into(),
        }
    }
}

/// The name logs and the state store give an event token: a hash prefix, not the token.
pub fn event_key(event_token: &str) -> String {
    hex::encode(&Sha256::digest(event_token.as_bytes())[..8])
}

fn text(form: &Json, key: &str) -> String {
    match form.get(key) {
        Some(Json::String(s)) => s.clone(),
        Some(Json::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn strings(form: &Json, key: &str) -> Vec<String> {
    match form.get(key) {
        Some(Json::Array(a)) => a
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .collect(),
        Some(Json::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

impl BpRequest {
    /// Read a request from its form (see [`super::form::parse`]) or its JSON. Registers every
    /// token as a secret first. Missing `code`, `event_token` or `auth[application_token]`: 400.
    pub fn from_form(form: &Json) -> Result<BpRequest, Refusal> {
        let auth = form.get("auth").cloned().unwrap_or(Json::Null);
        let event_token = text(form, "event_token");
        let tokens = UserTokens {
            access_token: text(&auth, "access_token"),
            refresh_token: text(&auth, "refresh_token"),
            user_id: text(&auth, "user_id"),
        };
        let application_token = text(&auth, "application_token");
        for secret in [
            &event_token,
            &tokens.access_token,
            &tokens.refresh_token,
            &application_token,
        ] {
            secrets::register(secret);
        }
        let properties = match form.get("properties") {
            Some(Json::Object(map)) => map.clone(),
            _ => Map::new(),
        };
        let request = BpRequest {
            code: text(form, "code"),
            workflow_id: text(form, "workflow_id"),
            document_id: strings(form, "document_id"),
            document_type: strings(form, "document_type"),
            event_token,
            properties,
            use_subscription: !text(form, "use_subscription").eq_ignore_ascii_case("N"),
            timeout_duration: text(form, "timeout_duration").trim().parse().unwrap_or(0),
            ts: text(form, "ts").trim().parse().unwrap_or(0),
            tokens,
            application_token,
            member_id: text(&auth, "member_id"),
            client_endpoint: text(&auth, "client_endpoint"),
            domain: text(&auth, "domain"),
        };
        for (value, name) in [
            (&request.code, "code"),
            (&request.event_token, "event_token"),
            (&request.application_token, "auth[application_token]"),
        ] {
            if value.trim().is_empty() {
                return Err(Refusal::new(400, format!("the request has no {name}")));
            }
        }
        Ok(request)
    }

    /// Read an application event (`ONAPPINSTALL`: `event`, `data[...]`, `ts`, `auth[...]`),
    /// which has no code and no event token: only `auth[application_token]` is required (400).
    /// Its tokens are registered as secrets first.
    pub fn from_event(form: &Json) -> Result<BpRequest, Refusal> {
        let mut with_identity = form.clone();
        if let Some(map) = with_identity.as_object_mut() {
            let event = text(form, "event");
            map.insert("code".into(), Json::String(event.to_ascii_lowercase()));
            map.insert("event_token".into(), Json::String("-".into()));
        }
        let mut request = BpRequest::from_form(&with_identity)?;
        request.code = text(form, "event");
        request.event_token.clear();
        Ok(request)
    }

    /// Is this the portal and the app we serve, recently? The application token is compared
    /// in constant time. 401: not our app; 403: another portal or endpoint, or a stale request.
    pub fn authenticate(&self, app: &AppConfig, now: i64) -> Result<(), Refusal> {
        let ours = app.application_token.as_bytes();
        if !bool::from(self.application_token.as_bytes().ct_eq(ours)) {
            return Err(Refusal::new(
                401,
                "the application token does not match B24_APP_TOKEN",
            ));
        }
        if self.member_id != app.member_id {
            return Err(Refusal::new(
                403,
                "the request comes from another portal (member_id)",
            ));
        }
        if self.client_endpoint.trim_end_matches('/') != app.endpoint.trim_end_matches('/') {
            return Err(Refusal::new(
                403,
                "the request names another endpoint than B24_APP_ENDPOINT",
            ));
        }
        if self.ts < now - MAX_AGE_SECS || self.ts > now + MAX_SKEW_SECS {
            return Err(Refusal::new(
                403,
                format!(
                    "the request is stale or from the future (ts {}, now {now})",
                    self.ts
                ),
            ));
        }
        Ok(())
    }

    pub fn event_key(&self) -> String {
        event_key(&self.event_token)
    }

    /// The document as `{entity: "DEAL", id: 123}` from `DEAL_123` (`id` null when not numeric).
    fn document(&self) -> Json {
        let raw = self.document_id.get(2).cloned().unwrap_or_default();
        let (entity, id) = raw.rsplit_once('_').unwrap_or(("", raw.as_str()));
        json!({"entity": entity, "id": id.parse::<i64>().ok()})
    }

    /// What the action's templates see as `source`: everything but the tokens.
    pub fn record(&self) -> Json {
        json!({
            "code": self.code,
            "workflow_id": self.workflow_id,
            "document_id": self.document_id,
            "document_type": self.document_type,
            "document": self.document(),
            "properties": self.properties,
            "use_subscription": self.use_subscription,
            "timeout_duration": self.timeout_duration,
            "ts": self.ts,
            "user_id": self.tokens.user_id,
            "domain": self.domain,
            "member_id": self.member_id,
            "event_key": self.event_key(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> AppConfig {
        AppConfig::new(
            "https://portal.example/rest/".into(),
            "m1".into(),
            "apptoken-123".into(),
            "local.1".into(),
            "client-secret-1".into(),
            super::super::OAUTH_URL.into(),
        )
        .unwrap()
    }

    fn form(app_token: &str, member: &str, endpoint: &str, ts: i64) -> Json {
        json!({
            "code": "b24etl_update_deal", "workflow_id": "w1", "event_token": "wf|A1|xyz-event",
            "document_id": ["crm", "CCrmDocumentDeal", "DEAL_123"],
            "properties": {"deal_id": "123"}, "use_subscription": "Y", "ts": ts.to_string(),
            "auth": {"access_token": "acc-1", "refresh_token": "ref-1", "user_id": "5",
                     "application_token": app_token, "member_id": member,
                     "client_endpoint": endpoint, "domain": "portal.example"},
        })
    }

    #[test]
    fn authenticates_token_portal_endpoint_and_age() {
        let now = 1_700_000_000;
        let ok = form("apptoken-123", "m1", "https://portal.example/rest/", now);
        assert_eq!(
            BpRequest::from_form(&ok).unwrap().authenticate(&app(), now),
            Ok(())
        );
        let status = |f: Json| {
            BpRequest::from_form(&f)
                .unwrap()
                .authenticate(&app(), now)
                .unwrap_err()
                .status
        };
        assert_eq!(
            status(form("other", "m1", "https://portal.example/rest/", now)),
            401
        );
        assert_eq!(
            status(form(
                "apptoken-123",
                "m2",
                "https://portal.example/rest/",
                now
            )),
            403
        );
        assert_eq!(
            status(form(
                "apptoken-123",
                "m1",
                "https://evil.example/rest/",
                now
            )),
            403
        );
        assert_eq!(
            status(form(
                "apptoken-123",
                "m1",
                "https://portal.example/rest/",
                now - 3601
            )),
            403
        );
    }

    #[test]
    fn the_record_has_no_tokens_and_names_the_document() {
        let r = BpRequest::from_form(&form("apptoken-123", "m1", "x", 1)).unwrap();
        let text = r.record().to_string();
        for secret in ["acc-1", "ref-1", "apptoken-123", "xyz-event"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(r.record()["document"], json!({"entity": "DEAL", "id": 123}));
        assert_eq!(r.event_key().len(), 16);
    }

    #[test]
    fn a_request_without_its_identity_is_refused() {
        let mut f = form("apptoken-123", "m1", "x", 1);
        f.as_object_mut().unwrap().remove("event_token");
        assert_eq!(BpRequest::from_form(&f).unwrap_err().status, 400);
    }
}
