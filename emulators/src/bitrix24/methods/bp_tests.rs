//! The CRM methods the business-process actions call, on the demo portal.

use super::*;

fn env() -> Env {
    Env {
        now: 1_718_010_000,
        user_id: 1,
        scopes: vec!["crm".into(), "user".into(), "department".into()],
        client_id: None,
        admin: true,
    }
}

fn run(p: &mut Portal, method: &str, params: Value) -> Result<Value, ApiError> {
    call(p, method, params.as_object().unwrap(), &env()).map(|r| r.result)
}

fn err(p: &mut Portal, method: &str, params: Value) -> (u16, String, String) {
    let e = run(p, method, params).unwrap_err();
    (e.status, e.code, e.description)
}

#[test]
fn deal_update_replaces_contacts_and_keeps_its_pipeline() {
    let mut p = Portal::demo();
    let r = run(
        &mut p,
        "crm.deal.update",
        json!({"id": 96000, "fields": {
        "TITLE": "Новая", "CATEGORY_ID": 1, "CONTACT_IDS": [39904, 39906]}}),
    );
    assert_eq!(r.unwrap(), json!(true));
    let d = p.get("deal", 96000).unwrap();
    assert_eq!(
        (d["TITLE"].clone(), d["CATEGORY_ID"].clone()),
        (json!("Новая"), json!("0"))
    );
    assert_eq!(d["CONTACT_ID"], "39904");
    let links = run(&mut p, "crm.deal.contact.items.get", json!({"id": 96000})).unwrap();
    let ids: Vec<Value> = links
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["CONTACT_ID"].clone())
        .collect();
    assert_eq!(ids, vec![json!(39904), json!(39906)]);
    assert_eq!(links[0]["IS_PRIMARY"], "Y");
    run(
        &mut p,
        "crm.contact.update",
        json!({"id": 39904, "fields": {"COMPANY_IDS": [2, 3]}}),
    )
    .unwrap();
    assert_eq!(p.contact_companies(39904).len(), 2);
    assert_eq!(p.get("contact", 39904).unwrap()["COMPANY_ID"], "2");
    assert_eq!(
        err(
            &mut p,
            "crm.deal.update",
            json!({"id": 5, "fields": {"TITLE": "x"}})
        )
        .2,
        "Deal is not found"
    );
}

#[test]
fn item_update_moves_a_deal_to_another_pipeline() {
    let mut p = Portal::demo();
    let r = run(
        &mut p,
        "crm.item.update",
        json!({"entityTypeId": 2, "id": 96000, "fields": {"categoryId": 1}}),
    )
    .unwrap();
    assert_eq!(
        (
            r["item"]["categoryId"].clone(),
            r["item"]["stageId"].clone()
        ),
        (json!(1), json!("C1:NEW"))
    );
    let r = run(
        &mut p,
        "crm.item.update",
        json!({"entityTypeId": 2, "id": 96000, "fields": {"stageId": "C1:WON", "title": "T"}}),
    )
    .unwrap();
    assert_eq!(
        (r["item"]["stageId"].clone(), r["item"]["title"].clone()),
        (json!("C1:WON"), json!("T"))
    );
    let e = err(
        &mut p,
        "crm.item.update",
        json!({"entityTypeId": 2, "id": 96000, "fields": {"stageId": "WON"}}),
    );
    assert_eq!((e.0, e.1.as_str()), (400, "INVALID_ARG_VALUE"));
    let e = err(&mut p, "crm.item.get", json!({"entityTypeId": 2, "id": 1}));
    assert_eq!(
        (e.1.as_str(), e.2.as_str()),
        ("NOT_FOUND", "Element not found")
    );
    let got = run(
        &mut p,
        "crm.item.get",
        json!({"entityTypeId": 2, "id": 96000}),
    )
    .unwrap();
    assert_eq!(got["item"]["id"], 96000);
    assert!(got["item"]["contactIds"].is_array());
}

