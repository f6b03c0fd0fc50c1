//! `mca-attest validate`: the offline check. Same reader and rules as `confirm`, no network,
//! no credentials; statuses `valid`, `invalid`, `duplicate`.

use std::sync::Arc;

use crate::cli::ValidateArgs;
use crate::config::{InputConfig, output_target};
use crate::domain::RowStatus;
use crate::error::{AppError, Exit};
use crate::input::{Column, InputOptions, InputReader};
use crate::progress::{ReadPosition, Tally};
use crate::results::{ExistingFile, ReportRecord, ReportWriter, ResultRecord};
use crate::summary::{Publish, RunClock, RunSummary};
use crate::validation::{DuplicateIndex, Validator, Verdict};

pub const STATUSES: [&str; 3] = ["valid", "invalid", "duplicate"];

pub fn run(args: ValidateArgs) -> Result<Exit, AppError> {
    let clock = RunClock::start();
    let input = InputConfig::try_from(&args.input_args)?;
    let target = output_target(&args.input, args.output.as_deref(), "validation.csv");
    if let Some(path) = target.path() {
        super::refuse_same_file(path, &args.input, "the report file")?;
    }
    let mut reader = InputReader::open(&args.input, &input_options(&input))?;
    // Hash the input for the manifest beside the run (the row count comes from the run).
    let fingerprint = {
        let path = args.input.clone();
        std::thread::spawn(move || crate::manifest::sha256_file(&path))
    };
    let validator = Validator {
        default_date: input.default_date,
    };
    // A validation report is derived data: it may be replaced, unlike a results file.
    let writer = ReportWriter::create::<ResultRecord>(target.clone(), ExistingFile::Overwrite)?;
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
        eprintln!(
            "note: '{}' has a header but no data rows",
            args.input.display()
        );
    }
    let exit = if tally.get("invalid") > 0 {
        Exit::RowProblems
    } else {
        Exit::Success
    };
    let mut summary = RunSummary::new(
        "validate",
        &clock,
        &tally,
        &STATUSES,
        &args.input,
        target.to_string(),
        exit.code(),
    );
    summary.set_input(fingerprint.join().ok().and_then(Result::ok).map(|sha256| {
        crate::manifest::InputFingerprint {
            sha256,
            rows: tally.total(),
        }
    }));
    summary.duplicate_index_bytes = Some(index_bytes as u64);
    summary.publish(
        &tally,
        &STATUSES,
        Publish {
            summary_json: args.summary_json.as_deref(),
            report: target.path(),
            append: false,
        },
    )?;
    Ok(exit)
}

const BATCH: usize = 512;

/// Finds the duplicates and writes the report from batches of verdicts (in input order);
/// returns the counts per status and the bytes the duplicate index held.
fn write_report(
    mut writer: ReportWriter,
    mut duplicates: DuplicateIndex,
    batches: std::sync::mpsc::Receiver<Vec<Verdict>>,
) -> Result<(Tally, usize), AppError> {
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
            tally.add(record.status_word());
            // Dropping the receiver (by returning) stops the reader.
            writer.write_buffered(&record)?;
        }
    }
    writer.finish()?;
    Ok((tally, duplicates.heap_bytes()))
}

/// The columns `validate` and `confirm` require: `date_agreed` only when no default fills it.
pub fn input_options(input: &InputConfig) -> InputOptions {
    let mut required = vec![
        Column::TenantId,
        Column::FirstName,
        Column::LastName,
        Column::Email,
    ];
    if input.default_date.is_none() {
        required.push(Column::DateAgreed);
    }
    InputOptions {
        delimiter: input.delimiter,
        required,
    }
}
