//! The JSON-RPC envelope: errors and their messages, the method table, masking secrets in the
//! log, and reading typed parameters.

use super::*;

/// A JSON-RPC error on its way out.
pub(super) struct RpcErr {
    pub(super) code: i64,
    pub(super) mnemonic: String,
    pub(super) message: String,
    pub(super) field: Option<String>,
    pub(super) value: Json,
    pub(super) metadata: Json,
}

pub(super) fn err(code: i64, mnemonic: &str, message: impl Into<String>) -> RpcErr {
    RpcErr {
        code,
        mnemonic: mnemonic.into(),
        message: message.into(),
        field: None,
        value: Json::Null,
        metadata: json!({}),
    }
}

pub(super) fn param_err(
    mnemonic: &str,
    field: &str,
    value: Json,
    message: impl Into<String>,
) -> RpcErr {
    RpcErr {
        field: Some(field.into()),
        value,
        ..err(-32602, mnemonic, message)
    }
}

pub(super) fn message_of(code: i64) -> &'static str {
    match code {
        -32700 => "Parse error",
        -32600 => "Invalid Request",
        -32601 => "Method not found",
        -32602 => "Invalid params",
        -32603 => "Internal error",
        -32001 => "Authorization error",
        -32003 => "Forbidden",
        -32008 => "Component disabled",
        -32009 => "Account inactive",
        -32029 => "Limit exceeded",
        -32099 => "Unsupported request",
        _ => "Error",
    }
}

pub(super) const METHODS: &[(&str, &[&str])] = &[
    ("login.user", &["login", "password"]),
    ("logout.user", &["access_token"]),
    ("get.account", &["access_token", "user_id"]),
    (
        "get.tags",
        &[
            "access_token",
            "user_id",
            "limit",
            "offset",
            "fields",
            "filter",
            "sort",
        ],
    ),
    (
        "get.calls_report",
        &[
            "access_token",
            "user_id",
            "date_from",
            "date_till",
            "limit",
            "offset",
            "fields",
            "filter",
            "sort",
            "include_ongoing_calls",
        ],
    ),
    (
        "get.communications_report",
        &[
            "access_token",
            "user_id",
            "date_from",
            "date_till",
            "limit",
            "offset",
            "fields",
            "filter",
            "sort",
        ],
    ),
    (
        "set.tag_sales",
        &[
            "access_token",
            "user_id",
            "communication_id",
            "communication_type",
            "date_time",
            "transaction_value",
            "comment",
        ],
    ),
    (
        "set.tag_communications",
        &[
            "access_token",
            "user_id",
            "communication_id",
            "communication_type",
            "tag_id",
        ],
    ),
    (
        "unset.tag_communications",
        &[
            "access_token",
            "user_id",
            "communication_id",
            "communication_type",
            "tag_id",
        ],
    ),
    (
        "create.communication_comment",
        &[
            "access_token",
            "user_id",
            "communication_id",
            "communication_type",
            "comment",
        ],
    ),
];

pub(super) fn is_write(method: &str) -> bool {
    !method.starts_with("get.")
}

pub(super) fn masked(params: &Json) -> Json {
    let mut p = params.clone();
    if let Json::Object(m) = &mut p {
        for k in ["access_token", "password"] {
            if m.contains_key(k) {
                m.insert(k.into(), json!("***"));
            }
        }
    }
    p
}

pub(super) fn now_local() -> NaiveDateTime {
    chrono::Utc::now()
        .with_timezone(&crate::orders::moscow())
        .naive_local()
}

pub(super) fn reply_err(id: &Json, e: RpcErr) -> Json {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": e.code, "message": e.message,
        "data": {"mnemonic": e.mnemonic, "field": e.field, "value": e.value, "params": {}, "extended_helper": null, "metadata": e.metadata}}})
}

pub(super) fn str_param(
    p: &Map<String, Json>,
    name: &str,
    required: bool,
) -> Result<Option<String>, RpcErr> {
    match p.get(name) {
        None | Some(Json::Null) if required => Err(param_err(
            "required_parameter_missed",
            name,
            Json::Null,
            format!("{name} is required"),
        )),
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(param_err(
            "data_type_error",
            name,
            v.clone(),
            format!("{name} must be a string"),
        )),
    }
}

pub(super) fn uint_param(p: &Map<String, Json>, name: &str) -> Result<Option<u64>, RpcErr> {
    match p.get(name) {
        None | Some(Json::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            param_err(
                "data_type_error",
                name,
                v.clone(),
                format!("{name} must be a whole number"),
            )
        }),
    }
}

pub(super) fn time_param(p: &Map<String, Json>, name: &str) -> Result<NaiveDateTime, RpcErr> {
    let text = str_param(p, name, true)?.unwrap_or_default();
    NaiveDateTime::parse_from_str(&text, TIME_FORMAT).map_err(|_| {
        param_err(
            "invalid_parameter_value",
            name,
            json!(text),
            format!("{name} must be YYYY-MM-DD hh:mm:ss"),
        )
    })
}
