//! `bitrix24.call`: a per-record lookup (crm.deal.productrows.get, user.get, ...). Calls from
//! many records are packed 50 to a `batch`; identical calls are answered from a per-run cache,
//! so each ASSIGNED_BY_ID's user is fetched once. A record may make no call (`when:`), or one
//! per element of a list (`for_each:`); a refusal fails the record, or gives null (`optional:`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use indexmap::IndexMap;
use minijinja::value::Value;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value as Json;

use super::client::{B24Error, B24Rejection, Client, Kind, SYSTEM};
use super::guard::{ErrorTemplate, Guard};
use crate::config::{BuildCtx, ConnectionRef, component::StepConfig};
use crate::expr::tree::{TemplateIn, TemplateTree, WithError, WithItem, eval_params, scope_with};
use crate::expr::{JsonPath, Template};
use crate::runtime::{Fatal, Item, RunCtx, Step};

/// Call a Bitrix24 method for each record; the result is `steps.<id>`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CallConfig {
    /// Name of a `bitrix24` connection.
    pub connection: ConnectionRef,
    /// The method.
    #[schemars(example = &"crm.deal.productrows.get")]
    pub method: String,
    /// Parameters, as templates over the record, nested as the method needs (`filter: {...}`);
    /// with `for_each`, `item` is the element. Parameters that come out null are not sent.
    #[schemars(example = params_example())]
    pub params: IndexMap<String, TemplateTree<WithItem>>,
    /// Keep only this part of the result (a JSON path; default: the whole result).
    #[serde(default)]
    pub result: Option<JsonPath>,
    /// Answer repeated identical calls from a per-run cache.
    #[serde(default = "yes")]
    pub cache: bool,
    /// Make the call only when this holds (a template test); otherwise `steps.<id>` is null.
    #[serde(default)]
    #[schemars(example = &"{{ steps.deal.COMPANY_ID | to_number > 0 }}")]
    pub when: Option<Template>,
    /// A refusal by the portal gives null instead of failing the record.
    #[serde(default)]
    pub optional: bool,
    /// The reason a refused record fails with (a template; `error` is the portal's description,
    /// `item` the element with `for_each`).
    #[serde(default)]
    #[schemars(example = &"Сделка {{ record.deal_id }} не найдена: {{ error }}")]
    pub error: Option<TemplateIn<WithError>>,
    /// One call per element of this list (a template); `item` is the element in `params`, and
    /// `steps.<id>` is the list of results in the same order.
    #[serde(default)]
    #[schemars(example = &"{{ record.file_ids }}")]
    pub for_each: Option<Template>,
}

fn yes() -> bool {
    true
}

fn params_example() -> Json {
    serde_json::json!({"id": "{{ source.ID }}"})
}

impl StepConfig for CallConfig {
    fn build(mut self, ctx: &BuildCtx) -> Result<Arc<dyn Step>, String> {
        let client = ctx.connection::<Client>(&self.connection)?;
        let id = ctx
            .id
            .clone()
            .ok_or("a bitrix24.call step needs an `id`: its result is `steps.<id>`")?;
        if self.for_each.is_none()
            && let Some(name) = self
                .params
                .iter()
                .find(|(_, p)| p.uses("item"))
                .map(|(k, _)| k)
        {
            // `item` exists only with `for_each`; elsewhere it would silently be nothing.
            return Err(format!(
                "parameter `{name}` uses `item`, which only a call with `for_each` has"
            ));
        }
        let guard = Guard {
            method: self.method.clone(),
            when: self.when.take(),
            optional: self.optional,
            error: self.error.take().map(ErrorTemplate::Call),
        };
        Ok(Arc::new(CallStep {
            cfg: self,
            guard,
            client,
            id,
            cache: Mutex::new(HashMap::new()),
        }))
    }
}

struct CallStep {
    cfg: CallConfig,
    guard: Guard,
    client: Arc<Client>,
    id: String,
    cache: Mutex<HashMap<String, Json>>,
}

/// The calls one record needs: none (`when:` false), one, or one per element of `for_each`.
enum Wanted {
    One(String),
    Each(Vec<(Json, String)>),
}

pub(super) type Answer = Result<Json, B24Rejection>;

impl CallStep {
    /// The parameters of one call, as the cache key and as sent.
    fn params(&self, scope: &Value) -> Result<(String, Json), String> {
        let params =
            eval_params(&self.cfg.params, scope).map_err(|e| format!("{} {e}", self.cfg.method))?;
        Ok((params.to_string(), params))
    }

    /// What this record needs, adding calls not answered yet to `to_fetch`; `Ok(None)`: no call.
    fn plan(
        &self,
        item: &Item,
        ctx: &RunCtx,
        to_fetch: &mut IndexMap<String, Json>,
    ) -> Result<Option<Wanted>, String> {
        let scope = ctx.scope(item);
        if !self.guard.wanted(&scope)? {
            return Ok(None);
        }
        let mut need = |key: &String, params: Json| {
            if self.cached(key).is_none() {
                to_fetch.entry(key.clone()).or_insert(params);
            }
        };
        let Some(for_each) = &self.cfg.for_each else {
            let (key, params) = self.params(&scope)?;
            need(&key, params);
            return Ok(Some(Wanted::One(key)));
        };
        let elements = match for_each.eval(&scope) {
            Ok(Json::Array(items)) => items,
            Ok(Json::Null) => vec![],
            Ok(other) => {
                return Err(format!(
                    "{} for_each: expected a list, got {other}",
                    self.cfg.method
                ));
            }
            Err(e) => return Err(format!("{} for_each: {e}", self.cfg.method)),
        };
        let mut calls = Vec::with_capacity(elements.len());
        for element in elements {
            let inner = scope_with(
                &scope,
                vec![("item", crate::expr::json_value(&Arc::new(element.clone())))],
            );
            let (key, params) = self.params(&inner)?;
            need(&key, params);
            calls.push((element, key));
        }
        Ok(Some(Wanted::Each(calls)))
    }

