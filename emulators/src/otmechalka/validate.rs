//! Field validation of client and ticket bodies, collecting every error at once (as DRF does).
//!
//! Rules (see the module doc of `emulator` for the list as the API documents it):
//! - string fields accept a JSON string or an integer (coerced, as DRF's CharField does); required
//!   ones may not be absent, null or blank; optional ones treat absent, null and "" alike;
//! - `phone`: exactly 11 digits starting with 7, nothing else (no "+", spaces or brackets);
//! - dates: `YYYY-MM-DD`, a real calendar date;
//! - money: a JSON *string* with exactly two decimals ("9000.00"); `discount` <= `price_initial`
//!   and, unless disabled, `price_final` == `price_initial` - `discount`.

use chrono::NaiveDate;
use serde_json::{Map, Value, json};

use super::catalogue::Catalogue;

/// Field -> messages, in the order the fields were checked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FieldErrors(pub Vec<(String, Vec<String>)>);

impl FieldErrors {
    pub fn add(&mut self, field: &str, msg: impl Into<String>) {
        match self.0.iter_mut().find(|(f, _)| f == field) {
            Some((_, msgs)) => msgs.push(msg.into()),
            None => self.0.push((field.to_string(), vec![msg.into()])),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Messages for one field (tests).
    pub fn get(&self, field: &str) -> Option<&[String]> {
        self.0
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, m)| m.as_slice())
    }
    /// `{"detail": "Invalid input: f: msg; ...", "errors": {"f": ["msg"]}}`
    pub fn to_json(&self) -> Value {
        let summary: Vec<String> = self
            .0
            .iter()
            .map(|(f, msgs)| format!("{f}: {}", msgs.join(" ")))
            .collect();
        let errors: Map<String, Value> = self
            .0
            .iter()
            .map(|(f, msgs)| (f.clone(), json!(msgs)))
            .collect();
        json!({ "detail": format!("Invalid input: {}", summary.join("; ")), "errors": errors })
    }
}

/// A valid client body, courses and branch offices resolved to catalogue IDs.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientInput {
    pub origin_id: String,
    pub last_name: String,
    pub first_name: String,
    pub phone: String,
    pub email: Option<String>,
    pub courses: Vec<u64>,
    pub branchoffices: Vec<u64>,
    pub birthdate: Option<String>,
    pub gender: String,
    pub additional_data: Option<String>,
}

/// A valid ticket body. Money in kopecks.
#[derive(Clone, Debug, PartialEq)]
pub struct TicketInput {
    pub origin_id: String,
    pub client_origin_id: String,
    pub ticket_type: String,
    pub price_initial: i64,
    pub discount: i64,
    pub price_final: i64,
    pub selling_date: NaiveDate,
    pub selling_branchoffice: u64,
    pub employee: String,
    pub payment_method: String,
}

fn shown(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        format!("{}...", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}

/// Value as text if it is a string or an integer.
fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

struct Fields<'a> {
    obj: &'a Map<String, Value>,
    errs: FieldErrors,
}

impl<'a> Fields<'a> {
    fn required(&mut self, field: &str) -> Option<String> {
        match self.obj.get(field) {
            None => self.errs.add(field, "This field is required."),
            Some(Value::Null) => self.errs.add(field, "This field may not be null."),
            Some(v) => match as_text(v) {
                Some(s) if s.trim().is_empty() => {
                    self.errs.add(field, "This field may not be blank.")
                }
                Some(s) => return Some(s),
                None => self
                    .errs
                    .add(field, format!("Not a valid string; got {}.", shown(v))),
            },
        }
        None
    }

    fn optional(&mut self, field: &str) -> Option<String> {
        match self.obj.get(field) {
            None | Some(Value::Null) => None,
            Some(v) => match as_text(v) {
                Some(s) if s.is_empty() => None,
                Some(s) => Some(s),
                None => {
                    self.errs
                        .add(field, format!("Not a valid string; got {}.", shown(v)));
                    None
                }
            },
        }
    }