#[test]
fn company_contacts_and_multi_fields() {
    let mut p = Portal::demo();
    let before = p.company_contacts(1);
    let r = run(
        &mut p,
        "crm.company.contact.items.set",
        json!({"id": 1, "items": [{"CONTACT_ID": 39900}, {"CONTACT_ID": 39902}]}),
    );
    assert_eq!(r.unwrap(), json!(true));
    assert_eq!(p.company_contacts(1), vec![39900, 39902]);
    assert!(
        before
            .iter()
            .all(|c| [39900, 39902].contains(c) || !p.company_contacts(1).contains(c))
    );
    assert_eq!(
        err(
            &mut p,
            "crm.company.contact.items.set",
            json!({"id": 999, "items": []})
        )
        .2,
        "Not found"
    );
    assert_eq!(
        err(
            &mut p,
            "crm.company.contact.items.set",
            json!({"id": 1, "items": "x"})
        )
        .2,
        "The parameter items must be array."
    );
    assert_eq!(
        err(
            &mut p,
            "crm.company.contact.items.set",
            json!({"items": []})
        )
        .2,
        "The parameter ownerEntityID is invalid or not defined."
    );
    run(
        &mut p,
        "crm.company.update",
        json!({"id": 1, "fields": {"IM": [{"VALUE": "tg_romashka", "VALUE_TYPE": "TELEGRAM"}],
        "PHONE": [{"VALUE": "+7 900 000-00-01"}], "ADDRESS_CITY": "Тверь"}}),
    )
    .unwrap();
    let c = run(&mut p, "crm.company.get", json!({"id": 1})).unwrap();
    assert_eq!(c["IM"][0]["VALUE"], "tg_romashka");
    assert_eq!(c["ADDRESS_CITY"], "Тверь");
    let phone_id = c["PHONE"][0]["ID"].clone();
    run(
        &mut p,
        "crm.company.update",
        json!({"id": 1, "fields": {"PHONE": [{"ID": phone_id, "DELETE": "Y"}]}}),
    )
    .unwrap();
    assert!(
        run(&mut p, "crm.company.get", json!({"id": 1}))
            .unwrap()
            .get("PHONE")
            .is_none()
    );
}

#[test]
fn activity_add_rules_origin_and_delete() {
    let mut p = Portal::demo();
    let good = json!({"OWNER_TYPE_ID": 2, "OWNER_ID": 96000, "TYPE_ID": 2, "SUBJECT": "Позвонить",
        "RESPONSIBLE_ID": 932, "COMMUNICATIONS": [{"VALUE": "+79000000000", "ENTITY_ID": 96000, "ENTITY_TYPE_ID": 2}],
        "ORIGINATOR_ID": "b24etl", "ORIGIN_ID": "b24etl:abc"});
    let without = |k: &str| {
        let mut f = good.clone();
        f.as_object_mut().unwrap().remove(k);
        json!({"fields": f})
    };
    for (k, want) in [
        (
            "OWNER_TYPE_ID",
            "The field OWNER_TYPE_ID is not defined or invalid.",
        ),
        ("OWNER_ID", "The field OWNER_ID is not defined or invalid."),
        ("TYPE_ID", "The field TYPE_ID is not defined or invalid."),
        ("SUBJECT", "The field SUBJECT is not defined or empty."),
        (
            "RESPONSIBLE_ID",
            "The field RESPONSIBLE_ID is not defined or invalid.",
        ),
        (
            "COMMUNICATIONS",
            "The field COMMUNICATIONS is not defined or invalid.",
        ),
    ] {
        assert_eq!(
            err(&mut p, "crm.activity.add", without(k)),
            (400, String::new(), want.to_string()),
            "{k}"
        );
    }
    let mut missing_owner = good.clone();
    missing_owner["OWNER_ID"] = json!(1);
    assert_eq!(
        err(&mut p, "crm.activity.add", json!({"fields": missing_owner})).2,
        "Access denied."
    );
    let id = run(&mut p, "crm.activity.add", json!({"fields": good})).unwrap();
    let found = run(&mut p, "crm.activity.list", json!({"filter": {"ORIGIN_ID": "b24etl:abc"}, "select": ["ID", "ORIGIN_ID", "COMMUNICATIONS"]})).unwrap();
    assert_eq!(found.as_array().unwrap().len(), 1);
    assert_eq!(found[0]["ID"], json!(id.as_u64().unwrap().to_string()));
    assert_eq!(found[0]["COMMUNICATIONS"][0]["VALUE"], "+79000000000");
    let star = run(
        &mut p,
        "crm.activity.list",
        json!({"filter": {"ORIGIN_ID": "b24etl:abc"}}),
    )
    .unwrap();
    assert!(
        star[0].get("COMMUNICATIONS").is_none(),
        "communications need an explicit select"
    );
    assert_eq!(
        run(&mut p, "crm.activity.delete", json!({"id": id})).unwrap(),
        json!(true)
    );
    assert_eq!(
        err(&mut p, "crm.activity.delete", json!({"id": id})).2,
        "Activity is not found"
    );
}

