//! Properties of the pieces a hostile or unusual file goes through, checked on generated
//! input: the input reader and validation never panic, whatever the bytes; what a CSV writer
//! writes is read back cell for cell; the results writer's formula escaping is complete and
//! can be undone; and every date that is accepted comes out as RFC 3339 UTC.

use std::path::Path;

use chrono::{DateTime, Datelike, TimeZone, Utc};
use mca_attest::domain::{
    RowNumber, RowStatus, Signer, SignerKey, TenantId, parse_datetime, rfc3339,
};
use mca_attest::input::{Column, Encoding, InputOptions, InputReader, RawFields};
use mca_attest::results::{
    OutputTarget, RESULTS_HEADER, ReportMode, ReportRecord, ReportWriter, ResultRecord,
    escape_formula,
};
use mca_attest::resume::{self, unescape};
use mca_attest::validation::{Validator, parse_date_agreed};
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

/// About 70 KiB of valid rows: puts what follows past the part of a file sniffed on opening
/// (64 KiB).
fn padding_rows() -> String {
    (0..1000)
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
        let wd = crate::common::Workdir::new();
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
        ReportWriter::create::<ResultRecord>(OutputTarget::File(path.clone()), ReportMode::Audit)
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
            ReportMode::Audit,
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

// Windows-1252 exports (Excel's "CSV (Comma delimited)" on Western Windows), UTF-8 ones with
// the same letters, and how messages name rows.

/// The sniffed head of an input file: an encoding found in it refuses the whole file.
const HEAD_BYTES: usize = 64 * 1024;

/// Letters of Western European names that Windows-1252 holds in one byte above 0x7F, the
/// 0x80-0x9F extras (€ œ Š ž Ÿ ’ – …) included.
const LATIN: &str = "éèêëüöäñøåßçàáíóúÉÜÖØÅÆæ€œŒŠšŽžŸƒ’–—…";

/// A name: a letter at each end (names are trimmed), accented letters, spaces, apostrophes,
/// hyphens and the characters CSV quotes between.
fn latin_name() -> impl Strategy<Value = String> {
    let edge: Vec<char> = LATIN.chars().chain("abcXYZ".chars()).collect();
    let inner: Vec<char> = edge.iter().copied().chain(" '-,;\"".chars()).collect();
    (
        prop::sample::select(edge.clone()),
        vec(prop::sample::select(inner), 0..10),
        prop::sample::select(edge),
    )
        .prop_map(|(first, middle, last)| {
            std::iter::once(first)
                .chain(middle)
                .chain(std::iter::once(last))
                .collect()
        })
}

/// A spreadsheet export: plain ASCII rows first (`padding` of them, enough to push the first
/// accented letter anywhere up to past the sniffed head), then rows of accented names and
/// notes; `,` or `;`, CRLF or LF, a UTF-8 byte order mark or not.
#[derive(Debug, Clone)]
struct Export {
    padding: usize,
    /// First name, last name and an ignored notes cell of each accented row.
    names: Vec<(String, String, String)>,
    semicolon: bool,
    crlf: bool,
    bom: bool,
}

fn export(name: BoxedStrategy<String>) -> impl Strategy<Value = Export> {
    (
        // None, a few, or about the head's size (~80 bytes a row): the first accented byte
        // lands early, late in the head, across its end or past it.
        prop_oneof![Just(0usize), 1..40usize, 780..880usize],
        vec((name.clone(), name.clone(), name), 1..6),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(padding, names, semicolon, crlf, bom)| Export {
            padding,
            names,
            semicolon,
            crlf,
            bom,
        })
}

impl Export {
    /// The file as UTF-8 text, written by a CSV writer as a spreadsheet would.
    fn text(&self) -> String {
        let mut w = csv::WriterBuilder::new()
            .delimiter(if self.semicolon { b';' } else { b',' })
            .terminator(if self.crlf {
                csv::Terminator::CRLF
            } else {
                csv::Terminator::Any(b'\n')
            })
            .from_writer(Vec::new());
        w.write_record([HEADER, "notes"].join(",").split(','))
            .expect("a header");
        let plain = (0..self.padding).map(|_| ("Ann", "Lee", "plain"));
        let accented = self
            .names
            .iter()
            .map(|(f, l, n)| (f.as_str(), l.as_str(), n.as_str()));
        for (i, (first, last, notes)) in plain.chain(accented).enumerate() {
            let tenant = Uuid::from_u128(0x0f4d_6f3e_7b9a_4c1e_9d2b_0000_0000_0000 + i as u128);
            let email = format!("signer{i}@contoso.com");
            w.write_record([
                &tenant.to_string(),
                first,
                last,
                &email,
                "",
                "2024-06-14",
                notes,
            ])
            .expect("a row");
        }
        let text = String::from_utf8(w.into_inner().expect("written")).expect("UTF-8");
        if self.bom {
            format!("\u{feff}{text}")
        } else {
            text
        }
    }

    /// The file as Windows-1252 bytes (a byte order mark stays the UTF-8 one, as a file
    /// re-saved by a UTF-8 tool would have it).
    fn windows_1252(&self) -> Vec<u8> {
        let text = self.text();
        let body = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let (bytes, _, unmappable) = encoding_rs::WINDOWS_1252.encode(body);
        assert!(!unmappable, "every letter is Windows-1252");
        let bom: &[u8] = if self.bom { b"\xEF\xBB\xBF" } else { b"" };
        [bom, &bytes].concat()
    }

    /// The row number of accented row `i`.
    fn row_of(&self, i: usize) -> u64 {
        (self.padding + i + 1) as u64
    }
}

fn encode_1252(text: &str) -> Vec<u8> {
    encoding_rs::WINDOWS_1252.encode(text).0.into_owned()
}

/// Whether the tool reads the head of `bytes` as UTF-8: all of it is, but for a character cut
/// by the end of a head that is not the whole file.
fn head_is_utf8(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(HEAD_BYTES)];
    match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => bytes.len() >= HEAD_BYTES && e.error_len().is_none(),
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(bytes))
}

