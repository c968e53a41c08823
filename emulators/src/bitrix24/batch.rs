//! `batch`: parse the `cmd` map, run sub-commands in order with `$result[...]` references
//! resolved against earlier results, and assemble the PHP-shaped answer.

use super::methods::{ApiError, Reply};
use super::params::{get_ci, parse_query, truthy};
use serde_json::{Map, Value};

/// Most sub-commands one batch may carry.
pub const MAX_COMMANDS: usize = 50;

/// One parsed sub-command.
#[derive(Clone, Debug, PartialEq)]
pub struct Command {
    pub key: String,
    /// lower-case, without `.json`
    pub method: String,
    /// the raw query string after `?`
    pub query: String,
}

/// `crm.contact.list.json?x=1` -> ("crm.contact.list", "x=1").
pub fn split_command(s: &str) -> (String, String) {
    let (m, q) = s.split_once('?').unwrap_or((s, ""));
    let m = m.trim().trim_start_matches('/').to_ascii_lowercase();
    let m = m.strip_suffix(".json").map(str::to_string).unwrap_or(m);
    (m, q.to_string())
}

/// Parse `cmd` (map or list) and validate length and nesting.
pub fn parse_commands(params: &Map<String, Value>) -> Result<Vec<Command>, ApiError> {
    let entries: Vec<(String, String)> = match get_ci(params, "cmd") {
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect(),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v.as_str().unwrap_or_default().to_string()))
            .collect(),
        _ => Vec::new(),
    };
    if entries.len() > MAX_COMMANDS {
        return Err(ApiError::new(
            400,
            "ERROR_BATCH_LENGTH_EXCEEDED",
            "Max batch length exceeded",
        ));
    }
    let mut out = Vec::with_capacity(entries.len());
    for (key, s) in entries {
        let (method, query) = split_command(&s);
        if method == "batch" {
            return Err(ApiError::new(
                405,
                "ERROR_BATCH_METHOD_NOT_ALLOWED",
                "Method is not allowed for batch usage",
            ));
        }
        out.push(Command { key, method, query });
    }
    Ok(out)
}

/// Results collected so far, by command key.
#[derive(Debug, Default)]
pub struct State {
    pub result: Map<String, Value>,
    pub error: Map<String, Value>,
    pub total: Map<String, Value>,
    pub next: Map<String, Value>,
    pub time: Map<String, Value>,
}

impl State {
    fn base(&self, name: &str) -> Option<&Map<String, Value>> {
        match name {
            "result" => Some(&self.result),
            "result_error" => Some(&self.error),
            "result_total" => Some(&self.total),
            "result_next" => Some(&self.next),
            "result_time" => Some(&self.time),
            _ => None,
        }
    }

    /// Look up `$name[seg0][seg1]...`; None if any step is missing (or null, like PHP isset).
    fn lookup(&self, name: &str, segs: &[&str]) -> Option<&Value> {
        let (first, rest) = segs.split_first()?;
        let mut v = self.base(name)?.get(*first)?;
        for s in rest {
            v = match v {
                Value::Array(a) => a.get(s.parse::<usize>().ok()?)?,
                Value::Object(o) => o.get(*s)?,
                _ => return None,
            };
        }
        (!v.is_null()).then_some(v)
    }
}

/// Find the reference starting at `s` (which begins with `$`): (name, segments, length).
fn parse_ref(s: &str) -> Option<(&str, Vec<&str>, usize)> {
    let body = s.strip_prefix('$')?;
    let name_len = body
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
        .count();
    let name = &body[..name_len];
    if !name.starts_with("result") {
        return None;
    }
    let mut rest = &body[name_len..];
    let mut segs = Vec::new();
    while let Some(r) = rest.strip_prefix('[') {
        let close = r.find(']')?;
        segs.push(&r[..close]);
        rest = &r[close + 1..];
    }
    if segs.is_empty() {
        return None;
    }
    Some((name, segs, s.len() - rest.len()))
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(true) => Some("1".into()),
        Value::Bool(false) => Some(String::new()),
        _ => None,
    }
}

