//! Native evaluation of the common template shapes, straight on the record's JSON.
//!
//! Most templates in pipelines are a lookup with a few filters (`source.PHONE | first |
//! attr('VALUE') | phone`) or text made of such pieces (`{{ source.LAST_NAME }} {{ source.NAME }}`).
//! Running them through the template VM costs a VM state, hash maps and value conversions per
//! field; here they are parsed once (with minijinja's own parser) into a [`Chain`] and evaluated
//! directly. Everything else keeps using the VM.
//!
//! The VM stays the reference: a chain handles only the inputs whose result it knows to be the
//! VM's, and answers [`Fail::Vm`] for anything unusual (`first` of an object, `attr` of a number,
//! a lookup into a string...), which makes the caller evaluate that template with the VM instead.
//! Our own filters are the same functions in both ways (`filters::core`). An equivalence test
//! (`template.rs`) runs a corpus of templates and records both ways.

use minijinja::machinery::ast::{CallArg, Expr, Stmt};
use minijinja::value::{Value, ValueKind};
use serde_json::Value as Json;

use super::Scope;
use super::filters::core;
use super::json_object::{member, to_json};
use super::native_ops::{self, Op};

/// Why a native evaluation did not produce a value.
#[derive(Debug)]
pub enum Fail {
    /// Not handled natively for this input: evaluate with the VM.
    Vm,
    /// The template's error (the same message the VM gives).
    Error(String),
}

pub(super) type Res<T> = Result<T, Fail>;

#[derive(Debug, Clone, Copy)]
enum Root {
    Source,
    Record,
    Steps,
    Settings,
}

#[derive(Debug)]
enum Seg {
    Key(String),
    Index(i64),
    /// `source[settings.fields.branch]`: the key is the value of another lookup.
    Dynamic(Lookup),
}

/// `source.A.B[0]`: a path into one of the scope's JSON documents.
#[derive(Debug)]
pub struct Lookup {
    root: Root,
    path: Vec<Seg>,
}

/// A filter argument: a constant or a lookup.
#[derive(Debug)]
pub(super) enum Arg {
    Const(Json),
    Lookup(Lookup),
}

#[derive(Debug)]
enum Filter {
    Phone,
    Date,
    Money,
    ToNumber,
    Flatten,
    UniqueList,
    Compact,
    Lookup(Arg, Option<Arg>),
    MapValues(Arg),
    First,
    Last,
    Attr(String),
    Trim,
    Lower,
    Upper,
    String,
    Length,
    /// `default(value, lax)`; `lax` (the second argument) also replaces falsy values.
    Default(Option<Arg>, bool),
    Join(String),
    MapAttribute(String),
    MatchRules(Vec<(String, Arg)>),
}

/// A lookup (or a constant, or an operator) followed by filters: `source.X | f1 | f2(arg)`.
#[derive(Debug)]
pub struct Chain {
    base: Base,
    filters: Vec<Filter>,
}

#[derive(Debug)]
enum Base {
    Lookup(Lookup),
    Const(Json),
    Op(Box<Op>),
}

/// Text made of literal pieces and chains: `{{ source.LAST_NAME }} {{ source.NAME }}`.
#[derive(Debug)]
pub struct Text(Vec<Piece>);

#[derive(Debug)]
enum Piece {
    Raw(String),
    Expr(Chain),
}

/// A value while a chain runs: undefined (a missing field), borrowed from the scope, or computed.
pub(super) enum V<'a> {
    Undefined,
    Ref(&'a Json),
    Own(Json),
}

impl<'a> V<'a> {
    pub(super) fn get(&self) -> Option<&Json> {
        match self {
            V::Undefined => None,
            V::Ref(j) => Some(j),
            V::Own(j) => Some(j),
        }
    }

