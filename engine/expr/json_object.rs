//! Records are `serde_json::Value`s. Converting each one into a minijinja value for every template
//! would copy it field by field; instead a record is shared and looked into lazily.

use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;

use minijinja::value::{Enumerator, Object, ObjectRepr, Value};
use serde_json::Value as Json;

/// A view of one value inside a shared JSON document.
pub struct JsonView {
    root: Arc<Json>,
    at: NonNull<Json>,
}

// SAFETY: `at` points into `root`, which is immutable and kept alive by the Arc for as long as
// the view exists; serde_json values are Send + Sync.
unsafe impl Send for JsonView {}
unsafe impl Sync for JsonView {}

impl fmt::Debug for JsonView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.get().fmt(f)
    }
}

impl JsonView {
    fn get(&self) -> &Json {
        // SAFETY: see the Send/Sync comment above.
        unsafe { self.at.as_ref() }
    }

    fn child(&self, value: &Json) -> Value {
        to_value_in(&self.root, value)
    }
}

/// A minijinja value for a whole shared document.
pub fn to_value(root: &Arc<Json>) -> Value {
    to_value_in(root, root)
}

fn to_value_in(root: &Arc<Json>, value: &Json) -> Value {
    match value {
        Json::Null => Value::from(()),
        Json::Bool(b) => Value::from(*b),
        Json::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Value::from(i),
            (None, Some(f)) => Value::from(f),
            _ => Value::from(n.to_string()),
        },
        Json::String(s) => Value::from(s.as_str()),
        Json::Array(_) | Json::Object(_) => Value::from_object(JsonView {
            root: root.clone(),
            at: NonNull::from(value),
        }),
    }
}

impl Object for JsonView {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        match self.get() {
            Json::Array(_) => ObjectRepr::Seq,
            _ => ObjectRepr::Map,
        }
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match self.get() {
            Json::Object(map) => map.get(key.as_str()?).map(|v| self.child(v)),
            Json::Array(items) => {
                let idx = i64::try_from(key.clone()).ok()?;
                let idx = if idx < 0 {
                    items.len() as i64 + idx
                } else {
                    idx
                };
                items.get(usize::try_from(idx).ok()?).map(|v| self.child(v))
            }
            _ => None,
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        match self.get() {
            Json::Array(items) => Enumerator::Seq(items.len()),
            Json::Object(map) => {
                Enumerator::Values(map.keys().map(|k| Value::from(k.as_str())).collect())
            }
            _ => Enumerator::Empty,
        }
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        match self.get() {
            Json::Array(items) => Some(items.len()),
            Json::Object(map) => Some(map.len()),
            _ => None,
        }
    }
}

/// Back from a template result to JSON (undefined and none become null).
pub fn to_json(value: &Value) -> Json {
    if value.is_undefined() || value.is_none() {
        return Json::Null;
    }
    serde_json::to_value(value).unwrap_or(Json::Null)
}
