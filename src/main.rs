use std::process::ExitCode;

fn main() -> ExitCode {
    mca_attest::main_from_args()
}
