//! mca-attest: confirm, in bulk and on the record, that Microsoft CSP customers accepted the
//! Microsoft Customer Agreement.
//!
//! The crate reads like the job: [`input`] → [`validation`] → [`api`] → [`pipeline`] (with
//! [`rate`] and [`retry`]) → [`results`]; the [`run`] driver owns what every run shares (its
//! files and lock, resume, signals, the exit code, the summary and manifest); one module per
//! subcommand under [`commands`]; [`reconcile`] decides a customer's state; and the Partner
//! Center [`simulator`] on its own.

pub mod api;
pub mod cli;
pub mod commands;
pub mod config;
pub mod domain;
pub mod error;
pub mod files;
pub mod fingerprint;
pub mod input;
pub mod logging;
pub mod manifest;
pub mod pipeline;
pub mod progress;
pub mod rate;
pub mod reconcile;
pub mod results;
pub mod resume;
pub mod retry;
pub mod run;
pub mod signals;
pub mod simulator;
pub mod summary;
pub mod tally;
pub mod validation;

use std::process::ExitCode;

use error::Exit;

/// Runs the command line to completion and maps the outcome to the contract's exit code.
pub fn main_with(cli: cli::Cli) -> ExitCode {
    logging::init(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return Exit::Aborted.into();
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(exit) => exit.into(),
        Err(e) => {
            eprintln!("error: {e}");
            e.exit().into()
        }
    }
}
