//! `mca-attest validate`: the offline check. Same reader and rules as `confirm`, no network,
//! no credentials; statuses `valid`, `invalid`, `duplicate`.

use std::fmt::Write as _;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::config::ValidateConfig;
use crate::domain::SignerKey;
use crate::domain::{RowNumber, RowStatus, TenantId};
use crate::error::{AppError, Exit};
use crate::input::{Column, Fingerprinting, InputReader, RawRow};
use crate::progress::ReadPosition;
use crate::results::{Cell, ReportFile, ReportWriter, ResultRecord};
use crate::summary::{RunClock, RunSummary};
use crate::tally::Tally;
use crate::validation::{Checked, Clock, DuplicateIndex, Validator};

pub const STATUSES: [RowStatus; 3] = [RowStatus::Valid, RowStatus::Invalid, RowStatus::Duplicate];

pub fn run(config: ValidateConfig) -> Result<Exit, AppError> {
    let clock = RunClock::start();
    let files = &config.files;
    let input = files
        .input
        .path()
        .ok_or_else(|| AppError::Usage("validate needs an input file".into()))?;
    let mut reader = InputReader::open(input, &config.input.signer_options())?;
    // Hash the input for the manifest beside the run (the row count comes from the run).
    let fingerprint = Fingerprinting::start(&reader, false);
    let validator = Validator {
        default_date: config.input.default_date,
    };
    // A validation report is derived data: it may be replaced, unlike a results file (which
    // `into_writer` refuses to replace).
    let report = ReportFile::open(&files.report, files.mode)?;
    let written = report.regular_path().map(std::path::Path::to_path_buf);
    let lock = report.lock();
    let writer = report.into_writer::<ResultRecord>()?;
    let position = Arc::new(ReadPosition::new(reader.size()));
    // Reading and checking on this thread, finding duplicates and writing the report on
    // another: the two halves cost about the same, and the machine has two cores. Rows travel
    // in batches, their text in one buffer per batch, so the hand-over costs little per row
    // and no allocation made here is freed there.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(4);
    let duplicates = DuplicateIndex::with_capacity(reader.estimated_rows());
    let report = std::thread::spawn(move || write_report(writer, duplicates, rx));
    let mut batch = Batch::default();
    let mut sent = Ok(());
    let mut now = Clock::live();
    reader.for_each_row_ref(&position, |raw| {
        match validator.check_lent(raw, &mut now) {
            Ok(checked) => batch.push_valid(raw.row, &checked),
            Err(message) => batch.push_invalid(raw, &message),
        }
        if batch.rows.len() == BATCH {
            // The next batch starts as large as this one grew: no growing (and copying) again.
            let next = Batch::with_capacity(batch.text.len());
            sent = tx.send(std::mem::replace(&mut batch, next));
        }
        sent.is_ok()
    })?;
    if sent.is_ok() && !batch.rows.is_empty() {
        let _ = tx.send(batch);
    }
    drop(tx);
    let (tally, index_bytes, first_invalid) = report
        .join()
        .map_err(|_| AppError::Aborted("the report writer stopped unexpectedly".into()))??;
    if tally.total() == 0 {
        crate::console::say(
            crate::console::Kind::Note,
            &format!(
                "note: '{}' has a header but no data rows{}",
                input.display(),
                crate::summary::empty_rows_note(reader.empty_rows())
            ),
        );
    }
    let exit = Exit::of_run(None, tally.problems());
    let mut summary = RunSummary::new(
        "validate",
        &clock,
        &tally,
        &STATUSES,
        files.input.to_string(),
        files.report.to_string(),
        exit.code(),
    );
    summary.set_input(fingerprint.finish_with_rows(reader.records_read()));
    summary.empty_rows_skipped = reader.empty_rows();
    summary.duplicate_index_bytes = Some(index_bytes as u64);
    crate::run::publish(&summary, files, written.as_deref())?;
    if let (Some(written), Some(report)) = (&written, files.report.path()) {
        crate::results::promote(report, written).map_err(|e| {
            AppError::Aborted(format!("cannot replace '{}': {e}", report.display()))
        })?;
    }
    drop(lock);
    if let Some(hint) = invalid_hint(&first_invalid, tally.get(RowStatus::Invalid)) {
        crate::console::say(crate::console::Kind::Hint, &hint);
    }
    Ok(exit)
}

