//! The first invalid rows of a run, listed on stderr by `validate` and `confirm` so the first
//! ones need no digging in the report.

use crate::domain::{RowNumber, RowStatus};

use super::ResultRecord;

/// The first invalid rows of a run, with their messages.
#[derive(Debug, Default)]
pub(crate) struct FirstInvalid {
    rows: Vec<(RowNumber, String)>,
}

impl FirstInvalid {
    /// Invalid rows shown on stderr.
    pub(crate) const SHOWN: usize = 10;

    /// Keeps `record` when it is one of the first invalid rows.
    pub(crate) fn note(&mut self, record: &ResultRecord) {
        if record.row_status() == RowStatus::Invalid && self.rows.len() < Self::SHOWN {
            self.rows
                .push((record.row.unwrap_or(RowNumber(0)), record.message.clone()));
        }
    }

    /// The list for stderr, saying how many more of the run's `invalid` rows the report holds;
    /// `None` when no row was noted.
    pub(crate) fn hint(&self, invalid: u64) -> Option<String> {
        if self.rows.is_empty() {
            return None;
        }
        let mut text = String::from("invalid rows (the message names the field and the reason):");
        for (row, message) in &self.rows {
            text.push_str(&format!(
                "\n  {}: {}",
                row.named(),
                crate::api::error::printable(message)
            ));
        }
        let more = invalid.saturating_sub(self.rows.len() as u64);
        if more > 0 {
            text.push_str(&format!("\n  ... and {more} more in the report"));
        }
        Some(text)
    }
}
