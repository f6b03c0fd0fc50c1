//! Writing a report: its lines, each through the `csv` crate's writer with the formula guard,
//! flushed and synced as the report's kind needs; and the side output of raw input records.

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::file::{stage, staged_path};
use super::write_behind::WriteBehind;
use super::{OutputError, OutputTarget, ReportFile, ReportMode, ReportRecord, escape_formula};

/// Lines between two syncs to disk, and the longest time between them.
const SYNC_EVERY_LINES: u32 = 256;
const SYNC_EVERY: Duration = Duration::from_secs(1);
/// Lines of a bulk report (written without a flush per line) between two syncs behind the
/// writer: about 10 MB of `validate`'s report.
const WRITE_BEHIND_LINES: u32 = 65_536;

/// Writes report lines, each flushed to the operating system as soon as it is written and
/// synced to disk every so often (regular files only: a device or pipe has nothing to sync),
/// so a crash of the machine loses little and a crash of the process loses nothing that was
/// written.
pub struct ReportWriter {
    target: OutputTarget,
    /// Quotes the cells where CSV needs it, and buffers the lines until a flush.
    csv: csv::Writer<Box<dyn Write + Send>>,
    sync: Option<File>,
    unsynced: u32,
    last_sync: Instant,
    redact: bool,
    /// The sync thread of a bulk report, started at its first [`WRITE_BEHIND_LINES`] lines.
    behind: Option<WriteBehind>,
}

impl std::fmt::Debug for ReportWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReportWriter")
            .field("target", &self.target)
            .finish()
    }
}

impl ReportWriter {
    /// The writer of a report going to `out` (`sync`: its file, for a regular file); a report
    /// that starts anew gets `R`'s header.
    pub(super) fn start<R: ReportRecord>(
        target: OutputTarget,
        out: Box<dyn Write + Send>,
        sync: Option<File>,
        starts_anew: bool,
    ) -> Result<Self, OutputError> {
        let mut writer = ReportWriter {
            csv: csv::WriterBuilder::new()
                .buffer_capacity(64 * 1024)
                .from_writer(out),
            target,
            sync,
            unsynced: 0,
            last_sync: Instant::now(),
            redact: false,
            behind: None,
        };
        if starts_anew {
            let header: Vec<Cow<'_, str>> = R::header().iter().map(|h| Cow::Borrowed(*h)).collect();
            writer.write_cells(&header)?;
            writer.flush()?;
        }
        Ok(writer)
    }

    /// Opens the target and writes the header for `R` (for offline reports and tests; a run
    /// goes through [`ReportFile`] to hold the lock for its whole length).
    pub fn create<R: ReportRecord>(
        target: OutputTarget,
        mode: ReportMode,
    ) -> Result<Self, OutputError> {
        ReportFile::open(&target, mode)?.into_writer::<R>()
    }

    /// Masks signers' emails and phone numbers in every record written from now on.
    pub(crate) fn redact(mut self) -> Self {
        self.redact = true;
        self
    }

