//! Bitrix24 over an incoming webhook: the limit-aware client, a list source, a batched lookup
//! step, and a batched update sink.

mod call;
pub mod client;
mod encode;
mod list;
mod update;

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::config::Registry;
use crate::config::component::ConnectionConfig;

pub fn register(r: &mut Registry) {
    r.connection::<Bitrix24Connection>("bitrix24");
    r.source::<list::ListConfig>("bitrix24.list");
    r.step::<call::CallConfig>("bitrix24.call");
    r.sink::<update::UpdateConfig>("bitrix24.update");
}

/// A Bitrix24 portal reached through an incoming webhook.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Bitrix24Connection {
    /// The webhook base, `https://portal.bitrix24.ru/rest/USER/CODE/`; its code is a secret and
    /// never printed.
    #[schemars(example = &"${env:B24_WEBHOOK_URL}")]
    pub webhook_url: String,
    /// Leaky bucket capacity of the portal (250 on Enterprise).
    #[serde(default = "default_burst")]
    pub burst: u32,
    /// Leaky bucket drain per second (5 on Enterprise).
    #[serde(default = "default_drain")]
    pub drain_per_second: f64,
    /// Seconds before a request is abandoned (Bitrix24 itself stops at 60).
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Retries of a failed read (5xx, timeouts, HTML answers), with backoff and jitter.
    #[serde(default = "default_retries")]
    pub retries: usize,
    /// Per-method operating-time budget over 10 minutes, in seconds.
    #[serde(default = "default_operating")]
    pub operating_limit_secs: f64,
}

fn default_burst() -> u32 {
    50
}
fn default_drain() -> f64 {
    2.0
}
fn default_timeout() -> u64 {
    50
}
fn default_retries() -> usize {
    5
}
fn default_operating() -> f64 {
    480.0
}

impl ConnectionConfig for Bitrix24Connection {
    fn build(self) -> Result<Arc<dyn Any + Send + Sync>, String> {
        if self.timeout_secs == 0 || self.timeout_secs >= 60 {
            return Err(
                "timeout_secs must be between 1 and 59: Bitrix24 ends requests at 60 s".into(),
            );
        }
        let client = client::Client::new(client::ClientConfig {
            webhook_url: self.webhook_url,
            burst: self.burst,
            drain_per_second: self.drain_per_second,
            timeout: Duration::from_secs(self.timeout_secs),
            retries: self.retries,
            operating_limit: self.operating_limit_secs,
        })?;
        Ok(Arc::new(client))
    }
}
