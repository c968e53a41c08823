//! How a pipeline declares its business-process action: what the designer shows (name,
//! description, inputs, return values) and what the workflow is answered. `etl activities
//! sync` registers the declaration; the `bitrix24.bp_activity` source checks requests
//! against it and renders the reply.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value as Json;

use crate::expr::JsonPath;
use crate::expr::tree::{Extra, TemplateIn};

/// What a reply's templates see: the request (`source`), the record and its steps as they
/// ended, and `outcome` / `error`.
pub struct ReplyScope;
impl Extra for ReplyScope {
    const ROOTS: &'static [&'static str] = &["source", "record", "steps", "outcome", "error"];
}

/// A template of a reply.
pub type ReplyTemplate = TemplateIn<ReplyScope>;

/// Text the designer shows: one string, or one per language (`{ru: ..., en: ...}`).
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Localized {
    Text(String),
    ByLanguage(IndexMap<String, String>),
}

impl Localized {
    /// The text in Russian (the portals of the seeds), else the first one given.
    pub fn text(&self) -> &str {
        match self {
            Localized::Text(s) => s,
            Localized::ByLanguage(map) => map
                .get("ru")
                .or_else(|| map.values().next())
                .map(String::as_str)
                .unwrap_or_default(),
        }
    }

    /// As Bitrix24 takes it: a string or `{lang: text}`.
    pub fn to_json(&self) -> Json {
        match self {
            Localized::Text(s) => Json::String(s.clone()),
            Localized::ByLanguage(map) => serde_json::to_value(map).unwrap_or_default(),
        }
    }
}

/// The designer's property types.
#[derive(Clone, Copy, Debug, Deserialize, serde::Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PropertyType {
    Bool,
    Date,
    Datetime,
    Double,
    File,
    Int,
    Select,
    String,
    Text,
    User,
}

/// One input or return value of the action.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Property {
    /// What the designer calls it.
    pub name: Localized,
    #[serde(default)]
    pub description: Option<Localized>,
    #[serde(rename = "type", default = "string_type")]
    pub kind: PropertyType,
    /// The designer insists on a value; a request without one fails before any call with
    /// «Не заполнен обязательный параметр: <name>».
    #[serde(default)]
    pub required: bool,
    /// Several values (they arrive as a list).
    #[serde(default)]
    pub multiple: bool,
    /// The designer's default (`{=Document:ID}`).
    #[serde(default)]
    pub default: Option<Json>,
    /// The choices of a `select`: key -> label.
    #[serde(default)]
    pub options: Option<IndexMap<String, String>>,
    /// The choices of a `select`, read from Bitrix24 when the action is registered.
    #[serde(default)]
    pub options_from: Option<OptionsFrom>,
    /// The value is a secret (a mailbox password): masked everywhere from the moment the
    /// request is read, and never registered as a default.
    #[serde(default)]
    pub secret: bool,
}

fn string_type() -> PropertyType {
    PropertyType::String
}

/// A `select`'s choices from a Bitrix24 list method (`crm.status.list`, `voximplant.line.get`).
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OptionsFrom {
    pub method: String,
    #[serde(default)]
    pub params: Json,
    /// Where the rows are in the result (default: the result itself).
    #[serde(default)]
    pub result: Option<JsonPath>,
    /// The row field that is the option's key. Left out together with `label` when the
    /// result is itself a `{key: label}` mapping (`voximplant.line.get`).
    #[serde(default)]
    pub key: Option<String>,
    /// The row field that is the option's label.
    #[serde(default)]
    pub label: Option<String>,
}

/// What the workflow is answered (`bizproc.event.send`): return values and a log line, as
/// templates over the record, its steps and its `outcome`/`error`.
#[derive(Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct Replies {
    /// When the record ends `ok` (or skipped).
    #[serde(default)]
    pub ok: Reply,
    /// When it fails, or the run cannot finish it (`error` says why).
    #[serde(default)]
    pub failed: Reply,
}

#[derive(Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    /// Return values by key (keys of `return_properties`).
    #[serde(default)]
    pub return_values: IndexMap<String, ReplyTemplate>,
    /// The line written to the workflow's log (default: `OK`, or the error).
    #[serde(default)]
    pub log_message: Option<ReplyTemplate>,
}

/// The action as the designer shows it.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Declaration {
    /// The action's code: `a-z 0-9 . - _`; requests arrive at `/bp/<code>`.
    #[schemars(example = &"b24etl_update_deal")]
    pub code: String,
    pub name: Localized,
    #[serde(default)]
    pub description: Option<Localized>,
    /// The documents it applies to (`[crm, CCrmDocumentDeal, DEAL]`); default: any.
    #[serde(default)]
    pub document_type: Option<Vec<String>>,
    /// Where the designer offers it (`{INCLUDE: [[crm]]}`).
    #[serde(default)]
    pub filter: Option<Json>,
    /// The user whose token the requests carry unless the template says otherwise.
    #[serde(default)]
    pub auth_user_id: Option<u64>,
    /// Inputs by key (`^[a-z][a-z0-9_]*$`).
    #[serde(default)]
    pub properties: IndexMap<String, Property>,
    /// Return values by key.
    #[serde(default)]
    pub return_properties: IndexMap<String, Property>,
}

impl Declaration {
    /// Problems that Bitrix24 would refuse at registration, found at load.
    pub fn check(&self) -> Result<(), String> {
        let code_ok = !self.code.is_empty()
            && self
                .code
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if !code_ok {
            return Err(format!(
                "code `{}`: only letters, digits, `.`, `-` and `_`",
                self.code
            ));
        }
        for key in self.properties.keys().chain(self.return_properties.keys()) {
            let mut chars = key.chars();
            let ok = chars.next().is_some_and(|c| c.is_ascii_lowercase())
                && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !ok {
                return Err(format!(
                    "property key `{key}`: write it as ^[a-z][a-z0-9_]*$"
                ));
            }
        }
        let all = self.properties.iter().chain(self.return_properties.iter());
        for (key, from) in all.filter_map(|(k, p)| p.options_from.as_ref().map(|f| (k, f))) {
            if from.key.is_some() != from.label.is_some() {
                return Err(format!(
                    "property `{key}`: options_from takes both `key` and `label`, or neither for a `{{key: label}}` result"
                ));
            }
        }
        Ok(())
    }

    /// The first required input without a value in `properties`, by its name.
    pub fn missing_input(&self, properties: &serde_json::Map<String, Json>) -> Option<String> {
        self.properties
            .iter()
            .filter(|(_, p)| p.required)
            .find(|(key, _)| is_empty(properties.get(key.as_str())))
            .map(|(_, p)| p.name.text().to_string())
    }
}

/// Empty as a workflow sends it: absent, "", blanks, or a list of such.
pub fn is_empty(value: Option<&Json>) -> bool {
    match value {
        None | Some(Json::Null) => true,
        Some(Json::String(s)) => s.trim().is_empty(),
        Some(Json::Array(a)) => a.iter().all(|v| is_empty(Some(v))),
        Some(Json::Object(m)) => m.values().all(|v| is_empty(Some(v))),
        Some(_) => false,
    }
}
