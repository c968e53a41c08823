//! `comagic.tag_sales`: the writing half of seed 003. The communication `comagic.find_communication`
//! picked is made to carry exactly one sale with the phone's sum:
//! - no sale yet: `set.tag_sales` with the amount and the services in the comment (`tags_applied`);
//! - a sale with another amount: `unset.tag_communications` of the sale tag, then `set.tag_sales`
//!   (`tags_removed_updated`).
//!
//! A call already carrying the same sale never reaches this sink (the step skips it as a
//! `problem`), so a second run writes nothing. The runtime does what it does for every sink:
//! dry-run lines, failure wording, the journal.
//!
//! `set.tag_sales` is not idempotent. When a write's outcome is unknown (timeout, dropped
//! connection, 5xx), the communication is read again and the next step decided from what it
//! carries; nothing is sent twice blindly.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{FixedOffset, NaiveDateTime};
use minijinja::value::Value;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use super::calls::{CallRow, clip_comment, money, reread};
use super::data_api::{CallError, DataApi, Effect, SYSTEM};
use super::find_communication::record_template;
use super::report_reader::{format_time, parse_time};
use crate::config::component::SinkConfig;
use crate::config::{BuildCtx, ConnectionRef};
use crate::expr::Template;
use crate::runtime::{Fatal, Item, RunCtx, Sink, Write, Written};

/// Put a CoMagic sale (tag «Продажа», amount, comment) on the communication a
/// `comagic.find_communication` step found (seed 003).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TagSalesConfig {
    /// A `comagic.data_api` connection.
    #[schemars(example = &"comagic")]
    pub connection: ConnectionRef,
    /// The communication: the output of a `comagic.find_communication` step (records without
    /// one are left alone).
    #[schemars(example = &"{{ steps.call }}")]
    pub communication: Template,
    /// The sale's `date_time` (ISO 8601, or `YYYY-MM-DD hh:mm:ss` in the account's time); moved
    /// to the call's start when it is earlier; the order's time when empty.
    #[serde(default = "d_sale_at")]
    #[schemars(example = &"{{ record.last_paid_at or record.last_order_at }}")]
    pub sale_at: Template,
    /// The sale's comment; cut to 255 characters.
    #[serde(default = "d_comment")]
    #[schemars(example = &"{{ record.services | join(', ') }}")]
    pub comment: Template,
    /// Attempts at one write whose outcome stays unknown (each after reading the communication again).
    #[serde(default = "d_attempts")]
    #[schemars(range(min = 1))]
    pub write_attempts: u32,
}

fn d_sale_at() -> Template {
    record_template("{{ record.last_paid_at or record.last_order_at }}")
}
fn d_comment() -> Template {
    record_template("{{ record.services | join(', ') }}")
}
fn d_attempts() -> u32 {
    3
}

impl SinkConfig for TagSalesConfig {
    fn build(self, ctx: &BuildCtx) -> Result<Arc<dyn Sink>, String> {
        let api = ctx.connection::<DataApi>(&self.connection)?;
        Ok(Arc::new(TagSales {
            label: ctx.id.clone().unwrap_or_else(|| "comagic.tag_sales".into()),
            cfg: self,
            api,
        }))
    }
}

struct TagSales {
    cfg: TagSalesConfig,
    api: Arc<DataApi>,
    label: String,
}

/// One sale to make, as `prepare` reads it back from the write's payload.
struct Sale {
    phone: String,
    call: CallRow,
    sale_tag: u64,
    amount_kop: i64,
    date_time: NaiveDateTime,
    comment: String,
}

impl Sale {
    fn from_payload(p: &Json) -> Option<Sale> {
        let sale_tag = p.get("sale_tag_id")?.as_u64()?;
        let kop = |v: &Json| v.as_f64().map(|x| (x * 100.0).round() as i64);
        Some(Sale {
            phone: p.get("phone")?.as_str()?.to_string(),
            call: CallRow {
                id: p.get("call_id")?.as_u64()?,
                communication_id: p.get("communication_id")?.as_u64()?,
                communication_type: p.get("communication_type")?.as_str()?.to_string(),
                start_time: parse_time(p.get("start_time")?.as_str()?, false).ok()?,
                is_lost: false,
                sale_kop: p.get("current_sale").and_then(kop),
                tag_ids: if p.get("has_sale")?.as_bool()? {
                    vec![sale_tag]
                } else {
                    Vec::new()
                },
            },
            sale_tag,
            amount_kop: kop(p.get("amount")?)?,
            date_time: parse_time(p.get("date_time")?.as_str()?, false).ok()?,
            comment: p.get("comment")?.as_str()?.to_string(),
        })
    }

