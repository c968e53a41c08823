use super::*;
use crate::bitrix24::data::Portal;
use serde_json::json;

fn portal() -> Portal {
    let mut p = Portal::new();
    for i in 1..=120u64 {
        p.insert(
            "contact",
            json!({
                "ID": i, "NAME": format!("Name{i}"), "LAST_NAME": if i % 2 == 0 { "Even" } else { "odd" },
                "ASSIGNED_BY_ID": (i % 3).to_string(),
                "DATE_MODIFY": crate::bitrix24::dates::format_ts(1_717_225_200 + (i as i64) * 3600, 3 * 3600),
                "UF_CRM_1470852549": if i % 10 == 0 { json!([48, 12708]) } else { json!([48]) },
                "PHONE": if i == 7 { json!([{"VALUE": "+7 926 000"}]) } else { json!(null) },
                "UF_CRM_SYNC_STATUS": if i < 5 { "" } else { "ok" },
            })
            .as_object()
            .unwrap()
            .clone(),
        );
    }
    p
}

fn ids(p: &Portal, filter: Value, order: Value, start: i64) -> Page {
    let t = p.table("contact").unwrap();
    let f = Filter::compile(t, filter.as_object().unwrap(), 3 * 3600);
    run_list(t, &f, &parse_order(Some(&order)), start)
}

#[test]
fn operators() {
    let p = portal();
    assert_eq!(split_op(">=DATE"), (Op::Ge, "DATE"));
    assert_eq!(split_op("!%=X"), (Op::NotPattern, "X"));
    assert_eq!(split_op("!X"), (Op::Ne, "X"));
    let count = |f: Value| ids(&p, f, json!({}), 0).total.unwrap();
    assert_eq!(count(json!({">ID": "100"})), 20);
    assert_eq!(count(json!({">=ID": 100, "<ID": "110"})), 10);
    assert_eq!(count(json!({"ID": "7"})), 1);
    assert_eq!(count(json!({"ID": "abc"})), 0);
    assert_eq!(
        count(json!({">ID": "$result[p0][49][ID]"})),
        120,
        "PHP coerces to 0"
    );
    assert_eq!(count(json!({"@ID": ["1", "2", 300]})), 2);
    assert_eq!(count(json!({"!@ID": ["1", "2"]})), 118);
    assert_eq!(count(json!({"LAST_NAME": "EVEN"})), 60);
    assert_eq!(count(json!({"!LAST_NAME": "even"})), 60);
    assert_eq!(count(json!({"!=LAST_NAME": "even"})), 60);
    assert_eq!(count(json!({"%NAME": "ame11"})), 11);
    assert_eq!(count(json!({"=%NAME": "name1_"})), 10);
    assert_eq!(count(json!({"%=NAME": "NAME12%"})), 1 + 1);
    assert_eq!(count(json!({"UF_CRM_1470852549": "12708"})), 12);
    assert_eq!(count(json!({"@UF_CRM_1470852549": [12708, 5]})), 12);
    assert_eq!(count(json!({"PHONE": "+7 926 000"})), 1);
    assert_eq!(count(json!({"UF_CRM_SYNC_STATUS": ""})), 4);
    assert_eq!(count(json!({"!UF_CRM_SYNC_STATUS": ""})), 116);
    assert_eq!(
        count(json!({"NO_SUCH_FIELD": "x"})),
        120,
        "unknown fields are ignored"
    );
    // numeric, not text, comparison for ID-like fields
    assert_eq!(count(json!({">ASSIGNED_BY_ID": "1"})), 40);
    // datetimes: with offset, without (portal local), and another offset
    assert_eq!(
        count(json!({">DATE_MODIFY": "2024-06-01T20:00:00+03:00"})),
        110
    );
    assert_eq!(count(json!({">DATE_MODIFY": "2024-06-01T20:00:00"})), 110);
    assert_eq!(
        count(json!({">DATE_MODIFY": "2024-06-01T17:00:00+00:00"})),
        110
    );
    assert_eq!(
        count(json!({">=DATE_MODIFY": "2024-06-01T20:00:00+03:00"})),
        111
    );
    assert_eq!(count(json!({"<DATE_MODIFY": "2024-06-01"})), 0);
    assert_eq!(
        count(json!({">DATE_MODIFY": "2024-06-01T20:00:00 03:00"})),
        0,
        "unencoded '+' matches nothing"
    );
    assert!(like("abc", "a%") && like("abc", "_b_") && !like("abc", "b%") && like("abc", "%c"));
}

