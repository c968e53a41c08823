use super::*;

fn client() -> Value {
    json!({
        "origin_id": "39558", "last_name": "Петров", "first_name": "Василий",
        "phone": "79261234567", "email": "ivan.petrov@gmail.com",
        "courses": ["Он-лайн Групповое", "10986"], "branchoffices": [2633],
        "birthdate": "2009-11-29", "gender": "M", "additional_data": "Петров Иван"
    })
}

fn ticket() -> Value {
    json!({
        "origin_id": "24545676786", "client_origin_id": "39558",
        "ticket_type": "6 КМС индивидуальные 45 мин",
        "price_initial": "9000.00", "discount": "300.00", "price_final": "8700.00",
        "selling_date": "2009-11-29", "selling_branchoffice": "2633",
        "employee": "Андрей Сергеев", "payment_method": "ONLINE"
    })
}

fn with(mut v: Value, field: &str, value: Value) -> Value {
    v[field] = value;
    v
}

fn without(mut v: Value, field: &str) -> Value {
    v.as_object_mut().unwrap().remove(field);
    v
}

fn client_err(v: Value, field: &str) -> Vec<String> {
    let e = validate_client(&v, &Catalogue::default()).expect_err("should be invalid");
    e.get(field)
        .unwrap_or_else(|| panic!("no error for {field}: {e:?}"))
        .to_vec()
}

fn ticket_err(v: Value, field: &str) -> Vec<String> {
    let e = validate_ticket(&v, &Catalogue::default(), true).expect_err("should be invalid");
    e.get(field)
        .unwrap_or_else(|| panic!("no error for {field}: {e:?}"))
        .to_vec()
}

#[test]
fn seed_client_is_valid_and_resolves_names_and_ids() {
    let c = validate_client(&client(), &Catalogue::default()).unwrap();
    assert_eq!(c.courses, vec![10985, 10986]);
    assert_eq!(c.branchoffices, vec![2633]);
    assert_eq!(c.birthdate.as_deref(), Some("2009-11-29"));
    // optional fields may be absent, null or empty
    let minimal = with(
        with(without(client(), "birthdate"), "email", Value::Null),
        "additional_data",
        json!(""),
    );
    let c = validate_client(&minimal, &Catalogue::default()).unwrap();
    assert_eq!(
        (c.email, c.birthdate, c.additional_data),
        (None, None, None)
    );
    // integer origin_id is coerced, duplicates collapse
    let c = validate_client(
        &with(
            with(client(), "origin_id", json!(39558)),
            "courses",
            json!([10985, "10985"]),
        ),
        &Catalogue::default(),
    )
    .unwrap();
    assert_eq!((c.origin_id.as_str(), c.courses), ("39558", vec![10985]));
}

#[test]
fn required_client_fields() {
    for field in [
        "origin_id",
        "last_name",
        "first_name",
        "phone",
        "courses",
        "branchoffices",
        "gender",
    ] {
        assert_eq!(
            client_err(without(client(), field), field),
            ["This field is required."],
            "{field}"
        );
    }
    assert_eq!(
        client_err(with(client(), "last_name", json!("  ")), "last_name"),
        ["This field may not be blank."]
    );
    assert_eq!(
        client_err(with(client(), "first_name", Value::Null), "first_name"),
        ["This field may not be null."]
    );
    assert_eq!(
        client_err(with(client(), "courses", json!([])), "courses"),
        ["At least one course is required."]
    );
    assert_eq!(
        client_err(with(client(), "branchoffices", json!([])), "branchoffices"),
        ["At least one branch office is required."]
    );
}

#[test]
fn all_errors_are_reported_at_once() {
    let v = with(
        with(
            without(client(), "last_name"),
            "phone",
            json!("89261234567"),
        ),
        "gender",
        json!("male"),
    );
    let e = validate_client(&v, &Catalogue::default()).unwrap_err();
    let fields: Vec<&str> = e.0.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(fields, ["last_name", "phone", "gender"]);
    let j = e.to_json();
    assert!(
        j["detail"]
            .as_str()
            .unwrap()
            .starts_with("Invalid input: last_name: This field is required.")
    );
    assert_eq!(
        j["errors"]["gender"],
        json!(["Must be \"M\" or \"F\"; got \"male\"."])
    );
}

#[test]
fn phone_must_be_11_digits_starting_with_7() {
    for bad in [
        "89261234567",
        "9261234567",
        "+79261234567",
        "7 926 123-45-67",
        "792612345678",
        "7926123456a",
    ] {
        let msg = &client_err(with(client(), "phone", json!(bad)), "phone")[0];
        assert!(
            msg.starts_with("Phone must be 11 digits starting with 7"),
            "{bad}: {msg}"
        );
        assert!(msg.contains(bad), "message names the value: {msg}");
    }
    assert!(valid_phone("79261234567"));
}