    fn done(&self) -> bool {
        self.call.carries(self.sale_tag, self.amount_kop)
    }
}

/// Why a sale was not made.
enum WriteErr {
    /// This record's problem (CoMagic rejected the parameters, the communication is gone).
    Record(String),
    Fatal(Fatal),
}

impl From<Fatal> for WriteErr {
    fn from(f: Fatal) -> WriteErr {
        WriteErr::Fatal(f)
    }
}

fn local(text: &str, tz: FixedOffset) -> Result<NaiveDateTime, String> {
    let t = text.trim();
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(t) {
        return Ok(dt.with_timezone(&tz).naive_local());
    }
    parse_time(t, true).map_err(|e| format!("sale_at: {e}"))
}

impl TagSales {
    /// The write's payload: the communication as found, and the sale's `date_time`, amount and
    /// comment.
    fn payload(&self, scope: &Value, found: Json) -> Result<Json, String> {
        let field = |k: &str| {
            found.get(k).and_then(Json::as_str).ok_or_else(|| {
                format!("communication: `{k}` missing (not a comagic.find_communication output)")
            })
        };
        let tz: FixedOffset = field("utc_offset")?
            .parse()
            .map_err(|_| "communication: bad `utc_offset`".to_string())?;
        let start = parse_time(field("start_time")?, false)?;
        let order_at = parse_time(field("order_at")?, false)?;
        let sale_at = match self
            .cfg
            .sale_at
            .eval(scope)
            .map_err(|e| format!("sale_at: {e}"))?
        {
            Json::String(s) if !s.trim().is_empty() => Some(local(&s, tz)?),
            _ => None,
        };
        let comment = match self
            .cfg
            .comment
            .eval(scope)
            .map_err(|e| format!("comment: {e}"))?
        {
            Json::String(s) => clip_comment(&s),
            _ => String::new(),
        };
        let mut payload = found;
        payload["date_time"] = json!(format_time(&sale_at.unwrap_or(order_at).max(start)));
        payload["comment"] = json!(comment);
        Ok(payload)
    }

    /// The communication as CoMagic has it now, after a write with an unknown outcome.
    async fn look_again(&self, sale: &mut Sale, method: &str, why: &str) -> Result<(), WriteErr> {
        tracing::warn!(
            phone = sale.phone,
            "{method} on {}: {why}; reading the communication before anything else",
            sale.call.communication_id
        );
        sale.call = reread(&self.api, &sale.call)
            .await
            .map_err(|e| e.fatal_in(SYSTEM, "get.calls_report"))?
            .ok_or_else(|| {
                WriteErr::Record(format!(
                    "communication {} is gone",
                    sale.call.communication_id
                ))
            })?;
        Ok(())
    }

    /// `unset.tag_communications` of the sale tag; `Ok(false)`: the outcome is unknown and the
    /// communication was read again.
    async fn unset(&self, sale: &mut Sale) -> Result<bool, WriteErr> {
        let mut p = Map::new();
        p.insert("communication_id".into(), json!(sale.call.communication_id));
        p.insert(
            "communication_type".into(),
            json!(sale.call.communication_type),
        );
        p.insert("tag_id".into(), json!(sale.sale_tag));
        match self
            .api
            .call("unset.tag_communications", p, Effect::Write)
            .await
        {
            Ok(_) => {
                sale.call.sale_kop = None;
                sale.call.tag_ids.retain(|t| *t != sale.sale_tag);
                Ok(true)
            }
            Err(CallError::Unknown(m)) => {
                self.look_again(sale, "unset.tag_communications", &m)
                    .await?;
                Ok(false)
            }
            Err(e) => Err(fatal_or_record("unset.tag_communications", e)),
        }
    }

    /// `set.tag_sales`; `Ok(None)`: the outcome is unknown and the communication was read again.
    async fn set(&self, sale: &mut Sale) -> Result<Option<u64>, WriteErr> {
        let mut p = Map::new();
        p.insert("communication_id".into(), json!(sale.call.communication_id));
        p.insert(
            "communication_type".into(),
            json!(sale.call.communication_type),
        );
        p.insert("date_time".into(), json!(format_time(&sale.date_time)));
        p.insert(
            "transaction_value".into(),
            json!(sale.amount_kop as f64 / 100.0),
        );
        if !sale.comment.is_empty() {
            p.insert("comment".into(), json!(sale.comment));
        }
        match self.api.call("set.tag_sales", p, Effect::Write).await {
            Ok(reply) => {
                sale.call.sale_kop = Some(sale.amount_kop);
                if !sale.call.tag_ids.contains(&sale.sale_tag) {
                    sale.call.tag_ids.push(sale.sale_tag);
                }
                Ok(Some(
                    reply.data.get("id").and_then(Json::as_u64).unwrap_or(0),
                ))
            }
            Err(CallError::Unknown(m)) => {
                self.look_again(sale, "set.tag_sales", &m).await?;
                Ok(None)
            }
            Err(e) => Err(fatal_or_record("set.tag_sales", e)),
        }
    }

