//! Hostile input files through the real binary: what a spreadsheet, a wrong export, a mangled
//! transfer or a malicious customer can put in front of the tool. Every file goes through both
//! readers a user runs, `validate` and `confirm --dry-run --simulator`, and every run must end
//! in an orderly way: exit 0, 1 or 2 (never a panic's 101), no "panicked" on stderr, and a
//! message naming the file, or a report line naming the row and field.

use std::path::PathBuf;

use crate::common::{Customer, INPUT_HEADER, Results, Run, Workdir};

/// One way of reading an input file, as a user would run it.
struct Reading {
    run: Run,
    report: PathBuf,
    /// The status of a row that passed validation in this command.
    accepted: &'static str,
}

impl Reading {
    fn results(&self) -> Results {
        Results::read(&self.report, &self.run)
    }
}

/// Runs `validate` and `confirm --dry-run --simulator` on `input` (with `extra` arguments) and
/// checks that neither panicked.
fn read_both(wd: &Workdir, input: &str, extra: &[&str]) -> [Reading; 2] {
    let stem = input.trim_end_matches(".csv");
    let (validation, results) = (
        format!("{stem}.validation.csv"),
        format!("{stem}.results.csv"),
    );
    let mut validate = wd.command(["validate", input, "-o", &validation]);
    validate.args(extra);
    let mut confirm = wd.command([
        "confirm",
        input,
        "-o",
        &results,
        "--dry-run",
        "--simulator",
        "--no-progress",
    ]);
    confirm.args(extra);
    let readings = [
        Reading {
            run: validate.run(),
            report: wd.path(&validation),
            accepted: "valid",
        },
        Reading {
            run: confirm.run(),
            report: wd.path(&results),
            accepted: "would_confirm",
        },
    ];
    for r in &readings {
        assert_orderly_end(&r.run);
    }
    readings
}

/// Exit 0, 1 or 2, and no panic message.
fn assert_orderly_end(run: &Run) {
    run.check(
        matches!(run.code(), Some(0..=2)),
        "the run ends with exit 0, 1 or 2 (101 is a panic)",
    );
    run.check(
        !run.stderr.contains("panicked"),
        "nothing panicked on the way",
    );
}

/// Both commands refuse the file with exit 2, naming it and saying `phrases`.
fn assert_refused_naming_the_file(readings: &[Reading], file: &str, phrases: &[&str]) {
    for r in readings {
        r.run.expect_code(2).expect_stderr_contains(file);
        for phrase in phrases {
            r.run.expect_stderr_contains(phrase);
        }
        r.run
            .check(!r.report.exists(), "a refused file leaves no report behind");
    }
}

/// Deterministic noise (a 64-bit LCG), so a failure can be reproduced.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) as u8
        })
        .collect()
}

/// An input file of `customers`, lines ended by `eol`, after `prefix` (a BOM, say).
fn input_bytes(prefix: &[u8], customers: &[Customer], eol: &str) -> Vec<u8> {
    let mut bytes = prefix.to_vec();
    bytes.extend_from_slice(INPUT_HEADER.as_bytes());
    bytes.extend_from_slice(eol.as_bytes());
    for c in customers {
        bytes.extend_from_slice(c.csv_line(',').as_bytes());
        bytes.extend_from_slice(eol.as_bytes());
    }
    bytes
}

/// Asserts that the report holds exactly `customers`, in order, each accepted with its values
/// read intact.
fn assert_read_intact(reading: &Reading, customers: &[Customer]) {
    let results = reading.results();
    let run = &reading.run;
    assert_eq!(
        results.row_numbers(),
        (1..=customers.len() as u64).collect::<Vec<_>>(),
        "{run}"
    );
    for (n, c) in customers.iter().enumerate() {
        let line = results.by_row(n as u64 + 1);
        assert_eq!(line.status(), reading.accepted, "{line:?}{run}");
        assert_eq!(line.tenant(), c.tenant, "{line:?}{run}");
        assert_eq!(line.get("first_name"), c.first_name, "{line:?}{run}");
        assert_eq!(line.get("email"), c.email, "{line:?}{run}");
        assert_eq!(
            line.get("date_agreed"),
            "2024-06-14T00:00:00Z",
            "no stray CR in the last cell: {line:?}{run}"
        );
    }
}

