//! One folder per external system. Each exposes `register(&mut Registry)`; adding a connector is
//! adding its folder and one line below.

pub mod bitrix24;
pub mod comagic;
pub mod email;
pub mod files;
pub mod http;
pub mod otmechalka;
pub mod transform;
pub mod xlsx;

use std::sync::OnceLock;

use crate::config::Registry;

/// Every component the engine knows.
pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut r = Registry::default();
        transform::register(&mut r);
        files::register(&mut r);
        http::register(&mut r);
        comagic::register(&mut r);
        bitrix24::register(&mut r);
        otmechalka::register(&mut r);
        crate::table::register(&mut r);
        xlsx::register(&mut r);
        email::register(&mut r);
        r
    })
}
