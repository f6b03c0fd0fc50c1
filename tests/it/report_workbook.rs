//! `mca-attest report`: the workbook made from results files and status reports, read back
//! with calamine as a spreadsheet program would read it.

use std::path::Path;

use crate::common::{Customer, RESULTS_HEADER, Results, Workdir};
use calamine::{Data, Range, Reader, Xlsx, open_workbook};

const STATUS_HEADER: &str = "row,customer_tenant_id,state,agreements_on_record,latest_date_agreed,latest_first_name,latest_last_name,latest_email,latest_phone_number,template_id,signer_matches_input,direct_signed,http_status,error_code,message,checked_at,company_name,domain";

const PHONE: &str = "+44 20 7946 0596";

struct Book {
    sheets: Vec<String>,
    rows: Range<Data>,
    summary: Range<Data>,
}

fn open(path: &Path) -> Book {
    let mut wb: Xlsx<_> = open_workbook(path)
        .unwrap_or_else(|e| panic!("open {} as a workbook: {e}", path.display()));
    let sheets = wb.sheet_names();
    let rows = wb.worksheet_range("Rows").expect("a sheet named Rows");
    let summary = wb
        .worksheet_range("Summary")
        .expect("a sheet named Summary");
    Book {
        sheets,
        rows,
        summary,
    }
}

fn text(cell: &Data) -> String {
    match cell {
        Data::String(s) | Data::DateTimeIso(s) => s.clone(),
        Data::Float(f) => f.to_string(),
        Data::Int(i) => i.to_string(),
        Data::Empty => String::new(),
        other => format!("{other:?}"),
    }
}

impl Book {
    fn header(&self) -> Vec<String> {
        self.rows
            .rows()
            .next()
            .expect("a header row")
            .iter()
            .map(text)
            .collect()
    }

    fn column(&self, name: &str) -> usize {
        self.header()
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column {name} in {:?}", self.header()))
    }

    /// The data rows (the header left out).
    fn data(&self) -> Vec<&[Data]> {
        self.rows.rows().skip(1).collect()
    }

    fn cell(&self, row: usize, name: &str) -> &Data {
        let c = self.column(name);
        &self.data()[row][c]
    }

    fn row_numbers(&self) -> Vec<f64> {
        (0..self.data().len())
            .map(|i| match self.cell(i, "row") {
                Data::Float(f) => *f,
                Data::Int(n) => *n as f64,
                other => panic!("row {i}: the row number is not a number: {other:?}"),
            })
            .collect()
    }

    /// The number beside `word` in the Summary's counts table.
    fn count(&self, word: &str) -> f64 {
        for r in self.summary.rows() {
            if r.first().map(text).as_deref() == Some(word) {
                match r.get(1) {
                    Some(Data::Float(f)) => return *f,
                    Some(Data::Int(n)) => return *n as f64,
                    other => panic!("the count of {word} is not a number: {other:?}"),
                }
            }
        }
        panic!("no count for {word} on Summary");
    }

    fn summary_has(&self, needle: &str) -> bool {
        self.summary.rows().flatten().any(|c| text(c) == needle)
    }
}

fn is_datetime(cell: &Data) -> bool {
    matches!(cell, Data::DateTime(_) | Data::DateTimeIso(_))
}

fn manifest_run(w: &Workdir, report: &str) -> serde_json::Value {
    let text = w.read(&format!("{report}.manifest.json"));
    let manifest: serde_json::Value = serde_json::from_str(&text).expect("a JSON manifest");
    manifest["runs"][0].clone()
}

