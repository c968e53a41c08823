//! The one table of our template filters: each row is what registers the filter with minijinja
//! and what `etl docs` prints about it, so a filter cannot exist undocumented. The example of
//! every row is rendered by a test, so the reference cannot drift from what the filter does.

use minijinja::Environment;
use minijinja::value::Value;

use super::filters::{self, b24, core};

/// One filter: its name, how it is called, what it does, and an example that a test renders.
pub struct FilterDoc {
    pub name: &'static str,
    /// How it is called, after the `|`: `lookup(map, default)`.
    pub signature: &'static str,
    pub description: &'static str,
    /// A template using the filter, and what it renders to.
    pub example: (&'static str, &'static str),
    /// Registers the filter under `name`.
    add: fn(&mut Environment<'static>, &'static str),
}

/// Our own filters first, then the minijinja builtins we replace because Bitrix24 leaves out
/// empty fields: `source.PHONE | first | attr('VALUE')` must give nothing, not stop the template.
pub const FILTERS: &[FilterDoc] = &[
    FilterDoc {
        name: "phone",
        signature: "phone",
        description: "A phone number as `7XXXXXXXXXX`: digits only, a leading 8 becomes 7, ten digits get a 7 in front; anything else fails the record (a wrong number must not reach another system). Empty gives none.",
        example: ("{{ '8 (926) 123-45-67' | phone }}", "79261234567"),
        add: |env, name| env.add_filter(name, |v: Value| filters::wrap1(&v, core::phone)),
    },
    FilterDoc {
        name: "date",
        signature: "date",
        description: "An ISO 8601 date-time (or `YYYY-MM-DD`, `DD.MM.YYYY`) as `YYYY-MM-DD`: the calendar day as written, in its own offset (Bitrix24 stores dates as local midnight).",
        example: ("{{ '2014-11-26T00:00:00+03:00' | date }}", "2014-11-26"),
        add: |env, name| env.add_filter(name, |v: Value| filters::wrap1(&v, core::date)),
    },
    FilterDoc {
        name: "datetime",
        signature: "datetime(format=\"%Y-%m-%dT%H:%M:%S%:z\")",
        description: "An ISO 8601 date-time with an offset, reformatted with a strftime pattern. Empty gives none.",
        example: (
            "{{ '2024-03-01T10:30:00+03:00' | datetime(format='%d.%m.%Y %H:%M') }}",
            "01.03.2024 10:30",
        ),
        add: |env, name| env.add_filter(name, filters::datetime),
    },
    FilterDoc {
        name: "add_days",
        signature: "add_days(n)",
        description: "A date (`YYYY-MM-DD`) or ISO 8601 date-time moved by `n` days (negative: back), in the same form. Empty gives none.",
        example: ("{{ '2025-01-31' | add_days(-30) }}", "2025-01-01"),
        add: |env, name| env.add_filter(name, filters::add_days),
    },
    FilterDoc {
        name: "money",
        signature: "money",
        description: "An amount as text with two decimals (a decimal comma is accepted). Empty gives none.",
        example: ("{{ '8700,5' | money }}", "8700.50"),
        add: |env, name| env.add_filter(name, |v: Value| filters::wrap1(&v, core::money)),
    },
    FilterDoc {
        name: "to_number",
        signature: "to_number",
        description: "Numbers stay, text is parsed (`\"12\"` -> 12, `\"1,5\"` -> 1.5); other text fails the record. Empty gives none.",
        example: ("{{ '1,5' | to_number + 1 }}", "2.5"),
        add: |env, name| env.add_filter(name, |v: Value| filters::wrap1(&v, core::to_number)),
    },
    FilterDoc {
        name: "lookup",
        signature: "lookup(map, default)",
        description: "One value through a value map (usually from `settings`); an unknown value gives `default`, or none.",
        example: ("{{ 2 | lookup({'1': 'call', '2': 'e-mail'}) }}", "e-mail"),
        add: |env, name| env.add_filter(name, lookup),
    },
    FilterDoc {
        name: "map_values",
        signature: "map_values(map)",
        description: "Every element of a list (or a single value) through a value map; unknown ones are dropped.",
        example: (
            "{{ ['404', '9', '405'] | map_values({'404': 'A', '405': 'B'}) | join(',') }}",
            "A,B",
        ),
        add: |env, name| env.add_filter(name, map_values),
    },
    FilterDoc {
        name: "match_rules",
        signature: "match_rules(fact=value, ...)",
        description: "The rules (a list from `settings`) whose `when:` conditions all hold for the facts given: a condition holds when the fact (a value or a list) contains its value, or one of its list of values.",
        example: (
            "{{ [{'when': {'product': '404'}, 'course': 'A'}, {'when': {'product': '405'}, 'course': 'B'}] | match_rules(product=['404', '7']) | map(attribute='course') | join(',') }}",
            "A",
        ),
        add: |env, name| env.add_filter(name, filters::match_rules),
    },
    FilterDoc {
        name: "rows",
        signature: "rows(key)",
        description: "Every element of a list (or a single value) as a one-field row `{key: element}`; empty elements are dropped (`crm.company.contact.items.set` takes `items: [{CONTACT_ID: 5}]`).",
        example: (
            "{{ [5, '', 7] | rows('CONTACT_ID') | tojson }}",
            "[{\"CONTACT_ID\": 5}, {\"CONTACT_ID\": 7}]",
        ),
        add: |env, name| env.add_filter(name, rows),
    },
    FilterDoc {
        name: "flatten",
        signature: "flatten",
        description: "A list of lists as one list.",
        example: ("{{ [[1, 2], [3], 4] | flatten | join(',') }}", "1,2,3,4"),
        add: |env, name| env.add_filter(name, |v: Value| filters::wrap1(&v, core::flatten)),
    },
    FilterDoc {
        name: "unique_list",
        signature: "unique_list",
        description: "Distinct values, in the order they first occur.",
        example: ("{{ [3, 1, 3, 2, 1] | unique_list | join(',') }}", "3,1,2"),
        add: |env, name| env.add_filter(name, |v: Value| filters::wrap1(&v, core::unique_list)),
    },
    FilterDoc {
        name: "compact",
        signature: "compact",
        description: "A list without its empty elements (none, blank text).",
        example: (
            "{{ ['a', '', none, ' ', 'b'] | compact | join(',') }}",
            "a,b",
        ),
        add: |env, name| env.add_filter(name, |v: Value| filters::wrap1(&v, core::compact)),
    },
    FilterDoc {
        name: "from_json",
        signature: "from_json",
        description: "JSON text as the value it writes (a list, a mapping, a number...): how a template loop builds a list of mappings, e.g. rows reshaped for another method. None or blank text gives none; a value that is not text stays as it is.",
        example: (
            "{{ ('[' ~ ([1, 2] | map('string') | join(',')) ~ ']') | from_json | length }}",
            "2",
        ),
        add: |env, name| env.add_filter(name, |v: Value| filters::wrap1(&v, core::from_json)),
    },
    FilterDoc {
        name: "b24_id",
        signature: "b24_id",
        description: "An ID as a business process sends it: the first integer > 0 in the first non-empty element of a list or of an `a, b` text (`123`, ` 123 `, `DEAL_123`, `user_5`, `[5] Иван Петров`). None when there is none.",
        example: ("{{ '[5] Иван Петров' | b24_id }}", "5"),
        add: |env, name| env.add_filter(name, |v: Value| filters::wrap1(&v, b24::b24_id)),
    },
    FilterDoc {
        name: "b24_list",
        signature: "b24_list",
        description: "A list as is, or a text split on `,` and `;`: elements trimmed, empty ones dropped (a multiple value sent as one text).",
        example: ("{{ '12, 13;; 14 ' | b24_list | join('|') }}", "12|13|14"),
        add: |env, name| env.add_filter(name, |v: Value| filters::wrap1(&v, b24::b24_list)),
    },
    FilterDoc {
        name: "fields_from",
        signature: "fields_from(map)",
        description: "The non-empty values of a mapping (a request's properties) under the field names `map` gives them (property -> field), in the map's order; empty values (none, blank, empty list) are left out, so nothing is cleared by accident.",
        example: (
            "{{ {'title': 'New', 'comments': ''} | fields_from({'title': 'TITLE', 'comments': 'COMMENTS'}) | tojson }}",
            "{\"TITLE\": \"New\"}",
        ),
        add: |env, name| env.add_filter(name, fields_from),
    },
    FilterDoc {
        name: "compact_map",
        signature: "compact_map",
        description: "A mapping without its empty entries (none, blank text, empty list or mapping).",
        example: (
            "{{ {'A': 1, 'B': none, 'C': ''} | compact_map | tojson }}",
            "{\"A\": 1}",
        ),
        add: |env, name| env.add_filter(name, |v: Value| filters::wrap1(&v, b24::compact_map)),
    },
    FilterDoc {
        name: "multifield_add",
        signature: "multifield_add(values, kind)",
        description: "The PHONE, EMAIL, IM or WEB rows to send so that each given value (a list or an `a, b` text) is on the record: a new `{VALUE, VALUE_TYPE: WORK}` for every value not there yet. Applied to the record's rows; `kind` `phone` compares by digits (a leading 8 of eleven digits as 7), `email` case-insensitively, others exactly. Existing rows are never in the result: not sent again, not removed.",
        example: (
            "{{ [{'VALUE': '+7 926 123-45-67'}] | multifield_add(['8 (926) 123-45-67', '+7 900 111-22-33'], 'phone') | map(attribute='VALUE') | join(',') }}",
            "+7 900 111-22-33",
        ),
        add: |env, name| env.add_filter(name, multifield_add),
    },
    FilterDoc {
        name: "sha256",
        signature: "sha256",
        description: "The SHA-256 of the text, in lowercase hex (an idempotency key from an event token). None stays none.",
        example: (
            "{{ 'abc' | sha256 }}",
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        ),
        add: |env, name| env.add_filter(name, |v: Value| filters::wrap1(&v, b24::sha256)),
    },
    FilterDoc {
        name: "digits",
        signature: "digits",
        description: "Only the digits of the text. Also a test: `x is digits`, `select('digits')` hold for a whole number or text of digits only (a Drive file ID, not a URL). None stays none.",
        example: ("{{ '+7 (926) 123-45-67' | digits }}", "79261234567"),
        add: |env, name| {
            env.add_filter(name, |v: Value| filters::wrap1(&v, b24::digits));
            env.add_test(name, |v: Value| filters::with_json(&v, b24::is_digits));
        },
    },
    FilterDoc {
        name: "mailboxes",
        signature: "mailboxes",
        description: "E-mail recipients as typed in a form: `address[:Name]` items (also `Name <address>`), several to a text separated by `,` or `;`, or a list of them; gives `{valid: [{email, name}], invalid: [items as written]}`. The `smtp.send` step reads recipients the same way.",
        example: (
            "{{ ('vasil@mail.ru:Василий; не адрес' | mailboxes).valid | map(attribute='name') | join(',') }}",
            "Василий",
        ),
        add: |env, name| {
            env.add_filter(name, |v: Value| {
                filters::wrap1(&v, filters::mailboxes::mailboxes)
            })
        },
    },
    FilterDoc {
        name: "first",
        signature: "first",
        description: "The first element of a list (or character of a text); a missing value gives nothing instead of an error. Replaces the builtin.",
        example: (
            "{{ [{'VALUE': '+7 926'}] | first | attr('VALUE') }}",
            "+7 926",
        ),
        add: |env, name| env.add_filter(name, filters::first),
    },
    FilterDoc {
        name: "last",
        signature: "last",
        description: "The last element of a list (or character of a text); a missing value gives nothing. Replaces the builtin.",
        example: ("{{ [1, 2, 3] | last }}", "3"),
        add: |env, name| env.add_filter(name, filters::last),
    },
    FilterDoc {
        name: "attr",
        signature: "attr(name)",
        description: "The attribute `name` of an object; a missing object gives nothing. Replaces the builtin.",
        example: ("{{ none | attr('VALUE') | default('-') }}", "-"),
        add: |env, name| env.add_filter(name, filters::attr),
    },
    FilterDoc {
        name: "length",
        signature: "length",
        description: "The number of elements (or characters); a missing value gives 0. Replaces the builtin.",
        example: ("{{ none | length }}", "0"),
        add: |env, name| env.add_filter(name, filters::length),
    },
    FilterDoc {
        name: "count",
        signature: "count",
        description: "Same as `length`. Replaces the builtin.",
        example: ("{{ [1, 2] | count }}", "2"),
        add: |env, name| env.add_filter(name, filters::length),
    },
    FilterDoc {
        name: "join",
        signature: "join(separator=\"\")",
        description: "The elements as text, joined by `separator`; a missing value gives empty text. Replaces the builtin.",
        example: ("{{ ['a', 'b'] | join(', ') }}", "a, b"),
        add: |env, name| env.add_filter(name, filters::join),
    },
    FilterDoc {
        name: "trim",
        signature: "trim(chars)",
        description: "Text without leading and trailing whitespace (or the given characters); a missing value gives empty text. Replaces the builtin.",
        example: ("{{ '--x--' | trim('-') }}", "x"),
        add: |env, name| env.add_filter(name, filters::trim),
    },
];

