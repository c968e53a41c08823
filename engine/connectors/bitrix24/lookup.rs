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

/// Reads of a group whose rows keep changing between its pages before its records fail.
const READS: u32 = 3;

/// What the pages of one group's read told: the first page's `total`, the rows received, and
/// whether every later page told the same `total`.
#[derive(Clone, Default)]
struct Tally {
    total: Option<u64>,
    rows: u64,
    steady: bool,
    reads: u32,
}

impl Tally {
    fn first_page(&mut self, total: Option<u64>, rows: u64) {
        *self = Tally {
            total,
            rows,
            steady: true,
            reads: self.reads + 1,
        };
    }

    fn later_page(&mut self, total: Option<u64>, rows: u64) {
        self.rows += rows;
        self.steady &= total == self.total;
    }

    /// The read is whole: one answer, or pages that agree and add up to their total.
    fn adds_up(&self) -> bool {
        match self.total {
            None => true,
            Some(total) => self.steady && self.rows == total,
        }
    }
}

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
    /// whose `total` says there are more. A group whose rows changed between its pages (a page
    /// told another `total`, or the rows do not add up to it) is read again, up to
    /// `READS` times: pages by offset would otherwise miss or repeat a row.
    async fn read(&self, ctx: &RunCtx, keys: Vec<(String, Json)>) -> Result<Found, Fatal> {
        let groups: Vec<&[(String, Json)]> = keys.chunks(self.cfg.keys_per_call).collect();
        let mut found = Found::default();
        let mut tallies = vec![Tally::default(); groups.len()];
        let mut to_read: Vec<usize> = (0..groups.len()).collect();
        while !to_read.is_empty() {
            self.read_groups(ctx, &groups, &to_read, &mut tallies, &mut found)
                .await?;
            to_read = Vec::new();
            for (g, tally) in tallies.iter().enumerate() {
                let group = groups[g];
                let settled =
                    |k: &String| found.refused.contains_key(k) || found.failed.contains_key(k);
                if tally.adds_up() || group.iter().any(|(k, _)| settled(k)) {
                    continue;
                }
                for (key, _) in group {
                    found.rows.remove(key);
                    if tally.reads >= READS {
                        let why = "the rows changed while they were read, again and again";
                        found
                            .failed
                            .insert(key.clone(), format!("{}: {why}", self.cfg.method));
                    }
                }
                if tally.reads < READS {
                    to_read.push(g);
                }
            }
        }
        Ok(found)
    }

    /// One read of these groups, all their pages.
    async fn read_groups(
        &self,
        ctx: &RunCtx,
        groups: &[&[(String, Json)]],
        to_read: &[usize],
        tallies: &mut [Tally],
        found: &mut Found,
    ) -> Result<(), Fatal> {
        let of_group = |g: &[(String, Json)]| g.iter().map(|(_, k)| k.clone()).collect::<Vec<_>>();
        let mut pages: Vec<(usize, u64)> = to_read.iter().map(|&g| (g, 0)).collect();
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
                let rows = self.settle_page(groups[g], answer, found);
                if start == 0 {
                    tallies[g].first_page(total, rows);
                    // The first page tells how many rows there are: ask for the others at once.
                    if let Some(total) = total {
                        next.extend((1..total.div_ceil(PAGE)).map(|p| (g, p * PAGE)));
                    }
                } else {
                    tallies[g].later_page(total, rows);
                }
            }
            pages = next;
        }
        Ok(())
    }

    /// File one page's rows under their keys, or the refusal under every key of the group;
    /// the number of rows on the page.
    fn settle_page(&self, group: &[(String, Json)], answer: Answer, found: &mut Found) -> u64 {
        match answer {
            Ok(answer) => {
                let rows = self.rows_of(answer);
                let n = rows.len() as u64;
                for row in rows {
                    if let Some(key) = row.get(&self.cfg.match_field).and_then(key_text) {
                        found.rows.entry(key).or_default().push(row);
                    }
                }
                n
            }
            Err(r) => {
                for (key, _) in group {
                    found.refused.insert(key.clone(), r.clone());
                }
                0
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(pages: &[(Option<u64>, u64)]) -> Tally {
        let mut t = Tally::default();
        let (first, later) = pages.split_first().unwrap();
        t.first_page(first.0, first.1);
        for (total, rows) in later {
            t.later_page(*total, *rows);
        }
        t
    }

    #[test]
    fn a_read_adds_up_only_when_its_pages_agree_on_the_total_and_reach_it() {
        assert!(tally(&[(None, 3)]).adds_up(), "an answer that is not paged");
        assert!(tally(&[(Some(12), 12)]).adds_up());
        assert!(tally(&[(Some(75), 50), (Some(75), 25)]).adds_up());
        // A row added between the pages: the second page says so, or one row is seen twice.
        assert!(!tally(&[(Some(75), 50), (Some(76), 26)]).adds_up());
        assert!(!tally(&[(Some(75), 50), (Some(75), 26)]).adds_up());
        // A row deleted: one is missed.
        assert!(!tally(&[(Some(75), 50), (Some(74), 24)]).adds_up());
        let mut again = tally(&[(Some(75), 50)]);
        again.first_page(Some(74), 50);
        assert_eq!(again.reads, 2);
    }
}
