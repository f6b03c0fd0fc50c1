//! Fuzz target: the input CSV reader (`mca_attest::input`) and the row validator with its
//! duplicate index (`mca_attest::validation`), as `confirm`, `validate` and `status` use them.
//!
//! The reader only opens paths, so each input is written to one file in a per-process temporary
//! directory, overwritten on every iteration, then read three times, under the options the
//! commands use:
//! - `confirm`/`validate` without `--delimiter` (separator detected from the header line; the
//!   signer columns and `date_agreed` required): every row validated by hand
//!   (`Validator::validate_row`, `Validator::check`);
//! - `confirm --delimiter ',' --default-date-agreed 2024-06-14` (no `date_agreed` column
//!   needed): the library's own loop, `classify_rows`;
//! - `status --delimiter ';'` (only the tenant id required): by hand, as the first.
//!
//! A file-level error (`InputError`) is a fine outcome; a panic, a hang, a runaway allocation or
//! a broken invariant asserted below is a finding.

#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mca_attest::domain::{DateAgreed, RowNumber, parse_datetime};
use mca_attest::input::{Column, Encoding, InputOptions, InputReader};
use mca_attest::progress::ReadPosition;
use mca_attest::validation::{Clock, Validator, Verdict, classify_rows};

/// The file every iteration of this process writes its input to.
fn scratch_file() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!(
            "mca-attest-fuzz-reader-validator-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("create the fuzzer's scratch directory");
        dir.join("input.csv")
    })
}

const SIGNER_COLUMNS: [Column; 4] = [
    Column::TenantId,
    Column::FirstName,
    Column::LastName,
    Column::Email,
];

/// `confirm`/`validate` without `--delimiter`: the separator is detected from the header.
fn confirm_options() -> InputOptions {
    let mut required = SIGNER_COLUMNS.to_vec();
    required.push(Column::DateAgreed);
    InputOptions {
        delimiter: None,
        required,
        encoding: Encoding::Utf8,
    }
}

/// `confirm --default-date-agreed DATE --delimiter ',' --encoding windows-1252`.
fn default_date_options() -> InputOptions {
    InputOptions {
        delimiter: Some(b','),
        required: SIGNER_COLUMNS.to_vec(),
        encoding: Encoding::Windows1252,
    }
}

/// `status --delimiter ';'`.
fn status_options() -> InputOptions {
    InputOptions {
        delimiter: Some(b';'),
        required: vec![Column::TenantId],
        encoding: Encoding::Utf8,
    }
}

/// Reads every row by hand, validating each and classifying it against the earlier ones, and
/// checks what must hold whatever the bytes.
fn read_and_validate(path: &Path, options: &InputOptions, validator: &Validator) {
    let Ok(mut reader) = InputReader::open(path, options) else {
        return;
    };
    let header_len = reader.header().len();
    match options.delimiter {
        Some(given) => assert_eq!(reader.delimiter(), given, "the given delimiter is used"),
        None => assert!(
            matches!(reader.delimiter(), b',' | b';' | b'\t'),
            "detected an unexpected delimiter {:?}",
            reader.delimiter() as char
        ),
    }
    // Every required column was found, or `open` would have refused the file.
    for column in &options.required {
        assert!(
            reader.columns().get(*column).is_some(),
            "{column:?} required but not mapped"
        );
    }
    let _ = reader.estimated_rows();
    let mut clock = Clock::live();
    let mut expected_row = 1u64;
    while let Some(next) = reader.next_row() {
        // An I/O error ends the file.
        let Ok(raw) = next else { break };
        assert_eq!(
            raw.row,
            RowNumber(expected_row),
            "rows are numbered 1, 2, 3..."
        );
        expected_row += 1;
        if raw.record.len() != header_len {
            assert!(
                raw.problem.is_some(),
                "a record of {} fields under a header of {header_len} has no problem",
                raw.record.len()
            );
        }
        for column in Column::ALL {
            let shown = raw.cell_for_display(column);
            assert!(shown.len() <= 1024 * 3 + 3, "display cell not cut at 1 KiB");
        }
        let _ = raw.fields();

        let direct = validator.validate_row(&raw);
        if let Some(problem) = &raw.problem {
            assert_eq!(
                direct.as_ref().err(),
                Some(problem),
                "a row's problem is its message"
            );
        }
        if let Ok(c) = &direct {
            assert_eq!(c.tenant.to_string().len(), 36);
            assert!(c.signer.email.contains('@'));
            assert!(!c.signer.first_name.is_empty() && !c.signer.last_name.is_empty());
        }

        let problem = raw.problem.clone();
        let row = raw.row;
        match validator.check(raw, &mut clock) {
            Verdict::Valid(r, _) => {
                assert_eq!(r, row);
                assert!(problem.is_none());
            }
            Verdict::Duplicate(..) | Verdict::Conflict(..) => {
                unreachable!("a row checked by itself is valid or invalid")
            }
            Verdict::Invalid(raw, message) => {
                assert_eq!(raw.row, row);
                assert!(!message.is_empty(), "an invalid row without a message");
                if let Some(p) = problem {
                    assert_eq!(message, p);
                }
            }
        }
    }
}

/// The library's own loop (`classify_rows`), as `validate` and `confirm` run it.
fn classify_all(path: &Path, options: &InputOptions, validator: &Validator) {
    let Ok(mut reader) = InputReader::open(path, options) else {
        return;
    };
    let position = ReadPosition::new(reader.size());
    let mut last = RowNumber(0);
    let _ = classify_rows(&mut reader, validator, &[], &position, |verdict| {
        let row = match &verdict {
            Verdict::Valid(row, _) | Verdict::Duplicate(row, _, _) | Verdict::Conflict(row, _, _) => {
                *row
            }
            Verdict::Invalid(raw, _) => raw.row,
        };
        if let Verdict::Duplicate(r, _, earlier) = &verdict {
            assert!(earlier < r, "duplicate of a later row: {earlier:?} >= {r:?}");
        }
        assert!(row > last, "verdicts come in input order");
        last = row;
        true
    });
    let _ = position.estimated_rows();
}

fuzz_target!(|data: &[u8]| {
    let path = scratch_file();
    std::fs::write(path, data).expect("write the fuzz input to the scratch file");

    let plain = Validator::default();
    let with_default = Validator {
        default_date: Some(DateAgreed::new(
            parse_datetime("2024-06-14").expect("a valid date"),
        )),
    };

    // Three opens per input: building the CSV parser is most of the cost of each.
    read_and_validate(path, &confirm_options(), &plain);
    classify_all(path, &default_date_options(), &with_default);
    read_and_validate(path, &status_options(), &plain);
});
