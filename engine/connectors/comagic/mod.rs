//! CoMagic (UIS, CallGear): the Data API v2.0 (JSON-RPC; reports and sale tags) and the legacy
//! REST API v1 (session key; the statistics methods of seed 004), and the components seeds 003 and 004 need.

pub mod dataapi;
pub mod legacy;
pub mod phone_store;
pub mod report_source;
pub mod sales;

#[cfg(test)]
mod client_tests;

use crate::config::Registry;

pub fn register(r: &mut Registry) {
    r.connection::<dataapi::DataApiConnection>("comagic.data_api");
    r.source::<report_source::ReportSourceConfig>("comagic.report");
    r.source::<phone_store::PhoneStoreConfig>("comagic.phone_store");
    r.step::<sales::TagSalesConfig>("comagic.tag_sales");
    r.connection::<legacy::LegacyConnection>("comagic.legacy_api");
    r.source::<legacy::LegacyStatsConfig>("comagic.legacy_stats");
}
