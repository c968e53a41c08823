//! One JSON-RPC request from body to answer: budgets, injected JSON-RPC faults, the
//! envelope's checks, dispatch, and logging in.

use super::*;

impl Shared {
    pub(super) fn limits(&self, w: &mut World) -> Json {
        self.roll(w);
        let now = w.budget.started.elapsed();
        let left = |window: Duration, index: u64| {
            let end = window.as_secs_f64() * (index + 1) as f64;
            (end - now.as_secs_f64()).ceil().max(1.0) as u64
        };
        json!({
            "day_limit": self.config.day_limit,
            "day_remaining": self.config.day_limit.saturating_sub(w.budget.day_used),
            "day_reset": left(self.config.day_window, w.budget.day_index),
            "minute_limit": self.config.minute_limit,
            "minute_remaining": self.config.minute_limit.saturating_sub(w.budget.minute_used),
            "minute_reset": left(self.config.minute_window, w.budget.minute_index),
        })
    }

    pub(super) fn roll(&self, w: &mut World) {
        let now = w.budget.started.elapsed();
        let index = |window: Duration| (now.as_secs_f64() / window.as_secs_f64().max(0.001)) as u64;
        let (m, d) = (
            index(self.config.minute_window),
            index(self.config.day_window),
        );
        if m != w.budget.minute_index {
            w.budget.minute_index = m;
            w.budget.minute_used = 0;
        }
        if d != w.budget.day_index {
            w.budget.day_index = d;
            w.budget.day_used = 0;
        }
    }

    /// Charge `points` or refuse with -32029.
    pub(super) fn charge(&self, w: &mut World, points: u32) -> Result<(), RpcErr> {
        self.roll(w);
        let b = &w.budget;
        if b.minute_used + points > self.config.minute_limit
            || b.day_used + points > self.config.day_limit
        {
            w.stats.limit_exceeded += 1;
            let limits = self.limits(w);
            return Err(RpcErr {
                metadata: json!({"limits": limits}),
                ..err(-32029, "limit_exceeded", "Limit exceeded")
            });
        }
        w.budget.minute_used += points;
        w.budget.day_used += points;
        w.stats.points += points as u64;
        Ok(())
    }

