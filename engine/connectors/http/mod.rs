//! Generic HTTP: a JSON source for any paged API (the CRM orders API of seed 003 among them),
//! the shared client plumbing other connectors use, and the emulator kit plus the orders API
//! emulator.

pub mod client;
pub mod emulator_kit;
pub mod orders_emulator;
mod source;
pub mod transport;

use crate::config::Registry;

pub fn register(r: &mut Registry) {
    r.source::<source::HttpSourceConfig>("http");
}
