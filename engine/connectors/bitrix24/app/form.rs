//! The form bodies Bitrix24 sends to handlers: `application/x-www-form-urlencoded` with PHP's
//! bracket keys (`properties[to][0]=a`, `document_id[2]=DEAL_1`, `auth[access_token]=...`),
//! read into JSON the way PHP reads `$_POST`: nested objects, and lists where every key of a
//! level is 0, 1, 2... in order. Values stay strings.

use serde_json::{Map, Value as Json};

/// Parse a form body. Keys without brackets are top-level; `a[]` appends to a list.
pub fn parse(body: &str) -> Json {
    let mut root = Map::new();
    for (key, value) in url::form_urlencoded::parse(body.as_bytes()) {
        let path = key_path(&key);
        insert(&mut root, &path, Json::String(value.into_owned()));
    }
    lists_where_indexed(Json::Object(root))
}

/// `a[b][0]` -> ["a", "b", "0"]; `a[]` -> ["a", ""]. A key with unbalanced brackets is taken
/// whole, as PHP does with the part it cannot read.
fn key_path(key: &str) -> Vec<String> {
    let Some(open) = key.find('[') else {
        return vec![key.to_string()];
    };
    let mut path = vec![key[..open].to_string()];
    let mut rest = &key[open..];
    while let Some(stripped) = rest.strip_prefix('[') {
        let Some(close) = stripped.find(']') else {
            return vec![key.to_string()];
        };
        path.push(stripped[..close].to_string());
        rest = &stripped[close + 1..];
    }
    path
}

fn insert(map: &mut Map<String, Json>, path: &[String], value: Json) {
    let (head, tail) = (&path[0], &path[1..]);
    let head = if head.is_empty() {
        map.len().to_string()
    } else {
        head.clone()
    };
    if tail.is_empty() {
        map.insert(head, value);
        return;
    }
    let child = map.entry(head).or_insert_with(|| Json::Object(Map::new()));
    if !child.is_object() {
        *child = Json::Object(Map::new());
    }
    if let Json::Object(child) = child {
        insert(child, tail, value);
    }
}

/// Objects whose keys are exactly 0..n (in any order) become lists, in index order.
fn lists_where_indexed(value: Json) -> Json {
    let Json::Object(map) = value else {
        return value;
    };
    let mut indexes: Vec<usize> = map.keys().filter_map(|k| k.parse().ok()).collect();
    indexes.sort_unstable();
    let indexed = !map.is_empty()
        && indexes.len() == map.len()
        && indexes.iter().enumerate().all(|(n, i)| n == *i);
    let mut converted: Vec<(String, Json)> = map
        .into_iter()
        .map(|(k, v)| (k, lists_where_indexed(v)))
        .collect();
    if indexed {
        converted.sort_by_key(|(k, _)| k.parse::<usize>().unwrap_or_default());
        Json::Array(converted.into_iter().map(|(_, v)| v).collect())
    } else {
        Json::Object(converted.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_php_bracket_keys() {
        let body = "workflow_id=65.1&document_id%5B0%5D=crm&document_id[1]=CCrmDocumentDeal\
            &document_id[2]=DEAL_123&properties[deal_id]=123&properties[to][0]=a%40b.ru\
            &properties[to][1]=c%40d.ru&properties[title]=%D0%9D%D0%BE%D0%B2%D0%B0%D1%8F\
            &auth[access_token]=tok&properties[empty]=&tags[]=x&tags[]=y";
        assert_eq!(
            parse(body),
            json!({
                "workflow_id": "65.1",
                "document_id": ["crm", "CCrmDocumentDeal", "DEAL_123"],
                "properties": {"deal_id": "123", "to": ["a@b.ru", "c@d.ru"], "title": "Новая", "empty": ""},
                "auth": {"access_token": "tok"},
                "tags": ["x", "y"],
            })
        );
    }

    #[test]
    fn keeps_odd_keys_whole_and_sparse_indexes_as_objects() {
        assert_eq!(parse("a[b=1"), json!({"a[b": "1"}));
        assert_eq!(parse("a[1]=x&a[3]=y"), json!({"a": {"1": "x", "3": "y"}}));
        let twelve: Vec<String> = (0..12).map(|n| format!("l[{n}]={n}")).collect();
        let list = parse(&twelve.join("&"))["l"].clone();
        assert_eq!(list[10], json!("10"));
        assert_eq!(list.as_array().map(Vec::len), Some(12));
    }
}
