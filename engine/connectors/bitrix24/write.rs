//! `bitrix24.write`: one call per record that changes the portal (crm.activity.add,
//! crm.deal.update, crm.activity.delete, ...), with its result in `steps.<id>` for the steps
//! after it. Not batched and not cached: each call has side effects and its own answer.
//!
//! A write whose outcome is unknown (a timeout or a 5xx after it was sent) may have happened, so
//! it is never simply repeated. With `idempotency.lookup` the object is looked for (an activity
//! by its ORIGIN_ID, an invoice by its XML_ID): found, it is the result; not found, the write is
//! made again. A run that is itself a re-attempt (`run.attempt` > 1) looks before its first write
//! too. Without a lookup the record fails, saying that the outcome is unknown.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value as Json;

use super::client::{B24Error, B24Rejection, Client, Kind, SYSTEM};
use super::guard::{ErrorTemplate, Guard, description};
use crate::config::{BuildCtx, ConnectionRef, component::StepConfig};
use crate::expr::tree::{TemplateIn, TemplateTree, WithRefusal, eval_params};
use crate::expr::{JsonPath, Template};
use crate::runtime::{Fatal, Item, RunCtx, Step};

/// Make one Bitrix24 call per record that changes something (add, update, delete); the result
/// is `steps.<id>`. A refusal fails the record with the portal's description.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteConfig {
    /// Name of a `bitrix24` connection.
    pub connection: ConnectionRef,
    /// The method.
    #[schemars(example = &"crm.deal.update")]
    pub method: String,
    /// Parameters, as templates over the record, nested as the method needs
    /// (`fields: {...}`). Parameters that come out null are not sent, so nothing is cleared by
    /// accident.
    #[schemars(example = params_example())]
    pub params: IndexMap<String, TemplateTree>,
    /// Keep only this part of the result (a JSON path; default: the whole result).
    #[serde(default)]
    pub result: Option<JsonPath>,
    /// Make the call only when this holds (a template test); otherwise `steps.<id>` is null.
    #[serde(default)]
    #[schemars(example = &"{{ record.fields | length > 0 }}")]
    pub when: Option<Template>,
    /// A refusal by the portal gives null instead of failing the record (an unknown outcome
    /// still fails it).
    #[serde(default)]
    pub optional: bool,
    /// The reason a refused record fails with (a template; `error` is the portal's
    /// description). Default: the description itself («Deal is not found»).
    #[serde(default)]
    #[schemars(example = &"Сделка не изменена: {{ error }}")]
    pub error: Option<TemplateIn<WithRefusal>>,
    /// How to find the object after an outcome that is unknown, instead of writing it twice.
    #[serde(default)]
    pub idempotency: Option<Idempotency>,
}

fn params_example() -> Json {
    serde_json::json!({"id": "{{ record.id }}", "fields": "{{ record.fields }}"})
}

/// How a write that may already have happened is recognised.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Idempotency {
    /// A read that finds the object the write makes; what it finds is the write's result.
    pub lookup: IdempotencyLookup,
}

/// A read that finds what the write made (a non-empty result = found).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdempotencyLookup {
    /// The method.
    #[schemars(example = &"crm.activity.list")]
    pub method: String,
    /// Parameters, as templates over the record.
    #[schemars(example = lookup_params_example())]
    pub params: IndexMap<String, TemplateTree>,
    /// The part of the answer that is the write's result (a JSON path, e.g. `$[0].ID`); none
    /// there means "not found".
    #[serde(default)]
    pub result: Option<JsonPath>,
}

fn lookup_params_example() -> Json {
    serde_json::json!({"filter": {"ORIGIN_ID": "b24etl:{{ source.event_key }}"}, "select": ["ID"]})
}

impl StepConfig for WriteConfig {
    fn build(mut self, ctx: &BuildCtx) -> Result<Arc<dyn Step>, String> {
        let client = ctx.connection::<Client>(&self.connection)?;
        let guard = Guard {
            method: self.method.clone(),
            when: self.when.take(),
            optional: self.optional,
            error: self.error.take().map(ErrorTemplate::Refusal),
        };
        Ok(Arc::new(WriteStep {
            label: match &ctx.id {
                Some(id) => format!("{id} (bitrix24.write)"),
                None => "bitrix24.write".into(),
            },
            id: ctx.id.clone(),
            cfg: self,
            guard,
            client,
        }))
    }
}