#[test]
fn a_confirm_results_file_becomes_a_workbook_people_can_open() {
    let w = Workdir::new();
    let customers = vec![
        Customer::new(1).phone(PHONE),
        Customer::new(2).first_name("=cmd"),
        Customer::new(3).date("14/06/2024"),
    ];
    w.create_customers("in.csv", &customers);
    w.command([
        "confirm",
        "in.csv",
        "--simulator",
        "-o",
        "r.csv",
        "--no-progress",
    ])
    .run()
    .expect_code(1);
    let csv = w.read("r.csv");
    assert!(
        csv.contains(&format!("'{PHONE}")),
        "the CSV guards the phone:\n{csv}"
    );

    let run = w.command(["report", "r.csv", "-o", "out.xlsx"]).run();
    run.expect_code(0);
    let book = open(&w.path("out.xlsx"));

    assert!(
        book.sheets.contains(&"Rows".to_string()),
        "{:?}",
        book.sheets
    );
    assert!(
        book.sheets.contains(&"Summary".to_string()),
        "{:?}",
        book.sheets
    );
    assert_eq!(book.header().join(","), RESULTS_HEADER);
    assert_eq!(
        book.row_numbers(),
        [1.0, 2.0, 3.0],
        "one row per input row, in order"
    );

    // Text stays text, without the formula guard.
    assert_eq!(book.cell(0, "phone_number"), &Data::String(PHONE.into()));
    assert_eq!(book.cell(1, "first_name"), &Data::String("=cmd".into()));
    assert_eq!(
        book.cell(0, "customer_tenant_id"),
        &Data::String(customers[0].tenant.clone())
    );
    assert!(matches!(book.cell(0, "request_id"), Data::String(_)));
    assert!(matches!(book.cell(0, "template_id"), Data::String(_)));
    // Numbers are numbers; dates are date cells; a date that could not be read stays text.
    assert!(matches!(
        book.cell(0, "http_status"),
        Data::Float(_) | Data::Int(_)
    ));
    assert!(matches!(
        book.cell(0, "attempts"),
        Data::Float(_) | Data::Int(_)
    ));
    for i in 0..3 {
        assert!(is_datetime(book.cell(i, "finished_at")), "row {i}");
    }
    assert!(is_datetime(book.cell(0, "date_agreed")));
    assert_eq!(
        book.cell(2, "date_agreed"),
        &Data::String("14/06/2024".into())
    );

    // Summary: the counts of the CSV, the run from the manifest.
    let counts = Results::parse(&csv).expect("a results file").counts();
    for (status, n) in &counts {
        assert_eq!(book.count(status), *n as f64, "count of {status}");
    }
    assert_eq!(book.count("failed"), 0.0);
    assert_eq!(book.count("total"), 3.0);
    let run = manifest_run(&w, "r.csv");
    for field in ["run_id", "input_sha256", "command"] {
        let value = run[field].as_str().expect("a text field");
        assert!(book.summary_has(value), "{field} {value} on Summary");
    }
    assert!(
        book.summary_has("r.csv")
            || book
                .summary
                .rows()
                .flatten()
                .any(|c| text(c).ends_with("r.csv"))
    );

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(w.path("out.xlsx"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "the workbook is readable by its owner only"
        );
    }
}

