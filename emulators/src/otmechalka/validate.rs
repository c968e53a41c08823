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
mod tests;
