//! Streaming CSV input: opens and sniffs the file, maps the header onto the columns the tool
//! knows (with the contract's aliases), and yields one [`RawRow`] per data record without
//! holding more than that record in memory: records longer than [`MAX_RECORD_BYTES`] are cut
//! short on the way in (see [`RecordLimit`]) and come out as invalid rows. A file that is not
//! UTF-8 is refused unless `--encoding windows-1252` says how to read it (see [`Encoding`]).

mod encoding;
mod fingerprinting;
mod record_limit;
mod second_pass;

use std::fs::File;
use std::io::{Cursor, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use csv::ByteRecord;

use crate::domain::RowNumber;
use crate::progress::ReadPosition;

pub use encoding::{Encoding, ForeignByte};
pub use fingerprinting::{Fingerprinting, fingerprint_input};
pub use record_limit::{Cut, RecordLimit};
pub use second_pass::RowSpool;

use crate::fingerprint::{Hashing, InputFingerprint};

/// INPUT `-`: the rows come from standard input.
pub const STDIN: &str = "-";

/// Whether `path` is INPUT `-` (standard input).
pub fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == STDIN
}

/// Whether INPUT is standard input or a pipe the shell made for it (`-`, `/dev/stdin`,
/// `/dev/fd/63` from `<(…)`, `/proc/self/fd/N`): no report can be written beside it. A regular
/// file under `/dev` (say `/dev/shm/wave.csv`) is a file like any other.
pub fn is_shell_stream(path: &Path) -> bool {
    is_stdin(path)
        || ((path.starts_with("/dev") || path.starts_with("/proc"))
            && !std::fs::metadata(path).is_ok_and(|m| m.is_file()))
}

/// A column the tool reads; every other column of the input is carried along but ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    TenantId,
    FirstName,
    LastName,
    Email,
    PhoneNumber,
    DateAgreed,
}

impl Column {
    pub const ALL: [Column; 6] = [
        Column::TenantId,
        Column::FirstName,
        Column::LastName,
        Column::Email,
        Column::PhoneNumber,
        Column::DateAgreed,
    ];

    /// The contract's name of the column.
    pub fn name(self) -> &'static str {
        match self {
            Column::TenantId => "customer_tenant_id",
            Column::FirstName => "first_name",
            Column::LastName => "last_name",
            Column::Email => "email",
            Column::PhoneNumber => "phone_number",
            Column::DateAgreed => "date_agreed",
        }
    }

    /// Accepted header spellings, already normalised (see [`normalise_header`]).
    fn aliases(self) -> &'static [&'static str] {
        match self {
            Column::TenantId => &["customertenantid", "tenantid", "customerid", "microsoftid"],
            Column::FirstName => &["firstname"],
            Column::LastName => &["lastname"],
            Column::Email => &["email", "emailaddress"],
            Column::PhoneNumber => &["phonenumber", "phone"],
            Column::DateAgreed => &["dateagreed"],
        }
    }

    fn alias_hint(self) -> &'static str {
        match self {
            Column::TenantId => " (also accepted: tenant_id, customer_id, microsoft_id)",
            Column::Email => " (also accepted: email_address)",
            Column::PhoneNumber => " (also accepted: phone)",
            _ => "",
        }
    }
}

/// Header names match case-insensitively, ignoring spaces, `_` and `-`.
pub fn normalise_header(raw: &str) -> String {
    raw.trim_start_matches('\u{feff}')
        .chars()
        .filter(|c| !matches!(c, ' ' | '_' | '-') && !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Problems with the input file as a whole: nothing is sent when one of these occurs.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot open input file '{path}': {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("input file '{path}' is a directory, not a CSV file")]
    Directory { path: PathBuf },
    #[error(
        "input file '{path}' is empty: expected a header line such as 'customer_tenant_id,first_name,last_name,email,phone_number,date_agreed'"
    )]
    Empty { path: PathBuf },
    #[error(
        "input file '{path}' is UTF-16 text (Excel's \"Unicode text\"): save it as \"CSV UTF-8 (comma delimited)\" and try again"
    )]
    Utf16 { path: PathBuf },
    #[error(
        "input file '{path}' is not a CSV text file (it contains binary data near byte {offset})"
    )]
    Binary { path: PathBuf, offset: usize },
    #[error(
        "input file '{path}' is an Excel workbook, not a CSV file: in Excel choose File > Save As > \"CSV UTF-8 (Comma delimited) (*.csv)\" and give that file"
    )]
    Workbook { path: PathBuf },
    #[error(
        "input file '{path}' is not UTF-8: it reads as Windows-1252, the encoding of Excel's \"CSV (Comma delimited)\" (line {line} holds {byte}). Either save it from Excel with File > Save As > \"CSV UTF-8 (Comma delimited) (*.csv)\", or pass --encoding windows-1252 to read it as such (the results are UTF-8 either way)"
    )]
    Windows1252 {
        path: PathBuf,
        line: u64,
        byte: ForeignByte,
    },
    #[error(
        "input file '{path}' is not UTF-8 (line {line} holds {byte}, which is not text in UTF-8 or in Windows-1252): save it from Excel with File > Save As > \"CSV UTF-8 (Comma delimited) (*.csv)\" and give that file"
    )]
    NotUtf8 {
        path: PathBuf,
        line: u64,
        byte: ForeignByte,
    },
    #[error(
        "input file '{path}': the header line is not valid UTF-8: save the file as \"CSV UTF-8 (Comma delimited)\", or pass --encoding windows-1252 if it is Excel's \"CSV (Comma delimited)\""
    )]
    HeaderNotUtf8 { path: PathBuf },
    #[error(
        "input file '{path}': the header line is longer than {limit_kib} KiB: an unbalanced quote, or not a CSV file?"
    )]
    HeaderTooLong { path: PathBuf, limit_kib: usize },
    #[error(
        "input file '{path}' has no '{column}' column{hint}; its header is: {header}{delimiter_hint}"
    )]
    MissingColumn {
        path: PathBuf,
        column: &'static str,
        hint: &'static str,
        header: String,
        delimiter_hint: &'static str,
    },
    #[error("input file '{path}': columns '{first}' and '{second}' both name {column}: keep one")]
    AmbiguousColumn {
        path: PathBuf,
        column: &'static str,
        first: String,
        second: String,
    },
    #[error("cannot read input file '{path}': {source}")]
    Read { path: PathBuf, source: csv::Error },
}

