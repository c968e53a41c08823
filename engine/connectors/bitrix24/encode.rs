//! PHP's `http_build_query`: how Bitrix24 expects nested parameters inside `batch` commands
//! (`filter[>DATE_MODIFY]=...&select[]=ID`).

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value as Json;

/// Everything but RFC 3986 unreserved characters is encoded; notably `+` (the offset of an ISO
/// date would otherwise arrive as a space) and `&`, `=`, `[`, `]`, `#`.
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `{"filter": {">ID": 5}, "select": ["ID"]}` -> `filter[%3EID]=5&select[0]=ID`.
pub fn build_query(params: &Json) -> String {
    let mut pairs = Vec::new();
    if let Json::Object(map) = params {
        for (k, v) in map {
            flatten(&encode(k), v, &mut pairs);
        }
    }
    pairs.join("&")
}

fn encode(s: &str) -> String {
    utf8_percent_encode(s, ENCODE).to_string()
}

fn flatten(prefix: &str, value: &Json, out: &mut Vec<String>) {
    match value {
        Json::Object(map) => {
            for (k, v) in map {
                flatten(&format!("{prefix}[{}]", encode(k)), v, out);
            }
        }
        Json::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), v, out);
            }
        }
        Json::Null => out.push(format!("{prefix}=")),
        Json::Bool(b) => out.push(format!("{prefix}={}", if *b { "1" } else { "0" })),
        Json::Number(n) => out.push(format!("{prefix}={n}")),
        Json::String(s) => out.push(format!("{prefix}={}", encode_value(s))),
    }
}

/// Values are encoded, except a whole `$result[...]` reference, which Bitrix24 must see as is.
fn encode_value(s: &str) -> String {
    if s.starts_with("$result[") {
        s.to_string()
    } else {
        encode(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_parameters_use_brackets() {
        let q = build_query(
            &json!({"filter": {">DATE_MODIFY": "2024-06-01T00:00:00+03:00", "@ID": [1, 6]}, "select": ["ID", "UF_*"], "start": -1}),
        );
        assert_eq!(
            q,
            "filter[%3EDATE_MODIFY]=2024-06-01T00%3A00%3A00%2B03%3A00&filter[%40ID][0]=1&filter[%40ID][1]=6&select[0]=ID&select[1]=UF_%2A&start=-1"
        );
    }

    #[test]
    fn references_stay_literal_and_text_is_encoded() {
        let q = build_query(
            &json!({"filter": {">ID": "$result[p0][49][ID]"}, "fields": {"TITLE": "A&B = ok"}}),
        );
        assert_eq!(
            q,
            "filter[%3EID]=$result[p0][49][ID]&fields[TITLE]=A%26B%20%3D%20ok"
        );
    }
}
