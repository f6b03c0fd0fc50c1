//! One module per subcommand, each with a `run` that takes its checked configuration; this
//! module dispatches. What runs share lives below, in `run`.

pub mod confirm;
pub mod customers;
pub mod report;
pub mod status;
pub mod template;
pub mod validate;

use clap::CommandFactory;

use crate::cli::{Cli, Command};
use crate::config::{ConfirmConfig, CustomersConfig, StatusConfig, ValidateConfig};
use crate::error::{AppError, Exit};
use crate::files::print_stdout;

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> Result<Exit, AppError> {
    let progress = !(cli.no_progress || cli.quiet);
    match cli.command {
        Command::Confirm(args) => {
            let mut config = ConfirmConfig::try_from(&args)?;
            config.progress = progress;
            confirm::run(config).await
        }
        Command::Validate(args) => validate::run(ValidateConfig::try_from(&args)?),
        Command::Status(args) => {
            let mut config = StatusConfig::try_from(&args)?;
            config.progress = progress;
            status::run(config).await
        }
        Command::Template(args) => template::run(args).await,
        Command::Customers(args) => customers::run(CustomersConfig::try_from(&args)?).await,
        Command::Report(args) => report::run(&crate::config::ReportConfig::try_from(&args)?),
        Command::Simulator(args) => {
            crate::simulator::run(args)
                .await
                .map_err(|e| AppError::Usage(format!("the simulator failed: {e}")))?;
            Ok(Exit::Success)
        }
        Command::Man => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut page)
                .map_err(|e| AppError::Aborted(format!("cannot render the manual page: {e}")))?;
            print_stdout(&page).map_err(stdout_error)?;
            Ok(Exit::Success)
        }
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "mca-attest", &mut script);
            print_stdout(&script).map_err(stdout_error)?;
            Ok(Exit::Success)
        }
    }
}

/// The error for standard output that cannot be written.
pub fn stdout_error(e: std::io::Error) -> AppError {
    AppError::Aborted(format!("cannot write to standard output: {e}"))
}
