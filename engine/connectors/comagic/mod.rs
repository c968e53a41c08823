//! CoMagic (UIS, CallGear): the Data API v2.0 (JSON-RPC; reports and sale tags) and the legacy
//! REST API v1 (session key; the statistics methods of seed 004), and the
//! components seeds 003 and 004 need. One file per client and per component, named after its
//! `type:`:
//! - `data_api` (connection and client), `report` (source), `phone_store` (source: seed 003's
//!   store), `find_communication` (step: the call an order came from), `tag_sales` (sink: the
//!   sale on it); `report_reader` and `calls` are what they share;
//! - `legacy_api` (connection and client), `legacy_stats` (source: seed 004).

mod calls;
pub mod data_api;
pub mod find_communication;
pub mod legacy_api;
pub mod legacy_stats;
pub mod phone_store;
pub mod report;
pub mod report_reader;
pub mod tag_sales;

use crate::config::Registry;

pub fn register(r: &mut Registry) {
    r.connection::<data_api::DataApiConnection>("comagic.data_api");
    r.source::<report::ReportSourceConfig>("comagic.report");
    r.source::<phone_store::PhoneStoreConfig>("comagic.phone_store");
    r.step::<find_communication::FindCommunicationConfig>("comagic.find_communication");
    r.sink::<tag_sales::TagSalesConfig>("comagic.tag_sales");
    r.connection::<legacy_api::LegacyConnection>("comagic.legacy_api");
    r.source::<legacy_stats::LegacyStatsConfig>("comagic.legacy_stats");
}