#[test]
fn binary_files_are_refused_naming_the_file() {
    let wd = Workdir::new();
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    png.extend(noise(4096, 1));
    let mut elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0".to_vec();
    elf.extend(noise(4096, 2));
    wd.create("logo.csv", png);
    wd.create("tool.csv", elf);
    wd.create("noise.csv", noise(4096, 3));

    for file in ["logo.csv", "tool.csv", "noise.csv"] {
        let readings = read_both(&wd, file, &[]);
        assert_refused_naming_the_file(&readings, file, &["not a CSV text file"]);
    }
}

/// `text` as UTF-16 little-endian, as Excel's "Unicode text" saves it.
fn utf16_le(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

#[test]
fn utf16_files_with_and_without_bom_are_refused_asking_for_utf8() {
    let wd = Workdir::new();
    let text = String::from_utf8(input_bytes(b"", &Customer::many(3), "\r\n")).unwrap();
    let mut with_bom = vec![0xFF, 0xFE];
    with_bom.extend(utf16_le(&text));
    wd.create("unicode-bom.csv", with_bom);
    wd.create("unicode-no-bom.csv", utf16_le(&text));

    for file in ["unicode-bom.csv", "unicode-no-bom.csv"] {
        let readings = read_both(&wd, file, &[]);
        assert_refused_naming_the_file(&readings, file, &["UTF-16", "UTF-8"]);
    }
}

fn semicolon_file(wd: &Workdir, customers: &[Customer]) {
    let mut text = format!("{}\r\n", INPUT_HEADER.replace(',', ";"));
    for c in customers {
        text.push_str(&c.csv_line(';'));
        text.push_str("\r\n");
    }
    wd.create("european.csv", text);
}

#[test]
fn semicolon_separated_file_without_the_flag_is_never_misread() {
    // Either the separator is refused with a hint to pass it, or it is recognised and the
    // rows come out whole: never a file read as one column, nor rows silently invalid.
    let wd = Workdir::new();
    let customers = [Customer::new(1).last_name("Smith, Jr"), Customer::new(2)];
    semicolon_file(&wd, &customers);

    for reading in read_both(&wd, "european.csv", &[]) {
        if reading.run.code() == Some(2) {
            reading
                .run
                .expect_stderr_contains("european.csv")
                .expect_stderr_contains("--delimiter ';'");
        } else {
            reading.run.expect_code(0);
            assert_read_intact(&reading, &customers);
            let results = reading.results();
            assert_eq!(results.by_row(1).get("last_name"), "Smith, Jr");
        }
    }
}

#[test]
fn semicolon_separated_file_is_read_with_the_delimiter_flag() {
    let wd = Workdir::new();
    let customers = [Customer::new(1).last_name("Smith, Jr"), Customer::new(2)];
    semicolon_file(&wd, &customers);

    for reading in read_both(&wd, "european.csv", &["--delimiter", ";"]) {
        reading.run.expect_code(0);
        assert_read_intact(&reading, &customers);
        let results = reading.results();
        assert_eq!(results.by_row(1).get("last_name"), "Smith, Jr");
    }
}

/// Characters a spreadsheet takes as the start of a formula.
fn starts_like_a_formula(cell: &str) -> bool {
    matches!(
        cell.as_bytes().first(),
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r')
    )
}

#[test]
fn formula_cells_are_judged_by_their_values_and_written_behind_a_quote() {
    let wd = Workdir::new();
    let customers = [
        // Valid: names may hold anything printable, the phone may start with +.
        Customer::new(1)
            .first_name("=cmd|' /C calc'!A0")
            .last_name("+SUM(1)")
            .phone("+1 425 555 0100"),
        Customer::new(2).first_name("@x").last_name("-2+3"),
        // Valid: '=' and '-' are allowed before the @ of an address.
        Customer::new(3).email("=a-b@contoso.com"),
        // Invalid: a phone holds no + after its start.
        Customer::new(4).phone("-2+3"),
        // Invalid: a formula is not an address; the raw cells are echoed.
        Customer::new(5)
            .first_name("\t=1+1")
            .email("=HYPERLINK(\"http://evil.example\")"),
        // Invalid: a date cannot start with '-'.
        Customer::new(6).last_name("@SUM(A1)").date("-2024-06-14"),
    ];
    wd.create_customers("formulas.csv", &customers);

    for reading in read_both(&wd, "formulas.csv", &[]) {
        let run = &reading.run;
        run.expect_code(1);
        let results = reading.results();
        let status = |n| results.by_row(n).status().to_string();
        assert_eq!(
            (1..=6).map(status).collect::<Vec<_>>(),
            [
                reading.accepted,
                reading.accepted,
                reading.accepted,
                "invalid",
                "invalid",
                "invalid"
            ],
            "{run}"
        );
        let cell = |n: u64, column: &str| results.by_row(n).get(column).to_string();
        let expected_cells = [
            (1, "first_name", "'=cmd|' /C calc'!A0"),
            (1, "last_name", "'+SUM(1)"),
            (1, "phone_number", "'+1 425 555 0100"),
            (2, "first_name", "'@x"),
            (2, "last_name", "'-2+3"),
            (3, "email", "'=a-b@contoso.com"),
            (4, "phone_number", "'-2+3"),
            (5, "first_name", "'\t=1+1"),
            (5, "email", "'=HYPERLINK(\"http://evil.example\")"),
            (6, "last_name", "'@SUM(A1)"),
            (6, "date_agreed", "'-2024-06-14"),
        ];
        for (n, column, want) in expected_cells {
            assert_eq!(cell(n, column), want, "row {n} {column}{run}");
        }
        assert!(cell(4, "message").contains("phone_number"), "{run}");
        assert!(cell(5, "message").contains("email"), "{run}");
        assert!(cell(6, "message").contains("date_agreed"), "{run}");
        for line in &results.rows {
            for (column, value) in &line.cells {
                assert!(
                    !starts_like_a_formula(value),
                    "{column} of row {} is written as a formula: {value:?}{run}",
                    line.row()
                );
            }
        }
    }
}

/// The longest line of a file, in bytes.
fn longest_line(path: &std::path::Path) -> usize {
    std::fs::read(path)
        .unwrap_or_default()
        .split(|b| *b == b'\n')
        .map(<[u8]>::len)
        .max()
        .unwrap_or(0)
}

#[test]
fn megabyte_cell_makes_its_row_invalid_naming_the_field_and_the_report_stays_small() {
    let wd = Workdir::new();
    let huge = "X".repeat(1 << 20);
    let customers = [
        Customer::new(1),
        Customer::new(2).first_name(&huge),
        Customer::new(3),
    ];
    wd.create_customers("huge.csv", &customers);

    for reading in read_both(&wd, "huge.csv", &[]) {
        let run = &reading.run;
        run.expect_code(1);
        let results = reading.results();
        assert_eq!(results.row_numbers(), [1, 2, 3], "{run}");
        assert_eq!(results.by_row(1).status(), reading.accepted, "{run}");
        assert_eq!(
            results.by_row(3).status(),
            reading.accepted,
            "rows after the huge one are read{run}"
        );
        let bad = results.by_row(2);
        assert_eq!(bad.status(), "invalid", "{run}");
        let longest = longest_line(&reading.report);
        assert!(
            longest < 8 * 1024,
            "no report line carries the huge cell: longest is {longest} bytes{run}"
        );
        assert!(
            bad.get("message").contains("first_name"),
            "the message names the field that is too long: {:?}{run}",
            bad.get("message")
        );
    }
}

#[test]
fn hundred_kilobyte_record_from_an_unbalanced_quote_is_invalid_and_later_rows_are_read() {
    let wd = Workdir::new();
    let customers = Customer::many(3);
    // Row 2 opens a quote in first_name that closes only 100 KB of lines later.
    let mut text = format!("{INPUT_HEADER}\n{}\n", customers[0].csv_line(','));
    let c = &customers[1];
    text.push_str(&format!("{},\"{}\n", c.tenant, c.first_name));
    for i in 0..2000 {
        text.push_str(&format!(
            "swallowed line {i:05} of a stray quote ..........\n"
        ));
    }
    text.push_str(&format!(
        "end\",{},{},,{}\n",
        c.last_name, c.email, c.date_agreed
    ));
    text.push_str(&format!("{}\n", customers[2].csv_line(',')));
    wd.create("stray-quote.csv", text);

    for reading in read_both(&wd, "stray-quote.csv", &[]) {
        let run = &reading.run;
        run.expect_code(1);
        let results = reading.results();
        assert_eq!(results.row_numbers(), [1, 2, 3], "{run}");
        let bad = results.by_row(2);
        assert_eq!(bad.status(), "invalid", "{run}");
        assert!(
            bad.get("message").contains("quote"),
            "the message points at the quote: {bad:?}{run}"
        );
        assert_eq!(results.by_row(3).status(), reading.accepted, "{run}");
        assert_eq!(results.by_row(3).tenant(), customers[2].tenant, "{run}");
        let longest = longest_line(&reading.report);
        assert!(longest < 8 * 1024, "longest line {longest} bytes{run}");
    }
}

#[test]
fn quotes_inside_and_doubled_quotes_are_read_as_text() {
    let wd = Workdir::new();
    let customers = Customer::many(3);
    let c = &customers[1];
    let text = format!(
        "{INPUT_HEADER}\n{}\n{},a\"b,\"O\"\"Brien\",{},,{}\n{}\n",
        customers[0].csv_line(','),
        c.tenant,
        c.email,
        c.date_agreed,
        customers[2].csv_line(',')
    );
    wd.create("quotes.csv", text);

    for reading in read_both(&wd, "quotes.csv", &[]) {
        let run = &reading.run;
        run.expect_code(0);
        let results = reading.results();
        assert_eq!(results.row_numbers(), [1, 2, 3], "{run}");
        let line = results.by_row(2);
        assert_eq!(line.status(), reading.accepted, "{line:?}{run}");
        assert_eq!(line.get("first_name"), "a\"b", "{run}");
        assert_eq!(line.get("last_name"), "O\"Brien", "{run}");
    }
}

#[test]
fn quote_left_open_to_the_end_of_the_file_is_reported_as_such() {
    // The open quote swallows every later line into one cell: the report must say so, or the
    // swallowed customers vanish without a trace.
    let wd = Workdir::new();
    let customers = Customer::many(5);
    let c = &customers[1];
    let mut text = format!(
        "{INPUT_HEADER}\n{}\n{},\"abc,{},{},,{}\n",
        customers[0].csv_line(','),
        c.tenant,
        c.last_name,
        c.email,
        c.date_agreed
    );
    for c in &customers[2..] {
        text.push_str(&format!("{}\n", c.csv_line(',')));
    }
    wd.create("open-quote.csv", text);

    for reading in read_both(&wd, "open-quote.csv", &[]) {
        let run = &reading.run;
        run.expect_code(1);
        let results = reading.results();
        assert_eq!(
            results.row_numbers(),
            [1, 2],
            "the rest of the file is one record{run}"
        );
        assert_eq!(results.by_row(1).status(), reading.accepted, "{run}");
        let bad = results.by_row(2);
        assert_eq!(bad.status(), "invalid", "{run}");
        assert!(
            bad.get("message").contains("quote"),
            "the message says a quote was left open: {:?}{run}",
            bad.get("message")
        );
    }
}

#[test]
fn empty_file_and_file_of_blank_lines_are_refused_as_empty() {
    let wd = Workdir::new();
    wd.create("empty.csv", "");
    wd.create("blank.csv", "\n\r\n  \n\t\n");
    wd.create("bom-only.csv", b"\xEF\xBB\xBF\r\n\r\n");

    for file in ["empty.csv", "blank.csv", "bom-only.csv"] {
        let readings = read_both(&wd, file, &[]);
        assert_refused_naming_the_file(&readings, file, &["empty"]);
    }
}

#[test]
fn header_without_rows_gives_a_header_only_report_and_a_note() {
    let wd = Workdir::new();
    wd.create("header.csv", format!("{INPUT_HEADER}\r\n"));
    wd.create(
        "bom-header.csv",
        format!("\u{feff}{INPUT_HEADER}\r\n\r\n\r\n"),
    );

    for file in ["header.csv", "bom-header.csv"] {
        for reading in read_both(&wd, file, &[]) {
            let run = &reading.run;
            run.expect_code(0)
                .expect_stderr_contains(file)
                .expect_stderr_contains("no data rows");
            let results = reading.results();
            assert_eq!(
                results.header_line(),
                crate::common::RESULTS_HEADER,
                "{run}"
            );
            assert!(results.rows.is_empty(), "{run}");
        }
    }
}

#[test]
fn crlf_and_cr_only_line_endings_are_read_alike() {
    let wd = Workdir::new();
    let customers = Customer::many(3);
    wd.create("crlf.csv", input_bytes(b"", &customers, "\r\n"));
    wd.create("cr.csv", input_bytes(b"\xEF\xBB\xBF", &customers, "\r"));

    for file in ["crlf.csv", "cr.csv"] {
        for reading in read_both(&wd, file, &[]) {
            reading.run.expect_code(0);
            assert_read_intact(&reading, &customers);
        }
    }
}

#[test]
fn nul_byte_near_the_start_refuses_the_file_naming_it() {
    let wd = Workdir::new();
    let mut bytes = input_bytes(b"", &Customer::many(3), "\n");
    let at = bytes.len() / 2;
    bytes[at] = 0;
    wd.create("nul.csv", bytes);

    let readings = read_both(&wd, "nul.csv", &[]);
    assert_refused_naming_the_file(&readings, "nul.csv", &["binary"]);
}

#[test]
fn nul_byte_past_the_first_64_kib_makes_its_row_invalid_naming_the_field() {
    let wd = Workdir::new();
    const ROWS: usize = 1200;
    let customers = Customer::many(ROWS);
    let mut bytes = input_bytes(b"", &customers, "\n");
    assert!(bytes.len() > 96 * 1024);
    // The first name of the last customer, far past the part of the file sniffed on opening.
    let last = &customers[ROWS - 1];
    let at = bytes.len() - last.csv_line(',').len() - 1 + last.tenant.len() + 1;
    assert_eq!(bytes[at], b'F', "at the first name");
    bytes[at + 1] = 0;
    wd.create("late-nul.csv", bytes);

    for reading in read_both(&wd, "late-nul.csv", &[]) {
        let run = &reading.run;
        run.expect_code(1);
        let results = reading.results();
        assert_eq!(
            results.row_numbers(),
            (1..=ROWS as u64).collect::<Vec<_>>(),
            "{run}"
        );
        assert_eq!(
            results.with_status(reading.accepted).len(),
            ROWS - 1,
            "{run}"
        );
        let bad = results.by_row(ROWS as u64);
        assert_eq!(bad.status(), "invalid", "{run}");
        assert!(bad.get("message").contains("first_name"), "{bad:?}{run}");
    }
}

#[test]
fn very_many_columns_are_carried_and_the_known_ones_found() {
    let wd = Workdir::new();
    let customers = Customer::many(3);
    const EXTRA: usize = 10_000;
    let extra_header: String = (0..EXTRA).map(|i| format!("note{i},")).collect();
    let extra_cells = "x,".repeat(EXTRA);
    // The known columns last, after ten thousand others.
    let mut text = format!("{extra_header}{INPUT_HEADER}\n");
    for c in &customers {
        text.push_str(&format!("{extra_cells}{}\n", c.csv_line(',')));
    }
    wd.create("wide.csv", text);

    for reading in read_both(&wd, "wide.csv", &[]) {
        reading.run.expect_code(0);
        assert_read_intact(&reading, &customers);
    }
}
