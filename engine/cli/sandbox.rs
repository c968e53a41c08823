//! The one table of emulated systems, for `etl run --sandbox` (every system with its demo data)
//! and `etl emulate SYSTEM` (one system, optionally with generated bulk data). Compiled only
//! with the `sandbox` feature: connectors know nothing of emulators, this table is the only
//! place that starts them.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use clap::ValueEnum;
use emulators::bitrix24::{Emulator, EmulatorConfig, Portal};
use emulators::comagic::{
    DataApiConfig, DataApiEmulator, LegacyEmulator, calls_demo, calls_for_orders, legacy_demo,
};
use emulators::orders::{Order, OrdersConfig, OrdersEmulator, orders_bulk, orders_demo};
use emulators::otmechalka::OtmechalkaEmulator;

/// An emulated system, as named on the command line.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum System {
    /// A Bitrix24 portal (incoming webhook) with the demo data of seed 001 and the reports.
    Bitrix24,
    /// otmechalka.com with the seed's catalogue.
    Otmechalka,
    /// The orders API, the CoMagic Data API (calls matching the orders) and the legacy API.
    Comagic,
    /// The orders API alone.
    Orders,
}

/// Size and pace of the emulated data; [`Scale::default`] is the demo data of the sandbox.
#[derive(Clone)]
pub struct Scale {
    /// Generated orders (0: the dozen demo orders).
    pub orders: usize,
    /// Distinct phones of the generated orders.
    pub phones: usize,
    /// Calls in the Data API (at least the ones the orders need; 0 with 0 orders: the demo calls).
    pub calls: usize,
    /// Percent of ordering phones that never called.
    pub missing_pct: u64,
    /// Seed of the generators.
    pub seed: u64,
    /// Orders per page of the orders API.
    pub page_size: usize,
    /// Data API points per minute and per day, and the length of its "minute".
    pub minute_limit: u32,
    pub day_limit: u32,
    pub minute_window: Duration,
    /// Latency added to every request of the orders and Data API emulators (and of Bitrix24's
    /// when its data is generated).
    pub latency: Duration,
    /// Generated Bitrix24 contacts (0: the demo portal) and won/other deals among them.
    pub contacts: usize,
    pub deals: usize,
}

impl Default for Scale {
    fn default() -> Self {
        let data_api = DataApiConfig::default();
        Self {
            orders: 0,
            phones: 5000,
            calls: 0,
            missing_pct: 10,
            seed: 1,
            page_size: OrdersConfig::default().page_size,
            minute_limit: data_api.minute_limit,
            day_limit: data_api.day_limit,
            minute_window: data_api.minute_window,
            latency: Duration::ZERO,
            contacts: 0,
            deals: 0,
        }
    }
}

/// Emulators started for one system: the environment a pipeline needs to reach them, and what
/// keeps them serving (dropping it stops them).
pub struct Running {
    pub vars: Vec<(String, String)>,
    _guards: Vec<Box<dyn Any + Send>>,
}

type Started = Pin<Box<dyn Future<Output = Result<Running, String>> + Send>>;

/// One row of the table.
struct Row {
    system: System,
    /// Whether `--sandbox` starts it.
    in_sandbox: bool,
    start: fn(Scale) -> Started,
}

/// The table. The orders API is not started on its own by `--sandbox`: the CoMagic row starts
/// it, since its calls are made to match the orders.
const SYSTEMS: &[Row] = &[
    Row {
        system: System::Bitrix24,
        in_sandbox: true,
        start: |s| Box::pin(bitrix24(s)),
    },
    Row {
        system: System::Otmechalka,
        in_sandbox: true,
        start: |_| Box::pin(otmechalka()),
    },
    Row {
        system: System::Comagic,
        in_sandbox: true,
        start: |s| Box::pin(comagic(s)),
    },
    Row {
        system: System::Orders,
        in_sandbox: false,
        start: |s| Box::pin(orders(s)),
    },
];

/// Starts one system.
pub async fn start(system: System, scale: Scale) -> Result<Running, String> {
    let row = SYSTEMS
        .iter()
        .find(|r| r.system == system)
        .expect("every system has a row");
    (row.start)(scale).await
}

