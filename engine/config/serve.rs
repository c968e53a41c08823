//! The top-level keys for `etl serve`: `schedule:` (when it runs the pipeline on its own) and
//! `serve_settings:` (which settings a `/run` request may set from its query string). Both
//! are checked where they are written, so `etl validate` points at a wrong cron field, an
//! unknown time zone or a setting that does not exist.

use schemars::JsonSchema;
use serde_json::Value as Json;

use crate::runtime::schedule::{Schedule, ScheduleError};
use crate::syntax::diag::Diagnostic;
use crate::syntax::node::{Kind, Node};

/// When `etl serve` runs the pipeline: a cron expression, alone or with its time zone.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)] // only its schema is used: the node is read by `schedule` below
pub enum ScheduleDoc {
    /// Cron in UTC: five fields (`*/5 * * * *`) or six with seconds first (`0 */5 * * * *`).
    Cron(String),
    /// Cron in a time zone.
    Zoned {
        /// Five fields (`0 3 * * *`) or six with seconds first (`0 0 3 * * *`).
        cron: String,
        /// IANA time zone the expression is read in (default UTC).
        #[serde(default)]
        tz: Option<String>,
    },
}

/// `schedule: "0 3 * * *"` or `schedule: {cron: "0 3 * * *", tz: Europe/Moscow}`.
pub fn schedule(node: &Node) -> Result<Schedule, Diagnostic> {
    let (expression, tz) = match &node.kind {
        Kind::Str(s) => (s.as_str(), None),
        Kind::Map(entries) => {
            if let Some((key, _)) = entries
                .iter()
                .find(|(k, _)| !matches!(k.as_str(), Some("cron" | "tz")))
            {
                return Err(Diagnostic::at(
                    key,
                    format!(
                        "unknown key `{}` in `schedule`; expected `cron` and `tz`",
                        key.key_text()
                    ),
                ));
            }
            let cron = node.get("cron").ok_or_else(|| {
                Diagnostic::at(
                    node,
                    "`schedule` needs `cron`, e.g. `{cron: \"0 3 * * *\"}`",
                )
            })?;
            let tz = node.get("tz");
            (string_of(cron, "cron")?, tz)
        }
        _ => {
            return Err(Diagnostic::at(
                node,
                format!(
                    "`schedule` is a cron expression or `{{cron: ..., tz: ...}}`; found {}",
                    node.type_name()
                ),
            ));
        }
    };
    let tz_name = tz.map(|t| string_of(t, "tz")).transpose()?;
    Schedule::parse(expression, tz_name).map_err(|e| match e {
        ScheduleError::TimeZone(m) => Diagnostic::at(tz.unwrap_or(node), m),
        ScheduleError::Expression(m) => Diagnostic::at(node.get("cron").unwrap_or(node), m),
    })
}

fn string_of<'a>(node: &'a Node, what: &str) -> Result<&'a str, Diagnostic> {
    node.as_str().ok_or_else(|| {
        Diagnostic::at(
            node,
            format!("`{what}` must be a string; found {}", node.type_name()),
        )
    })
}

/// `serve_settings: [update_db]`: names of settings the pipeline declares.
pub fn serve_settings(
    node: &Node,
    settings: &Json,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<String> {
    let Kind::Seq(items) = &node.kind else {
        diagnostics.push(Diagnostic::at(
            node,
            format!(
                "`serve_settings` is a list of setting names; found {}",
                node.type_name()
            ),
        ));
        return Vec::new();
    };
    let mut names = Vec::new();
    for item in items {
        match item.as_str() {
            Some(name) if settings.get(name).is_some() => names.push(name.to_string()),
            Some(name) => diagnostics.push(Diagnostic::at(
                item,
                format!("`{name}` is not a setting of this pipeline; `serve_settings` lists names under `settings:`"),
            )),
            None => diagnostics.push(Diagnostic::at(
                item,
                format!("a setting name is a string; found {}", item.type_name()),
            )),
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::node::parse;

    fn node(yaml: &str) -> Node {
        parse(yaml, "p.yaml").unwrap().get("v").unwrap().clone()
    }

    #[test]
    fn schedules_are_checked_where_they_are_written() {
        assert!(schedule(&node("v: \"*/2 * * * * *\"")).is_ok());
        assert!(schedule(&node("v: {cron: \"0 3 * * *\", tz: Europe/Moscow}")).is_ok());
        let e = schedule(&node("v: {cron: \"0 3 * * *\", tz: Mars/Base}")).unwrap_err();
        assert_eq!(
            e.headline(),
            "p.yaml:1:28: unknown time zone `Mars/Base`; expected an IANA name such as `Europe/Moscow` or `UTC`"
        );
        let e = schedule(&node("v:\n  cron: 0 61 * * *\n")).unwrap_err();
        assert!(
            e.headline()
                .starts_with("p.yaml:2:9: invalid cron expression"),
            "{}",
            e.headline()
        );
    }

    #[test]
    fn serve_settings_name_declared_settings() {
        let settings = serde_json::json!({"update_db": false});
        let mut diagnostics = Vec::new();
        let names = serve_settings(&node("v: [update_db, nope]"), &settings, &mut diagnostics);
        assert_eq!(names, ["update_db"]);
        assert_eq!(
            diagnostics[0].headline(),
            "p.yaml:1:16: `nope` is not a setting of this pipeline; `serve_settings` lists names under `settings:`"
        );
    }
}
