//! Properties of the pieces a hostile or unusual file goes through, checked on generated
//! input: the input reader and validation never panic, whatever the bytes; what a CSV writer
//! writes is read back cell for cell; the results writer's formula escaping is complete and
//! can be undone; and every date that is accepted comes out as RFC 3339 UTC.

mod common;

use std::path::Path;

use chrono::{DateTime, Datelike, TimeZone, Utc};
use mca_attest::domain::{RowNumber, RowStatus, Signer, SignerKey, TenantId, rfc3339};
use mca_attest::input::{Column, Encoding, InputOptions, InputReader, RawFields};
use mca_attest::results::{
    OutputTarget, RESULTS_HEADER, ReportMode, ReportRecord, ReportWriter, ResultRecord,
    escape_formula,
};
use mca_attest::resume::{self, unescape};
use mca_attest::validation::{Validator, parse_date_agreed, parse_datetime};
use proptest::collection::vec;
use proptest::prelude::*;
use uuid::Uuid;

/// Modest case counts keep the file fast in debug builds; a failure is shrunk and shown, and
/// nothing is written beside the sources (no regression files).
fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(n)
    }
}

const HEADER: &str = "customer_tenant_id,first_name,last_name,email,phone_number,date_agreed";

fn all_columns() -> InputOptions {
    InputOptions {
        delimiter: b','.into(),
        required: Column::ALL.to_vec(),
        encoding: Encoding::Utf8,
    }
}

/// Text a spreadsheet export can hold in a cell: a formula-like start now and then, then the
/// characters CSV must quote (quotes, separators, CR, LF), unicode, or any text free of the
/// ASCII control bytes that no text export contains.
fn cell() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => (
            "'?[=+\\-@'\t\r]?",
            "[a-zA-Z0-9 ,;\"'\r\n=+\\-@\té漢🙂\u{feff}\u{200b}]{0,16}"
        )
            .prop_map(|(start, rest)| start + &rest),
        1 => "[^\\x00-\\x08\\x0B\\x0E-\\x1F\\x7F]{0,24}",
    ]
}

fn write_temp(dir: &Path, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join("input.csv");
    std::fs::write(&path, bytes).expect("write the input file");
    path
}

/// About 9 KiB of valid rows: puts what follows past the part of a file sniffed on opening.
fn padding_rows() -> String {
    (0..120)
        .map(|i| {
            format!(
                "0f4d6f3e-7b9a-4c1e-9d2b-3a5c7e9f{i:04},Ann,Lee,ann{i}@contoso.com,,2024-06-14\n"
            )
        })
        .collect()
}

/// Bytes no one should feed the tool: noise, noise after a good header, CSV-shaped noise with
/// bad UTF-8 and NUL bytes, and the same past the sniffed start of the file.
fn hostile_bytes() -> impl Strategy<Value = Vec<u8>> {
    // Quotes, separators, line ends, formula starts, a BOM and bytes that are not UTF-8.
    let csvish = || {
        vec(
            prop::sample::select(b"\",;\r\n\t a=-@+1\xff\xc3\xa9\x80\xef\xbb\xbf{}".to_vec()),
            0..3000,
        )
    };
    prop_oneof![
        vec(any::<u8>(), 0..3000),
        vec(any::<u8>(), 0..3000).prop_map(|b| [format!("{HEADER}\n").as_bytes(), &b].concat()),
        csvish().prop_map(|b| [format!("{HEADER}\r\n").as_bytes(), &b].concat()),
        // Past the sniffed start of the file, NUL and control bytes reach the rows.
        (csvish(), vec(any::<u8>(), 0..64)).prop_map(|(b, tail)| {
            [
                format!("\u{feff}{HEADER}\n{}", padding_rows()).as_bytes(),
                &b,
                &tail,
            ]
            .concat()
        }),
    ]
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn reading_and_validating_arbitrary_bytes_never_panics(bytes in hostile_bytes()) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = write_temp(dir.path(), &bytes);
        let validator = Validator::default();
        if let Ok(mut reader) = InputReader::open(&path, &all_columns()) {
            let _ = reader.estimated_rows();
            let _ = reader.has_rows();
            let mut rows = 0usize;
            while let Some(next) = reader.next_row() {
                rows += 1;
                prop_assert!(rows <= bytes.len() + 1, "more rows than bytes: the reader loops");
                let Ok(row) = next else { continue };
                let _ = row.fields();
                for column in Column::ALL {
                    let shown = row.cell_for_display(column);
                    prop_assert!(shown.len() <= 1024 + '…'.len_utf8() + 3 * 1024);
                }
                if let Err(message) = validator.validate_row(&row) {
                    prop_assert!(!message.is_empty());
                }
                let _ = reader.position();
            }
        }
    }
}