    /// A non-empty list resolved through `find`; `what` names the items in messages.
    fn id_list(
        &mut self,
        field: &str,
        what: &str,
        find: impl Fn(&Value) -> Option<u64>,
        known: impl Fn() -> String,
    ) -> Vec<u64> {
        let items = match self.obj.get(field) {
            None => {
                self.errs.add(field, "This field is required.");
                return vec![];
            }
            Some(Value::Array(items)) => items,
            Some(v) => {
                self.errs.add(
                    field,
                    format!("Expected a list of {what}s; got {}.", shown(v)),
                );
                return vec![];
            }
        };
        if items.is_empty() {
            self.errs
                .add(field, format!("At least one {what} is required."));
        }
        let mut ids = Vec::new();
        for item in items {
            match find(item) {
                Some(id) if !ids.contains(&id) => ids.push(id),
                Some(_) => {}
                None => self.errs.add(
                    field,
                    format!("Unknown {what} {}. Known: {}.", shown(item), known()),
                ),
            }
        }
        ids
    }

    fn date(&mut self, field: &str, value: Option<String>) -> Option<NaiveDate> {
        let s = value?;
        let d = parse_date(&s);
        if d.is_none() {
            self.errs.add(
                field,
                format!("Date has wrong format. Use YYYY-MM-DD; got \"{s}\"."),
            );
        }
        d
    }

    fn money(&mut self, field: &str) -> Option<i64> {
        let v = match self.obj.get(field) {
            None => {
                self.errs.add(field, "This field is required.");
                return None;
            }
            Some(v) => v,
        };
        let parsed = v.as_str().and_then(parse_money);
        if parsed.is_none() {
            self.errs.add(
                field,
                format!(
                    "Must be a string with two decimals, e.g. \"9000.00\"; got {}.",
                    shown(v)
                ),
            );
        }
        parsed
    }

    fn one_of(&mut self, field: &str, value: Option<String>, allowed: &[&str]) -> Option<String> {
        let s = value?;
        if allowed.contains(&s.as_str()) {
            return Some(s);
        }
        let list = allowed
            .iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(" or ");
        self.errs
            .add(field, format!("Must be {list}; got \"{s}\"."));
        None
    }
}

/// `^7\d{10}$`
pub fn valid_phone(s: &str) -> bool {
    s.len() == 11 && s.starts_with('7') && s.bytes().all(|b| b.is_ascii_digit())
}

/// Strict `YYYY-MM-DD` (zero-padded) that names a real day.
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    let shape = b.len() == 10
        && b.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        });
    if !shape {
        return None;
    }
    NaiveDate::from_ymd_opt(
        s[0..4].parse().ok()?,
        s[5..7].parse().ok()?,
        s[8..10].parse().ok()?,
    )
}

/// `^\d+\.\d{2}$` -> kopecks.
pub fn parse_money(s: &str) -> Option<i64> {
    let (whole, frac) = s.split_once('.')?;
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || frac.len() != 2 || !digits(frac) || whole.len() > 12 {
        return None;
    }
    Some(whole.parse::<i64>().ok()? * 100 + frac.parse::<i64>().ok()?)
}

pub fn format_money(kopecks: i64) -> String {
    format!("{}.{:02}", kopecks / 100, kopecks % 100)
}

/// Loose e-mail shape: `local@domain.tld`, no spaces, one "@".
pub fn valid_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && !s.chars().any(char::is_whitespace)
        && domain.split('.').count() >= 2
        && domain.split('.').all(|p| !p.is_empty())
}

fn object(body: &Value) -> Result<&Map<String, Value>, FieldErrors> {
    body.as_object().ok_or_else(|| {
        let mut e = FieldErrors::default();
        e.add(
            "non_field_errors",
            format!("Expected a JSON object; got {}.", shown(body)),
        );
        e
    })
}

