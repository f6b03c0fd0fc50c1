//! The integration tests: one test binary (as ripgrep's `tests/integration`), a module per
//! area, sharing the helpers of [`common`] (the workdir, runs of the real binary, the in-process
//! simulator and one loopback fake server).

mod common;

mod cli_habits;
mod confirm;
mod conflicts;
mod credentials;
mod docs_examples;
mod hostile_input;
mod hostile_service;
mod input_handling;
mod input_streams;
mod listing;
mod long_lines;
mod manifest;
mod messages;
mod nightly;
mod properties;
mod rate_recovery;
mod refusals;
mod report_workbook;
mod results_file;
mod resume;
mod resume_files;
mod retries;
mod run_driver;
mod secrets;
mod shell_completion;
mod simulator_cli;
mod simulator_customers;
mod staging;
mod status;
mod template;
mod throttling;
mod validate;
