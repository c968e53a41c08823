//! `comagic.phone_store`: the store of seed 003 ("phones and sums, pulled once a day from the
//! client's API"), kept in the state database.
//!
//! The store is a ledger with one entry per CRM order (its normalised phone, the sum of its
//! payments, its service, its dates), keyed by the order id. Refreshing it ("update_db") reads the
//! orders through any source (the generic `http` source for the CRM's API) and writes each order's
//! entry, one transaction per page; reading it adds the entries up per phone. An order read twice
//! replaces its own entry, so however often the refresh runs, no order is counted twice, and a
//! payment added to an order later is counted once it is read.

use std::collections::{BTreeMap, HashMap, VecDeque};

use async_trait::async_trait;
use chrono::DateTime;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::config::BuildCtx;
use crate::config::component::SourceConfig;
use crate::expr::filters::normalize_phone;
use crate::expr::{JsonPath, Template};
use crate::runtime::{Fatal, Record, RunCtx, Source};
use crate::syntax::de::RawNode;
use crate::syntax::session;

/// Phones with the sum of their CRM orders' payments and the services bought, one record per
/// phone (`phone`, `amount`, `services`, `orders`, `first_order_at`, `last_order_at`,
/// `last_paid_at`), from the store in the state database; refreshed first from `orders` when
/// `refresh` is true.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PhoneStoreConfig {
    /// Refresh the store from `orders` before reading it (a template, e.g. `{{ settings.update_db }}`).
    #[serde(default)]
    #[schemars(example = &"{{ settings.update_db }}")]
    pub refresh: Option<Template>,
    /// Where orders come from when refreshing: a source, e.g. `type: http` for the CRM's orders API.
    #[serde(default)]
    #[schemars(schema_with = "source_ref")]
    pub orders: Option<RawNode>,
    /// JSON paths that read one order from the records `orders` gives.
    #[serde(default)]
    pub order_fields: OrderFields,
    /// Name of the store (a key-value table of this pipeline in the state database).
    #[serde(default = "default_table")]
    pub table: String,
    /// Phones per batch handed to the steps.
    #[serde(default = "default_batch")]
    #[schemars(range(min = 1))]
    pub batch_size: usize,
}

fn source_ref(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"$ref": "#/properties/source", "description": "A source of orders (any source type)."})
}

fn default_table() -> String {
    "orders".into()
}
fn default_batch() -> usize {
    1000
}

/// Where each part of an order is, as JSON paths (payment paths are relative to a payment).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderFields {
    /// The order's identity (the ledger key).
    #[serde(default = "p_id")]
    pub id: JsonPath,
    /// The order's number, for people.
    #[serde(default = "p_number")]
    pub number: JsonPath,
    /// The customer's phone, in any format (normalised to 7XXXXXXXXXX).
    #[serde(default = "p_phone")]
    pub phone: JsonPath,
    /// The service bought.
    #[serde(default = "p_service")]
    pub service: JsonPath,
    /// When the order was made (ISO 8601).
    #[serde(default = "p_created")]
    pub created_at: JsonPath,
    /// The order's payments.
    #[serde(default = "p_payments")]
    pub payments: JsonPath,
    /// A payment's sum (a number or a numeric string).
    #[serde(default = "p_sum")]
    pub payment_sum: JsonPath,
    /// When a payment was made (ISO 8601).
    #[serde(default = "p_paid")]
    pub payment_date: JsonPath,
}

fn path(p: &str) -> JsonPath {
    JsonPath::compile(p).expect("valid default path")
}
fn p_id() -> JsonPath {
    path("$.id")
}
fn p_number() -> JsonPath {
    path("$.number")
}
fn p_phone() -> JsonPath {
    path("$.phone")
}
fn p_service() -> JsonPath {
    path("$.service")
}
fn p_created() -> JsonPath {
    path("$.created_at")
}
fn p_payments() -> JsonPath {
    path("$.payments[*]")
}
fn p_sum() -> JsonPath {
    path("$.sum")
}
fn p_paid() -> JsonPath {
    path("$.paid_at")
}

impl Default for OrderFields {
    fn default() -> Self {
        OrderFields {
            id: p_id(),
            number: p_number(),
            phone: p_phone(),
            service: p_service(),
            created_at: p_created(),
            payments: p_payments(),
            payment_sum: p_sum(),
            payment_date: p_paid(),
        }
    }
}

