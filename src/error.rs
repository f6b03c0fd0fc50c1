//! Errors that end a command, and the exit codes of the contract.

use std::process::ExitCode;

use crate::api::ApiError;
use crate::input::InputError;
use crate::pipeline::AbortReason;
use crate::results::OutputError;
use crate::resume::ResumeError;

/// The contract's exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
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
    /// Every row was recorded, but a rotated refresh token could not be saved: the next run
    /// needs a person first, so this wins over `RowProblems`.
    TokenUnsaved,
}

impl Exit {
    /// The exit code of a run that stopped for `abort` (if it did) with `problems` rows whose
    /// status makes the run exit 1.
    pub(crate) fn of_run(abort: Option<&AbortReason>, problems: u64) -> Exit {
        match abort {
            Some(AbortReason::Interrupted) => Exit::Interrupted,
            Some(_) => Exit::Aborted,
            None if problems > 0 => Exit::RowProblems,
            None => Exit::Success,
        }
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::RowProblems => 1,
            Exit::Usage => 2,
            Exit::Aborted => 3,
            Exit::Interrupted => 130,
            Exit::TokenUnsaved => 4,
        }
    }
}

impl Exit {
    /// The exit code once a rotated refresh token could not be saved: 4 for a run that
    /// recorded every row (0 or 1 otherwise); a run that could not start, aborted or was
    /// interrupted keeps its code (2, 3, 130), since its own cause needs fixing first and
    /// `--resume` is its next step either way (the error line about the token is printed all
    /// the same).
    pub(crate) fn with_token_unsaved(self) -> Exit {
        match self {
            Exit::Success | Exit::RowProblems => Exit::TokenUnsaved,
            other => other,
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
pub(crate) enum AppError {
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
    /// The command stopped for a reason a run stops for (refused credentials, a failed
    /// listing).
    #[error(transparent)]
    Stopped(#[from] AbortReason),
    /// Standard output, or a file the command writes, could not be written.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// Partner Center did not give what the command asked for.
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: Box<ApiError>,
    },
    /// The report to resume cannot be read as one.
    #[error(transparent)]
    Resume(#[from] ResumeError),
    /// A bug: the command's task stopped unexpectedly.
    #[error("an internal error stopped the command: {0}")]
    Internal(#[source] tokio::task::JoinError),
}

impl AppError {
    pub(crate) fn exit(&self) -> Exit {
        match self {
            AppError::Usage(_)
            | AppError::Input(_)
            | AppError::Credentials(_)
            | AppError::Resume(_) => Exit::Usage,
            AppError::Output(
                OutputError::Exists { .. }
                | OutputError::AuditRecord { .. }
                | OutputError::Busy { .. }
                | OutputError::Directory { .. }
                | OutputError::Create { .. },
            ) => Exit::Usage,
            AppError::Output(
                OutputError::Write { .. }
                | OutputError::Manifest { .. }
                | OutputError::Promote { .. },
            )
            | AppError::Aborted(_)
            | AppError::Io { .. }
            | AppError::Api { .. }
            | AppError::Internal(_) => Exit::Aborted,
            AppError::Stopped(reason) => Exit::of_run(Some(reason), 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every way a run can end, with and without an unsaved token: 4 replaces exactly 0 and 1.
    #[test]
    fn an_unsaved_token_turns_a_finished_run_into_4() {
        let aborts = [
            None,
            Some(AbortReason::Interrupted),
            Some(AbortReason::credentials(
                crate::api::ApiError::transport(crate::api::ApiErrorKind::Credentials, "refused"),
                "the token",
            )),
            Some(AbortReason::from(OutputError::Write {
                path: "r.csv".into(),
                source: std::io::Error::other("disk full"),
            })),
            Some(AbortReason::Systemic("down".into())),
        ];
        for abort in &aborts {
            for problems in [0u64, 1, 7] {
                let exit = Exit::of_run(abort.as_ref(), problems);
                let unsaved = exit.with_token_unsaved();
                match abort {
                    None => assert_eq!(unsaved.code(), 4, "{abort:?} {problems}"),
                    Some(_) => assert_eq!(unsaved, exit, "{abort:?} {problems}"),
                }
            }
        }
        for kept in [Exit::Usage, Exit::Aborted, Exit::Interrupted] {
            assert_eq!(kept.with_token_unsaved(), kept);
        }
        assert_eq!(Exit::TokenUnsaved.with_token_unsaved().code(), 4);
    }

    /// The typed errors print as the strings they replaced did, and exit as they did: a
    /// refused token or a failed listing 3, an interrupted run 130, an unreadable report to
    /// resume 2, what could not be written or fetched 3.
    #[test]
    fn typed_errors_keep_their_message_and_exit_code() {
        use crate::api::ApiErrorKind;
        let refused = ApiError::transport(ApiErrorKind::Credentials, "refused");
        let io = || std::io::Error::other("broken pipe");
        let cases: Vec<(AppError, String, Exit)> = vec![
            (
                AbortReason::credentials(refused.clone(), "the token").into(),
                crate::pipeline::credentials_message(&refused, "the token"),
                Exit::Aborted,
            ),
            (
                AbortReason::Listing(std::sync::Arc::new(io())).into(),
                "broken pipe".into(),
                Exit::Aborted,
            ),
            (
                AbortReason::Interrupted.into(),
                "interrupted".into(),
                Exit::Interrupted,
            ),
            (
                AppError::Io {
                    what: "cannot write to standard output".into(),
                    source: io(),
                },
                "cannot write to standard output: broken pipe".into(),
                Exit::Aborted,
            ),
            (
                AppError::Api {
                    what: "could not fetch the template".into(),
                    source: Box::new(ApiError::transport(ApiErrorKind::Timeout, "no answer")),
                },
                format!(
                    "could not fetch the template: {}",
                    ApiError::transport(ApiErrorKind::Timeout, "no answer")
                ),
                Exit::Aborted,
            ),
            (
                ResumeError::Redacted {
                    path: "r.csv".into(),
                }
                .into(),
                ResumeError::Redacted {
                    path: "r.csv".into(),
                }
                .to_string(),
                Exit::Usage,
            ),
        ];
        for (error, message, exit) in cases {
            assert_eq!(error.to_string(), message);
            assert_eq!(error.exit(), exit, "{error}");
        }
    }
}
