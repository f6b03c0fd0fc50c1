use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    mca_attest::main_with(mca_attest::cli::Cli::parse())
}
