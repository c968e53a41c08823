//! HTTP handling: routing of `/rest/USER/CODE/METHOD`, then the request's way through faults,
//! limits, execution and the answer.

use super::*;

pub(super) fn json_response(status: u16, body: &Value) -> Response {
    let mut r = Response::new(Body::from(serde_json::to_vec(body).unwrap_or_default()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

fn error_response(e: &ApiError) -> Response {
    json_response(e.status, &e.body())
}

pub(super) fn html_response(status: u16, title: &str) -> Response {
    let body = format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    );
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    r
}

/// Headers go out, then the body stream fails: hyper aborts the connection.
fn dropped_response() -> Response {
    let stream = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::other(
            "connection dropped by fault injection",
        ))
    });
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

fn query_limit(cfg: &EmulatorConfig) -> ApiError {
    ApiError::new(
        cfg.query_limit_status,
        "QUERY_LIMIT_EXCEEDED",
        "Too many requests",
    )
}

fn operation_limit() -> ApiError {
    ApiError::new(
        429,
        "OPERATION_TIME_LIMIT",
        "Method is blocked due to operation time limit.",
    )
}

fn time_object(
    start: f64,
    finish: f64,
    processing: f64,
    offset: i32,
    operating: Option<(f64, f64)>,
) -> Value {
    let mut t = json!({
        "start": start,
        "finish": finish,
        "duration": finish - start,
        "processing": processing,
        "date_start": format_ts(start.floor() as i64, offset),
        "date_finish": format_ts(finish.floor() as i64, offset),
    });
    if let Some((used, reset)) = operating {
        t["operating_reset_at"] = json!(reset.floor() as i64);
        t["operating"] = json!(used);
    }
    t
}

fn fake_time(cfg: &EmulatorConfig, reply: &Reply) -> f64 {
    cfg.op_time_per_call
        + cfg.op_time_per_row * reply.rows as f64
        + if reply.counted {
            cfg.op_time_per_count
        } else {
            0.0
        }
}

/// Parse body by content type into a parameter map.
fn body_params(content_type: &str, body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    let ct = content_type.to_ascii_lowercase();
    if ct.starts_with("application/json") {
        return match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Ok(Map::new()),
            Err(_) => Err(ApiError::new(
                400,
                "INVALID_REQUEST",
                "Invalid JSON in request body",
            )),
        };
    }
    if ct.starts_with("multipart/") {
        return Err(ApiError::new(
            400,
            "INVALID_REQUEST",
            "multipart/form-data is not supported by the emulator",
        ));
    }
    Ok(params::parse_query(&String::from_utf8_lossy(body)))
}

pub(super) async fn handle(State(sh): State<Arc<Shared>>, req: Request) -> Response {
    let received = sh.now();
    lock(&sh.stats).http += 1;
    let path = req.uri().path().to_string();
    let resp = if path.starts_with("/_emulator/") {
        workflow::trigger(&sh, req).await
    } else if sh.unavailable.load(std::sync::atomic::Ordering::SeqCst) {
        html_response(503, "503 Service Temporarily Unavailable")
    } else if path.starts_with("/oauth/token") {
        oauth::token_endpoint(&sh, &req)
    } else if path.starts_with("/disk/download/") {
        files::download(&sh, &req)
    } else {
        handle_inner(&sh, req, received).await
    };
    let mut s = lock(&sh.stats);
    *s.by_status.entry(resp.status().as_u16()).or_default() += 1;
    let refused = resp.status().as_u16() == 429 || resp.headers().get("x-b24emu-refusal").is_some();
    if refused {
        s.refusals += 1;
    }
    drop(s);
    let mut resp = resp;
    resp.headers_mut().remove("x-b24emu-refusal");
    resp
}

fn mark_refusal(mut r: Response) -> Response {
    r.headers_mut()
        .insert("x-b24emu-refusal", HeaderValue::from_static("1"));
    r
}

/// A request routed to a method: what the rest of the handling needs.
struct Routed {
    /// Lowercase, without `.json`.
    method: String,
    /// The method as it appeared in the path (for redirects).
    segment: String,
    query: String,
    params: Map<String, Value>,
    /// The commands of a `batch`.
    commands: Option<Vec<batch::Command>>,
    /// Who calls: the webhook's user, or the user of an OAuth token.
    caller: oauth::Caller,
}

