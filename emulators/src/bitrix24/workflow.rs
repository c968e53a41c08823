//! "Run a workflow": what Bitrix24's queue server does when a workflow reaches an
//! application's action (CORE `CBPRestActivity::execute`, reference §2.2). The portal issues an
//! event token and a fresh OAuth pair for the run-as user, and POSTs the handler a form body
//! with PHP bracket keys (`properties[deal_id]`, `document_id[2]`, `auth[access_token]`, …).
//! The body can be built without sending (tests tamper with it), sent as built, or fired
//! over HTTP at a running emulator (`POST /_emulator/workflow`, for a shell or the README).

use super::bizproc::Waiting;
use super::*;
use axum::extract::Request;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use std::io::{BufRead, BufReader, Write};

/// One workflow reaching one action.
#[derive(Clone, Debug)]
pub struct Workflow {
    /// The action's CODE.
    pub code: String,
    /// `[module, class, "DEAL_123"]`.
    pub document_id: [String; 3],
    /// `[module, class, "DEAL"]`.
    pub document_type: [String; 3],
    /// Input values: strings, or lists of strings for `Multiple` properties.
    pub properties: Value,
    pub use_subscription: bool,
    /// The run-as user whose tokens go in `auth[…]`.
    pub user_id: u64,
    /// Seconds the action waits for its answer (0 = forever).
    pub timeout_duration: u64,
}

impl Workflow {
    /// A workflow on a CRM document such as `DEAL_123` (`LEAD_`, `CONTACT_`, `COMPANY_`, or
    /// `SMART_INVOICE_`), run as user 1, waiting for an answer, with no inputs yet.
    pub fn new(code: &str, document: &str) -> Workflow {
        let (module, class, kind) = document_class(document);
        Workflow {
            code: code.to_string(),
            document_id: [module.into(), class.into(), document.to_string()],
            document_type: [module.into(), class.into(), kind],
            properties: json!({}),
            use_subscription: true,
            user_id: 1,
            timeout_duration: 0,
        }
    }
    /// With these inputs (`{"deal_id": "123", "to": ["a", "b"]}`).
    pub fn with_properties(mut self, properties: Value) -> Workflow {
        self.properties = properties;
        self
    }
}

/// Module, document class and type of a CRM document id.
fn document_class(document: &str) -> (&'static str, &'static str, String) {
    let kind = document
        .rsplit_once('_')
        .map_or(document, |(k, _)| k)
        .to_string();
    let class = match kind.as_str() {
        "DEAL" => "CCrmDocumentDeal",
        "LEAD" => "CCrmDocumentLead",
        "CONTACT" => "CCrmDocumentContact",
        "COMPANY" => "CCrmDocumentCompany",
        "SMART_INVOICE" => "Bitrix\\Crm\\Integration\\BizProc\\Document\\SmartInvoice",
        _ => "Bitrix\\Crm\\Integration\\BizProc\\Document\\Dynamic",
    };
    ("crm", class, kind)
}

/// A handler request as built: the form fields in Bitrix24's order.
#[derive(Clone, Debug)]
pub struct WorkflowRequest {
    pub event_token: String,
    pub workflow_id: String,
    pub fields: Vec<(String, String)>,
}

/// What sending a workflow's request gave.
#[derive(Clone, Debug)]
pub struct WorkflowRun {
    pub event_token: String,
    pub workflow_id: String,
    /// HTTP status of the handler's answer.
    pub status: u16,
}

/// PHP `urlencode`: everything but `A-Za-z0-9-_.` escaped (space as `+` is handled below).
const PHP_URLENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.');

fn php_encode(s: &str) -> String {
    s.split(' ')
        .map(|part| utf8_percent_encode(part, PHP_URLENCODE).to_string())
        .collect::<Vec<_>>()
        .join("+")
}

