//! Registering a declared action on the portal (`etl activities sync`): the
//! `bizproc.activity.add` / `.update` payload built from a [`Declaration`], select options read
//! from Bitrix24 (`options_from`, one call each), and the portal's list deciding add or update.
//! Property keys and option keys keep their case; everything else is upper-case as Bitrix24
//! stores it.

use std::collections::HashMap;

use indexmap::IndexMap;
use serde_json::{Map, Value as Json, json};
use sha2::{Digest, Sha256};

use super::declare::{Declaration, OptionsFrom, Property, PropertyType};
use crate::connectors::bitrix24::client::{B24Error, Client, Kind};

/// Select options resolved from Bitrix24, by property key.
pub type ResolvedOptions = HashMap<String, IndexMap<String, String>>;

/// What a sync did to one code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Added,
    Updated,
    Deleted,
    Unchanged,
}

impl Change {
    pub fn word(self) -> &'static str {
        match self {
            Change::Added => "added",
            Change::Updated => "updated",
            Change::Deleted => "deleted",
            Change::Unchanged => "unchanged",
        }
    }
}

fn yes_no(flag: bool) -> &'static str {
    if flag { "Y" } else { "N" }
}

fn type_name(kind: PropertyType) -> Json {
    serde_json::to_value(kind).unwrap_or(json!("string"))
}

/// One PROPERTIES / RETURN_PROPERTIES entry. A secret input's default is never registered.
pub fn property_json(p: &Property, resolved: Option<&IndexMap<String, String>>) -> Json {
    let mut out = Map::new();
    out.insert("Name".into(), p.name.to_json());
    if let Some(d) = &p.description {
        out.insert("Description".into(), d.to_json());
    }
    out.insert("Type".into(), type_name(p.kind));
    out.insert("Required".into(), json!(yes_no(p.required)));
    out.insert("Multiple".into(), json!(yes_no(p.multiple)));
    if let (Some(default), false) = (&p.default, p.secret) {
        out.insert("Default".into(), default.clone());
    }
    if let Some(options) = resolved.or(p.options.as_ref()) {
        out.insert("Options".into(), json!(options));
    }
    Json::Object(out)
}

fn properties_json(
    props: &IndexMap<String, Property>,
    resolved: &ResolvedOptions,
) -> Map<String, Json> {
    props
        .iter()
        .map(|(key, p)| (key.clone(), property_json(p, resolved.get(key))))
        .collect()
}

/// The action's FIELDS (everything `bizproc.activity.add` takes but CODE): handler
/// `<handler_base>/bp/<code>`, always waiting for the reply (USE_SUBSCRIPTION Y).
pub fn activity_fields(decl: &Declaration, handler_base: &str, resolved: &ResolvedOptions) -> Json {
    let mut f = Map::new();
    let handler = format!("{}/bp/{}", handler_base.trim_end_matches('/'), decl.code);
    f.insert("HANDLER".into(), json!(handler));
    if let Some(user) = decl.auth_user_id {
        f.insert("AUTH_USER_ID".into(), json!(user));
    }
    f.insert("USE_SUBSCRIPTION".into(), json!("Y"));
    f.insert("NAME".into(), decl.name.to_json());
    if let Some(d) = &decl.description {
        f.insert("DESCRIPTION".into(), d.to_json());
    }
    f.insert(
        "PROPERTIES".into(),
        Json::Object(properties_json(&decl.properties, resolved)),
    );
    f.insert(
        "RETURN_PROPERTIES".into(),
        Json::Object(properties_json(&decl.return_properties, resolved)),
    );
    if let Some(t) = &decl.document_type {
        f.insert("DOCUMENT_TYPE".into(), json!(t));
    }
    if let Some(filter) = &decl.filter {
        f.insert("FILTER".into(), filter.clone());
    }
    Json::Object(f)
}

/// The `bizproc.activity.add` parameters: CODE and the fields.
pub fn add_params(code: &str, fields: &Json) -> Json {
    let mut params = fields.as_object().cloned().unwrap_or_default();
    params.insert("CODE".into(), json!(code));
    Json::Object(params)
}

/// What a registered payload is remembered by: equal fingerprints, nothing to update.
pub fn fingerprint(code: &str, fields: &Json) -> String {
    hex::encode(Sha256::digest(
        add_params(code, fields).to_string().as_bytes(),
    ))
}

/// Read the options of every `options_from` property of `decl` (inputs and return values).
pub async fn resolve_options(
    client: &Client,
    decl: &Declaration,
) -> Result<ResolvedOptions, String> {
    let mut resolved = ResolvedOptions::new();
    let all = decl.properties.iter().chain(decl.return_properties.iter());
    for (key, from) in all.filter_map(|(k, p)| p.options_from.as_ref().map(|f| (k, f))) {
        let options = read_options(client, from)
            .await
            .map_err(|e| format!("options of `{key}` from {}: {e}", from.method))?;
        resolved.insert(key.clone(), options);
    }
    Ok(resolved)
}

