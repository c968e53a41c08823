//! otmechalka.com (seed 001): clients and tickets (абонементы) kept by their origin id, the
//! Bitrix24 ID. Writes are idempotent by construction: look up by origin id, then create or
//! update; a create whose outcome is unknown is looked up again before anything is resent.

mod client;
mod sinks;

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::config::Registry;
use crate::config::component::ConnectionConfig;

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
    /// Seconds before a request is abandoned.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Retries of reads and of requests that never reached the service, with backoff.
    #[serde(default = "default_retries")]
    pub retries: usize,
}

fn default_timeout() -> u64 {
    30
}
fn default_retries() -> usize {
    3
}

impl ConnectionConfig for OtmechalkaConnection {
    fn build(self) -> Result<Arc<dyn Any + Send + Sync>, String> {
        crate::secrets::register(&self.token);
        let url =
            url::Url::parse(self.url.trim()).map_err(|e| format!("invalid otmechalka URL: {e}"))?;
        Ok(Arc::new(Otmechalka::new(
            url.as_str().trim_end_matches('/'),
            &self.token,
            Duration::from_secs(self.timeout_secs),
            self.retries,
        )))
    }
}
