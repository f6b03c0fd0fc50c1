//! The structural problems that make a record invalid whatever its values: cut short for its
//! length, a field count unlike the header's, a cell that is not UTF-8 (with the fix, when the
//! file seems to be Windows-1252).

use std::path::PathBuf;

use csv::ByteRecord;

use super::sniff::SNIFF_BYTES;
use super::{Column, ColumnMap, Cut, Encoding, ForeignByte, MAX_RECORD_BYTES};
use crate::domain::RowNumber;

/// What a reader knows of its file to tell a record's structural problem.
#[derive(Debug)]
pub(super) struct StructureCheck {
    pub(super) path: PathBuf,
    pub(super) header_len: usize,
    pub(super) columns: ColumnMap,
    pub(super) encoding: Encoding,
    /// Whether the file's head is ASCII only: a Windows-1252 byte after UTF-8 letters is
    /// damage or a mix, not a Windows-1252 file.
    pub(super) head_ascii: bool,
    /// A reader of the first of two readings (see [`super::InputReader::second_reader`]): the
    /// second reading warns about what both find, once.
    pub(super) quiet: bool,
    /// Whether a row's problem has already said that the file seems to be Windows-1252.
    pub(super) told_encoding: bool,
}

impl StructureCheck {
    /// A structural problem of `record` that makes the row invalid whatever its values.
    pub(super) fn problem(
        &mut self,
        record: &ByteRecord,
        row: RowNumber,
        cut: Option<Cut>,
    ) -> Option<String> {
        if let Some(cut) = cut {
            // Name the cell that makes it so large: the one the user has to look at. Only the
            // record's first MAX_RECORD_BYTES were read, so its sizes are lower bounds.
            let (field, largest) = self.largest_cell(record);
            Some(format!(
                "{field}: {} is longer than {} KiB (it starts at byte {} of the file; this cell holds {largest} bytes and more): an unbalanced quote?",
                row.named(),
                MAX_RECORD_BYTES / 1024,
                cut.input_start
            ))
        } else if record.as_slice().len() > MAX_RECORD_BYTES {
            // Cannot happen (a record's cells are no longer than the record), kept so that no
            // oversized record passes should the reading change.
            let (field, largest) = self.largest_cell(record);
            Some(format!(
                "{field}: the cell is {largest} bytes long (the record {} bytes, more than {} KiB): an unbalanced quote?",
                record.as_slice().len(),
                MAX_RECORD_BYTES / 1024
            ))
        } else if record.len() != self.header_len {
            let line_break = record.iter().any(|cell| cell.contains(&b'\n'));
            Some(format!(
                "the record has {} fields, the header has {}{}",
                record.len(),
                self.header_len,
                if line_break {
                    " (a cell holds a line break: an unbalanced quote may have swallowed the lines after it)"
                } else {
                    ""
                }
            ))
        } else if self.encoding == Encoding::Windows1252
            || std::str::from_utf8(record.as_slice()).is_ok()
        {
            // A Windows-1252 record is decoded after this: every byte of it is text.
            None
        } else {
            let (column, byte) = Column::ALL.into_iter().find_map(|c| {
                let cell = self.columns.get(c).and_then(|p| record.get(p))?;
                ForeignByte::first_in(cell, true).map(|byte| (c, byte))
            })?;
            Some(self.not_utf8(column, byte, row))
        }
    }

    /// The problem of a cell that is not UTF-8 in a file whose head is (else opening it would
    /// have failed): after a head of plain ASCII, a Windows-1252 file whose first accented
    /// letter comes late. The first
    /// such row says so in full, on stderr too; the later ones name the fix.
    fn not_utf8(&mut self, column: Column, byte: ForeignByte, row: RowNumber) -> String {
        let name = column.name();
        if byte.in_1252().is_none() || !self.head_ascii {
            return format!("{name}: the cell is not valid UTF-8 ({byte})");
        }
        if self.told_encoding {
            return format!(
                "{name}: the cell is not valid UTF-8 ({byte}): the file seems to be Windows-1252; save it as \"CSV UTF-8 (Comma delimited)\" or pass --encoding windows-1252"
            );
        }
        self.told_encoding = true;
        if !self.quiet {
            tracing::warn!(
                "input file '{}': {} is not UTF-8 ({byte}) though the file's first {} KiB are: the file seems to be Windows-1252, the encoding of Excel's \"CSV (Comma delimited)\", and every row like it is invalid. Save it from Excel with File > Save As > \"CSV UTF-8 (Comma delimited) (*.csv)\", or pass --encoding windows-1252 to read it as such",
                self.path.display(),
                row.named(),
                SNIFF_BYTES / 1024
            );
        }
        format!(
            "{name}: the cell is not valid UTF-8 ({byte}): the file seems to be Windows-1252, the encoding of Excel's \"CSV (Comma delimited)\". Save it from Excel with File > Save As > \"CSV UTF-8 (Comma delimited) (*.csv)\", or pass --encoding windows-1252 to read it as such"
        )
    }

    /// The name of the record's largest cell (its column number if the tool does not read it)
    /// and its length.
    fn largest_cell(&self, record: &ByteRecord) -> (String, usize) {
        let (pos, largest) = record
            .iter()
            .enumerate()
            .max_by_key(|(_, cell)| cell.len())
            .map_or((0, 0), |(i, cell)| (i, cell.len()));
        let field = Column::ALL
            .into_iter()
            .find(|c| self.columns.get(*c) == Some(pos))
            .map_or_else(|| format!("column {}", pos + 1), |c| c.name().to_string());
        (field, largest)
    }
}
