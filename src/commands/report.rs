//! `report`: an Excel workbook of one or more `confirm` results files or `status` reports, for
//! people to open. Sheet `Summary`: rows per status (or state) with a chart, the files read and
//! the runs their manifests record; sheet `Rows`: one row per input row of each file (the last
//! line recorded for that row of that file wins, whatever its tenant), ordered by file then row,
//! every column of the CSV (given several files, a first column `source` names the file), dates
//! as date cells, ids and phone numbers as text without the formula guard.
//!
//! Memory stays bounded by the files' size, not the workbook's: a first pass reads and checks
//! every line and keeps, per file, where the last line of each row starts (16 bytes a row); a
//! second pass reads those lines back in row order and writes them as they come to a
//! constant-memory worksheet (rows go to a temporary file, not to memory).
//!
//! Everything is read and checked before anything is written (exit 2, nothing written); the
//! workbook is written to a temporary file beside `-o` (owner-only) and renamed over it (a
//! failure there is exit 3).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use csv::{ByteRecord, Position};
use rust_xlsxwriter::{
    Chart, ChartDataLabel, ChartType, Color, DocProperties, Format, FormatAlign, FormatBorder,
    IgnoreError, Workbook, Worksheet, XlsxError,
};

use crate::commands::status::STATUS_HEADER;
use crate::config::ReportConfig;
use crate::console::{Kind as Say, say};
use crate::domain::RowStatus;
use crate::error::{AppError, Exit};
use crate::manifest::{self, History};
use crate::reconcile::CustomerState;
use crate::results::RESULTS_HEADER;
use crate::resume::unescape;

/// Rows a worksheet holds, the header included.
const MAX_SHEET_ROWS: usize = 1_048_576;
/// Characters a cell holds.
const MAX_CELL_CHARS: usize = 32_767;
/// Column widths, in characters.
const MIN_WIDTH: f64 = 6.0;
const MAX_WIDTH: f64 = 66.0;
const DATETIME_FORMAT: &str = "yyyy-mm-dd hh:mm:ss";
const DATE_FORMAT: &str = "yyyy-mm-dd";
const HEADER_FILL: u32 = 0xD9E1F2;

/// What a file is, told by its header line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    /// A `confirm` results file.
    Results,
    /// A `status` report.
    Status,
}

impl FileKind {
    /// The kind whose header is `header`, if any.
    pub(crate) fn detect(header: &[String]) -> Option<FileKind> {
        let is = |expected: &[&str]| {
            header.len() == expected.len() && header.iter().zip(expected).all(|(a, b)| a == b)
        };
        if is(&RESULTS_HEADER) {
            Some(FileKind::Results)
        } else if is(&STATUS_HEADER) {
            Some(FileKind::Status)
        } else {
            None
        }
    }

    pub(crate) fn header(self) -> &'static [&'static str] {
        match self {
            FileKind::Results => &RESULTS_HEADER,
            FileKind::Status => &STATUS_HEADER,
        }
    }

    fn noun(self) -> &'static str {
        match self {
            FileKind::Results => "a confirm results file",
            FileKind::Status => "a status report",
        }
    }

    fn title(self) -> &'static str {
        match self {
            FileKind::Results => "MCA confirmations: results of confirm",
            FileKind::Status => "MCA acceptance on record: status reconciliation",
        }
    }

    /// The column counted on the Summary sheet.
    fn status_column(self) -> usize {
        match self {
            FileKind::Results => 7,
            FileKind::Status => 2,
        }
    }

    fn status_label(self) -> &'static str {
        match self {
            FileKind::Results => "status",
            FileKind::Status => "state",
        }
    }

    /// The contract's words for the counted column, in the order they are shown.
    fn statuses(self) -> Vec<&'static str> {
        match self {
            FileKind::Results => RowStatus::ALL
                .iter()
                .filter(|s| **s != RowStatus::Valid)
                .map(|s| s.as_str())
                .collect(),
            FileKind::Status => CustomerState::ALL.iter().map(|s| s.as_str()).collect(),
        }
    }
}

/// How a column's cells are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CellType {
    Text,
    Number,
    DateTime,
}

fn cell_type(column: &str) -> CellType {
    match column {
        "row" | "http_status" | "attempts" | "agreements_on_record" => CellType::Number,
        "date_agreed" | "finished_at" | "latest_date_agreed" | "checked_at" => CellType::DateTime,
        _ => CellType::Text,
    }
}

