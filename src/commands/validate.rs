//! `mca-attest validate`: the offline check. Same reader and rules as `confirm`, no network,
//! no credentials; statuses `valid`, `invalid`, `duplicate`, `conflict`.

use crate::config::ValidateConfig;
use crate::domain::RowStatus;
use crate::error::{AppError, Exit};
use crate::input::{Fingerprinting, InputReader};
use crate::progress::ReadPosition;
use crate::results::{FirstInvalid, Report, ResultRecord};
use crate::summary::{RunClock, RunSummary};
use crate::tally::Tally;
use crate::validation::{Validator, Verdict, classify_rows};

pub(crate) const STATUSES: [RowStatus; 4] = [
    RowStatus::Valid,
    RowStatus::Invalid,
    RowStatus::Duplicate,
    RowStatus::Conflict,
];

pub(crate) fn run(config: ValidateConfig) -> Result<Exit, AppError> {
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
    let mut report = Report::open(&files.report, files.mode)?;
    let mut writer = report.writer::<ResultRecord>(false)?;
    let position = ReadPosition::new(reader.size());
    let mut tally = Tally::default();
    let mut first_invalid = FirstInvalid::default();
    let mut failed = None;
    classify_rows(&mut reader, &validator, &[], &position, |verdict| {
        let record = record_of(verdict);
        let status = record.row_status();
        tally.add(status);
        first_invalid.note(&record);
        match writer.write_buffered(&record) {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    })?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    writer.finish()?;
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
    summary.duplicate_index_bytes = Some(
        position
            .index_bytes
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    crate::run::publish(&summary, files, &report)?;
    report.complete()?;
    if let Some(hint) = first_invalid.hint(tally.get(RowStatus::Invalid)) {
        crate::console::say(crate::console::Kind::Hint, &hint);
    }
    Ok(exit)
}

/// The report line of a row: the same statuses and messages `confirm` gives before sending.
fn record_of(verdict: Verdict) -> ResultRecord {
    match verdict {
        Verdict::Valid(row, c) => ResultRecord::from_confirmation(row, c, RowStatus::Valid),
        Verdict::Invalid(raw, message) => ResultRecord::from_raw(&raw, RowStatus::Invalid, message),
        Verdict::Duplicate(row, c, earlier) => {
            let mut record = ResultRecord::from_confirmation(row, c, RowStatus::Duplicate);
            record.message = format!("same tenant and signer as {}", earlier.named());
            record
        }
        Verdict::Conflict(row, c, message) => {
            let mut record = ResultRecord::from_confirmation(row, c, RowStatus::Conflict);
            record.message = message;
            record
        }
    }
}
