//! `crm.item.list` (the universal API) over the same tables as the legacy `crm.*.list` methods:
//! `entityTypeId` (1 lead, 2 deal, 3 contact, 4 company), camelCase `select`/`filter`/`order`,
//! rows in `result.items` with native numbers for IDs, and the multiple bindings the legacy lists
//! cannot give: `contactIds` of a deal, `companyIds` of a contact (RD crm-item-list.md). This is
//! how the activity reports read every link at 2,500 rows per request.

use serde_json::{Map, Value, json};

use super::data::{Portal, id_of};
use super::filter::{Filter, parse_order, project, resolve_select, run_list};
use super::methods::{ApiError, Reply};
use super::params::{as_i64, get_ci, scalar_text};

/// `companyId` -> `COMPANY_ID`, `id` -> `ID`.
pub fn to_upper_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// `COMPANY_ID` -> `companyId`.
pub fn to_camel(upper: &str) -> String {
    let mut out = String::with_capacity(upper.len());
    let mut up = false;
    for c in upper.chars() {
        if c == '_' {
            up = true;
        } else if up {
            out.push(c.to_ascii_uppercase());
            up = false;
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

fn entity_of(type_id: i64) -> Option<&'static str> {
    Some(match type_id {
        1 => "lead",
        2 => "deal",
        3 => "contact",
        4 => "company",
        31 => "smart_invoice",
        _ => return None,
    })
}

/// Filter key with its operator prefix: `>=updatedTime` -> `>=UPDATED_TIME`.
fn filter_key(key: &str) -> String {
    let split = key.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(0);
    let (op, field) = key.split_at(split);
    format!("{op}{}", to_upper_snake(field))
}

fn is_id_field(upper: &str) -> bool {
    upper == "ID" || upper.ends_with("_ID")
}

pub fn item_list(portal: &Portal, params: &Map<String, Value>) -> Result<Reply, ApiError> {
    let type_id = get_ci(params, "entityTypeId").and_then(as_i64).unwrap_or(0);
    let entity = entity_of(type_id)
        .ok_or_else(|| ApiError::new(400, "NOT_FOUND", "Smart process not found"))?;
    // Smart invoices exist on every portal, even before the first one is created.
    let fresh;
    let t = match portal.table(entity) {
        Some(t) => t,
        None => {
            fresh = super::data::Table::new(entity, Vec::new());
            &fresh
        }
    };

    let mut filter = Map::new();
    if let Some(Value::Object(f)) = get_ci(params, "filter") {
        for (k, v) in f {
            let key = filter_key(k);
            let field = key.trim_start_matches(|c: char| !c.is_ascii_alphabetic());
            if t.col(field).is_none() {
                return Err(ApiError::new(
                    400,
                    "INVALID_ARG_VALUE",
                    &format!("Invalid filter: field '{k}' is not allowed in filter"),
                ));
            }
            filter.insert(key, v.clone());
        }
    }
    let order_v = match get_ci(params, "order") {
        Some(Value::Object(o)) => Some(Value::Object(
            o.iter()
                .map(|(k, v)| (to_upper_snake(k), v.clone()))
                .collect(),
        )),
        _ => None,
    };
    let order = parse_order(order_v.as_ref());

    // Bindings come from the link tables, not from columns.
    let wanted: Vec<String> = match get_ci(params, "select") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| scalar_text(v).map(|s| s.trim().to_string()))
            .collect(),
        _ => vec!["*".into()],
    };
    let all = wanted.iter().any(|w| w == "*");
    let contact_ids = entity == "deal" && (all || wanted.iter().any(|w| w == "contactIds"));
    let company_ids = entity == "contact" && (all || wanted.iter().any(|w| w == "companyIds"));
    let columns: Vec<Value> = wanted
        .iter()
        .filter(|w| !matches!(w.as_str(), "contactIds" | "companyIds"))
        .map(|w| Value::from(to_upper_snake(w)))
        .collect();
    let cols = resolve_select(t, Some(&Value::Array(columns)));

    let f = Filter::compile(t, &filter, portal.offset_secs);
    let start = get_ci(params, "start")
        .and_then(as_i64)
        .map_or(0, |s| if s < 0 { -1 } else { s });
    let page = run_list(t, &f, &order, start);
    let mut items = Vec::with_capacity(page.ids.len());
    for id in &page.ids {
        let Some(raw) = t.raw(*id) else { continue };
        let mut item = Map::new();
        for (k, v) in project(t, raw, &cols) {
            let v = match (&v, is_id_field(&k)) {
                (Value::String(s), true) => s
                    .trim()
                    .parse::<i64>()
                    .map(Value::from)
                    .unwrap_or(Value::Null),
                _ => v,
            };
            item.insert(to_camel(&k), v);
        }
        if contact_ids {
            let ids: Vec<u64> = portal
                .deal_contacts(*id)
                .iter()
                .filter_map(|r| r.get("CONTACT_ID").and_then(id_of))
                .collect();
            item.insert("contactIds".into(), json!(ids));
        }
        if company_ids {
            let ids: Vec<u64> = portal
                .contact_companies(*id)
                .iter()
                .filter_map(|r| r.get("COMPANY_ID").and_then(id_of))
                .collect();
            item.insert("companyIds".into(), json!(ids));
        }
        items.push(Value::Object(item));
    }
    let n = items.len();
    Ok(Reply {
        result: json!({ "items": items }),
        total: Some(page.total.unwrap_or(0)),
        next: page.next,
        rows: n,
        counted: page.total.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_convert_both_ways() {
        assert_eq!(to_upper_snake("assignedById"), "ASSIGNED_BY_ID");
        assert_eq!(to_upper_snake("id"), "ID");
        assert_eq!(to_camel("COMPANY_ID"), "companyId");
        assert_eq!(filter_key(">=updatedTime"), ">=UPDATED_TIME");
    }

    #[test]
    fn deals_and_contacts_carry_their_bindings() {
        let mut p = Portal::bulk_deals(10);
        p.link_deal_contact(3, 1, true);
        p.link_deal_contact(3, 2, false);
        p.link_contact_company(1, 7, true);
        let params = json!({"entityTypeId": 2, "select": ["id", "companyId", "contactIds"], "filter": {">id": 2}, "order": {"id": "ASC"}, "start": -1});
        let r = item_list(&p, params.as_object().unwrap()).unwrap();
        let first = &r.result["items"][0];
        assert_eq!(first["id"], 3);
        assert!(
            first["contactIds"].as_array().unwrap().contains(&json!(2)),
            "{first}"
        );
        assert_eq!(r.total, Some(0));
        let params =
            json!({"entityTypeId": 3, "select": ["id", "companyIds"], "filter": {"id": 1}});
        let r = item_list(&p, params.as_object().unwrap()).unwrap();
        assert_eq!(r.result["items"][0]["companyIds"], json!([7]));
        let bad = json!({"entityTypeId": 3, "filter": {"nope": 1}});
        assert_eq!(
            item_list(&p, bad.as_object().unwrap()).unwrap_err().code,
            "INVALID_ARG_VALUE"
        );
    }
}
