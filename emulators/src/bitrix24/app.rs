//! The local application installed on the emulated portal ("uses API only", RD
//! `local-integrations/serverside-local-app-with-no-ui.md`): its identity (client id and secret,
//! application token, member id) and the OAuth tokens the portal issued to its users.
//!
//! Refresh-token rotation: RD `settings/oauth/auto-renewal.md` answers a refresh with a «new
//! value of the additional authorization token» and tells the app to «save the new pair of
//! tokens»; it never says the old refresh token keeps working. Bitrix24 treats a refresh token
//! as single-use, so the emulator does too: a used refresh token answers `invalid_grant`
//! afterwards (an engine that forgets to store the new one fails here, not in production).
//! The previous access token stays valid until it expires.

use rand::distr::{Alphanumeric, SampleString};
use std::collections::HashMap;

/// Lifetime of an access token (RD: one hour).
pub const ACCESS_TTL_SECS: i64 = 3600;

/// Identity of the installed application and who may register actions.
#[derive(Clone, Debug)]
pub struct AppConfig {
    /// `local.<13 hex>.<8 digits>` for a local application.
    pub client_id: String,
    pub client_secret: String,
    /// Sent in `auth[application_token]` of every handler call and event.
    pub application_token: String,
    /// The portal's id (`auth[member_id]`).
    pub member_id: String,
    /// Scopes granted to the application's tokens.
    pub scopes: Vec<String>,
    /// Portal administrators (bizproc.activity.* needs one).
    pub admin_user_ids: Vec<u64>,
}

impl Default for AppConfig {
    fn default() -> Self {
        AppConfig {
            client_id: "local.6571a3b2c4d5e6.81234567".into(),
            client_secret: "Xq3vLk9PzR2mWc7TnB5yHs1JdF8gKa4eUo6iVb0QlNt2ZxCrEw".into(),
            application_token: "51856fefc120afa4b628cc82d3935cce".into(),
            member_id: "a223c6b3710f85df22e9377d6c4f7553".into(),
            scopes: [
                "bizproc",
                "crm",
                "user",
                "department",
                "calendar",
                "telephony",
                "disk",
            ]
            .map(String::from)
            .to_vec(),
            admin_user_ids: vec![1],
        }
    }
}

/// Why an access token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenError {
    /// Never issued (or garbage): `invalid_token`.
    Invalid,
    /// Issued, but its hour is over: `expired_token`.
    Expired,
}

#[derive(Clone, Debug)]
struct Grant {
    user_id: u64,
    expires_at: f64,
}

/// Tokens issued by the portal, checked on every OAuth call.
#[derive(Debug, Default)]
pub(crate) struct Tokens {
    access: HashMap<String, Grant>,
    /// refresh token -> user
    refresh: HashMap<String, u64>,
    refreshes: u64,
}

/// 32 lowercase letters and digits, like Bitrix24's tokens.
pub(crate) fn random_token(len: usize) -> String {
    Alphanumeric
        .sample_string(&mut rand::rng(), len)
        .to_ascii_lowercase()
}

impl Tokens {
    /// A fresh access/refresh pair for `user_id`, valid from `now` for an hour.
    pub(crate) fn issue(&mut self, user_id: u64, now: f64) -> (String, String) {
        let access = random_token(32);
        let refresh = random_token(32);
        self.access.insert(
            access.clone(),
            Grant {
                user_id,
                expires_at: now + ACCESS_TTL_SECS as f64,
            },
        );
        self.refresh.insert(refresh.clone(), user_id);
        (access, refresh)
    }

    /// The user an access token stands for.
    pub(crate) fn check(&self, token: &str, now: f64) -> Result<u64, TokenError> {
        let g = self.access.get(token).ok_or(TokenError::Invalid)?;
        if now >= g.expires_at {
            return Err(TokenError::Expired);
        }
        Ok(g.user_id)
    }

    /// Make an access token expired (as if its hour had passed). False if unknown.
    pub(crate) fn expire(&mut self, token: &str) -> bool {
        match self.access.get_mut(token) {
            Some(g) => {
                g.expires_at = f64::NEG_INFINITY;
                true
            }
            None => false,
        }
    }

    /// Trade a refresh token for a new pair (the old refresh token is spent): the user and
    /// the pair, or None for an unknown or spent token.
    pub(crate) fn refresh(&mut self, refresh: &str, now: f64) -> Option<(u64, String, String)> {
        let user = self.refresh.remove(refresh)?;
        self.refreshes += 1;
        let (a, r) = self.issue(user, now);
        Some((user, a, r))
    }

    pub(crate) fn refreshes(&self) -> u64 {
        self.refreshes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_check_expire_refresh() {
        let mut t = Tokens::default();
        let (a, r) = t.issue(5, 100.0);
        assert_eq!(a.len(), 32);
        assert_eq!(t.check(&a, 101.0), Ok(5));
        assert_eq!(t.check(&a, 100.0 + 3600.0), Err(TokenError::Expired));
        assert_eq!(t.check("nope", 101.0), Err(TokenError::Invalid));
        assert!(t.expire(&a));
        assert_eq!(t.check(&a, 101.0), Err(TokenError::Expired));
        let (user, a2, r2) = t.refresh(&r, 200.0).unwrap();
        assert_eq!((user, t.check(&a2, 201.0)), (5, Ok(5)));
        assert!(
            t.refresh(&r, 200.0).is_none(),
            "a refresh token is single-use"
        );
        assert!(t.refresh(&r2, 200.0).is_some());
        assert_eq!(t.refreshes(), 2);
    }
}
