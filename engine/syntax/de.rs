//! A serde `Deserializer` over [`Node`] whose errors carry the position of the node that caused
//! them: a type error points at the value, an unknown key at the key, a missing key at the mapping.
//!
//! Two magic newtype names let config types see the raw node while being deserialized:
//! [`RawNode`] keeps a subtree for later (a component whose `type:` picks its config type), and
//! [`Located`] keeps a value together with its position (templates, paths, references).

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::diag::{Diagnostic, unknown_message};
use super::node::{Filled, Kind, Node};
use super::yaml::scalar_kind;

const NODE_MAGIC: &str = "$etl::node";

thread_local! {
    static CAPTURED: RefCell<Option<Node>> = const { RefCell::new(None) };
}

#[derive(Debug)]
pub struct Error {
    message: String,
    node: Option<Node>,
}

impl Error {
    fn at(mut self, node: &Node) -> Error {
        if self.node.is_none() {
            self.node = Some(node.clone());
        }
        self
    }

    pub fn into_diagnostic(self, fallback: &Node) -> Diagnostic {
        let node = self.node.as_ref().unwrap_or(fallback);
        let d = Diagnostic::at(node, self.message);
        // A value the environment did not fill is reported once, as missing, by the loader.
        if node.filled == Filled::Unresolved {
            d.follows()
        } else {
            d
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error {
            message: msg.to_string(),
            node: None,
        }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Error::custom(unknown_message("key", field, expected))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        Error::custom(unknown_message("value", variant, expected))
    }

    fn missing_field(field: &'static str) -> Self {
        Error::custom(format!("missing required key `{field}`"))
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Error::custom(format!(
            "expected {}, found {}",
            plain_expected(&exp.to_string()),
            describe(unexp)
        ))
    }

    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Self::invalid_type(unexp, exp)
    }
}

fn describe(u: de::Unexpected<'_>) -> String {
    match u {
        de::Unexpected::Map => "a mapping".into(),
        de::Unexpected::Seq => "a list".into(),
        de::Unexpected::Str(s) => format!("the string \"{s}\""),
        de::Unexpected::Unit => "null".into(),
        de::Unexpected::Signed(i) => format!("the number {i}"),
        de::Unexpected::Unsigned(u) => format!("the number {u}"),
        de::Unexpected::Float(f) => format!("the number {f}"),
        de::Unexpected::Bool(b) => format!("`{b}`"),
        other => other.to_string(),
    }
}

/// What serde expects, in the words of a YAML file rather than of Rust (`u64`, `a sequence`,
/// `struct X`).
fn plain_expected(rust: &str) -> String {
    let plain = match rust {
        "u8" => "a whole number from 0 to 255",
        "u16" => "a whole number from 0 to 65535",
        "u32" | "u64" | "u128" | "usize" => "a whole number (0 or more)",
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number",
        "f32" | "f64" => "a number",
        "a sequence" => "a list",
        "a map" => "a mapping",
        "a borrowed string" => "a string",
        "unit" => "nothing (null)",
        "option" => "a value or null",
        "char" | "a character" => "a single character",
        _ if rust.starts_with("struct ") => "a mapping",
        _ if rust.starts_with("a tuple of size ") => {
            let n = rust.trim_start_matches("a tuple of size ");
            return format!("a list of {n} values");
        }
        _ if rust.starts_with("tuple struct ") || rust.starts_with("a tuple") => "a list",
        _ => return rust.to_string(),
    };
    plain.to_string()
}

/// Deserialize a config type from a node; the error points at the offending node.
pub fn from_node<'de, T: Deserialize<'de>>(node: &Node) -> Result<T, Diagnostic> {
    T::deserialize(NodeDe(node)).map_err(|e| e.into_diagnostic(node))
}

/// A config subtree kept as written, with positions (component bodies, free-form parameters).
#[derive(Clone, Debug)]
pub struct RawNode(pub Node);

impl<'de> Deserialize<'de> for RawNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        capture_node(d).map(RawNode)
    }
}

impl schemars::JsonSchema for RawNode {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "AnyValue".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!(true)
    }
}