    fn cached(&self, key: &str) -> Option<Json> {
        if !self.cfg.cache {
            return None;
        }
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    /// Send the calls, 50 to a batch; each call's answer or refusal by its key.
    async fn fetch(&self, calls: Vec<(String, Json)>) -> Result<HashMap<String, Answer>, Fatal> {
        let (keys, params): (Vec<String>, Vec<Json>) = calls.into_iter().unzip();
        let answered = read_commands(&self.client, &self.cfg.method, params).await?;
        let mut answers = HashMap::new();
        for (key, (answer, _)) in keys.into_iter().zip(answered) {
            if let (Ok(v), true) = (&answer, self.cfg.cache) {
                self.cache
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key.clone(), v.clone());
            }
            answers.insert(key, answer);
        }
        Ok(answers)
    }

    fn answer(&self, key: &str, answers: &HashMap<String, Answer>) -> Answer {
        self.cached(key)
            .map(Ok)
            .or_else(|| answers.get(key).cloned())
            .unwrap_or_else(|| {
                Err(B24Rejection {
                    code: String::new(),
                    description: "no answer".into(),
                })
            })
    }

    /// The part of an answer kept (`result:`), or what a refusal gives the record.
    fn outcome(
        &self,
        item: &Item,
        ctx: &RunCtx,
        element: Option<&Json>,
        answer: Answer,
    ) -> Result<Json, String> {
        match answer {
            Ok(value) => Ok(match &self.cfg.result {
                Some(path) => path.first(&value).cloned().unwrap_or(Json::Null),
                None => value,
            }),
            Err(r) => self.guard.refused(&ctx.scope(item), element, &r, || {
                format!("{}: {r}", self.cfg.method)
            }),
        }
    }

    /// The record's result: one answer, or the list of answers of its elements.
    fn settle(
        &self,
        item: &mut Item,
        ctx: &RunCtx,
        wanted: Wanted,
        answers: &HashMap<String, Answer>,
    ) {
        let result = match wanted {
            Wanted::One(key) => self.outcome(item, ctx, None, self.answer(&key, answers)),
            Wanted::Each(calls) => calls
                .iter()
                .map(|(element, key)| {
                    self.outcome(item, ctx, Some(element), self.answer(key, answers))
                })
                .collect::<Result<Vec<Json>, String>>()
                .map(Json::Array),
        };
        match result {
            Ok(v) => item.record.set_step_output(&self.id, v),
            Err(reason) => item.fail(reason),
        }
    }
}

#[async_trait]
impl Step for CallStep {
    async fn process(&self, items: &mut [Item], ctx: &RunCtx) -> Result<(), Fatal> {
        // Which calls each pending item needs, and the distinct calls not answered yet.
        let mut wanted: Vec<(usize, Wanted)> = Vec::new();
        let mut to_fetch: IndexMap<String, Json> = IndexMap::new();
        for (n, item) in items.iter_mut().enumerate().filter(|(_, i)| i.pending()) {
            match self.plan(item, ctx, &mut to_fetch) {
                Ok(Some(w)) => wanted.push((n, w)),
                Ok(None) => item.record.set_step_output(&self.id, Json::Null),
                Err(e) => item.fail(e),
            }
        }
        let answers = self.fetch(to_fetch.into_iter().collect()).await?;
        for (n, w) in wanted {
            self.settle(&mut items[n], ctx, w, &answers);
        }
        Ok(())
    }
}

/// Read with one `method` command per parameter set, 50 to a batch: each command's answer or
/// refusal, and a list command's `total`, in the order given. A batch the portal refuses as a
/// whole stops the run: nothing was read, and the next run reads it again.
pub(super) async fn read_commands(
    client: &Client,
    method: &str,
    params: Vec<Json>,
) -> Result<Vec<(Answer, Option<u64>)>, Fatal> {
    let mut out = Vec::with_capacity(params.len());
    let mut params = params.into_iter().peekable();
    while params.peek().is_some() {
        let commands: Vec<(String, String, Json)> = params
            .by_ref()
            .take(50)
            .enumerate()
            .map(|(i, p)| (format!("c{i}"), method.to_string(), p))
            .collect();
        let mut result = client
            .batch(&commands, false, Kind::Read)
            .await
            .map_err(|e| match e {
                B24Error::Rejected(_) => {
                    Fatal::unavailable("Bitrix24", format!("{method} refused the batch: {e}"))
                }
                other => other.fatal(SYSTEM),
            })?;
        for (cmd, _, _) in &commands {
            let answer = match (result.results.remove(cmd), result.errors.remove(cmd)) {
                (_, Some((code, description))) => Err(B24Rejection { code, description }),
                (Some(v), None) => Ok(v),
                (None, None) => Err(B24Rejection {
                    code: String::new(),
                    description: "no answer in the batch".into(),
                }),
            };
            out.push((answer, result.totals.get(cmd).copied()));
        }
    }
    Ok(out)
}
