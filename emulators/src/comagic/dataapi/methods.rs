//! The methods behind dispatch: tags, the reports (fields, filter, sort, paging) and the
//! sale-tagging methods.

use super::*;

impl Shared {
    pub(super) fn get_tags(
        &self,
        w: &mut World,
        p: &Map<String, Json>,
    ) -> Result<(Json, Option<u64>), RpcErr> {
        let rows: Vec<Json> = w.tags.iter().map(|(id, name, system)| json!({"id": id, "name": name, "is_system": system, "tag_group_id": null})).collect();
        let filter = p.get("filter");
        let mut hits = Vec::new();
        for row in rows {
            if let Some(f) = filter
                && !eval_filter(
                    f,
                    &|name| row.get(name).cloned(),
                    &|f| ["id", "name", "is_system"].contains(&f),
                    &|f| ["id", "name", "is_system", "tag_group_id"].contains(&f),
                )?
            {
                continue;
            }
            hits.push(row);
        }
        let total = hits.len() as u64;
        let (limit, offset) = self.paging(p)?;
        let page: Vec<Json> = hits
            .into_iter()
            .skip(offset as usize)
            .take(limit as usize)
            .collect();
        Ok((Json::Array(page), Some(total)))
    }

    pub(super) fn paging(&self, p: &Map<String, Json>) -> Result<(u64, u64), RpcErr> {
        let limit = uint_param(p, "limit")?.unwrap_or(1000);
        if limit > self.config.max_limit {
            return Err(param_err(
                "invalid_parameter_value",
                "limit",
                json!(limit),
                format!("limit must not exceed {}", self.config.max_limit),
            ));
        }
        let offset = uint_param(p, "offset")?.unwrap_or(0);
        if offset > self.config.max_offset {
            return Err(param_err(
                "invalid_parameter_value",
                "offset",
                json!(offset),
                format!("offset must not exceed {}", self.config.max_offset),
            ));
        }
        Ok((limit, offset))
    }

    pub(super) fn report(
        &self,
        w: &mut World,
        p: &Map<String, Json>,
        report: Report,
    ) -> Result<(Json, Option<u64>), RpcErr> {
        let (from, till) = report_window(p)?;
        let (limit, offset) = self.paging(p)?;
        let fields = report_fields(p, report)?;
        let sort = report_sort(p, report)?;
        // Candidates: the time window (calls are sorted by time), narrowed by a phone index when
        // the filter pins contact_phone_number.
        let lo = w.calls.partition_point(|c| c.start_time < from);
        let hi = w.calls.partition_point(|c| c.start_time <= till);
        let pinned = p
            .get("filter")
            .and_then(pinned_phone)
            .filter(|_| report == Report::Calls && self.config.phone_filter);
        let candidates: Vec<usize> = match pinned {
            Some(phone) => w
                .by_phone
                .get(&phone)
                .map(|v| v.iter().copied().filter(|i| (lo..hi).contains(i)).collect())
                .unwrap_or_default(),
            None => (lo..hi).collect(),
        };
        let phone_filter = self.config.phone_filter;
        let mut hits = Vec::with_capacity(candidates.len());
        for i in candidates {
            let call = &w.calls[i];
            if let Some(f) = p.get("filter") {
                let get = |name: &str| call.field(name, report);
                if !eval_filter(
                    f,
                    &get,
                    &|name| report.filterable(name, phone_filter),
                    &|name| report.fields().contains(&name),
                )? {
                    continue;
                }
            }
            hits.push(i);
        }
        sort_hits(&mut hits, &w.calls, &sort, report);
        let total = hits.len() as u64;
        let rows: Vec<Json> = hits
            .into_iter()
            .skip(offset as usize)
            .take(limit as usize)
            .map(|i| {
                let call = &w.calls[i];
                Json::Object(
                    fields
                        .iter()
                        .map(|f| (f.clone(), call.field(f, report).unwrap_or(Json::Null)))
                        .collect(),
                )
            })
            .collect();
        Ok((Json::Array(rows), Some(total)))
    }