/// Take the node being deserialized. Outside our deserializer (e.g. from JSON in a unit test)
/// a node is rebuilt from the plain value, without positions.
pub fn capture_node<'de, D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
    struct Capture;
    impl<'de> Visitor<'de> for Capture {
        type Value = Option<Node>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("any value")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(CAPTURED.with(|c| c.borrow_mut().take()))
        }
        fn visit_newtype_struct<D2: Deserializer<'de>>(
            self,
            d: D2,
        ) -> Result<Self::Value, D2::Error> {
            let v = serde_json::Value::deserialize(d)?;
            Ok(Some(Node::from_json(
                &v,
                Default::default(),
                "<value>".into(),
            )))
        }
    }
    d.deserialize_newtype_struct(NODE_MAGIC, Capture)?
        .ok_or_else(|| de::Error::custom("internal: node not captured"))
}

pub struct NodeDe<'a>(pub &'a Node);

/// Numbers, booleans and characters: a value the environment filled in (`${env:T}`) is read as
/// the YAML scalar its text spells; a value it could not fill stands in as `$stand_in`, since its
/// absence is already reported where it is written.
macro_rules! scalar_or_env {
    ($($m:ident => $visit:ident($stand_in:expr);)*) => {$(
        fn $m<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
            let node = self.0;
            match (node.filled, &node.kind) {
                (Filled::Unresolved, _) => v.$visit::<Error>($stand_in).map_err(|e| e.at(node)),
                (Filled::FromEnv, Kind::Str(text)) => {
                    let typed = Node {
                        kind: scalar_kind(text.trim(), saphyr_parser::ScalarStyle::Plain, false),
                        ..node.clone()
                    };
                    NodeDe(&typed).deserialize_any(v).map_err(|e| {
                        Error { node: Some(node.clone()), ..e }
                    })
                }
                _ => self.deserialize_any(v),
            }
        }
    )*};
}

macro_rules! forward_to_any {
    ($($m:ident)*) => {$(
        fn $m<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> { self.deserialize_any(v) }
    )*};
}

impl<'de> Deserializer<'de> for NodeDe<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        let node = self.0;
        let result = match &node.kind {
            Kind::Null => v.visit_unit(),
            Kind::Bool(b) => v.visit_bool(*b),
            Kind::Int(i) => v.visit_i64(*i),
            Kind::Float(f) => v.visit_f64(*f),
            Kind::Str(s) => v.visit_str(s),
            Kind::Seq(items) => v.visit_seq(Seq { iter: items.iter() }),
            Kind::Map(entries) => v.visit_map(Map {
                iter: entries.iter(),
                value: None,
            }),
        };
        result.map_err(|e| e.at(node))
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        match self.0.kind {
            Kind::Null => v.visit_none(),
            _ => v.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        v: V,
    ) -> Result<V::Value, Error> {
        if name == NODE_MAGIC {
            CAPTURED.with(|c| *c.borrow_mut() = Some(self.0.clone()));
            return v.visit_unit();
        }
        v.visit_newtype_struct(self)
    }

    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        // Scalars YAML resolved as numbers or booleans are still fine where text is expected
        // (`sync_start_date: 2020` or an ID written as `42`).
        match &self.0.kind {
            Kind::Int(_) | Kind::Float(_) | Kind::Bool(_) => v
                .visit_string(self.0.key_text())
                .map_err(|e: Error| e.at(self.0)),
            _ => self.deserialize_any(v),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_string(v)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        let node = self.0;
        let result = match &node.kind {
            // A choice the environment did not fill: any valid one stands in (see `scalar_or_env`).
            Kind::Str(_) if node.filled == Filled::Unresolved && !variants.is_empty() => {
                v.visit_enum(variants[0].into_deserializer())
            }
            Kind::Str(s) => v.visit_enum(s.as_str().into_deserializer()),
            Kind::Map(entries) if entries.len() == 1 => v.visit_enum(Enum {
                key: &entries[0].0,
                value: &entries[0].1,
            }),
            _ => Err(<Error as de::Error>::custom(format!(
                "expected a name or a single-key mapping, found {}",
                node.type_name()
            ))),
        };
        result.map_err(|e| e.at(node))
    }

    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_any(v)
    }

    scalar_or_env! {
        deserialize_bool => visit_bool(false);
        deserialize_i8 => visit_u64(1);
        deserialize_i16 => visit_u64(1);
        deserialize_i32 => visit_u64(1);
        deserialize_i64 => visit_u64(1);
        deserialize_i128 => visit_u64(1);
        deserialize_u8 => visit_u64(1);
        deserialize_u16 => visit_u64(1);
        deserialize_u32 => visit_u64(1);
        deserialize_u64 => visit_u64(1);
        deserialize_u128 => visit_u64(1);
        deserialize_f32 => visit_f64(1.0);
        deserialize_f64 => visit_f64(1.0);
        deserialize_char => visit_char('x');
    }

    forward_to_any! {
        deserialize_bytes deserialize_byte_buf
        deserialize_seq deserialize_map deserialize_identifier deserialize_ignored_any
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_any(v)
    }
    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, v: V) -> Result<V::Value, Error> {
        self.deserialize_any(v)
    }
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        v: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_any(v)
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        match self.0.kind {
            Kind::Map(_) => self.deserialize_any(v),
            _ => Err(<Error as de::Error>::custom(format!(
                "expected a mapping, found {}",
                self.0.type_name()
            ))
            .at(self.0)),
        }
    }
}

