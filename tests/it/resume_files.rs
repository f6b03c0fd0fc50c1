//! `confirm --resume` on results files as a crash or a user leaves them: a last record cut
//! inside a quoted multi-line cell, a file written with `--redact`, a file that is no results
//! file. The real binary runs against a simulator that counts what is sent.

use std::collections::BTreeSet;

use crate::common::{Customer, Results, Workdir, default_simulator, no_calls};

/// Splits a results file into its header line and its record lines (one line per record: the
/// simulator's answers hold no newline).
fn header_and_lines(text: &str) -> (String, Vec<String>) {
    let mut lines = text.lines().map(str::to_string);
    let header = lines.next().expect("a header line");
    (header, lines.collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_cut_inside_a_quoted_multi_line_cell_is_cut_back_and_resumed() {
    // One simulator for every run: it keeps its agreements, as Partner Center does.
    let sim = default_simulator().await;
    let wd = Workdir::new();
    let customers = Customer::many(5);
    wd.create_customers("in.csv", &customers);

    let first = wd
        .confirm("in.csv", "r.csv", &sim.base_url())
        .run_async()
        .await;
    first.expect_code(0);

    // The run dies while writing its last line, inside a quoted multi-line message: the file
    // ends in a newline that is inside an open quote.
    let (header, mut lines) = header_and_lines(&wd.read("r.csv"));
    let last = lines.pop().expect("a last line");
    let lost: Vec<&str> = last.split(',').collect();
    let lost_row: u64 = lost[0].parse().expect("a row number");
    let lost_tenant = lost[1].to_string();
    let kept = format!("{header}\n{}\n", lines.join("\n"));
    let half = format!(
        "{},{},{},{},{},,{},failed,503,,ServiceUnavailable,\"first line of the answer\n",
        lost[0], lost[1], lost[2], lost[3], lost[4], lost[6]
    );
    wd.create("r.csv", format!("{kept}{half}"));
    let recorded_before = sim.requests().len();

    let mut cmd = wd.confirm("in.csv", "r.csv", &sim.base_url());
    cmd.arg("--resume");
    let run = cmd.run_async().await;

    run.expect_code(0);
    let text = wd.read("r.csv");
    run.check(
        text.starts_with(&kept),
        format!("the complete records are kept byte for byte\n{text}"),
    );
    run.check(
        !text.contains("first line of the answer"),
        format!("the half-written record is cut\n{text}"),
    );
    let results = Results::read(&wd.path("r.csv"), &run);
    assert_eq!(results.rows.len(), customers.len(), "{text}{run}");
    let rows: BTreeSet<u64> = results.rows.iter().map(|r| r.row()).collect();
    assert_eq!(
        rows,
        (1..=customers.len() as u64).collect(),
        "exactly one line per input row\n{text}{run}"
    );
    for r in &results.rows {
        assert!(
            matches!(r.status(), "confirmed" | "already_confirmed"),
            "row {} is done\n{text}{run}",
            r.row()
        );
    }
    assert_eq!(
        results.by_row(lost_row).tenant(),
        lost_tenant,
        "the cut row is recorded again{run}"
    );
    let resent: Vec<String> = sim.requests()[recorded_before..]
        .iter()
        .map(|r| r.tenant.clone())
        .collect();
    assert_eq!(
        resent,
        std::slice::from_ref(&lost_tenant),
        "only the row whose line was cut is sent again{run}"
    );

    // A second resume finds everything done: nothing is sent, nothing is added.
    let before = wd.read_bytes("r.csv");
    let posts_before = sim.stats().agreement_posts;
    let mut cmd = wd.confirm("in.csv", "r.csv", &sim.base_url());
    cmd.arg("--resume");
    let again = cmd.run_async().await;
    again.expect_code(0);
    assert_eq!(
        sim.stats().agreement_posts,
        posts_before,
        "a second resume sends nothing{again}"
    );
    let after = wd.read_bytes("r.csv");
    assert!(
        after.starts_with(&before),
        "the second resume keeps every line{again}"
    );
    let results = Results::read(&wd.path("r.csv"), &again);
    let rows: BTreeSet<u64> = results.rows.iter().map(|r| r.row()).collect();
    assert_eq!(rows.len(), customers.len(), "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_results_file_written_with_redact_is_not_resumed() {
    let sim = default_simulator().await;
    let wd = Workdir::new();
    let customers = Customer::many(3);
    wd.create_customers("in.csv", &customers);

    let mut cmd = wd.confirm("in.csv", "r.csv", &sim.base_url());
    cmd.arg("--redact");
    cmd.run_async().await.expect_code(0);
    // A half-written last line too: refusing must not cut it either.
    let mut bytes = wd.read_bytes("r.csv");
    bytes.extend_from_slice(format!("4,{},First4,Last4,s***@con", customers[0].tenant).as_bytes());
    wd.create("r.csv", &bytes);
    let stats_before = sim.stats();

    // With the manifest as the run left it, then without it: the file's content alone is
    // enough to refuse.
    for without_manifest in [false, true] {
        if without_manifest {
            std::fs::remove_file(wd.path("r.csv.manifest.json")).expect("remove the manifest");
        }
        let mut cmd = wd.confirm("in.csv", "r.csv", &sim.base_url());
        cmd.arg("--resume");
        let run = cmd.run_async().await;
        run.expect_code(2).expect_stderr_contains("--redact");
        assert_eq!(
            wd.read_bytes("r.csv"),
            bytes,
            "the file is left as it was{run}"
        );
        let stats = sim.stats();
        assert_eq!(
            (stats.template_gets, stats.agreement_posts),
            (stats_before.template_gets, stats_before.agreement_posts),
            "nothing is sent{run}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_is_no_results_file_is_not_resumed_nor_changed() {
    let sim = default_simulator().await;
    let wd = Workdir::new();
    let customers = Customer::many(2);
    let input = wd.create_customers("in.csv", &customers);
    // The input itself, with a half-written line: the kind of file -o might point at by mistake.
    let mut bytes = std::fs::read(&input).expect("read the input");
    bytes.extend_from_slice(b"0f4d6f3e-7b9a-4c1e-9d2b-3a5c7e9f1b2d,Tan");
    wd.create("other.csv", &bytes);

    let mut cmd = wd.confirm("in.csv", "other.csv", &sim.base_url());
    cmd.arg("--resume");
    let run = cmd.run_async().await;

    run.expect_code(2)
        .expect_stderr_contains("not a results file");
    assert_eq!(
        wd.read_bytes("other.csv"),
        bytes,
        "the file is left byte for byte{run}"
    );
    run.check(no_calls(&sim.stats()), "nothing is sent");
}