#[test]
fn dates_email_gender_catalogue() {
    for bad in [
        "2009-11-29T03:00:00+03:00",
        "29.11.2009",
        "2009-2-3",
        "2009-02-30",
    ] {
        assert!(
            client_err(with(client(), "birthdate", json!(bad)), "birthdate")[0]
                .starts_with("Date has wrong format. Use YYYY-MM-DD")
        );
    }
    assert!(
        client_err(with(client(), "email", json!("ivan.petrov")), "email")[0]
            .starts_with("Enter a valid email address")
    );
    assert!(
        client_err(with(client(), "email", json!("a b@c.ru")), "email")[0]
            .starts_with("Enter a valid email address")
    );
    assert!(
        client_err(with(client(), "gender", json!("m")), "gender")[0]
            .starts_with("Must be \"M\" or \"F\"")
    );
    let msg = &client_err(
        with(client(), "courses", json!(["Шахматы", "10985"])),
        "courses",
    )[0];
    assert!(
        msg.starts_with("Unknown course \"Шахматы\". Known: 10985 \"Он-лайн Групповое\""),
        "{msg}"
    );
    let msg = &client_err(
        with(client(), "branchoffices", json!([48])),
        "branchoffices",
    )[0];
    assert!(msg.starts_with("Unknown branch office 48."), "{msg}");
    assert!(
        client_err(with(client(), "courses", json!("10985")), "courses")[0]
            .starts_with("Expected a list of courses")
    );
}

#[test]
fn seed_ticket_is_valid() {
    let t = validate_ticket(&ticket(), &Catalogue::default(), true).unwrap();
    assert_eq!(
        (t.price_initial, t.discount, t.price_final),
        (900_000, 30_000, 870_000)
    );
    assert_eq!(t.selling_branchoffice, 2633);
    let t = validate_ticket(
        &with(ticket(), "selling_branchoffice", json!("+ СКОЛКОВО `МСК *")),
        &Catalogue::default(),
        true,
    )
    .unwrap();
    assert_eq!(t.selling_branchoffice, 2635);
}

#[test]
fn ticket_rules() {
    for field in [
        "origin_id",
        "client_origin_id",
        "ticket_type",
        "price_initial",
        "discount",
        "price_final",
        "selling_date",
        "selling_branchoffice",
        "employee",
        "payment_method",
    ] {
        assert_eq!(
            ticket_err(without(ticket(), field), field),
            ["This field is required."],
            "{field}"
        );
    }
    for bad in [
        json!(9000),
        json!("9000"),
        json!("9000.0"),
        json!("9 000.00"),
        json!("-1.00"),
    ] {
        assert!(
            ticket_err(
                with(ticket(), "price_initial", bad.clone()),
                "price_initial"
            )[0]
            .starts_with("Must be a string with two decimals"),
            "{bad}"
        );
    }
    let msg = &ticket_err(
        with(
            ticket(),
            "ticket_type",
            json!(" 6 КМС индивидуальные 45 мин"),
        ),
        "ticket_type",
    )[0];
    assert!(
        msg.starts_with("Unknown ticket type \" 6 КМС индивидуальные 45 мин\""),
        "{msg}"
    );
    assert_eq!(
        ticket_err(
            with(ticket(), "payment_method", json!("CARD")),
            "payment_method"
        ),
        ["Must be \"CASH\" or \"ONLINE\"; got \"CARD\"."]
    );
    assert_eq!(
        ticket_err(
            with(ticket(), "price_final", json!("9000.00")),
            "price_final"
        ),
        [
            "price_final must equal price_initial - discount (9000.00 - 300.00 = 8700.00); got 9000.00."
        ]
    );
    assert!(
        validate_ticket(
            &with(ticket(), "price_final", json!("9000.00")),
            &Catalogue::default(),
            false
        )
        .is_ok()
    );
    assert!(
        ticket_err(with(ticket(), "discount", json!("9500.00")), "discount")[0]
            .starts_with("Discount 9500.00 is greater")
    );
    assert!(
        ticket_err(
            with(ticket(), "selling_date", json!("2020-12-13T03:00:00+03:00")),
            "selling_date"
        )[0]
        .starts_with("Date has wrong format")
    );
    assert!(
        ticket_err(
            with(ticket(), "selling_branchoffice", json!("186")),
            "selling_branchoffice"
        )[0]
        .starts_with("Unknown branch office \"186\"")
    );
}

#[test]
fn money_and_date_parsing() {
    assert_eq!(parse_money("0.05"), Some(5));
    assert_eq!(parse_money("8700.00"), Some(870_000));
    assert_eq!(format_money(870_005), "8700.05");
    assert_eq!(parse_money(".50"), None);
    assert_eq!(
        parse_date("2024-02-29"),
        NaiveDate::from_ymd_opt(2024, 2, 29)
    );
    assert_eq!(parse_date("2023-02-29"), None);
    assert!(valid_email("a.b+c@mail.example.ru"));
    assert!(!valid_email("a@b@c.ru") && !valid_email("a@ru") && !valid_email("@b.ru"));
}
