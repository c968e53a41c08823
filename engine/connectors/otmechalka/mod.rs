//! otmechalka connector.