proptest! {
    #![proptest_config(cases(48))]

    /// The whole offline path (reader, validation, report writer, summary) through the binary.
    #[test]
    fn validate_ends_in_an_orderly_way_on_arbitrary_bytes(bytes in hostile_bytes()) {
        let wd = common::Workdir::new();
        wd.create("in.csv", &bytes);
        let run = wd.command(["validate", "in.csv", "-o", "report.csv"]).run();
        prop_assert!(matches!(run.code(), Some(0..=2)), "exit 0, 1 or 2{}", run);
        prop_assert!(!run.stderr.contains("panicked"), "{}", run);
    }
}

/// Writes `records` under `header` with the csv crate, as a spreadsheet would export them.
fn write_csv(
    path: &Path,
    header: &[&str],
    records: &[[String; 7]],
    delimiter: u8,
    crlf: bool,
) -> csv::Result<()> {
    let mut w = csv::WriterBuilder::new()
        .delimiter(delimiter)
        .terminator(if crlf {
            csv::Terminator::CRLF
        } else {
            csv::Terminator::Any(b'\n')
        })
        .from_path(path)?;
    w.write_record(header)?;
    for r in records {
        w.write_record(r)?;
    }
    w.flush()?;
    Ok(())
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn input_reader_gives_back_every_cell_a_csv_writer_wrote(
        records in vec(prop::array::uniform7(cell()), 0..8),
        semicolon in any::<bool>(),
        crlf in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("input.csv");
        let delimiter = if semicolon { b';' } else { b',' };
        let header = [
            "customer_tenant_id", "first_name", "last_name", "email", "phone_number",
            "date_agreed", "notes",
        ];
        write_csv(&path, &header, &records, delimiter, crlf).expect("write the CSV");

        let options = InputOptions {
            delimiter: delimiter.into(),
            required: Column::ALL.to_vec(),
            encoding: Encoding::Utf8,
        };
        let mut reader = InputReader::open(&path, &options)
            .map_err(|e| TestCaseError::fail(format!("open: {e}")))?;
        let mut read = Vec::new();
        while let Some(next) = reader.next_row() {
            let row = next.map_err(|e| TestCaseError::fail(format!("read: {e}")))?;
            prop_assert_eq!(row.row, RowNumber(read.len() as u64 + 1));
            prop_assert_eq!(&row.problem, &None);
            let f = row.fields();
            let notes = String::from_utf8(row.record.get(6).unwrap_or_default().to_vec())
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            read.push([
                f.tenant_id.to_string(),
                f.first_name.to_string(),
                f.last_name.to_string(),
                f.email.to_string(),
                f.phone_number.to_string(),
                f.date_agreed.to_string(),
                notes,
            ]);
        }
        prop_assert_eq!(read, records);
    }
}

fn starts_like_a_formula(cell: &str) -> bool {
    matches!(
        cell.as_bytes().first(),
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r')
    )
}

fn timestamp() -> impl Strategy<Value = DateTime<Utc>> {
    // 1970 to 9999: every time a results file can hold.
    (0i64..253_402_300_799).prop_map(|s| Utc.timestamp_opt(s, 0).single().unwrap_or_default())
}

fn result_record() -> impl Strategy<Value = ResultRecord> {
    (
        proptest::option::of(any::<u64>()),
        prop::array::uniform6(cell()),
        proptest::option::of(prop::sample::select(RowStatus::ALL.to_vec())),
        proptest::option::of(any::<u16>()),
        prop::array::uniform3(cell()),
        any::<u32>(),
        cell(),
        proptest::option::of(any::<u128>()),
        proptest::option::of(any::<u128>()),
        proptest::option::of(timestamp()),
    )
        .prop_map(
            |(row, signer, status, http_status, error, attempts, template_id, req, corr, at)| {
                let [
                    tenant,
                    first_name,
                    last_name,
                    email,
                    phone_number,
                    date_agreed,
                ] = signer;
                let [error_code, error_name, message] = error;
                ResultRecord {
                    row: row.map(RowNumber),
                    customer_tenant_id: tenant,
                    first_name,
                    last_name,
                    email,
                    phone_number,
                    date_agreed,
                    status,
                    http_status,
                    error_code,
                    error_name,
                    message,
                    attempts,
                    template_id,
                    request_id: req.map(Uuid::from_u128),
                    correlation_id: corr.map(Uuid::from_u128),
                    finished_at: at,
                }
            },
        )
}