impl SourceConfig for PhoneStoreConfig {
    fn build(self, ctx: &BuildCtx) -> Result<Box<dyn Source>, String> {
        if self.batch_size == 0 {
            return Err("batch_size must be at least 1".into());
        }
        let orders = match &self.orders {
            None => None,
            Some(RawNode(node)) => {
                match ctx.build_source(node) {
                    Ok(source) => Some(source),
                    Err(d) => {
                        // Reported where it is; the load fails with it.
                        session::report(d);
                        None
                    }
                }
            }
        };
        if self.refresh.is_some() && self.orders.is_none() {
            return Err("`refresh` needs an `orders` source to refresh the store from".into());
        }
        Ok(Box::new(PhoneStore {
            refresh: self.refresh,
            orders,
            fields: self.order_fields,
            table: self.table,
            batch_size: self.batch_size,
            queue: VecDeque::new(),
        }))
    }
}

struct PhoneStore {
    refresh: Option<Template>,
    orders: Option<Box<dyn Source>>,
    fields: OrderFields,
    table: String,
    batch_size: usize,
    queue: VecDeque<Record>,
}

/// One order as the ledger keeps it.
#[derive(Debug, PartialEq)]
struct Entry {
    phone: String,
    amount_kop: i64,
    service: String,
    number: String,
    created_at: String,
    paid_at: Option<String>,
}

impl Entry {
    fn to_json(&self) -> Json {
        json!({"phone": self.phone, "amount_kop": self.amount_kop, "service": self.service, "number": self.number,
               "created_at": self.created_at, "paid_at": self.paid_at})
    }
}

fn text(v: Option<&Json>) -> Option<String> {
    match v? {
        Json::Null => None,
        Json::String(s) if s.trim().is_empty() => None,
        Json::String(s) => Some(s.trim().to_string()),
        other => Some(other.to_string()),
    }
}

/// A money amount in kopecks: a number or a string such as `"2300.50"`, `"1 500,00"`.
pub fn kopecks(v: &Json) -> Result<i64, String> {
    let n = match v {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => s
            .trim()
            .replace([' ', '\u{a0}'], "")
            .replace(',', ".")
            .parse::<f64>()
            .ok(),
        _ => None,
    };
    match n {
        Some(x) if x.is_finite() => Ok((x * 100.0).round() as i64),
        _ => Err(format!("payment sum {v} is not a number")),
    }
}

fn later(a: &str, b: &str) -> bool {
    match (
        DateTime::parse_from_rfc3339(a),
        DateTime::parse_from_rfc3339(b),
    ) {
        (Ok(x), Ok(y)) => x > y,
        _ => a > b,
    }
}

impl OrderFields {
    /// An order record -> (ledger key, entry).
    fn read_order(&self, order: &Json) -> Result<(String, Entry), String> {
        let f = self;
        let id =
            text(f.id.first(order)).ok_or_else(|| format!("no order id at {}", f.id.source()))?;
        let raw_phone =
            text(f.phone.first(order)).ok_or_else(|| format!("order {id}: no phone"))?;
        let phone = normalize_phone(&raw_phone).map_err(|e| format!("order {id}: {e}"))?;
        let created_at = text(f.created_at.first(order))
            .ok_or_else(|| format!("order {id}: no {}", f.created_at.source()))?;
        if DateTime::parse_from_rfc3339(&created_at).is_err() {
            return Err(format!(
                "order {id}: created_at \"{created_at}\" is not ISO 8601"
            ));
        }
        let mut amount_kop = 0i64;
        let mut paid_at: Option<String> = None;
        for payment in f.payments.all(order) {
            let sum = f.payment_sum.first(payment).ok_or_else(|| {
                format!("order {id}: a payment without {}", f.payment_sum.source())
            })?;
            amount_kop += kopecks(sum).map_err(|e| format!("order {id}: {e}"))?;
            if let Some(at) = text(f.payment_date.first(payment))
                && paid_at.as_deref().is_none_or(|p| later(&at, p))
            {
                paid_at = Some(at);
            }
        }
        let entry = Entry {
            phone,
            amount_kop,
            service: text(f.service.first(order)).unwrap_or_default(),
            number: text(f.number.first(order)).unwrap_or_else(|| id.clone()),
            created_at,
            paid_at,
        };
        Ok((id, entry))
    }
}

