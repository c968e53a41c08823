//! Delivering a reply: `bizproc.event.send {EVENT_TOKEN, RETURN_VALUES, LOG_MESSAGE}` closes the
//! workflow's step. Sending it again is harmless (Bitrix24 ignores an event for a step already
//! closed), so an unanswered attempt may simply be repeated.

use serde_json::{Value as Json, json};

use super::AppConfig;
use super::request::UserTokens;
use crate::connectors::bitrix24::client::{B24Error, Client, Kind};

/// The parameters of `bizproc.event.send` for `answer` (see the `bitrix24.bp_activity` source).
pub fn event_send_params(event_token: &str, answer: &Json) -> Json {
    json!({
        "EVENT_TOKEN": event_token,
        "RETURN_VALUES": answer.get("return_values").cloned().unwrap_or(json!({})),
        "LOG_MESSAGE": answer.get("log_message").cloned().unwrap_or(json!("")),
    })
}

/// Send `answer` as the user of `tokens` (renewed once if they expired). Returns the tokens in
/// use afterwards: a renewal replaces the refresh token, and the old one may be spent.
pub async fn deliver(
    app: &AppConfig,
    tokens: UserTokens,
    event_token: &str,
    answer: &Json,
) -> Result<UserTokens, B24Error> {
    let (tokens, sent) = send(app, tokens, event_token, answer).await;
    sent.map(|()| tokens)
}

/// [`deliver`], with the tokens in use afterwards also when the send failed: a renewal may
/// have spent the old refresh token before the send itself failed, and an outbox that tries
/// again needs the new pair.
pub async fn send(
    app: &AppConfig,
    tokens: UserTokens,
    event_token: &str,
    answer: &Json,
) -> (UserTokens, Result<(), B24Error>) {
    let client = match Client::as_user(app, tokens.clone()) {
        Ok(client) => client,
        Err(e) => return (tokens, Err(B24Error::Unavailable(e))),
    };
    // A repeated event is ignored by Bitrix24: safe to retry like a read.
    let sent = client
        .call(
            "bizproc.event.send",
            &event_send_params(event_token, answer),
            Kind::Read,
        )
        .await
        .map(|_| ());
    (client.tokens().unwrap_or(tokens), sent)
}
