//! The transport settings every connection (and the `http` source) shares: the same two keys,
//! with the same meaning, in every `connections:` entry. Flattened into each connection's config
//! (`#[serde(flatten)]`); the defaults are each system's own (Bitrix24 ends requests at 60 s,
//! the legacy CoMagic API is slow), given as the type's parameters so the schema shows them.

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq)]
pub struct Transport<const TIMEOUT_SECS: u64, const RETRIES: usize> {
    /// Seconds before a request is abandoned. A write abandoned this way has an unknown outcome:
    /// it is checked before it is tried again, never repeated blindly.
    #[serde(default = "timeout_secs::<TIMEOUT_SECS>")]
    #[schemars(range(min = 1))]
    pub timeout_secs: u64,
    /// Retries of a request that failed in transport (connection errors, timeouts, 5xx), with
    /// backoff and jitter: reads, and writes that provably never reached the service.
    #[serde(default = "retries::<RETRIES>")]
    pub retries: usize,
}

fn timeout_secs<const N: u64>() -> u64 {
    N
}
fn retries<const N: usize>() -> usize {
    N
}

impl<const T: u64, const R: usize> Default for Transport<T, R> {
    fn default() -> Self {
        Transport {
            timeout_secs: T,
            retries: R,
        }
    }
}

impl<const T: u64, const R: usize> Transport<T, R> {
    /// The request timeout (at least a second: 0 would abandon every request).
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs.max(1))
    }
}