    fn from_opt(v: Option<&'a Json>) -> V<'a> {
        v.map_or(V::Undefined, V::Ref)
    }

    fn into_json(self) -> Json {
        match self {
            V::Undefined => Json::Null,
            V::Ref(j) => j.clone(),
            V::Own(j) => j,
        }
    }
}

// ---- compiling ----

/// A chain for the expression inside `{{ }}`, if it has a shape this module evaluates.
pub fn compile_expr(source: &str) -> Option<Chain> {
    let expr = minijinja::machinery::parse_expr(source).ok()?;
    chain(&expr)
}

/// Native text for a template that is only literal text and `{{ chain }}` pieces.
pub fn compile_text(source: &str) -> Option<Text> {
    let Ok(Stmt::Template(t)) = minijinja::machinery::parse(source, "<string>", Default::default())
    else {
        return None;
    };
    let mut pieces = Vec::with_capacity(t.children.len());
    for child in &t.children {
        pieces.push(match child {
            Stmt::EmitRaw(raw) => Piece::Raw(raw.raw.to_string()),
            Stmt::EmitExpr(e) => Piece::Expr(chain(&e.expr)?),
            _ => return None,
        });
    }
    Some(Text(pieces))
}

pub(super) fn chain(expr: &Expr) -> Option<Chain> {
    let base = match expr {
        Expr::Filter(f) => {
            let mut c = chain(f.expr.as_ref()?)?;
            c.filters.push(filter(f.name, &f.args)?);
            return Some(c);
        }
        other => match (lookup(other), other.as_const()) {
            (Some(l), _) => Base::Lookup(l),
            (None, Some(c)) => Base::Const(const_json(&c)?),
            (None, None) => Base::Op(Box::new(native_ops::op(other)?)),
        },
    };
    Some(Chain {
        base,
        filters: Vec::new(),
    })
}

fn lookup(expr: &Expr) -> Option<Lookup> {
    match expr {
        Expr::Var(v) => {
            let root = match v.id {
                "source" => Root::Source,
                "record" => Root::Record,
                "steps" => Root::Steps,
                "settings" => Root::Settings,
                _ => return None,
            };
            Some(Lookup {
                root,
                path: Vec::new(),
            })
        }
        Expr::GetAttr(g) => {
            let mut l = lookup(&g.expr)?;
            l.path.push(Seg::Key(g.name.to_string()));
            Some(l)
        }
        Expr::GetItem(g) => {
            let mut l = lookup(&g.expr)?;
            let seg = match g.subscript_expr.as_const() {
                Some(c) => match (c.as_str(), i64::try_from(c.clone())) {
                    (Some(s), _) => Seg::Key(s.to_string()),
                    (None, Ok(i)) if c.kind() == ValueKind::Number && c.is_integer() => {
                        Seg::Index(i)
                    }
                    _ => return None,
                },
                None => Seg::Dynamic(lookup(&g.subscript_expr)?),
            };
            l.path.push(seg);
            Some(l)
        }
        _ => None,
    }
}

/// Positional arguments only; each a constant or a lookup.
fn args(call: &[CallArg]) -> Option<Vec<Arg>> {
    call.iter()
        .map(|a| match a {
            CallArg::Pos(e) => arg(e),
            _ => None,
        })
        .collect()
}

pub(super) fn arg(expr: &Expr) -> Option<Arg> {
    if let Some(l) = lookup(expr) {
        return Some(Arg::Lookup(l));
    }
    let value = expr.as_const()?;
    const_json(&value).map(Arg::Const)
}

/// A constant as JSON, when JSON represents it faithfully (a map with non-text keys does not).
fn const_json(v: &Value) -> Option<Json> {
    match v.kind() {
        ValueKind::None | ValueKind::Bool | ValueKind::String => Some(to_json(v)),
        ValueKind::Number if v.is_integer() || v.as_i64().is_none() => Some(to_json(v)),
        ValueKind::Seq => {
            let items: Option<Vec<Json>> = v.try_iter().ok()?.map(|x| const_json(&x)).collect();
            Some(Json::Array(items?))
        }
        ValueKind::Map => {
            let mut out = serde_json::Map::new();
            for key in v.try_iter().ok()? {
                let k = key.as_str()?.to_string();
                out.insert(k, const_json(&v.get_item(&key).ok()?)?);
            }
            Some(Json::Object(out))
        }
        _ => None,
    }
}

/// The filters evaluated natively. Every name here is a minijinja builtin or a row of
/// `filter_table::FILTERS` (a template naming anything else is rejected when it loads), so this
/// list adds speed, never a filter the reference does not document.
fn filter(name: &str, call: &[CallArg]) -> Option<Filter> {
    match name {
        "map" => return map_attribute(call),
        "match_rules" => return native_ops::kwargs(call).map(Filter::MatchRules),
        _ => {}
    }
    let mut a = args(call)?.into_iter();
    let f = match (name, a.len()) {
        ("phone", 0) => Filter::Phone,
        ("date", 0) => Filter::Date,
        ("money", 0) => Filter::Money,
        ("to_number", 0) => Filter::ToNumber,
        ("flatten", 0) => Filter::Flatten,
        ("unique_list", 0) => Filter::UniqueList,
        ("compact", 0) => Filter::Compact,
        ("lookup", 1 | 2) => Filter::Lookup(a.next()?, a.next()),
        ("map_values", 1) => Filter::MapValues(a.next()?),
        ("first", 0) => Filter::First,
        ("last", 0) => Filter::Last,
        ("attr", 1) => match a.next()? {
            Arg::Const(Json::String(k)) => Filter::Attr(k),
            _ => return None,
        },
        ("trim", 0) => Filter::Trim,
        ("lower", 0) => Filter::Lower,
        ("upper", 0) => Filter::Upper,
        ("string", 0) => Filter::String,
        ("length", 0) => Filter::Length,
        ("default", 0 | 1) => Filter::Default(a.next(), false),
        ("default", 2) => {
            let value = a.next();
            match a.next()? {
                Arg::Const(lax) => Filter::Default(value, truthy(&lax)),
                Arg::Lookup(_) => return None,
            }
        }
        ("join", 0) => Filter::Join(String::new()),
        ("join", 1) => match a.next()? {
            Arg::Const(Json::String(sep)) => Filter::Join(sep),
            _ => return None,
        },
        _ => return None,
    };
    Some(f)
}

/// `map(attribute='k')`, the one form of `map` evaluated natively.
fn map_attribute(call: &[CallArg]) -> Option<Filter> {
    match native_ops::kwargs(call)?.as_slice() {
        [(name, Arg::Const(Json::String(key)))] if name == "attribute" => {
            Some(Filter::MapAttribute(key.clone()))
        }
        _ => None,
    }
}

/// Jinja truthiness of a JSON value.
pub fn truthy(v: &Json) -> bool {
    match v {
        Json::Null => false,
        Json::Bool(b) => *b,
        Json::Number(n) => n.as_f64() != Some(0.0),
        Json::String(s) => !s.is_empty(),
        Json::Array(a) => !a.is_empty(),
        Json::Object(o) => !o.is_empty(),
    }
}

// ---- evaluating ----

impl Lookup {
    /// The value at the path; `None` when it is missing (undefined).
    fn resolve<'a>(&self, scope: &'a Scope) -> Res<Option<&'a Json>> {
        let mut at: &Json = match self.root {
            Root::Source => &scope.source,
            Root::Record => &scope.record,
            Root::Steps => &scope.steps,
            Root::Settings => &scope.settings,
        };
        for seg in &self.path {
            let key;
            let seg = match seg {
                Seg::Dynamic(l) => {
                    key = match l.resolve(scope)? {
                        Some(Json::String(s)) => Seg::Key(s.clone()),
                        Some(Json::Number(n)) if n.is_i64() => Seg::Index(n.as_i64().expect("i64")),
                        _ => return Err(Fail::Vm),
                    };
                    &key
                }
                s => s,
            };
            // The same answers as `JsonView::get_value`.
            let next = match (at, seg) {
                (Json::Object(m), Seg::Key(k)) => member(m, k),
                (Json::Object(_), Seg::Index(_)) => None,
                (Json::Array(items), Seg::Index(i)) => {
                    let i = if *i < 0 { items.len() as i64 + i } else { *i };
                    usize::try_from(i).ok().and_then(|i| items.get(i))
                }
                // Attributes of lists, indexing text, lookups into scalars: the VM knows.
                _ => return Err(Fail::Vm),
            };
            match next {
                Some(v) => at = v,
                None => return Ok(None),
            }
        }
        Ok(Some(at))
    }
}

