//! One folder per external system. Each exposes `register(&mut Registry)`.
pub mod bitrix24;
pub mod comagic;
pub mod http;
pub mod otmechalka;