    /// The whole handling of one HTTP body: the JSON-RPC answer.
    pub(super) fn process(&self, body: &[u8]) -> Json {
        let request: Json = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                return reply_err(
                    &Json::Null,
                    err(-32700, "parse_error", format!("Parse error: {e}")),
                );
            }
        };
        let obj = match &request {
            Json::Array(_) => {
                return reply_err(
                    &Json::Null,
                    err(
                        -32099,
                        "batch_opreations_not_supported",
                        "Batch operations are not supported",
                    ),
                );
            }
            Json::Object(o) => o,
            _ => {
                return reply_err(
                    &Json::Null,
                    err(-32600, "invalid_request", "Invalid Request"),
                );
            }
        };
        let id = obj.get("id").cloned();
        let id_ok = matches!(&id, Some(Json::String(_)) | Some(Json::Number(_)));
        if obj.get("jsonrpc").and_then(Json::as_str) != Some("2.0") || (id.is_some() && !id_ok) {
            return reply_err(
                &id.unwrap_or(Json::Null),
                err(-32600, "invalid_request", "Invalid Request"),
            );
        }
        let Some(id) = id else {
            return reply_err(
                &Json::Null,
                err(
                    -32099,
                    "notifications_not_supported",
                    "Notifications are not supported",
                ),
            );
        };
        let method = obj
            .get("method")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string();
        let params = obj.get("params").cloned().unwrap_or_else(|| json!({}));
        let mut w = lock(&self.world);
        *w.stats.by_method.entry(method.clone()).or_insert(0) += 1;
        let result = self.dispatch(&mut w, &method, &params);
        let (reply, error) = match result {
            Ok(data) => {
                let mut metadata = Map::new();
                if let Some(total) = data.1 {
                    metadata.insert("total_items".into(), json!(total));
                }
                metadata.insert(
                    "api_version".into(),
                    json!({"current_version_deprecated": false, "current_version": "2.0"}),
                );
                metadata.insert("limits".into(), self.limits(&mut w));
                (
                    json!({"jsonrpc": "2.0", "id": id, "result": {"data": data.0, "metadata": metadata}}),
                    None,
                )
            }
            Err(e) => {
                let tag = (e.code, e.mnemonic.clone());
                (reply_err(&id, e), Some(tag))
            }
        };
        w.log.push(LoggedRequest {
            method,
            params: masked(&params),
            error,
        });
        reply
    }

    /// An injected JSON-RPC fault for this request: an error answered instead, or its token
    /// expiring now.
    fn inject(&self, w: &mut World, method: &str, p: &Map<String, Json>) -> Result<(), RpcErr> {
        match self.rpc_faults.take(&method.to_string(), is_write(method)) {
            Some(RpcFault::Error { code, mnemonic }) => Err(err(
                code,
                &mnemonic,
                format!("{} (injected)", message_of(code)),
            )),
            Some(RpcFault::ExpireToken) => {
                if let Some(t) = p
                    .get("access_token")
                    .and_then(Json::as_str)
                    .and_then(|t| w.tokens.get_mut(t))
                {
                    t.expired = true;
                }
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// The request's `access_token`: a live session token or a permanent key.
    fn check_token(&self, w: &World, p: &Map<String, Json>) -> Result<String, RpcErr> {
        let token = str_param(p, "access_token", true)?.unwrap_or_default();
        match w.tokens.get(&token) {
            None if self.config.access_tokens.contains(&token) => {}
            None => {
                return Err(err(
                    -32001,
                    "access_token_invalid",
                    "Access token is invalid",
                ));
            }
            Some(t) if t.expired || t.expires.is_some_and(|e| Instant::now() >= e) => {
                return Err(err(
                    -32001,
                    "access_token_expired",
                    "Access token has expired",
                ));
            }
            Some(_) => {}
        }
        Ok(token)
    }

    pub(super) fn dispatch(
        &self,
        w: &mut World,
        method: &str,
        params: &Json,
    ) -> Result<(Json, Option<u64>), RpcErr> {
        let Some((_, allowed)) = METHODS.iter().find(|(m, _)| *m == method) else {
            return Err(err(
                -32601,
                "method_not_found",
                format!("Method not found: {method}"),
            ));
        };
        let Json::Object(p) = params else {
            return Err(param_err(
                "data_type_error",
                "params",
                params.clone(),
                "params must be an object",
            ));
        };
        if !self.config.ip_whitelisted {
            return Err(err(
                -32003,
                "ip_not_whitelisted",
                "IP address is not whitelisted",
            ));
        }
        if let Some(k) = p.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(param_err(
                "unexpected_parameters",
                k,
                p[k].clone(),
                format!("Unexpected parameter: {k}"),
            ));
        }
        self.inject(w, method, p)?;
        if method == "login.user" {
            return self.login(w, p).map(|d| (d, None));
        }
        let token = self.check_token(w, p)?;
        if method == "logout.user" {
            w.tokens.remove(&token);
            w.stats.logouts += 1;
            return Ok((json!({}), None));
        }
        let weight = self
            .config
            .weights
            .get(method)
            .copied()
            .unwrap_or(self.config.default_weight);
        self.charge(w, weight)?;
        match method {
            "get.account" => Ok((
                json!([{"app_id": self.config.app_id, "name": "Клиника «Здоровье»", "timezone": "Europe/Moscow"}]),
                None,
            )),
            "get.tags" => self.get_tags(w, p),
            "get.calls_report" => self.report(w, p, Report::Calls),
            "get.communications_report" => self.report(w, p, Report::Communications),
            "set.tag_sales" => self.set_tag_sales(w, p).map(|d| (d, None)),
            "set.tag_communications" | "unset.tag_communications" => self
                .tag(w, p, method == "set.tag_communications")
                .map(|d| (d, None)),
            "create.communication_comment" => self.comment(w, p).map(|d| (d, None)),
            _ => Err(err(
                -32601,
                "method_not_found",
                format!("Method not found: {method}"),
            )),
        }
    }

    pub(super) fn login(&self, w: &mut World, p: &Map<String, Json>) -> Result<Json, RpcErr> {
        let login = str_param(p, "login", true)?.unwrap_or_default();
        let password = str_param(p, "password", true)?.unwrap_or_default();
        if login != self.config.login || password != self.config.password {
            return Err(err(-32001, "auth_error", "Wrong login or password"));
        }
        let token: String = (0..4)
            .map(|_| format!("{:08x}", w.rng.next() as u32))
            .collect();
        let expire_at = chrono::Utc::now().timestamp() + self.config.token_ttl.as_secs() as i64;
        w.tokens.insert(
            token.clone(),
            TokenInfo {
                expires: Some(Instant::now() + self.config.token_ttl),
                expired: false,
            },
        );
        w.stats.logins += 1;
        Ok(json!({"access_token": token, "expire_at": expire_at, "app_id": self.config.app_id}))
    }
}
