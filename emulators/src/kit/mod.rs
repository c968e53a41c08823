//! What every emulator is built on: one server handle ([`ServerThread`]: 127.0.0.1:0, `url()`,
//! a request counter, stops on drop) and one fault mechanism ([`Faults`], a queue of
//! [`FaultRule`]s), plus the answers HTTP services share ([`json_error`], [`html_error`],
//! [`check_bearer`]) and [`respond`], which applies latency and transport faults to a request.
//!
//! An emulator runs on a dedicated OS thread with its own single-threaded tokio runtime, so it keeps
//! answering while the test that started it blocks (for example on `std::process::Command::output`
//! running the real `etl` binary), and it can be started from sync and async code alike.

mod faults;
mod http;
mod server;

pub use faults::{Fault, FaultRule, Faults, Scope};
pub use http::{check_bearer, html_error, json_error, respond};
pub use server::{Conn, KillableIo, KillableListener, ServerThread, serve, until_interrupted};

/// A reqwest client for tests. reqwest is built with `rustls-no-provider`, so even a plain-HTTP
/// client panics on `build()` until a rustls crypto provider is installed; install ring once.
#[cfg(test)]
pub(crate) fn test_http_client(timeout: std::time::Duration) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .expect("reqwest client")
}
