//! End-to-end tests: the real `etl` binary, run as a child process, against files and emulated
//! services on 127.0.0.1 (started in-process by the test).

mod harness;

mod b24;
mod b24_clock;
mod b24_lookup;
mod bench;
mod bp_actions;
mod bp_bench;
mod bp_domain;
mod bp_serve;
mod bp_steps;
mod comagic_client;
mod comagic_sales;
mod comagic_serve;
mod comagic_stats;
mod core_run;
mod core_validate;
mod editor;
mod email;
mod faults;
mod fleet;
mod ops;
mod reports;
mod reports_bench;
mod seed001;
mod seed001_batches;
mod serve;
mod smtp;
mod smtp_send;
mod smtp_sink;
mod state_backends;
mod table;
mod xlsx;
mod xlsx_read;