/// Where the line that counts for one row starts in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct LastLine {
    pub row: u64,
    /// Byte offset of the line in the file.
    pub at: u64,
}

/// One file read and checked: what it is and where the line that counts for each row starts.
/// The file stays open, so the second pass reads what the first one checked even if the file
/// is renamed over meanwhile.
#[derive(Debug)]
pub(crate) struct Source {
    pub path: PathBuf,
    pub kind: FileKind,
    /// Lines read, superseded ones included.
    pub lines: u64,
    /// The last line recorded for each row, in row order: one entry per row.
    pub rows: Vec<LastLine>,
    pub runs: History,
    file: File,
}

fn usage(message: String) -> AppError {
    AppError::Usage(message)
}

/// Whether the file's last byte is a newline (a run killed while writing leaves it without).
fn ends_with_newline(mut file: &File) -> std::io::Result<bool> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(false);
    }
    file.seek(SeekFrom::Start(len - 1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    file.seek(SeekFrom::Start(0))?;
    Ok(last[0] == b'\n')
}

/// The row number a line's first cell holds.
fn row_number(record: &ByteRecord) -> Option<u64> {
    let cell = unescape(&String::from_utf8_lossy(record.get(0)?));
    cell.trim().parse::<u64>().ok()
}

/// Keeps, for each row, the entry of its last line: sorted by row, ties by offset, the
/// greatest offset (the line written last) of each row stays.
pub(crate) fn last_lines(mut entries: Vec<LastLine>) -> Vec<LastLine> {
    entries.sort_unstable();
    entries.dedup_by(|later, kept| {
        let same = later.row == kept.row;
        if same {
            *kept = *later;
        }
        same
    });
    entries.shrink_to_fit();
    entries
}

/// Reads and checks one file: its kind, every line, its manifest; keeps where the last line
/// of each row starts.
pub(crate) fn read_source(path: &Path) -> Result<Source, AppError> {
    let shown = path.display();
    let cannot_read = |e: &dyn std::fmt::Display| usage(format!("cannot read '{shown}': {e}"));
    let file = File::open(path).map_err(|e| cannot_read(&e))?;
    let ends_with_newline = ends_with_newline(&file).map_err(|e| cannot_read(&e))?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .buffer_capacity(1 << 16)
        .from_reader(&file);
    let mut records = reader.byte_records();
    let header: Vec<String> = match records.next() {
        Some(Ok(h)) => h
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let text = String::from_utf8_lossy(c);
                let text = if i == 0 {
                    text.trim_start_matches('\u{feff}')
                } else {
                    &text
                };
                text.trim().to_string()
            })
            .collect(),
        Some(Err(e)) => return Err(cannot_read(&e)),
        None => {
            return Err(usage(format!(
                "'{shown}' is empty: give a results file of confirm or a report of status"
            )));
        }
    };
    let kind = FileKind::detect(&header).ok_or_else(|| {
        usage(format!(
            "'{shown}' is neither a results file of confirm nor a report of status: its header \
             line is not one of theirs"
        ))
    })?;
    let width = kind.header().len();
    let mut lines: u64 = 0;
    let mut entries = Vec::new();
    let mut records = records.peekable();
    while let Some(record) = records.next() {
        let record = record.map_err(|e| cannot_read(&e))?;
        let (line_no, at) = record.position().map_or((0, 0), |p| (p.line(), p.byte()));
        if record.len() != width {
            if records.peek().is_none() && !ends_with_newline {
                // The torn last line of a run that was killed while writing it.
                say(
                    Say::Note,
                    &format!(
                        "note: '{shown}' line {line_no} is incomplete (the run stopped while writing it): left out"
                    ),
                );
                continue;
            }
            if record.len() == 1 && record.get(0).is_some_and(<[u8]>::is_empty) {
                continue;
            }
            return Err(usage(format!(
                "'{shown}' line {line_no} has {} fields, the header {width}",
                record.len()
            )));
        }
        let row = row_number(&record).ok_or_else(|| {
            let first = String::from_utf8_lossy(record.get(0).unwrap_or_default()).into_owned();
            usage(format!(
                "'{shown}' line {line_no}: '{}' is not a row number",
                crate::domain::shorten(&unescape(&first))
            ))
        })?;
        lines = lines.saturating_add(1);
        entries.push(LastLine { row, at });
    }
    drop(records);
    drop(reader);
    Ok(Source {
        path: path.to_path_buf(),
        kind,
        lines,
        rows: last_lines(entries),
        runs: manifest::history(path),
        file,
    })
}

