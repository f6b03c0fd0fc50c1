//! The results file: the audit record of a run. One line per row, written and flushed as the
//! row finishes, so a killed run leaves a valid file of every finished row.

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::{Confirmation, RowNumber, RowStatus, rfc3339};
use crate::input::{Column, RawRow};

/// The results header, in the contract's order.
pub const RESULTS_HEADER: [&str; 17] = [
    "row",
    "customer_tenant_id",
    "first_name",
    "last_name",
    "email",
    "phone_number",
    "date_agreed",
    "status",
    "http_status",
    "error_code",
    "error_name",
    "message",
    "attempts",
    "template_id",
    "request_id",
    "correlation_id",
    "finished_at",
];

/// A line of any report this tool writes (results, validation, reconciliation).
pub trait ReportRecord: Send + 'static {
    /// The header line of the report.
    fn header() -> &'static [&'static str];
    /// The status word counted in summaries.
    fn status_word(&self) -> &'static str;
    /// The cells, in header order, before formula escaping.
    fn cells(&self) -> Vec<Cow<'_, str>>;
    /// Which cells hold a signer's email or phone number, masked by `--redact`.
    fn personal_cells() -> &'static [(usize, Personal)] {
        &[]
    }
}

/// Personal data a report may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Personal {
    Email,
    Phone,
}

impl Personal {
    /// Masks a value for sharing: `t***@contoso.com`, `*********0100`.
    pub fn mask(self, value: &str) -> String {
        if value.is_empty() {
            return String::new();
        }
        match self {
            Personal::Email => match value.split_once('@') {
                Some((local, domain)) => {
                    let first: String = local.chars().take(1).collect();
                    format!("{first}***@{domain}")
                }
                None => "***".to_string(),
            },
            Personal::Phone => {
                let digits = value.chars().filter(char::is_ascii_digit).count();
                let mut seen = 0;
                value
                    .chars()
                    .map(|c| {
                        if c.is_ascii_digit() {
                            seen += 1;
                            if seen + 4 > digits { c } else { '*' }
                        } else {
                            c
                        }
                    })
                    .collect()
            }
        }
    }
}

/// One row's outcome, as recorded in the results file.
#[derive(Debug, Clone, Default)]
pub struct ResultRecord {
    pub row: Option<RowNumber>,
    pub customer_tenant_id: String,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub phone_number: String,
    pub date_agreed: String,
    pub status: Option<RowStatus>,
    pub http_status: Option<u16>,
    pub error_code: String,
    pub error_name: String,
    pub message: String,
    pub attempts: u32,
    pub template_id: String,
    pub request_id: Option<Uuid>,
    pub correlation_id: Option<Uuid>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl ResultRecord {
    /// A record echoing the row as read, for rows that could not be validated.
    pub fn from_raw(raw: &RawRow, status: RowStatus, message: String) -> Self {
        let cell = |c| raw.cell_for_display(c);
        ResultRecord {
            row: Some(raw.row),
            customer_tenant_id: cell(Column::TenantId),
            first_name: cell(Column::FirstName),
            last_name: cell(Column::LastName),
            email: cell(Column::Email),
            phone_number: cell(Column::PhoneNumber),
            date_agreed: cell(Column::DateAgreed),
            status: Some(status),
            message,
            finished_at: Some(Utc::now()),
            ..Default::default()
        }
    }

    /// A record of a validated row, its values as they are (or would be) sent.
    pub fn from_confirmation(row: RowNumber, c: Confirmation, status: RowStatus) -> Self {
        ResultRecord {
            row: Some(row),
            customer_tenant_id: c.tenant.to_string(),
            first_name: c.signer.first_name,
            last_name: c.signer.last_name,
            email: c.signer.email,
            phone_number: c.signer.phone_number.unwrap_or_default(),
            date_agreed: c.date_agreed.to_string(),
            status: Some(status),
            finished_at: Some(Utc::now()),
            ..Default::default()
        }
    }

    pub fn status(&self) -> RowStatus {
        self.status.unwrap_or(RowStatus::Failed)
    }
}

fn opt<T: ToString>(v: Option<T>) -> Cow<'static, str> {
    v.map(|v| Cow::Owned(v.to_string()))
        .unwrap_or(Cow::Borrowed(""))
}