/// Registers every filter of [`FILTERS`].
pub fn register(env: &mut Environment<'static>) {
    for filter in FILTERS {
        (filter.add)(env, filter.name);
    }
}

/// Whether `name` is one of our filters (builtins are checked separately).
pub fn is_ours(name: &str) -> bool {
    FILTERS.iter().any(|f| f.name == name)
}

/// The names of our filters, for "did you mean" suggestions.
pub fn names() -> impl Iterator<Item = &'static str> {
    FILTERS.iter().map(|f| f.name)
}

fn lookup(v: Value, map: Value, default: Option<Value>) -> Result<Value, minijinja::Error> {
    filters::with_json(&v, |v| {
        filters::with_json(&map, |map| match &default {
            Some(d) => filters::with_json(d, |d| core::lookup(v, map, d)),
            None => core::lookup(v, map, None),
        })
    })
    .map(filters::from_json)
    .map_err(filters::invalid)
}

fn map_values(v: Value, map: Value) -> Result<Value, minijinja::Error> {
    filters::with_json(&v, |v| {
        filters::with_json(&map, |map| core::map_values(v, map))
    })
    .map(filters::from_json)
    .map_err(filters::invalid)
}

fn rows(v: Value, key: Value) -> Result<Value, minijinja::Error> {
    let Some(key) = key.as_str().filter(|k| !k.is_empty()).map(str::to_string) else {
        return Err(filters::invalid(
            "rows expects the field name, e.g. rows('CONTACT_ID')",
        ));
    };
    filters::with_json(&v, |v| {
        let items = match v {
            Some(serde_json::Value::Array(items)) => items.clone(),
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(other) => vec![other.clone()],
        };
        Ok::<_, String>(serde_json::Value::Array(
            items
                .into_iter()
                .filter(|x| !b24::is_blank(x))
                .map(|x| serde_json::json!({ key.clone(): x }))
                .collect(),
        ))
    })
    .map(filters::from_json)
    .map_err(filters::invalid)
}

