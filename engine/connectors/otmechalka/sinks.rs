//! `otmechalka.client` (upsert by origin id) and `otmechalka.ticket` (create if absent).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use minijinja::value::Value;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value as Json;

use super::client::{Found, Otmechalka};
use crate::config::component::SinkConfig;
use crate::config::{BuildCtx, ConnectionRef};
use crate::connectors::http::client::HttpError;
use crate::expr::Template;
use crate::runtime::{Fatal, Item, RunCtx, Sink, Write, Written};

/// Create or update an otmechalka client (GET by `origin_id`, then POST to create or update).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientSinkConfig {
    /// Name of an `otmechalka` connection.
    pub connection: ConnectionRef,
    /// The client to send (default: the record after the steps); it must have `origin_id`.
    #[serde(default)]
    pub value: Option<Template>,
}

/// Create an otmechalka ticket (абонемент) unless one with its `origin_id` exists already.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TicketSinkConfig {
    /// Name of an `otmechalka` connection.
    pub connection: ConnectionRef,
    /// The ticket to send (default: the record after the steps); it must have `origin_id`.
    #[serde(default)]
    pub value: Option<Template>,
}

#[derive(Clone, Copy, PartialEq)]
enum Entity {
    Client,
    Ticket,
}

impl Entity {
    fn path(self) -> &'static str {
        match self {
            Entity::Client => "clients",
            Entity::Ticket => "tickets",
        }
    }
}

impl SinkConfig for ClientSinkConfig {
    fn build(self, ctx: &BuildCtx) -> Result<Arc<dyn Sink>, String> {
        Ok(Arc::new(OtmSink {
            api: ctx.connection::<Otmechalka>(&self.connection)?,
            value: self.value,
            entity: Entity::Client,
        }))
    }
}

impl SinkConfig for TicketSinkConfig {
    fn build(self, ctx: &BuildCtx) -> Result<Arc<dyn Sink>, String> {
        Ok(Arc::new(OtmSink {
            api: ctx.connection::<Otmechalka>(&self.connection)?,
            value: self.value,
            entity: Entity::Ticket,
        }))
    }
}

struct OtmSink {
    api: Arc<Otmechalka>,
    value: Option<Template>,
    entity: Entity,
}

/// A per-record answer, or the end of the run.
type Outcome = Result<Result<Json, String>, Fatal>;

/// A refusal fails the record with otmechalka's message; anything else ends the run.
fn rejected(e: HttpError) -> Outcome {
    match e {
        HttpError::Rejected(r) => Ok(Err(r.message)),
        other => Err(other.fatal("otmechalka")),
    }
}

impl OtmSink {
    async fn upsert_client(&self, origin: &str, body: &Json, ctx: &RunCtx) -> Outcome {
        match self.api.find("clients", origin).await {
            Ok(Found::Yes(_)) => self.update_client(origin, body, ctx).await,
            Ok(Found::No) => self.create(origin, body, ctx).await,
            Err(e) => rejected(e),
        }
    }

    /// Updates are idempotent: resending after an unknown outcome is safe.
    async fn update_client(&self, origin: &str, body: &Json, ctx: &RunCtx) -> Outcome {
        let path = format!(
            "/api/clients/{}/",
            percent_encoding::utf8_percent_encode(origin, percent_encoding::NON_ALPHANUMERIC)
        );
        let mut last = None;
        for attempt in 0..3u32 {
            match self.api.post(&path, body).await {
                Ok(v) => {
                    ctx.count("clients_updated", 1);
                    return Ok(Ok(v));
                }
                Err(HttpError::Unavailable(m) | HttpError::Unknown(m)) => {
                    last = Some(m);
                    tokio::time::sleep(Duration::from_millis(300 << attempt)).await;
                }
                Err(e) => return rejected(e),
            }
        }
        Err(Fatal::unavailable("otmechalka", last.unwrap_or_default()))
    }