/// Writes `records` with the results writer and reads the file back with the csv crate,
/// strictly: the header, then one 17-cell record per result.
fn write_and_read_back(records: &[ResultRecord]) -> Result<Vec<Vec<String>>, TestCaseError> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("results.csv");
    let mut writer =
        ReportWriter::create::<ResultRecord>(OutputTarget::File(path.clone()), ReportMode::Derived)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
    for r in records {
        writer
            .write(r)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
    }
    writer
        .finish()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(false)
        .from_path(&path)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut lines = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| TestCaseError::fail(format!("not CSV: {e}")))?;
        lines.push(record.iter().map(str::to_string).collect::<Vec<_>>());
    }
    prop_assert_eq!(lines.len(), records.len() + 1);
    prop_assert_eq!(&lines[0], &RESULTS_HEADER.to_vec());
    Ok(lines.split_off(1))
}

fn cells_of(record: &ResultRecord) -> Vec<String> {
    record.cells().into_iter().map(|c| c.into_owned()).collect()
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn results_writer_writes_each_cell_escaped_and_nothing_else(
        records in vec(result_record(), 0..6),
    ) {
        let written = write_and_read_back(&records)?;
        for (line, record) in written.iter().zip(&records) {
            let escaped: Vec<String> =
                cells_of(record).iter().map(|c| escape_formula(c).into_owned()).collect();
            prop_assert_eq!(line, &escaped);
        }
    }

    #[test]
    fn unescaping_a_results_file_gives_back_the_cells_written(
        records in vec(result_record(), 0..6),
    ) {
        let written = write_and_read_back(&records)?;
        for (line, record) in written.iter().zip(&records) {
            let unescaped: Vec<String> = line.iter().map(|c| unescape(c)).collect();
            prop_assert_eq!(unescaped, cells_of(record));
        }
    }

    #[test]
    fn no_written_cell_starts_like_a_formula(records in vec(result_record(), 0..6)) {
        for line in write_and_read_back(&records)? {
            for cell in line {
                prop_assert!(!starts_like_a_formula(&cell), "{:?}", cell);
            }
        }
    }

    #[test]
    fn escaping_is_undone_by_unescape(cell in cell()) {
        prop_assert_eq!(unescape(&escape_formula(&cell)), cell);
    }

    #[test]
    fn escaping_leaves_a_cell_that_cannot_start_a_formula_untouched(cell in cell()) {
        let escaped = escape_formula(&cell);
        // A leading quote is doubled too, so that the escaping can always be undone.
        if starts_like_a_formula(&cell) || cell.starts_with('\'') {
            prop_assert_eq!(escaped.into_owned(), format!("'{cell}"));
        } else {
            prop_assert_eq!(escaped.into_owned(), cell);
        }
    }

    /// What `--resume` relies on: a customer the results file shows as confirmed is not sent
    /// again, whatever the signer's name looks like.
    #[test]
    fn every_confirmed_line_is_recognised_as_done_on_resume(
        names in vec(("[^\\x00-\\x1F\\x7F]{1,12}", cell()), 1..5),
    ) {
        let tenant = TenantId::parse("0f4d6f3e-7b9a-4c1e-9d2b-3a5c7e9f1b2d")
            .expect("a GUID");
        let signers: Vec<Signer> = names
            .iter()
            .filter(|(first, last)| !first.trim().is_empty() && !last.trim().is_empty())
            .map(|(first, last)| Signer {
                first_name: first.trim().to_string(),
                last_name: last.trim().to_string(),
                email: "signer@contoso.com".into(),
                phone_number: None,
            })
            .collect();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("results.csv");
        let mut writer = ReportWriter::create::<ResultRecord>(
            OutputTarget::File(path.clone()),
            ReportMode::Derived,
        )
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
        for (n, s) in signers.iter().enumerate() {
            let record = ResultRecord {
                row: Some(RowNumber(n as u64 + 1)),
                customer_tenant_id: tenant.to_string(),
                first_name: s.first_name.clone(),
                last_name: s.last_name.clone(),
                email: s.email.clone(),
                status: Some(RowStatus::Confirmed),
                ..Default::default()
            };
            writer.write(&record).map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        writer.finish().map_err(|e| TestCaseError::fail(e.to_string()))?;

        let state = resume::load(&path)
            .map_err(|e| TestCaseError::fail(e.to_string()))?
            .ok_or_else(|| TestCaseError::fail("no resume state"))?;
        for s in &signers {
            prop_assert!(
                state.is_done(&SignerKey::new(&tenant, s)),
                "{:?} {:?} is confirmed in the file but not recognised",
                s.first_name,
                s.last_name
            );
        }
    }
}

/// Strings shaped like the dates a spreadsheet holds, well formed or nearly so.
fn date_like() -> impl Strategy<Value = String> {
    prop_oneof![
        (1990i32..2110, 0u32..14, 0u32..33).prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}")),
        (
            1990i32..2110,
            1u32..13,
            1u32..29,
            0u32..25,
            0u32..61,
            0u32..62,
            prop::sample::select(vec![
                "Z", "z", "+00:00", "+13:45", "-12:00", "+14:00", "", "+1"
            ]),
            prop::sample::select(vec!["T", " ", "t"]),
        )
            .prop_map(|(y, mo, d, h, mi, s, zone, sep)| {
                format!("{y:04}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{s:02}{zone}")
            }),
        "[0-9+\\-]{0,6}-[0-9]{1,3}-[0-9]{1,3}([T ][0-9]{1,2}:[0-9]{1,2}(:[0-9]{1,2}(\\.[0-9]{1,12})?)?)?(Z|[+\\-][0-9]{2}:?[0-9]{2})?",
        any::<String>(),
    ]
}