struct WriteStep {
    cfg: WriteConfig,
    guard: Guard,
    client: Arc<Client>,
    id: Option<String>,
    /// How dry-run lines name the step.
    label: String,
}

/// How a write ended when it did not give a result.
enum Failure {
    /// The portal refused it: the record fails (or gets null, when optional).
    Refused(B24Rejection),
    /// It may or may not have happened, and nothing can tell: the record fails.
    Unknown(String),
    /// The portal cannot be used: the run ends.
    Fatal(Fatal),
}

/// Writes made again after an unknown outcome whose lookup found nothing, before the run gives
/// up with Bitrix24 counted as unavailable.
const WRITE_ATTEMPTS: u32 = 3;

/// The run's attempt number (`run.attempt`, 1 when the runner does not say).
fn attempt(run: &minijinja::value::Value) -> i64 {
    run.get_attr("attempt")
        .ok()
        .and_then(|v| i64::try_from(v).ok())
        .unwrap_or(1)
}

impl WriteStep {
    fn set(&self, item: &mut Item, value: Json) {
        if let Some(id) = &self.id {
            item.record.set_step_output(id, value);
        }
    }

    /// What one record's write gives it: its result, or why it failed (`Err(Fatal)`: the run ends).
    async fn write_one(&self, item: &mut Item, ctx: &RunCtx) -> Result<(), Fatal> {
        let scope = ctx.scope(item);
        let planned = self.guard.wanted(&scope).and_then(|wanted| {
            let method = &self.cfg.method;
            if !wanted {
                return Ok(None);
            }
            let params =
                eval_params(&self.cfg.params, &scope).map_err(|e| format!("{method} {e}"))?;
            let lookup = match &self.cfg.idempotency {
                Some(i) => Some(
                    eval_params(&i.lookup.params, &scope)
                        .map_err(|e| format!("{} {e}", i.lookup.method))?,
                ),
                None => None,
            };
            Ok(Some((params, lookup)))
        });
        let (params, lookup) = match planned {
            Ok(Some(call)) => call,
            Ok(None) => {
                self.set(item, Json::Null);
                return Ok(());
            }
            Err(e) => {
                item.fail(e);
                return Ok(());
            }
        };
        if ctx.dry_run {
            println!(
                "[dry-run] {}: {} {}",
                self.label,
                self.cfg.method,
                crate::secrets::redact(&params.to_string())
            );
            self.set(item, Json::Null);
            return Ok(());
        }
        match self
            .perform(&params, lookup.as_ref(), attempt(&ctx.run_value) > 1)
            .await
        {
            Ok(result) => self.set(item, result),
            Err(Failure::Refused(r)) => {
                match self.guard.refused(&scope, None, &r, || description(&r)) {
                    Ok(v) => self.set(item, v),
                    Err(reason) => item.fail(reason),
                }
            }
            Err(Failure::Unknown(why)) => item.fail(format!(
                "{}: the outcome is unknown ({why}); it was not repeated, as it may have happened",
                self.cfg.method
            )),
            Err(Failure::Fatal(f)) => return Err(f),
        }
        Ok(())
    }