    /// A create that may or may not have happened is looked up before it is sent again.
    async fn create(&self, origin: &str, body: &Json, ctx: &RunCtx) -> Outcome {
        let path = format!("/api/{}/", self.entity.path());
        let counter = match self.entity {
            Entity::Client => "clients_created",
            Entity::Ticket => "tickets_created",
        };
        for _ in 0..3 {
            match self.api.post(&path, body).await {
                Ok(v) => {
                    ctx.count(counter, 1);
                    return Ok(Ok(v));
                }
                // Someone (an earlier, interrupted run) created it: fall back to the existing one.
                Err(HttpError::Rejected(r)) if r.status == 409 => {
                    return self.existing(origin, body, ctx).await;
                }
                Err(HttpError::Unavailable(m) | HttpError::Unknown(m)) => {
                    tracing::warn!(
                        "otmechalka create of {origin} ended without an answer ({m}); checking before retrying"
                    );
                    match self.api.find(self.entity.path(), origin).await {
                        Ok(Found::Yes(v)) => {
                            ctx.count(counter, 1);
                            return match self.entity {
                                Entity::Client => self.update_client(origin, body, ctx).await,
                                Entity::Ticket => Ok(Ok(v)),
                            };
                        }
                        Ok(Found::No) => continue,
                        Err(e) => return rejected(e),
                    }
                }
                Err(e) => return rejected(e),
            }
        }
        Err(Fatal::unavailable(
            "otmechalka",
            format!("creating {origin} keeps failing without an answer"),
        ))
    }

    async fn existing(&self, origin: &str, body: &Json, ctx: &RunCtx) -> Outcome {
        match self.entity {
            Entity::Client => self.update_client(origin, body, ctx).await,
            Entity::Ticket => {
                ctx.count("tickets_existing", 1);
                Ok(Ok(Json::Null))
            }
        }
    }

    /// One record's look-up and write.
    async fn one(&self, w: &Write, ctx: &RunCtx) -> Outcome {
        match self.entity {
            Entity::Client => self.upsert_client(&w.key, &w.payload, ctx).await,
            Entity::Ticket => self.ticket(&w.key, &w.payload, ctx).await,
        }
    }

    async fn ticket(&self, origin: &str, body: &Json, ctx: &RunCtx) -> Outcome {
        match self.api.find("tickets", origin).await {
            // An existing ticket is left alone (seed 001, DEAL_SYNC_JOB step 10).
            Ok(Found::Yes(v)) => {
                ctx.count("tickets_existing", 1);
                Ok(Ok(v))
            }
            Ok(Found::No) => self.create(origin, body, ctx).await,
            Err(e) => rejected(e),
        }
    }
}

#[async_trait]
impl Sink for OtmSink {
    fn prepare(&self, item: &Item, scope: &Value) -> Result<Option<Write>, String> {
        let payload = match &self.value {
            Some(t) => Arc::new(t.eval(scope)?),
            None => item.record.data.clone(),
        };
        let origin = match &payload["origin_id"] {
            Json::String(s) if !s.is_empty() => s.clone(),
            Json::Number(n) => n.to_string(),
            _ => return Err("field origin_id is required".into()),
        };
        Ok(Some(Write {
            index: 0,
            key: origin,
            payload,
        }))
    }

    async fn write(
        &self,
        writes: &[Write],
        ctx: &RunCtx,
    ) -> Result<Vec<Result<Json, String>>, Fatal> {
        self.write_confirmed(writes, ctx).await.into_result()
    }

    /// Records side by side (`concurrency` of the connection), each one's look-up and write in
    /// order; answers in write order. The first fatal answer ends the run: what was confirmed
    /// before it stays confirmed (and is not sent again by the next run); records still in
    /// flight are not done, and the next run looks them up again before writing.
    async fn write_confirmed(&self, writes: &[Write], ctx: &RunCtx) -> Written {
        use futures::FutureExt as _;
        use futures::stream::{self, StreamExt};
        // Collected first: a closure in the stream would need a lifetime `async_trait` cannot name.
        let records: Vec<futures::future::BoxFuture<'_, Outcome>> =
            writes.iter().map(|w| self.one(w, ctx).boxed()).collect();
        let mut answers = stream::iter(records).buffered(self.api.concurrency());
        let mut out = Vec::with_capacity(writes.len());
        while let Some(answer) = answers.next().await {
            match answer {
                Ok(r) => out.push(r),
                Err(fatal) => return Written::until(out, fatal),
            }
        }
        Written {
            results: out,
            stopped: None,
        }
    }

    fn describe(&self, w: &Write) -> String {
        match self.entity {
            Entity::Client => format!("upsert client {}: {}", w.key, w.payload),
            Entity::Ticket => format!("create ticket {} unless it exists: {}", w.key, w.payload),
        }
    }
}
