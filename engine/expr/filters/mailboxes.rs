//! `mailboxes`: recipients as people type them into a form — `vasil@mail.ru:Василий Петрович`,
//! several to a field separated by `,` or `;`, or a list of such fields — parsed into mailboxes.
//!
//! The same parse is used by the `smtp.send` step, so a template that shows what `mailboxes`
//! found and the message that goes out agree on every address.

use serde_json::{Value as Json, json};

/// One usable recipient.
#[derive(Clone, Debug, PartialEq)]
pub struct Mailbox {
    pub email: String,
    /// The display name; empty when none was given.
    pub name: String,
}

/// What a recipients value holds: the usable mailboxes, and the items that are not addresses,
/// as they were written.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Parsed {
    pub valid: Vec<Mailbox>,
    pub invalid: Vec<String>,
}

/// Parse a recipients value: text (split on `,` and `;`), a list of texts (nested lists are
/// flattened), or `{email, name}` objects (what `mailboxes` itself gives, so its `valid` list can be
/// passed on). Empty items are ignored; none or missing is no recipient.
pub fn parse(v: Option<&Json>) -> Parsed {
    let mut out = Parsed::default();
    if let Some(v) = v {
        collect(v, &mut out);
    }
    out
}

fn collect(v: &Json, out: &mut Parsed) {
    match v {
        Json::Null => {}
        Json::Array(items) => items.iter().for_each(|i| collect(i, out)),
        Json::Object(o) => {
            let email = o.get("email").and_then(Json::as_str).unwrap_or_default();
            let name = o.get("name").and_then(Json::as_str).unwrap_or_default();
            push(
                email.trim(),
                name.trim(),
                &Json::Object(o.clone()).to_string(),
                out,
            );
        }
        Json::String(s) => {
            for item in s.split([',', ';']) {
                let item = item.trim();
                if !item.is_empty() {
                    let (email, name) = split_item(item);
                    push(email, name, item, out);
                }
            }
        }
        other => push("", "", &other.to_string(), out),
    }
}

/// `addr:Name` (split at the first colon), `Name <addr>`, or a bare address.
fn split_item(item: &str) -> (&str, &str) {
    if let Some((email, name)) = item.split_once(':') {
        return (email.trim(), name.trim());
    }
    if let Some(open) = item.rfind('<')
        && let Some(inner) = item[open + 1..].strip_suffix('>')
    {
        let name = item[..open].trim().trim_matches('"').trim();
        return (inner.trim(), name);
    }
    (item, "")
}

fn push(email: &str, name: &str, written: &str, out: &mut Parsed) {
    if is_address(email) {
        out.valid.push(Mailbox {
            email: email.to_string(),
            name: name.to_string(),
        });
    } else {
        out.invalid.push(written.to_string());
    }
}

/// An address the SMTP client can send to (lettre's own rules: `user@domain`, no spaces).
pub fn is_address(email: &str) -> bool {
    !email.is_empty() && email.parse::<lettre::Address>().is_ok()
}

/// The filter: `{valid: [{email, name}], invalid: [text, ...]}`.
pub fn mailboxes(v: Option<&Json>) -> Result<Json, String> {
    let parsed = parse(v);
    Ok(json!({
        "valid": parsed.valid.iter().map(|m| json!({"email": m.email, "name": m.name})).collect::<Vec<_>>(),
        "invalid": parsed.invalid,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mb(email: &str, name: &str) -> Mailbox {
        Mailbox {
            email: email.into(),
            name: name.into(),
        }
    }

    #[test]
    fn address_and_name_split_at_the_first_colon() {
        let p = parse(Some(&json!("vasil@mail.ru:Василий Петрович")));
        assert_eq!(p.valid, [mb("vasil@mail.ru", "Василий Петрович")]);
        let p = parse(Some(&json!("manager@privet.ru : Менеджер: «ООО Привет»")));
        assert_eq!(p.valid, [mb("manager@privet.ru", "Менеджер: «ООО Привет»")]);
    }

    #[test]
    fn several_per_field_and_lists_of_fields() {
        let p = parse(Some(&json!([
            "a@x.ru, b@x.ru:Бэ; c@x.ru",
            ["d@x.ru"],
            null,
            " ",
            {"email": "e@x.ru", "name": "Е"}
        ])));
        assert_eq!(
            p.valid,
            [
                mb("a@x.ru", ""),
                mb("b@x.ru", "Бэ"),
                mb("c@x.ru", ""),
                mb("d@x.ru", ""),
                mb("e@x.ru", "Е")
            ]
        );
        assert!(p.invalid.is_empty(), "{:?}", p.invalid);
    }

    #[test]
    fn bad_items_are_kept_as_written() {
        let p = parse(Some(&json!("не адрес; ok@x.ru; @x.ru:Имя; a b@x.ru")));
        assert_eq!(p.valid, [mb("ok@x.ru", "")]);
        assert_eq!(p.invalid, ["не адрес", "@x.ru:Имя", "a b@x.ru"]);
        let p = parse(Some(&json!([42])));
        assert_eq!(p.invalid, ["42"]);
    }

    #[test]
    fn angle_bracket_form() {
        let p = parse(Some(&json!("\"Иван Петров\" <ivan@x.ru>")));
        assert_eq!(p.valid, [mb("ivan@x.ru", "Иван Петров")]);
    }

    #[test]
    fn nothing_gives_empty_lists() {
        assert_eq!(parse(None), Parsed::default());
        assert_eq!(parse(Some(&json!(""))), Parsed::default());
        assert_eq!(
            mailboxes(None).unwrap(),
            json!({"valid": [], "invalid": []})
        );
    }

    #[test]
    fn the_filter_output_parses_back() {
        let out = mailboxes(Some(&json!("a@x.ru:А, плохой"))).unwrap();
        assert_eq!(
            out,
            json!({"valid": [{"email": "a@x.ru", "name": "А"}], "invalid": ["плохой"]})
        );
        assert_eq!(parse(Some(&out["valid"])).valid, [mb("a@x.ru", "А")]);
    }
}
