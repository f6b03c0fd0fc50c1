//! The streaming reader: opens the input (a file, or a stream read once), reads its header,
//! and yields its data records one at a time, each with its number and structural problem.

use std::fs::File;
use std::io::{Cursor, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use csv::ByteRecord;

use super::columns::map_columns;
use super::encoding;
use super::problems::StructureCheck;
use super::sniff::{SNIFF_BYTES, bytes_per_line, detect_delimiter, sniff};
use super::{
    ColumnMap, Encoding, InputError, InputOptions, MAX_HEADER_BYTES, RawRow, RecordLimit, is_stdin,
};
use crate::domain::RowNumber;
use crate::fingerprint::{Hashing, InputFingerprint};
use crate::progress::ReadPosition;

/// A stream read once: its sniffed first bytes, then the rest, hashed as they pass.
type Stream = Hashing<std::io::Chain<Cursor<Vec<u8>>, Box<dyn Read + Send>>>;

/// What the reader reads: a regular file, or a stream that can be read only once (standard
/// input, a pipe, a FIFO), hashed as it is read.
enum InputBytes {
    File(File),
    Stream(Box<Stream>),
}

impl Read for InputBytes {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            InputBytes::File(f) => f.read(buf),
            InputBytes::Stream(s) => s.read(buf),
        }
    }
}

/// A streaming reader over an input CSV file.
pub struct InputReader {
    path: PathBuf,
    size: u64,
    reader: csv::Reader<RecordLimit<InputBytes>>,
    header: ByteRecord,
    columns: ColumnMap,
    next_row: u64,
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
    /// What makes a record invalid whatever its values.
    check: StructureCheck,
}

