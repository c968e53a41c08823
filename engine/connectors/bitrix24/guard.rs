//! What `bitrix24.call` and `bitrix24.write` share around a call: whether a record makes it at all
//! (`when:`), and what the portal refusing it does to the record (`optional:`, `error:`).

use minijinja::value::Value;
use serde_json::Value as Json;

use super::client::B24Rejection;
use crate::expr::Template;
use crate::expr::tree::{TemplateIn, WithError, WithRefusal, scope_with};

pub(super) struct Guard {
    pub method: String,
    pub when: Option<Template>,
    pub optional: bool,
    pub error: Option<ErrorTemplate>,
}

/// The `error:` template of a call (which sees `item` with `for_each`), or of a write or a
/// lookup (only the refusal).
pub(super) enum ErrorTemplate {
    Call(TemplateIn<WithError>),
    Refusal(TemplateIn<WithRefusal>),
}

impl Guard {
    /// Whether the record makes the call; a condition that cannot be evaluated fails the record.
    pub fn wanted(&self, scope: &Value) -> Result<bool, String> {
        match &self.when {
            None => Ok(true),
            Some(t) => t
                .test(scope)
                .map_err(|e| format!("{} when: {e}", self.method)),
        }
    }

    /// What a refusal gives the record: `Ok(null)` for an optional call, otherwise the reason it
    /// fails with: the `error:` template (which sees the portal's description as `error`, and
    /// the element as `item`), or `default`.
    pub fn refused(
        &self,
        scope: &Value,
        item: Option<&Json>,
        rejection: &B24Rejection,
        default: impl FnOnce() -> String,
    ) -> Result<Json, String> {
        if self.optional {
            return Ok(Json::Null);
        }
        let Some(template) = &self.error else {
            return Err(default());
        };
        let mut vars = vec![("error", Value::from(description(rejection)))];
        if let Some(item) = item {
            vars.push((
                "item",
                crate::expr::json_value(&std::sync::Arc::new(item.clone())),
            ));
        }
        let template = match template {
            ErrorTemplate::Call(t) => &t.0,
            ErrorTemplate::Refusal(t) => &t.0,
        };
        Err(template
            .render(&scope_with(scope, vars))
            .unwrap_or_else(|e| format!("{} error: {e}", self.method)))
    }
}

/// The portal's words for a refusal («Deal is not found»), or its code when it gave none.
pub(super) fn description(r: &B24Rejection) -> String {
    if r.description.trim().is_empty() {
        r.code.clone()
    } else {
        r.description.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn guard(optional: bool, error: Option<&str>) -> Guard {
        Guard {
            method: "crm.deal.get".into(),
            when: Some(serde_json::from_value(json!("{{ record.id > 0 }}")).unwrap()),
            optional,
            error: error.map(|e| ErrorTemplate::Call(serde_json::from_value(json!(e)).unwrap())),
        }
    }

    fn not_found() -> B24Rejection {
        B24Rejection {
            code: String::new(),
            description: "Deal is not found".into(),
        }
    }

    #[test]
    fn when_decides_whether_the_call_is_made() {
        let g = guard(false, None);
        let yes = minijinja::context! { record => minijinja::context! { id => 5 } };
        let no = minijinja::context! { record => minijinja::context! { id => 0 } };
        assert!(g.wanted(&yes).unwrap());
        assert!(!g.wanted(&no).unwrap());
    }

    #[test]
    fn a_refusal_is_null_when_optional_else_the_error_template_or_the_default() {
        let scope = minijinja::context! { record => minijinja::context! { id => 5 } };
        let default = || "default".to_string();
        assert_eq!(
            guard(true, None).refused(&scope, None, &not_found(), default),
            Ok(Json::Null)
        );
        assert_eq!(
            guard(false, None).refused(&scope, None, &not_found(), default),
            Err("default".into())
        );
        assert_eq!(
            guard(
                false,
                Some("Сделка {{ record.id }}: {{ error }} ({{ item }})")
            )
            .refused(&scope, Some(&json!(7)), &not_found(), default),
            Err("Сделка 5: Deal is not found (7)".into())
        );
    }
}
