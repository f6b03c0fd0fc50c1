//! One module per subcommand, each with a `run` that takes its checked configuration; this
//! module dispatches. What runs share lives below, in `run`.

pub(crate) mod confirm;
pub(crate) mod customers;
mod manual;
pub(crate) mod report;
pub mod simulator;
pub(crate) mod status;
pub(crate) mod template;
pub mod validate;

use clap::CommandFactory;

use crate::cli::{Cli, Command};
use crate::config::{ConfirmConfig, CustomersConfig, ReportConfig, StatusConfig, ValidateConfig};
use crate::error::{AppError, Exit};
use crate::files::print_stdout;

/// Runs the parsed command line.
pub(crate) async fn run(cli: Cli) -> Result<Exit, AppError> {
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
        Command::Report(args) => report::run(&ReportConfig::try_from(&args)?),
        Command::Simulator(args) => simulator::run(&args).await,
        Command::Man => {
            let page = manual::render()
                .map_err(|e| AppError::Aborted(format!("cannot render the manual page: {e}")))?;
            print_stdout(&page).map_err(stdout_error)?;
            Ok(Exit::Success)
        }
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "mca-attest", &mut script);
            if shell == clap_complete::Shell::Bash {
                script = bash_subcommands_fixed(&script);
            }
            print_stdout(&script).map_err(stdout_error)?;
            Ok(Exit::Success)
        }
    }
}

/// The error for standard output that cannot be written.
pub(crate) fn stdout_error(e: std::io::Error) -> AppError {
    AppError::Io {
        what: "cannot write to standard output".into(),
        source: e,
    }
}

/// clap_complete's bash script names the state after a subcommand `mca__attest__subcmd__X`
/// but matches it against `mca__subcmd__attest__subcmd__X` when the binary's name holds a
/// hyphen, so nothing completes after the subcommand (clap-rs/clap#6386, still so in
/// clap_complete 4.6.12). Renaming the match labels makes the two agree.
fn bash_subcommands_fixed(script: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(script)
        .replace("mca__subcmd__attest", "mca__attest")
        .into_bytes()
}
