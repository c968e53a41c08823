//! The methods of the invoice, callback and booking actions, on the demo portal.

use super::*;

fn env(user: u64) -> Env {
    Env {
        now: 1_718_010_000,
        user_id: user,
        scopes: vec!["crm".into()],
        client_id: None,
        admin: true,
    }
}

fn run_as(p: &mut Portal, user: u64, method: &str, params: Value) -> Result<Value, ApiError> {
    call(p, method, params.as_object().unwrap(), &env(user)).map(|r| r.result)
}

fn run(p: &mut Portal, method: &str, params: Value) -> Result<Value, ApiError> {
    run_as(p, 1, method, params)
}

fn desc(p: &mut Portal, method: &str, params: Value) -> String {
    run(p, method, params).unwrap_err().description
}

#[test]
fn requisites_bank_details_addresses_first_by_id() {
    let mut p = Portal::demo();
    let rq = run(
        &mut p,
        "crm.requisite.list",
        json!({"filter": {"ENTITY_TYPE_ID": 4, "ENTITY_ID": 1}, "order": {"ID": "ASC"}}),
    )
    .unwrap();
    assert_eq!(rq.as_array().unwrap().len(), 2);
    assert_eq!(
        (rq[0]["ID"].clone(), rq[0]["RQ_INN"].clone()),
        (json!("11"), json!("7701234567"))
    );
    let none = run(
        &mut p,
        "crm.requisite.list",
        json!({"filter": {"ENTITY_TYPE_ID": 4, "ENTITY_ID": 2}}),
    )
    .unwrap();
    assert_eq!(none, json!([]));
    let bd = run(
        &mut p,
        "crm.requisite.bankdetail.list",
        json!({"filter": {"ENTITY_ID": 11}, "order": {"ID": "ASC"}}),
    )
    .unwrap();
    assert_eq!(bd[0]["ID"], "21");
    let addr = run(
        &mut p,
        "crm.address.list",
        json!({"filter": {"ENTITY_TYPE_ID": 8, "ENTITY_ID": 11, "TYPE_ID": 6}}),
    )
    .unwrap();
    assert_eq!(addr[0]["ADDRESS_1"], "ул. Тверская, 7");
    assert!(addr[0].get("ID").is_none());
    let pt = run(&mut p, "crm.persontype.list", json!({})).unwrap();
    assert_eq!(pt[1], json!({"ID": "2", "NAME": "CRM_COMPANY"}));
    assert_eq!(
        run(&mut p, "crm.paysystem.list", json!({})).unwrap()[1]["PERSON_TYPE_ID"],
        "2"
    );
    // empty portal: lists are empty, not unknown methods
    let mut fresh = Portal::new();
    assert_eq!(
        run(&mut fresh, "crm.requisite.list", json!({})).unwrap(),
        json!([])
    );
}