async fn handle_inner(sh: &Arc<Shared>, req: Request, received: f64) -> Response {
    let cfg = sh.cfg();
    let routed = match route(sh, &cfg, req).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let mut names: Vec<&str> = vec![routed.method.as_str()];
    if let Some(cs) = &routed.commands {
        names.extend(cs.iter().map(|c| c.method.as_str()));
    }
    // Fault injection comes before anything runs.
    let fault = sh.faults.take_for(&names);
    if let Some(resp) = injected_before(fault.as_ref(), &cfg, &routed).await {
        return resp;
    }
    if !cfg.latency.is_zero() {
        tokio::time::sleep(cfg.latency).await;
    }
    let now = sh.now();
    if let Err(resp) = admit(sh, &cfg, &routed.method, now) {
        return resp;
    }
    let env = routed.caller.env(&cfg, now.floor() as i64);
    let exec_start = Instant::now();
    let (outcome, counted_calls) = execute(sh, &cfg, &routed, &env);
    let processing = exec_start.elapsed().as_secs_f64();
    if counted_calls > 0 && !cfg.count_latency.is_zero() {
        tokio::time::sleep(cfg.count_latency * counted_calls).await;
    }
    let (reply, offset) = match outcome {
        Ok(x) => x,
        Err(e) => return error_response(&e),
    };
    let body = reply_body(
        sh,
        &cfg,
        &routed.method,
        reply,
        received,
        processing,
        offset,
    );
    match fault {
        Some(Fault::Slow(d)) => {
            tokio::time::sleep(d).await;
            json_response(200, &body)
        }
        Some(Fault::WriteThenFail) => error_response(&ApiError::new(
            500,
            "INTERNAL_SERVER_ERROR",
            "Internal server error",
        )),
        Some(Fault::WriteThenDrop) => dropped_response(),
        _ => json_response(200, &body),
    }
}

fn no_auth() -> Response {
    error_response(&ApiError::new(
        401,
        "NO_AUTH_FOUND",
        "Wrong authorization data",
    ))
}

/// `/rest/USER/CODE/METHOD[.json]` with its parameters (query and body), checked against the
/// webhook's user, code and scopes, and logged; the error is the answer to send.
async fn route(sh: &Shared, cfg: &EmulatorConfig, req: Request) -> Result<Routed, Response> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or("").to_string();
    let segs: Vec<&str> = path.trim_start_matches('/').splitn(4, '/').collect();
    if segs.first() != Some(&"rest") {
        let mut r = Response::new(Body::from("Not Found"));
        *r.status_mut() = StatusCode::NOT_FOUND;
        return Err(r);
    }
    // `/rest/METHOD` is the OAuth path (`auth=` token); `/rest/USER/CODE/METHOD` a webhook.
    let oauth_path = segs.len() >= 2
        && !segs[1].is_empty()
        && !segs[1].bytes().all(|b| b.is_ascii_digit())
        && segs[2..].iter().all(|s| s.is_empty());
    let segment = if oauth_path {
        segs[1]
    } else {
        segs.get(3).copied().unwrap_or("")
    };
    if !oauth_path && (segs.len() < 4 || segs[1] != cfg.user_id.to_string() || segs[2] != cfg.code)
    {
        return Err(no_auth());
    }
    let raw_method = params::url_decode(segment)
        .trim_end_matches('/')
        .to_ascii_lowercase();
    if raw_method.ends_with(".xml") {
        return Err(error_response(&ApiError::new(
            400,
            "INVALID_REQUEST",
            "XML output is not supported by the emulator",
        )));
    }
    let method = raw_method
        .strip_suffix(".json")
        .unwrap_or(&raw_method)
        .to_string();
    let ct = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let Ok(bytes) = axum::body::to_bytes(body, cfg.max_body_bytes).await else {
        return Err(error_response(&ApiError::new(
            400,
            "INVALID_REQUEST",
            "Request body too large or unreadable",
        )));
    };
    let mut params = params::parse_query(&query);
    params::merge(
        &mut params,
        body_params(&ct, &bytes).map_err(|e| error_response(&e))?,
    );
    let caller = if oauth_path {
        oauth::Caller::from_token(sh, cfg, &mut params).map_err(|e| error_response(&e))?
    } else {
        oauth::Caller::webhook(cfg)
    };
    let Some(scope) = methods::scope_of(&method) else {
        return Err(error_response(&ApiError::method_not_found()));
    };
    if !scope.is_empty() && !caller.scopes.iter().any(|s| s.eq_ignore_ascii_case(scope)) {
        return Err(error_response(&ApiError::insufficient_scope()));
    }
    sh.log(cfg, &method, &params, None);
    let commands = if method == "batch" {
        Some(batch::parse_commands(&params).map_err(|e| error_response(&e))?)
    } else {
        None
    };
    Ok(Routed {
        method,
        segment: segment.to_string(),
        query,
        params,
        commands,
        caller,
    })
}