pub fn validate_client(body: &Value, cat: &Catalogue) -> Result<ClientInput, FieldErrors> {
    let mut f = Fields {
        obj: object(body)?,
        errs: FieldErrors::default(),
    };
    let origin_id = f.required("origin_id");
    let last_name = f.required("last_name");
    let first_name = f.required("first_name");
    let phone = f.required("phone");
    if let Some(p) = &phone
        && !valid_phone(p)
    {
        f.errs.add(
            "phone",
            format!("Phone must be 11 digits starting with 7, e.g. \"79261234567\"; got \"{p}\"."),
        );
    }
    let email = f.optional("email");
    if let Some(e) = &email
        && !valid_email(e)
    {
        f.errs.add(
            "email",
            format!("Enter a valid email address; got \"{e}\"."),
        );
    }
    let courses = f.id_list(
        "courses",
        "course",
        |v| cat.course(v).map(|n| n.id),
        || cat.known_courses(),
    );
    let branchoffices = f.id_list(
        "branchoffices",
        "branch office",
        |v| cat.branchoffice(v).map(|n| n.id),
        || cat.known_branchoffices(),
    );
    let birthdate = f.optional("birthdate");
    let birthdate_ok = f.date("birthdate", birthdate.clone()).is_some();
    let gender = f.required("gender");
    let gender = f.one_of("gender", gender, &["M", "F"]);
    let additional_data = f.optional("additional_data");
    if !f.errs.is_empty() {
        return Err(f.errs);
    }
    Ok(ClientInput {
        origin_id: origin_id.unwrap_or_default(),
        last_name: last_name.unwrap_or_default(),
        first_name: first_name.unwrap_or_default(),
        phone: phone.unwrap_or_default(),
        email,
        courses,
        branchoffices,
        birthdate: birthdate.filter(|_| birthdate_ok),
        gender: gender.unwrap_or_default(),
        additional_data,
    })
}

pub fn validate_ticket(
    body: &Value,
    cat: &Catalogue,
    check_prices: bool,
) -> Result<TicketInput, FieldErrors> {
    let mut f = Fields {
        obj: object(body)?,
        errs: FieldErrors::default(),
    };
    let origin_id = f.required("origin_id");
    let client_origin_id = f.required("client_origin_id");
    let ticket_type = f.required("ticket_type");
    if let Some(t) = &ticket_type
        && cat.ticket_type(t).is_none()
    {
        f.errs.add(
            "ticket_type",
            format!(
                "Unknown ticket type \"{t}\" (names must match exactly). Known: {}.",
                cat.known_ticket_types()
            ),
        );
    }
    let price_initial = f.money("price_initial");
    let discount = f.money("discount");
    let price_final = f.money("price_final");
    if let (Some(p), Some(d)) = (price_initial, discount)
        && d > p
    {
        f.errs.add(
            "discount",
            format!(
                "Discount {} is greater than price_initial {}.",
                format_money(d),
                format_money(p)
            ),
        );
    }
    if let (true, Some(p), Some(d), Some(fin)) =
        (check_prices, price_initial, discount, price_final)
        && p - d != fin
        && d <= p
    {
        f.errs.add(
            "price_final",
            format!(
                "price_final must equal price_initial - discount ({} - {} = {}); got {}.",
                format_money(p),
                format_money(d),
                format_money(p - d),
                format_money(fin)
            ),
        );
    }
    let selling_date = f.required("selling_date");
    let selling_date = f.date("selling_date", selling_date);
    let selling_branchoffice = match f.obj.get("selling_branchoffice") {
        None | Some(Value::Null) => {
            f.errs
                .add("selling_branchoffice", "This field is required.");
            None
        }
        Some(v) => {
            let found = cat.branchoffice(v).map(|n| n.id);
            if found.is_none() {
                f.errs.add(
                    "selling_branchoffice",
                    format!(
                        "Unknown branch office {}. Known: {}.",
                        shown(v),
                        cat.known_branchoffices()
                    ),
                );
            }
            found
        }
    };
    let employee = f.required("employee");
    let payment_method = f.required("payment_method");
    let payment_method = f.one_of("payment_method", payment_method, &["CASH", "ONLINE"]);
    if !f.errs.is_empty() {
        return Err(f.errs);
    }
    const V: &str = "checked above";
    Ok(TicketInput {
        origin_id: origin_id.expect(V),
        client_origin_id: client_origin_id.expect(V),
        ticket_type: ticket_type.expect(V),
        price_initial: price_initial.expect(V),
        discount: discount.expect(V),
        price_final: price_final.expect(V),
        selling_date: selling_date.expect(V),
        selling_branchoffice: selling_branchoffice.expect(V),
        employee: employee.expect(V),
        payment_method: payment_method.expect(V),
    })
}

#[cfg(test)]
mod tests {
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
}
