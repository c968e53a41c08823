//! otmechalka.com (seed 001): clients and tickets (абонементы) kept by their origin id, the
//! Bitrix24 ID. Writes are idempotent by construction: look up by origin id, then create or
//! update; a create whose outcome is unknown is looked up again before anything is resent.

mod client;
mod sinks;

use std::any::Any;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::config::Registry;
use crate::config::component::ConnectionConfig;
use crate::connectors::http::transport::Transport;

pub use client::Otmechalka;

pub fn register(r: &mut Registry) {
    r.connection::<OtmechalkaConnection>("otmechalka");
    r.sink::<sinks::ClientSinkConfig>("otmechalka.client");
    r.sink::<sinks::TicketSinkConfig>("otmechalka.ticket");
}

/// An otmechalka account.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OtmechalkaConnection {
    /// Base URL of the API.
    #[schemars(example = &"${env:OTMECHALKA_URL}")]
    pub url: String,
    /// Bearer token.
    #[schemars(example = &"${secret:OTMECHALKA_TOKEN}")]
    pub token: String,
    /// Requests in flight at once (records written side by side; each record's own requests
    /// stay in order: look up, then create or update).
    #[serde(default = "default_concurrency")]
    #[schemars(range(min = 1, max = 64))]
    pub concurrency: usize,
    #[serde(flatten)]
    pub transport: Transport<30, 3>,
}

fn default_concurrency() -> usize {
    8
}

impl ConnectionConfig for OtmechalkaConnection {
    fn build(self) -> Result<Arc<dyn Any + Send + Sync>, String> {
        crate::secrets::register(&self.token);
        if !(1..=64).contains(&self.concurrency) {
            return Err(format!(
                "otmechalka concurrency must be between 1 and 64, not {}",
                self.concurrency
            ));
        }
        let url =
            url::Url::parse(self.url.trim()).map_err(|e| format!("invalid otmechalka URL: {e}"))?;
        Ok(Arc::new(
            Otmechalka::new(
                url.as_str().trim_end_matches('/'),
                &self.token,
                self.transport.timeout(),
                self.transport.retries,
            )
            .with_concurrency(self.concurrency),
        ))
    }
}
