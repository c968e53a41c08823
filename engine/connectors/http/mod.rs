//! Generic HTTP: the orders API emulator (seed 003) and the plumbing the emulators share.
pub mod emulator_kit;
pub mod orders_emulator;