/// The input SHA-256 the manifest beside `report` records for its last run.
fn manifest_sha256(wd: &crate::common::Workdir, report: &str) -> Option<String> {
    let text = std::fs::read_to_string(wd.path(&format!("{report}.manifest.json"))).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["runs"].as_array()?.last()?["input_sha256"]
        .as_str()
        .map(str::to_string)
}

proptest! {
    #![proptest_config(cases(96))]

    /// In process, the reader's view: a head that is not UTF-8 refuses the file as UTF-8 with
    /// the Windows-1252 message; read as Windows-1252, every cell (the ignored notes too) is
    /// the text that was written, and every byte of the file is counted.
    #[test]
    fn the_reader_refuses_or_decodes_a_windows_1252_export(export in export(latin_name().boxed())) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let bytes = export.windows_1252();
        let path = write_temp(dir.path(), &bytes);
        let options = |encoding| InputOptions { delimiter: None, encoding, ..all_columns() };
        match InputReader::open(&path, &options(Encoding::Utf8)) {
            Err(e) => {
                prop_assert!(!head_is_utf8(&bytes), "refused a UTF-8 head: {}", e);
                let message = e.to_string();
                prop_assert!(message.contains("--encoding windows-1252"), "{}", message);
                prop_assert!(message.contains("CSV UTF-8 (Comma delimited)"), "{}", message);
            }
            Ok(_) => prop_assert!(head_is_utf8(&bytes), "read a head that is not UTF-8"),
        }
        let mut reader = InputReader::open(&path, &options(Encoding::Windows1252))
            .map_err(|e| TestCaseError::fail(format!("open: {e}")))?;
        let rows: Vec<_> = std::iter::from_fn(|| reader.next_row())
            .collect::<Result<_, _>>()
            .map_err(|e| TestCaseError::fail(format!("read: {e}")))?;
        prop_assert_eq!(rows.len(), export.padding + export.names.len());
        for (i, (first, last, notes)) in export.names.iter().enumerate() {
            let row = &rows[export.padding + i];
            prop_assert_eq!(row.row, RowNumber(export.row_of(i)));
            prop_assert_eq!(&row.problem, &None);
            prop_assert_eq!(row.fields().first_name, first.as_str());
            prop_assert_eq!(row.fields().last_name, last.as_str());
            prop_assert_eq!(row.record.get(6), Some(notes.as_bytes()));
        }
        prop_assert_eq!(reader.position(), bytes.len() as u64);
    }
}