/// Where each known column sits in the input's records.
#[derive(Debug, Clone, Default)]
pub struct ColumnMap {
    positions: [Option<usize>; 6],
}

impl ColumnMap {
    pub fn get(&self, column: Column) -> Option<usize> {
        self.positions[column as usize]
    }
}

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
    columns: ColumnMap,
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

/// Records longer than this (in the file, quotes and separators included) are cut short as
/// they are read and rejected without looking at their cells: no real signer row comes near
/// it, and an unbalanced quote or an endless line would otherwise cost as much memory as the
/// rest of the file.
pub const MAX_RECORD_BYTES: usize = 64 * 1024;

/// The header line may be longer: it is read once, and a file may carry thousands of columns
/// the tool does not read.
pub const MAX_HEADER_BYTES: usize = 1024 * 1024;

/// How the input file is to be read.
#[derive(Debug, Clone, Default)]
pub struct InputOptions {
    /// `None`: detected from the header line.
    pub delimiter: Option<u8>,
    /// Columns whose absence is a file-level error.
    pub required: Vec<Column>,
    pub encoding: Encoding,
}

/// A stream read once: its sniffed first bytes, then the rest, hashed as they pass.
type Stream = Hashing<std::io::Chain<Cursor<Vec<u8>>, Box<dyn Read + Send>>>;

/// What the reader reads: a regular file, or a stream that can be read only once (standard
/// input, a pipe, a FIFO), hashed as it is read.
enum Source {
    File(File),
    Stream(Box<Stream>),
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Source::File(f) => f.read(buf),
            Source::Stream(s) => s.read(buf),
        }
    }
}

/// A streaming reader over an input CSV file.
pub struct InputReader {
    path: PathBuf,
    size: u64,
    reader: csv::Reader<RecordLimit<Source>>,
    header: ByteRecord,
    columns: ColumnMap,
    next_row: u64,
    record: ByteRecord,
    /// A row read ahead by [`InputReader::has_rows`].
    pending: Option<RawRow>,
    /// Average bytes per line in the first few KiB, to estimate the row count.
    bytes_per_line: f64,
    delimiter: u8,
    /// Data records whose cells are all empty, skipped.
    empty_rows: u64,
    /// For a stream: its fingerprint, set when the reader reaches its end.
    streamed: Option<Arc<OnceLock<InputFingerprint>>>,
    /// The options it was opened with, the delimiter as detected (for a second reader).
    options: InputOptions,
    encoding: Encoding,
    /// Where a Windows-1252 record is decoded to, reused.
    decoded: ByteRecord,
    /// Whether a row's problem has already said that the file seems to be Windows-1252.
    told_encoding: bool,
    /// A reader of the first of two readings (see [`InputReader::second_reader`]): the
    /// second reading warns about what both find, once.
    quiet: bool,
    /// Whether the file's head is ASCII only: a Windows-1252 byte after UTF-8 letters is
    /// damage or a mix, not a Windows-1252 file.
    head_ascii: bool,
}

impl std::fmt::Debug for InputReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InputReader")
            .field("path", &self.path)
            .field("next_row", &self.next_row)
            .finish()
    }
}

/// The file's first bytes, looked at before it is read as CSV: its kind (text, UTF-16, a
/// workbook), its encoding, its separator. 64 KiB holds the header and hundreds of rows of a
/// real file, so an export in the wrong encoding is told at once, before anything is sent.
const SNIFF_BYTES: usize = 64 * 1024;

impl InputReader {
    /// Opens the file (`-`: standard input), checks that it is CSV text and that the required
    /// columns are present. A regular file is read from its start after the first bytes are
    /// sniffed; a pipe, FIFO or standard input is read once, those bytes first.
    pub fn open(path: &Path, options: &InputOptions) -> Result<Self, InputError> {
        Self::open_as(path, options, false)
    }

