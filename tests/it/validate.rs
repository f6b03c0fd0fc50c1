//! `mca-attest validate`: the offline check. No network, no credentials, statuses `valid`,
//! `invalid`, `duplicate`; exit 1 when a row is invalid.

use crate::common::{
    Customer, RESULTS_HEADER, Results, Workdir, counts, default_simulator, no_calls,
};
use chrono::Utc;

#[test]
fn validate_checks_the_sample_without_credentials() {
    let wd = Workdir::new();
    wd.copy_from_repo("samples/customers.csv", "customers.csv");

    // Workdir commands carry no PARTNER_CENTER_* variable at all.
    let run = wd
        .command(["validate", "customers.csv", "-o", "report.csv"])
        .run();

    run.expect_code(1);
    let report = Results::read(&wd.path("report.csv"), &run);
    assert_eq!(
        report.row_numbers(),
        (1..=50).collect::<Vec<u64>>(),
        "{run}"
    );
    assert_eq!(
        report.counts(),
        counts(&[
            ("valid", 42),
            ("invalid", 5),
            ("duplicate", 1),
            ("conflict", 2)
        ]),
        "{run}"
    );
    let duplicate = report.by_row(41);
    assert_eq!(duplicate.status(), "duplicate", "{run}");
    assert!(
        duplicate.get("message").contains("10"),
        "names the earlier row: {duplicate:?}{run}"
    );
}

#[test]
fn validate_exits_zero_when_no_row_is_invalid() {
    let wd = Workdir::new();
    let c = Customer::new(1);
    wd.create_customers("in.csv", &[c.clone(), Customer::new(2), c]);

    let run = wd.command(["validate", "in.csv", "-o", "-"]).run();

    run.expect_code(0);
    let first_line = run
        .stdout
        .lines()
        .next()
        .unwrap_or_default()
        .trim_end_matches('\r');
    assert_eq!(first_line, RESULTS_HEADER, "{run}");
    let report = Results::parse(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not only the report: {e}{run}"));
    assert_eq!(
        report.counts(),
        counts(&[("valid", 2), ("duplicate", 1)]),
        "{run}"
    );
    assert_eq!(report.by_row(3).status(), "duplicate", "{run}");
}

#[test]
fn validate_reports_a_future_date_as_invalid() {
    let wd = Workdir::new();
    let future = (Utc::now() + chrono::Duration::days(2))
        .format("%Y-%m-%d")
        .to_string();
    wd.create_customers(
        "in.csv",
        &[Customer::new(1).date(&future), Customer::new(2)],
    );

    let run = wd.command(["validate", "in.csv", "-o", "report.csv"]).run();

    run.expect_code(1);
    let report = Results::read(&wd.path("report.csv"), &run);
    let line = report.by_row(1);
    assert_eq!(line.status(), "invalid", "{line:?}{run}");
    assert!(line.get("message").contains("date_agreed"), "{line:?}{run}");
    assert_eq!(report.by_row(2).status(), "valid", "{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_sends_nothing_even_when_an_api_and_a_token_are_configured() {
    let sim = default_simulator().await;
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(3));

    let mut cmd = wd.command(["validate", "in.csv", "-o", "report.csv"]);
    cmd.env("PARTNER_CENTER_BASE_URL", &sim.base_url())
        .env("PARTNER_CENTER_ACCESS_TOKEN", crate::common::TEST_TOKEN);
    let run = cmd.run_async().await;

    run.expect_code(0);
    let report = Results::read(&wd.path("report.csv"), &run);
    assert_eq!(report.counts(), counts(&[("valid", 3)]), "{run}");
    let stats = sim.stats();
    assert!(
        no_calls(&stats),
        "validate made a network call: {stats:?}{run}"
    );
}