/// The answer of a fault that replaces the request (nothing runs); `Hang` only waits.
async fn injected_before(
    fault: Option<&Fault>,
    cfg: &EmulatorConfig,
    routed: &Routed,
) -> Option<Response> {
    let internal = || {
        error_response(&ApiError::new(
            500,
            "INTERNAL_SERVER_ERROR",
            "Internal server error",
        ))
    };
    Some(match fault? {
        Fault::InternalError => internal(),
        Fault::HtmlBadGateway => html_response(502, "502 Bad Gateway"),
        Fault::HtmlServiceUnavailable => html_response(503, "503 Service Temporarily Unavailable"),
        Fault::QueryLimit => mark_refusal(error_response(&query_limit(cfg))),
        Fault::OverloadLimit => error_response(&ApiError::new(
            503,
            "OVERLOAD_LIMIT",
            "REST API is blocked due to overload.",
        )),
        Fault::OperationTimeLimit => error_response(&operation_limit()),
        Fault::DropConnection => dropped_response(),
        Fault::Moved(base) => moved(base, routed),
        Fault::Status {
            status,
            content_type,
            body,
        } => {
            let mut r = Response::new(Body::from(body.clone()));
            *r.status_mut() =
                StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            if let Ok(v) = HeaderValue::from_str(content_type) {
                r.headers_mut().insert(header::CONTENT_TYPE, v);
            }
            r
        }
        Fault::Hang(d) => {
            tokio::time::sleep(*d).await;
            return None;
        }
        Fault::Slow(_) | Fault::WriteThenFail | Fault::WriteThenDrop => return None,
    })
}

/// HTTP 302 to the same method and query on another base URL.
fn moved(base: &str, routed: &Routed) -> Response {
    let mut loc = format!("{}{}", base, routed.segment);
    if !routed.query.is_empty() {
        loc.push('?');
        loc.push_str(&routed.query);
    }
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::FOUND;
    if let Ok(v) = HeaderValue::from_str(&loc) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// The method whose operating time a request is billed to (none for a batch billed per
/// command).
fn billed<'a>(cfg: &EmulatorConfig, method: &'a str) -> Option<&'a str> {
    if method == "batch" && cfg.batch_billing == BatchBilling::PerMethod {
        None
    } else {
        Some(method)
    }
}

/// The leaky bucket and the operating-time limit: refused before execution.
#[allow(clippy::result_large_err)] // the error is the response itself
fn admit(sh: &Shared, cfg: &EmulatorConfig, method: &str, now: f64) -> Result<(), Response> {
    let window = cfg.operating_window.as_secs_f64();
    let mut l = lock(&sh.limits);
    if !l.bucket.try_acquire(now) {
        return Err(mark_refusal(error_response(&query_limit(cfg))));
    }
    if let Some(m) = billed(cfg, method)
        && l.meter(m).used(now, window) >= cfg.operating_limit_secs
    {
        return Err(error_response(&operation_limit()));
    }
    Ok(())
}

type Outcome = (Result<(Reply, i32), ApiError>, u32);

