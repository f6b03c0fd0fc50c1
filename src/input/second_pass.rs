//! Reading the rows a second time. Whether a row may be sent depends on every other row of
//! its tenant (two signers for one tenant send neither), so the rows are read once to learn
//! that and once more to check and send them. A regular file is simply opened again
//! ([`InputReader::second_reader`]); standard
//! input, a pipe or a FIFO can be read only once, so its rows are kept in a temporary file
//! (deleted when dropped) as they are read the first time, and read back from there.

use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};

use csv::ByteRecord;

use super::{ColumnMap, InputError, InputReader, RawRow};
use crate::domain::RowNumber;

/// The rows of a stream kept on disk for their second reading, each as a CSV record of its
/// own: its row number, its structural problem (if any), then its cells as read.
pub(crate) struct RowSpool {
    file: csv::Writer<File>,
    /// Where each kept record is assembled, reused.
    scratch: ByteRecord,
    /// The reader's column map and path, for the rows read back.
    columns: ColumnMap,
    path: std::path::PathBuf,
}

impl RowSpool {
    /// A new spool for the rows of `reader`, in the system's temporary directory.
    pub fn new(reader: &InputReader) -> Result<Self, InputError> {
        let file = tempfile::tempfile().map_err(|source| InputError::Read {
            path: reader.path().to_path_buf(),
            source: csv::Error::from(source),
        })?;
        Ok(RowSpool {
            file: csv::WriterBuilder::new()
                .flexible(true)
                .has_headers(false)
                .buffer_capacity(256 * 1024)
                .from_writer(file),
            scratch: ByteRecord::new(),
            columns: reader.columns().clone(),
            path: reader.path().to_path_buf(),
        })
    }

    fn error(&self, source: impl Into<csv::Error>) -> InputError {
        InputError::Read {
            path: self.path.clone(),
            source: source.into(),
        }
    }

    /// Keeps `raw` for the second reading.
    pub(crate) fn push(&mut self, raw: &RawRow) -> Result<(), InputError> {
        let record = &mut self.scratch;
        record.clear();
        record.push_field(raw.row.0.to_string().as_bytes());
        match &raw.problem {
            Some(problem) => record.push_field(format!("!{problem}").as_bytes()),
            None => record.push_field(b""),
        }
        record.extend(raw.record.iter());
        let written = self.file.write_byte_record(record);
        written.map_err(|e| self.error(e))
    }

    /// Hands every kept row to `f`, in the order they were kept, until it returns false;
    /// lent from one buffer, as [`InputReader::for_each_row`] lends the rows it reads.
    pub(crate) fn for_each_row(
        mut self,
        mut f: impl FnMut(&RawRow) -> bool,
    ) -> Result<(), InputError> {
        self.file.flush().map_err(|e| self.error(e))?;
        let mut file = self.file.get_ref().try_clone().map_err(|e| self.error(e))?;
        file.seek(SeekFrom::Start(0)).map_err(|e| self.error(e))?;
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .has_headers(false)
            .from_reader(BufReader::with_capacity(256 * 1024, file));
        let mut kept = ByteRecord::new();
        let mut raw = RawRow {
            row: RowNumber(0),
            problem: None,
            record: ByteRecord::new(),
            columns: self.columns.clone(),
        };
        while reader
            .read_byte_record(&mut kept)
            .map_err(|e| self.error(e))?
        {
            let row = kept
                .get(0)
                .and_then(|r| std::str::from_utf8(r).ok())
                .and_then(|r| r.parse::<u64>().ok())
                .ok_or_else(|| {
                    self.error(std::io::Error::other(
                        "the row spool holds a damaged record",
                    ))
                })?;
            raw.row = RowNumber(row);
            raw.problem = kept
                .get(1)
                .and_then(|p| p.strip_prefix(b"!"))
                .map(|p| String::from_utf8_lossy(p).into_owned());
            raw.record.clear();
            raw.record.extend(kept.iter().skip(2));
            if !f(&raw) {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::{Column, InputOptions};
    use proptest::prelude::*;
    use std::io::Write;

    fn reader_of(text: &[u8]) -> (tempfile::NamedTempFile, InputReader) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text).unwrap();
        let options = InputOptions {
            delimiter: None,
            required: vec![Column::TenantId],
            ..InputOptions::default()
        };
        let r = InputReader::open(f.path(), &options).unwrap();
        (f, r)
    }

    proptest! {
        /// Whatever the cells hold (quotes, separators, line breaks, bytes that are not
        /// UTF-8, empty cells), a spooled row reads back as it was read.
        #[test]
        fn spooled_rows_read_back_as_they_were(
            rows in proptest::collection::vec(
                proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..12), 1..5),
                0..20,
            ),
            problems in proptest::collection::vec(proptest::option::of(".{0,20}"), 20),
        ) {
            let (_f, reader) = reader_of(b"tenant_id\n");
            let mut spool = RowSpool::new(&reader).unwrap();
            let mut originals = Vec::new();
            for (i, cells) in rows.iter().enumerate() {
                let mut record = ByteRecord::new();
                for cell in cells {
                    record.push_field(cell);
                }
                let raw = RawRow {
                    row: RowNumber(i as u64 * 3 + 1),
                    problem: problems[i].clone(),
                    record,
                    columns: reader.columns().clone(),
                };
                spool.push(&raw).unwrap();
                originals.push(raw);
            }
            let mut back = Vec::new();
            spool.for_each_row(|raw| { back.push(raw.clone()); true }).unwrap();
            prop_assert_eq!(back.len(), originals.len());
            for (a, b) in originals.iter().zip(&back) {
                prop_assert_eq!(a.row, b.row);
                prop_assert_eq!(&a.problem, &b.problem);
                prop_assert_eq!(a.record.iter().collect::<Vec<_>>(), b.record.iter().collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn a_second_reader_starts_again_at_the_first_row() {
        let (_f, mut r) = reader_of(b"tenant_id;x\n1;a\n2;b\n");
        assert_eq!(r.next_row().unwrap().unwrap().row, RowNumber(1));
        let mut again = r.second_reader().unwrap().expect("a regular file");
        assert_eq!(again.delimiter(), b';');
        let rows: Vec<_> = std::iter::from_fn(|| again.next_row())
            .map(|x| x.unwrap().row)
            .collect();
        assert_eq!(rows, [RowNumber(1), RowNumber(2)]);
    }
}