impl ReportRecord for ResultRecord {
    fn header() -> &'static [&'static str] {
        &RESULTS_HEADER
    }

    fn status_word(&self) -> &'static str {
        self.status().as_str()
    }

    fn personal_cells() -> &'static [(usize, Personal)] {
        &[(4, Personal::Email), (5, Personal::Phone)]
    }

    fn cells(&self) -> Vec<Cow<'_, str>> {
        vec![
            opt(self.row),
            Cow::Borrowed(&self.customer_tenant_id),
            Cow::Borrowed(&self.first_name),
            Cow::Borrowed(&self.last_name),
            Cow::Borrowed(&self.email),
            Cow::Borrowed(&self.phone_number),
            Cow::Borrowed(&self.date_agreed),
            Cow::Borrowed(self.status().as_str()),
            opt(self.http_status),
            Cow::Borrowed(&self.error_code),
            Cow::Borrowed(&self.error_name),
            Cow::Borrowed(&self.message),
            Cow::Owned(self.attempts.to_string()),
            Cow::Borrowed(&self.template_id),
            opt(self.request_id),
            opt(self.correlation_id),
            opt(self.finished_at.map(rfc3339)),
        ]
    }
}

/// Cells a spreadsheet would run as a formula get a leading `'`, so opening an audit file in
/// Excel cannot execute anything a customer typed into a name field. A cell that starts with
/// `'` itself gets one too, so the escaping can always be undone (see `resume::unescape`).
pub fn escape_formula(cell: &str) -> Cow<'_, str> {
    match cell.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r' | b'\'') => Cow::Owned(format!("'{cell}")),
        _ => Cow::Borrowed(cell),
    }
}

/// Where a report goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputTarget {
    Stdout,
    File(PathBuf),
}

impl OutputTarget {
    pub fn parse(raw: &Path) -> Self {
        if raw.as_os_str() == "-" {
            OutputTarget::Stdout
        } else {
            OutputTarget::File(raw.to_path_buf())
        }
    }

    pub fn path(&self) -> Option<&Path> {
        match self {
            OutputTarget::Stdout => None,
            OutputTarget::File(p) => Some(p),
        }
    }
}

impl std::fmt::Display for OutputTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OutputTarget::Stdout => f.write_str("standard output"),
            OutputTarget::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// What to do when the report file already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExistingFile {
    /// An audit record: a non-empty file is left untouched and the run refused.
    Refuse,
    /// A derived report that may be replaced.
    Overwrite,
}

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error(
        "results file '{path}' already exists and is not empty: it is the audit record of an earlier run. Pass --resume to continue it, or choose another file with -o"
    )]
    Exists { path: PathBuf },
    #[error("cannot create '{path}': {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot write '{path}': {source}")]
    Write { path: String, source: io::Error },
}

/// How a report file is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpenMode {
    Create(ExistingFile),
    Append,
}

/// Opens the report file, creating it with owner-only permissions: results hold signers'
/// personal data. Returns the writer and, for files, a handle to sync to disk.
fn open_output(
    target: &OutputTarget,
    mode: OpenMode,
) -> Result<(Box<dyn Write + Send>, Option<File>), OutputError> {
    let path = match target {
        OutputTarget::Stdout => return Ok((Box::new(io::stdout()), None)),
        OutputTarget::File(p) => p,
    };
    let create_err = |source| OutputError::Create {
        path: path.clone(),
        source,
    };
    let mut options = private_options();
    match mode {
        OpenMode::Create(existing) => {
            if existing == ExistingFile::Refuse {
                refuse_existing(path)?;
            }
            options.write(true).create(true).truncate(true);
        }
        OpenMode::Append => {
            options.append(true).create(true);
        }
    }
    let file = options.open(path).map_err(create_err)?;
    let sync = file.try_clone().map_err(create_err)?;
    Ok((
        Box::new(BufWriter::with_capacity(64 * 1024, file)),
        Some(sync),
    ))
}

/// Options that create files readable by their owner only: every file this tool writes holds
/// signers' personal data or names files that do.
fn private_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

/// Creates (or truncates) a file readable by its owner only.
pub fn create_private(path: &Path) -> io::Result<File> {
    private_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
}

/// Fails when `path` holds a non-empty file; checked before anything is sent.
pub fn refuse_existing(path: &Path) -> Result<(), OutputError> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.len() > 0 => Err(OutputError::Exists {
            path: path.to_path_buf(),
        }),
        _ => Ok(()),
    }
}

