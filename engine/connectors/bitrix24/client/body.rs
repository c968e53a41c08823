//! What an answer's text is read into. Most calls take the whole JSON tree; `batch` answers
//! split per command, where a list read keeps each command's result as the text it came in
//! (`Box<RawValue>`): a 100,000-row read then builds no JSON tree on the thread that reads,
//! and the rows are parsed later, on every core, when they are delivered.

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value as Json;

/// An answer read: its body (or the error envelope as JSON) and its `time` block.
pub enum Read<B> {
    Done(B, Json),
    Failed(Json),
}

/// A type an answer's text can be read into.
pub trait Body: Sized {
    fn read(text: &str) -> serde_json::Result<Read<Self>>;
}

/// The whole answer as JSON (`result`, `total`, `next`, `time`).
impl Body for Json {
    fn read(text: &str) -> serde_json::Result<Read<Json>> {
        let body: Json = serde_json::from_str(text)?;
        Ok(if failed(body.get("error"), body.get("result")) {
            Read::Failed(body)
        } else {
            let time = body["time"].clone();
            Read::Done(body, time)
        })
    }
}

/// An error answer: `error` without `result`.
fn failed<T>(error: Option<&Json>, result: Option<&T>) -> bool {
    error.is_some() && result.is_none()
}

/// A `batch` answer's `result`, with each command's result read as `R`.
#[derive(Deserialize)]
#[serde(bound(deserialize = "R: DeserializeOwned"))]
pub struct BatchBody<R> {
    #[serde(default = "HashMap::new", deserialize_with = "php_map")]
    result: HashMap<String, R>,
    #[serde(default = "HashMap::new", deserialize_with = "php_map")]
    result_error: HashMap<String, Json>,
    #[serde(default = "HashMap::new", deserialize_with = "php_map")]
    result_total: HashMap<String, Json>,
    #[serde(default = "HashMap::new", deserialize_with = "php_map")]
    pub(super) result_time: HashMap<String, Json>,
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "R: DeserializeOwned"))]
struct Envelope<R> {
    result: Option<BatchBody<R>>,
    error: Option<Json>,
    error_description: Option<Json>,
    #[serde(default)]
    time: Json,
}

impl<R: DeserializeOwned> Body for BatchBody<R> {
    fn read(text: &str) -> serde_json::Result<Read<Self>> {
        let body: Envelope<R> = serde_json::from_str(text)?;
        Ok(match body.result {
            Some(result) if !failed(body.error.as_ref(), Some(&result)) => {
                Read::Done(result, body.time)
            }
            // An answer without `result` and without `error` is not one Bitrix24 gives: read
            // it as its own code for that, which a read may retry.
            _ => Read::Failed(serde_json::json!({
                "error": body.error.unwrap_or_else(|| "ERROR_UNEXPECTED_ANSWER".into()),
                "error_description": body.error_description,
                "time": body.time,
            })),
        })
    }
}

/// PHP serialises an empty map as `[]` (and a map with keys 0..n as a list). Read without
/// buffering: a raw result cannot pass through serde's untagged buffer.
fn php_map<'de, D, V>(d: D) -> Result<HashMap<String, V>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct PhpMap<V>(PhantomData<V>);
    impl<'de, V: Deserialize<'de>> Visitor<'de> for PhpMap<V> {
        type Value = HashMap<String, V>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a map, or a list (PHP's empty map)")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = HashMap::new();
            while let Some((k, v)) = map.next_entry::<String, V>()? {
                out.insert(k, v);
            }
            Ok(out)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = HashMap::new();
            while let Some(v) = seq.next_element::<V>()? {
                out.insert(out.len().to_string(), v);
            }
            Ok(out)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(HashMap::new())
        }
    }
    d.deserialize_any(PhpMap(PhantomData))
}

/// A `batch` answer, split per command.
#[derive(Debug)]
pub struct BatchResult<R = Json> {
    pub results: HashMap<String, R>,
    /// A refused command's code and description.
    pub errors: HashMap<String, (String, String)>,
    /// A list command's `total`: how many rows its filter matches, over all pages.
    pub totals: HashMap<String, u64>,
}

impl<R> Default for BatchResult<R> {
    fn default() -> Self {
        BatchResult {
            results: HashMap::new(),
            errors: HashMap::new(),
            totals: HashMap::new(),
        }
    }
}

impl<R> From<BatchBody<R>> for BatchResult<R> {
    fn from(body: BatchBody<R>) -> Self {
        let errors = body
            .result_error
            .into_iter()
            .map(|(k, e)| {
                let code = e["error"].as_str().unwrap_or_default().to_string();
                let description = e["error_description"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| e.to_string());
                (k, (code, description))
            })
            .collect();
        let totals = body
            .result_total
            .into_iter()
            .filter_map(|(k, t)| Some((k, t.as_u64()?)))
            .collect();
        BatchResult {
            results: body.result,
            errors,
            totals,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    #[test]
    fn batch_answers_read_with_results_as_text_and_php_empty_maps() {
        let text = r#"{"result":{"result":{"a":[{"ID":"1"}]},"result_error":[],
            "result_total":{"a":7},"result_next":[],"result_time":{"a":{"operating":0.1}}},
            "time":{"start":1}}"#;
        let Read::Done(body, time) = BatchBody::<Box<RawValue>>::read(text).unwrap() else {
            panic!("an answer")
        };
        assert_eq!(time["start"], 1);
        assert_eq!(body.result_time["a"]["operating"], 0.1);
        let result = BatchResult::from(body);
        assert_eq!(result.results["a"].get(), r#"[{"ID":"1"}]"#);
        assert_eq!(result.totals["a"], 7);
        assert!(result.errors.is_empty());

        let refused = r#"{"result":{"result":[],"result_error":{"b":{"error":"NOT_FOUND",
            "error_description":"Not found"}}},"time":{}}"#;
        let Read::Done(body, _) = BatchBody::<Json>::read(refused).unwrap() else {
            panic!("an answer")
        };
        let result = BatchResult::from(body);
        assert_eq!(result.errors["b"], ("NOT_FOUND".into(), "Not found".into()));
    }

    #[test]
    fn an_error_envelope_is_failed_for_either_body() {
        let text = r#"{"error":"QUERY_LIMIT_EXCEEDED","error_description":"Too many"}"#;
        assert!(
            matches!(BatchBody::<Json>::read(text), Ok(Read::Failed(b)) if b["error"] == "QUERY_LIMIT_EXCEEDED")
        );
        assert!(matches!(Json::read(text), Ok(Read::Failed(_))));
        let neither = BatchBody::<Json>::read(r#"{"time":{}}"#);
        assert!(matches!(neither, Ok(Read::Failed(b)) if b["error"] == "ERROR_UNEXPECTED_ANSWER"));
    }
}
