//! mca-attest: confirm, in bulk and on the record, that Microsoft CSP customers accepted the
//! Microsoft Customer Agreement.
//!
//! The crate reads like the job: [`input`] → [`validation`] → [`api`] → [`pipeline`] (with
//! [`rate`] and [`retry`]) → [`results`]; the [`run`] driver owns what every run shares (its
//! files and lock, resume, signals, the exit code, the summary and manifest); one module per
//! subcommand under [`commands`]; [`reconcile`] decides a customer's state; and the Partner
//! Center [`simulator`] on its own.

pub(crate) mod api;
pub mod cli;
pub mod commands;
pub mod config;
pub(crate) mod console;
pub mod domain;
pub(crate) mod error;
pub(crate) mod files;
pub(crate) mod fingerprint;
pub mod input;
pub(crate) mod logging;
pub(crate) mod manifest;
pub(crate) mod pipeline;
pub mod progress;
pub mod rate;
pub(crate) mod reconcile;
pub mod results;
pub mod resume;
pub(crate) mod retry;
pub(crate) mod run;
pub(crate) mod signals;
pub mod simulator;
pub(crate) mod summary;
pub(crate) mod tally;
pub mod validation;

use std::process::ExitCode;

use error::Exit;

/// Runs the command line to completion and maps the outcome to the contract's exit code.
pub fn main_with(cli: cli::Cli) -> ExitCode {
    logging::init(cli.log_format, cli.quiet, cli.verbose);
    console::init(cli.log_format, cli.quiet);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            console::say(
                console::Kind::Error,
                &format!("error: cannot start the async runtime: {e}"),
            );
            return Exit::Aborted.into();
        }
    };
    // The command runs as a task on the runtime's workers, not on this thread: a run's loop
    // (starting rows, reaping finished ones) then wakes on the thread its workers run on, where
    // `block_on`'s future would have to be woken across threads (a futex call and a context
    // switch) for every row.
    let outcome = runtime.block_on(runtime.spawn(commands::run(cli)));
    let outcome = outcome.unwrap_or_else(|e| Err(error::AppError::Internal(e)));
    match outcome {
        Ok(exit) => exit.into(),
        Err(e) => {
            console::say(console::Kind::Error, &format!("error: {e}"));
            e.exit().into()
        }
    }
}

/// Parses the command line and runs it. A command line that cannot be parsed is shown as clap
/// shows it (usage, exit 2), as one JSON line when `--log-format json` was asked for.
pub fn main_from_args() -> ExitCode {
    use clap::Parser;
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    match cli::Cli::try_parse_from(&args) {
        Ok(cli) => main_with(cli),
        Err(e) if e.use_stderr() && console::json_requested(&args) => {
            console::init(cli::LogFormat::Json, false);
            console::say(console::Kind::Error, e.to_string().trim_end());
            Exit::Usage.into()
        }
        Err(e) => {
            let _ = e.print();
            if e.use_stderr() {
                Exit::Usage.into()
            } else {
                Exit::Success.into()
            }
        }
    }
}