#[test]
fn the_last_line_recorded_for_a_row_wins_across_resumes_and_files() {
    let w = Workdir::new();
    let t1 = "0f4d6f3e-7b9a-4c1e-9d2b-3a5c7e9f1b2d";
    let t2 = "1a2b3c4d-7b9a-4c1e-9d2b-3a5c7e9f1b2d";
    let t3 = "2a2b3c4d-7b9a-4c1e-9d2b-3a5c7e9f1b2d";
    // A run that failed row 2, then a resumed run that confirmed it.
    w.create(
        "r1.csv",
        format!(
            "{RESULTS_HEADER}\n\
             2,{t2},Bea,Two,bea@contoso.com,,2024-06-14T00:00:00Z,failed,503,,ServiceUnavailable,try later,6,tpl,,,2024-07-01T10:00:00Z\n\
             1,{t1},Ada,One,ada@contoso.com,'{PHONE},2024-06-14T00:00:00Z,confirmed,201,,,,1,tpl,,,2024-07-01T10:00:01Z\n\
             2,{t2},Bea,Two,bea@contoso.com,,2024-06-14T00:00:00Z,confirmed,201,,,,1,tpl,,,2024-07-02T09:00:00Z\n"
        ),
    );
    w.command(["report", "r1.csv", "-o", "one.xlsx"])
        .run()
        .expect_code(0);
    let book = open(&w.path("one.xlsx"));
    assert_eq!(book.row_numbers(), [1.0, 2.0]);
    assert_eq!(book.cell(1, "status"), &Data::String("confirmed".into()));
    assert_eq!(book.cell(0, "phone_number"), &Data::String(PHONE.into()));
    assert_eq!(book.count("confirmed"), 2.0);
    assert_eq!(book.count("failed"), 0.0);
    // No manifest beside a hand-written file: the workbook says so instead of failing.
    assert!(book.summary_has("none"));

    // Several files: each keeps its own rows, ordered by file (as given) then row, under a
    // first column naming the file; a row of one file never hides the same row of another.
    w.create(
        "r2.csv",
        format!(
            "{RESULTS_HEADER}\n\
             3,{t3},Cy,Three,cy@contoso.com,,2024-06-14T00:00:00Z,invalid,,,,bad,0,,,,2024-07-03T09:00:00Z\n\
             1,{t1},Ada,One,ada@contoso.com,,2024-06-14T00:00:00Z,already_confirmed,409,600061,,,1,tpl,,,2024-07-03T09:00:00Z\n"
        ),
    );
    w.command(["report", "r2.csv", "r1.csv", "-o", "two.xlsx"])
        .run()
        .expect_code(0);
    let book = open(&w.path("two.xlsx"));
    assert_eq!(book.header()[0], "source");
    assert_eq!(book.header()[1..].join(","), RESULTS_HEADER);
    let sources: Vec<String> = (0..4).map(|i| text(book.cell(i, "source"))).collect();
    assert_eq!(sources, ["r2.csv", "r2.csv", "r1.csv", "r1.csv"]);
    assert_eq!(book.row_numbers(), [1.0, 3.0, 1.0, 2.0]);
    assert_eq!(
        book.cell(0, "status"),
        &Data::String("already_confirmed".into())
    );
    assert_eq!(book.cell(0, "error_code"), &Data::String("600061".into()));
    assert_eq!(book.cell(2, "status"), &Data::String("confirmed".into()));
    assert_eq!(book.count("already_confirmed"), 1.0);
    assert_eq!(book.count("confirmed"), 2.0);
    assert_eq!(book.count("invalid"), 1.0);
    assert_eq!(book.count("total"), 4.0);

    // The same file twice would count its rows twice: refused.
    w.command(["report", "r1.csv", "./r1.csv", "-o", "twice.xlsx"])
        .run()
        .expect_code(2)
        .expect_stderr_contains("twice");
    assert!(!w.exists("twice.xlsx"));
}

#[test]
fn a_row_fixed_and_resumed_appears_once_whatever_its_tenant() {
    let w = Workdir::new();
    // Row 2's tenant is not a GUID: invalid, recorded with the tenant as it stood.
    let mut customers = Customer::many(3);
    customers[1] = customers[1].clone().tenant("not-a-guid");
    w.create_customers("in.csv", &customers);
    w.command([
        "confirm",
        "in.csv",
        "--simulator",
        "-o",
        "r.csv",
        "--no-progress",
    ])
    .run()
    .expect_code(1);
    assert!(w.read("r.csv").contains("not-a-guid"));
    // Fixed in the input, then confirmed by --resume: a second line for row 2, new tenant.
    let fixed = Customer::many(3);
    w.create_customers("in.csv", &fixed);
    w.command([
        "confirm",
        "in.csv",
        "--simulator",
        "-o",
        "r.csv",
        "--resume",
        "--no-progress",
    ])
    .run()
    .expect_code(0);
    let csv = w.read("r.csv");
    let lines_for_row_2 = Results::parse(&csv)
        .expect("a results file")
        .rows
        .iter()
        .filter(|r| r.row() == 2)
        .count();
    assert_eq!(
        lines_for_row_2, 2,
        "the results file keeps both lines:\n{csv}"
    );

    w.command(["report", "r.csv", "-o", "r.xlsx"])
        .run()
        .expect_code(0);
    let book = open(&w.path("r.xlsx"));
    assert_eq!(
        book.header().join(","),
        RESULTS_HEADER,
        "one file: no source column"
    );
    assert_eq!(book.row_numbers(), [1.0, 2.0, 3.0]);
    assert_eq!(
        book.cell(1, "customer_tenant_id"),
        &Data::String(fixed[1].tenant.clone())
    );
    assert_eq!(book.count("invalid"), 0.0);
    assert_eq!(book.count("confirmed"), 3.0);
    assert_eq!(book.count("conflict"), 0.0, "conflict is listed on Summary");
    assert_eq!(book.count("total"), 3.0);
}