impl Arg {
    fn resolve<'a>(&'a self, scope: &'a Scope) -> Res<Option<&'a Json>> {
        match self {
            Arg::Const(v) => Ok(Some(v)),
            Arg::Lookup(l) => l.resolve(scope),
        }
    }
}

fn error(e: String) -> Fail {
    Fail::Error(e)
}

impl Chain {
    /// The value of the chain (`Json::Null` for none and undefined).
    pub fn eval(&self, scope: &Scope) -> Res<Json> {
        self.run(scope).map(V::into_json)
    }

    pub(super) fn run<'a>(&'a self, scope: &'a Scope) -> Res<V<'a>> {
        let mut v = match &self.base {
            Base::Lookup(l) => V::from_opt(l.resolve(scope)?),
            Base::Const(c) => V::Ref(c),
            Base::Op(op) => op.run(scope)?,
        };
        for f in &self.filters {
            v = apply(f, v, scope)?;
        }
        Ok(v)
    }
}

fn apply<'a>(f: &'a Filter, v: V<'a>, scope: &'a Scope) -> Res<V<'a>> {
    let own = |r: Result<Json, String>| r.map(V::Own).map_err(error);
    match f {
        Filter::Phone => own(core::phone(v.get())),
        Filter::Date => own(core::date(v.get())),
        Filter::Money => own(core::money(v.get())),
        Filter::ToNumber => own(core::to_number(v.get())),
        Filter::Flatten => own(core::flatten(v.get())),
        Filter::UniqueList => own(core::unique_list(v.get())),
        Filter::Compact => own(core::compact(v.get())),
        Filter::Lookup(map, default) => {
            let map = map.resolve(scope)?;
            // Like the VM's optional argument: an undefined or none default is no default.
            let default = match default {
                Some(d) => d.resolve(scope)?.filter(|d| !d.is_null()),
                None => None,
            };
            own(core::lookup(v.get(), map, default))
        }
        Filter::MapValues(map) => own(core::map_values(v.get(), map.resolve(scope)?)),
        Filter::MapAttribute(key) => native_ops::map_attribute(v.get(), key).map(V::Own),
        Filter::MatchRules(facts) => {
            let facts = facts
                .iter()
                .map(|(name, a)| Ok((name.clone(), a.resolve(scope)?)))
                .collect::<Res<Vec<_>>>()?;
            own(core::match_rules(v.get(), &facts))
        }
        Filter::First => first_or_last(v, true),
        Filter::Last => first_or_last(v, false),
        Filter::Attr(key) => match v {
            V::Ref(Json::Object(m)) => Ok(V::from_opt(member(m, key))),
            V::Own(Json::Object(mut m)) => Ok(m.remove(key.as_str()).map_or(V::Undefined, V::Own)),
            _ => Err(Fail::Vm),
        },
        Filter::Trim | Filter::Lower | Filter::Upper => {
            let Some(Json::String(s)) = v.get() else {
                return Err(Fail::Vm);
            };
            Ok(V::Own(Json::String(match f {
                Filter::Trim => s.trim().to_string(),
                Filter::Lower => s.to_lowercase(),
                _ => s.to_uppercase(),
            })))
        }
        Filter::String => match v.get() {
            Some(Json::String(_)) => Ok(v),
            Some(x @ (Json::Number(_) | Json::Bool(_) | Json::Null)) => {
                Ok(V::Own(Json::String(core::text(x).into_owned())))
            }
            _ => Err(Fail::Vm),
        },
        Filter::Length => match v.get() {
            None => Ok(V::Own(Json::from(0))),
            Some(Json::String(s)) => Ok(V::Own(Json::from(s.chars().count()))),
            Some(Json::Array(a)) => Ok(V::Own(Json::from(a.len()))),
            Some(Json::Object(o)) => Ok(V::Own(Json::from(o.len()))),
            _ => Err(Fail::Vm),
        },
        Filter::Default(other, lax) => {
            let replace = match v.get() {
                None => true,
                Some(x) => *lax && !truthy(x),
            };
            if !replace {
                return Ok(v);
            }
            match other {
                Some(o) => Ok(V::from_opt(o.resolve(scope)?)),
                None => Ok(V::Own(Json::String(String::new()))),
            }
        }
        Filter::Join(sep) => {
            let Some(Json::Array(items)) = v.get() else {
                return Err(Fail::Vm);
            };
            let mut out = String::new();
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(sep);
                }
                out.push_str(&core::text(item));
            }
            Ok(V::Own(Json::String(out)))
        }
    }
}

