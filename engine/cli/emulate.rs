//! `etl emulate comagic|orders`: the emulators as a process, for benchmarks and manual tries.
//! Prints `NAME=value` lines (the environment a pipeline needs) and `ready`, then serves until
//! Ctrl-C or SIGTERM. Hidden from `--help`: it is a development tool.

use std::io::Write as _;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::connectors::comagic::emulator::{
    DataApiConfig, DataApiEmulator, LegacyEmulator, calls_demo, calls_for_orders, legacy_demo,
};
use crate::connectors::http::orders_emulator::{
    OrdersConfig, OrdersEmulator, orders_bulk, orders_demo,
};

#[derive(Clone, Copy, ValueEnum)]
pub enum System {
    /// The orders API, the CoMagic Data API (calls matching the orders) and the legacy API.
    Comagic,
    /// The orders API alone.
    Orders,
}

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
}

pub async fn emulate(a: EmulateArgs) -> u8 {
    let latency = Duration::from_millis(a.latency_ms);
    let orders = if a.orders == 0 {
        orders_demo()
    } else {
        orders_bulk(a.orders, a.phones, a.seed)
    };
    let mut vars: Vec<(String, String)> = Vec::new();
    let mut guards: Vec<Box<dyn std::any::Any>> = Vec::new();
    let calls = match a.system {
        System::Comagic if a.orders == 0 && a.calls == 0 => Some(calls_demo(&orders)),
        System::Comagic => Some(calls_for_orders(&orders, a.calls, a.missing_pct, a.seed)),
        System::Orders => None,
    };
    let orders_emu = match OrdersEmulator::start(
        OrdersConfig {
            page_size: a.page_size,
            latency,
            ..Default::default()
        },
        orders,
    ) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return super::EXIT_ABORTED;
        }
    };
    vars.push(("ORDERS_API_URL".into(), orders_emu.url()));
    vars.push(("ORDERS_API_TOKEN".into(), orders_emu.token().into()));
    guards.push(Box::new(orders_emu));
    if let Some(calls) = calls {
        let n_calls = calls.len();
        let config = DataApiConfig {
            minute_limit: a.minute_limit,
            day_limit: a.day_limit,
            minute_window: Duration::from_secs_f64(a.minute_secs.max(0.1)),
            latency,
            ..Default::default()
        };
        let started = DataApiEmulator::start(config, calls).and_then(|api| {
            let legacy = LegacyEmulator::start(
                Default::default(),
                legacy_demo(chrono::Local::now().date_naive(), 60),
            )?;
            Ok((api, legacy))
        });
        let (api, legacy) = match started {
            Ok(x) => x,
            Err(e) => {
                eprintln!("error: {e}");
                return super::EXIT_ABORTED;
            }
        };
        vars.push(("COMAGIC_DATA_API_URL".into(), api.url()));
        vars.push(("COMAGIC_ACCESS_TOKEN".into(), api.token().into()));
        vars.push((
            "COMAGIC_STATS_URL".into(),
            format!("http://{}/_emulator/stats", api.addr()),
        ));
        vars.push(("COMAGIC_API_URL".into(), legacy.url()));
        vars.push(("COMAGIC_LOGIN".into(), legacy.config().login.clone()));
        vars.push(("COMAGIC_PASSWORD".into(), legacy.config().password.clone()));
        vars.push(("EMULATED_CALLS".into(), n_calls.to_string()));
        guards.push(Box::new(api));
        guards.push(Box::new(legacy));
    }
    let mut out = std::io::stdout().lock();
    for (k, v) in &vars {
        let _ = writeln!(out, "{k}={v}");
    }
    let _ = writeln!(out, "ready");
    let _ = out.flush();
    drop(out);
    crate::runtime::executor::interrupted().await;
    drop(guards);
    super::EXIT_OK
}
