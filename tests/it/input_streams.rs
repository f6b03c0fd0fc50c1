//! INPUT the way scripts hand it over: `-` (standard input), a shell's `<(…)`, a FIFO; rows a
//! spreadsheet leaves empty after the data; and a workbook given where a CSV file belongs.
//! Every case runs the real binary.

use crate::common::{Customer, INPUT_HEADER, Results, Workdir, counts, default_simulator};
use sha2::{Digest, Sha256};

fn csv_of(customers: &[Customer]) -> String {
    let mut text = format!("{INPUT_HEADER}\n");
    for c in customers {
        text.push_str(&c.csv_line(','));
        text.push('\n');
    }
    text
}

fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirm_reads_standard_input_and_its_manifest_holds_the_streams_hash() {
    let sim = default_simulator().await;
    let wd = Workdir::new();
    let customers = Customer::many(30);
    let text = csv_of(&customers);
    let mut cmd = wd.command([
        "confirm",
        "-",
        "--base-url",
        &sim.base_url(),
        "--rate",
        "1000/s",
        "--no-progress",
    ]);
    cmd.env("PARTNER_CENTER_ACCESS_TOKEN", crate::common::TEST_TOKEN)
        .stdin(text.clone());
    let run = cmd.run_async().await;
    run.expect_code(0);
    // No file to sit beside: the default results file is in the working directory.
    let results = Results::read(&wd.path("stdin.results.csv"), &run);
    assert_eq!(results.counts(), counts(&[("confirmed", 30)]), "{run}");
    assert_eq!(sim.stats().agreement_posts, 30, "{run}");
    let manifest = json(&wd.read("stdin.results.csv.manifest.json"));
    let first = &manifest["runs"][0];
    assert_eq!(first["input"], "-", "{manifest}");
    assert_eq!(
        first["input_sha256"],
        sha256(text.as_bytes()).as_str(),
        "the manifest holds the SHA-256 of the bytes read from stdin: {manifest}"
    );
    assert_eq!(first["input_rows"], 30, "{manifest}");

    // The same rows again with --resume: nothing is sent twice.
    let mut again = wd.command([
        "confirm",
        "-",
        "--resume",
        "--base-url",
        &sim.base_url(),
        "--rate",
        "1000/s",
        "--no-progress",
    ]);
    again
        .env("PARTNER_CENTER_ACCESS_TOKEN", crate::common::TEST_TOKEN)
        .stdin(text.clone());
    let again = again.run_async().await;
    again.expect_code(0);
    assert_eq!(sim.stats().agreement_posts, 30, "{again}");
    again.expect_stderr_contains("30 already done");

    // Different rows on stdin with --resume: the changed input is named once it has been read.
    let mut changed_rows = customers.clone();
    changed_rows.push(Customer::new(31));
    let mut changed = wd.command([
        "confirm",
        "-",
        "--resume",
        "--base-url",
        &sim.base_url(),
        "--rate",
        "1000/s",
        "--no-progress",
    ]);
    changed
        .env("PARTNER_CENTER_ACCESS_TOKEN", crate::common::TEST_TOKEN)
        .stdin(csv_of(&changed_rows));
    let changed = changed.run_async().await;
    changed.expect_code(0);
    changed.expect_stderr_contains("the input differs from the one the last run read");
    assert_eq!(sim.stats().agreement_posts, 31, "{changed}");
}

