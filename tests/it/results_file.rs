//! The results file, the audit record of a `confirm` run: its header, its cells, where it goes,
//! and what happens when it cannot be written.

use std::collections::HashSet;

use crate::common::{
    Customer, RESULTS_HEADER, Results, Workdir, counts, default_simulator, no_calls,
};
use chrono::DateTime;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_header_is_the_contracts_columns_in_order() {
    let sim = default_simulator().await;
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(1));

    let run = wd
        .confirm("in.csv", "r.csv", &sim.base_url())
        .run_async()
        .await;

    run.expect_code(0);
    let text = wd.read("r.csv");
    let first_line = text
        .lines()
        .next()
        .unwrap_or_default()
        .trim_end_matches('\r');
    assert_eq!(first_line, RESULTS_HEADER, "{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cells_a_spreadsheet_would_run_as_formulas_get_a_leading_quote() {
    let sim = default_simulator().await;
    let wd = Workdir::new();
    let hyperlink = Customer::new(1)
        .first_name("=HYPERLINK(\"x\")")
        .phone("+1 425 555 0100");
    let sum = Customer::new(2).first_name("@SUM(A1)").last_name("-2+3");
    let invalid = Customer::new(3).tenant("=1+1");
    wd.create_customers("in.csv", &[hyperlink, sum, invalid]);

    let run = wd
        .confirm("in.csv", "r.csv", &sim.base_url())
        .run_async()
        .await;

    run.expect_code(1);
    let results = Results::read(&wd.path("r.csv"), &run);
    let line = results.by_row(1);
    assert_eq!(
        line.get("first_name"),
        "'=HYPERLINK(\"x\")",
        "{line:?}{run}"
    );
    assert_eq!(
        line.get("phone_number"),
        "'+1 425 555 0100",
        "{line:?}{run}"
    );
    let line = results.by_row(2);
    assert_eq!(line.get("first_name"), "'@SUM(A1)", "{line:?}{run}");
    assert_eq!(line.get("last_name"), "'-2+3", "{line:?}{run}");
    let line = results.by_row(3);
    assert_eq!(line.status(), "invalid", "{line:?}{run}");
    assert_eq!(
        line.tenant(),
        "'=1+1",
        "cells echoed from an invalid row too: {line:?}{run}"
    );
    // The quote is for the file only: Partner Center gets the values as typed.
    let requests = sim.requests();
    let contact = &requests
        .iter()
        .find(|r| r.body["primaryContact"]["firstName"] == "=HYPERLINK(\"x\")")
        .unwrap_or_else(|| panic!("the first name is sent as typed: {requests:#?}{run}"))
        .body["primaryContact"];
    assert_eq!(contact["phoneNumber"], "+1 425 555 0100", "{contact}{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_at_is_rfc3339_utc_on_every_line() {
    let sim = default_simulator().await;
    let wd = Workdir::new();
    let good = Customer::new(1);
    let bad = Customer::new(2).email("not-an-address");
    wd.create_customers("in.csv", &[good.clone(), bad, good]);

    let run = wd
        .confirm("in.csv", "r.csv", &sim.base_url())
        .run_async()
        .await;

    run.expect_code(1);
    let results = Results::read(&wd.path("r.csv"), &run);
    assert_eq!(
        results.counts(),
        counts(&[("confirmed", 1), ("invalid", 1), ("duplicate", 1)]),
        "{run}"
    );
    for r in &results.rows {
        let at = r.get("finished_at");
        let parsed = DateTime::parse_from_rfc3339(at);
        assert!(
            parsed.is_ok_and(|t| t.offset().local_minus_utc() == 0) && at.ends_with('Z'),
            "finished_at {at:?} is not RFC 3339 UTC: {r:?}{run}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_go_beside_the_input_by_default() {
    let sim = default_simulator().await;
    let wd = Workdir::new();
    let path = wd.create("batch/wave1.csv", {
        let mut text = format!("{}\n", crate::common::INPUT_HEADER);
        for c in Customer::many(2) {
            text.push_str(&c.csv_line(','));
            text.push('\n');
        }
        text
    });

    let mut cmd = wd.command([
        "confirm",
        path.to_str().unwrap(),
        "--base-url",
        &sim.base_url(),
        "--rate",
        "1000/s",
        "--no-progress",
    ]);
    cmd.env("PARTNER_CENTER_ACCESS_TOKEN", crate::common::TEST_TOKEN);
    let run = cmd.run_async().await;

    run.expect_code(0);
    let results = Results::read(&wd.path("batch/wave1.results.csv"), &run);
    assert_eq!(results.counts(), counts(&[("confirmed", 2)]), "{run}");
    assert!(
        !wd.exists("wave1.results.csv"),
        "results written to the working directory{run}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dash_output_writes_the_results_csv_and_nothing_else_to_stdout() {
    let sim = default_simulator().await;
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(3));

    let mut cmd = wd.confirm("in.csv", "-", &sim.base_url());
    cmd.env("RUST_LOG", "debug");
    let run = cmd.run_async().await;

    run.expect_code(0);
    let first_line = run
        .stdout
        .lines()
        .next()
        .unwrap_or_default()
        .trim_end_matches('\r');
    assert_eq!(first_line, RESULTS_HEADER, "{run}");
    let results = Results::parse(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not only the results CSV: {e}{run}"));
    assert_eq!(results.counts(), counts(&[("confirmed", 3)]), "{run}");
    assert!(
        !wd.exists("in.results.csv") && !wd.exists("-"),
        "no results file besides stdout{run}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_only_input_gives_a_header_only_results_file_and_sends_nothing() {
    let sim = default_simulator().await;
    let wd = Workdir::new();
    wd.create("in.csv", format!("{}\r\n", crate::common::INPUT_HEADER));

    let run = wd
        .confirm("in.csv", "r.csv", &sim.base_url())
        .run_async()
        .await;

    run.expect_code(0);
    run.expect_stderr_contains("no data rows");
    let results = Results::read(&wd.path("r.csv"), &run);
    assert_eq!(results.header_line(), RESULTS_HEADER, "{run}");
    assert!(results.rows.is_empty(), "{results:?}{run}");
    let stats = sim.stats();
    assert!(no_calls(&stats), "no network call: {stats:?}{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_manifest_is_written_beside_the_results_file() {
    let sim = default_simulator().await;
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(2));

    let run = wd
        .confirm("in.csv", "r.csv", &sim.base_url())
        .run_async()
        .await;

    run.expect_code(0);
    let path = wd.path("r.csv.manifest.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("no run manifest at {}: {e}{run}", path.display()));
    let manifest: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("the manifest is not JSON: {e}\n{text}{run}"));
    for needle in [
        env!("CARGO_PKG_VERSION"),
        "in.csv",
        mca_attest::simulator::MCA_TEMPLATE_ID,
        &sim.base_url(),
    ] {
        assert!(
            text.contains(needle),
            "the manifest mentions {needle:?}\n{manifest:#}{run}"
        );
    }
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_file_that_cannot_be_written_at_all_stops_the_run_before_any_post() {
    let sim = default_simulator().await;
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(3));
    // A results file on a full disk: opening works, every write fails with ENOSPC. Through a
    // link in the workdir, so that anything written beside it stays in the workdir.
    std::os::unix::fs::symlink("/dev/full", wd.path("r.csv")).expect("link r.csv to /dev/full");

    let run = wd
        .confirm("in.csv", "r.csv", &sim.base_url())
        .run_async()
        .await;

    run.expect_code(3).expect_stderr_contains("r.csv");
    assert_eq!(
        sim.stats().agreement_posts,
        0,
        "no POST whose outcome could not be recorded{run}"
    );
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_file_filling_up_mid_run_stops_sending_and_exits_3() {
    let sim = default_simulator().await;
    let wd = Workdir::new();
    let customers = Customer::many(40);
    wd.create_customers("in.csv", &customers);

    // Files may grow to 2 or 4 KiB (the shell's ulimit blocks): the header and a few lines
    // fit, the 40 lines do not. One row at a time, so that at most the row whose line could
    // not be written and the next one are sent and not recorded.
    let mut cmd = wd.confirm_with_file_size_limit(4, "in.csv", "r.csv", &sim.base_url(), "200/s");
    cmd.args(["--concurrency", "1"]);
    let run = cmd.run_async().await;

    run.expect_code(3)
        .expect_stderr_contains("r.csv")
        .expect_stderr_contains("--resume");
    let text = wd.read("r.csv");
    let recorded = Results::parse_complete_lines(&text)
        .unwrap_or_else(|e| panic!("the lines written are not valid CSV: {e}\n{text}{run}"));
    assert!(
        !recorded.rows.is_empty() && recorded.rows.len() < customers.len(),
        "the file filled up mid-run\n{text}{run}"
    );
    let recorded_tenants: HashSet<&str> = recorded.rows.iter().map(|r| r.tenant()).collect();
    let sent_not_recorded: Vec<String> = sim
        .requests()
        .into_iter()
        .map(|r| r.tenant)
        .filter(|t| !recorded_tenants.contains(t.as_str()))
        .collect();
    // The writer task records a row after its worker has let the next row start: the row
    // whose line failed, and at most the one row in flight when the failure stopped the run.
    assert!(
        sent_not_recorded.len() <= 2,
        "only the row whose line failed, and the one in flight then, may be sent without being \
         recorded; nothing is sent after: {sent_not_recorded:#?}\n{text}{run}"
    );
}
