//! Why a report could not be opened, written or put in place.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error(
        "results file '{path}' already exists and is not empty: it is the audit record of an earlier run. Pass --resume to continue it, or choose another file with -o"
    )]
    Exists { path: PathBuf },
    #[error(
        "'{path}' is the results file of a confirm run (an audit record): it is never replaced by another command's report; choose another file with -o"
    )]
    AuditRecord { path: PathBuf },
    #[error(
        "another run is using '{path}' (it holds the file's lock): nothing was sent. Wait for that run to finish, or choose another file with -o"
    )]
    Busy { path: PathBuf },
    #[error("'{path}' is a directory: give a file name with -o")]
    Directory { path: PathBuf },
    #[error("cannot create '{path}': {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot write '{path}': {source}")]
    Write { path: String, source: io::Error },
    #[error("cannot write the manifest beside '{path}': {source}")]
    Manifest { path: PathBuf, source: io::Error },
    #[error("the run completed, but '{from}' could not replace '{to}': {source}")]
    Promote {
        from: PathBuf,
        to: PathBuf,
        source: io::Error,
    },
}