/// Lines between two syncs to disk, and the longest time between them.
const SYNC_EVERY_LINES: u32 = 256;
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// Writes report lines, each flushed to the operating system as soon as it is written and
/// synced to disk every so often, so a crash of the machine loses little and a crash of the
/// process loses nothing that was written.
pub struct ReportWriter {
    target: OutputTarget,
    csv: csv::Writer<Box<dyn Write + Send>>,
    sync: Option<File>,
    unsynced: u32,
    last_sync: Instant,
    redact: bool,
}

impl std::fmt::Debug for ReportWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReportWriter")
            .field("target", &self.target)
            .finish()
    }
}

impl ReportWriter {
    /// Opens the target and writes the header for `R`.
    pub fn create<R: ReportRecord>(
        target: OutputTarget,
        existing: ExistingFile,
    ) -> Result<Self, OutputError> {
        let mut writer = Self::open(target, OpenMode::Create(existing))?;
        writer.write_cells(R::header().iter().map(|h| Cow::Borrowed(*h)))?;
        writer.flush()?;
        Ok(writer)
    }

    /// Opens an existing report to add lines after the ones it has (`--resume`).
    pub fn append(path: &Path) -> Result<Self, OutputError> {
        Self::open(OutputTarget::File(path.to_path_buf()), OpenMode::Append)
    }

    fn open(target: OutputTarget, mode: OpenMode) -> Result<Self, OutputError> {
        let (out, sync) = open_output(&target, mode)?;
        Ok(ReportWriter {
            csv: csv::WriterBuilder::new()
                .buffer_capacity(16 * 1024)
                .from_writer(out),
            target,
            sync,
            unsynced: 0,
            last_sync: Instant::now(),
            redact: false,
        })
    }

    pub fn target(&self) -> &OutputTarget {
        &self.target
    }

    /// Masks signers' emails and phone numbers in every record written from now on.
    pub fn redact(mut self) -> Self {
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
        let cells = self.cells_of(record);
        self.write_cells(cells.into_iter())?;
        self.flush()?;
        self.unsynced += 1;
        if self.unsynced >= SYNC_EVERY_LINES || self.last_sync.elapsed() >= SYNC_EVERY {
            self.sync()?;
        }
        Ok(())
    }

    /// Writes one record without flushing (for offline reports written in bulk).
    pub fn write_buffered<R: ReportRecord>(&mut self, record: &R) -> Result<(), OutputError> {
        let cells = self.cells_of(record);
        self.write_cells(cells.into_iter())
    }

    fn write_cells<'a>(
        &mut self,
        cells: impl Iterator<Item = Cow<'a, str>>,
    ) -> Result<(), OutputError> {
        let escaped: Vec<Cow<'_, str>> = cells
            .map(|c| match escape_formula(&c) {
                Cow::Borrowed(_) => c,
                Cow::Owned(s) => Cow::Owned(s),
            })
            .collect();
        self.csv
            .write_record(escaped.iter().map(|c| c.as_bytes()))
            .map_err(|e| self.error(csv_io(e)))
    }

    pub fn flush(&mut self) -> Result<(), OutputError> {
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
        self.sync()
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

    #[test]
    fn redaction_masks_emails_and_phones() {
        assert_eq!(
            Personal::Email.mask("tania.carr@contoso.com"),
            "t***@contoso.com"
        );
        assert_eq!(Personal::Phone.mask("+1 425 555 0100"), "+* *** *** 0100");
        assert_eq!(Personal::Phone.mask(""), "");
        assert_eq!(Personal::Email.mask("no-at"), "***");
    }

    #[test]
    fn formula_cells_get_a_leading_quote() {
        for cell in [
            "=HYPERLINK(\"x\")",
            "+1 425",
            "-2",
            "@SUM(A1)",
            "\tx",
            "\rx",
        ] {
            assert_eq!(escape_formula(cell), format!("'{cell}"));
        }
        assert_eq!(escape_formula("'=already"), "''=already");
        for cell in ["Tania", "", "1+1", "O'Brien"] {
            assert_eq!(escape_formula(cell), cell);
        }
    }

    #[test]
    fn a_non_empty_results_file_is_refused_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        std::fs::write(&path, "keep me").unwrap();
        let err = ReportWriter::create::<ResultRecord>(
            OutputTarget::File(path.clone()),
            ExistingFile::Refuse,
        )
        .unwrap_err();
        assert!(matches!(err, OutputError::Exists { .. }));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");
    }

    #[test]
    fn records_are_written_in_contract_order_with_escaping() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let mut w = ReportWriter::create::<ResultRecord>(
            OutputTarget::File(path.clone()),
            ExistingFile::Refuse,
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
}
