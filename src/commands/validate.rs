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
use crate::validation::{Validator, Verdict, classify_rows};

pub const STATUSES: [&str; 3] = ["valid", "invalid", "duplicate"];

pub fn run(args: ValidateArgs) -> Result<Exit, AppError> {
    let clock = RunClock::start();
    let input = InputConfig::try_from(&args.input_args)?;
    let target = output_target(&args.input, args.output.as_deref(), "validation.csv");
    if let Some(path) = target.path() {
        super::refuse_same_file(path, &args.input, "the report file")?;
    }
    let mut reader = InputReader::open(&args.input, &input_options(&input))?;
    // Hash the input for the manifest on another core while this one validates.
    let fingerprint = {
        let (path, delimiter) = (args.input.clone(), input.delimiter);
        std::thread::spawn(move || crate::manifest::fingerprint_input(&path, delimiter))
    };
    let validator = Validator {
        default_date: input.default_date,
    };
    // A validation report is derived data: it may be replaced, unlike a results file.
    let mut writer = ReportWriter::create::<ResultRecord>(target.clone(), ExistingFile::Overwrite)?;
    let position = Arc::new(ReadPosition::new(reader.size()));
    let mut tally = Tally::default();
    let mut write_error = None;
    classify_rows(&mut reader, &validator, &position, |verdict| {
        let record = match verdict {
            Verdict::Valid(row, c) => ResultRecord::from_confirmation(row, &c, RowStatus::Valid),
            Verdict::Invalid(raw, message) => {
                ResultRecord::from_raw(&raw, RowStatus::Invalid, message)
            }
            Verdict::Duplicate(row, c, earlier) => {
                let mut r = ResultRecord::from_confirmation(row, &c, RowStatus::Duplicate);
                r.message = format!("same tenant and signer as row {earlier}");
                r
            }
        };
        tally.add(record.status_word());
        match writer.write_buffered(&record) {
            Ok(()) => true,
            Err(e) => {
                write_error = Some(e);
                false
            }
        }
    })?;
    if let Some(e) = write_error {
        return Err(e.into());
    }
    writer.finish()?;
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
    summary.set_input(fingerprint.join().ok().and_then(Result::ok));
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