/// Reads back, in row order, the line that counts for each row of `source`, its cells with
/// the formula guard removed. A line that is no longer what the first pass read (the file was
/// rewritten in place meanwhile) stops the report.
fn each_row(
    source: &Source,
    mut visit: impl FnMut(&[String]) -> Result<(), BuildError>,
) -> Result<(), BuildError> {
    let shown = source.path.display();
    let changed = || {
        BuildError::Read(usage(format!(
            "'{shown}' changed while it was being read: nothing was written; make the report again"
        )))
    };
    let cannot_read =
        |e: csv::Error| BuildError::Read(usage(format!("cannot read '{shown}': {e}")));
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(&source.file);
    let mut record = ByteRecord::new();
    let mut cells: Vec<String> = Vec::new();
    let width = source.kind.header().len();
    for last in &source.rows {
        let mut at = Position::new();
        at.set_byte(last.at);
        reader.seek(at).map_err(cannot_read)?;
        let read = reader.read_byte_record(&mut record).map_err(cannot_read)?;
        if !read || record.len() != width || row_number(&record) != Some(last.row) {
            return Err(changed());
        }
        cells.clear();
        cells.extend(record.iter().map(|c| unescape(&String::from_utf8_lossy(c))));
        visit(&cells)?;
    }
    Ok(())
}

/// Rows per status (or state): the contract's words first, zeros included, then any other
/// word found, in the order first seen.
#[derive(Debug, Clone)]
pub(crate) struct Counts(Vec<(String, u64)>);

impl Counts {
    pub fn new(kind: FileKind) -> Self {
        Counts(
            kind.statuses()
                .into_iter()
                .map(|s| (s.to_string(), 0))
                .collect(),
        )
    }

    pub(crate) fn add(&mut self, word: &str) {
        match self.0.iter_mut().find(|(w, _)| w == word) {
            Some((_, n)) => *n = n.saturating_add(1),
            None => self.0.push((word.to_string(), 1)),
        }
    }

    pub(crate) fn words(&self) -> &[(String, u64)] {
        &self.0
    }
}

/// Runs `report`.
pub(crate) fn run(config: &ReportConfig) -> Result<Exit, AppError> {
    for (i, path) in config.files.iter().enumerate() {
        let id = crate::files::identity(path);
        if let Some(earlier) = config.files[..i]
            .iter()
            .find(|p| crate::files::identity(p) == id)
        {
            return Err(usage(format!(
                "'{}' is given twice (also as '{}'): give each file once",
                path.display(),
                earlier.display()
            )));
        }
    }
    let mut sources = Vec::with_capacity(config.files.len());
    for path in &config.files {
        sources.push(read_source(path)?);
    }
    let Some(kind) = sources.first().map(|s| s.kind) else {
        return Err(usage("give at least one file to report on".to_string()));
    };
    if let Some(other) = sources.iter().find(|s| s.kind != kind) {
        return Err(usage(format!(
            "'{}' is {} but '{}' is {}: a workbook is made from files of one kind",
            other.path.display(),
            other.kind.noun(),
            sources[0].path.display(),
            kind.noun()
        )));
    }
    let total = sources
        .iter()
        .fold(0usize, |n, s| n.saturating_add(s.rows.len()));
    if total >= MAX_SHEET_ROWS {
        return Err(usage(format!(
            "{total} rows do not fit on one worksheet (Excel holds at most {} under the header): \
             nothing was written; make one workbook per file, or split the input",
            MAX_SHEET_ROWS - 1
        )));
    }
    let output = &config.output;
    let cannot_write = |e: String| {
        AppError::Aborted(format!(
            "cannot write '{}': {e}; nothing was written",
            output.display()
        ))
    };
    // Rows wait in an unnamed temporary file beside the workbook rather than in the system's
    // temporary folder, which may live in memory.
    let special = crate::files::is_special(output);
    let tempdir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut workbook = Workbook::new();
    if !special {
        workbook
            .set_tempdir(tempdir)
            .map_err(|e| cannot_write(e.to_string()))?;
    }
    build(&mut workbook, kind, &sources).map_err(|e| e.into_app(&cannot_write))?;
    let saved = if special {
        // A pipe cannot be seeked: the workbook is made in memory first.
        workbook
            .save_to_buffer()
            .map_err(|e| cannot_write(e.to_string()))
            .and_then(|bytes| {
                crate::files::replace_private(output, &bytes)
                    .map_err(|e| cannot_write(e.to_string()))
            })
    } else {
        crate::files::replace_private_with(output, |file| {
            let mut out = std::io::BufWriter::with_capacity(1 << 16, file);
            workbook
                .save_to_writer(&mut out)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            std::io::Write::flush(&mut out)
        })
        .map_err(|e| cannot_write(e.to_string()))
    };
    saved?;
    say(
        Say::Summary,
        &format!(
            "wrote '{}': {} rows from {} file{} ({})",
            output.display(),
            total,
            sources.len(),
            if sources.len() == 1 { "" } else { "s" },
            kind.noun().trim_start_matches("a ")
        ),
    );
    Ok(Exit::Success)
}