const BATCH: usize = 512;

/// Verdicts on consecutive rows, their report cells (formula escaping not yet applied) as
/// text in one buffer.
#[derive(Default)]
struct Batch {
    text: String,
    rows: Vec<BatchRow>,
}

struct BatchRow {
    row: RowNumber,
    /// The tenant and date of a valid row (its cells are their formatted forms); `None` for
    /// an invalid one.
    valid: Option<(TenantId, DateTime<Utc>)>,
    /// Where the row's text starts in the batch's text, and where each of the six input
    /// cells and the message end.
    start: usize,
    ends: [usize; 7],
}

impl Batch {
    fn with_capacity(text: usize) -> Self {
        Batch {
            text: String::with_capacity(text),
            rows: Vec::with_capacity(BATCH),
        }
    }

    /// A valid row: its signer's checked cells as text (the tenant and date are formatted,
    /// and the duplicate key made, on the writing side: the reading side has the more work).
    fn push_valid(&mut self, row: RowNumber, c: &Checked<'_>) {
        let start = self.text.len();
        let mut ends = [start; 7];
        let cells = [
            c.first_name,
            c.last_name,
            c.email,
            c.phone_number.unwrap_or_default(),
        ];
        for (end, cell) in ends[1..5].iter_mut().zip(cells) {
            self.text.push_str(cell);
            *end = self.text.len();
        }
        ends[5] = self.text.len();
        ends[6] = self.text.len();
        self.rows.push(BatchRow {
            row,
            valid: Some((c.tenant, c.date_agreed.as_datetime())),
            start,
            ends,
        });
    }

    /// An invalid row: its cells as shown, and the message.
    fn push_invalid(&mut self, raw: &RawRow, message: &str) {
        let start = self.text.len();
        let mut ends = [0; 7];
        for (end, column) in ends.iter_mut().zip(Column::ALL) {
            self.text.push_str(&raw.cell_for_display(column));
            *end = self.text.len();
        }
        self.text.push_str(message);
        ends[6] = self.text.len();
        self.rows.push(BatchRow {
            row: raw.row,
            valid: None,
            start,
            ends,
        });
    }
}

/// The last `date_agreed` formatted (RFC 3339, to the second): a wave's rows mostly share
/// their date, so it is formatted again only when the date changes.
#[derive(Default)]
struct Rfc3339Cache {
    at: Option<DateTime<Utc>>,
    text: String,
}

impl Rfc3339Cache {
    fn get(&mut self, at: DateTime<Utc>) -> &str {
        if self.at != Some(at) {
            self.text = crate::domain::rfc3339(at);
            self.at = Some(at);
        }
        &self.text
    }
}

