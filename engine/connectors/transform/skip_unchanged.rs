//! `skip_unchanged`: a record whose source data is the same as when it was last done is skipped
//! before any lookup or write. Fields that change without meaning anything (DATE_MODIFY, the status
//! field our own hooks write) are left out of the comparison.

use std::sync::Arc;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::ser::SerializeMap as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::config::{BuildCtx, component::StepConfig};
use crate::expr::Template;
use crate::runtime::executor::UNCHANGED;
use crate::runtime::{Fatal, Item, RunCtx, Step, parallel};
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
        let Json::Object(map) = item.record.source.as_ref() else {
            return state::fingerprint(&item.record.source);
        };
        let scope = ctx.scope(item);
        let ignored: Vec<String> = self
            .ignore
            .iter()
            .filter_map(|t| t.render(&scope).ok())
            .collect();
        fingerprint_without(map, &ignored)
    }
}

/// `state::fingerprint` of `map` without the `ignored` keys, without copying the record: the
/// same text is hashed (the kept entries in order, as `Json::to_string` writes an object), so
/// the fingerprints stored by earlier versions still match.
fn fingerprint_without(map: &Map<String, Json>, ignored: &[String]) -> String {
    use sha2::{Digest, Sha256};
    let text = serde_json::to_vec(&Without { map, ignored }).expect("JSON values serialise");
    hex::encode(&Sha256::digest(&text)[..16])
}

struct Without<'a> {
    map: &'a Map<String, Json>,
    ignored: &'a [String],
}

impl Serialize for Without<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let kept = || self.map.iter().filter(|(k, _)| !self.ignored.contains(k));
        let mut out = serializer.serialize_map(Some(kept().count()))?;
        for (k, v) in kept() {
            out.serialize_entry(k, v)?;
        }
        out.end()
    }
}

#[async_trait]
impl Step for SkipUnchanged {
    async fn process(&self, items: &mut [Item], ctx: &RunCtx) -> Result<(), Fatal> {
        let pending: Vec<usize> = (0..items.len()).filter(|&i| items[i].pending()).collect();
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
        // A dry run commits no fingerprint: one is needed only to compare with a stored one.
        let wanted: Vec<(usize, Option<String>)> = pending.into_iter().zip(known).collect();
        let hashes = parallel::map(&wanted, |(i, old)| {
            (!ctx.dry_run || old.is_some()).then(|| self.hash(&items[*i], ctx))
        });
        for ((i, old), hash) in wanted.into_iter().zip(hashes) {
            let Some(hash) = hash else { continue };
            if old.as_deref() == Some(hash.as_str()) {
                items[i].skip(UNCHANGED);
            } else {
                items[i].record.fingerprint = Some((self.scope.clone(), hash));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_is_the_one_of_the_record_without_the_ignored_fields() {
        let record = serde_json::json!({
            "ID": "7", "NAME": "Анна \"Ю\"", "DATE_MODIFY": "2024-01-01T00:00:00+03:00",
            "PHONE": [{"VALUE": "+7 900", "VALUE_TYPE": "WORK"}], "UF_CRM_SYNC_STATUS": null,
            "EMPTY": {}, "N": 1.5
        });
        let Json::Object(map) = &record else {
            unreachable!()
        };
        let ignored = vec!["DATE_MODIFY".to_string(), "UF_CRM_SYNC_STATUS".to_string()];
        let mut without = record.clone();
        for k in &ignored {
            without.as_object_mut().unwrap().shift_remove(k);
        }
        assert_eq!(
            fingerprint_without(map, &ignored),
            state::fingerprint(&without)
        );
        let everything = serde_json::json!({"DATE_MODIFY": "x"});
        assert_eq!(
            fingerprint_without(everything.as_object().unwrap(), &ignored),
            state::fingerprint(&serde_json::json!({}))
        );
    }
}
