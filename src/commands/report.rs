//! `report`: an Excel workbook of one or more `confirm` results files or `status` reports, for
//! people to open. Sheet `Summary`: rows per status (or state) with a chart, the files read and
//! the runs their manifests record; sheet `Rows`: one row per input row (the last line recorded
//! for it wins), in input order, every column of the CSV, dates as date cells, ids and phone
//! numbers as text without the formula guard.
//!
//! Everything is read and checked before anything is written (exit 2, nothing written); the
//! workbook is written to a temporary file beside `-o` (owner-only) and renamed over it (a
//! failure there is exit 3).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use rust_xlsxwriter::{
    Chart, ChartDataLabel, ChartType, Color, DocProperties, Format, FormatAlign, FormatBorder,
    IgnoreError, Workbook, Worksheet, XlsxError,
};

use crate::commands::status::STATUS_HEADER;
use crate::config::ReportConfig;
use crate::console::{Kind as Say, say};
use crate::domain::RowStatus;
use crate::error::{AppError, Exit};
use crate::manifest::manifest_path;
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
pub enum FileKind {
    /// A `confirm` results file.
    Results,
    /// A `status` report.
    Status,
}

impl FileKind {
    /// The kind whose header is `header`, if any.
    pub fn detect(header: &[String]) -> Option<FileKind> {
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

    pub fn header(self) -> &'static [&'static str] {
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

/// One line of an input file, its cells with the formula guard removed.
#[derive(Debug, Clone)]
pub struct Line {
    pub row: u64,
    pub cells: Vec<String>,
}

/// What a file's manifest says.
#[derive(Debug, Clone)]
pub enum Runs {
    Missing,
    Unreadable(String),
    Recorded(Vec<serde_json::Value>),
}

/// One file read.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub kind: FileKind,
    pub lines: Vec<Line>,
    pub runs: Runs,
}

fn usage(message: String) -> AppError {
    AppError::Usage(message)
}

/// Reads and checks one file: its kind, every line, its manifest.
pub fn read_source(path: &Path) -> Result<Source, AppError> {
    let shown = path.display();
    let bytes = std::fs::read(path).map_err(|e| usage(format!("cannot read '{shown}': {e}")))?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes.as_slice());
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
        Some(Err(e)) => return Err(usage(format!("cannot read '{shown}': {e}"))),
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
    let ends_with_newline = bytes.ends_with(b"\n");
    let mut lines = Vec::new();
    let mut records = records.peekable();
    while let Some(record) = records.next() {
        let record = record.map_err(|e| usage(format!("cannot read '{shown}': {e}")))?;
        let line_no = record.position().map_or(0, |p| p.line());
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
            if record.len() == 1 && record.get(0).is_some_and(|c| c.is_empty()) {
                continue;
            }
            return Err(usage(format!(
                "'{shown}' line {line_no} has {} fields, the header {width}",
                record.len()
            )));
        }
        let cells: Vec<String> = record
            .iter()
            .map(|c| unescape(&String::from_utf8_lossy(c)))
            .collect();
        let row = cells
            .first()
            .and_then(|c| c.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                usage(format!(
                    "'{shown}' line {line_no}: '{}' is not a row number",
                    crate::domain::shorten(cells.first().map_or("", String::as_str))
                ))
            })?;
        lines.push(Line { row, cells });
    }
    Ok(Source {
        path: path.to_path_buf(),
        kind,
        lines,
        runs: read_runs(path),
    })
}

fn read_runs(path: &Path) -> Runs {
    let manifest = manifest_path(path);
    let text = match std::fs::read_to_string(&manifest) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Runs::Missing,
        Err(e) => return Runs::Unreadable(e.to_string()),
    };
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(v) => match v.get("runs").and_then(serde_json::Value::as_array) {
            Some(runs) => Runs::Recorded(runs.clone()),
            None => Runs::Unreadable("no list of runs".to_string()),
        },
        Err(e) => Runs::Unreadable(e.to_string()),
    }
}