impl WorkflowRequest {
    /// `application/x-www-form-urlencoded` as PHP's `http_build_query` writes it (brackets
    /// escaped too).
    pub fn body(&self) -> String {
        self.fields
            .iter()
            .map(|(k, v)| format!("{}={}", php_encode(k), php_encode(v)))
            .collect::<Vec<_>>()
            .join("&")
    }
    /// Replace (or add) one field, e.g. `auth[application_token]`.
    pub fn set(&mut self, key: &str, value: &str) {
        match self.fields.iter_mut().find(|(k, _)| k == key) {
            Some(f) => f.1 = value.to_string(),
            None => self.fields.push((key.to_string(), value.to_string())),
        }
    }
    /// Drop one field.
    pub fn remove(&mut self, key: &str) {
        self.fields.retain(|(k, _)| k != key);
    }
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A property value as the form sends it: one field, or one per element of a list.
fn push_property(fields: &mut Vec<(String, String)>, key: &str, v: &Value) {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Bool(b) => if *b { "Y" } else { "N" }.to_string(),
        other => other.to_string(),
    };
    match v {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                fields.push((format!("properties[{key}][{i}]"), text(item)));
            }
        }
        other => fields.push((format!("properties[{key}]"), text(other))),
    }
}

/// `65808f8311b626.28237158`: PHP `uniqid('', true)`.
fn workflow_id() -> String {
    let n: u64 = rand::random();
    let d: u32 = rand::random_range(0..100_000_000);
    format!("{:014x}.{d:08}", n >> 8)
}

/// `A96649_8593_66588_9419`: the designer's activity name.
fn activity_name() -> String {
    let r = |n| rand::random_range(0..n);
    format!(
        "A{:05}_{:04}_{:05}_{:04}",
        r(100_000),
        r(10_000),
        r(100_000),
        r(10_000)
    )
}

impl Emulator {
    /// Build the handler request of a workflow reaching `wf.code` (event token registered as
    /// waiting, fresh tokens issued for `wf.user_id`), without sending it.
    pub fn prepare_workflow(&self, wf: &Workflow) -> WorkflowRequest {
        build_request(&self.shared, wf)
    }

    /// Build and POST the handler request to `handler_url` (blocking, http only) as the queue
    /// server does: once, no retry. Err when the handler cannot be reached.
    pub fn run_workflow(&self, handler_url: &str, wf: &Workflow) -> std::io::Result<WorkflowRun> {
        let req = self.prepare_workflow(wf);
        let status = post_form(handler_url, &req.body())?;
        Ok(WorkflowRun {
            event_token: req.event_token,
            workflow_id: req.workflow_id,
            status,
        })
    }
}

/// The handler request of a workflow reaching `wf.code`: the event token is registered as
/// waiting and a fresh OAuth pair is issued for the run-as user.
fn build_request(sh: &Shared, wf: &Workflow) -> WorkflowRequest {
    let cfg = sh.cfg();
    let now = sh.now().floor() as i64;
    let (access, refresh) = lock(&sh.tokens).issue(wf.user_id, sh.now());
    let base = match sh.addr.get() {
        Some(a) => format!("http://{a}"),
        None => "http://127.0.0.1".into(),
    };
    let domain = base.trim_start_matches("http://").to_string();
    let workflow_id = workflow_id();
    let event_token = format!(
        "{workflow_id}|{}|{}.{}",
        activity_name(),
        app::random_token(32),
        app::random_token(64)
    );
    lock(&sh.portal).bizproc.expect_event(
        &event_token,
        Waiting {
            workflow_id: workflow_id.clone(),
            code: wf.code.clone(),
            open: wf.use_subscription,
            issued_at: now,
            timeout: wf.timeout_duration as i64,
        },
    );
    let mut f: Vec<(String, String)> = vec![
        ("workflow_id".into(), workflow_id.clone()),
        ("code".into(), wf.code.clone()),
    ];
    for (name, parts) in [
        ("document_id", &wf.document_id),
        ("document_type", &wf.document_type),
    ] {
        for (i, p) in parts.iter().enumerate() {
            f.push((format!("{name}[{i}]"), p.clone()));
        }
    }
    f.push(("event_token".into(), event_token.clone()));
    if let Value::Object(props) = &wf.properties {
        for (k, v) in props {
            push_property(&mut f, k, v);
        }
    }
    let yn = if wf.use_subscription { "Y" } else { "N" };
    f.push(("use_subscription".into(), yn.into()));
    f.push(("timeout_duration".into(), wf.timeout_duration.to_string()));
    f.push(("ts".into(), now.to_string()));
    let auth = [
        ("access_token", access),
        ("expires", (now + app::ACCESS_TTL_SECS).to_string()),
        ("expires_in", app::ACCESS_TTL_SECS.to_string()),
        ("scope", cfg.app.scopes.join(",")),
        ("domain", domain),
        ("server_endpoint", format!("{base}/rest/")),
        ("status", "L".into()),
        ("client_endpoint", format!("{base}/rest/")),
        ("member_id", cfg.app.member_id.clone()),
        ("user_id", wf.user_id.to_string()),
        ("refresh_token", refresh),
        ("application_token", cfg.app.application_token.clone()),
    ];
    for (k, v) in auth {
        f.push((format!("auth[{k}]"), v));
    }
    WorkflowRequest {
        event_token,
        workflow_id,
        fields: f,
    }
}

