//! One data record of the input, and the cells the tool reads from it.

use csv::ByteRecord;

use super::{Column, ColumnMap};
use crate::domain::RowNumber;

/// The known cells of one record, as text, before validation (borrowed from the record).
#[derive(Debug, Clone, Copy, Default)]
pub struct RawFields<'a> {
    pub tenant_id: &'a str,
    pub first_name: &'a str,
    pub last_name: &'a str,
    pub email: &'a str,
    pub phone_number: &'a str,
    pub date_agreed: &'a str,
}

/// One data record of the input.
#[derive(Debug, Clone)]
pub struct RawRow {
    pub row: RowNumber,
    /// A structural problem (wrong field count, bad UTF-8, oversized record) that makes the
    /// row invalid whatever its values.
    pub problem: Option<String>,
    /// The whole record as read, every column.
    pub record: ByteRecord,
    pub(super) columns: ColumnMap,
}

impl RawRow {
    fn cell(&self, column: Column) -> &[u8] {
        self.columns
            .get(column)
            .and_then(|p| self.record.get(p))
            .unwrap_or_default()
    }

    /// The known cells as text. A cell that is not valid UTF-8 reads as empty: the row's
    /// `problem` says so.
    pub fn fields(&self) -> RawFields<'_> {
        // The record's cells lie one after the other in one buffer: checked as UTF-8 in one
        // pass, far cheaper than cell by cell. Only a record that fails is checked per cell.
        let whole = std::str::from_utf8(self.record.as_slice()).ok();
        let text = |c| match whole {
            Some(whole) => self
                .columns
                .get(c)
                .and_then(|p| self.record.range(p))
                .and_then(|r| whole.get(r))
                .unwrap_or_default(),
            None => std::str::from_utf8(self.cell(c)).unwrap_or_default(),
        };
        RawFields {
            tenant_id: text(Column::TenantId),
            first_name: text(Column::FirstName),
            last_name: text(Column::LastName),
            email: text(Column::Email),
            phone_number: text(Column::PhoneNumber),
            date_agreed: text(Column::DateAgreed),
        }
    }

    /// A cell for showing in a report: bad UTF-8 replaced, cut at 1 KiB so a huge cell cannot
    /// bloat the report.
    pub fn cell_for_display(&self, column: Column) -> String {
        let bytes = self.cell(column);
        let cut = &bytes[..bytes.len().min(1024)];
        let mut text = String::from_utf8_lossy(cut).into_owned();
        if cut.len() < bytes.len() {
            text.push('…');
        }
        text
    }
}
