//! `confirm --resume`: an earlier results file is continued. Customers it records as done are
//! not sent again, its lines are kept as they are, and new lines are appended.

mod common;

use std::collections::{BTreeSet, HashSet};

use common::{Customer, RESULTS_HEADER, Results, Workdir, start_simulator};
use mca_attest::simulator::SimulatorConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumed_run_sends_only_what_is_not_done_and_appends_to_the_results() {
    let wd = Workdir::new();
    let customers = Customer::many(4);
    wd.create_customers("in.csv", &customers);

    // First run: the last two tenants are unknown to this simulator, so they fail.
    let first_sim = start_simulator(SimulatorConfig {
        unknown_tenants: HashSet::from([customers[2].tenant_uuid(), customers[3].tenant_uuid()]),
        ..Default::default()
    })
    .await;
    let first = wd
        .confirm("in.csv", "r.csv", &first_sim.base_url())
        .run_async()
        .await;
    first.expect_code(1);
    let earlier = wd.read_bytes("r.csv");
    let earlier_results = Results::read(&wd.path("r.csv"), &first);
    assert_eq!(earlier_results.with_status("failed").len(), 2, "{first}");

    // Second run, resumed against a simulator that knows every tenant.
    let second_sim = start_simulator(SimulatorConfig::default()).await;
    let mut cmd = wd.confirm("in.csv", "r.csv", &second_sim.base_url());
    cmd.arg("--resume");
    let run = cmd.run_async().await;

    run.expect_code(0);
    let sent: BTreeSet<String> = second_sim
        .requests()
        .into_iter()
        .map(|r| r.tenant)
        .collect();
    let expected: BTreeSet<String> = customers[2..].iter().map(|c| c.tenant.clone()).collect();
    assert_eq!(
        sent, expected,
        "only the customers not done are sent again{run}"
    );

    let now = wd.read_bytes("r.csv");
    assert!(
        now.starts_with(&earlier),
        "the earlier lines are kept byte for byte\n--- before ---\n{}\n--- after ---\n{}{run}",
        String::from_utf8_lossy(&earlier),
        String::from_utf8_lossy(&now)
    );
    let text = String::from_utf8_lossy(&now);
    let headers = text
        .lines()
        .filter(|l| l.trim_end_matches('\r') == RESULTS_HEADER)
        .count();
    assert_eq!(headers, 1, "one header line\n{text}{run}");
    let results = Results::read(&wd.path("r.csv"), &run);
    for c in &customers[2..] {
        let confirmed = results
            .rows
            .iter()
            .filter(|r| r.tenant() == c.tenant && r.status() == "confirmed")
            .count();
        assert_eq!(
            confirmed, 1,
            "{} is confirmed in an appended line\n{text}{run}",
            c.tenant
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_of_a_missing_results_file_is_a_fresh_run() {
    let sim = start_simulator(SimulatorConfig::default()).await;
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(2));

    let mut cmd = wd.confirm("in.csv", "r.csv", &sim.base_url());
    cmd.arg("--resume");
    let run = cmd.run_async().await;

    run.expect_code(0);
    let results = Results::read(&wd.path("r.csv"), &run);
    assert_eq!(results.header_line(), RESULTS_HEADER, "{run}");
    assert_eq!(results.with_status("confirmed").len(), 2, "{run}");
}