/// The rows of all files: the last line for a (row, tenant) wins, files read in the given
/// order; sorted by row number (input order), ties in the order first seen.
pub fn merge(sources: &[Source]) -> Vec<Line> {
    let mut index: HashMap<(u64, String), usize> = HashMap::new();
    let mut rows: Vec<Line> = Vec::new();
    for line in sources.iter().flat_map(|s| &s.lines) {
        let tenant = line
            .cells
            .get(1)
            .map(|t| t.trim().to_ascii_lowercase())
            .unwrap_or_default();
        match index.get(&(line.row, tenant.clone())) {
            Some(&i) => rows[i] = line.clone(),
            None => {
                index.insert((line.row, tenant), rows.len());
                rows.push(line.clone());
            }
        }
    }
    rows.sort_by_key(|l| l.row);
    rows
}

/// Rows per status (or state): the contract's words first, zeros included, then any other
/// word found, in the order first seen.
pub fn counts(kind: FileKind, rows: &[Line]) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = kind
        .statuses()
        .into_iter()
        .map(|s| (s.to_string(), 0))
        .collect();
    let column = kind.status_column();
    for line in rows {
        let word = line.cells.get(column).map_or("", String::as_str);
        match out.iter_mut().find(|(w, _)| w == word) {
            Some((_, n)) => *n += 1,
            None => out.push((word.to_string(), 1)),
        }
    }
    out
}

