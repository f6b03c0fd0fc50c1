//! The reports this tool writes, the results file first: the audit record of a run. One line
//! per row, written and flushed as the row finishes, so a killed run leaves a valid file of
//! every finished row.

mod error;
mod file;
mod invalid;
mod record;
mod report;
mod write_behind;
mod writer;

pub(crate) use error::OutputError;
pub use file::{OutputTarget, ReportMode};
use file::{ReportFile, RunLock};
pub(crate) use invalid::FirstInvalid;
pub(crate) use record::Personal;
pub use record::{RESULTS_HEADER, ReportRecord, ResultRecord, escape_formula};
pub(crate) use report::Report;
pub(crate) use writer::LineWriter;
pub use writer::ReportWriter;