/// Why the workbook could not be made: a file read back wrong, or the workbook itself.
enum BuildError {
    Read(AppError),
    Write(XlsxError),
}

impl From<XlsxError> for BuildError {
    fn from(e: XlsxError) -> Self {
        BuildError::Write(e)
    }
}

impl BuildError {
    fn into_app(self, cannot_write: &dyn Fn(String) -> AppError) -> AppError {
        match self {
            BuildError::Read(e) => e,
            BuildError::Write(e) => cannot_write(e.to_string()),
        }
    }
}

/// Keeps the widest cell of each column, for sensible column widths.
#[derive(Default)]
struct Widths(Vec<usize>);

impl Widths {
    fn see(&mut self, col: u16, chars: usize) {
        let col = usize::from(col);
        if self.0.len() <= col {
            self.0.resize(col + 1, 0);
        }
        self.0[col] = self.0[col].max(chars);
    }

    fn apply(&self, sheet: &mut Worksheet) -> Result<(), XlsxError> {
        for (col, chars) in self.0.iter().enumerate() {
            let width = (*chars as f64 + 2.0).clamp(MIN_WIDTH, MAX_WIDTH);
            sheet.set_column_width(u16::try_from(col).unwrap_or(u16::MAX), width)?;
        }
        Ok(())
    }
}

struct Formats {
    header: Format,
    header_number: Format,
    datetime: Format,
    date: Format,
    title: Format,
    bold: Format,
    note: Format,
}

impl Formats {
    fn new() -> Self {
        Formats {
            header: Format::new()
                .set_bold()
                .set_background_color(Color::RGB(HEADER_FILL))
                .set_border_bottom(FormatBorder::Thin),
            header_number: Format::new()
                .set_bold()
                .set_background_color(Color::RGB(HEADER_FILL))
                .set_border_bottom(FormatBorder::Thin)
                .set_align(FormatAlign::Right),
            datetime: Format::new().set_num_format(DATETIME_FORMAT),
            date: Format::new().set_num_format(DATE_FORMAT),
            title: Format::new().set_bold().set_font_size(14),
            bold: Format::new().set_bold(),
            note: Format::new()
                .set_italic()
                .set_font_color(Color::RGB(0x595959)),
        }
    }
}