/// Substitute `$result[...]` references inside one string. A string that is exactly one
/// reference to an array/object becomes that value; unresolved references stay as text.
fn resolve_str(s: &str, st: &State) -> Option<Value> {
    if !s.contains("$result") {
        return None;
    }
    if let Some((name, segs, len)) = parse_ref(s)
        && len == s.len()
        && let Some(v @ (Value::Array(_) | Value::Object(_))) = st.lookup(name, &segs)
    {
        return Some(v.clone());
    }
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let mut changed = false;
    while i < s.len() {
        if s[i..].starts_with("$result")
            && let Some((name, segs, len)) = parse_ref(&s[i..])
        {
            if let Some(t) = st.lookup(name, &segs).and_then(text) {
                out.push_str(&t);
                i += len;
                changed = true;
                continue;
            }
            out.push_str(&s[i..i + len]);
            i += len;
            continue;
        }
        let ch = s[i..].chars().next().expect("in bounds");
        out.push(ch);
        i += ch.len_utf8();
    }
    changed.then_some(Value::String(out))
}

/// Resolve references in every string of an (already decoded) parameter tree.
pub fn resolve_refs(v: &mut Value, st: &State) {
    match v {
        Value::String(s) => {
            if let Some(new) = resolve_str(s, st) {
                *v = new;
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| resolve_refs(x, st)),
        Value::Object(o) => o.values_mut().for_each(|x| resolve_refs(x, st)),
        _ => {}
    }
}

/// PHP `json_encode` of an associative array: empty -> `[]`, keys 0..n-1 -> list.
pub fn php_map(m: Map<String, Value>) -> Value {
    if m.is_empty() {
        return Value::Array(Vec::new());
    }
    if m.keys()
        .enumerate()
        .all(|(i, k)| k.parse::<usize>().ok() == Some(i))
    {
        return Value::Array(m.into_iter().map(|(_, v)| v).collect());
    }
    Value::Object(m)
}

/// Run a batch. `exec(command, params)` executes one sub-command and returns its outcome and
/// its `time` object. Returns the `result` member of the answer.
pub fn run(
    commands: &[Command],
    halt: bool,
    mut exec: impl FnMut(&Command, Map<String, Value>) -> (Result<Reply, ApiError>, Value),
) -> Value {
    let mut st = State::default();
    for cmd in commands {
        let mut params = Value::Object(parse_query(&cmd.query));
        resolve_refs(&mut params, &st);
        let Value::Object(params) = params else {
            unreachable!("object stays object")
        };
        let (outcome, time) = exec(cmd, params);
        match outcome {
            Ok(reply) => {
                st.result.insert(cmd.key.clone(), reply.result);
                if let Some(t) = reply.total {
                    st.total.insert(cmd.key.clone(), t.into());
                }
                if let Some(n) = reply.next {
                    st.next.insert(cmd.key.clone(), n.into());
                }
                st.time.insert(cmd.key.clone(), time);
            }
            Err(e) => {
                st.error.insert(cmd.key.clone(), e.body());
                if halt {
                    break;
                }
            }
        }
    }
    let mut out = Map::new();
    out.insert("result".into(), php_map(st.result));
    out.insert("result_error".into(), php_map(st.error));
    out.insert("result_total".into(), php_map(st.total));
    out.insert("result_next".into(), php_map(st.next));
    out.insert("result_time".into(), php_map(st.time));
    Value::Object(out)
}

/// `halt` parameter.
pub fn halt_flag(params: &Map<String, Value>) -> bool {
    get_ci(params, "halt").is_some_and(truthy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reply(v: Value) -> Reply {
        Reply {
            result: v,
            total: None,
            next: None,
            rows: 0,
            counted: false,
        }
    }

    #[test]
    fn references() {
        let mut st = State::default();
        st.result.insert(
            "p0".into(),
            json!([{"ID": "7", "DATE_MODIFY": "2024-06-01T10:00:00+03:00"}]),
        );
        st.result
            .insert("u".into(), json!({"ID": "1", "UF_DEPARTMENT": [5, 9]}));
        st.total.insert("p0".into(), json!(1));
        let mut v = Value::Object(parse_query(
            "filter[>ID]=$result[p0][0][ID]&filter[%3E%3DDATE_MODIFY]=$result[p0][0][DATE_MODIFY]\
             &filter[@ID]=$result[u][UF_DEPARTMENT]&x=a$result[u][ID]b&miss=$result[p0][49][ID]&t=$result_total[p0]&y=$other[1]",
        ));
        resolve_refs(&mut v, &st);
        assert_eq!(
            v,
            json!({"filter": {">ID": "7", ">=DATE_MODIFY": "2024-06-01T10:00:00+03:00", "@ID": [5, 9]},
                   "x": "a1b", "miss": "$result[p0][49][ID]", "t": "1", "y": "$other[1]"})
        );
    }

    #[test]
    fn run_halt_and_shapes() {
        let cmds = parse_commands(
            &json!({"cmd": {
                "a": "crm.contact.list.json?start=-1",
                "b": "crm.contact.get?id=$result[a][0][ID]",
                "c": "bad.method",
                "d": "crm.contact.get?id=1"
            }})
            .as_object()
            .unwrap()
            .clone(),
        )
        .unwrap();
        assert_eq!(cmds[0].method, "crm.contact.list");
        let exec = |c: &Command, p: Map<String, Value>| -> (Result<Reply, ApiError>, Value) {
            match c.method.as_str() {
                "crm.contact.list" => (
                    Ok(Reply {
                        total: Some(0),
                        ..reply(json!([{"ID": "42"}]))
                    }),
                    json!({}),
                ),
                "crm.contact.get" => (Ok(reply(json!({"ID": p["id"]}))), json!({})),
                _ => (Err(ApiError::method_not_found()), Value::Null),
            }
        };
        let out = run(&cmds, false, exec);
        assert_eq!(out["result"]["b"], json!({"ID": "42"}));
        assert_eq!(out["result_error"]["c"]["error"], "ERROR_METHOD_NOT_FOUND");
        assert_eq!(out["result"]["d"]["ID"], "1");
        assert_eq!(out["result_next"], json!([]));
        assert_eq!(out["result_total"], json!({"a": 0}));
        let out = run(&cmds, true, exec);
        assert!(
            out["result"].get("d").is_none(),
            "halt stops at the first error"
        );
        let ok = run(&cmds[..2], true, exec);
        assert_eq!(ok["result_error"], json!([]));
        // list-shaped cmd gives list-shaped results
        let cmds = parse_commands(
            &json!({"cmd": ["crm.contact.get?id=1", "crm.contact.get?id=2"]})
                .as_object()
                .unwrap()
                .clone(),
        )
        .unwrap();
        let out = run(&cmds, false, exec);
        assert_eq!(out["result"], json!([{"ID": "1"}, {"ID": "2"}]));
        // limits
        let many: Map<String, Value> = (0..51)
            .map(|i| (format!("c{i}"), json!("user.current")))
            .collect();
        let e = parse_commands(&json!({"cmd": many}).as_object().unwrap().clone()).unwrap_err();
        assert_eq!(
            (e.status, e.code.as_str()),
            (400, "ERROR_BATCH_LENGTH_EXCEEDED")
        );
        let e = parse_commands(
            &json!({"cmd": {"x": "batch?cmd[a]=user.current"}})
                .as_object()
                .unwrap()
                .clone(),
        )
        .unwrap_err();
        assert_eq!(
            (e.status, e.code.as_str()),
            (405, "ERROR_BATCH_METHOD_NOT_ALLOWED")
        );
        assert!(halt_flag(
            &json!({"halt": "true"}).as_object().unwrap().clone()
        ));
        assert!(!halt_flag(&json!({"halt": 0}).as_object().unwrap().clone()));
    }
}