impl PhoneStore {
    /// Read every order from `orders` into the ledger; returns the ledger.
    async fn refresh(
        &mut self,
        ctx: &RunCtx,
        mut ledger: HashMap<String, Json>,
    ) -> Result<HashMap<String, Json>, Fatal> {
        let mut source = self.orders.take().expect("checked at build");
        let result = read_orders(&self.fields, &self.table, ctx, &mut source, &mut ledger).await;
        source.close(ctx).await;
        self.orders = Some(source);
        result.map(|_| ledger)
    }
}

async fn read_orders(
    fields: &OrderFields,
    table: &str,
    ctx: &RunCtx,
    source: &mut Box<dyn Source>,
    ledger: &mut HashMap<String, Json>,
) -> Result<(), Fatal> {
    source.open(ctx, None).await?;
    let (mut read, mut new, mut changed, mut invalid) = (0i64, 0i64, 0i64, 0i64);
    while let Some(batch) = source.next_batch(ctx).await? {
        let mut writes = Vec::new();
        for record in batch {
            read += 1;
            match fields.read_order(&record.source) {
                Ok((id, entry)) => {
                    let value = entry.to_json();
                    match ledger.get(&id) {
                        Some(old) if *old == value => {}
                        Some(_) => changed += 1,
                        None => new += 1,
                    }
                    if ledger.get(&id) != Some(&value) {
                        ledger.insert(id.clone(), value.clone());
                        writes.push((id, value));
                    }
                }
                Err(reason) => {
                    invalid += 1;
                    tracing::warn!("orders: {reason}; the order is left out");
                }
            }
        }
        // One transaction per page: a crash keeps whole pages, and re-reading them is harmless.
        if let (Some(store), false) = (&ctx.state, ctx.dry_run)
            && !writes.is_empty()
        {
            store
                .kv_put_all(&ctx.pipeline, table, &writes)
                .map_err(|e| Fatal::unavailable("state", e))?;
        }
    }
    ctx.count("orders_read", read);
    ctx.count("orders_new", new);
    ctx.count("orders_changed", changed);
    ctx.count("orders_invalid", invalid);
    tracing::info!(read, new, changed, invalid, "phone store refreshed");
    Ok(())
}

#[derive(Default)]
struct Phone {
    amount_kop: i64,
    services: Vec<String>,
    orders: Vec<(String, String, String)>,
    last_paid_at: Option<String>,
}

/// Add the ledger up per phone (sorted by phone; orders by time).
fn aggregate(ledger: &HashMap<String, Json>) -> BTreeMap<String, Phone> {
    let mut phones: BTreeMap<String, Phone> = BTreeMap::new();
    let mut entries: Vec<(&String, &Json)> = ledger.iter().collect();
    let time = |v: &Json| {
        v["created_at"]
            .as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
    };
    entries.sort_by(|a, b| time(a.1).cmp(&time(b.1)).then(a.0.cmp(b.0)));
    for (id, e) in entries {
        let Some(phone) = e["phone"].as_str() else {
            continue;
        };
        let p = phones.entry(phone.to_string()).or_default();
        p.amount_kop += e["amount_kop"].as_i64().unwrap_or(0);
        if let Some(s) = e["service"].as_str().filter(|s| !s.is_empty())
            && !p.services.iter().any(|x| x == s)
        {
            p.services.push(s.to_string());
        }
        let created = e["created_at"].as_str().unwrap_or_default().to_string();
        p.orders.push((
            id.clone(),
            e["number"].as_str().unwrap_or(id).to_string(),
            created,
        ));
        if let Some(at) = e["paid_at"].as_str()
            && p.last_paid_at.as_deref().is_none_or(|x| later(at, x))
        {
            p.last_paid_at = Some(at.to_string());
        }
    }
    phones
}