/// `first` / `last` of a list or a text; anything else is left to the VM.
fn first_or_last(v: V<'_>, first: bool) -> Res<V<'_>> {
    match v {
        V::Undefined => Ok(V::Undefined),
        _ if v.get().and_then(Json::as_str) == Some("") => Ok(V::Undefined),
        V::Ref(Json::String(s)) => Ok(V::Own(Json::String(edge_char(s, first)))),
        V::Own(Json::String(s)) => Ok(V::Own(Json::String(edge_char(&s, first)))),
        V::Ref(Json::Array(items)) => Ok(V::from_opt(if first {
            items.first()
        } else {
            items.last()
        })),
        V::Own(Json::Array(mut items)) => {
            let item = if first {
                items.drain(..).next()
            } else {
                items.pop()
            };
            Ok(item.map_or(V::Undefined, V::Own))
        }
        _ => Err(Fail::Vm),
    }
}

fn edge_char(s: &str, first: bool) -> String {
    let c = if first {
        s.chars().next()
    } else {
        s.chars().next_back()
    };
    c.map(String::from).unwrap_or_default()
}

impl Text {
    /// The rendered text.
    pub fn render(&self, scope: &Scope) -> Res<String> {
        // Room for the literal text and a short value per piece: usually no regrowth.
        let mut out = String::with_capacity(self.0.len() * 16);
        for piece in &self.0 {
            match piece {
                Piece::Raw(s) => out.push_str(s),
                Piece::Expr(c) => match c.run(scope)? {
                    V::Undefined => {}
                    v => out.push_str(&core::text(v.get().expect("defined"))),
                },
            }
        }
        Ok(out)
    }
}
