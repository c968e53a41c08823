//! `bitrix24.lookup`: what many records need, read with one command per group of them. The
//! records' keys go into the parameters as the list `keys`, and each record gets the rows whose
//! `match` field holds its key. `crm.item.productrow.list` with `=ownerId: "{{ keys }}"` reads
//! the product rows of 40 deals in one command, 2,000 in one request, where
//! `crm.deal.productrows.get` takes one command per deal. A command whose rows fill more than
//! one page is read on, page by page, before any record is given its rows.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value as Json;

use super::call::{Answer, read_commands};
use super::client::{B24Rejection, Client};
use super::guard::{ErrorTemplate, Guard};
use crate::config::{BuildCtx, ConnectionRef, component::StepConfig};
use crate::expr::tree::{Extra, TemplateIn, TemplateTree, WithRefusal, eval_params, scope_with};
use crate::expr::{JsonPath, Template};
use crate::runtime::{Fatal, Item, RunCtx, Step};

/// Rows a list command answers with at most; a command with more is read on with `start`.
const PAGE: u64 = 50;

/// The record's variables a lookup's parameters may not use: they are one command's for many
/// records.
const RECORD_ROOTS: [&str; 4] = ["source", "record", "steps", "item"];

/// Read rows for many records with one command per group of keys; `steps.<id>` is the list of
/// the record's rows (empty when it has none).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupConfig {
    /// Name of a `bitrix24` connection.
    pub connection: ConnectionRef,
    /// A list method.
    #[schemars(example = &"crm.item.productrow.list")]
    pub method: String,
    /// The record's key (a template).
    #[schemars(example = &"{{ source.ID }}")]
    pub key: Template,
    /// Parameters of one command, as templates: `keys` is the list of its records' keys
    /// (`"=ownerId": "{{ keys }}"`). They are shared by many records, so they may use `settings`
    /// but not the record. Parameters that come out null are not sent.
    #[schemars(example = params_example())]
    pub params: IndexMap<String, TemplateTree<WithKeys>>,
    /// Where the rows are in a command's answer (a JSON path; default: the answer itself).
    #[serde(default)]
    #[schemars(example = &"$.productRows")]
    pub rows: Option<JsonPath>,
    /// The field of a row that holds its record's key (compared as text: `"12"` matches `12`).
    #[serde(rename = "match")]
    #[schemars(example = &"ownerId")]
    pub match_field: String,
    /// Keys per command, 1 to 50: best about 50 divided by the rows a key usually has, so that
    /// one page of 50 rows holds a command's answer (the rest is read page by page).
    #[serde(default = "fifty")]
    pub keys_per_call: usize,
    /// Look up only records for which this holds (a template test); otherwise `steps.<id>` is
    /// null.
    #[serde(default)]
    pub when: Option<Template>,
    /// A refusal by the portal gives the command's records null instead of failing them.
    #[serde(default)]
    pub optional: bool,
    /// The reason the records of a refused command fail with (a template; `error` is the
    /// portal's description).
    #[serde(default)]
    pub error: Option<TemplateIn<WithRefusal>>,
}

/// Also `keys`: the keys of the records one command is made for.
pub struct WithKeys;
impl Extra for WithKeys {
    const ROOTS: &'static [&'static str] = &["keys"];
}

fn fifty() -> usize {
    50
}

fn params_example() -> Json {
    serde_json::json!({"filter": {"=ownerType": "D", "=ownerId": "{{ keys }}"}})
}

impl StepConfig for LookupConfig {
    fn build(mut self, ctx: &BuildCtx) -> Result<Arc<dyn Step>, String> {
        let client = ctx.connection::<Client>(&self.connection)?;
        let id = ctx
            .id
            .clone()
            .ok_or("a bitrix24.lookup step needs an `id`: its result is `steps.<id>`")?;
        if !(1..=50).contains(&self.keys_per_call) {
            return Err(format!(
                "keys_per_call must be 1 to 50, not {}",
                self.keys_per_call
            ));
        }
        for (name, param) in &self.params {
            if let Some(root) = RECORD_ROOTS.iter().find(|r| param.uses(r)) {
                return Err(format!(
                    "parameter `{name}` uses `{root}`: one command serves many records, so its \
                     parameters may use `keys` and `settings`, not the record (the record's part \
                     is its `key`)"
                ));
            }
        }
        let guard = Guard {
            method: self.method.clone(),
            when: self.when.take(),
            optional: self.optional,
            error: self.error.take().map(ErrorTemplate::Refusal),
        };
        Ok(Arc::new(LookupStep {
            cfg: self,
            guard,
            client,
            id,
        }))
    }
}

struct LookupStep {
    cfg: LookupConfig,
    guard: Guard,
    client: Arc<Client>,
    id: String,
}