/// Starts every sandbox system with its demo data; the environment overrides of all of them.
pub async fn start_all() -> Result<(Vec<(String, String)>, Vec<Running>), String> {
    let mut vars = Vec::new();
    let mut running = Vec::new();
    for row in SYSTEMS.iter().filter(|r| r.in_sandbox) {
        let name = row.system.to_possible_value().expect("not skipped");
        let started = (row.start)(Scale::default())
            .await
            .map_err(|e| format!("cannot start the {} sandbox: {e}", name.get_name()))?;
        vars.extend(started.vars.iter().cloned());
        running.push(started);
    }
    Ok((vars, running))
}

fn var(name: &str, value: impl Into<String>) -> (String, String) {
    (name.to_string(), value.into())
}

async fn bitrix24(scale: Scale) -> Result<Running, String> {
    let (config, portal) = if scale.contacts == 0 {
        (EmulatorConfig::default(), Portal::demo())
    } else {
        // The benchmarks' portal: generated contacts and deals, standard limits, latency.
        let mut portal = Portal::bulk_contacts(scale.contacts);
        portal.add_bulk_deals(scale.deals, scale.seed, true);
        let config = EmulatorConfig {
            latency: scale.latency,
            ..EmulatorConfig::default()
        };
        (config, portal)
    };
    let emu = Emulator::start(config, portal)
        .await
        .map_err(|e| e.to_string())?;
    // The webhook for pipelines, and the installed application for business-process actions.
    let mut vars = vec![var("B24_WEBHOOK_URL", emu.webhook_url())];
    vars.extend(emu.app_vars().into_iter().map(|(k, v)| var(k, v)));
    Ok(Running {
        vars,
        _guards: vec![Box::new(emu)],
    })
}

async fn otmechalka() -> Result<Running, String> {
    let emu = OtmechalkaEmulator::start(Default::default()).map_err(|e| e.to_string())?;
    Ok(Running {
        vars: vec![
            var("OTMECHALKA_URL", emu.url()),
            var("OTMECHALKA_TOKEN", emu.token()),
        ],
        _guards: vec![Box::new(emu)],
    })
}

fn orders_of(scale: &Scale) -> Vec<Order> {
    if scale.orders == 0 {
        orders_demo()
    } else {
        orders_bulk(scale.orders, scale.phones, scale.seed)
    }
}

fn start_orders(scale: &Scale, orders: Vec<Order>) -> Result<Running, String> {
    let config = OrdersConfig {
        page_size: scale.page_size,
        latency: scale.latency,
        ..Default::default()
    };
    let emu = OrdersEmulator::start(config, orders).map_err(|e| e.to_string())?;
    Ok(Running {
        vars: vec![
            var("ORDERS_API_URL", emu.url()),
            var("ORDERS_API_TOKEN", emu.token()),
        ],
        _guards: vec![Box::new(emu)],
    })
}

async fn orders(scale: Scale) -> Result<Running, String> {
    start_orders(&scale, orders_of(&scale))
}

async fn comagic(scale: Scale) -> Result<Running, String> {
    let orders = orders_of(&scale);
    let calls = if scale.orders == 0 && scale.calls == 0 {
        calls_demo(&orders)
    } else {
        calls_for_orders(&orders, scale.calls, scale.missing_pct, scale.seed)
    };
    let mut running = start_orders(&scale, orders)?;
    let n_calls = calls.len();
    let config = DataApiConfig {
        minute_limit: scale.minute_limit,
        day_limit: scale.day_limit,
        minute_window: scale.minute_window,
        latency: scale.latency,
        ..Default::default()
    };
    let api = DataApiEmulator::start(config, calls).map_err(|e| e.to_string())?;
    let today = chrono::Local::now().date_naive();
    let legacy = LegacyEmulator::start(Default::default(), legacy_demo(today, 60))
        .map_err(|e| e.to_string())?;
    running.vars.extend([
        var("COMAGIC_DATA_API_URL", api.url()),
        var("COMAGIC_ACCESS_TOKEN", api.token()),
        var(
            "COMAGIC_STATS_URL",
            format!("http://{}/_emulator/stats", api.addr()),
        ),
        var("COMAGIC_API_URL", legacy.url()),
        var("COMAGIC_LOGIN", legacy.config().login.clone()),
        var("COMAGIC_PASSWORD", legacy.config().password.clone()),
        var("EMULATED_CALLS", n_calls.to_string()),
    ]);
    running._guards.push(Box::new(api));
    running._guards.push(Box::new(legacy));
    Ok(running)
}