impl std::fmt::Debug for InputReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InputReader")
            .field("path", &self.path)
            .field("next_row", &self.next_row)
            .finish()
    }
}

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
                (InputBytes::File(file), None)
            }
            None => (
                InputBytes::Stream(Box::new(Hashing::new(Cursor::new(head).chain(inner)))),
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
        let header_len = header.len();
        Ok(InputReader {
            path: path.to_path_buf(),
            size,
            reader,
            header,
            columns: columns.clone(),
            next_row: 1,
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
            check: StructureCheck {
                path: path.to_path_buf(),
                header_len,
                columns,
                encoding: options.encoding,
                head_ascii,
                quiet,
                told_encoding: false,
            },
        })
    }

    /// A reader over the same file from its first data row, or `None` for an input that can
    /// be read only once (keep its rows in a [`RowSpool`] instead).
    pub(crate) fn second_reader(&self) -> Result<Option<InputReader>, InputError> {
        if self.streamed.is_some() {
            return Ok(None);
        }
        InputReader::open_as(&self.path, &self.options, true).map(Some)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn columns(&self) -> &ColumnMap {
        &self.columns
    }

    /// The header record as read (BOM included, if the file had one).
    pub(crate) fn header(&self) -> &ByteRecord {
        &self.header
    }

    /// The field separator in use (given, or detected from the header line).
    pub(crate) fn delimiter(&self) -> u8 {
        self.delimiter
    }

    /// For standard input, a pipe or a FIFO (read only once): where its fingerprint will be
    /// once the reader reaches its end. `None` for a regular file.
    pub(crate) fn streamed_fingerprint(&self) -> Option<Arc<OnceLock<InputFingerprint>>> {
        self.streamed.clone()
    }

    /// Data records read so far, the skipped empty ones included (row numbers count them).
    pub(crate) fn records_read(&self) -> u64 {
        self.next_row.saturating_sub(1)
    }

    /// Data records whose cells were all empty, skipped so far.
    pub(crate) fn empty_rows(&self) -> u64 {
        self.empty_rows
    }

    /// File size in bytes, for estimating progress (0 for a stream).
    pub(crate) fn size(&self) -> u64 {
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
    /// (To read every row, [`InputReader::for_each_row`] lends them from one buffer.)
    pub fn next_row(&mut self) -> Option<Result<RawRow, InputError>> {
        let mut row = self.blank_row();
        match self.read_into(&mut row) {
            Ok(true) => Some(Ok(row)),
            Ok(false) => None,
            Err(e) => Some(Err(e)),
        }
    }

    /// A row to read records into, with the reader's columns.
    fn blank_row(&self) -> RawRow {
        RawRow {
            row: RowNumber(0),
            problem: None,
            record: ByteRecord::with_capacity(1024, self.header.len().max(1)),
            columns: self.columns.clone(),
        }
    }

    /// Reads the next data record into `out`, reusing its buffers (no allocation per record
    /// once they have grown). `Ok(false)` at the end of the file. An I/O error ends the file.
    fn read_into(&mut self, out: &mut RawRow) -> Result<bool, InputError> {
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
            out.problem = self.check.problem(&out.record, row, cut);
            if self.encoding == Encoding::Windows1252 {
                encoding::decode_1252(&mut out.record, &mut self.decoded);
            }
            out.columns = self.columns.clone();
            return Ok(true);
        }
    }

    /// At the end of a stream: its fingerprint, from the bytes it held and the records read.
    fn reached_end(&mut self) {
        if let (Some(slot), InputBytes::Stream(stream)) =
            (&self.streamed, self.reader.get_mut().get_mut())
        {
            let _ = slot.set(InputFingerprint {
                sha256: stream.take_sha256(),
                rows: self.next_row.saturating_sub(1),
            });
        }
    }

    /// Hands every remaining row to `f` until it returns false, reporting progress through
    /// `position` (marked finished at the end). Each row is lent from one buffer that is
    /// reused for the next, so reading costs no allocation per row: clone what must outlive
    /// the call.
    pub(crate) fn for_each_row(
        &mut self,
        position: &ReadPosition,
        mut f: impl FnMut(&RawRow) -> bool,
    ) -> Result<(), InputError> {
        let mut raw = self.blank_row();
        let mut rows = 0u64;
        while self.read_into(&mut raw)? {
            rows = rows.saturating_add(1);
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::fingerprinting::fingerprint_input;
    use crate::input::{Column, MAX_RECORD_BYTES};

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

    /// A cell as a spreadsheet writes it: plain, quoted with separators, quotes and line
    /// breaks inside, blank, accented.
    fn cell() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::strategy::Strategy;
        proptest::sample::select(vec![
            "",
            "a",
            " ",
            "Tania",
            "\"x,y\"",
            "\"two\nlines\"",
            "\"say \"\"hi\"\"\"",
            "José",
            "\"\"",
            "1",
        ])
        .prop_map(str::to_string)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Whatever the rows (ragged, all-empty, blank lines, quoted separators and line
        /// breaks), `for_each_row` lends exactly the rows `next_row` gives one by one (same
        /// numbers, problems and cells), stops at the row `f` refuses, and a reading to the
        /// end leaves the position finished with the rows and empty rows counted.
        #[test]
        fn lent_rows_are_the_rows_read_one_by_one(
            rows in proptest::collection::vec(proptest::collection::vec(cell(), 0..6), 0..40),
            line_end in proptest::sample::select(vec!["\n", "\r\n"]),
            stop_after in 0usize..48,
        ) {
            use proptest::prelude::*;
            let mut text = format!("tenant_id,first_name,last_name,email{line_end}");
            for cells in &rows {
                text.push_str(&cells.join(","));
                text.push_str(line_end);
            }
            let f = write(text.as_bytes());
            let mut one_by_one = InputReader::open(f.path(), &opts()).unwrap();
            let expected: Vec<RawRow> = std::iter::from_fn(|| one_by_one.next_row())
                .map(Result::unwrap)
                .collect();
            let same = |a: &RawRow, b: &RawRow| {
                a.row == b.row
                    && a.problem == b.problem
                    && a.record.iter().eq(b.record.iter())
                    && a.fields().email == b.fields().email
            };

            let mut lending = InputReader::open(f.path(), &opts()).unwrap();
            let position = ReadPosition::new(lending.size());
            let mut lent = Vec::new();
            lending
                .for_each_row(&position, |raw| {
                    lent.push(raw.clone());
                    true
                })
                .unwrap();
            prop_assert_eq!(lent.len(), expected.len());
            prop_assert!(lent.iter().zip(&expected).all(|(a, b)| same(a, b)));
            prop_assert!(position.finished.load(std::sync::atomic::Ordering::Relaxed));
            prop_assert_eq!(
                position.rows.load(std::sync::atomic::Ordering::Relaxed),
                expected.len() as u64
            );
            prop_assert_eq!(
                position.empty_rows.load(std::sync::atomic::Ordering::Relaxed),
                one_by_one.empty_rows()
            );
            prop_assert_eq!(lending.position(), text.len() as u64);

            let mut stopping = InputReader::open(f.path(), &opts()).unwrap();
            let mut seen = 0usize;
            stopping
                .for_each_row(&ReadPosition::new(0), |_| {
                    seen += 1;
                    seen <= stop_after
                })
                .unwrap();
            prop_assert_eq!(seen, expected.len().min(stop_after + 1));
        }
    }
}