#[test]
fn a_status_report_becomes_a_workbook_with_counts_per_state() {
    let w = Workdir::new();
    w.create_customers("in.csv", &Customer::many(3));
    w.command([
        "status",
        "in.csv",
        "--simulator",
        "-o",
        "s.csv",
        "--no-progress",
    ])
    .run()
    .expect_code(1);
    let csv = w.read("s.csv");
    assert_eq!(csv.lines().next(), Some(STATUS_HEADER));

    w.command(["report", "s.csv", "-o", "s.xlsx"])
        .run()
        .expect_code(0);
    let book = open(&w.path("s.xlsx"));
    assert_eq!(book.header().join(","), STATUS_HEADER);
    assert_eq!(book.row_numbers(), [1.0, 2.0, 3.0]);
    for i in 0..3 {
        assert!(is_datetime(book.cell(i, "checked_at")), "row {i}");
        assert!(matches!(
            book.cell(i, "customer_tenant_id"),
            Data::String(_)
        ));
    }
    let missing = csv.lines().filter(|l| l.contains(",missing,")).count();
    assert_eq!(book.count("missing"), missing as f64);
    assert_eq!(book.count("attested"), 0.0);
    let run = manifest_run(&w, "s.csv");
    let run_id = run["run_id"].as_str().expect("a run id");
    assert!(book.summary_has(run_id), "run id {run_id} on Summary");
}

#[test]
fn refusals_write_nothing() {
    let w = Workdir::new();
    w.create(
        "r.csv",
        format!(
            "{RESULTS_HEADER}\n1,0f4d6f3e-7b9a-4c1e-9d2b-3a5c7e9f1b2d,Ada,One,ada@contoso.com,,2024-06-14T00:00:00Z,confirmed,201,,,,1,tpl,,,2024-07-01T10:00:00Z\n"
        ),
    );
    w.create(
        "s.csv",
        format!(
            "{STATUS_HEADER}\n1,0f4d6f3e-7b9a-4c1e-9d2b-3a5c7e9f1b2d,missing,0,,,,,,,,false,200,,,2024-07-01T10:00:00Z,,\n"
        ),
    );
    w.create("in.csv", "customer_tenant_id,first_name\nx,y\n");
    let before = w.read("r.csv");

    w.command(["report", "r.csv", "s.csv", "-o", "mixed.xlsx"])
        .run()
        .expect_code(2)
        .expect_stderr_contains("one kind");
    assert!(!w.exists("mixed.xlsx"));

    w.command(["report", "r.csv", "-o", "r.csv"])
        .run()
        .expect_code(2)
        .expect_stderr_contains("input");
    assert_eq!(w.read("r.csv"), before, "the input is untouched");

    // An input that itself ends in .xlsx is never the output either.
    std::fs::copy(w.path("r.csv"), w.path("r.xlsx")).expect("copy");
    w.command(["report", "r.xlsx", "-o", "./r.xlsx"])
        .run()
        .expect_code(2)
        .expect_stderr_contains("never replaced");
    assert_eq!(w.read("r.xlsx"), before);

    w.command(["report", "r.csv", "-o", "out.csv"])
        .run()
        .expect_code(2)
        .expect_stderr_contains(".xlsx");
    assert!(!w.exists("out.csv"));

    w.command(["report", "r.csv", "in.csv", "-o", "out.xlsx"])
        .run()
        .expect_code(2)
        .expect_stderr_contains("in.csv");
    assert!(!w.exists("out.xlsx"));

    w.command(["report", "r.csv", "missing.csv", "-o", "out.xlsx"])
        .run()
        .expect_code(2)
        .expect_stderr_contains("missing.csv");
    assert!(!w.exists("out.xlsx"));

    w.command(["report", "r.csv", "-o", "no-such-dir/out.xlsx"])
        .run()
        .expect_code(2);
}