    /// Bring the communication to carrying exactly one sale of the amount; the sale's id (0 when
    /// an earlier attempt whose answer was lost made it).
    async fn make(&self, sale: &mut Sale) -> Result<u64, WriteErr> {
        let attempts = self.cfg.write_attempts.max(1);
        for attempt in 0..attempts {
            if sale.call.has_sale(sale.sale_tag) {
                if attempt > 0 && sale.done() {
                    return Ok(0); // an earlier attempt took effect
                }
                if !self.unset(sale).await? {
                    continue;
                }
            }
            match self.set(sale).await? {
                Some(id) => return Ok(id),
                None if sale.done() => return Ok(0), // it took effect
                None => {}
            }
        }
        if sale.done() {
            return Ok(0);
        }
        Err(WriteErr::Fatal(Fatal::unavailable(
            SYSTEM,
            format!(
                "the sale for communication {} could not be confirmed after {attempts} attempts",
                sale.call.communication_id
            ),
        )))
    }
}

fn fatal_or_record(method: &str, e: CallError) -> WriteErr {
    match e {
        CallError::Rejected(r) if r.is_params() => WriteErr::Record(format!("{method}: {r}")),
        other => WriteErr::Fatal(other.fatal_in(SYSTEM, method)),
    }
}

#[async_trait]
impl Sink for TagSales {
    fn prepare(&self, _item: &Item, scope: &Value) -> Result<Option<Write>, String> {
        let found = self
            .cfg
            .communication
            .eval(scope)
            .map_err(|e| format!("communication: {e}"))?;
        if found.is_null() {
            return Ok(None);
        }
        let payload = self.payload(scope, found)?;
        let key = payload["communication_id"].to_string();
        Ok(Some(Write {
            index: 0,
            key,
            payload: Arc::new(payload),
        }))
    }

    async fn write(
        &self,
        writes: &[Write],
        ctx: &RunCtx,
    ) -> Result<Vec<Result<Json, String>>, Fatal> {
        self.write_confirmed(writes, ctx).await.into_result()
    }

    /// One sale after the other; those tagged before CoMagic goes away stay confirmed.
    async fn write_confirmed(&self, writes: &[Write], ctx: &RunCtx) -> Written {
        for name in ["tags_applied", "tags_removed_updated"] {
            ctx.declare_counter(name);
        }
        let mut results = Vec::with_capacity(writes.len());
        for w in writes {
            let Some(mut sale) = Sale::from_payload(&w.payload) else {
                results.push(Err("the communication is incomplete".to_string()));
                continue;
            };
            let updating = sale.call.has_sale(sale.sale_tag);
            match self.make(&mut sale).await {
                Ok(id) => {
                    let (counter, action) = if updating {
                        ("tags_removed_updated", "updated")
                    } else {
                        ("tags_applied", "tagged")
                    };
                    ctx.count(counter, 1);
                    results.push(Ok(json!({"action": action, "sale_id": id})));
                }
                Err(WriteErr::Record(reason)) => {
                    ctx.log(format!("{}:failed: {reason}", sale.phone));
                    results.push(Err(reason));
                }
                Err(WriteErr::Fatal(f)) => return Written::until(results, f),
            }
        }
        Written {
            results,
            stopped: None,
        }
    }

    fn describe(&self, w: &Write) -> String {
        let p = &w.payload;
        let now = p["current_sale"].as_f64();
        format!(
            "{} communication {} ({}) with a sale of {}{}",
            if p["has_sale"] == true {
                "update"
            } else {
                "tag"
            },
            p["communication_id"],
            p["phone"].as_str().unwrap_or_default(),
            money((p["amount"].as_f64().unwrap_or(0.0) * 100.0).round() as i64),
            now.map(|k| format!(" (now {})", money((k * 100.0).round() as i64)))
                .unwrap_or_default()
        )
    }

    fn dry_run_label(&self) -> Option<&str> {
        Some(&self.label)
    }

    /// The step reads each communication as CoMagic has it, which is what makes a second run
    /// write nothing; a remembered fingerprint would only hide a sale removed in CoMagic since.
    fn skip_unchanged(&self) -> bool {
        false
    }
}