async fn read_options(
    client: &Client,
    from: &OptionsFrom,
) -> Result<IndexMap<String, String>, B24Error> {
    let params = if from.params.is_null() {
        json!({})
    } else {
        from.params.clone()
    };
    let body = client.call(&from.method, &params, Kind::Read).await?;
    let result = &body["result"];
    let (Some(key), Some(label)) = (&from.key, &from.label) else {
        // A `{key: label}` mapping such as voximplant.line.get's `{LINE_ID: name}`.
        let rows = match &from.result {
            Some(path) => path.first(result).cloned().unwrap_or(Json::Null),
            None => result.clone(),
        };
        return Ok(match rows {
            Json::Object(map) => map
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), text(v)?)))
                .collect(),
            _ => IndexMap::new(),
        });
    };
    let rows: Vec<&Json> = match &from.result {
        Some(path) => path
            .all(result)
            .into_iter()
            .flat_map(|v| match v {
                Json::Array(items) => items.iter().collect(),
                other => vec![other],
            })
            .collect(),
        None => match result {
            Json::Array(items) => items.iter().collect(),
            Json::Object(map) => map.values().collect(),
            _ => Vec::new(),
        },
    };
    Ok(rows
        .into_iter()
        .filter_map(|row| Some((text(row.get(key)?)?, text(row.get(label)?)?)))
        .collect())
}

fn text(v: &Json) -> Option<String> {
    match v {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The codes of this application's actions on the portal (`bizproc.activity.list`).
pub async fn registered_codes(client: &Client) -> Result<Vec<String>, B24Error> {
    let body = client
        .call("bizproc.activity.list", &json!({}), Kind::Read)
        .await?;
    Ok(match &body["result"] {
        Json::Array(codes) => codes.iter().filter_map(text).collect(),
        Json::Object(map) => map.values().filter_map(text).collect(),
        _ => Vec::new(),
    })
}

/// Register `code` with `fields`: add when the portal does not list it, else update.
pub async fn register(
    client: &Client,
    code: &str,
    fields: &Json,
    listed: bool,
) -> Result<Change, B24Error> {
    if listed {
        let params = json!({"CODE": code, "FIELDS": fields});
        client
            .call("bizproc.activity.update", &params, Kind::Write)
            .await?;
        Ok(Change::Updated)
    } else {
        client
            .call(
                "bizproc.activity.add",
                &add_params(code, fields),
                Kind::Write,
            )
            .await?;
        Ok(Change::Added)
    }
}

/// Remove `code` from the portal.
pub async fn delete(client: &Client, code: &str) -> Result<Change, B24Error> {
    client
        .call(
            "bizproc.activity.delete",
            &json!({"CODE": code}),
            Kind::Write,
        )
        .await?;
    Ok(Change::Deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declaration() -> Declaration {
        serde_json::from_value(json!({
            "code": "b24etl_update_deal",
            "name": {"ru": "Изменение Сделки", "en": "Update deal"},
            "auth_user_id": 1,
            "filter": {"INCLUDE": [["crm"]]},
            "properties": {
                "deal_id": {"name": "ID Сделки", "type": "int", "required": true, "default": "{=Document:ID}"},
                "contact_ids": {"name": "Контакт(ы)", "type": "int", "multiple": true},
                "type_id": {"name": "Тип", "type": "select",
                    "options_from": {"method": "crm.status.list", "key": "STATUS_ID", "label": "NAME"}},
                "password": {"name": "Пароль", "secret": true, "default": "x"},
                "priority": {"name": "Важность", "type": "select", "options": {"1": "Низкая"}}
            },
            "return_properties": {"result": {"name": "Результат"}}
        }))
        .unwrap()
    }

    #[test]
    fn fields_follow_the_declaration() {
        let mut resolved = ResolvedOptions::new();
        resolved.insert(
            "type_id".into(),
            IndexMap::from([("SALE".to_string(), "Продажа".to_string())]),
        );
        let f = activity_fields(&declaration(), "https://etl.example/", &resolved);
        assert_eq!(f["HANDLER"], "https://etl.example/bp/b24etl_update_deal");
        assert_eq!(f["USE_SUBSCRIPTION"], "Y");
        assert_eq!(f["AUTH_USER_ID"], 1);
        assert_eq!(f["NAME"]["ru"], "Изменение Сделки");
        let p = &f["PROPERTIES"];
        assert_eq!(
            p["deal_id"],
            json!({"Name": "ID Сделки", "Type": "int", "Required": "Y", "Multiple": "N", "Default": "{=Document:ID}"})
        );
        assert_eq!(p["contact_ids"]["Multiple"], "Y");
        assert_eq!(p["type_id"]["Options"], json!({"SALE": "Продажа"}));
        assert_eq!(p["priority"]["Options"], json!({"1": "Низкая"}));
        assert!(p["password"].get("Default").is_none(), "{p}");
        assert_eq!(f["RETURN_PROPERTIES"]["result"]["Type"], "string");
        assert_eq!(f["FILTER"], json!({"INCLUDE": [["crm"]]}));
        let params = add_params("b24etl_update_deal", &f);
        assert_eq!(params["CODE"], "b24etl_update_deal");
        assert_eq!(
            fingerprint("b24etl_update_deal", &f),
            fingerprint("b24etl_update_deal", &f)
        );
    }
}
