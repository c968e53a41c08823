//! `bitrix24.update`: crm.contact.update, crm.deal.update, ... packed up to 50 per `batch`, with
//! each command's error (`result_error`) mapped back to its record.
//!
//! Setting fields to values is idempotent, so an update whose outcome is unknown (timeout, 5xx,
//! an HTML error page) is repeated until it is confirmed: the records are read back first (crm
//! entities), and only the updates not in place are sent again, a bounded number of times. An
//! update still unconfirmed after that ends the run: its record is not done, and the next run
//! completes it.

use std::sync::Arc;

use async_trait::async_trait;
use indexmap::IndexMap;
use minijinja::value::Value;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use super::client::{B24Error, Client, Kind, SYSTEM};
use crate::config::{BuildCtx, ConnectionRef, component::SinkConfig};
use crate::expr::Template;
use crate::runtime::{Batching, Fatal, Item, RunCtx, Sink, Write, Written};

/// Update a Bitrix24 record per record (also as an `on_success` / `on_error` hook).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateConfig {
    /// Name of a `bitrix24` connection.
    pub connection: ConnectionRef,
    /// The update method.
    #[schemars(example = &"crm.contact.update")]
    pub method: String,
    /// ID of the record to update (a template).
    #[schemars(example = &"{{ source.ID }}")]
    pub record_id: Template,
    /// Fields to set; names and values are templates.
    #[schemars(example = fields_example())]
    pub fields: IndexMap<String, Template>,
    /// Extra parameters, e.g. `{REGISTER_SONET_EVENT: N}`.
    #[serde(default)]
    pub params: IndexMap<String, Template>,
}

fn fields_example() -> Json {
    json!({"{{ settings.status_field }}": "{{ 'Успешно' if outcome == 'ok' else error }}"})
}

impl SinkConfig for UpdateConfig {
    fn build(self, ctx: &BuildCtx) -> Result<Arc<dyn Sink>, String> {
        let client = ctx.connection::<Client>(&self.connection)?;
        let (roots, steps) = crate::expr::template::current_scope();
        let roots: Vec<&str> = roots.iter().map(String::as_str).collect();
        let mut fields = Vec::new();
        for (name, value) in self.fields {
            let key = Template::compile(&name, &roots, &steps)
                .map_err(|e| format!("field name `{name}`: {}", e[0].message))?;
            fields.push((key, value));
        }
        Ok(Arc::new(UpdateSink {
            method: self.method,
            record_id: self.record_id,
            fields,
            params: self.params,
            client,
        }))
    }
}

/// Commands a Bitrix24 `batch` takes.
const BATCH_COMMANDS: usize = 50;

struct UpdateSink {
    method: String,
    record_id: Template,
    fields: Vec<(Template, Template)>,
    params: IndexMap<String, Template>,
    client: Arc<Client>,
}

impl UpdateSink {
    /// crm.contact.update -> crm.contact.list, to read records back.
    fn list_method(&self) -> Option<String> {
        let entity = self.method.strip_prefix("crm.")?.strip_suffix(".update")?;
        (!entity.contains('.')).then(|| format!("crm.{entity}.list"))
    }

    async fn send(&self, writes: &[&Write]) -> Result<Vec<Result<Json, String>>, B24Error> {
        let commands: Vec<(String, String, Json)> = writes
            .iter()
            .enumerate()
            .map(|(i, w)| {
                (
                    format!("u{i}"),
                    self.method.clone(),
                    w.payload.as_ref().clone(),
                )
            })
            .collect();
        let result = self.client.batch(&commands, false, Kind::Write).await?;
        Ok((0..writes.len())
            .map(|i| {
                let key = format!("u{i}");
                match (result.errors.get(&key), result.results.get(&key)) {
                    (Some((code, desc)), _) => Err(if code.is_empty() {
                        desc.clone()
                    } else {
                        format!("{desc} ({code})")
                    }),
                    (None, Some(v)) if v != &Json::Bool(false) => Ok(v.clone()),
                    _ => Err(format!("{} answered no result", self.method)),
                }
            })
            .collect())
    }

    /// After an unknown outcome: which of these updates are already in place?
    async fn applied(&self, writes: &[&Write]) -> Result<Vec<bool>, B24Error> {
        let Some(list) = self.list_method() else {
            return Ok(vec![false; writes.len()]);
        };
        let ids: Vec<Json> = writes.iter().map(|w| w.payload["id"].clone()).collect();
        let mut select = vec![Json::from("ID")];
        for w in writes {
            if let Some(fields) = w.payload["fields"].as_object() {
                select.extend(fields.keys().map(|k| Json::from(k.as_str())));
            }
        }
        let body = self
            .client
            .call(
                &list,
                &json!({"filter": {"@ID": ids}, "select": select, "start": -1}),
                Kind::Read,
            )
            .await?;
        let rows = body["result"].as_array().cloned().unwrap_or_default();
        Ok(writes
            .iter()
            .map(|w| {
                let id = text(&w.payload["id"]);
                let row = rows.iter().find(|r| text(&r["ID"]) == id);
                let fields = w.payload["fields"].as_object();
                matches!((row, fields), (Some(row), Some(f)) if f.iter().all(|(k, v)| text(&row[k.as_str()]) == text(v)))
            })
            .collect())
    }
}

fn text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Null => String::new(),
        other => other.to_string(),
    }
}