/// POST `body` as `application/x-www-form-urlencoded` to an `http://` URL and return the
/// answer's status (the body is read and ignored, as the queue server ignores it).
pub fn post_form(url: &str, body: &str) -> std::io::Result<u16> {
    use std::io::{Error, ErrorKind};
    let u = url::Url::parse(url).map_err(|e| Error::new(ErrorKind::InvalidInput, e))?;
    if u.scheme() != "http" {
        return Err(Error::new(ErrorKind::Unsupported, "only http:// handlers"));
    }
    let host = u.host_str().unwrap_or("127.0.0.1");
    let port = u.port_or_known_default().unwrap_or(80);
    let mut stream = std::net::TcpStream::connect((host, port))?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    let path = match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_string(),
    };
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: Bitrix24 Webhook Engine\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()?;
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::new(ErrorKind::InvalidData, "no HTTP status line"))?;
    let _ = std::io::copy(&mut reader, &mut std::io::sink());
    Ok(status)
}

/// `POST /_emulator/workflow` with JSON `{handler, code, document_id, properties,
/// use_subscription, user_id, timeout_duration}` (`document_id` "DEAL_123" or the triple):
/// answers `{event_token, workflow_id, status}` or 400/502 with `{"error": …}`.
pub(super) async fn trigger(sh: &Arc<Shared>, req: Request) -> Response {
    let bad = |status, msg: String| http::json_response(status, &json!({"error": msg}));
    if req.uri().path().trim_end_matches('/') != "/_emulator/workflow" {
        return bad(404, "unknown emulator endpoint".into());
    }
    let Ok(bytes) = axum::body::to_bytes(req.into_body(), 1 << 20).await else {
        return bad(400, "unreadable body".into());
    };
    let spec: Value = match serde_json::from_slice(&bytes) {
        Ok(v @ Value::Object(_)) => v,
        _ => return bad(400, "body must be a JSON object".into()),
    };
    let text = |k: &str| {
        spec.get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (handler, code) = (text("handler"), text("code"));
    if handler.is_empty() || code.is_empty() {
        return bad(400, "handler and code are required".into());
    }
    let mut wf = match spec.get("document_id") {
        Some(Value::Array(a)) if a.len() == 3 => {
            let parts: Vec<String> = a.iter().map(|v| v.as_str().unwrap_or("").into()).collect();
            let mut wf = Workflow::new(&code, &parts[2]);
            wf.document_id = [parts[0].clone(), parts[1].clone(), parts[2].clone()];
            wf
        }
        Some(Value::String(d)) => Workflow::new(&code, d),
        _ => return bad(400, "document_id is required".into()),
    };
    wf.properties = spec.get("properties").cloned().unwrap_or(json!({}));
    wf.use_subscription = match spec.get("use_subscription") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => !s.eq_ignore_ascii_case("n"),
        _ => true,
    };
    wf.user_id = spec.get("user_id").and_then(params::as_i64).unwrap_or(1) as u64;
    wf.timeout_duration = spec
        .get("timeout_duration")
        .and_then(params::as_i64)
        .unwrap_or(0) as u64;
    let request = build_request(sh, &wf);
    let body = request.body();
    let sent = tokio::task::spawn_blocking(move || post_form(&handler, &body)).await;
    match sent {
        Ok(Ok(status)) => http::json_response(
            200,
            &json!({"event_token": request.event_token, "workflow_id": request.workflow_id, "status": status}),
        ),
        Ok(Err(e)) => bad(502, format!("handler unreachable: {e}")),
        Err(e) => bad(500, e.to_string()),
    }
}
