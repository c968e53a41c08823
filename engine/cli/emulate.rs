//! `etl emulate SYSTEM`: one system of the sandbox table as a process, for benchmarks and manual
//! tries. Prints `NAME=value` lines (the environment a pipeline needs) and `ready`, then serves
//! until Ctrl-C or SIGTERM. Hidden from `--help`: it is a development tool.

use std::io::Write as _;
use std::time::Duration;

use clap::Args;

use super::sandbox::{self, Scale, System};

#[derive(Args)]
pub struct EmulateArgs {
    /// What to emulate.
    #[arg(value_enum)]
    pub system: System,
    /// Generated orders (0: the dozen demo orders).
    #[arg(long, default_value_t = 0)]
    pub orders: usize,
    /// Distinct phones of the generated orders.
    #[arg(long, default_value_t = 5000)]
    pub phones: usize,
    /// Calls in the Data API (at least the ones the orders need).
    #[arg(long, default_value_t = 0)]
    pub calls: usize,
    /// Percent of ordering phones that never called.
    #[arg(long, default_value_t = 10)]
    pub missing_pct: u64,
    /// Seed of the generators.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Orders per page of the orders API.
    #[arg(long, default_value_t = 100)]
    pub page_size: usize,
    /// Data API points per minute.
    #[arg(long, default_value_t = 10_000)]
    pub minute_limit: u32,
    /// Data API points per day.
    #[arg(long, default_value_t = 100_000)]
    pub day_limit: u32,
    /// Length of the Data API's "minute" window in seconds.
    #[arg(long, default_value_t = 60.0)]
    pub minute_secs: f64,
    /// Latency added to every request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Bitrix24: generated contacts instead of the demo portal (benchmarks).
    #[arg(long, default_value_t = 0)]
    pub contacts: usize,
    /// Bitrix24: generated deals, with product rows, linked to the generated contacts.
    #[arg(long, default_value_t = 0)]
    pub deals: usize,
}

pub async fn emulate(a: EmulateArgs) -> u8 {
    let scale = Scale {
        orders: a.orders,
        phones: a.phones,
        calls: a.calls,
        missing_pct: a.missing_pct,
        seed: a.seed,
        page_size: a.page_size,
        minute_limit: a.minute_limit,
        day_limit: a.day_limit,
        minute_window: Duration::from_secs_f64(a.minute_secs.max(0.1)),
        latency: Duration::from_millis(a.latency_ms),
        contacts: a.contacts,
        deals: a.deals,
    };
    let running = match sandbox::start(a.system, scale).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return super::EXIT_ABORTED;
        }
    };
    let mut out = std::io::stdout().lock();
    for (k, v) in &running.vars {
        let _ = writeln!(out, "{k}={v}");
    }
    let _ = writeln!(out, "ready");
    let _ = out.flush();
    drop(out);
    emulators::kit::until_interrupted().await;
    drop(running);
    super::EXIT_OK
}