// ---------------------------------------------------------------------------------------------
// Neighbours: results files and status reports whose rows were written one to three times, in
// any completion order, with varying tenants and statuses, read one to three at a time.

use proptest::prelude::*;

/// The kinds of file a workbook is made from, as the generator writes them.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Results,
    Status,
}

impl Kind {
    fn header(self) -> &'static str {
        match self {
            Kind::Results => RESULTS_HEADER,
            Kind::Status => STATUS_HEADER,
        }
    }

    fn status_column(self) -> &'static str {
        match self {
            Kind::Results => "status",
            Kind::Status => "state",
        }
    }

    /// Every word the Summary lists, the outcome of a tenant that is not a GUID last.
    fn words(self) -> &'static [&'static str] {
        match self {
            Kind::Results => &[
                "confirmed",
                "already_confirmed",
                "would_confirm",
                "duplicate",
                "failed",
                "conflict",
                "invalid",
            ],
            Kind::Status => &["attested", "stale", "direct_signed", "missing", "error"],
        }
    }

    /// One line, `tag` (which may hold commas, quotes and line breaks) quoted in the message.
    fn line(self, row: u64, tenant: &str, status: &str, tag: &str) -> String {
        let tag = format!("\"{}\"", tag.replace('"', "\"\""));
        match self {
            Kind::Results => format!(
                "{row},{tenant},Ada,One,ada@contoso.com,'+44 20 7946 0596,2024-06-14T00:00:00Z,{status},201,,,{tag},1,tpl,req,corr,2024-07-01T10:00:00Z"
            ),
            Kind::Status => format!(
                "{row},{tenant},{status},1,2024-06-14T00:00:00Z,Ada,One,ada@contoso.com,,tpl,true,false,200,,{tag},2024-07-01T10:00:00Z,Contoso,contoso.com"
            ),
        }
    }
}

const TENANTS: [&str; 3] = [
    "0f4d6f3e-7b9a-4c1e-9d2b-3a5c7e9f1b2d",
    "1a2b3c4d-7b9a-4c1e-9d2b-3a5c7e9f1b2d",
    "2a2b3c4d-7b9a-4c1e-9d2b-3a5c7e9f1b2d",
];

/// One line recorded for a row: its tenant and status (indices into TENANTS and the words),
/// `None` for a tenant that is not a GUID (an `invalid` or `error` line).
#[derive(Debug, Clone)]
struct Recorded {
    tenant: Option<usize>,
    word: usize,
}

/// One file: its row numbers, the lines recorded for each row in the order written, and the
/// completion order (row indices, each as often as it has lines).
#[derive(Debug, Clone)]
struct FileCase {
    rows: Vec<u64>,
    lines: Vec<Vec<Recorded>>,
    order: Vec<usize>,
}

fn recorded_lines() -> impl Strategy<Value = Vec<Recorded>> {
    (
        any::<bool>(),
        prop::collection::vec((0..TENANTS.len(), 0usize..5), 1..=3),
    )
        .prop_map(|(invalid_first, picks)| {
            let superseded = invalid_first && picks.len() > 1;
            picks
                .into_iter()
                .enumerate()
                .map(|(i, (tenant, word))| Recorded {
                    tenant: (!(superseded && i == 0)).then_some(tenant),
                    word,
                })
                .collect()
        })
}