    /// The write, made so that it happens once: looked up first on a re-attempted run, looked up
    /// after an unknown outcome, made again only when the lookup finds nothing.
    async fn perform(
        &self,
        params: &Json,
        lookup: Option<&Json>,
        retried: bool,
    ) -> Result<Json, Failure> {
        if retried
            && let Some(lookup) = lookup
            && let Some(found) = self.look_up(lookup).await?
        {
            return Ok(found);
        }
        let method = &self.cfg.method;
        let mut why = String::new();
        for attempt in 1..=WRITE_ATTEMPTS {
            match self.client.call(method, params, Kind::Write).await {
                Ok(body) => return self.kept(&body["result"]),
                Err(B24Error::Rejected(r)) => return Err(Failure::Refused(r)),
                Err(e @ B24Error::Unavailable(_)) => return Err(Failure::Fatal(e.fatal(SYSTEM))),
                Err(B24Error::Unknown(m)) => {
                    let Some(lookup) = lookup else {
                        return Err(Failure::Unknown(crate::secrets::redact(&m)));
                    };
                    tracing::warn!(method = %method, attempt, "write outcome unknown ({}); looking it up before writing again", crate::secrets::redact(&m));
                    // A write that committed late is found by waiting a little before looking.
                    tokio::time::sleep(Duration::from_millis(300 << attempt.min(4))).await;
                    if let Some(found) = self.look_up(lookup).await? {
                        return Ok(found);
                    }
                    why = m;
                }
            }
        }
        Err(Failure::Fatal(Fatal::unavailable(
            SYSTEM,
            format!(
                "{method}: the outcome is still unknown after {WRITE_ATTEMPTS} attempts, each looked up and not found ({why})"
            ),
        )))
    }

    /// The part of the write's result kept; `false` is Bitrix24 declining without a reason.
    fn kept(&self, result: &Json) -> Result<Json, Failure> {
        if result == &Json::Bool(false) {
            return Err(Failure::Refused(B24Rejection {
                code: String::new(),
                description: format!("{} answered false", self.cfg.method),
            }));
        }
        Ok(match &self.cfg.result {
            Some(path) => path.first(result).cloned().unwrap_or(Json::Null),
            None => result.clone(),
        })
    }

    /// What the lookup finds, if anything. It is a read: retried by the client; a refusal means
    /// nothing can tell whether the write happened.
    async fn look_up(&self, params: &Json) -> Result<Option<Json>, Failure> {
        let lookup = &self.cfg.idempotency.as_ref().expect("a lookup").lookup;
        let body = match self.client.call(&lookup.method, params, Kind::Read).await {
            Ok(body) => body,
            Err(B24Error::Rejected(r)) => {
                return Err(Failure::Unknown(format!(
                    "the lookup {} was refused: {r}",
                    lookup.method
                )));
            }
            Err(e) => return Err(Failure::Fatal(e.fatal(SYSTEM))),
        };
        Ok(found(&body["result"], lookup.result.as_ref()))
    }
}

/// A lookup's answer as the write's result: the part `path` names, when it is not empty.
fn found(result: &Json, path: Option<&JsonPath>) -> Option<Json> {
    let value = match path {
        Some(path) => path.first(result)?,
        None => result,
    };
    let empty = match value {
        Json::Null => true,
        Json::Array(a) => a.is_empty(),
        Json::Object(m) => m.is_empty(),
        Json::String(s) => s.trim().is_empty(),
        _ => false,
    };
    (!empty).then(|| value.clone())
}

#[async_trait]
impl Step for WriteStep {
    async fn process(&self, items: &mut [Item], ctx: &RunCtx) -> Result<(), Fatal> {
        // One after the other: each write is its own call, and the order of side effects is the
        // order of the records.
        for item in items.iter_mut().filter(|i| i.pending()) {
            self.write_one(item, ctx).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn path(p: &str) -> JsonPath {
        serde_json::from_value(json!(p)).unwrap()
    }

    #[test]
    fn a_lookup_finds_only_what_is_there() {
        let rows = json!([{"ID": "12"}]);
        assert_eq!(found(&rows, Some(&path("$[0].ID"))), Some(json!("12")));
        assert_eq!(found(&json!([]), Some(&path("$[0].ID"))), None);
        assert_eq!(found(&json!([]), None), None);
        assert_eq!(found(&rows, None), Some(rows.clone()));
        assert_eq!(found(&json!({"items": []}), Some(&path("$.items"))), None);
    }

    #[test]
    fn the_attempt_comes_from_the_run_scope_and_is_1_when_absent() {
        use minijinja::{Value, context};
        assert_eq!(attempt(&context! { name => "x" }), 1);
        assert_eq!(attempt(&context! { attempt => 3 }), 3);
        assert_eq!(attempt(&Value::from(())), 1);
    }
}