#[cfg(unix)]
#[test]
fn validate_reads_a_process_substitution_a_fifo_and_dev_stdin() {
    let wd = Workdir::new();
    let text = csv_of(&Customer::many(12));
    let file = wd.create("rows.csv", &text);
    let expected = sha256(text.as_bytes());

    // bash's <(…): a pipe named /dev/fd/N. The report lands in the working directory.
    let script = format!(
        "exec \"$0\" validate <(cat '{}') --no-progress --summary-json -",
        file.display()
    );
    let out = std::process::Command::new("bash")
        .current_dir(wd.dir())
        .arg("-c")
        .arg(&script)
        .arg(crate::common::binary())
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(!stderr.contains("Illegal seek"), "{stderr}");
    let summary = json(&stdout);
    assert_eq!(summary["input_sha256"], expected.as_str(), "{summary}");
    assert_eq!(summary["input_rows"], 12, "{summary}");
    assert_eq!(summary["counts"]["valid"], 12, "{summary}");
    assert!(wd.exists("stdin.validation.csv"), "{stderr}");

    // A FIFO in an ordinary directory: its report sits beside it, as a file's would.
    let fifo = wd.path("wave.csv");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    let writer = {
        let (fifo, text) = (fifo.clone(), text.clone());
        std::thread::spawn(move || std::fs::write(fifo, text))
    };
    let run = wd
        .command([
            "validate",
            "wave.csv",
            "--no-progress",
            "--summary-json",
            "-",
        ])
        .run();
    run.expect_code(0);
    writer
        .join()
        .expect("the writer thread")
        .expect("the FIFO was written");
    let summary = json(&run.stdout);
    assert_eq!(summary["input_sha256"], expected.as_str(), "{run}");
    let report = Results::read(&wd.path("wave.validation.csv"), &run);
    assert_eq!(report.counts(), counts(&[("valid", 12)]), "{run}");

    // /dev/stdin, as a script that cannot use '-' would write it.
    let mut cmd = wd.command([
        "validate",
        "/dev/stdin",
        "-o",
        "devstdin.csv",
        "--no-progress",
    ]);
    cmd.stdin(text.clone());
    let run = cmd.run();
    run.expect_code(0);
    let report = Results::read(&wd.path("devstdin.csv"), &run);
    assert_eq!(report.counts(), counts(&[("valid", 12)]), "{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_left_empty_by_a_spreadsheet_are_skipped_and_counted_not_invalid() {
    let sim = default_simulator().await;
    let wd = Workdir::new();
    let customers = Customer::many(3);
    let mut text = format!("{INPUT_HEADER}\r\n");
    text.push_str(&customers[0].csv_line(','));
    text.push_str("\r\n,,,,,\r\n");
    text.push_str(&customers[1].csv_line(','));
    text.push_str("\r\n");
    text.push_str(&customers[2].csv_line(','));
    // What Excel leaves after the data: rows of separators, one with stray spaces.
    text.push_str("\r\n,,,,,\r\n, , ,,,\r\n,,,,,\r\n");
    wd.create("wave.csv", &text);

    let run = wd
        .command([
            "validate",
            "wave.csv",
            "--no-progress",
            "--summary-json",
            "-",
        ])
        .run();
    run.expect_code(0);
    let summary = json(&run.stdout);
    assert_eq!(summary["empty_rows_skipped"], 4, "{run}");
    assert_eq!(summary["rows"], 3, "{run}");
    assert_eq!(
        summary["input_rows"], 7,
        "every data record is counted{run}"
    );
    let report = Results::read(&wd.path("wave.validation.csv"), &run);
    assert_eq!(report.counts(), counts(&[("valid", 3)]), "{run}");
    assert_eq!(
        report.row_numbers(),
        [1, 3, 4],
        "rows keep their numbers{run}"
    );

    let mut confirm = wd.confirm("wave.csv", "r.csv", &sim.base_url());
    confirm.args(["--summary-json", "s.json"]);
    let run = confirm.run_async().await;
    run.expect_code(0);
    run.expect_stderr_contains("4 empty row(s) skipped");
    let results = Results::read(&wd.path("r.csv"), &run);
    assert_eq!(results.counts(), counts(&[("confirmed", 3)]), "{run}");
    assert_eq!(json(&wd.read("s.json"))["empty_rows_skipped"], 4, "{run}");
    assert_eq!(sim.stats().agreement_posts, 3, "{run}");

    // A file of nothing but empty rows: nothing to do, and it says why.
    wd.create("blank.csv", format!("{INPUT_HEADER}\n,,,,,\n,,,,,\n"));
    let run = wd
        .confirm("blank.csv", "b.csv", &sim.base_url())
        .run_async()
        .await;
    run.expect_code(0);
    run.expect_stderr_contains("no data rows (2 empty row(s) skipped)");
    assert_eq!(sim.stats().agreement_posts, 3, "{run}");
}

#[test]
fn a_workbook_given_as_input_is_named_with_what_to_do() {
    let wd = Workdir::new();
    // A real workbook, as Excel saves one: made by the tool's own `report`.
    wd.create(
        "r.csv",
        format!(
            "{}\n1,{},A,B,a@b.example,,2024-01-02T00:00:00Z,confirmed,201,,,,1,t,r,c,2024-01-02T00:00:01Z\n",
            crate::common::RESULTS_HEADER,
            Customer::new(1).tenant
        ),
    );
    let made = wd
        .command(["report", "r.csv", "-o", "wave.xlsx", "-q"])
        .run();
    made.expect_code(0);
    for command in ["validate", "confirm"] {
        let mut cmd = wd.command([command, "wave.xlsx", "--no-progress"]);
        cmd.env("PARTNER_CENTER_ACCESS_TOKEN", crate::common::TEST_TOKEN);
        let run = cmd.run();
        run.expect_code(2);
        run.expect_stderr_contains("is an Excel workbook, not a CSV file");
        run.expect_stderr_contains("CSV UTF-8 (Comma delimited)");
        assert!(!run.stderr.contains("binary data"), "{run}");
    }
}
