//! One run of an action pipeline for one request, and the answers serve makes itself (an
//! unknown action, a pipeline that cannot run). The form is stored without its secrets; they
//! are put back for a run from the row's columns.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Value as Json, json};

use crate::config::{self, LoadOptions};
use crate::connectors;
use crate::connectors::bitrix24::app::AppConfig;
use crate::connectors::bitrix24::app::request::{BpRequest, UserTokens};
use crate::runtime::executor::{self, RunOptions};
use crate::secrets::redact;

/// How a run ended, for serve.
pub enum RunEnd {
    /// The answer to reply.
    Answer(Json),
    /// A system was unavailable: try again (the answer is the failure, should time run out).
    Unavailable { reason: String, answer: Json },
    /// Serve is stopping (SIGTERM, Ctrl-C): the run is not over, it runs again after the start.
    Interrupted,
}

/// The form as stored: without the event token and the tokens (kept in their own columns).
pub fn stored_form(form: &Json) -> Json {
    let mut form = form.clone();
    if let Some(map) = form.as_object_mut() {
        map.remove("event_token");
        if let Some(Json::Object(auth)) = map.get_mut("auth") {
            for secret in ["access_token", "refresh_token", "application_token"] {
                auth.remove(secret);
            }
        }
    }
    form
}

/// The form of a run: the stored one with its secrets back.
pub fn run_input(stored: &Json, event_token: &str, tokens: &UserTokens, app: &AppConfig) -> Json {
    let mut form = stored.clone();
    if let Some(map) = form.as_object_mut() {
        map.insert("event_token".into(), json!(event_token));
        let auth = map.entry("auth").or_insert_with(|| json!({}));
        if let Some(auth) = auth.as_object_mut() {
            auth.insert("access_token".into(), json!(tokens.access_token));
            auth.insert("refresh_token".into(), json!(tokens.refresh_token));
            auth.insert("application_token".into(), json!(app.application_token));
        }
    }
    form
}

/// The answer to a request serve fails itself: no return values, the reason in the log.
pub fn failure_answer(request: &Json, log_message: &str, error: &str) -> Json {
    json!({
        "code": request.get("code"),
        "event_key": request.get("event_key"),
        "workflow_id": request.get("workflow_id"),
        "outcome": "failed",
        "error": redact(error),
        "return_values": {},
        "log_message": redact(log_message),
    })
}

/// The identity of a request for [`failure_answer`].
pub fn identity(request: &BpRequest) -> Json {
    json!({
        "code": request.code,
        "event_key": request.event_key(),
        "workflow_id": request.workflow_id,
    })
}

/// The answer for an action this serve does not have.
pub fn unknown_answer(request: &BpRequest) -> Json {
    let message = format!("Неизвестное действие {}", request.code);
    failure_answer(&identity(request), &message, &message)
}

/// Load `file` fresh and run it for `input` (attempt `attempt`), on a thread of its own as
/// `/run` does. Runs keep no state: each answers one request, and a write that repeats an
/// earlier one for the same record must not be skipped as unchanged.
pub async fn execute(file: PathBuf, input: Json, attempt: u32, who: Json) -> RunEnd {
    let done = tokio::task::spawn_blocking(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => return failed(&who, &e.to_string()),
        };
        runtime.block_on(async move {
            let pipeline =
                match config::load(&file, connectors::registry(), &LoadOptions::default()) {
                    Ok(p) => p,
                    Err(errors) => {
                        tracing::error!(
                            file = %file.display(),
                            "the action's pipeline cannot be loaded:\n{}",
                            errors.render()
                        );
                        return failed(&who, "the action's pipeline cannot be loaded");
                    }
                };
            let opts = RunOptions {
                input: Some(Arc::new(input)),
                attempt,
                ..Default::default()
            };
            match executor::run(pipeline, None, &opts).await {
                Err(e) => failed(&who, &e),
                Ok(report) => {
                    let reason = report.aborted.as_ref().map(|f| f.to_string());
                    let answer = report.answer.unwrap_or_else(|| {
                        let why = reason.clone().unwrap_or("the run gave no answer".into());
                        failure_answer(&who, &why, &why)
                    });
                    match report.aborted {
                        Some(fatal) if fatal.message.starts_with(INTERRUPTED) => {
                            RunEnd::Interrupted
                        }
                        Some(fatal) if !fatal.system.is_empty() => RunEnd::Unavailable {
                            reason: fatal.to_string(),
                            answer,
                        },
                        _ => RunEnd::Answer(answer),
                    }
                }
            }
        })
    })
    .await;
    done.unwrap_or_else(|e| {
        RunEnd::Answer(failure_answer(&json!({}), "the run failed", &e.to_string()))
    })
}

/// How [`crate::runtime::Fatal::interrupted`] begins.
const INTERRUPTED: &str = "interrupted by ";

fn failed(who: &Json, error: &str) -> RunEnd {
    RunEnd::Answer(failure_answer(who, error, error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_form_has_no_secret_and_a_run_gets_them_back() {
        let form = json!({
            "code": "c", "event_token": "ev-secret", "properties": {"a": "1"},
            "auth": {"access_token": "acc", "refresh_token": "ref", "application_token": "app",
                     "member_id": "m"},
        });
        let stored = stored_form(&form);
        let text = stored.to_string();
        for secret in ["ev-secret", "acc", "ref", "\"app\""] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        let app = AppConfig::new(
            "http://p/rest/".into(),
            "m".into(),
            "app".into(),
            "id".into(),
            "client-secret".into(),
            "http://p/oauth/token/".into(),
        )
        .unwrap();
        let tokens = UserTokens {
            access_token: "acc2".into(),
            refresh_token: "ref2".into(),
            user_id: "1".into(),
        };
        let input = run_input(&stored, "ev-secret", &tokens, &app);
        assert_eq!(input["event_token"], "ev-secret");
        assert_eq!(input["auth"]["access_token"], "acc2");
        assert_eq!(input["auth"]["application_token"], "app");
        assert_eq!(input["properties"], form["properties"]);
    }
}