/// Finds the duplicates and writes the report from batches of verdicts (in input order);
/// returns the counts per status and the bytes the duplicate index held.
fn write_report(
    mut writer: ReportWriter,
    mut duplicates: DuplicateIndex,
    batches: std::sync::mpsc::Receiver<Batch>,
) -> Result<Written, AppError> {
    let mut tally = Tally::default();
    let mut first_invalid = Vec::new();
    let mut earlier = Vec::with_capacity(BATCH);
    let mut keys = Vec::with_capacity(BATCH);
    let mut date_cache = Rfc3339Cache::default();
    let mut message = String::new();
    for batch in batches {
        // The time the batch's rows were checked, to the second.
        let finished_at = crate::domain::rfc3339(Utc::now());
        // The index lookups of a batch in one tight loop, so that the processor overlaps
        // their cache misses (the index is far larger than the caches).
        let text = |r: &BatchRow, i: usize| {
            let start = if i == 0 { r.start } else { r.ends[i - 1] };
            batch.text.get(start..r.ends[i]).unwrap_or_default()
        };
        // The keys first (the same key as `Checked::key`, from the same checked values), then
        // the lookups in a loop of their own.
        keys.clear();
        keys.extend(batch.rows.iter().map(|r| {
            r.valid.map(|(tenant, _)| {
                SignerKey::of(&tenant, text(r, 1), text(r, 2), text(r, 3), text(r, 4))
            })
        }));
        earlier.clear();
        earlier.extend(
            batch
                .rows
                .iter()
                .zip(&keys)
                .map(|(r, key)| key.and_then(|key| duplicates.first_seen(key, r.row))),
        );
        for (r, earlier) in batch.rows.iter().zip(earlier.iter().copied()) {
            let mut row = itoa::Buffer::new();
            let mut uuid = uuid::Uuid::encode_buffer();
            // The cells straight from the batch's text: the tenant and date of a valid row in
            // their normal forms, as the results file has them.
            let (tenant, date) = match r.valid {
                Some((tenant, date)) => (
                    &*tenant.as_uuid().hyphenated().encode_lower(&mut uuid),
                    date_cache.get(date),
                ),
                None => (text(r, 0), text(r, 5)),
            };
            message.clear();
            let status = match (r.valid, earlier) {
                (None, _) => {
                    message.push_str(text(r, 6));
                    if first_invalid.len() < SHOWN_INVALID {
                        first_invalid.push((r.row, text(r, 6).to_string()));
                    }
                    RowStatus::Invalid
                }
                (Some(_), None) => RowStatus::Valid,
                (Some(_), Some(earlier)) => {
                    let _ = write!(message, "same tenant and signer as row {earlier}");
                    RowStatus::Duplicate
                }
            };
            tally.add(status);
            // The results file's columns (`ResultRecord`), in its order. The tenant and date
            // of a valid row are the tool's own normal forms (plain); an invalid row's cells
            // are the input's text.
            let made = |text| match r.valid {
                Some(_) => Cell::Plain(text),
                None => Cell::Text(text),
            };
            let cells = [
                Cell::Plain(row.format(r.row.0)),
                made(tenant),
                Cell::Text(text(r, 1)),
                Cell::Text(text(r, 2)),
                Cell::Text(text(r, 3)),
                Cell::Text(text(r, 4)),
                made(date),
                Cell::Plain(status.as_str()),
                Cell::Plain(""),
                Cell::Plain(""),
                Cell::Plain(""),
                Cell::Text(&message),
                Cell::Plain("0"),
                Cell::Plain(""),
                Cell::Plain(""),
                Cell::Plain(""),
                Cell::Plain(&finished_at),
            ];
            // Dropping the receiver (by returning) stops the reader.
            writer.write_borrowed_buffered::<ResultRecord>(&cells)?;
        }
    }
    writer.finish()?;
    Ok((tally, duplicates.heap_bytes(), first_invalid))
}

/// What writing the report found: the counts, the bytes the duplicate index held, and the
/// first invalid rows (row number, message).
type Written = (Tally<RowStatus>, usize, Vec<(RowNumber, String)>);

/// Invalid rows shown on stderr, so the first ones need no digging in the report.
const SHOWN_INVALID: usize = 10;

/// The first invalid rows with their messages, and how many more the report holds.
fn invalid_hint(first: &[(RowNumber, String)], invalid: u64) -> Option<String> {
    if first.is_empty() {
        return None;
    }
    let mut text = String::from("invalid rows (the message names the field and the reason):");
    for (row, message) in first {
        text.push_str(&format!(
            "\n  {}: {}",
            row.named(),
            crate::api::error::printable(message)
        ));
    }
    let more = invalid.saturating_sub(first.len() as u64);
    if more > 0 {
        text.push_str(&format!("\n  ... and {more} more in the report"));
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_cache_formats_as_the_results_file_does() {
        let mut cache = Rfc3339Cache::default();
        for at in [
            Utc.with_ymd_and_hms(2024, 6, 4, 7, 5, 9).unwrap(),
            Utc.with_ymd_and_hms(2024, 6, 4, 7, 5, 9).unwrap()
                + chrono::Duration::milliseconds(999),
            Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
        ] {
            assert_eq!(cache.get(at), crate::domain::rfc3339(at));
        }
    }
}