fn record(phone: &str, p: &Phone) -> Record {
    let first = p.orders.first().map(|o| o.2.clone());
    let last = p.orders.last().map(|o| o.2.clone());
    let data = json!({
        "phone": phone,
        "amount": p.amount_kop as f64 / 100.0,
        "amount_kop": p.amount_kop,
        "services": p.services,
        "orders": p.orders.iter().map(|o| o.1.clone()).collect::<Vec<_>>(),
        "order_ids": p.orders.iter().map(|o| o.0.clone()).collect::<Vec<_>>(),
        "first_order_at": first,
        "last_order_at": last,
        "last_paid_at": p.last_paid_at,
    });
    Record::new(phone, data)
}

#[async_trait]
impl Source for PhoneStore {
    async fn open(&mut self, ctx: &RunCtx, _cursor: Option<Json>) -> Result<(), Fatal> {
        let refresh = match &self.refresh {
            Some(t) => t
                .test(&ctx.run_scope(None))
                .map_err(|e| Fatal::other(format!("comagic.phone_store: refresh: {e}")))?,
            None => false,
        };
        let mut ledger: HashMap<String, Json> = match &ctx.state {
            Some(store) => store
                .kv_all(&ctx.pipeline, &self.table)
                .map_err(|e| Fatal::unavailable("state", e))?
                .into_iter()
                .collect(),
            None => HashMap::new(),
        };
        if refresh {
            ledger = self.refresh(ctx, ledger).await?;
        }
        let phones = aggregate(&ledger);
        tracing::info!(
            orders = ledger.len(),
            phones = phones.len(),
            "phone store read"
        );
        self.queue = phones.iter().map(|(phone, p)| record(phone, p)).collect();
        Ok(())
    }

    async fn next_batch(&mut self, _: &RunCtx) -> Result<Option<Vec<Record>>, Fatal> {
        if self.queue.is_empty() {
            return Ok(None);
        }
        let n = self.batch_size.min(self.queue.len());
        Ok(Some(self.queue.drain(..n).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_add_up_per_phone_once_each() {
        let store = OrderFields::default();
        let orders = [
            json!({"id": 1, "number": "A-1", "created_at": "2025-01-02T10:00:00+03:00", "phone": "8 (916) 123-45-67", "service": "ОАК",
                   "payments": [{"sum": 1500, "paid_at": "2025-01-02T10:05:00+03:00"}, {"sum": "300.50", "paid_at": "2025-01-03T09:00:00+03:00"}]}),
            json!({"id": 2, "number": "A-2", "created_at": "2025-01-01T10:00:00+03:00", "phone": "+7 916 1234567", "service": "УЗИ",
                   "payments": [{"sum": 1999.99, "paid_at": "2025-01-01T10:05:00+03:00"}]}),
            json!({"id": 3, "number": "A-3", "created_at": "2025-01-05T10:00:00+03:00", "phone": "9161234567", "service": "ОАК", "payments": []}),
        ];
        let mut ledger = HashMap::new();
        for _ in 0..3 {
            for o in &orders {
                let (id, e) = store.read_order(o).unwrap();
                ledger.insert(id, e.to_json());
            }
        }
        let phones = aggregate(&ledger);
        let p = &phones["79161234567"];
        assert_eq!(p.amount_kop, 150_000 + 30_050 + 199_999);
        assert_eq!(p.services, vec!["УЗИ", "ОАК"]);
        assert_eq!(
            p.orders.iter().map(|o| o.1.as_str()).collect::<Vec<_>>(),
            vec!["A-2", "A-1", "A-3"]
        );
        assert_eq!(p.last_paid_at.as_deref(), Some("2025-01-03T09:00:00+03:00"));
        let r = record("79161234567", p);
        assert_eq!(r.data["amount"], json!(3800.49));
        assert_eq!(r.data["first_order_at"], "2025-01-01T10:00:00+03:00");

        assert!(
            store
                .read_order(
                    &json!({"id": 4, "phone": "12-34", "created_at": "2025-01-01T00:00:00+03:00"})
                )
                .unwrap_err()
                .contains("invalid phone")
        );
        assert!(store.read_order(&json!({"id": 5, "phone": "9161234567", "created_at": "2025-01-01T00:00:00+03:00", "payments": [{"sum": "n/a"}]})).is_err());
        assert_eq!(kopecks(&json!("1 500,25")).unwrap(), 150_025);
        assert_eq!(
            kopecks(&json!(0.1)).unwrap() + kopecks(&json!(0.2)).unwrap(),
            30
        );
    }
}