/// Runs `report`.
pub fn run(config: &ReportConfig) -> Result<Exit, AppError> {
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
    let rows = merge(&sources);
    if rows.len() >= MAX_SHEET_ROWS {
        return Err(usage(format!(
            "{} rows do not fit on one worksheet (at most {})",
            rows.len(),
            MAX_SHEET_ROWS - 1
        )));
    }
    let counts = counts(kind, &rows);
    let write_error = |e: String| {
        AppError::Aborted(format!(
            "cannot write '{}': {e}; nothing was written",
            config.output.display()
        ))
    };
    let bytes = build(kind, &rows, &counts, &sources)
        .and_then(|mut wb| wb.save_to_buffer())
        .map_err(|e| write_error(e.to_string()))?;
    crate::files::replace_private(&config.output, &bytes)
        .map_err(|e| write_error(e.to_string()))?;
    say(
        Say::Summary,
        &format!(
            "wrote '{}': {} rows from {} file{} ({})",
            config.output.display(),
            rows.len(),
            sources.len(),
            if sources.len() == 1 { "" } else { "s" },
            kind.noun().trim_start_matches("a ")
        ),
    );
    Ok(Exit::Success)
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

fn to_row(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn to_col(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

fn build(
    kind: FileKind,
    rows: &[Line],
    counts: &[(String, u64)],
    sources: &[Source],
) -> Result<Workbook, XlsxError> {
    let f = Formats::new();
    let mut workbook = Workbook::new();
    workbook.set_properties(
        &DocProperties::new()
            .set_title(kind.title())
            .set_author("mca-attest"),
    );
    let summary = workbook.add_worksheet();
    summary.set_name("Summary")?;
    write_summary(summary, &f, kind, rows.len(), counts, sources)?;
    let sheet = workbook.add_worksheet();
    sheet.set_name("Rows")?;
    write_rows(sheet, &f, kind, rows)?;
    Ok(workbook)
}

fn write_rows(
    sheet: &mut Worksheet,
    f: &Formats,
    kind: FileKind,
    rows: &[Line],
) -> Result<(), XlsxError> {
    let header = kind.header();
    let types: Vec<CellType> = header.iter().map(|h| cell_type(h)).collect();
    let mut widths = Widths::default();
    for (c, name) in header.iter().enumerate() {
        sheet.write_string_with_format(0, to_col(c), *name, &f.header)?;
        // Room for the filter button.
        widths.see(to_col(c), name.len() + 2);
    }
    for (r, line) in rows.iter().enumerate() {
        let r = to_row(r + 1);
        for (c, (text, ty)) in line.cells.iter().zip(&types).enumerate() {
            let w = write_cell(sheet, f, r, to_col(c), *ty, text)?;
            widths.see(to_col(c), w);
        }
    }
    let last_row = to_row(rows.len());
    let last_col = to_col(header.len() - 1);
    widths.apply(sheet)?;
    sheet.set_freeze_panes(1, 0)?;
    sheet.autofilter(0, 0, last_row, last_col)?;
    if last_row > 0 {
        // Tenant ids, error codes and phone numbers are text on purpose.
        sheet.ignore_error_range(1, 0, last_row, last_col, IgnoreError::NumberStoredAsText)?;
    }
    sheet
        .set_landscape()
        .set_print_fit_to_pages(1, 0)
        .set_repeat_rows(0, 0)?;
    Ok(())
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
    total: usize,
    counts: &[(String, u64)],
    sources: &[Source],
) -> Result<(), XlsxError> {
    let mut widths = Widths::default();
    sheet.write_string_with_format(0, 0, kind.title(), &f.title)?;
    sheet.write_string_with_format(
        1,
        0,
        format!(
            "Made by mca-attest {} on {} from {} file{}. Times are UTC. Rows: one per input row, the last line recorded for it.",
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
    for (word, n) in counts {
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
    sheet.write_number_with_format(r, 1, total as f64, &f.bold)?;

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
    if counts.iter().all(|(_, n)| *n <= 10) {
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
        sheet.write_number(r, 1, s.lines.len() as f64)?;
        let manifest = match &s.runs {
            Runs::Missing => "none".to_string(),
            Runs::Unreadable(e) => format!("unreadable: {e}"),
            Runs::Recorded(runs) => format!(
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
        let Runs::Recorded(runs) = &s.runs else {
            continue;
        };
        for run in runs {
            any = true;
            let field = |name: &str| match run.get(name) {
                Some(serde_json::Value::String(v)) => v.clone(),
                Some(serde_json::Value::Null) | None => String::new(),
                Some(v) => v.to_string(),
            };
            put(
                sheet,
                &mut widths,
                r,
                0,
                &s.path.display().to_string(),
                None,
            )?;
            put(sheet, &mut widths, r, 2, &field("run_id"), None)?;
            put(sheet, &mut widths, r, 3, &field("command"), None)?;
            let started = field("started_at");
            match parse_datetime(&started) {
                Some((at, _)) => {
                    sheet.write_datetime_with_format(r, 4, at, &f.datetime)?;
                    widths.see(4, DATETIME_FORMAT.len());
                }
                None => put(sheet, &mut widths, r, 4, &started, None)?,
            }
            match run.get("exit_code").and_then(serde_json::Value::as_f64) {
                Some(code) => {
                    sheet.write_number(r, 1, code)?;
                }
                None => put(sheet, &mut widths, r, 1, &field("exit_code"), None)?,
            }
            put(sheet, &mut widths, r, 5, &field("input_sha256"), None)?;
            put(sheet, &mut widths, r, 6, &field("input"), None)?;
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

    fn line(row: u64, tenant: &str, status: &str) -> Line {
        let mut cells = vec![String::new(); RESULTS_HEADER.len()];
        cells[0] = row.to_string();
        cells[1] = tenant.to_string();
        cells[7] = status.to_string();
        Line { row, cells }
    }

    fn source(lines: Vec<Line>) -> Source {
        Source {
            path: PathBuf::from("r.csv"),
            kind: FileKind::Results,
            lines,
            runs: Runs::Missing,
        }
    }

    #[test]
    fn the_last_line_for_a_row_wins_and_rows_keep_input_order() {
        let a = source(vec![
            line(2, "T2", "failed"),
            line(1, "t1", "confirmed"),
            line(2, "t2", "confirmed"),
        ]);
        let b = source(vec![
            line(3, "t3", "invalid"),
            line(1, "t1", "already_confirmed"),
        ]);
        let rows = merge(&[a, b]);
        let got: Vec<(u64, &str)> = rows.iter().map(|l| (l.row, l.cells[7].as_str())).collect();
        assert_eq!(
            got,
            [(1, "already_confirmed"), (2, "confirmed"), (3, "invalid")]
        );
        let c = counts(FileKind::Results, &rows);
        assert!(c.contains(&("confirmed".to_string(), 1)));
        assert!(c.contains(&("failed".to_string(), 0)));
        assert!(!c.iter().any(|(w, _)| w == "valid"));
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
