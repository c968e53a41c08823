use super::*;

fn env() -> Env {
    Env {
        now: 1_717_225_200,
        user_id: 1,
        scopes: vec!["crm".into()],
        client_id: None,
        admin: true,
    }
}
fn obj(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

#[test]
fn update_rules() {
    let mut p = Portal::new();
    p.insert("contact", obj(json!({"ID": 43, "NAME": "A", "DATE_MODIFY": "2020-01-01T00:00:00+03:00",
        "PHONE": [{"ID": "222", "VALUE": "1"}, {"ID": "223", "VALUE": "2"}, {"ID": "224", "VALUE": "3"}, {"ID": "225", "VALUE": "4"}]})));
    let r = call(&mut p, "crm.contact.update", &obj(json!({"ID": "43", "FIELDS": {
        "NAME": "B", "NO_SUCH": 1, "DATE_CREATE": "x", "UF_CRM_1470852549": ["48", "12708"],
        "UF_CRM_1607943642": "29.11.2009", "OPENED": true,
        "PHONE": [{"ID": 223, "VALUE": "444444", "VALUE_TYPE": "MOBILE"}, {"ID": 222, "DELETE": "Y"}, {"ID": "224"}, {"ID": 225, "VALUE": ""}, {"VALUE": "+4930123", "VALUE_TYPE": "WORK"}, {"ID": 999, "VALUE": "x"}]
    }})), &env()).unwrap();
    assert_eq!(r.result, json!(true));
    let row = p.get("contact", 43).unwrap();
    assert_eq!(row["NAME"], "B");
    assert!(!row.contains_key("NO_SUCH"));
    assert!(row.get("DATE_CREATE").is_none());
    assert_eq!(row["DATE_MODIFY"], "2024-06-01T10:00:00+03:00");
    assert_eq!(row["MODIFY_BY_ID"], "1");
    assert_eq!(row["UF_CRM_1470852549"], json!([48, 12708]));
    assert_eq!(row["UF_CRM_1607943642"], "2009-11-29T03:00:00+03:00");
    assert_eq!(row["OPENED"], "Y");
    assert_eq!(row["HAS_PHONE"], "Y");
    let phones = row["PHONE"].as_array().unwrap();
    assert_eq!(phones.len(), 2);
    assert_eq!(
        phones[0],
        json!({"ID": "223", "VALUE": "444444", "VALUE_TYPE": "MOBILE", "TYPE_ID": "PHONE"})
    );
    assert_eq!(phones[1]["VALUE"], "+4930123");
    assert_eq!(p.mutations("crm.contact.update"), 1);
    // errors
    let e = call(
        &mut p,
        "crm.contact.update",
        &obj(json!({"id": 999, "fields": {}})),
        &env(),
    )
    .unwrap_err();
    assert_eq!(
        (e.status, e.code.as_str(), e.description.as_str()),
        (400, "", "Contact is not found")
    );
    let e = call(&mut p, "crm.contact.get", &obj(json!({"id": "x"})), &env()).unwrap_err();
    assert_eq!(e.description, "ID is not defined or invalid.");
    let e = call(&mut p, "crm.contact.get", &obj(json!({"id": 5})), &env()).unwrap_err();
    assert_eq!(
        e.body(),
        json!({"error": "", "error_description": "Not found"})
    );
    let e = call(
        &mut p,
        "crm.contact.list",
        &obj(json!({"filter": "x"})),
        &env(),
    )
    .unwrap_err();
    assert_eq!(e.description, "Parameter 'filter' must be array.");
    assert_eq!(
        call(&mut p, "crm.nope.list", &Map::new(), &env()).unwrap_err(),
        ApiError::method_not_found()
    );
}

#[test]
fn add_get_fields_and_users() {
    let mut p = Portal::new();
    let r = call(
        &mut p,
        "crm.deal.add",
        &obj(json!({"fields": {"TITLE": "T", "CONTACT_ID": 5, "OPPORTUNITY": 10.5}})),
        &env(),
    )
    .unwrap();
    assert_eq!(r.result, json!(1));
    let g = call(&mut p, "crm.deal.get", &obj(json!({"id": 1})), &env())
        .unwrap()
        .result;
    assert_eq!(g["ID"], "1");
    assert_eq!(g["CONTACT_ID"], "5");
    assert_eq!(g["OPPORTUNITY"], "10.5");
    assert_eq!(g["DATE_CREATE"], "2024-06-01T10:00:00+03:00");
    assert_eq!(g["COMMENTS"], Value::Null);
    assert_eq!(p.deal_contacts(1)[0]["CONTACT_ID"], 5);
    let f = call(&mut p, "crm.deal.fields", &Map::new(), &env())
        .unwrap()
        .result;
    assert_eq!(
        f["UF_CRM_1490347942"]["items"][0],
        json!({"ID": "450", "VALUE": "Наличные"})
    );
    assert_eq!(f["ID"]["isReadOnly"], true);
    p.insert(
        "user",
        obj(json!({"ID": 1, "ACTIVE": true, "NAME": "A", "UF_DEPARTMENT": [1]})),
    );
    p.insert(
        "user",
        obj(json!({"ID": 2, "ACTIVE": false, "NAME": "B", "UF_DEPARTMENT": [1, 5]})),
    );
    p.insert(
        "user",
        obj(json!({"ID": 3, "ACTIVE": true, "NAME": "C", "UF_DEPARTMENT": [5]})),
    );
    let ids = |params: Value, p: &mut Portal| -> Vec<String> {
        let r = call(p, "user.get", &obj(params), &env()).unwrap();
        r.result
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["ID"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(json!({"ACTIVE": true}), &mut p), vec!["1", "3"]);
    assert_eq!(
        ids(
            json!({"FILTER": {"ACTIVE": "Y"}, "sort": "ID", "order": "DESC"}),
            &mut p
        ),
        vec!["3", "1"]
    );
    assert_eq!(ids(json!({"UF_DEPARTMENT": "5"}), &mut p), vec!["2", "3"]);
    assert_eq!(ids(json!({"ID": "2"}), &mut p), vec!["2"]);
    p.insert(
        "department",
        obj(json!({"ID": 1, "NAME": "Root", "SORT": 500})),
    );
    p.insert(
        "department",
        obj(json!({"ID": 5, "NAME": "Sales", "SORT": 100, "PARENT": "1", "UF_HEAD": "3"})),
    );
    let r = call(&mut p, "department.get", &obj(json!({"PARENT": 1})), &env()).unwrap();
    assert_eq!(
        r.result,
        json!([{"ID": "5", "NAME": "Sales", "SORT": 100, "PARENT": "1", "UF_HEAD": "3"}])
    );
    assert_eq!(r.total, Some(1));
    let r = call(
        &mut p,
        "department.get",
        &obj(json!({"sort": "SORT", "order": "ASC"})),
        &env(),
    )
    .unwrap();
    assert_eq!(r.result[0]["ID"], "5");
    assert!(r.result[1].get("UF_HEAD").is_none());
}

#[test]
fn product_rows_of_many_deals_in_one_list_command() {
    let mut p = Portal::new();
    for deal in 1..=3u64 {
        p.insert("deal", obj(json!({"ID": deal, "TITLE": "d"})));
    }
    let row = crate::bitrix24::generate::product_row;
    p.add_product_row(1, row(0, 10));
    p.add_product_row(2, row(1, 10));
    p.add_product_row(2, row(2, 20));
    let list =
        |p: &mut Portal, params: Value| call(p, "crm.item.productrow.list", &obj(params), &env());

    let r = list(
        &mut p,
        json!({"filter": {"=ownerType": "D", "=ownerId": ["1", 2, 3]}}),
    )
    .unwrap();
    let rows = r.result["productRows"].as_array().unwrap();
    let owners: Vec<&Value> = rows.iter().map(|r| &r["ownerId"]).collect();
    assert_eq!(owners, [&json!(1), &json!(2), &json!(2)]);
    assert_eq!((r.total, r.next), (Some(3), None));
    // The universal shape: camelCase, numbers where the legacy method gives strings.
    assert!(
        rows[0]["id"].is_u64() && rows[0]["priceAccount"].is_number(),
        "{}",
        rows[0]
    );
    assert_eq!(rows[0]["ownerType"], "D");
    assert!(rows[0].get("PRICE").is_none() && rows[0].get("originalProductName").is_none());

    // Other conditions, order and pages.
    let r = list(
        &mut p,
        json!({"filter": {"=ownerType": "D", "=ownerId": 2, ">sort": 10}}),
    )
    .unwrap();
    assert_eq!(r.result["productRows"].as_array().unwrap().len(), 1);
    let r = list(
        &mut p,
        json!({"filter": {"=ownerType": "D", "=ownerId": [1, 2]}, "order": {"id": "desc"}}),
    )
    .unwrap();
    assert_eq!(r.result["productRows"][0]["ownerId"], json!(2));
    for deal in 1..=3u64 {
        for n in 0..30 {
            p.add_product_row(deal, row(n, n as u64));
        }
    }
    let page = |p: &mut Portal, start: usize| {
        let params = json!({"filter": {"=ownerType": "D", "=ownerId": [1, 2, 3]}, "start": start});
        let r = list(p, params).unwrap();
        (r.total, r.next, r.rows)
    };
    assert_eq!(page(&mut p, 0), (Some(93), Some(50), 50));
    assert_eq!(page(&mut p, 50), (Some(93), None, 43));

    // Both owner keys are required.
    let e = list(&mut p, json!({"filter": {"=ownerId": 1}})).unwrap_err();
    assert_eq!(e.code, "INVALID_ARG_VALUE");
    let e = list(&mut p, json!({})).unwrap_err();
    assert_eq!(e.code, "100");
}
