//! `bitrix24.bp_activity`: the source of a business-process action pipeline. It declares the
//! action ([`Declaration`]), reads the one request the run answers (`ctx.input`, handed in by
//! `etl serve` or `etl run --request`), hands the request's user tokens to the connection so
//! every call runs as that user, and renders the reply once the record is done, whatever its
//! outcome. Delivering the reply is the caller's ([`super::reply`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use super::declare::{Declaration, Replies, Reply};
use super::request::{BpRequest, UserTokens};
use crate::config::{BuildCtx, ConnectionRef, component::SourceConfig};
use crate::connectors::bitrix24::client::Client;
use crate::runtime::{Fatal, Item, Outcome, Record, RunCtx, Source};
use crate::secrets;

/// One business-process request, answered with `bizproc.event.send`. The record's `source` is
/// the request without its tokens: `code`, `workflow_id`, `document_id`, `document` (`{entity,
/// id}`), `properties`, `use_subscription`, `user_id`, `event_key`...
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivityConfig {
    /// A `bitrix24.app` connection: its calls run as the request's user.
    pub connection: ConnectionRef,
    #[serde(flatten)]
    pub action: Declaration,
    /// What the workflow is answered.
    #[serde(default)]
    pub reply: Replies,
}

impl SourceConfig for ActivityConfig {
    fn build(self, ctx: &BuildCtx) -> Result<Box<dyn Source>, String> {
        self.action.check()?;
        let client = ctx.connection::<Client>(&self.connection)?;
        if client.app().is_none() {
            return Err(format!(
                "connection `{}` is an incoming webhook; business-process actions answer as an application: use `type: bitrix24.app`",
                self.connection.name
            ));
        }
        Ok(Box::new(ActivitySource {
            action: Arc::new(self.action),
            reply: self.reply,
            client,
            request: None,
            delivered: false,
        }))
    }
}

struct ActivitySource {
    action: Arc<Declaration>,
    reply: Replies,
    client: Arc<Client>,
    request: Option<BpRequest>,
    /// The record has been handed out.
    delivered: bool,
}

/// The reason a required input is missing, in the words of the seed.
fn missing_reason(name: &str) -> String {
    format!("Не заполнен обязательный параметр: {name}")
}

impl ActivitySource {
    fn record(&self, request: &BpRequest) -> Record {
        let mut record = Record::new(request.event_key(), request.record());
        record.rejected = self
            .action
            .missing_input(&request.properties)
            .map(|name| missing_reason(&name));
        record
    }

    /// The answer for an item: its outcome's reply rendered over its scope.
    fn answer(&self, ctx: &RunCtx, item: &Item, request: &BpRequest) -> Json {
        let failed = matches!(item.outcome, Outcome::Failed(_));
        let reply = if failed {
            &self.reply.failed
        } else {
            &self.reply.ok
        };
        let scope = ctx.scope(item);
        let default_log = item.outcome.reason().filter(|_| failed).unwrap_or("OK");
        let (return_values, log_message, outcome) = match render(reply, &scope, default_log) {
            Ok((values, log)) => (values, log, item.outcome.name()),
            Err(e) => (
                Map::new(),
                format!("the reply could not be rendered: {e}"),
                "failed",
            ),
        };
        json!({
            "code": request.code,
            "event_key": request.event_key(),
            "workflow_id": request.workflow_id,
            "document_id": request.document_id,
            "use_subscription": request.use_subscription,
            "outcome": outcome,
            "error": item.outcome.reason().filter(|_| failed),
            "return_values": return_values,
            "log_message": secrets::redact(&log_message),
        })
    }
}

/// Return values and the log line of one reply.
fn render(
    reply: &Reply,
    scope: &minijinja::value::Value,
    default_log: &str,
) -> Result<(Map<String, Json>, String), String> {
    let mut values = Map::new();
    for (key, template) in &reply.return_values {
        let value = template.0.eval(scope)?;
        let value = match value {
            Json::String(s) => Json::String(secrets::redact(&s)),
            other => other,
        };
        values.insert(key.clone(), value);
    }
    let log = match &reply.log_message {
        Some(t) => t.0.render(scope)?,
        None => default_log.to_string(),
    };
    Ok((values, log))
}

#[async_trait]
impl Source for ActivitySource {
    async fn open(&mut self, ctx: &RunCtx, _cursor: Option<Json>) -> Result<(), Fatal> {
        let Some(input) = ctx.input.as_deref() else {
            return Err(Fatal::other(format!(
                "pipeline `{}` answers business-process requests ({}): run it with `etl run --request FILE` or through `etl serve`",
                ctx.pipeline, self.action.code
            )));
        };
        let request = BpRequest::from_form(input)
            .map_err(|r| Fatal::other(format!("the request cannot be read: {}", r.reason)))?;
        for (key, property) in &self.action.properties {
            if property.secret {
                register_secret(request.properties.get(key));
            }
        }
        self.client.use_tokens(request.tokens.clone());
        self.request = Some(request);
        Ok(())
    }

    async fn next_batch(&mut self, _ctx: &RunCtx) -> Result<Option<Vec<Record>>, Fatal> {
        if self.delivered {
            return Ok(None);
        }
        self.delivered = true;
        Ok(self.request.as_ref().map(|r| vec![self.record(r)]))
    }

    fn settle(&mut self, ctx: &RunCtx, done: Result<&[Item], &Fatal>) {
        let Some(request) = &self.request else {
            return;
        };
        if let Some(now) = self.client.tokens().filter(|t| {
            t.refresh_token != request.tokens.refresh_token
                || t.access_token != request.tokens.access_token
        }) {
            renewed_tokens(|renewed| renewed.insert(request.event_key(), now));
        }
        let mut answer = ctx.answer.lock().unwrap_or_else(|e| e.into_inner());
        match done {
            Ok(items) => {
                if let Some(item) = items.first() {
                    *answer = Some(self.answer(ctx, item, request));
                }
            }
            // The run ended before the record did: answer the failure, unless it was answered.
            Err(fatal) if answer.is_none() => {
                let mut item = Item::new(Record::new(request.event_key(), request.record()));
                item.fail(fatal.to_string());
                *answer = Some(self.answer(ctx, &item, request));
            }
            Err(_) => {}
        }
    }
}

/// Tokens renewed during runs, by event key, until the caller takes them.
fn renewed_tokens<T>(f: impl FnOnce(&mut HashMap<String, UserTokens>) -> T) -> T {
    static RENEWED: Mutex<Option<HashMap<String, UserTokens>>> = Mutex::new(None);
    let mut map = RENEWED.lock().unwrap_or_else(|e| e.into_inner());
    f(map.get_or_insert_with(HashMap::new))
}

/// The tokens a run for the request `event_key` renewed (the request's refresh token is spent
/// then), taken once: `etl serve` keeps them for the next attempt and the reply.
pub fn take_renewed_tokens(event_key: &str) -> Option<UserTokens> {
    renewed_tokens(|renewed| renewed.remove(event_key))
}

fn register_secret(value: Option<&Json>) {
    match value {
        Some(Json::String(s)) => secrets::register(s),
        Some(Json::Array(values)) => values.iter().for_each(|v| register_secret(Some(v))),
        _ => {}
    }
}