    pub(super) fn communication<'a>(
        &self,
        w: &'a mut World,
        p: &Map<String, Json>,
        only_calls: bool,
    ) -> Result<&'a mut Call, RpcErr> {
        let id = match p.get("communication_id") {
            None | Some(Json::Null) => {
                return Err(param_err(
                    "required_parameter_missed",
                    "communication_id",
                    Json::Null,
                    "communication_id is required",
                ));
            }
            Some(v) => v.as_u64().ok_or_else(|| {
                param_err(
                    "data_type_error",
                    "communication_id",
                    v.clone(),
                    "communication_id must be a number",
                )
            })?,
        };
        let kind = str_param(p, "communication_type", true)?.unwrap_or_default();
        if !["call", "chat", "goal", "offline_message"].contains(&kind.as_str())
            || (only_calls && kind != "call")
        {
            return Err(param_err(
                "invalid_parameter_value",
                "communication_type",
                json!(kind),
                "Invalid communication_type",
            ));
        }
        let found = if kind == "call" {
            w.by_comm.get(&id).copied()
        } else {
            None
        };
        match found {
            Some(i) => Ok(&mut w.calls[i]),
            None => Err(param_err(
                "invalid_parameter_value",
                "communication_id",
                json!(id),
                "Communication not found",
            )),
        }
    }

    pub(super) fn set_tag_sales(
        &self,
        w: &mut World,
        p: &Map<String, Json>,
    ) -> Result<Json, RpcErr> {
        let date_time = time_param(p, "date_time")?;
        let value = match p.get("transaction_value") {
            None | Some(Json::Null) => {
                return Err(param_err(
                    "required_parameter_missed",
                    "transaction_value",
                    Json::Null,
                    "transaction_value is required",
                ));
            }
            Some(v) => v.as_f64().ok_or_else(|| {
                param_err(
                    "data_type_error",
                    "transaction_value",
                    v.clone(),
                    "transaction_value must be a number",
                )
            })?,
        };
        let comment = str_param(p, "comment", false)?;
        if let Some(c) = &comment
            && c.chars().count() > 255
        {
            return Err(param_err(
                "invalid_parameter_value",
                "comment",
                json!(c),
                "comment must not exceed 255 characters",
            ));
        }
        if !self.config.sales_enabled {
            return Err(err(
                -32008,
                "method_component_disabled",
                "The sales accounting component is switched off",
            ));
        }
        let sale_id = w.next_sale;
        let call = self.communication(w, p, false)?;
        if date_time < call.start_time {
            return Err(param_err(
                "invalid_parameter_value",
                "date_time",
                p["date_time"].clone(),
                "date_time is earlier than the communication",
            ));
        }
        call.sales.push(Sale {
            id: sale_id,
            value,
            date_time,
            comment,
        });
        if !call.tags.iter().any(|t| t.tag_id == SALE_TAG_ID) {
            call.tags.push(CommTag {
                tag_id: SALE_TAG_ID,
                tag_name: SALE_TAG_NAME.into(),
                tag_type: "system".into(),
                tag_change_time: now_local(),
            });
        }
        w.next_sale += 1;
        w.stats.sales_made += 1;
        Ok(json!({"id": sale_id}))
    }

    pub(super) fn tag(
        &self,
        w: &mut World,
        p: &Map<String, Json>,
        set: bool,
    ) -> Result<Json, RpcErr> {
        let tag_id = match p.get("tag_id") {
            None | Some(Json::Null) => {
                return Err(param_err(
                    "required_parameter_missed",
                    "tag_id",
                    Json::Null,
                    "tag_id is required",
                ));
            }
            Some(v) => v.as_u64().ok_or_else(|| {
                param_err(
                    "data_type_error",
                    "tag_id",
                    v.clone(),
                    "tag_id must be a number",
                )
            })?,
        };
        let Some((_, name, _)) = w.tags.iter().find(|(id, _, _)| *id == tag_id).cloned() else {
            return Err(param_err(
                "invalid_parameter_value",
                "tag_id",
                json!(tag_id),
                "Tag not found",
            ));
        };
        let call = self.communication(w, p, false)?;
        if set {
            if !call.tags.iter().any(|t| t.tag_id == tag_id) {
                call.tags.push(CommTag {
                    tag_id,
                    tag_name: name,
                    tag_type: "manual".into(),
                    tag_change_time: now_local(),
                });
            }
        } else {
            call.tags.retain(|t| t.tag_id != tag_id);
            if tag_id == SALE_TAG_ID {
                call.sales.clear();
            }
        }
        Ok(json!({}))
    }

    pub(super) fn comment(&self, w: &mut World, p: &Map<String, Json>) -> Result<Json, RpcErr> {
        let text = str_param(p, "comment", true)?.unwrap_or_default();
        let call = self.communication(w, p, true)?;
        call.comments.push(text);
        Ok(json!({"success": true}))
    }
}

