//! The results file: the audit record of a run. One line per row, written and flushed as the
//! row finishes, so a killed run leaves a valid file of every finished row.

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::{Confirmation, RowNumber, RowStatus, Status, rfc3339};
use crate::files::private_options;
use crate::input::{Column, RawRow};

mod invalid;
mod write_behind;
pub use invalid::FirstInvalid;
use write_behind::WriteBehind;

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
    /// The status type of the report's rows.
    type Status: Status;
    /// The row's status, counted in summaries and the exit code.
    fn status(&self) -> Self::Status;
    /// The cells, in header order, before formula escaping.
    fn cells(&self) -> Vec<Cow<'_, str>>;
    /// Which cells hold a signer's email or phone number, masked by `--redact`.
    fn personal_cells() -> &'static [(usize, Personal)] {
        &[]
    }
    /// A line for the run's side output (`status --emit-confirm-input`), written by the same
    /// writer task right after the record.
    fn side_line(&self) -> Option<&csv::ByteRecord> {
        None
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

    pub fn row_status(&self) -> RowStatus {
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

    type Status = RowStatus;

    fn status(&self) -> RowStatus {
        self.row_status()
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
            Cow::Borrowed(self.row_status().as_str()),
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
    if needs_formula_escape(cell) {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

/// Whether [`escape_formula`] changes `cell`.
fn needs_formula_escape(cell: &str) -> bool {
    matches!(
        cell.as_bytes().first(),
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r' | b'\'')
    )
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

/// What a report file is, and so what a run may do with one that already holds lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportMode {
    /// A `confirm` results file, an audit record: a file that holds lines is refused and left
    /// untouched.
    Audit,
    /// `confirm --resume`: lines are added after the ones the file has.
    AuditResume,
    /// A derived report (`status`, `validate`): replaced, but only by a run that completes.
    /// Until then the new report is written beside it (`<report>.partial`), so a run that
    /// stops early never destroys the last complete report. Never a `confirm` results file.
    Derived,
    /// `status --resume`: continues the partial report of a run that stopped early (or the
    /// report itself when there is none).
    DerivedResume,
}

impl ReportMode {
    pub fn resumes(self) -> bool {
        matches!(self, ReportMode::AuditResume | ReportMode::DerivedResume)
    }

    fn is_derived(self) -> bool {
        matches!(self, ReportMode::Derived | ReportMode::DerivedResume)
    }
}

/// Where a derived report is written until its run completes.
pub fn partial_path(report: &Path) -> PathBuf {
    let mut name = report.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error(
        "results file '{path}' already exists and is not empty: it is the audit record of an earlier run. Pass --resume to continue it, or choose another file with -o"
    )]
    Exists { path: PathBuf },
    #[error(
        "'{path}' is the results file of a confirm run (an audit record): it is never replaced by another command's report; choose another file with -o"
    )]
    AuditRecord { path: PathBuf },
    #[error(
        "another run is using '{path}' (it holds the file's lock): nothing was sent. Wait for that run to finish, or choose another file with -o"
    )]
    Busy { path: PathBuf },
    #[error("'{path}' is a directory: give a file name with -o")]
    Directory { path: PathBuf },
    #[error("cannot create '{path}': {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot write '{path}': {source}")]
    Write { path: String, source: io::Error },
}

/// A report output opened for a run: standard output, a stream (a device such as /dev/null,
/// a FIFO), or a regular file held under an exclusive lock for as long as this value or a
/// [`RunLock`] taken from it lives. Opening never changes the file's content.
#[derive(Debug)]
pub struct ReportFile {
    target: OutputTarget,
    opened: Opened,
    mode: ReportMode,
}

#[derive(Debug)]
enum Opened {
    Stdout,
    Stream(File),
    /// The report itself (locked), and where this run writes: the report, or its partial
    /// file for a derived report that is replaced only when the run completes.
    Regular {
        file: File,
        writes: PathBuf,
    },
}