fn file_case() -> impl Strategy<Value = FileCase> {
    prop::collection::btree_set(1u64..40, 1..8)
        .prop_flat_map(|rows| {
            let n = rows.len();
            (
                Just(rows.into_iter().collect::<Vec<_>>()),
                prop::collection::vec(recorded_lines(), n),
            )
        })
        .prop_flat_map(|(rows, lines)| {
            let order: Vec<usize> = lines
                .iter()
                .enumerate()
                .flat_map(|(i, l)| std::iter::repeat_n(i, l.len()))
                .collect();
            (Just(rows), Just(lines), Just(order).prop_shuffle())
        })
        .prop_map(|(rows, lines, order)| FileCase { rows, lines, order })
}

/// What the Rows sheet must hold for one (file, row): the line written last for it.
#[derive(Debug, Clone, PartialEq)]
struct Expected {
    source: String,
    row: f64,
    tenant: String,
    word: String,
    tag: String,
}

impl FileCase {
    /// The file's text, and the line each row must show, in row order. `excel` writes it as a
    /// spreadsheet program saves it: a byte-order mark, CRLF line ends.
    fn render(&self, kind: Kind, name: &str, excel: bool) -> (String, Vec<Expected>) {
        let end = if excel { "\r\n" } else { "\n" };
        let mut text = format!(
            "{}{}{end}",
            if excel { "\u{feff}" } else { "" },
            kind.header()
        );
        let mut written = vec![0usize; self.rows.len()];
        let mut last: Vec<Option<Expected>> = vec![None; self.rows.len()];
        for (n, &i) in self.order.iter().enumerate() {
            let recorded = &self.lines[i][written[i]];
            written[i] += 1;
            let tenant = recorded.tenant.map_or("not-a-guid", |t| TENANTS[t]);
            let words = kind.words();
            let word = match recorded.tenant {
                Some(_) => words[recorded.word % (words.len() - 1)],
                None => words[words.len() - 1],
            };
            // Some messages span lines: a line of the file is not a line of text.
            let tag = if n % 3 == 0 {
                format!("{name} line {}, said \"again\"\nand more", n + 2)
            } else {
                format!("{name} line {}", n + 2)
            };
            text.push_str(&kind.line(self.rows[i], tenant, word, &tag));
            text.push_str(end);
            last[i] = Some(Expected {
                source: name.to_string(),
                row: self.rows[i] as f64,
                tenant: tenant.to_string(),
                word: word.to_string(),
                tag,
            });
        }
        let mut expected: Vec<Expected> = last.into_iter().flatten().collect();
        expected.sort_by(|a, b| a.row.total_cmp(&b.row));
        (text, expected)
    }
}

proptest! {
    // Each case runs the binary and reads a workbook back: a few dozen cases.
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn rows_hold_the_last_line_of_each_row_of_each_file(
        status_kind in any::<bool>(),
        excel in any::<bool>(),
        files in prop::collection::vec(file_case(), 1..=3),
        given in Just((0..3usize).collect::<Vec<_>>()).prop_shuffle(),
    ) {
        let kind = if status_kind { Kind::Status } else { Kind::Results };
        let w = Workdir::new();
        // The files are named in one order and given on the command line in another.
        let names: Vec<String> = (0..files.len()).map(|i| format!("f{i}.csv")).collect();
        let mut rendered = Vec::new();
        for (case, name) in files.iter().zip(&names) {
            let (text, expected) = case.render(kind, name, excel);
            w.create(name, text);
            rendered.push(expected);
        }
        let order: Vec<usize> = given.into_iter().filter(|i| *i < files.len()).collect();
        let mut args: Vec<String> = vec!["report".into()];
        args.extend(order.iter().map(|i| names[*i].clone()));
        args.extend(["-o".into(), "out.xlsx".into()]);
        w.command(&args).run().expect_code(0);
        let book = open(&w.path("out.xlsx"));
        let expected: Vec<Expected> = order.iter().flat_map(|i| rendered[*i].clone()).collect();

        let several = files.len() > 1;
        let header = book.header();
        prop_assert_eq!(header.first().map(String::as_str) == Some("source"), several);
        let csv_header: Vec<&str> = kind.header().split(',').collect();
        prop_assert_eq!(&header[usize::from(several)..], &csv_header[..]);

        let got: Vec<Expected> = (0..book.data().len())
            .map(|i| Expected {
                source: if several {
                    text(book.cell(i, "source"))
                } else {
                    names[order[0]].clone()
                },
                row: book.row_numbers()[i],
                tenant: text(book.cell(i, "customer_tenant_id")),
                word: text(book.cell(i, kind.status_column())),
                tag: text(book.cell(i, "message")),
            })
            .collect();
        prop_assert_eq!(&got, &expected);

        // Summary counts what the Rows sheet shows, each (file, row) once.
        for word in kind.words() {
            let shown = got.iter().filter(|e| e.word == *word).count();
            prop_assert_eq!(book.count(word), shown as f64, "count of {}", word);
        }
        prop_assert_eq!(book.count("total"), got.len() as f64);
    }
}

