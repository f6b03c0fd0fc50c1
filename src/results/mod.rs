//! The reports this tool writes, the results file first: the audit record of a run. One line
//! per row, written and flushed as the row finishes, so a killed run leaves a valid file of
//! every finished row.

mod error;
mod file;
mod invalid;
mod record;
mod write_behind;
mod writer;

pub use error::OutputError;
pub use file::{
    OutputTarget, ReportFile, ReportMode, RunLock, is_confirm_results, partial_path, promote,
    staged_path,
};
pub use invalid::FirstInvalid;
pub use record::{Personal, RESULTS_HEADER, ReportRecord, ResultRecord, escape_formula};
pub use writer::{LineWriter, ReportWriter};