/// `YYYY-MM-DDTHH:MM:SSZ`, exactly.
fn is_rfc3339_utc_seconds(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    b.len() == 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'Z'
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn a_parsed_date_renders_as_utc_ending_in_z(raw in date_like()) {
        if let Some(at) = parse_datetime(&raw) {
            let shown = rfc3339(at);
            prop_assert!(shown.ends_with('Z'), "{:?} renders as {:?}", raw, shown);
            if (0..=9999).contains(&at.year()) {
                prop_assert!(is_rfc3339_utc_seconds(&shown), "{:?} renders as {:?}", raw, shown);
                let back = DateTime::parse_from_rfc3339(&shown)
                    .map_err(|e| TestCaseError::fail(format!("{shown:?}: {e}")))?;
                prop_assert_eq!(back.timestamp(), at.timestamp());
            }
        }
    }

    #[test]
    fn an_accepted_date_agreed_is_utc_to_the_second_and_not_in_the_future(raw in date_like()) {
        let now = Utc::now();
        if let Ok(date) = parse_date_agreed(&raw, now) {
            let shown = date.to_string();
            prop_assert!(is_rfc3339_utc_seconds(&shown), "{:?} renders as {:?}", raw, shown);
            prop_assert!(date.as_datetime() <= now);
            prop_assert!(date.as_datetime().year() >= 2000);
        }
    }

    #[test]
    fn validating_arbitrary_cells_never_panics_and_names_the_field_it_rejects(
        tenant_id in prop_oneof![
            any::<u128>().prop_map(|u| Uuid::from_u128(u).to_string()),
            any::<u128>().prop_map(|u| format!("{{{}}}", Uuid::from_u128(u).hyphenated()).to_uppercase()),
            cell(),
        ],
        first_name in cell(),
        last_name in cell(),
        email in prop_oneof!["[a-z.+=-]{1,8}@[a-z-]{1,8}\\.[a-z]{2,4}", cell()],
        phone_number in prop_oneof![Just(String::new()), "\\+?[0-9 ().-]{4,24}", cell()],
        date_agreed in date_like(),
    ) {
        let fields = RawFields {
            tenant_id: &tenant_id,
            first_name: &first_name,
            last_name: &last_name,
            email: &email,
            phone_number: &phone_number,
            date_agreed: &date_agreed,
        };
        match Validator::default().validate(&fields, Utc::now()) {
            Ok(c) => prop_assert!(is_rfc3339_utc_seconds(&c.date_agreed.to_string())),
            Err(e) => {
                let text = e.to_string();
                let prefix = format!("{}: ", e.field.name());
                prop_assert!(text.starts_with(&prefix), "{:?}", text);
            }
        }
    }
}