#[test]
fn invoice_add_list_link_and_requisite_links() {
    let mut p = Portal::demo();
    let fields = json!({"ORDER_TOPIC": "Сделка", "PERSON_TYPE_ID": 2, "PAY_SYSTEM_ID": 2, "UF_DEAL_ID": 96000,
        "UF_COMPANY_ID": 1, "XML_ID": "b24etl:k1",
        "PRODUCT_ROWS": [{"ID": 0, "PRODUCT_ID": 60132, "PRODUCT_NAME": "8 занятий", "PRICE": 6400, "QUANTITY": 2}]});
    for (k, want) in [
        (
            "ORDER_TOPIC",
            "The field ORDER_TOPIC is not defined or empty.",
        ),
        (
            "PAY_SYSTEM_ID",
            "The field PAY_SYSTEM_ID is not defined or empty.",
        ),
        ("PRODUCT_ROWS", "Invoice must contain products."),
    ] {
        let mut f = fields.clone();
        f.as_object_mut().unwrap().remove(k);
        assert_eq!(desc(&mut p, "crm.invoice.add", json!({"fields": f})), want);
    }
    let id = run(&mut p, "crm.invoice.add", json!({"fields": fields}))
        .unwrap()
        .as_u64()
        .unwrap();
    let inv = run(&mut p, "crm.invoice.get", json!({"id": id})).unwrap();
    assert_eq!(
        (
            inv["ACCOUNT_NUMBER"].clone(),
            inv["STATUS_ID"].clone(),
            inv["PRICE"].clone()
        ),
        (json!(id.to_string()), json!("N"), json!("12800.00"))
    );
    let found = run(
        &mut p,
        "crm.invoice.list",
        json!({"filter": {"XML_ID": "b24etl:k1"}, "select": ["ID"]}),
    )
    .unwrap();
    assert_eq!(found, json!([{"ID": id.to_string()}]));
    let link = run(&mut p, "crm.invoice.getexternallink", json!({"id": id})).unwrap();
    assert!(link.as_str().unwrap().contains(&format!("invoice_id={id}")));
    assert_eq!(
        desc(
            &mut p,
            "crm.invoice.getexternallink",
            json!({"id": 999_999})
        ),
        "Not found"
    );
    let reg = |rq: u64, bd: u64, mrq: u64, mbd: u64| {
        json!({"fields": {"ENTITY_TYPE_ID": 5, "ENTITY_ID": id,
        "REQUISITE_ID": rq, "BANK_DETAIL_ID": bd, "MC_REQUISITE_ID": mrq, "MC_BANK_DETAIL_ID": mbd}})
    };
    assert_eq!(
        run(&mut p, "crm.requisite.link.register", reg(11, 21, 0, 0)).unwrap(),
        json!(true)
    );
    assert!(
        desc(&mut p, "crm.requisite.link.register", reg(11, 23, 0, 0)).contains("bank details")
    );
    assert!(desc(&mut p, "crm.requisite.link.register", reg(99, 0, 0, 0)).contains("requisite"));
    let link = p.get("requisite_link", 5_000_000_000 + id).unwrap();
    assert_eq!(
        (
            link["REQUISITE_ID"].clone(),
            link["MC_REQUISITE_ID"].clone()
        ),
        (json!("11"), json!("0"))
    );
}

#[test]
fn smart_invoices_through_crm_item() {
    let mut p = Portal::demo();
    assert_eq!(
        run(&mut p, "crm.item.list", json!({"entityTypeId": 31})).unwrap()["items"],
        json!([])
    );
    let r = run(
        &mut p,
        "crm.item.add",
        json!({"entityTypeId": 31, "fields": {"title": "Счёт", "companyId": 1,
        "contactId": 39900, "mycompanyId": 8, "parentId2": 96000, "xmlId": "b24etl:k2"}}),
    )
    .unwrap();
    let item = &r["item"];
    let id = item["id"].as_u64().unwrap();
    assert_eq!(
        (
            item["accountNumber"].clone(),
            item["stageId"].clone(),
            item["parentId2"].clone()
        ),
        (json!(id.to_string()), json!("DT31_1:N"), json!(96000))
    );
    let rows = run(&mut p, "crm.item.productrow.set", json!({"ownerType": "SI", "ownerId": id,
        "productRows": [{"productId": 60132, "productName": "8 занятий", "price": 6400, "quantity": 1}]})).unwrap();
    assert_eq!(rows["productRows"][0]["ownerType"], "SI");
    let got = run(
        &mut p,
        "crm.item.get",
        json!({"entityTypeId": 31, "id": id}),
    )
    .unwrap();
    assert_eq!(got["item"]["opportunity"], json!(6400.0));
    let found = run(&mut p, "crm.item.list", json!({"entityTypeId": 31, "filter": {"xmlId": "b24etl:k2"}, "select": ["id", "accountNumber"]})).unwrap();
    assert_eq!(found["items"][0]["id"], json!(id));
    let e = run(
        &mut p,
        "crm.item.productrow.set",
        json!({"ownerType": "SI", "ownerId": 999, "productRows": []}),
    )
    .unwrap_err();
    assert_eq!(e.code, "NOT_FOUND");
}