/// More rows than a worksheet holds under its header (1,048,575), across files: refused before
/// anything is written, the message saying what to do.
#[test]
fn rows_past_what_a_worksheet_holds_are_refused_before_writing() {
    let w = Workdir::new();
    let blank = ",".repeat(RESULTS_HEADER.split(',').count() - 1);
    let half = 1_048_576 / 2;
    for (name, first) in [("a.csv", 1), ("b.csv", half + 1)] {
        let mut text = format!("{RESULTS_HEADER}\n");
        for row in first..first + half {
            text.push_str(&format!("{row}{blank}\n"));
        }
        w.create(name, text);
    }
    w.command(["report", "a.csv", "b.csv", "-o", "big.xlsx"])
        .run()
        .expect_code(2)
        .expect_stderr_contains("1048576 rows do not fit on one worksheet")
        .expect_stderr_contains("one workbook per file");
    assert!(!w.exists("big.xlsx"));
    let leftovers: Vec<_> = w
        .files()
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| p.extension().is_none_or(|e| e != "csv"))
        .collect();
    assert!(leftovers.is_empty(), "nothing else written: {leftovers:?}");
}

/// The report of `status --all-customers` (rows numbered by the listing): one workbook row per
/// listed customer, in row order, counted once per state.
#[test]
fn an_all_customers_status_report_becomes_a_workbook() {
    let w = Workdir::new();
    let customers = Customer::many(5);
    let mut listing =
        String::from("customer_tenant_id,company_name,domain,relationship_to_partner\n");
    for (i, c) in customers.iter().enumerate() {
        listing.push_str(&format!(
            "{},Contoso {i},contoso{i}.com,reseller\n",
            c.tenant
        ));
    }
    w.create("listing.csv", listing);
    w.command([
        "status",
        "--all-customers",
        "--simulator",
        "--simulator-customers",
        "listing.csv",
        "-o",
        "all.csv",
        "--no-progress",
    ])
    .run()
    .expect_code(1);
    let csv = w.read("all.csv");
    w.command(["report", "all.csv", "-o", "all.xlsx"])
        .run()
        .expect_code(0);
    let book = open(&w.path("all.xlsx"));
    assert_eq!(book.header().join(","), STATUS_HEADER);
    assert_eq!(book.row_numbers(), [1.0, 2.0, 3.0, 4.0, 5.0]);
    let mut tenants: Vec<String> = (0..5)
        .map(|i| text(book.cell(i, "customer_tenant_id")))
        .collect();
    tenants.sort();
    let mut listed: Vec<String> = customers.iter().map(|c| c.tenant.clone()).collect();
    listed.sort();
    assert_eq!(tenants, listed);
    let missing = csv.lines().filter(|l| l.contains(",missing,")).count();
    assert_eq!(missing, 5, "{csv}");
    assert_eq!(book.count("missing"), 5.0);
    assert_eq!(book.count("total"), 5.0);
}
