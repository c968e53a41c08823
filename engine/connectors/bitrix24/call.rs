//! `bitrix24.call`: a per-record lookup (crm.deal.productrows.get, user.get, ...). Calls from
//! many records are packed 50 to a `batch`; identical calls are answered from a per-run cache,
//! so each ASSIGNED_BY_ID's user is fetched once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value as Json};

use super::client::{B24Error, Client, Kind, SYSTEM};
use crate::config::{BuildCtx, ConnectionRef, component::StepConfig};
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
    /// Parameters, as templates over the record.
    #[schemars(example = params_example())]
    pub params: IndexMap<String, Template>,
    /// Keep only this part of the result (a JSON path; default: the whole result).
    #[serde(default)]
    pub result: Option<JsonPath>,
    /// Answer repeated identical calls from a per-run cache.
    #[serde(default = "yes")]
    pub cache: bool,
}

fn yes() -> bool {
    true
}

fn params_example() -> Json {
    serde_json::json!({"id": "{{ source.ID }}"})
}

impl StepConfig for CallConfig {
    fn build(self, ctx: &BuildCtx) -> Result<Arc<dyn Step>, String> {
        let client = ctx.connection::<Client>(&self.connection)?;
        let id = ctx
            .id
            .clone()
            .ok_or("a bitrix24.call step needs an `id`: its result is `steps.<id>`")?;
        Ok(Arc::new(CallStep {
            cfg: self,
            client,
            id,
            cache: Mutex::new(HashMap::new()),
        }))
    }
}

struct CallStep {
    cfg: CallConfig,
    client: Arc<Client>,
    id: String,
    cache: Mutex<HashMap<String, Json>>,
}

impl CallStep {
    fn params(&self, item: &Item, ctx: &RunCtx) -> Result<Json, String> {
        let scope = ctx.scope(item);
        let mut out = Map::new();
        for (k, t) in &self.cfg.params {
            out.insert(
                k.clone(),
                t.eval(&scope)
                    .map_err(|e| format!("{} parameter {k}: {e}", self.cfg.method))?,
            );
        }
        Ok(Json::Object(out))
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
}

#[async_trait]
impl Step for CallStep {
    async fn process(&self, items: &mut [Item], ctx: &RunCtx) -> Result<(), Fatal> {
        // Which call each pending item needs, and the distinct calls not answered yet.
        let mut wanted: Vec<(usize, String)> = Vec::new();
        let mut to_fetch: IndexMap<String, Json> = IndexMap::new();
        for (n, item) in items.iter_mut().enumerate().filter(|(_, i)| i.pending()) {
            match self.params(item, ctx) {
                Ok(params) => {
                    let key = params.to_string();
                    if self.cached(&key).is_none() {
                        to_fetch.entry(key.clone()).or_insert(params);
                    }
                    wanted.push((n, key));
                }
                Err(e) => item.fail(e),
            }
        }
        let mut answers: HashMap<String, Result<Json, String>> = HashMap::new();
        let calls: Vec<(String, Json)> = to_fetch.into_iter().collect();
        for chunk in calls.chunks(50) {
            let commands: Vec<(String, String, Json)> = chunk
                .iter()
                .enumerate()
                .map(|(i, (_, p))| (format!("c{i}"), self.cfg.method.clone(), p.clone()))
                .collect();
            let result = self
                .client
                .batch(&commands, false, Kind::Read)
                .await
                .map_err(|e| match e {
                    B24Error::Rejected(_) => Fatal::unavailable(
                        "Bitrix24",
                        format!("{} refused the batch: {e}", self.cfg.method),
                    ),
                    other => other.fatal(SYSTEM),
                })?;
            for (i, (key, _)) in chunk.iter().enumerate() {
                let cmd = format!("c{i}");
                let answer = match (result.results.get(&cmd), result.errors.get(&cmd)) {
                    (_, Some((code, desc))) => Err(if code.is_empty() {
                        desc.clone()
                    } else {
                        format!("{desc} ({code})")
                    }),
                    (Some(v), None) => Ok(v.clone()),
                    (None, None) => Err("no answer in the batch".to_string()),
                };
                if let (Ok(v), true) = (&answer, self.cfg.cache) {
                    self.cache
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(key.clone(), v.clone());
                }
                answers.insert(key.clone(), answer);
            }
        }
        for (n, key) in wanted {
            let answer = self
                .cached(&key)
                .map(Ok)
                .or_else(|| answers.get(&key).cloned());
            match answer {
                Some(Ok(value)) => {
                    let kept = match &self.cfg.result {
                        Some(path) => path.first(&value).cloned().unwrap_or(Json::Null),
                        None => value,
                    };
                    items[n].record.set_step_output(&self.id, kept);
                }
                Some(Err(e)) => items[n].fail(format!("{}: {e}", self.cfg.method)),
                None => items[n].fail(format!("{}: no answer", self.cfg.method)),
            }
        }
        Ok(())
    }
}
