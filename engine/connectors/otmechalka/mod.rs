//! otmechalka connector.
pub mod emulator;