/// A cell's text as Excel holds it (at most 32,767 characters).
fn fit(text: &str) -> &str {
    match text.char_indices().nth(MAX_CELL_CHARS) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// A date-time of the files (RFC 3339, or a bare date), in UTC, if Excel can show it.
fn parse_datetime(text: &str) -> Option<(NaiveDateTime, bool)> {
    let text = text.trim();
    let (at, date_only) = match DateTime::parse_from_rfc3339(text) {
        Ok(at) => (at.with_timezone(&Utc).naive_utc(), false),
        Err(_) => (
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()?
                .and_hms_opt(0, 0, 0)?,
            true,
        ),
    };
    use chrono::Datelike;
    (1900..=9999)
        .contains(&at.year())
        .then_some((at, date_only))
}

/// Writes one cell of the Rows sheet; returns its width in characters.
fn write_cell(
    sheet: &mut Worksheet,
    f: &Formats,
    row: u32,
    col: u16,
    kind: CellType,
    text: &str,
) -> Result<usize, XlsxError> {
    if text.is_empty() {
        return Ok(0);
    }
    match kind {
        CellType::Number => {
            if let Ok(n) = text.trim().parse::<f64>()
                && n.is_finite()
            {
                sheet.write_number(row, col, n)?;
                return Ok(text.len());
            }
        }
        CellType::DateTime => {
            if let Some((at, date_only)) = parse_datetime(text) {
                let (format, width) = if date_only {
                    (&f.date, DATE_FORMAT.len())
                } else {
                    (&f.datetime, DATETIME_FORMAT.len())
                };
                sheet.write_datetime_with_format(row, col, at, format)?;
                return Ok(width);
            }
        }
        CellType::Text => {}
    }
    let text = fit(text);
    sheet.write_string(row, col, text)?;
    Ok(text.chars().count())
}

fn to_col(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

/// Makes the workbook: the Summary sheet first, the Rows sheet written as the rows are read;
/// returns the rows counted per status.
fn build(
    workbook: &mut Workbook,
    kind: FileKind,
    sources: &[Source],
) -> Result<Counts, BuildError> {
    let f = Formats::new();
    workbook.set_properties(
        &DocProperties::new()
            .set_title(kind.title())
            .set_author("mca-attest"),
    );
    workbook.add_worksheet().set_name("Summary")?;
    let sheet = workbook.add_worksheet_with_constant_memory()?;
    sheet.set_name("Rows")?;
    let (total, counts) = write_rows(sheet, &f, kind, sources)?;
    // The Summary sheet is an ordinary one: it can be filled once the counts are known.
    let summary = workbook.worksheet_from_index(0)?;
    write_summary(summary, &f, kind, total, &counts, sources)?;
    Ok(counts)
}

/// Writes the Rows sheet, rows strictly in order (constant-memory mode forgets a row once the
/// next one starts); returns the rows written and their counts per status.
fn write_rows(
    sheet: &mut Worksheet,
    f: &Formats,
    kind: FileKind,
    sources: &[Source],
) -> Result<(u32, Counts), BuildError> {
    let several = sources.len() > 1;
    let mut columns: Vec<&str> = Vec::with_capacity(kind.header().len() + 1);
    if several {
        columns.push("source");
    }
    columns.extend_from_slice(kind.header());
    let first = usize::from(several);
    let types: Vec<CellType> = kind.header().iter().map(|h| cell_type(h)).collect();
    let mut widths = Widths::default();
    for (c, name) in columns.iter().enumerate() {
        sheet.write_string_with_format(0, to_col(c), *name, &f.header)?;
        // Room for the filter button.
        widths.see(to_col(c), name.len() + 2);
    }
    let mut counts = Counts::new(kind);
    let mut r: u32 = 0;
    for source in sources {
        let name = source.path.display().to_string();
        let name = fit(&name);
        let name_width = name.chars().count();
        each_row(source, |cells| {
            r = r.saturating_add(1);
            if several {
                sheet.write_string(r, 0, name)?;
                widths.see(0, name_width);
            }
            for (c, (text, ty)) in cells.iter().zip(&types).enumerate() {
                let col = to_col(c + first);
                let w = write_cell(sheet, f, r, col, *ty, text)?;
                widths.see(col, w);
            }
            counts.add(cells.get(kind.status_column()).map_or("", String::as_str));
            Ok(())
        })?;
    }
    let last_col = to_col(columns.len().saturating_sub(1));
    widths.apply(sheet)?;
    sheet.set_freeze_panes(1, 0)?;
    sheet.autofilter(0, 0, r, last_col)?;
    if r > 0 {
        // Tenant ids, error codes and phone numbers are text on purpose.
        sheet.ignore_error_range(1, 0, r, last_col, IgnoreError::NumberStoredAsText)?;
    }
    sheet
        .set_landscape()
        .set_print_fit_to_pages(1, 0)
        .set_repeat_rows(0, 0)?;
    Ok((r, counts))
}

/// Writes a text cell of the Summary sheet, keeping its width.
fn put(
    sheet: &mut Worksheet,
    widths: &mut Widths,
    r: u32,
    c: u16,
    s: &str,
    fmt: Option<&Format>,
) -> Result<(), XlsxError> {
    let s = fit(s);
    widths.see(c, s.chars().count());
    match fmt {
        Some(fmt) => sheet.write_string_with_format(r, c, s, fmt)?,
        None => sheet.write_string(r, c, s)?,
    };
    Ok(())
}

fn write_summary(
    sheet: &mut Worksheet,
    f: &Formats,
    kind: FileKind,
    total: u32,
    counts: &Counts,
    sources: &[Source],
) -> Result<(), XlsxError> {
    let mut widths = Widths::default();
    sheet.write_string_with_format(0, 0, kind.title(), &f.title)?;
    sheet.write_string_with_format(
        1,
        0,
        format!(
            "Made by mca-attest {} on {} from {} file{}. Times are UTC. Rows: one per input row of each file, the last line recorded for it.",
            env!("CARGO_PKG_VERSION"),
            crate::domain::rfc3339(Utc::now()),
            sources.len(),
            if sources.len() == 1 { "" } else { "s" }
        ),
        &f.note,
    )?;

    // Counts per status, and their chart beside them.
    let top: u32 = 3;
    put(
        sheet,
        &mut widths,
        top,
        0,
        kind.status_label(),
        Some(&f.header),
    )?;
    put(sheet, &mut widths, top, 1, "rows", Some(&f.header_number))?;
    let mut r = top + 1;
    for (word, n) in counts.words() {
        put(
            sheet,
            &mut widths,
            r,
            0,
            if word.is_empty() { "(blank)" } else { word },
            None,
        )?;
        sheet.write_number(r, 1, *n as f64)?;
        r += 1;
    }
    let last_count = r - 1;
    put(sheet, &mut widths, r, 0, "total", Some(&f.bold))?;
    sheet.write_number_with_format(r, 1, f64::from(total), &f.bold)?;

    let mut chart = Chart::new(ChartType::Column);
    chart
        .add_series()
        .set_name(&format!("rows per {}", kind.status_label()))
        .set_categories(("Summary", top + 1, 0, last_count, 0))
        .set_values(("Summary", top + 1, 1, last_count, 1))
        .set_data_label(ChartDataLabel::new().show_value());
    chart
        .title()
        .set_name(&format!("Rows per {}", kind.status_label()));
    chart.legend().set_hidden();
    chart.y_axis().set_min(0);
    if counts.words().iter().all(|(_, n)| *n <= 10) {
        // Whole rows only on a short axis.
        chart.y_axis().set_major_unit(1);
    }
    chart.set_width(640).set_height(300);
    sheet.insert_chart_with_offset(top, 2, &chart, 24, 0)?;

    // The files read, then the runs their manifests record.
    let mut r = (r + 2).max(top + 17);
    // Headings may run into the next cells: they do not set widths.
    sheet.write_string_with_format(r, 0, "Files", &f.bold)?;
    r += 1;
    for (c, h) in ["file", "lines", "kind", "manifest"].iter().enumerate() {
        let format = if *h == "lines" {
            &f.header_number
        } else {
            &f.header
        };
        put(sheet, &mut widths, r, to_col(c), h, Some(format))?;
    }
    r += 1;
    for s in sources {
        put(
            sheet,
            &mut widths,
            r,
            0,
            &s.path.display().to_string(),
            None,
        )?;
        put(
            sheet,
            &mut widths,
            r,
            2,
            s.kind.noun().trim_start_matches("a "),
            None,
        )?;
        sheet.write_number(r, 1, s.lines as f64)?;
        let manifest = match &s.runs {
            History::Missing => "none".to_string(),
            History::Unreadable(e) => format!("unreadable: {e}"),
            History::Runs(runs) => format!(
                "{} run{}",
                runs.len(),
                if runs.len() == 1 { "" } else { "s" }
            ),
        };
        put(sheet, &mut widths, r, 3, &manifest, None)?;
        r += 1;
    }

    r += 1;
    sheet.write_string_with_format(r, 0, "Runs (from the manifests)", &f.bold)?;
    r += 1;
    let columns = [
        "file",
        "exit_code",
        "run_id",
        "command",
        "started_at",
        "input_sha256",
        "input",
    ];
    for (c, h) in columns.iter().enumerate() {
        let format = if *h == "exit_code" {
            &f.header_number
        } else {
            &f.header
        };
        put(sheet, &mut widths, r, to_col(c), h, Some(format))?;
    }
    r += 1;
    let mut any = false;
    for s in sources {
        let History::Runs(runs) = &s.runs else {
            continue;
        };
        for run in runs {
            any = true;
            put(
                sheet,
                &mut widths,
                r,
                0,
                &s.path.display().to_string(),
                None,
            )?;
            put(sheet, &mut widths, r, 2, &run.run_id(), None)?;
            put(
                sheet,
                &mut widths,
                r,
                3,
                run.command().unwrap_or_default(),
                None,
            )?;
            let started = run.started_at();
            match parse_datetime(&started) {
                Some((at, _)) => {
                    sheet.write_datetime_with_format(r, 4, at, &f.datetime)?;
                    widths.see(4, DATETIME_FORMAT.len());
                }
                None => put(sheet, &mut widths, r, 4, &started, None)?,
            }
            if let Some(code) = run.exit_code() {
                sheet.write_number(r, 1, f64::from(code))?;
            }
            put(
                sheet,
                &mut widths,
                r,
                5,
                run.input_sha256().unwrap_or_default(),
                None,
            )?;
            put(sheet, &mut widths, r, 6, run.input(), None)?;
            r += 1;
        }
    }
    if !any {
        sheet.write_string_with_format(r, 0, "no manifest found beside the files", &f.note)?;
    }
    widths.apply(sheet)?;
    sheet.set_landscape().set_print_fit_to_pages(1, 0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Lines in any order, rows repeated: one entry per row, in row order, the one written
        /// last (the greatest offset).
        #[test]
        fn one_entry_per_row_the_last_written(rows in prop::collection::vec(0u64..20, 0..60)) {
            let entries: Vec<LastLine> = rows
                .iter()
                .enumerate()
                .map(|(i, row)| LastLine { row: *row, at: (i as u64 + 1) * 100 })
                .collect();
            let kept = last_lines(entries.clone());
            let mut expected: Vec<LastLine> = Vec::new();
            let mut distinct: Vec<u64> = rows.clone();
            distinct.sort_unstable();
            distinct.dedup();
            for row in distinct {
                let last = entries.iter().rev().find(|e| e.row == row).unwrap();
                expected.push(*last);
            }
            prop_assert_eq!(kept, expected);
        }
    }

    #[test]
    fn counts_list_every_status_of_the_contract_conflict_included() {
        let mut c = Counts::new(FileKind::Results);
        c.add("confirmed");
        c.add("conflict");
        c.add("conflict");
        c.add("odd");
        let words = c.words();
        assert!(words.contains(&("conflict".to_string(), 2)));
        assert!(words.contains(&("confirmed".to_string(), 1)));
        assert!(words.contains(&("failed".to_string(), 0)));
        assert!(!words.iter().any(|(w, _)| w == "valid"));
        assert_eq!(words.last(), Some(&("odd".to_string(), 1)));
        let states = Counts::new(FileKind::Status);
        assert_eq!(states.words().len(), CustomerState::ALL.len());
    }

    #[test]
    fn kinds_are_told_by_the_header() {
        let h = |cols: &[&str]| cols.iter().map(|c| c.to_string()).collect::<Vec<_>>();
        assert_eq!(
            FileKind::detect(&h(&RESULTS_HEADER)),
            Some(FileKind::Results)
        );
        assert_eq!(FileKind::detect(&h(&STATUS_HEADER)), Some(FileKind::Status));
        assert_eq!(FileKind::detect(&h(&["row", "status"])), None);
    }

    #[test]
    fn dates_are_read_in_utc_and_odd_ones_stay_text() {
        let (at, date_only) = parse_datetime("2024-06-14T10:00:00+02:00").unwrap();
        assert_eq!(at.to_string(), "2024-06-14 08:00:00");
        assert!(!date_only);
        assert!(parse_datetime("2024-06-14").unwrap().1);
        assert!(parse_datetime("14/06/2024").is_none());
        assert!(parse_datetime("1850-01-01T00:00:00Z").is_none());
    }

    #[test]
    fn long_text_is_cut_to_what_a_cell_holds() {
        let long = "é".repeat(MAX_CELL_CHARS + 10);
        assert_eq!(fit(&long).chars().count(), MAX_CELL_CHARS);
        assert_eq!(fit("short"), "short");
    }
}