#[test]
fn telephony_calendar_drive() {
    let mut p = Portal::demo();
    assert_eq!(
        run(&mut p, "voximplant.line.get", json!({})).unwrap()["reg151083"],
        "Облачная АТС (9)"
    );
    let r = run(&mut p, "voximplant.callback.start", json!({"FROM_LINE": "reg151083", "TO_NUMBER": "+7 (900) 123-45-67", "TEXT_TO_PRONOUNCE": "Клиент ждёт"})).unwrap();
    assert_eq!(r["RESULT"], true);
    assert!(r["CALL_ID"].as_str().unwrap().starts_with("callback."));
    assert_eq!(p.len("voximplant_callback"), 1);
    assert_eq!(
        desc(
            &mut p,
            "voximplant.callback.start",
            json!({"FROM_LINE": "nope", "TO_NUMBER": "+79001234567", "TEXT_TO_PRONOUNCE": "x"})
        ),
        "Could not find line nope"
    );
    assert_eq!(
        desc(
            &mut p,
            "voximplant.callback.start",
            json!({"FROM_LINE": "sip7", "TO_NUMBER": "12", "TEXT_TO_PRONOUNCE": "x"})
        ),
        "Phone number is not correct"
    );
    // bookings
    let res = run(&mut p, "calendar.resource.list", json!({})).unwrap();
    assert_eq!(res[0]["NAME"], "Переговорная");
    let b = run(
        &mut p,
        "calendar.resource.booking.list",
        json!({"filter": {"resourceIdList": [301]}}),
    )
    .unwrap();
    assert_eq!(b.as_array().unwrap().len(), 3);
    assert_eq!(b[0]["CAL_TYPE"], "resource");
    assert!(
        desc(
            &mut p,
            "calendar.resource.booking.list",
            json!({"filter": {}})
        )
        .contains("resourceIdList")
    );
    let long: String = "я".repeat(300);
    let upd = |owner: u64, ev: u64| json!({"id": ev, "type": "user", "ownerId": owner, "name": long.clone(), "description": "d"});
    assert_eq!(
        run(&mut p, "calendar.event.update", upd(10390, 4003)).unwrap(),
        json!(4003)
    );
    assert_eq!(
        p.get("calendar_event", 4003).unwrap()["NAME"]
            .as_str()
            .unwrap()
            .chars()
            .count(),
        255
    );
    assert_eq!(
        desc(&mut p, "calendar.event.update", upd(932, 4002)),
        "Access denied"
    );
    assert_eq!(
        run_as(&mut p, 932, "calendar.event.update", upd(932, 4002)).unwrap(),
        json!(4002)
    );
    assert_eq!(
        desc(&mut p, "calendar.event.update", upd(932, 4003)),
        "Event not found"
    );
    // drive
    let f = run(&mut p, "disk.file.get", json!({"id": 1})).unwrap();
    assert_eq!(f["NAME"], "Прайс.txt");
    assert!(
        f["DOWNLOAD_URL"]
            .as_str()
            .unwrap()
            .contains("/disk/download/1/?token=")
    );
    assert!(f.get("DOWNLOAD_TOKEN").is_none());
    let e = run(&mut p, "disk.file.get", json!({"id": 2})).unwrap_err();
    assert_eq!((e.status, e.code.as_str()), (403, "ACCESS_DENIED"));
    assert!(run_as(&mut p, 932, "disk.file.get", json!({"id": 2})).is_ok());
    assert_eq!(
        run(&mut p, "disk.file.get", json!({"id": 77}))
            .unwrap_err()
            .code,
        "ERROR_NOT_FOUND"
    );
}
