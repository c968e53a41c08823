//! Generic HTTP: a JSON source for any paged API (the CRM orders API of seed 003 among them),
//! and the shared client plumbing other connectors use.

pub mod client;
mod source;
pub mod transport;

use crate::config::Registry;

pub fn register(r: &mut Registry) {
    r.source::<source::HttpSourceConfig>("http");
}
