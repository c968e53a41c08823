//! `filter`: let records through when a condition holds; otherwise skip, finish or fail them.

use std::sync::Arc;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;

use crate::config::{BuildCtx, component::StepConfig};
use crate::expr::Template;
use crate::runtime::{Fatal, Item, Outcome, RunCtx, Step, parallel};

/// Let a record through when `when` is true; otherwise end it as `otherwise` says.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// Condition (a template; Jinja truthiness).
    #[schemars(example = "{{ record.courses | length > 0 }}")]
    pub when: Template,
    /// What happens to a record for which `when` is false.
    #[serde(default)]
    pub otherwise: Otherwise,
    /// Why (a template), shown in the journal and, for `fail`, given to `on_error` hooks as `error`.
    #[serde(default)]
    pub reason: Option<Template>,
}

#[derive(Deserialize, JsonSchema, Default, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum Otherwise {
    /// The record ends `skipped`: no sinks, no hooks.
    #[default]
    Skip,
    /// The record ends `ok` without reaching the sinks; `on_success` hooks run.
    Succeed,
    /// The record ends `failed` with `reason`; `on_error` hooks run.
    Fail,
}

impl StepConfig for FilterConfig {
    fn build(self, _: &BuildCtx) -> Result<Arc<dyn Step>, String> {
        Ok(Arc::new(self))
    }
}

impl FilterConfig {
    /// Keeps the record, or skips, succeeds or fails it as `otherwise` says.
    fn decide(&self, item: &mut Item, ctx: &RunCtx) {
        let scope = ctx.scope(item);
        let keep = match self.when.test(&scope) {
            Ok(k) => k,
            Err(e) => return item.fail(format!("filter: {e}")),
        };
        if keep {
            return;
        }
        let reason = match &self.reason {
            Some(t) => t.render(&scope).unwrap_or_else(|e| e),
            None => format!("filtered out by `{}`", self.when.source()),
        };
        match self.otherwise {
            Otherwise::Skip => item.skip(reason),
            Otherwise::Succeed => item.outcome = Outcome::Ok,
            Otherwise::Fail => item.fail(reason),
        }
    }
}

#[async_trait]
impl Step for FilterConfig {
    async fn process(&self, items: &mut [Item], ctx: &RunCtx) -> Result<(), Fatal> {
        parallel::for_each_pending(items, |item| self.decide(item, ctx));
        Ok(())
    }
}