/// `date_from` and `date_till`: in order and at most 3 months apart.
fn report_window(p: &Map<String, Json>) -> Result<(NaiveDateTime, NaiveDateTime), RpcErr> {
    let from = time_param(p, "date_from")?;
    let till = time_param(p, "date_till")?;
    if till < from {
        return Err(param_err(
            "invalid_parameters_combination",
            "date_till",
            p["date_till"].clone(),
            "date_till is earlier than date_from",
        ));
    }
    if till
        > from
            .checked_add_months(chrono::Months::new(3))
            .unwrap_or(from)
    {
        return Err(param_err(
            "date_interval_limit_reached",
            "date_till",
            p["date_till"].clone(),
            "The date interval must not exceed 3 months",
        ));
    }
    Ok((from, till))
}

/// `fields`: the report's defaults, or the listed ones if the report has them all.
fn report_fields(p: &Map<String, Json>, report: Report) -> Result<Vec<String>, RpcErr> {
    Ok(match p.get("fields") {
        None | Some(Json::Null) => report
            .default_fields()
            .iter()
            .map(|s| s.to_string())
            .collect(),
        Some(Json::Array(list)) => {
            let mut out = Vec::new();
            for f in list {
                let name = f.as_str().unwrap_or_default();
                if !report.fields().contains(&name) {
                    return Err(param_err(
                        "invalid_parameter_value",
                        "fields",
                        f.clone(),
                        format!("Unknown field: {f}"),
                    ));
                }
                out.push(name.to_string());
            }
            out
        }
        Some(other) => {
            return Err(param_err(
                "data_type_error",
                "fields",
                other.clone(),
                "fields must be an array",
            ));
        }
    })
}

/// `sort`: (field, descending) pairs, on fields the report can sort by.
fn report_sort(p: &Map<String, Json>, report: Report) -> Result<Vec<(String, bool)>, RpcErr> {
    Ok(match p.get("sort") {
        None | Some(Json::Null) => Vec::new(),
        Some(Json::Array(list)) => {
            let mut out = Vec::new();
            for s in list {
                let field = s.get("field").and_then(Json::as_str).unwrap_or_default();
                if !report.sortable(field) {
                    return Err(param_err(
                        "sort_prohibited",
                        "sort",
                        s.clone(),
                        format!("Sorting by {field} is not allowed"),
                    ));
                }
                let desc = match s.get("order").and_then(Json::as_str).unwrap_or("asc") {
                    "asc" => false,
                    "desc" => true,
                    o => {
                        return Err(param_err(
                            "invalid_parameter_value",
                            "sort",
                            json!(o),
                            "order is asc or desc",
                        ));
                    }
                };
                out.push((field.to_string(), desc));
            }
            out
        }
        Some(other) => {
            return Err(param_err(
                "data_type_error",
                "sort",
                other.clone(),
                "sort must be an array",
            ));
        }
    })
}

/// Sorts the hits by the sort keys, the first key most significant.
fn sort_hits(hits: &mut [usize], calls: &[Call], sort: &[(String, bool)], report: Report) {
    for (field, desc) in sort.iter().rev() {
        // Calls are kept in time order: sorting by time needs no comparisons.
        if field == report.time_field() {
            if *desc {
                hits.reverse();
            }
            continue;
        }
        hits.sort_by(|a, b| {
            let (x, y) = (
                calls[*a].field(field, report),
                calls[*b].field(field, report),
            );
            let o = compare(
                x.as_ref().unwrap_or(&Json::Null),
                y.as_ref().unwrap_or(&Json::Null),
            )
            .unwrap_or(std::cmp::Ordering::Equal);
            if *desc { o.reverse() } else { o }
        });
    }
}
