//! comagic connector.
