//! `mca-attest validate`: the offline check. Same reader and rules as `confirm`, no network,
//! no credentials; statuses `valid`, `invalid`, `duplicate`.

use std::sync::Arc;

use crate::config::ValidateConfig;
use crate::domain::RowStatus;
use crate::error::{AppError, Exit};
use crate::input::InputReader;
use crate::progress::ReadPosition;
use crate::results::{ReportFile, ReportRecord, ReportWriter, ResultRecord};
use crate::summary::{RunClock, RunSummary};
use crate::tally::Tally;
use crate::validation::{DuplicateIndex, Validator, Verdict};

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
    let fingerprint = {
        let path = input.to_path_buf();
        std::thread::spawn(move || crate::fingerprint::sha256_file(&path))
    };
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
    // Reading and checking on this thread, building and writing the report on another: the two
    // halves cost about the same, and the machine has two cores. Rows travel in batches so the
    // hand-over costs little per row.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Verdict>>(4);
    let duplicates = DuplicateIndex::with_capacity(reader.estimated_rows());
    let report = std::thread::spawn(move || write_report(writer, duplicates, rx));
    let mut batch = Vec::with_capacity(BATCH);
    let mut sent = Ok(());
    reader.for_each_row(&position, |raw| {
        batch.push(validator.check(raw));
        if batch.len() == BATCH {
            sent = tx.send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)));
        }
        sent.is_ok()
    })?;
    if sent.is_ok() && !batch.is_empty() {
        let _ = tx.send(batch);
    }
    drop(tx);
    let (tally, index_bytes) = report
        .join()
        .map_err(|_| AppError::Aborted("the report writer stopped unexpectedly".into()))??;
    if tally.total() == 0 {
        crate::console::say(
            crate::console::Kind::Note,
            &format!("note: '{}' has a header but no data rows", input.display()),
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
    summary.set_input(fingerprint.join().ok().and_then(Result::ok).map(|sha256| {
        crate::fingerprint::InputFingerprint {
            sha256,
            rows: tally.total(),
        }
    }));
    summary.duplicate_index_bytes = Some(index_bytes as u64);
    crate::run::publish(&summary, files, written.as_deref())?;
    if let (Some(written), Some(report)) = (&written, files.report.path()) {
        crate::results::promote(report, written).map_err(|e| {
            AppError::Aborted(format!("cannot replace '{}': {e}", report.display()))
        })?;
    }
    drop(lock);
    Ok(exit)
}

const BATCH: usize = 512;

/// Finds the duplicates and writes the report from batches of verdicts (in input order);
/// returns the counts per status and the bytes the duplicate index held.
fn write_report(
    mut writer: ReportWriter,
    mut duplicates: DuplicateIndex,
    batches: std::sync::mpsc::Receiver<Vec<Verdict>>,
) -> Result<(Tally<RowStatus>, usize), AppError> {
    let mut tally = Tally::default();
    for batch in batches {
        for verdict in batch {
            let record = match duplicates.classify(verdict) {
                Verdict::Valid(row, c) => ResultRecord::from_confirmation(row, c, RowStatus::Valid),
                Verdict::Invalid(raw, message) => {
                    ResultRecord::from_raw(&raw, RowStatus::Invalid, message)
                }
                Verdict::Duplicate(row, c, earlier) => {
                    let mut r = ResultRecord::from_confirmation(row, c, RowStatus::Duplicate);
                    r.message = format!("same tenant and signer as row {earlier}");
                    r
                }
            };
            tally.add(record.status());
            // Dropping the receiver (by returning) stops the reader.
            writer.write_buffered(&record)?;
        }
    }
    writer.finish()?;
    Ok((tally, duplicates.heap_bytes()))
}
