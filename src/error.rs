//! Errors that end a command, and the exit codes of the contract.

use std::process::ExitCode;

use crate::input::InputError;
use crate::results::OutputError;

/// The contract's exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Every row confirmed, already confirmed, would confirm or valid (duplicates aside).
    Success,
    /// The run finished, and some rows are `invalid` or `failed`.
    RowProblems,
    /// Usage, configuration or input-file error: nothing was sent.
    Usage,
    /// Aborted mid-run: finished rows are recorded.
    Aborted,
    /// Interrupted by a signal.
    Interrupted,
}

impl Exit {
    /// The exit code of a run that stopped for `abort` (if it did) with `problems` rows whose
    /// status makes the run exit 1.
    pub fn of_run(abort: Option<&crate::pipeline::AbortReason>, problems: u64) -> Exit {
        use crate::pipeline::AbortReason;
        match abort {
            Some(AbortReason::Interrupted) => Exit::Interrupted,
            Some(_) => Exit::Aborted,
            None if problems > 0 => Exit::RowProblems,
            None => Exit::Success,
        }
    }

    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::RowProblems => 1,
            Exit::Usage => 2,
            Exit::Aborted => 3,
            Exit::Interrupted => 130,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e.code())
    }
}

/// A command that could not run (exit 2) or had to stop (exit 3).
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A flag or environment value is wrong.
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error(transparent)]
    Credentials(#[from] crate::api::auth::CredentialsError),
    /// The run started and had to stop.
    #[error("{0}")]
    Aborted(String),
}

impl AppError {
    pub fn exit(&self) -> Exit {
        match self {
            AppError::Usage(_) | AppError::Input(_) | AppError::Credentials(_) => Exit::Usage,
            AppError::Output(
                OutputError::Exists { .. }
                | OutputError::AuditRecord { .. }
                | OutputError::Busy { .. }
                | OutputError::Directory { .. }
                | OutputError::Create { .. },
            ) => Exit::Usage,
            AppError::Output(OutputError::Write { .. }) | AppError::Aborted(_) => Exit::Aborted,
        }
    }
}