struct Seq<'a> {
    iter: std::slice::Iter<'a, Node>,
}

impl<'de> SeqAccess<'de> for Seq<'_> {
    type Error = Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        match self.iter.next() {
            Some(node) => seed
                .deserialize(NodeDe(node))
                .map(Some)
                .map_err(|e| e.at(node)),
            None => Ok(None),
        }
    }
}

struct Map<'a> {
    iter: std::slice::Iter<'a, (Node, Node)>,
    value: Option<&'a Node>,
}

impl<'de> MapAccess<'de> for Map<'_> {
    type Error = Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        match self.iter.next() {
            Some((k, v)) => {
                self.value = Some(v);
                seed.deserialize(NodeDe(k)).map(Some).map_err(|e| e.at(k))
            }
            None => Ok(None),
        }
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let node = self.value.take().expect("value after key");
        seed.deserialize(NodeDe(node)).map_err(|e| e.at(node))
    }
}

struct Enum<'a> {
    key: &'a Node,
    value: &'a Node,
}

impl<'de, 'a> de::EnumAccess<'de> for Enum<'a> {
    type Error = Error;
    type Variant = NodeDe<'a>;
    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, NodeDe<'a>), Error> {
        let v = seed
            .deserialize(NodeDe(self.key))
            .map_err(|e| e.at(self.key))?;
        Ok((v, NodeDe(self.value)))
    }
}

impl<'de> de::VariantAccess<'de> for NodeDe<'_> {
    type Error = Error;
    fn unit_variant(self) -> Result<(), Error> {
        Ok(())
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        seed.deserialize(self)
    }
    fn tuple_variant<V: Visitor<'de>>(self, _: usize, v: V) -> Result<V::Value, Error> {
        self.deserialize_any(v)
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        _: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_any(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::node::{Pos, parse};

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Conf {
        path: String,
        #[serde(default)]
        batch_size: Option<u32>,
    }

    #[test]
    fn errors_point_at_the_offending_node() {
        let doc = parse("path: a\nbatch_size: lots\n", "p.yaml").unwrap();
        let d = from_node::<Conf>(&doc).unwrap_err();
        assert_eq!(d.span.start, Pos { line: 2, col: 13 });
        assert!(
            d.message.contains("found the string \"lots\""),
            "{}",
            d.message
        );

        let doc = parse("path: a\nbach_size: 3\n", "p.yaml").unwrap();
        let d = from_node::<Conf>(&doc).unwrap_err();
        assert_eq!(d.span.start, Pos { line: 2, col: 1 });
        assert_eq!(
            d.message,
            "unknown key `bach_size` (did you mean `batch_size`?)"
        );

        let doc = parse("batch_size: 3\n", "p.yaml").unwrap();
        let d = from_node::<Conf>(&doc).unwrap_err();
        assert_eq!(d.message, "missing required key `path`");
    }

    #[test]
    fn raw_nodes_keep_positions() {
        #[derive(Deserialize)]
        struct Outer {
            inner: RawNode,
        }
        let doc = parse("inner:\n  a: 1\n", "p.yaml").unwrap();
        let o: Outer = from_node(&doc).unwrap();
        assert_eq!(
            o.inner.0.get("a").unwrap().span.start,
            Pos { line: 2, col: 6 }
        );
    }
}
