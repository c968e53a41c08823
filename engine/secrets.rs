//! Secrets never appear in logs, errors, journals or dry-run output.
//!
//! Every value that comes from a `${secret:NAME}` reference, from an environment variable whose
//! name says it is secret (TOKEN, PASSWORD, SECRET, KEY), and the credentials and path tokens of
//! every URL taken from the environment are registered here; all output passes through [`redact`].

use std::sync::RwLock;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

pub const MASK: &str = "***";

/// Remember a secret value. Very short values are ignored: masking "1" would garble every number.
pub fn register(value: &str) {
    let value = value.trim();
    if value.len() < 4 {
        return;
    }
    let mut all = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    if !all.iter().any(|s| s == value) {
        all.push(value.to_string());
        // Longest first, so a secret containing another is masked whole.
        all.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// Forget a secret that can no longer appear anywhere (a request's tokens once it is answered
/// and erased): `etl serve` answers requests for months, and every remembered secret costs
/// every later redaction a search.
pub fn forget(value: &str) {
    let value = value.trim();
    SECRETS
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|s| s != value);
}

/// Whether an environment variable's name marks its value as secret.
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["TOKEN", "PASSWORD", "PASSWD", "SECRET", "KEY", "CODE"]
        .iter()
        .any(|w| upper.contains(w))
}

/// Register the secret parts of a URL: user info, the Bitrix24 webhook code
/// (`https://portal/rest/1/8g9l071eismy9q2l/`), and other path segments that look like tokens.
pub fn register_url(text: &str) {
    let Ok(url) = url::Url::parse(text.trim()) else {
        return;
    };
    if let Some(p) = url.password() {
        register(p);
    }
    if !url.username().is_empty() && url.password().is_some() {
        register(url.username());
    }
    let segments: Vec<&str> = url.path_segments().into_iter().flatten().collect();
    if let Some(code) = webhook_code(&segments) {
        register(code);
    }
    for segment in segments {
        if looks_like_token(segment) {
            register(segment);
        }
    }
    for (k, v) in url.query_pairs() {
        if is_secret_name(&k) || looks_like_token(&v) {
            register(&v);
        }
    }
}

/// The code of a Bitrix24 webhook path `/rest/<user id>/<code>/...`, whatever its characters:
/// a code of letters only is as secret as any other, and no pattern would recognise it.
fn webhook_code<'a>(segments: &[&'a str]) -> Option<&'a str> {
    let rest = segments.iter().position(|s| *s == "rest")?;
    let user = segments.get(rest + 1)?;
    let code = segments.get(rest + 2)?;
    let is_user_id = !user.is_empty() && user.chars().all(|c| c.is_ascii_digit());
    (is_user_id && !code.is_empty()).then_some(*code)
}

/// Mixed letters and digits, 8+ characters: webhook codes, API keys, session keys.
pub fn looks_like_token(s: &str) -> bool {
    s.len() >= 8
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && s.chars().any(|c| c.is_ascii_digit())
        && s.chars().any(|c| c.is_ascii_alphabetic())
}

/// The text with every registered secret replaced by `***`.
pub fn redact(text: &str) -> String {
    let all = SECRETS.read().unwrap_or_else(|e| e.into_inner());
    let mut out = text.to_string();
    for s in all.iter() {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), MASK);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_webhook_codes_and_tokens() {
        register_url("https://portal.example/rest/23748/fakecode0000test/");
        register("s3cr3t-token-value");
        let text = redact(
            "POST https://portal.example/rest/23748/fakecode0000test/crm.contact.list failed; token s3cr3t-token-value",
        );
        assert!(!text.contains("fakecode0000test"), "{text}");
        assert!(!text.contains("s3cr3t-token-value"), "{text}");
        assert!(text.contains("/rest/23748/***/crm.contact.list"), "{text}");
    }

    #[test]
    fn masks_a_webhook_code_of_letters_only() {
        register_url("https://portal.example/rest/7/onlyletterscode/");
        let text = redact("GET https://portal.example/rest/7/onlyletterscode/user.get");
        assert_eq!(text, "GET https://portal.example/rest/7/***/user.get");
        // Not a webhook path: ordinary words stay readable.
        register_url("https://api.example/rest/api/contacts/");
        assert_eq!(redact("contacts"), "contacts");
    }

    #[test]
    fn secret_names() {
        assert!(is_secret_name("OTMECHALKA_TOKEN"));
        assert!(is_secret_name("COMAGIC_PASSWORD"));
        assert!(!is_secret_name("OTMECHALKA_URL"));
    }
}
