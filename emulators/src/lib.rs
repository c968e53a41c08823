//! Test doubles of the services b24-etl talks to, each a real HTTP server on 127.0.0.1:0 with
//! demo data: a Bitrix24 portal, otmechalka.com, the CoMagic Data API v2 and legacy API v1, and
//! a CRM's orders API. They share one [`kit`]: the server handle ([`kit::ServerThread`]) and the
//! fault queue ([`kit::Faults`]).
//!
//! The crate depends on nothing in the engine: an emulator stands for the remote service, which
//! has its own rules (phone normalisation included), so it keeps its own copy of them.
//! `etl` uses it only behind its `sandbox` feature (`etl run --sandbox`, `etl emulate`) and in
//! tests.

pub mod bitrix24;
pub mod comagic;
pub mod kit;
pub mod orders;
pub mod otmechalka;
