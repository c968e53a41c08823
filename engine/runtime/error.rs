//! The one vocabulary of connector failures. Every connector (Bitrix24, otmechalka, CoMagic, the
//! `http` source, e-mail) says how a request ended in these three words, and the runtime knows
//! what each means for the record and the run:
//! - [`ConnectorError::Rejected`]: the service refused this request for its data; the record
//!   fails with the service's message and the run goes on;
//! - [`ConnectorError::Unavailable`]: the service cannot be used (unreachable, down after
//!   retries, wrong credentials); the run aborts, `etl run` exits 1;
//! - [`ConnectorError::Unknown`]: a write was sent and its outcome is unknown (timeout, dropped
//!   connection, 5xx); it may have happened, so it must be checked before it is repeated. A
//!   connector that cannot check ends the run with it, like `Unavailable`.
//!
//! `R` is what a rejection carries: a message by default, or the service's own error (an HTTP
//! status, a Bitrix24 error code, a JSON-RPC error) for connectors that look into it.

use std::fmt::Display;

use super::Fatal;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectorError<R: Display = String> {
    /// The service refused this request (this record): the record fails, the run goes on.
    #[error("{0}")]
    Rejected(R),
    /// The service cannot be used: the run aborts (exit 1).
    #[error("{0}")]
    Unavailable(String),
    /// A write was sent but its outcome is unknown: check before repeating it.
    #[error("outcome unknown: {0}")]
    Unknown(String),
}

impl<R: Display> ConnectorError<R> {
    /// This failure as the end of the run: `<system> unavailable: <what>`, exit 1.
    pub fn fatal(&self, system: &str) -> Fatal {
        Fatal::unavailable(system, self.to_string())
    }

    /// The same, naming what was being done: `<system> unavailable: <what>: <failure>`.
    pub fn fatal_in(&self, system: &str, what: &str) -> Fatal {
        Fatal::unavailable(system, format!("{what}: {self}"))
    }

    /// A write's failure for one record: a rejection fails the record (`Ok(reason)`); anything
    /// else ends the run.
    pub fn for_record(self, system: &str) -> Result<String, Fatal> {
        match self {
            ConnectorError::Rejected(r) => Ok(r.to_string()),
            other => Err(other.fatal(system)),
        }
    }

    /// The same failure with the context a caller adds (the method, the object).
    pub fn context(self, what: impl Display) -> ConnectorError<R> {
        match self {
            ConnectorError::Unavailable(m) => ConnectorError::Unavailable(format!("{what}: {m}")),
            ConnectorError::Unknown(m) => ConnectorError::Unknown(format!("{what}: {m}")),
            rejected => rejected,
        }
    }
}