/// Runs the method (or the batch) against the portal: the reply with the portal's UTC offset,
/// and how many of the calls counted their total.
fn execute(sh: &Shared, cfg: &EmulatorConfig, routed: &Routed, env: &Env) -> Outcome {
    let mut portal = lock(&sh.portal);
    let offset = portal.offset_secs;
    let Some(cmds) = &routed.commands else {
        let r = methods::call(&mut portal, &routed.method, &routed.params, env);
        let counted = r.as_ref().map_or(0, |r| r.counted as u32);
        return (r.map(|r| (r, offset)), counted);
    };
    let window = cfg.operating_window.as_secs_f64();
    let halt = batch::halt_flag(&routed.params);
    let mut counted = 0u32;
    let mut batch_time = 0.0f64;
    let result = batch::run(cmds, halt, |cmd, sub_params| {
        let (r, time, secs) = run_command(sh, cfg, &mut portal, cmd, sub_params, env, offset);
        if let Ok(reply) = &r {
            counted += reply.counted as u32;
            batch_time += secs;
        }
        (r, time)
    });
    let reply = Reply {
        result,
        total: None,
        next: None,
        rows: 0,
        counted: false,
    };
    if cfg.batch_billing == BatchBilling::Batch {
        lock(&sh.limits)
            .meter("batch")
            .charge(sh.now(), window, cfg.op_time_per_call + batch_time);
    }
    (Ok((reply, offset)), counted)
}

/// One command of a batch: its scope and per-method operating time checked, then run; the
/// reply, its `time` object and the operating seconds it cost.
fn run_command(
    sh: &Shared,
    cfg: &EmulatorConfig,
    portal: &mut Portal,
    cmd: &batch::Command,
    sub_params: Map<String, Value>,
    env: &Env,
    offset: i32,
) -> (Result<Reply, ApiError>, Value, f64) {
    let window = cfg.operating_window.as_secs_f64();
    let t0 = sh.now();
    sh.log(cfg, &cmd.method, &sub_params, Some(&cmd.key));
    let Some(scope) = methods::scope_of(&cmd.method) else {
        return (Err(ApiError::method_not_found()), Value::Null, 0.0);
    };
    if !scope.is_empty() && !env.scopes.iter().any(|s| s.eq_ignore_ascii_case(scope)) {
        return (Err(ApiError::insufficient_scope()), Value::Null, 0.0);
    }
    if cfg.batch_billing == BatchBilling::PerMethod {
        let used = lock(&sh.limits).meter(&cmd.method).used(t0, window);
        if used >= cfg.operating_limit_secs {
            lock(&sh.stats).refusals += 1;
            return (Err(operation_limit()), Value::Null, 0.0);
        }
    }
    let r = methods::call(portal, &cmd.method, &sub_params, env);
    let t1 = sh.now();
    match r {
        Ok(reply) => {
            let secs = fake_time(cfg, &reply);
            let op = (cfg.batch_billing == BatchBilling::PerMethod).then(|| {
                let mut l = lock(&sh.limits);
                let m = l.meter(&cmd.method);
                m.charge(t1, window, secs);
                (m.used(t1, window), m.reset_at(t1, window))
            });
            let time = time_object(t0, t1, t1 - t0, offset, op);
            (Ok(reply), time, secs)
        }
        Err(e) => (Err(e), Value::Null, 0.0),
    }
}

/// `{"result", "next", "total", "time"}`, charging the method's operating time.
fn reply_body(
    sh: &Shared,
    cfg: &EmulatorConfig,
    method: &str,
    reply: Reply,
    received: f64,
    processing: f64,
    offset: i32,
) -> Value {
    let window = cfg.operating_window.as_secs_f64();
    let finish = sh.now();
    let operating = billed(cfg, method).map(|m| {
        let mut l = lock(&sh.limits);
        let meter = l.meter(m);
        if m != "batch" {
            meter.charge(finish, window, fake_time(cfg, &reply));
        }
        (meter.used(finish, window), meter.reset_at(finish, window))
    });
    let mut body = Map::new();
    body.insert("result".into(), reply.result);
    if let Some(n) = reply.next {
        body.insert("next".into(), json!(n));
    }
    if let Some(t) = reply.total {
        body.insert("total".into(), json!(t));
    }
    body.insert(
        "time".into(),
        time_object(received, finish, processing, offset, operating),
    );
    Value::Object(body)
}
