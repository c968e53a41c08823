//! bitrix24 connector.

pub mod emulator;