    fn cells_of<'r, R: ReportRecord>(&self, record: &'r R) -> Vec<Cow<'r, str>> {
        let mut cells = record.cells();
        if self.redact {
            for (i, kind) in R::personal_cells() {
                if let Some(cell) = cells.get_mut(*i) {
                    *cell = Cow::Owned(kind.mask(cell));
                }
            }
        }
        cells
    }

    /// Writes and flushes one record.
    pub fn write<R: ReportRecord>(&mut self, record: &R) -> Result<(), OutputError> {
        self.write_unflushed(record)?;
        self.flush_written()
    }

    /// Writes one record of a run; [`Self::flush_written`] then hands it to the system.
    pub(crate) fn write_unflushed<R: ReportRecord>(
        &mut self,
        record: &R,
    ) -> Result<(), OutputError> {
        let cells = self.cells_of(record);
        self.write_cells(&cells)?;
        self.unsynced = self.unsynced.saturating_add(1);
        Ok(())
    }

    /// Flushes the records written so far, and syncs them to disk every so many lines or
    /// seconds.
    pub(crate) fn flush_written(&mut self) -> Result<(), OutputError> {
        self.flush()?;
        if self.unsynced >= SYNC_EVERY_LINES || self.last_sync.elapsed() >= SYNC_EVERY {
            self.sync()?;
        }
        Ok(())
    }

    /// Writes one record without flushing (for offline reports written in bulk).
    pub(crate) fn write_buffered<R: ReportRecord>(
        &mut self,
        record: &R,
    ) -> Result<(), OutputError> {
        let cells = self.cells_of(record);
        self.write_cells(&cells)?;
        self.written_in_bulk()
    }

    /// Counts a line written in bulk; every [`WRITE_BEHIND_LINES`] lines, hands what was
    /// written to the system and has it synced behind the writer (see [`WriteBehind`]).
    fn written_in_bulk(&mut self) -> Result<(), OutputError> {
        self.unsynced = self.unsynced.saturating_add(1);
        if self.unsynced < WRITE_BEHIND_LINES {
            return Ok(());
        }
        self.unsynced = 0;
        let Some(file) = &self.sync else {
            return Ok(());
        };
        if self.behind.is_none() {
            self.behind = Some(WriteBehind::start(file).map_err(|e| self.error(e))?);
        }
        self.flush()?;
        if let Some(behind) = &self.behind {
            behind.ask();
        }
        Ok(())
    }

    /// Writes the line of `cells` (buffered), each guarded against formulas and quoted where
    /// CSV needs it.
    fn write_cells(&mut self, cells: &[Cow<'_, str>]) -> Result<(), OutputError> {
        for cell in cells {
            // The guard and the text are one field: CSV quoting is decided on both.
            self.csv
                .write_field(escape_formula(cell).as_bytes())
                .map_err(|e| self.error(csv_io(e)))?;
        }
        // No fields: ends the line of the fields written.
        self.csv
            .write_record(None::<&[u8]>)
            .map_err(|e| self.error(csv_io(e)))
    }

    pub(crate) fn flush(&mut self) -> Result<(), OutputError> {
        self.csv.flush().map_err(|e| self.error(e))
    }

    fn sync(&mut self) -> Result<(), OutputError> {
        if let Some(file) = &self.sync {
            file.sync_data().map_err(|e| self.error(e))?;
        }
        self.unsynced = 0;
        self.last_sync = Instant::now();
        Ok(())
    }

    fn error(&self, source: io::Error) -> OutputError {
        OutputError::Write {
            path: self.target.to_string(),
            source,
        }
    }

    /// Flushes everything and, for files, puts it on disk.
    pub fn finish(mut self) -> Result<(), OutputError> {
        self.flush()?;
        if let Some(behind) = self.behind.take() {
            behind.finish().map_err(|e| self.error(e))?;
        }
        self.sync()
    }
}

/// Writes a side output of raw input records (`status --emit-confirm-input`) under the
/// input's header: owner-only, each line flushed as written, owned by the run's writer task.
pub(crate) struct LineWriter {
    path: PathBuf,
    csv: csv::Writer<File>,
}

impl LineWriter {
    /// Opens the side output `path` and writes `header` into a file that starts anew. A
    /// regular file is staged like a derived report: written in its partial file (continued
    /// when `append`, a resumed run), which [`promote`] puts under `path` when the run
    /// completes. A device or pipe is written as a stream.
    pub fn open(
        path: &Path,
        header: &csv::ByteRecord,
        delimiter: u8,
        append: bool,
    ) -> Result<Self, OutputError> {
        let create_err = |source| OutputError::Create {
            path: path.to_path_buf(),
            source,
        };
        let file = match staged_path(path) {
            None => OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(create_err)?,
            Some(partial) => {
                let file = stage(path, &partial, append)?;
                if !append {
                    file.set_len(0).map_err(create_err)?;
                }
                file
            }
        };
        let starts_anew = file.metadata().map_err(create_err)?.len() == 0;
        let mut writer = LineWriter {
            path: path.to_path_buf(),
            csv: csv::WriterBuilder::new()
                .delimiter(delimiter)
                .from_writer(file),
        };
        if starts_anew {
            writer.write(header)?;
        }
        Ok(writer)
    }

    pub fn write(&mut self, record: &csv::ByteRecord) -> Result<(), OutputError> {
        let err = |source| OutputError::Write {
            path: self.path.display().to_string(),
            source,
        };
        self.csv
            .write_byte_record(record)
            .map_err(|e| err(csv_io(e)))?;
        self.csv.flush().map_err(err)
    }

    pub fn finish(mut self) -> Result<(), OutputError> {
        self.csv.flush().map_err(|source| OutputError::Write {
            path: self.path.display().to_string(),
            source,
        })
    }
}