fn fields_from(v: Value, map: Value) -> Result<Value, minijinja::Error> {
    filters::with_json(&v, |v| {
        filters::with_json(&map, |map| b24::fields_from(v, map))
    })
    .map(filters::from_json)
    .map_err(filters::invalid)
}

fn multifield_add(rows: Value, values: Value, kind: Value) -> Result<Value, minijinja::Error> {
    filters::with_json(&rows, |rows| {
        filters::with_json(&values, |values| {
            filters::with_json(&kind, |kind| b24::multifield_add(rows, values, kind))
        })
    })
    .map(filters::from_json)
    .map_err(filters::invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_example_renders_as_documented() {
        let mut env = Environment::new();
        register(&mut env);
        for filter in FILTERS {
            let (template, expected) = filter.example;
            assert!(
                template.contains(&format!("| {}", filter.name)),
                "the example of `{}` does not use it: {template}",
                filter.name
            );
            let got = env
                .render_str(template, ())
                .unwrap_or_else(|e| panic!("example of `{}`: {e:#}", filter.name));
            assert_eq!(got, expected, "example of `{}`: {template}", filter.name);
        }
    }

    #[test]
    fn digits_is_also_a_test() {
        let mut env = Environment::new();
        register(&mut env);
        let got = env
            .render_str(
                "{{ ['123', 'https://x/1', 45, ''] | select('digits') | join(',') }}/{{ '7' is digits }}/{{ 'a7' is digits }}",
                (),
            )
            .unwrap();
        assert_eq!(got, "123,45/True/False");
    }

    #[test]
    fn business_process_filters_chain_on_request_properties() {
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
        register(&mut env);
        let ctx = minijinja::context! { p => minijinja::context! { deal_id => "DEAL_42", ids => "3, 4", empty => "" } };
        let got = env
            .render_str(
                "{{ p.deal_id | b24_id + 1 }}|{{ p.ids | b24_list | map('b24_id') | list | length }}|{{ p.empty | b24_id is none }}|{{ p.missing | b24_id is none }}",
                ctx,
            )
            .unwrap();
        assert_eq!(got, "43|2|True|True");
    }

    #[test]
    fn names_are_unique() {
        for (i, f) in FILTERS.iter().enumerate() {
            assert!(
                !FILTERS[..i].iter().any(|g| g.name == f.name),
                "`{}` is in the table twice",
                f.name
            );
        }
    }
}
