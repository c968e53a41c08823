//! HTTP-level tests.