fn csv_io(e: csv::Error) -> io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(io) => io,
        other => io::Error::other(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{RowNumber, RowStatus};
    use crate::results::{RESULTS_HEADER, ResultRecord};
    use chrono::DateTime;
    use uuid::Uuid;

    #[test]
    fn records_are_written_in_contract_order_with_escaping() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let mut w = ReportWriter::create::<ResultRecord>(
            OutputTarget::File(path.clone()),
            ReportMode::Audit,
        )
        .unwrap();
        let rec = ResultRecord {
            row: Some(RowNumber(2)),
            first_name: "=cmd".into(),
            status: Some(RowStatus::Invalid),
            message: "email: bad, \"quoted\"".into(),
            ..Default::default()
        };
        w.write(&rec).unwrap();
        w.finish().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next().unwrap(), RESULTS_HEADER.join(","));
        assert_eq!(
            lines.next().unwrap(),
            "2,,'=cmd,,,,,invalid,,,,\"email: bad, \"\"quoted\"\"\",0,,,,"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }

    /// The CSV a spreadsheet reads, modelled apart from any CSV library: a cell is quoted
    /// when it holds the delimiter, a quote or a line break, its quotes doubled; lines end
    /// with `\n`.
    fn model_line(cells: &[Cow<'_, str>]) -> String {
        let mut line = cells
            .iter()
            .map(|cell| {
                let cell = escape_formula(cell);
                if cell.contains([',', '"', '\r', '\n']) {
                    format!("\"{}\"", cell.replace('"', "\"\""))
                } else {
                    cell.into_owned()
                }
            })
            .collect::<Vec<_>>()
            .join(",");
        line.push('\n');
        line
    }

    /// Text a cell may hold: formula starts, CSV's special bytes, quotes, non-ASCII.
    fn text() -> impl proptest::strategy::Strategy<Value = String> {
        "[=+\\-@\t\r\n'\",;a é€]{0,6}"
    }

    fn record() -> impl proptest::strategy::Strategy<Value = ResultRecord> {
        use proptest::prelude::*;
        (
            (
                proptest::option::of(1u64..1_000_000),
                text(),
                text(),
                text(),
                text(),
                text(),
            ),
            (
                proptest::option::of(prop::sample::select(RowStatus::ALL.to_vec())),
                proptest::option::of(100u16..600),
                text(),
                0u32..20,
                proptest::option::of(any::<u128>()),
                proptest::option::of(0i64..4_000_000_000),
            ),
        )
            .prop_map(
                |(
                    (row, tenant, first, last, email, phone),
                    (status, http, message, attempts, id, at),
                )| {
                    ResultRecord {
                        row: row.map(RowNumber),
                        customer_tenant_id: tenant,
                        first_name: first,
                        last_name: last,
                        email,
                        phone_number: phone,
                        date_agreed: "2025-01-02T00:00:00Z".into(),
                        status,
                        http_status: http,
                        error_code: String::new(),
                        error_name: String::new(),
                        message,
                        attempts,
                        template_id: String::new(),
                        request_id: id.map(Uuid::from_u128),
                        correlation_id: None,
                        finished_at: at.and_then(|s| DateTime::from_timestamp(s, 0)),
                    }
                },
            )
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            failure_persistence: None,
            ..proptest::prelude::ProptestConfig::with_cases(256)
        })]

        /// Every way of writing a record (flushed, a run's batch, in bulk), redacted or not,
        /// gives the header and then exactly the model's line per record.
        #[test]
        fn a_results_file_is_the_modelled_csv_byte_for_byte(
            records in proptest::collection::vec(record(), 0..8),
            redact: bool,
            how in 0u8..3,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("r.csv");
            let mut w = ReportWriter::create::<ResultRecord>(
                OutputTarget::File(path.clone()),
                ReportMode::Audit,
            )
            .unwrap();
            if redact {
                w = w.redact();
            }
            let header: Vec<Cow<'_, str>> =
                RESULTS_HEADER.iter().map(|h| Cow::Borrowed(*h)).collect();
            let mut expected = model_line(&header);
            for record in &records {
                match how {
                    0 => w.write(record).unwrap(),
                    1 => w.write_unflushed(record).unwrap(),
                    _ => w.write_buffered(record).unwrap(),
                }
                let mut cells = record.cells();
                if redact {
                    for (i, kind) in ResultRecord::personal_cells() {
                        cells[*i] = Cow::Owned(kind.mask(&cells[*i]));
                    }
                }
                expected.push_str(&model_line(&cells));
            }
            if how == 1 {
                w.flush_written().unwrap();
            }
            w.finish().unwrap();
            proptest::prop_assert_eq!(std::fs::read_to_string(&path).unwrap(), expected);
        }
    }
}