    /// [`InputReader::open`]; a `quiet` reader (the first of two readings) leaves its
    /// warnings to the second.
    fn open_as(path: &Path, options: &InputOptions, quiet: bool) -> Result<Self, InputError> {
        let open_err = |source| InputError::Open {
            path: path.to_path_buf(),
            source,
        };
        let (mut inner, size, regular): (Box<dyn Read + Send>, u64, Option<File>) = if is_stdin(
            path,
        ) {
            if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                tracing::info!(
                    "reading CSV rows from standard input: type or paste them, then end with Ctrl-D (Ctrl-Z, Enter on Windows)"
                );
            }
            (Box::new(std::io::stdin()), 0, None)
        } else {
            let file = File::open(path).map_err(open_err)?;
            let meta = file.metadata().map_err(open_err)?;
            if meta.is_dir() {
                return Err(InputError::Directory {
                    path: path.to_path_buf(),
                });
            }
            if meta.is_file() {
                let size = meta.len();
                let reading = file.try_clone().map_err(open_err)?;
                (Box::new(reading), size, Some(file))
            } else {
                (Box::new(file), 0, None)
            }
        };
        let mut head = Vec::with_capacity(SNIFF_BYTES);
        (&mut inner)
            .take(SNIFF_BYTES as u64)
            .read_to_end(&mut head)
            .map_err(open_err)?;
        let complete = head.len() < SNIFF_BYTES;
        let head_ascii = head.is_ascii();
        sniff(path, &head, complete, options.encoding, quiet)?;
        let delimiter = options.delimiter.unwrap_or_else(|| detect_delimiter(&head));
        let bytes_per_line = bytes_per_line(&head);
        let (source, streamed) = match regular {
            Some(mut file) => {
                drop(inner);
                file.seek(SeekFrom::Start(0)).map_err(open_err)?;
                (Source::File(file), None)
            }
            None => (
                Source::Stream(Box::new(Hashing::new(Cursor::new(head).chain(inner)))),
                Some(Arc::new(OnceLock::new())),
            ),
        };
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .has_headers(false)
            .flexible(true)
            .from_reader(RecordLimit::new(source, delimiter));
        let mut header = ByteRecord::new();
        let read_err = |source| InputError::Read {
            path: path.to_path_buf(),
            source,
        };
        if !reader.read_byte_record(&mut header).map_err(read_err)? {
            return Err(InputError::Empty {
                path: path.to_path_buf(),
            });
        }
        let mut decoded = ByteRecord::new();
        if options.encoding == Encoding::Windows1252 {
            // A UTF-8 byte order mark would read as "ï»¿" and hide the first column's name.
            if let Some(first) = header.get(0).and_then(|h| h.strip_prefix(b"\xEF\xBB\xBF")) {
                let mut rest = ByteRecord::new();
                rest.push_field(first);
                rest.extend(header.iter().skip(1));
                header = rest;
            }
            encoding::decode_1252(&mut header, &mut decoded);
        }
        let header_end = reader.position().byte();
        if reader.get_mut().take_cut(header_end).is_some() {
            return Err(InputError::HeaderTooLong {
                path: path.to_path_buf(),
                limit_kib: MAX_HEADER_BYTES / 1024,
            });
        }
        if header.len() == 1 && header.get(0).is_some_and(|h| h.trim_ascii().is_empty()) {
            return Err(InputError::Empty {
                path: path.to_path_buf(),
            });
        }
        let names = header
            .iter()
            .map(|h| std::str::from_utf8(h).map(|s| s.trim_start_matches('\u{feff}').to_string()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| InputError::HeaderNotUtf8 {
                path: path.to_path_buf(),
            })?;
        let columns = map_columns(path, &names, options, delimiter)?;
        Ok(InputReader {
            path: path.to_path_buf(),
            size,
            reader,
            header,
            columns,
            next_row: 1,
            record: ByteRecord::new(),
            pending: None,
            bytes_per_line,
            delimiter,
            empty_rows: 0,
            streamed,
            options: InputOptions {
                delimiter: Some(delimiter),
                ..options.clone()
            },
            encoding: options.encoding,
            decoded,
            told_encoding: false,
            quiet,
            head_ascii,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn columns(&self) -> &ColumnMap {
        &self.columns
    }

    /// The header record as read (BOM included, if the file had one).
    pub fn header(&self) -> &ByteRecord {
        &self.header
    }

    /// The field separator in use (given, or detected from the header line).
    pub fn delimiter(&self) -> u8 {
        self.delimiter
    }

    /// For standard input, a pipe or a FIFO (read only once): where its fingerprint will be
    /// once the reader reaches its end. `None` for a regular file.
    pub fn streamed_fingerprint(&self) -> Option<Arc<OnceLock<InputFingerprint>>> {
        self.streamed.clone()
    }

    /// Data records read so far, the skipped empty ones included (row numbers count them).
    pub fn records_read(&self) -> u64 {
        self.next_row.saturating_sub(1)
    }

    /// Data records whose cells were all empty, skipped so far.
    pub fn empty_rows(&self) -> u64 {
        self.empty_rows
    }

    /// File size in bytes, for estimating progress (0 for a stream).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The number of data rows the file probably holds, from its size and the length of its
    /// first lines (a little over, rather than under).
    pub fn estimated_rows(&self) -> usize {
        ((self.size as f64 / self.bytes_per_line) * 1.05).ceil() as usize
    }

    /// Bytes of the file consumed so far (up to the end of the last record read).
    pub fn position(&self) -> u64 {
        self.reader
            .get_ref()
            .input_position(self.reader.position().byte())
    }

    /// Whether the file has at least one data record (reads it ahead, nothing is lost).
    pub fn has_rows(&mut self) -> Result<bool, InputError> {
        if self.pending.is_none() {
            match self.next_row() {
                None => return Ok(false),
                Some(row) => self.pending = Some(row?),
            }
        }
        Ok(true)
    }

    /// The next data record, `None` at the end of the file. An I/O error ends the file.
    pub fn next_row(&mut self) -> Option<Result<RawRow, InputError>> {
        // The row takes the reader's buffer; a buffer of the same size stays for the next.
        let fresh = ByteRecord::with_capacity(self.record.as_slice().len(), self.record.len());
        let mut row = RawRow {
            row: RowNumber(0),
            problem: None,
            record: std::mem::replace(&mut self.record, fresh),
            columns: ColumnMap::default(),
        };
        match self.next_row_into(&mut row) {
            Ok(true) => Some(Ok(row)),
            Ok(false) => None,
            Err(e) => Some(Err(e)),
        }
    }

    /// Reads the next data record into `out`, reusing its buffers (no allocation per record
    /// once they have grown); the same rows, numbers and problems as [`InputReader::next_row`].
    /// `Ok(false)` at the end of the file. An I/O error ends the file.
    pub fn next_row_into(&mut self, out: &mut RawRow) -> Result<bool, InputError> {
        if let Some(row) = self.pending.take() {
            *out = row;
            return Ok(true);
        }
        loop {
            match self.reader.read_byte_record(&mut out.record) {
                Ok(false) => {
                    self.reached_end();
                    return Ok(false);
                }
                Ok(true) => {}
                Err(e) => {
                    return Err(InputError::Read {
                        path: self.path.clone(),
                        source: e,
                    });
                }
            }
            // Taken for every record, so that cuts stay paired with their records.
            let record_end = self.reader.position().byte();
            let cut = self.reader.get_mut().take_cut(record_end);
            // A line holding nothing at all is not a record (spreadsheets leave them at the end).
            if cut.is_none()
                && out.record.len() == 1
                && out.record.get(0).is_some_and(<[u8]>::is_empty)
            {
                continue;
            }
            let row = RowNumber(self.next_row);
            self.next_row = self.next_row.saturating_add(1);
            // A record whose cells are all empty (spreadsheets leave `,,,,` after the data)
            // keeps its number but is no row to check or send.
            if cut.is_none() && out.record.iter().all(|cell| cell.trim_ascii().is_empty()) {
                self.empty_rows = self.empty_rows.saturating_add(1);
                continue;
            }
            out.row = row;
            out.problem = self.problem(&out.record, row, cut);
            if self.encoding == Encoding::Windows1252 {
                encoding::decode_1252(&mut out.record, &mut self.decoded);
            }
            out.columns = self.columns.clone();
            return Ok(true);
        }
    }

    /// At the end of a stream: its fingerprint, from the bytes it held and the records read.
    fn reached_end(&mut self) {
        if let (Some(slot), Source::Stream(stream)) =
            (&self.streamed, self.reader.get_mut().get_mut())
        {
            let _ = slot.set(InputFingerprint {
                sha256: stream.take_sha256(),
                rows: self.next_row.saturating_sub(1),
            });
        }
    }

    /// Like [`InputReader::for_each_row`], but lends each row to `f` from one buffer that is
    /// reused for the next (clone what must outlive the call).
    pub fn for_each_row_ref(
        &mut self,
        position: &ReadPosition,
        mut f: impl FnMut(&RawRow) -> bool,
    ) -> Result<(), InputError> {
        let mut raw = RawRow {
            row: RowNumber(0),
            problem: None,
            record: ByteRecord::with_capacity(1024, self.header.len().max(1)),
            columns: self.columns.clone(),
        };
        let mut rows = 0u64;
        while self.next_row_into(&mut raw)? {
            rows += 1;
            if rows.is_multiple_of(64) {
                position.update(self.position(), rows);
            }
            if !f(&raw) {
                break;
            }
        }
        position.update(self.position(), rows);
        position.finish(self.empty_rows);
        Ok(())
    }

    /// Hands every remaining row to `f` until it returns false, reporting progress through
    /// `position` (marked finished at the end).
    pub fn for_each_row(
        &mut self,
        position: &ReadPosition,
        mut f: impl FnMut(RawRow) -> bool,
    ) -> Result<(), InputError> {
        let mut rows = 0u64;
        while let Some(next) = self.next_row() {
            let raw = next?;
            rows += 1;
            if rows.is_multiple_of(64) {
                position.update(self.position(), rows);
            }
            if !f(raw) {
                break;
            }
        }
        position.update(self.position(), rows);
        position.finish(self.empty_rows);
        Ok(())
    }

    /// A structural problem of `record` that makes the row invalid whatever its values.
    fn problem(&mut self, record: &ByteRecord, row: RowNumber, cut: Option<Cut>) -> Option<String> {
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
        } else if record.len() != self.header.len() {
            let line_break = record.iter().any(|cell| cell.contains(&b'\n'));
            Some(format!(
                "the record has {} fields, the header has {}{}",
                record.len(),
                self.header.len(),
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

/// The separator of the header line: ',' unless the line holds no comma and does hold ';'
/// (European spreadsheet exports) or tabs. Quoted text is not counted.
fn detect_delimiter(head: &[u8]) -> u8 {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let (mut quoted, mut counts) = (false, [0usize; 3]);
    for b in line {
        match b {
            b'"' => quoted = !quoted,
            b',' if !quoted => counts[0] += 1,
            b';' if !quoted => counts[1] += 1,
            b'\t' if !quoted => counts[2] += 1,
            _ => {}
        }
    }
    match counts {
        [0, s, t] if s > 0 && s >= t => b';',
        [0, _, t] if t > 0 => b'\t',
        _ => b',',
    }
}

fn bytes_per_line(head: &[u8]) -> f64 {
    // Blank lines are not rows: counting them would make rows look short and oversize the
    // duplicate index.
    let (bytes, lines) = head
        .split(|b| *b == b'\n')
        .filter(|line| !line.trim_ascii().is_empty())
        .fold((0usize, 0usize), |(b, n), line| (b + line.len() + 1, n + 1));
    if lines < 2 {
        head.len().max(64) as f64
    } else {
        (bytes as f64 / lines as f64).max(16.0)
    }
}

/// Checks the file's first bytes (`complete`: the whole file) for what is not CSV text the
/// tool can read, with a message that says what to do.
fn sniff(
    path: &Path,
    head: &[u8],
    complete: bool,
    encoding: Encoding,
    quiet: bool,
) -> Result<(), InputError> {
    // An .xlsx workbook is a zip archive; an .xls one an OLE compound file.
    const WORKBOOKS: [&[u8]; 2] = [b"PK\x03\x04", b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1"];
    if WORKBOOKS.iter().any(|magic| head.starts_with(magic)) {
        return Err(InputError::Workbook {
            path: path.to_path_buf(),
        });
    }
    if head.starts_with(&[0xFF, 0xFE]) || head.starts_with(&[0xFE, 0xFF]) {
        return Err(InputError::Utf16 {
            path: path.to_path_buf(),
        });
    }
    // UTF-16 without a BOM: every other byte of ASCII text is zero.
    let zeros = head.iter().filter(|b| **b == 0).count();
    if head.len() >= 4
        && zeros * 3 >= head.len()
        && head.iter().step_by(2).any(|b| *b == 0)
            != head.iter().skip(1).step_by(2).any(|b| *b == 0)
    {
        return Err(InputError::Utf16 {
            path: path.to_path_buf(),
        });
    }
    if let Some(offset) = head.iter().position(|b| *b == 0) {
        return Err(InputError::Binary {
            path: path.to_path_buf(),
            offset,
        });
    }
    let body = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(InputError::Empty {
            path: path.to_path_buf(),
        });
    }
    // Control bytes other than tab/CR/LF/FF do not occur in text exports.
    if let Some(offset) = head
        .iter()
        .position(|b| b.is_ascii_control() && !matches!(b, b'\t' | b'\r' | b'\n' | 0x0c))
    {
        return Err(InputError::Binary {
            path: path.to_path_buf(),
            offset,
        });
    }
    sniff_encoding(path, head, complete, encoding, quiet)
}

/// A file that is not UTF-8 is refused as a whole: read as UTF-8, every accented letter
/// would make its row invalid, and one cell in the wrong encoding is the whole file in it.
/// Excel's "CSV (Comma delimited)" writes Windows-1252 on Western Windows, hence the two
/// fixes the message names.
fn sniff_encoding(
    path: &Path,
    head: &[u8],
    complete: bool,
    encoding: Encoding,
    quiet: bool,
) -> Result<(), InputError> {
    let foreign = ForeignByte::first_in(head, complete);
    match (encoding, foreign) {
        (Encoding::Utf8, Some(byte)) => {
            let line = encoding::line_of(head, byte.offset);
            let path = path.to_path_buf();
            Err(if encoding::reads_as_1252(head) {
                InputError::Windows1252 { path, line, byte }
            } else {
                InputError::NotUtf8 { path, line, byte }
            })
        }
        (Encoding::Windows1252, None) if !head.is_ascii() && !quiet => {
            // Asked for, so done; but UTF-8 read as Windows-1252 turns 'é' into 'Ã©'.
            tracing::warn!(
                "input file '{}' reads as UTF-8, yet --encoding windows-1252 reads it as Windows-1252: if it is UTF-8 (\"CSV UTF-8\"), leave --encoding out, or 'é' becomes 'Ã©'",
                path.display()
            );
            Ok(())
        }
        _ => Ok(()),
    }
}

fn map_columns(
    path: &Path,
    names: &[String],
    options: &InputOptions,
    delimiter: u8,
) -> Result<ColumnMap, InputError> {
    let mut map = ColumnMap::default();
    for (pos, name) in names.iter().enumerate() {
        let norm = normalise_header(name);
        let Some(column) = Column::ALL
            .into_iter()
            .find(|c| c.aliases().contains(&norm.as_str()))
        else {
            continue;
        };
        if let Some(prev) = map.positions[column as usize] {
            return Err(InputError::AmbiguousColumn {
                path: path.to_path_buf(),
                column: column.name(),
                first: names[prev].clone(),
                second: name.clone(),
            });
        }
        map.positions[column as usize] = Some(pos);
    }
    for column in &options.required {
        if map.get(*column).is_none() {
            let header = names.join(&*(delimiter as char).to_string());
            let other = if delimiter == b',' { ';' } else { ',' };
            let delimiter_hint = if names.len() == 1 && names[0].contains(other) {
                if other == ';' {
                    " (the header looks semicolon-separated: try --delimiter ';')"
                } else {
                    " (the header looks comma-separated: try --delimiter ',')"
                }
            } else {
                ""
            };
            return Err(InputError::MissingColumn {
                path: path.to_path_buf(),
                column: column.name(),
                hint: column.alias_hint(),
                header: crate::domain::shorten(&header),
                delimiter_hint,
            });
        }
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(content: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, content).unwrap();
        f
    }

    fn opts() -> InputOptions {
        InputOptions {
            delimiter: Some(b','),
            required: vec![
                Column::TenantId,
                Column::FirstName,
                Column::LastName,
                Column::Email,
            ],
            encoding: Encoding::Utf8,
        }
    }

    #[test]
    fn excel_style_headers_with_bom_and_crlf_are_mapped() {
        let f = write(b"\xEF\xBB\xBFCustomer Tenant ID,First Name,Last-Name,E-mail Address,Phone,Date_Agreed\r\nx,a,b,c,d,e\r\n");
        let mut r = InputReader::open(f.path(), &opts()).unwrap();
        let row = r.next_row().unwrap().unwrap();
        assert_eq!(row.row, RowNumber(1));
        assert!(row.problem.is_none());
        assert_eq!(row.fields().tenant_id, "x");
        assert_eq!(row.fields().email, "c");
        assert_eq!(row.fields().phone_number, "d");
        assert_eq!(row.fields().date_agreed, "e");
        assert!(r.next_row().is_none());
    }

    #[test]
    fn missing_required_column_is_named() {
        let f = write(b"tenant_id,first_name,last_name\n");
        let err = InputReader::open(f.path(), &opts()).unwrap_err();
        assert!(err.to_string().contains("no 'email' column"), "{err}");
    }

    #[test]
    fn semicolon_and_tab_files_are_detected_when_no_delimiter_is_given() {
        let detect = InputOptions {
            delimiter: None,
            ..opts()
        };
        for (text, sep) in [
            (
                &b"tenant_id;first_name;last_name;email\n1;\"a,b\";c;d\n"[..],
                b';',
            ),
            (
                &b"tenant_id\tfirst_name\tlast_name\temail\n1\ta\tb\tc\n"[..],
                b'\t',
            ),
            (
                &b"tenant_id,first_name,last_name,email\n1,a,b,c\n"[..],
                b',',
            ),
        ] {
            let f = write(text);
            let mut r = InputReader::open(f.path(), &detect).unwrap();
            assert_eq!(r.delimiter(), sep);
            assert!(r.next_row().unwrap().unwrap().problem.is_none());
        }
    }

    #[test]
    fn semicolon_header_gets_a_hint() {
        let f = write(b"tenant_id;first_name;last_name;email\n");
        let err = InputReader::open(f.path(), &opts()).unwrap_err();
        assert!(err.to_string().contains("--delimiter ';'"), "{err}");
    }

    /// Plain rows enough to fill the sniffed head: what follows is read only as rows.
    fn past_the_head() -> Vec<u8> {
        let mut text = b"tenant_id,first_name,last_name,email\n".to_vec();
        while text.len() <= SNIFF_BYTES {
            text.extend_from_slice(b"1,a,b,c\n");
        }
        text
    }

    #[test]
    fn ragged_and_non_utf8_rows_past_the_head_are_flagged_and_reading_goes_on() {
        let mut text = past_the_head();
        let before = text.iter().filter(|b| **b == b'\n').count() as u64 - 1;
        text.extend_from_slice(b"1,2,3\n1,Jos\xe9,3,4\n1,\x81,3,4\n1,\xfc,3,4\n1,2,3,4\n");
        let f = write(&text);
        let mut r = InputReader::open(f.path(), &opts()).unwrap();
        let rows: Vec<RawRow> = std::iter::from_fn(|| r.next_row())
            .map(Result::unwrap)
            .skip(before as usize)
            .collect();
        let problems: Vec<String> = rows
            .iter()
            .map(|r| r.problem.clone().unwrap_or_default())
            .collect();
        assert!(problems[0].contains("3 fields"), "{problems:?}");
        assert!(
            problems[1].starts_with(
                "first_name: the cell is not valid UTF-8 (byte 0xE9 ('é' in Windows-1252))"
            ) && problems[1].contains("CSV UTF-8 (Comma delimited)")
                && problems[1].contains("--encoding windows-1252"),
            "the first says it in full: {problems:?}"
        );
        assert_eq!(
            problems[2], "first_name: the cell is not valid UTF-8 (byte 0x81)",
            "a byte Windows-1252 leaves undefined"
        );
        assert!(
            problems[3].contains("(byte 0xFC ('ü' in Windows-1252))")
                && problems[3].contains("--encoding windows-1252"),
            "the later ones name the fix: {problems:?}"
        );
        assert_eq!(problems[4], "");
        assert_eq!(rows[4].row, RowNumber(before + 5));
    }

    #[test]
    fn windows_1252_in_the_head_is_refused_as_a_whole_naming_both_fixes() {
        for (text, line) in [
            (
                &b"tenant_id,first_name,last_name,email\n1,Jos\xe9,b,c\n"[..],
                2,
            ),
            (
                b"tenant_id,first_name,last_name,email\xa0\r\n1,a,b,c\r\n",
                1,
            ),
            (b"tenant_id;first_name;last_name;email\n1;\x80;b;c\n", 2),
        ] {
            let f = write(text);
            let err = InputReader::open(f.path(), &opts()).unwrap_err();
            assert!(matches!(err, InputError::Windows1252 { .. }), "{err}");
            let message = err.to_string();
            for needed in [
                "Windows-1252",
                "CSV UTF-8 (Comma delimited)",
                "--encoding windows-1252",
                &format!("line {line} "),
            ] {
                assert!(message.contains(needed), "{needed}: {message}");
            }
        }
        let other = write(b"tenant_id,first_name,last_name,email\n1,\x81\xe9,b,c\n");
        let err = InputReader::open(other.path(), &opts()).unwrap_err();
        assert!(matches!(err, InputError::NotUtf8 { .. }), "{err}");
        assert!(!err.to_string().contains("--encoding"), "{err}");
    }

    #[test]
    fn a_character_cut_by_the_end_of_the_head_is_no_encoding_error() {
        let mut text = b"tenant_id,first_name,last_name,email\n".to_vec();
        while text.len() + 64 < SNIFF_BYTES {
            text.extend_from_slice(b"1,a,b,c\n");
        }
        // A last plain row long enough that the next one's 'é' straddles the head's end.
        let filler = SNIFF_BYTES - 3 - text.len() - b"1,a,b,\n".len();
        text.extend_from_slice(b"1,a,b,");
        text.extend(std::iter::repeat_n(b'c', filler));
        text.extend_from_slice(b"\n1,\xc3\xa9,b,c\n");
        assert_eq!(
            text[SNIFF_BYTES - 1],
            0xC3,
            "the head ends on the letter's first byte"
        );
        let f = write(&text);
        let mut r = InputReader::open(f.path(), &opts()).unwrap();
        let last = std::iter::from_fn(|| r.next_row()).last().unwrap().unwrap();
        assert_eq!(last.fields().first_name, "é");
        assert!(last.problem.is_none());
    }

    #[test]
    fn windows_1252_is_decoded_when_asked_for_header_and_bom_included() {
        let options = InputOptions {
            encoding: Encoding::Windows1252,
            ..opts()
        };
        let f = write(b"\xEF\xBB\xBFtenant_id,first_name,last_name,email,notes\xb2\r\n1,Jos\xe9,M\xfcller,c,\x80\x9c\x8a\r\n2,a,b,c,d\r\n");
        let mut r = InputReader::open(f.path(), &options).unwrap();
        assert_eq!(
            r.header().get(0),
            Some(&b"tenant_id"[..]),
            "the BOM is dropped"
        );
        assert_eq!(r.header().get(4), Some("notes²".as_bytes()));
        let first = r.next_row().unwrap().unwrap();
        assert!(first.problem.is_none());
        assert_eq!(first.fields().first_name, "José");
        assert_eq!(first.fields().last_name, "Müller");
        assert_eq!(first.record.get(4), Some("€œŠ".as_bytes()));
        assert_eq!(r.next_row().unwrap().unwrap().fields().first_name, "a");
        assert!(r.next_row().is_none());
        assert_eq!(
            r.position(),
            f.as_file().metadata().unwrap().len(),
            "file bytes"
        );
    }

    #[test]
    fn empty_binary_and_utf16_files_are_refused() {
        assert!(matches!(
            InputReader::open(write(b"").path(), &opts()),
            Err(InputError::Empty { .. })
        ));
        assert!(matches!(
            InputReader::open(write(b"\n\r\n").path(), &opts()),
            Err(InputError::Empty { .. })
        ));
        assert!(matches!(
            InputReader::open(write(b"\x7fELF\x02\x01\x01\0\0\0").path(), &opts()),
            Err(InputError::Binary { .. })
        ));
        assert!(matches!(
            InputReader::open(write(b"\xFF\xFEt\0e\0").path(), &opts()),
            Err(InputError::Utf16 { .. })
        ));
        assert!(matches!(
            InputReader::open(write(b"t\0e\0n\0a\0n\0t\0").path(), &opts()),
            Err(InputError::Utf16 { .. })
        ));
    }

    #[test]
    fn a_record_longer_than_the_limit_is_one_invalid_row_and_reading_goes_on() {
        let mut text = b"tenant_id,first_name,last_name,email\n1,a,b,c\n".to_vec();
        let long_starts = text.len();
        text.extend_from_slice(b"2,\"");
        text.extend(std::iter::repeat_n(b'x', 3 * MAX_RECORD_BYTES));
        text.extend_from_slice(b"\n\",b,c\n3,a,b,c\n");
        let f = write(&text);
        let mut r = InputReader::open(f.path(), &opts()).unwrap();
        assert!(r.next_row().unwrap().unwrap().problem.is_none());
        let long = r.next_row().unwrap().unwrap();
        assert_eq!(long.row, RowNumber(2));
        assert!(long.record.as_slice().len() <= MAX_RECORD_BYTES);
        let problem = long.problem.unwrap();
        assert!(
            problem.starts_with("first_name: row 2 (spreadsheet line 3) is longer than 64 KiB")
                && problem.contains(&format!("starts at byte {long_starts} "))
                && problem.contains("unbalanced quote"),
            "{problem}"
        );
        let next = r.next_row().unwrap().unwrap();
        assert_eq!(next.row, RowNumber(3));
        assert!(next.problem.is_none());
        assert_eq!(next.fields().tenant_id, "3");
        assert_eq!(
            r.position(),
            text.len() as u64,
            "progress counts file bytes"
        );
        assert!(r.next_row().is_none());
    }

    #[test]
    fn a_header_longer_than_the_limit_is_refused() {
        let mut text = b"tenant_id,first_name,last_name,\"email".to_vec();
        text.extend(std::iter::repeat_n(b'x', MAX_HEADER_BYTES));
        text.extend_from_slice(b"\n1,2,3,4\n");
        let err = InputReader::open(write(&text).path(), &opts()).unwrap_err();
        assert!(matches!(err, InputError::HeaderTooLong { .. }), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn only_standard_input_and_shell_pipes_count_as_shell_streams() {
        assert!(is_shell_stream(Path::new("-")));
        assert!(is_shell_stream(Path::new("/dev/stdin")));
        assert!(is_shell_stream(Path::new("/dev/fd/63")));
        assert!(!is_shell_stream(Path::new("wave.csv")));
        assert!(!is_shell_stream(Path::new("dev/wave.csv")));
        let shm = tempfile::Builder::new().tempfile_in("/dev/shm");
        if let Ok(file) = shm {
            assert!(
                !is_shell_stream(file.path()),
                "a regular file under /dev/shm"
            );
        }
    }

    #[test]
    fn workbooks_are_named_as_such() {
        for head in [
            &b"PK\x03\x04\x14\0\x06\0"[..],
            b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1\0\0",
        ] {
            let err = InputReader::open(write(head).path(), &opts()).unwrap_err();
            assert!(matches!(err, InputError::Workbook { .. }), "{err}");
            assert!(err.to_string().contains("CSV UTF-8"), "{err}");
        }
    }

    #[test]
    fn all_empty_records_keep_their_numbers_and_are_skipped() {
        let f = write(
            b"tenant_id,first_name,last_name,email\n1,a,b,c\n,,,\n\n , ,,\n,,\n2,a,b,c\n,,,\n",
        );
        let mut r = InputReader::open(f.path(), &opts()).unwrap();
        let rows: Vec<_> = std::iter::from_fn(|| r.next_row())
            .map(|x| x.unwrap().row)
            .collect();
        assert_eq!(rows, [RowNumber(1), RowNumber(5)]);
        assert_eq!(r.empty_rows(), 4);
        assert_eq!(r.records_read(), 6);
        assert!(r.streamed_fingerprint().is_none());
        let counted = fingerprint_input(f.path(), b',').unwrap();
        assert_eq!(counted.rows, r.records_read());
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_is_read_once_and_hashed_as_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("rows");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let text = b"tenant_id,first_name,last_name,email\n1,a,b,c\n,,,\n2,a,b,c\n".to_vec();
        let writer = {
            let (fifo, text) = (fifo.clone(), text.clone());
            std::thread::spawn(move || std::fs::write(fifo, text).unwrap())
        };
        let mut r = InputReader::open(&fifo, &opts()).unwrap();
        let slot = r.streamed_fingerprint().expect("a FIFO is a stream");
        assert_eq!(r.size(), 0);
        let first = r.next_row().unwrap().unwrap();
        assert_eq!(first.fields().tenant_id, "1");
        assert!(slot.get().is_none(), "known only at the end");
        assert_eq!(r.next_row().unwrap().unwrap().row, RowNumber(3));
        assert!(r.next_row().is_none());
        writer.join().unwrap();
        let plain = dir.path().join("plain.csv");
        std::fs::write(&plain, &text).unwrap();
        let expected = fingerprint_input(&plain, b',').unwrap();
        assert_eq!(slot.get(), Some(&expected));
        assert_eq!(expected.rows, 3);
    }

    #[test]
    fn header_only_file_has_no_rows() {
        let f = write(b"tenant_id,first_name,last_name,email\r\n");
        let mut r = InputReader::open(f.path(), &opts()).unwrap();
        assert!(r.next_row().is_none());
    }
}
