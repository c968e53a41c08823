//! `skip_unchanged`: a record whose source data is the same as when it was last done is skipped
//! before any lookup or write. Fields that change without meaning anything (DATE_MODIFY, the status
//! field our own hooks write) are left out of the comparison.

use std::sync::Arc;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value as Json;

use crate::config::{BuildCtx, component::StepConfig};
use crate::expr::Template;
use crate::runtime::executor::UNCHANGED;
use crate::runtime::{Fatal, Item, RunCtx, Step};
use crate::state;

/// Skip records whose source data has not changed since they were last processed.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SkipUnchangedConfig {
    /// Source fields left out of the comparison (templates allowed, e.g. `"{{ settings.status_field }}"`).
    #[serde(default)]
    #[schemars(example = ignore_example())]
    pub ignore: Vec<Template>,
}

fn ignore_example() -> Vec<&'static str> {
    vec!["DATE_MODIFY", "MODIFY_BY_ID", "{{ settings.status_field }}"]
}

impl StepConfig for SkipUnchangedConfig {
    fn build(self, ctx: &BuildCtx) -> Result<Arc<dyn Step>, String> {
        let scope = format!("step:{}", ctx.id.as_deref().unwrap_or("skip_unchanged"));
        Ok(Arc::new(SkipUnchanged {
            ignore: self.ignore,
            scope,
        }))
    }
}

struct SkipUnchanged {
    ignore: Vec<Template>,
    scope: String,
}

impl SkipUnchanged {
    fn hash(&self, item: &Item, ctx: &RunCtx) -> String {
        let scope = ctx.scope(item);
        let mut data = item.record.source.as_ref().clone();
        if let Json::Object(map) = &mut data {
            for t in &self.ignore {
                if let Ok(field) = t.render(&scope) {
                    map.shift_remove(&field);
                }
            }
        }
        state::fingerprint(&data)
    }
}

#[async_trait]
impl Step for SkipUnchanged {
    async fn process(&self, items: &mut [Item], ctx: &RunCtx) -> Result<(), Fatal> {
        let pending: Vec<usize> = (0..items.len()).filter(|&i| items[i].pending()).collect();
        let hashes: Vec<String> = pending.iter().map(|&i| self.hash(&items[i], ctx)).collect();
        let known = match &ctx.state {
            Some(store) => {
                let keys: Vec<&str> = pending
                    .iter()
                    .map(|&i| items[i].record.key.as_str())
                    .collect();
                store
                    .fingerprints(&ctx.pipeline, &self.scope, &keys)
                    .map_err(|e| Fatal::unavailable("state", e))?
            }
            None => vec![None; pending.len()],
        };
        for ((i, hash), old) in pending.into_iter().zip(hashes).zip(known) {
            if old.as_deref() == Some(hash.as_str()) {
                items[i].skip(UNCHANGED);
            } else {
                items[i].record.fingerprint = Some((self.scope.clone(), hash));
            }
        }
        Ok(())
    }
}