#[test]
fn timeline_comment_rules() {
    let mut p = Portal::demo();
    let f = json!({"ENTITY_TYPE": "deal", "ENTITY_ID": 96000, "COMMENT": "[B]Итог[/B]\nтекст"});
    assert_eq!(
        err(&mut p, "crm.timeline.comment.add", json!({"FIELDS": f})).1,
        "100"
    );
    let e = err(
        &mut p,
        "crm.timeline.comment.add",
        json!({"fields": {"ENTITY_TYPE": "deal", "ENTITY_ID": 1, "COMMENT": "x"}}),
    );
    assert_eq!((e.0, e.1.as_str()), (400, "OWNER_NOT_FOUND"));
    let e = err(
        &mut p,
        "crm.timeline.comment.add",
        json!({"fields": {"ENTITY_TYPE": "deal", "ENTITY_ID": 96000, "COMMENT": " "}}),
    );
    assert_eq!(e.1, "INVALID_ARG_VALUE");
    let id = run(&mut p, "crm.timeline.comment.add", json!({"fields": f})).unwrap();
    let row = p.get("timeline_comment", id.as_u64().unwrap()).unwrap();
    assert_eq!(
        (row["ENTITY_ID"].clone(), row["COMMENT"].clone()),
        (json!("96000"), json!("[B]Итог[/B]\nтекст"))
    );
}

#[test]
fn invoices_dictionaries_users() {
    let mut p = Portal::demo();
    let inv = run(&mut p, "crm.invoice.get", json!({"id": 501})).unwrap();
    assert_eq!(
        (inv["STATUS_ID"].clone(), inv["ACCOUNT_NUMBER"].clone()),
        (json!("P"), json!("501"))
    );
    assert!(!inv["PRODUCT_ROWS"].as_array().unwrap().is_empty());
    assert_eq!(
        err(&mut p, "crm.invoice.get", json!({"id": 9})).2,
        "Not found"
    );
    let stages = run(
        &mut p,
        "crm.status.list",
        json!({"filter": {"ENTITY_ID": "DEAL_STAGE_1"}}),
    )
    .unwrap();
    assert_eq!(stages[0]["STATUS_ID"], "C1:NEW");
    assert_eq!(stages[0]["CATEGORY_ID"], "1");
    let industries = run(
        &mut p,
        "crm.status.list",
        json!({"filter": {"ENTITY_ID": "INDUSTRY"}, "order": {"SORT": "DESC"}}),
    )
    .unwrap();
    assert_eq!(industries[0]["STATUS_ID"], "OTHER");
    assert_eq!(
        run(&mut p, "crm.currency.list", json!({})).unwrap()[0]["CURRENCY"],
        "RUB"
    );
    let cats = run(&mut p, "crm.category.list", json!({"entityTypeId": 2})).unwrap();
    assert_eq!(cats["categories"][1]["id"], 1);
    let u = run(&mut p, "user.get", json!({"ID": 932})).unwrap();
    assert_eq!(
        (u[0]["PERSONAL_CITY"].clone(), u[0]["ACTIVE"].clone()),
        (json!("Москва"), json!(true))
    );
    assert_eq!(u[0]["UF_DEPARTMENT"], json!([5]));
    let d = run(&mut p, "department.get", json!({"ID": 5})).unwrap();
    assert_eq!(d[0]["NAME"], "Отдел продаж");
}
