//! Emulators of CoMagic's two APIs, over real HTTP on 127.0.0.1, for tests, `etl run --sandbox`
//! and `etl emulate`: the Data API v2.0 ([`dataapi`]) and the legacy REST API v1 ([`legacy`]).

pub mod data;
pub mod dataapi;
pub mod legacy;

#[cfg(test)]
mod tests;

pub use data::{DEMO_PHONE_WITHOUT_CALLS, calls_demo, calls_for_orders, first_orders};
pub use dataapi::{
    Call, CommTag, DataApiConfig, DataApiEmulator, LoggedRequest, RpcFault, RpcFaultRule,
    SALE_TAG_ID, SALE_TAG_NAME, Sale, Stats,
};
pub use legacy::{
    LegacyConfig, LegacyData, LegacyEmulator, LegacyRequest, LegacyStats, legacy_demo,
};