#[async_trait]
impl Sink for UpdateSink {
    fn prepare(&self, _item: &Item, scope: &Value) -> Result<Option<Write>, String> {
        let id = self.record_id.render(scope)?;
        if id.trim().is_empty() {
            return Err(format!("{}: the record ID is empty", self.method));
        }
        let mut fields = Map::new();
        for (k, v) in &self.fields {
            fields.insert(k.render(scope)?, v.eval(scope)?);
        }
        let mut payload = json!({"id": id, "fields": fields});
        for (k, t) in &self.params {
            payload["params"][k] = t.eval(scope)?;
        }
        Ok(Some(Write {
            index: 0,
            key: id,
            payload: Arc::new(payload),
        }))
    }

    async fn write(
        &self,
        writes: &[Write],
        ctx: &RunCtx,
    ) -> Result<Vec<Result<Json, String>>, Fatal> {
        self.write_confirmed(writes, ctx).await.into_result()
    }

    /// Batch by batch; the batches confirmed before Bitrix24 goes away stay confirmed.
    async fn write_confirmed(&self, writes: &[Write], _: &RunCtx) -> Written {
        let mut out = Vec::with_capacity(writes.len());
        for chunk in writes.chunks(BATCH_COMMANDS) {
            let chunk: Vec<&Write> = chunk.iter().collect();
            let results = match self.send(&chunk).await {
                Ok(results) => results,
                Err(B24Error::Unknown(why)) => match self.confirm(&chunk, why).await {
                    Ok(results) => results,
                    Err(fatal) => return Written::until(out, fatal),
                },
                Err(B24Error::Rejected(r)) => {
                    let reason = format!("{} ({})", r.description, r.code);
                    chunk.iter().map(|_| Err(reason.clone())).collect()
                }
                Err(e @ B24Error::Unavailable(_)) => return Written::until(out, e.fatal(SYSTEM)),
            };
            out.extend(results);
        }
        Written {
            results: out,
            stopped: None,
        }
    }

    /// As a hook, 50 updates to a batch (Bitrix24's limit of commands), sent while the run goes
    /// on. Every update of one method on one connection is the same call, whichever hook made
    /// it, so `on_success` and `on_error` fill the same batches.
    fn batching(&self) -> Option<Batching> {
        Some(Batching {
            group: format!(
                "bitrix24.update {:p} {}",
                Arc::as_ptr(&self.client),
                self.method
            ),
            size: BATCH_COMMANDS,
        })
    }

    fn describe(&self, w: &Write) -> String {
        format!(
            "{} id={} fields={}",
            self.method, w.key, w.payload["fields"]
        )
    }
}

/// How many times updates whose outcome is unknown are checked (and sent again) before the run
/// ends with them unconfirmed.
const CONFIRM_ATTEMPTS: u32 = 6;

impl UpdateSink {
    /// The batch may or may not have run. Setting values is idempotent: read back what can be
    /// read back, send again what is not in place, until every update is confirmed (applied, or
    /// answered) or the attempts run out; then Bitrix24 counts as unavailable and the run ends
    /// with those records not done.
    async fn confirm(
        &self,
        chunk: &[&Write],
        mut why: String,
    ) -> Result<Vec<Result<Json, String>>, Fatal> {
        let mut answers: Vec<Option<Result<Json, String>>> = vec![None; chunk.len()];
        for attempt in 1..=CONFIRM_ATTEMPTS {
            if attempt > 1 {
                // 0.4 s, doubling up to 3.2 s: about 9 s in all before the run gives up.
                let wait = std::time::Duration::from_millis(200 << (attempt - 1).min(4));
                tokio::time::sleep(wait).await;
            }
            tracing::warn!(method = %self.method, attempt, "update outcome unknown ({}); checking, then repeating what is not in place", crate::secrets::redact(&why));
            let open: Vec<usize> = (0..chunk.len()).filter(|&i| answers[i].is_none()).collect();
            let open_writes: Vec<&Write> = open.iter().map(|&i| chunk[i]).collect();
            let applied = self
                .applied(&open_writes)
                .await
                .map_err(|e| e.fatal(SYSTEM))?;
            let mut missing = Vec::new();
            for (&i, applied) in open.iter().zip(applied) {
                if applied {
                    answers[i] = Some(Ok(Json::Bool(true)));
                } else {
                    missing.push(i);
                }
            }
            if missing.is_empty() {
                break;
            }
            let resend: Vec<&Write> = missing.iter().map(|&i| chunk[i]).collect();
            match self.send(&resend).await {
                Ok(results) => {
                    for (&i, result) in missing.iter().zip(results) {
                        answers[i] = Some(result);
                    }
                    break;
                }
                Err(B24Error::Unknown(m)) => why = m,
                Err(B24Error::Rejected(r)) => {
                    for &i in &missing {
                        answers[i] = Some(Err(r.to_string()));
                    }
                    break;
                }
                Err(e @ B24Error::Unavailable(_)) => return Err(e.fatal(SYSTEM)),
            }
        }
        let unconfirmed: Vec<&str> = chunk
            .iter()
            .zip(&answers)
            .filter(|(_, a)| a.is_none())
            .map(|(w, _)| w.key.as_str())
            .collect();
        if !unconfirmed.is_empty() {
            return Err(Fatal::unavailable(
                SYSTEM,
                format!(
                    "{}: the outcome of the updates of {} is still unknown after {CONFIRM_ATTEMPTS} checks ({why}); the next run completes them",
                    self.method,
                    unconfirmed.join(", ")
                ),
            ));
        }
        Ok(answers.into_iter().flatten().collect())
    }
}
