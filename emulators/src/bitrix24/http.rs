//! HTTP handling: routing of `/rest/USER/CODE/METHOD`, then the request's way through faults,
//! limits, execution and the answer.

use super::*;

fn json_response(status: u16, body: &Value) -> Response {
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

fn html_response(status: u16, title: &str) -> Response {
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
    let resp = handle_inner(&sh, req, received).await;
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

async fn handle_inner(sh: &Arc<Shared>, req: Request, received: f64) -> Response {
    let cfg = sh.cfg();
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or("").to_string();
    let segs: Vec<&str> = path.trim_start_matches('/').splitn(4, '/').collect();
    if segs.first() != Some(&"rest") {
        let mut r = Response::new(Body::from("Not Found"));
        *r.status_mut() = StatusCode::NOT_FOUND;
        return r;
    }
    if segs.len() < 4 {
        return error_response(&ApiError::new(
            401,
            "NO_AUTH_FOUND",
            "Wrong authorization data",
        ));
    }
    if segs[1] != cfg.user_id.to_string() || segs[2] != cfg.code {
        return error_response(&ApiError::new(
            401,
            "NO_AUTH_FOUND",
            "Wrong authorization data",
        ));
    }
    let raw_method = params::url_decode(segs[3])
        .trim_end_matches('/')
        .to_ascii_lowercase();
    if raw_method.ends_with(".xml") {
        return error_response(&ApiError::new(
            400,
            "INVALID_REQUEST",
            "XML output is not supported by the emulator",
        ));
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
    let bytes = match axum::body::to_bytes(body, cfg.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => {
            return error_response(&ApiError::new(
                400,
                "INVALID_REQUEST",
                "Request body too large or unreadable",
            ));
        }
    };
    let mut params = params::parse_query(&query);
    match body_params(&ct, &bytes) {
        Ok(b) => params::merge(&mut params, b),
        Err(e) => return error_response(&e),
    }

    let Some(scope) = methods::scope_of(&method) else {
        return error_response(&ApiError::method_not_found());
    };
    if !scope.is_empty() && !cfg.scopes.iter().any(|s| s.eq_ignore_ascii_case(scope)) {
        return error_response(&ApiError::insufficient_scope());
    }
    sh.log(&cfg, &method, &params, None);

    let commands = if method == "batch" {
        match batch::parse_commands(&params) {
            Ok(c) => Some(c),
            Err(e) => return error_response(&e),
        }
    } else {
        None
    };

    // fault injection (before anything runs)
    let mut names: Vec<&str> = vec![method.as_str()];
    if let Some(cs) = &commands {
        names.extend(cs.iter().map(|c| c.method.as_str()));
    }
    let fault = sh.faults.take_for(&names);
    match &fault {
        Some(Fault::InternalError) => {
            return error_response(&ApiError::new(
                500,
                "INTERNAL_SERVER_ERROR",
                "Internal server error",
            ));
        }
        Some(Fault::HtmlBadGateway) => return html_response(502, "502 Bad Gateway"),
        Some(Fault::HtmlServiceUnavailable) => {
            return html_response(503, "503 Service Temporarily Unavailable");
        }
        Some(Fault::QueryLimit) => return mark_refusal(error_response(&query_limit(&cfg))),
        Some(Fault::OverloadLimit) => {
            return error_response(&ApiError::new(
                503,
                "OVERLOAD_LIMIT",
                "REST API is blocked due to overload.",
            ));
        }
        Some(Fault::OperationTimeLimit) => return error_response(&operation_limit()),
        Some(Fault::DropConnection) => return dropped_response(),
        Some(Fault::Moved(base)) => {
            let mut loc = format!("{}{}", base, segs[3]);
            if !query.is_empty() {
                loc.push('?');
                loc.push_str(&query);
            }
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::FOUND;
            if let Ok(v) = HeaderValue::from_str(&loc) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            return r;
        }
        Some(Fault::Status {
            status,
            content_type,
            body,
        }) => {
            let mut r = Response::new(Body::from(body.clone()));
            *r.status_mut() =
                StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            if let Ok(v) = HeaderValue::from_str(content_type) {
                r.headers_mut().insert(header::CONTENT_TYPE, v);
            }
            return r;
        }
        Some(Fault::Hang(d)) => tokio::time::sleep(*d).await,
        _ => {}
    }

    if !cfg.latency.is_zero() {
        tokio::time::sleep(cfg.latency).await;
    }

    // leaky bucket: refused before execution
    let now = sh.now();
    let window = cfg.operating_window.as_secs_f64();
    {
        let mut l = lock(&sh.limits);
        if !l.bucket.try_acquire(now) {
            return mark_refusal(error_response(&query_limit(&cfg)));
        }
        let billed = if method == "batch" && cfg.batch_billing == BatchBilling::PerMethod {
            None
        } else {
            Some(method.as_str())
        };
        if let Some(m) = billed
            && l.meter(m).used(now, window) >= cfg.operating_limit_secs
        {
            return error_response(&operation_limit());
        }
    }

    let env = Env {
        now: now.floor() as i64,
        user_id: cfg.user_id,
        scopes: cfg.scopes.clone(),
    };
    let exec_start = Instant::now();
    let (outcome, counted_calls) = {
        let mut portal = lock(&sh.portal);
        let offset = portal.offset_secs;
        match &commands {
            None => {
                let r = methods::call(&mut portal, &method, &params, &env);
                let counted = r.as_ref().map_or(0, |r| r.counted as u32);
                (r.map(|r| (r, offset)), counted)
            }
            Some(cmds) => {
                let halt = batch::halt_flag(&params);
                let mut counted = 0u32;
                let mut batch_time = 0.0f64;
                let result = batch::run(cmds, halt, |cmd, sub_params| {
                    let t0 = sh.now();
                    sh.log(&cfg, &cmd.method, &sub_params, Some(&cmd.key));
                    let Some(scope) = methods::scope_of(&cmd.method) else {
                        return (Err(ApiError::method_not_found()), Value::Null);
                    };
                    if !scope.is_empty()
                        && !cfg.scopes.iter().any(|s| s.eq_ignore_ascii_case(scope))
                    {
                        return (Err(ApiError::insufficient_scope()), Value::Null);
                    }
                    if cfg.batch_billing == BatchBilling::PerMethod {
                        let used = lock(&sh.limits).meter(&cmd.method).used(t0, window);
                        if used >= cfg.operating_limit_secs {
                            lock(&sh.stats).refusals += 1;
                            return (Err(operation_limit()), Value::Null);
                        }
                    }
                    let r = methods::call(&mut portal, &cmd.method, &sub_params, &env);
                    let t1 = sh.now();
                    match r {
                        Ok(reply) => {
                            counted += reply.counted as u32;
                            let secs = fake_time(&cfg, &reply);
                            batch_time += secs;
                            let mut l = lock(&sh.limits);
                            let op = if cfg.batch_billing == BatchBilling::PerMethod {
                                let m = l.meter(&cmd.method);
                                m.charge(t1, window, secs);
                                Some((m.used(t1, window), m.reset_at(t1, window)))
                            } else {
                                None
                            };
                            let time = time_object(t0, t1, t1 - t0, offset, op);
                            (Ok(reply), time)
                        }
                        Err(e) => (Err(e), Value::Null),
                    }
                });
                let reply = Reply {
                    result,
                    total: None,
                    next: None,
                    rows: 0,
                    counted: false,
                };
                if cfg.batch_billing == BatchBilling::Batch {
                    lock(&sh.limits).meter("batch").charge(
                        sh.now(),
                        window,
                        cfg.op_time_per_call + batch_time,
                    );
                }
                (Ok((reply, offset)), counted)
            }
        }
    };
    let processing = exec_start.elapsed().as_secs_f64();
    if counted_calls > 0 && !cfg.count_latency.is_zero() {
        tokio::time::sleep(cfg.count_latency * counted_calls).await;
    }

    let (reply, offset) = match outcome {
        Ok(x) => x,
        Err(e) => return error_response(&e),
    };
    let finish = sh.now();
    let billed = if method == "batch" && cfg.batch_billing == BatchBilling::PerMethod {
        None
    } else {
        Some(method.as_str())
    };
    let operating = billed.map(|m| {
        let mut l = lock(&sh.limits);
        let meter = l.meter(m);
        if m != "batch" {
            meter.charge(finish, window, fake_time(&cfg, &reply));
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
    let body = Value::Object(body);

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