#[test]
fn pages_and_order() {
    let p = portal();
    let pg = ids(&p, json!({}), json!({}), 0);
    assert_eq!((pg.ids.len(), pg.total, pg.next), (50, Some(120), Some(50)));
    assert_eq!(pg.ids[0], 1);
    let pg = ids(&p, json!({}), json!({}), 100);
    assert_eq!((pg.ids.len(), pg.total, pg.next), (20, Some(120), None));
    let pg = ids(&p, json!({">ID": 60}), json!({"ID": "ASC"}), -1);
    assert_eq!(
        (pg.ids.len(), pg.total, pg.next, pg.ids[0]),
        (50, None, None, 61)
    );
    let pg = ids(&p, json!({}), json!({"id": "desc"}), 0);
    assert_eq!(pg.ids[0], 120);
    let pg = ids(
        &p,
        json!({}),
        json!({"LAST_NAME": "ASC", "DATE_MODIFY": "DESC"}),
        0,
    );
    assert_eq!(&pg.ids[..2], &[120, 118]);
    let pg = ids(&p, json!({}), json!({"ASSIGNED_BY_ID": "DESC"}), 0);
    assert_eq!(&pg.ids[..2], &[2, 5]);
}

#[test]
fn select_masks() {
    let p = portal();
    let t = p.table("contact").unwrap();
    let names = |s: Value| -> Vec<String> {
        resolve_select(t, Some(&s))
            .into_iter()
            .map(|c| t.columns()[c].clone())
            .collect()
    };
    let star = names(json!(["*"]));
    assert!(star.contains(&"NAME".to_string()) && !star.contains(&"PHONE".to_string()));
    assert!(!star.iter().any(|c| c.starts_with("UF_")));
    let uf = names(json!(["UF_*"]));
    assert_eq!(uf[0], "ID");
    assert!(uf[1..].iter().all(|c| c.starts_with("UF_")));
    assert_eq!(names(json!(["NAME", "phone"])), vec!["ID", "NAME", "PHONE"]);
    let all = names(json!([]));
    assert!(all.contains(&"UF_CRM_1470852549".to_string()) && !all.contains(&"EMAIL".to_string()));
    let row = project(
        t,
        t.raw(7).unwrap(),
        &resolve_select(t, Some(&json!(["PHONE", "EMAIL", "POST"]))),
    );
    assert_eq!(
        Value::Object(row),
        json!({"ID": "7", "POST": null, "PHONE": [{"VALUE": "+7 926 000", "ID": "1000", "VALUE_TYPE": "WORK", "TYPE_ID": "PHONE"}]})
    );
}

#[test]
fn counted_pages_of_one_query_share_a_scan_that_any_change_forgets() {
    let mut p = portal();
    let even = || json!({"LAST_NAME": "Even", ">ID": 10});
    let pg = ids(&p, even(), json!({"ID": "ASC"}), 0);
    assert_eq!((pg.ids[0], pg.total, pg.next), (12, Some(55), Some(50)));
    // Another offset of the same query: the cached matches, cut at the offset.
    let pg = ids(&p, even(), json!({"ID": "ASC"}), 50);
    assert_eq!(
        (pg.ids.clone(), pg.total, pg.next),
        (vec![112, 114, 116, 118, 120], Some(55), None)
    );
    let sorted = || ids(&p, even(), json!({"DATE_MODIFY": "DESC"}), 1);
    assert_eq!((sorted().ids[0], sorted().total), (118, Some(55)));
    // A change of the table: the next scan sees it.
    assert!(p.set_field("contact", 12, "LAST_NAME", json!("odd")));
    let pg = ids(&p, even(), json!({"ID": "ASC"}), 0);
    assert_eq!((pg.ids[0], pg.total), (14, Some(54)));
    assert!(p.set_field("contact", 120, "LAST_NAME", json!("odd")));
    let pg = ids(&p, even(), json!({"DATE_MODIFY": "DESC"}), 0);
    assert_eq!((pg.ids[0], pg.total), (118, Some(53)));
}
