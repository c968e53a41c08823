//! CoMagic (UIS, CallGear): the Data API v2.0 (JSON-RPC; reports and sale tags) and the legacy
//! REST API v1 (session key; the statistics methods of seed 004), their emulators, and the
//! components seeds 003 and 004 need. One file per client and per component, named after its
//! `type:`:
//! - `data_api` (connection and client), `report` (source), `phone_store` (source: seed 003's
//!   store), `find_communication` (step: the call an order came from), `tag_sales` (sink: the
//!   sale on it); `report_reader` and `calls` are what they share;
//! - `legacy_api` (connection and client), `legacy_stats` (source: seed 004).

mod calls;
pub mod data_api;
pub mod emulator;
pub mod find_communication;
pub mod legacy_api;
pub mod legacy_stats;
pub mod phone_store;
pub mod report;
pub mod report_reader;
pub mod tag_sales;

#[cfg(test)]
mod client_tests;

use crate::config::Registry;

pub fn register(r: &mut Registry) {
    r.connection::<data_api::DataApiConnection>("comagic.data_api");
    r.source::<report::ReportSourceConfig>("comagic.report");
    r.source::<phone_store::PhoneStoreConfig>("comagic.phone_store");
    r.step::<find_communication::FindCommunicationConfig>("comagic.find_communication");
    r.sink::<tag_sales::TagSalesConfig>("comagic.tag_sales");
    r.connection::<legacy_api::LegacyConnection>("comagic.legacy_api");
    r.source::<legacy_stats::LegacyStatsConfig>("comagic.legacy_stats");
    r.sandbox("comagic", sandbox);
}

/// `etl run --sandbox`: the CRM's orders API with the demo orders, the Data API with calls that
/// match them, and the legacy API with two sites of statistics (all on 127.0.0.1).
fn sandbox() -> crate::config::component::SandboxFuture {
    Box::pin(async {
        use crate::connectors::http::orders_emulator::{OrdersEmulator, orders_demo};
        let orders = orders_demo();
        let calls = emulator::calls_demo(&orders);
        let orders =
            OrdersEmulator::start(Default::default(), orders).map_err(|e| e.to_string())?;
        let api = emulator::DataApiEmulator::start(Default::default(), calls)
            .map_err(|e| e.to_string())?;
        let today = chrono::Local::now().date_naive();
        let legacy =
            emulator::LegacyEmulator::start(Default::default(), emulator::legacy_demo(today, 60))
                .map_err(|e| e.to_string())?;
        let vars = vec![
            ("ORDERS_API_URL".to_string(), orders.url()),
            ("ORDERS_API_TOKEN".to_string(), orders.token().to_string()),
            ("COMAGIC_DATA_API_URL".to_string(), api.url()),
            ("COMAGIC_ACCESS_TOKEN".to_string(), api.token().to_string()),
            ("COMAGIC_API_URL".to_string(), legacy.url()),
            ("COMAGIC_LOGIN".to_string(), legacy.config().login.clone()),
            (
                "COMAGIC_PASSWORD".to_string(),
                legacy.config().password.clone(),
            ),
        ];
        Ok((
            vars,
            Box::new((orders, api, legacy)) as Box<dyn std::any::Any + Send>,
        ))
    })
}