proptest! {
    #![proptest_config(cases(24))]

    /// Through the binary: without `--encoding`, a head in Windows-1252 is exit 2 with one
    /// message naming both fixes and no report; one past the head makes each row whose names
    /// are not UTF-8 invalid, naming the fix. With `--encoding windows-1252` (from a file or
    /// standard input) every row is valid, its names as written, and the manifest's SHA-256
    /// is that of the bytes given.
    #[test]
    fn validate_refuses_or_reads_a_windows_1252_export(
        export in export(latin_name().boxed()),
        from_stdin in any::<bool>(),
    ) {
        let wd = crate::common::Workdir::new();
        let bytes = export.windows_1252();
        wd.create("excel.csv", &bytes);
        let run = wd.command(["validate", "excel.csv", "-o", "plain.csv"]).run();
        if !head_is_utf8(&bytes) {
            prop_assert_eq!(run.code(), Some(2), "{}", run);
            prop_assert_eq!(run.stderr.matches("--encoding windows-1252").count(), 1, "{}", run);
            prop_assert!(run.stderr.contains("Windows-1252"), "{}", run);
            prop_assert!(run.stderr.contains("CSV UTF-8 (Comma delimited)"), "{}", run);
            prop_assert!(!wd.exists("plain.csv"), "no report{}", run);
        } else {
            let report = crate::common::Results::read(&wd.path("plain.csv"), &run);
            let head_ascii = bytes[..bytes.len().min(HEAD_BYTES)].is_ascii();
            let mut invalid = 0;
            for (i, (first, last, _)) in export.names.iter().enumerate() {
                let line = report.by_row(export.row_of(i));
                let (first, last) = (encode_1252(first), encode_1252(last));
                match (std::str::from_utf8(&first), std::str::from_utf8(&last)) {
                    // Windows-1252 bytes that happen to be UTF-8 too ("ß€" is U+07C0): no
                    // reader can tell.
                    (Ok(first), Ok(last)) => {
                        prop_assert_eq!(line.status(), "valid", "{}", run);
                        prop_assert_eq!(line.get("first_name"), first);
                        prop_assert_eq!(line.get("last_name"), last);
                    }
                    _ => {
                        invalid += 1;
                        prop_assert_eq!(line.status(), "invalid", "{}", run);
                        let message = line.get("message");
                        prop_assert!(message.contains("not valid UTF-8"), "{}", message);
                        if head_ascii {
                            prop_assert!(message.contains("--encoding windows-1252"), "{}", message);
                            if invalid == 1 {
                                prop_assert!(message.contains("CSV UTF-8 (Comma delimited)"), "{}", message);
                            }
                        }
                    }
                }
            }
            prop_assert_eq!(run.code(), Some(if invalid > 0 { 1 } else { 0 }), "{}", run);
            prop_assert_eq!(
                run.stderr.contains("seems to be Windows-1252"),
                head_ascii && invalid > 0,
                "{}", run
            );
        }

        let mut read = if from_stdin {
            let mut cmd = wd.command(["validate", "-", "-o", "read.csv"]);
            cmd.stdin(bytes.clone());
            cmd
        } else {
            wd.command(["validate", "excel.csv", "-o", "read.csv"])
        };
        read.args(["--encoding", "windows-1252"]);
        let run = read.run();
        prop_assert_eq!(run.code(), Some(0), "{}", run);
        let report = crate::common::Results::read(&wd.path("read.csv"), &run);
        prop_assert_eq!(report.row_numbers().len(), export.padding + export.names.len());
        for (i, (first, last, _)) in export.names.iter().enumerate() {
            let line = report.by_row(export.row_of(i));
            prop_assert_eq!(line.status(), "valid", "{}", run);
            prop_assert_eq!(line.get("first_name"), first.as_str(), "{}", run);
            prop_assert_eq!(line.get("last_name"), last.as_str(), "{}", run);
        }
        prop_assert_eq!(manifest_sha256(&wd, "read.csv"), Some(sha256_hex(&bytes)), "{}", run);
    }

    /// UTF-8 exports with the same letters, and with any text at all (some of whose bytes
    /// would read as Windows-1252 too: "Ã©" is 0xC3 0x83 0xC2 0xA9): never an encoding alarm,
    /// every name as written.
    #[test]
    fn validate_reads_utf8_exports_without_an_encoding_alarm(
        export in export(prop_oneof![
            latin_name(),
            "[ÃÂÅâ€™©®¼½¾éü]{1,6}",
            "\\PC{1,12}".prop_filter("names are trimmed", |s| s.trim() == s.as_str()),
        ].boxed()),
    ) {
        let wd = crate::common::Workdir::new();
        wd.create("utf8.csv", export.text());
        let run = wd.command(["validate", "utf8.csv", "-o", "report.csv"]).run();
        prop_assert_eq!(run.code(), Some(0), "{}", run);
        prop_assert!(!run.stderr.contains("1252"), "{}", run);
        let report = crate::common::Results::read(&wd.path("report.csv"), &run);
        for (i, (first, last, _)) in export.names.iter().enumerate() {
            let line = report.by_row(export.row_of(i));
            prop_assert_eq!(unescape(line.get("first_name")), first.as_str(), "{}", run);
            prop_assert_eq!(unescape(line.get("last_name")), last.as_str(), "{}", run);
        }

        // Told to read it as Windows-1252, the tool does, and warns when the head says UTF-8.
        let mut cmd = wd.command(["validate", "utf8.csv", "-o", "as-1252.csv"]);
        cmd.args(["--encoding", "windows-1252"]);
        let run = cmd.run();
        prop_assert!(matches!(run.code(), Some(0 | 1)), "{}", run);
        let text = export.text();
        let head_ascii = text.as_bytes()[..text.len().min(HEAD_BYTES)].is_ascii();
        prop_assert_eq!(run.stderr.contains("reads as UTF-8"), !head_ascii, "{}", run);
    }
}

