//! Masking of secrets in every output.
