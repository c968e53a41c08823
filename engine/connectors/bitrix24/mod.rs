//! Bitrix24 over an incoming webhook: the limit-aware client, a list source, a batched lookup
//! step, a one-call write step, and a batched update sink.

pub mod app;
mod call;
pub mod client;
mod clock;
mod encode;
mod guard;
mod list;
mod lookup;
mod update;
mod write;

use std::any::Any;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::config::Registry;
use crate::config::component::ConnectionConfig;
use crate::connectors::http::transport::Transport;

pub fn register(r: &mut Registry) {
    r.connection::<Bitrix24Connection>("bitrix24");
    r.source::<list::ListConfig>("bitrix24.list");
    r.step::<call::CallConfig>("bitrix24.call");
    r.step::<lookup::LookupConfig>("bitrix24.lookup");
    r.step::<write::WriteConfig>("bitrix24.write");
    r.sink::<update::UpdateConfig>("bitrix24.update");
    app::register(r);
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
    #[schemars(range(min = 1))]
    pub burst: u32,
    /// Leaky bucket drain per second (5 on Enterprise).
    #[serde(default = "default_drain")]
    #[schemars(range(min = 0.1))]
    pub drain_per_second: f64,
    /// Per-method operating-time budget over 10 minutes, in seconds.
    #[serde(default = "default_operating")]
    pub operating_limit_secs: f64,
    /// `timeout_secs` (at most 59: Bitrix24 itself ends requests at 60) and `retries`.
    #[serde(flatten)]
    pub transport: Transport<50, 5>,
}

/// A portal's limits, as its plan sets them. (Written out in each connection rather than
/// flattened: serde's flatten loses the positions that type errors are reported at.)
pub struct PortalLimits {
    pub burst: u32,
    pub drain_per_second: f64,
    pub operating_limit_secs: f64,
}

pub(crate) fn default_burst() -> u32 {
    50
}
pub(crate) fn default_drain() -> f64 {
    2.0
}
pub(crate) fn default_operating() -> f64 {
    480.0
}

impl PortalLimits {
    /// The client settings for these limits and this transport, calling `base` with `auth`.
    fn client_config<const T: u64, const R: usize>(
        &self,
        base: String,
        transport: &Transport<T, R>,
        auth: client::Auth,
    ) -> Result<client::ClientConfig, String> {
        if transport.timeout_secs == 0 || transport.timeout_secs >= 60 {
            return Err(
                "timeout_secs must be between 1 and 59: Bitrix24 ends requests at 60 s".into(),
            );
        }
        Ok(client::ClientConfig {
            webhook_url: base,
            burst: self.burst,
            drain_per_second: self.drain_per_second,
            timeout: transport.timeout(),
            retries: transport.retries,
            operating_limit: self.operating_limit_secs,
            auth,
        })
    }
}

impl ConnectionConfig for Bitrix24Connection {
    fn build(self) -> Result<Arc<dyn Any + Send + Sync>, String> {
        let limits = PortalLimits {
            burst: self.burst,
            drain_per_second: self.drain_per_second,
            operating_limit_secs: self.operating_limit_secs,
        };
        let cfg = limits.client_config(self.webhook_url, &self.transport, client::Auth::Webhook)?;
        Ok(Arc::new(client::Client::new(cfg)?))
    }
}