/// Keeps a run's report file locked until dropped (after the manifest is written).
#[derive(Debug)]
pub struct RunLock(#[allow(dead_code)] Option<File>);

impl ReportFile {
    /// Opens the target, creating a missing file (owner-only), takes the run's exclusive lock
    /// on a regular file (a second run on the same file is refused at once), and applies the
    /// mode's policy for what the file already holds, all before anything is sent.
    pub fn open(target: &OutputTarget, mode: ReportMode) -> Result<Self, OutputError> {
        let path = match target {
            OutputTarget::Stdout => {
                return Ok(ReportFile {
                    target: target.clone(),
                    opened: Opened::Stdout,
                    mode,
                });
            }
            OutputTarget::File(p) => p,
        };
        let create_err = |source| OutputError::Create {
            path: path.clone(),
            source,
        };
        if path.is_dir() {
            return Err(OutputError::Directory { path: path.clone() });
        }
        if crate::files::is_special(path) {
            // Devices and pipes: written as a stream, never created, truncated or locked.
            let file = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(create_err)?;
            return Ok(ReportFile {
                target: target.clone(),
                opened: Opened::Stream(file),
                mode,
            });
        }
        if !mode.is_derived() {
            // A results file: written in place, line by line, an audit record from the start.
            let file = private_options()
                .read(true)
                .append(true)
                .create(true)
                .open(path)
                .map_err(create_err)?;
            lock_for_run(&file, path)?;
            let holds_lines = file.metadata().map_err(create_err)?.len() > 0;
            if mode == ReportMode::Audit && holds_lines {
                return Err(OutputError::Exists { path: path.clone() });
            }
            return Ok(ReportFile {
                target: target.clone(),
                opened: Opened::Regular {
                    file,
                    writes: path.clone(),
                },
                mode,
            });
        }
        // A derived report is staged: written in its partial file, which replaces the report
        // only when the run completes, so the final name holds a complete report or what it
        // held before (nothing, for a first run). The partial file carries the run's lock.
        let holds_lines = std::fs::metadata(path).is_ok_and(|m| m.len() > 0);
        if holds_lines && is_confirm_results(path) {
            return Err(OutputError::AuditRecord { path: path.clone() });
        }
        let partial = partial_path(path);
        let file = stage(path, &partial, mode == ReportMode::DerivedResume)?;
        Ok(ReportFile {
            target: target.clone(),
            opened: Opened::Regular {
                file,
                writes: partial,
            },
            mode,
        })
    }

    pub fn target(&self) -> &OutputTarget {
        &self.target
    }

    /// The regular file this run writes (and `--resume` reads, and the manifest sits beside):
    /// the report, or its partial file.
    pub fn regular_path(&self) -> Option<&Path> {
        match &self.opened {
            Opened::Regular { writes, .. } => Some(writes),
            _ => None,
        }
    }

    /// Whether the file this run writes holds nothing yet (a file it may remove again when
    /// the run ends before anything is recorded).
    pub fn is_empty(&self) -> bool {
        self.mode == ReportMode::Derived
            || self
                .regular_path()
                .is_none_or(|p| std::fs::metadata(p).map_or(true, |m| m.len() == 0))
    }

    /// A handle that keeps the lock after the writer is gone, and replaces the report with
    /// the partial file when the run completes.
    pub fn lock(&self) -> RunLock {
        match &self.opened {
            Opened::Regular { file, .. } => RunLock(file.try_clone().ok()),
            _ => RunLock(None),
        }
    }

    /// The writer for the run; a file that starts anew gets `R`'s header.
    pub fn into_writer<R: ReportRecord>(self) -> Result<ReportWriter, OutputError> {
        let (out, sync, starts_anew): (Box<dyn Write + Send>, Option<File>, bool) =
            match self.opened {
                Opened::Stdout => (Box::new(io::stdout()), None, true),
                Opened::Stream(f) => (Box::new(f), None, true),
                Opened::Regular { file, writes } => {
                    let err = |source| OutputError::Create {
                        path: writes.clone(),
                        source,
                    };
                    // A new derived report starts its partial file anew.
                    if self.mode == ReportMode::Derived {
                        file.set_len(0).map_err(err)?;
                    }
                    let empty = file.metadata().map_err(err)?.len() == 0;
                    let sync = file.try_clone().map_err(err)?;
                    (Box::new(file), Some(sync), empty)
                }
            };
        let mut writer = ReportWriter {
            csv: csv::WriterBuilder::new()
                .buffer_capacity(64 * 1024)
                .from_writer(out),
            target: self.target,
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
}

/// Takes a run's exclusive lock on `file`, the output `path` names: a file another run holds
/// is refused at once.
fn lock_for_run(file: &File, path: &Path) -> Result<(), OutputError> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => Err(OutputError::Busy {
            path: path.to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(OutputError::Create {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The partial file a staged side output (`--emit-confirm-input`) is written in until its run
/// completes; `None` for a device or pipe, written as a stream.
pub fn staged_path(path: &Path) -> Option<PathBuf> {
    (!crate::files::is_special(path)).then(|| partial_path(path))
}

/// Opens (creating, owner-only) and locks `partial`, the file a staged output is written in
/// until its run completes. A resumed run continues it; when there is none, it starts from
/// the complete file `target` holds (and its manifest), so `--resume` of a complete report
/// still replaces it only on completion. The partial file carries the run's lock.
fn stage(target: &Path, partial: &Path, resumes: bool) -> Result<File, OutputError> {
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| OutputError::Create { path, source }
    };
    let mut file = private_options()
        .read(true)
        .append(true)
        .create(true)
        .open(partial)
        .map_err(err(partial))?;
    lock_for_run(&file, target)?;
    let partial_empty = file.metadata().map_err(err(partial))?.len() == 0;
    if resumes && partial_empty && std::fs::metadata(target).is_ok_and(|m| m.len() > 0) {
        let mut complete = File::open(target).map_err(err(target))?;
        io::copy(&mut complete, &mut file).map_err(err(partial))?;
        let manifest = crate::manifest::manifest_path(target);
        if manifest.exists() {
            std::fs::copy(&manifest, crate::manifest::manifest_path(partial))
                .map_err(err(&manifest))?;
        }
    }
    Ok(file)
}

/// Replaces `report` with `written`, the partial file of a derived report whose run completed,
/// and moves its manifest along (a no-op when the run wrote the report itself).
pub fn promote(report: &Path, written: &Path) -> io::Result<()> {
    if report == written {
        return Ok(());
    }
    std::fs::rename(written, report)?;
    let manifest = crate::manifest::manifest_path(written);
    if manifest.exists() {
        std::fs::rename(manifest, crate::manifest::manifest_path(report))?;
    }
    Ok(())
}

/// Whether `path` is the results file of a `confirm` run: the results header, and either a
/// manifest whose last run is a `confirm` run or a line whose status only `confirm` gives (a
/// `validate` report shares the header but holds only valid, invalid and duplicate).
pub fn is_confirm_results(path: &Path) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(io::BufReader::new(file));
    let mut record = csv::StringRecord::new();
    let is_results = matches!(reader.read_record(&mut record), Ok(true))
        && record.iter().eq(RESULTS_HEADER.iter().copied());
    if !is_results {
        return false;
    }
    if let Some(last) = crate::manifest::runs(path).last() {
        return last.get("command").and_then(|c| c.as_str()) == Some("confirm");
    }
    const STATUS_AT: usize = 7;
    while let Ok(true) = reader.read_record(&mut record) {
        let only_confirm = record
            .get(STATUS_AT)
            .and_then(RowStatus::parse)
            .is_some_and(|s| {
                !matches!(
                    s,
                    RowStatus::Valid | RowStatus::Invalid | RowStatus::Duplicate
                )
            });
        if only_confirm {
            return true;
        }
    }
    false
}

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
    /// Opens the target and writes the header for `R` (for offline reports and tests; a run
    /// goes through [`ReportFile`] to hold the lock for its whole length).
    pub fn create<R: ReportRecord>(
        target: OutputTarget,
        mode: ReportMode,
    ) -> Result<Self, OutputError> {
        ReportFile::open(&target, mode)?.into_writer::<R>()
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
        self.write_unflushed(record)?;
        self.flush_written()
    }

    /// Writes one record of a run; [`Self::flush_written`] then hands it to the system.
    pub fn write_unflushed<R: ReportRecord>(&mut self, record: &R) -> Result<(), OutputError> {
        let cells = self.cells_of(record);
        self.write_cells(&cells)?;
        self.unsynced = self.unsynced.saturating_add(1);
        Ok(())
    }

    /// Flushes the records written so far, and syncs them to disk every so many lines or
    /// seconds.
    pub fn flush_written(&mut self) -> Result<(), OutputError> {
        self.flush()?;
        if self.unsynced >= SYNC_EVERY_LINES || self.last_sync.elapsed() >= SYNC_EVERY {
            self.sync()?;
        }
        Ok(())
    }

    /// Writes one record without flushing (for offline reports written in bulk).
    pub fn write_buffered<R: ReportRecord>(&mut self, record: &R) -> Result<(), OutputError> {
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
        if let Some(behind) = self.behind.take() {
            behind.finish().map_err(|e| self.error(e))?;
        }
        self.sync()
    }
}

/// Writes a side output of raw input records (`status --emit-confirm-input`) under the
/// input's header: owner-only, each line flushed as written, owned by the run's writer task.
pub struct LineWriter {
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
            ReportMode::Audit,
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
            (proptest::option::of(1u64..1_000_000), text(), text(), text(), text(), text()),
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
                |((row, tenant, first, last, email, phone), (status, http, message, attempts, id, at))| {
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