/// A key as text, whatever JSON type the record or the row gives it in.
fn key_text(v: &Json) -> Option<String> {
    match v {
        Json::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// What the commands of one step call found: each key's rows, or the refusal of its command, or
/// why its command could not be made.
#[derive(Default)]
struct Found {
    rows: HashMap<String, Vec<Json>>,
    refused: HashMap<String, B24Rejection>,
    failed: HashMap<String, String>,
}

impl LookupStep {
    /// The key of each pending record that wants the lookup (others get null or fail).
    fn keys(&self, items: &mut [Item], ctx: &RunCtx) -> Vec<(usize, String, Json)> {
        let mut wanted = Vec::new();
        for (n, item) in items.iter_mut().enumerate().filter(|(_, i)| i.pending()) {
            let scope = ctx.scope(item);
            match self.guard.wanted(&scope) {
                Ok(true) => {}
                Ok(false) => {
                    item.record.set_step_output(&self.id, Json::Null);
                    continue;
                }
                Err(reason) => {
                    item.fail(reason);
                    continue;
                }
            }
            match self.cfg.key.eval(&scope) {
                Ok(key) => match key_text(&key) {
                    Some(text) => wanted.push((n, text, key)),
                    None => item.fail(format!("{} key: {key} is not a key", self.cfg.method)),
                },
                Err(e) => item.fail(format!("{} key: {e}", self.cfg.method)),
            }
        }
        wanted
    }

    /// The parameters of the command for these keys, from `start` on.
    fn command(&self, ctx: &RunCtx, keys: &[Json], start: u64) -> Result<Json, String> {
        let keys = crate::expr::json_value(&Arc::new(Json::Array(keys.to_vec())));
        let scope = scope_with(&ctx.run_scope(None), vec![("keys", keys)]);
        let mut params = eval_params(&self.cfg.params, &scope)
            .map_err(|e| format!("{} {e}", self.cfg.method))?;
        if start > 0 {
            params["start"] = Json::from(start);
        }
        Ok(params)
    }

    /// The rows of one command's answer page.
    fn rows_of(&self, answer: Json) -> Vec<Json> {
        let rows = match &self.cfg.rows {
            Some(path) => path.first(&answer).cloned().unwrap_or(Json::Null),
            None => answer,
        };
        match rows {
            Json::Array(rows) => rows,
            Json::Object(map) => map.into_iter().map(|(_, row)| row).collect(),
            _ => Vec::new(),
        }
    }

    /// Read the rows of these keys: first pages, then the pages after them of the commands
    /// whose `total` says there are more.
    async fn read(&self, ctx: &RunCtx, keys: Vec<(String, Json)>) -> Result<Found, Fatal> {
        let groups: Vec<&[(String, Json)]> = keys.chunks(self.cfg.keys_per_call).collect();
        let of_group = |g: &[(String, Json)]| g.iter().map(|(_, k)| k.clone()).collect::<Vec<_>>();
        let mut found = Found::default();
        let mut pages: Vec<(usize, u64)> = (0..groups.len()).map(|g| (g, 0)).collect();
        while !pages.is_empty() {
            let mut sent = Vec::with_capacity(pages.len());
            let mut params = Vec::with_capacity(pages.len());
            for (g, start) in pages {
                match self.command(ctx, &of_group(groups[g]), start) {
                    Ok(p) => {
                        sent.push((g, start));
                        params.push(p);
                    }
                    Err(e) => found
                        .failed
                        .extend(groups[g].iter().map(|(k, _)| (k.clone(), e.clone()))),
                }
            }
            let answers = read_commands(&self.client, &self.cfg.method, params).await?;
            let mut next = Vec::new();
            for ((g, start), (answer, total)) in sent.into_iter().zip(answers) {
                self.settle_page(groups[g], answer, &mut found);
                // The first page tells how many rows there are: ask for all the others at once.
                if let (0, Some(total)) = (start, total) {
                    next.extend((1..total.div_ceil(PAGE)).map(|p| (g, p * PAGE)));
                }
            }
            pages = next;
        }
        Ok(found)
    }

    /// File one page's rows under their keys, or the refusal under every key of the group.
    fn settle_page(&self, group: &[(String, Json)], answer: Answer, found: &mut Found) {
        match answer {
            Ok(answer) => {
                for row in self.rows_of(answer) {
                    if let Some(key) = row.get(&self.cfg.match_field).and_then(key_text) {
                        found.rows.entry(key).or_default().push(row);
                    }
                }
            }
            Err(r) => {
                for (key, _) in group {
                    found.refused.insert(key.clone(), r.clone());
                }
            }
        }
    }
}

#[async_trait]
impl Step for LookupStep {
    async fn process(&self, items: &mut [Item], ctx: &RunCtx) -> Result<(), Fatal> {
        let wanted = self.keys(items, ctx);
        let mut distinct: IndexMap<String, Json> = IndexMap::new();
        for (_, text, key) in &wanted {
            distinct.entry(text.clone()).or_insert_with(|| key.clone());
        }
        let found = self.read(ctx, distinct.into_iter().collect()).await?;
        for (n, text, _) in wanted {
            let item = &mut items[n];
            let result = if let Some(reason) = found.failed.get(&text) {
                Err(reason.clone())
            } else if let Some(r) = found.refused.get(&text) {
                self.guard.refused(&ctx.scope(item), None, r, || {
                    format!("{}: {r}", self.cfg.method)
                })
            } else {
                Ok(Json::Array(
                    found.rows.get(&text).cloned().unwrap_or_default(),
                ))
            };
            match result {
                Ok(v) => item.record.set_step_output(&self.id, v),
                Err(reason) => item.fail(reason),
            }
        }
        Ok(())
    }
}
