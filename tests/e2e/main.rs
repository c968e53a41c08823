//! End-to-end tests: the real `etl` binary, run as a child process, against files and emulated
//! services on 127.0.0.1 (started in-process by the test).

mod harness;

mod b24;
mod core_run;
mod core_validate;
mod seed001;
mod email;
mod reports;
mod reports_bench;
mod smtp;
mod table;
mod xlsx;
mod xlsx_read;