/// A row of an input file, by what is wrong with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RowKind {
    Valid,
    BadEmail,
    BlankName,
    Ragged,
    /// Longer than the 64 KiB a record may have.
    Long,
    /// A Windows-1252 name (only after a plain head, else the file is refused).
    Latin,
}

/// Every `row N` in `text`, with the spreadsheet line named right after it, if any.
fn rows_named(text: &str) -> Vec<(u64, Option<u64>)> {
    fn digits(s: &str) -> Option<(Option<u64>, &str)> {
        let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        (end > 0).then(|| (s[..end].parse::<u64>().ok(), &s[end..]))
    }
    text.match_indices("row ")
        .filter(|(at, _)| *at == 0 || !text.as_bytes()[at - 1].is_ascii_alphanumeric())
        .filter_map(|(at, _)| {
            let (row, rest) = digits(&text[at + 4..])?;
            let line = rest
                .strip_prefix(" (spreadsheet line ")
                .and_then(digits)
                .filter(|(_, rest)| rest.starts_with(')'))
                .and_then(|(line, _)| line);
            Some((row?, line))
        })
        .collect()
}

proptest! {
    #![proptest_config(cases(24))]

    /// Every message of `validate` that names a row, on stderr or in the report, names its
    /// spreadsheet line too, and the right one (the row plus the header's line); the invalid
    /// rows listed on stderr are invalid in the report; a long row's message names that row.
    #[test]
    fn every_row_validate_names_comes_with_its_spreadsheet_line(
        plain_head in any::<bool>(),
        kinds in vec(prop_oneof![
            4 => Just(RowKind::Valid),
            2 => Just(RowKind::BadEmail),
            1 => Just(RowKind::BlankName),
            1 => Just(RowKind::Ragged),
            1 => Just(RowKind::Long),
            2 => Just(RowKind::Latin),
        ], 1..14),
    ) {
        let padding = if plain_head { 900 } else { 0 };
        let kinds: Vec<RowKind> = kinds
            .into_iter()
            .filter(|k| plain_head || *k != RowKind::Latin)
            .collect();
        let mut bytes = format!("{HEADER}\n").into_bytes();
        for i in 0..padding + kinds.len() {
            let kind = kinds.get(i.wrapping_sub(padding)).copied().unwrap_or(RowKind::Valid);
            let tenant = Uuid::from_u128(0x0f4d_6f3e_7b9a_4c1e_9d2b_0000_0000_0000 + i as u128);
            let first: Vec<u8> = match kind {
                RowKind::BlankName => b" ".to_vec(),
                RowKind::Long => vec![b'x'; 70 * 1024],
                RowKind::Latin => encode_1252("Jos\u{e9}"),
                _ => b"Ann".to_vec(),
            };
            let email = if kind == RowKind::BadEmail { format!("broken{i}") } else { format!("s{i}@contoso.com") };
            bytes.extend_from_slice(format!("{tenant},").as_bytes());
            bytes.extend_from_slice(&first);
            bytes.extend_from_slice(format!(",Lee,{email},").as_bytes());
            if kind != RowKind::Ragged {
                bytes.extend_from_slice(b",2024-06-14");
            }
            bytes.push(b'\n');
        }
        let wd = crate::common::Workdir::new();
        wd.create("in.csv", &bytes);
        let run = wd.command(["validate", "in.csv", "-o", "report.csv"]).run();
        let problems = kinds.iter().filter(|k| **k != RowKind::Valid).count();
        prop_assert_eq!(run.code(), Some(if problems > 0 { 1 } else { 0 }), "{}", run);
        let report = crate::common::Results::read(&wd.path("report.csv"), &run);

        let messages: Vec<&str> = report.with_status("invalid").iter().map(|l| l.get("message")).collect();
        for text in messages.iter().copied().chain([run.stderr.as_str()]) {
            for (row, line) in rows_named(text) {
                prop_assert_eq!(line, Some(row + 1), "row {} in {:?}{}", row, text, run);
            }
        }
        let listed: Vec<&str> = run.stderr.lines().map(str::trim_start).filter(|l| l.starts_with("row ")).collect();
        prop_assert_eq!(listed.len(), problems.min(10), "{}", run);
        for line in listed {
            let (row, _) = rows_named(line)[0];
            prop_assert_eq!(report.by_row(row).status(), "invalid", "{}{}", line, run);
        }
        for (i, kind) in kinds.iter().enumerate() {
            let row = mca_attest::domain::RowNumber((padding + i + 1) as u64);
            match kind {
                RowKind::Long => {
                    let message = report.by_row(row.0).get("message");
                    let named = format!("{} is longer than 64 KiB", row.named());
                    prop_assert!(message.contains(&named), "{}: {}{}", named, message, run);
                }
                RowKind::Latin if kinds[..i].iter().all(|k| *k != RowKind::Latin) => {
                    let named = format!("{} is not UTF-8", row.named());
                    prop_assert!(run.stderr.contains(&named), "{}{}", named, run);
                }
                _ => {}
            }
        }
    }
}
