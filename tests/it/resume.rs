//! `confirm --resume`: an earlier results file is continued. Customers it records as done are
//! not sent again, its lines are kept as they are, and new lines are appended; a run killed
//! mid-way (SIGKILL: nothing gets to run) is finished this way.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use crate::common::{Customer, RESULTS_HEADER, Results, Workdir, start_simulator, wait_until};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_run_resumed_sends_no_recorded_row_again_and_finishes_the_rest() {
    // The simulator keeps its agreements across both runs, as Partner Center would: rows in
    // flight when the first run died were perhaps created, and must come back
    // already_confirmed rather than twice.
    let sim = start_simulator(SimulatorConfig {
        latency: Duration::from_millis(200),
        ..Default::default()
    })
    .await;
    let wd = Workdir::new();
    let customers = Customer::many(30);
    wd.create_customers("in.csv", &customers);
    let done_in = |text: &str| {
        Results::parse_complete_lines(text).map_or(0, |r| {
            r.rows.iter().filter(|l| l.status() == "confirmed").count()
        })
    };

    let mut first = wd.spawn_confirm("in.csv", "r.csv", &sim.base_url(), "40/s", &[]);
    wait_until(
        Duration::from_secs(20),
        || done_in(&std::fs::read_to_string(wd.path("r.csv")).unwrap_or_default()) >= 4,
        || format!("four confirmed lines{}", first.describe()),
    )
    .await;
    first.kill();

    let killed_text = wd.read("r.csv");
    let killed = Results::parse_complete_lines(&killed_text)
        .unwrap_or_else(|e| panic!("the killed run's lines are not valid CSV: {e}\n{killed_text}"));
    assert!(
        killed.rows.len() < customers.len(),
        "the first run was killed before the end\n{killed_text}"
    );
    let recorded_done: BTreeSet<String> = killed
        .rows
        .iter()
        .filter(|l| matches!(l.status(), "confirmed" | "already_confirmed"))
        .map(|l| l.tenant().to_string())
        .collect();
    let sent_before = sim.requests().len();

    let mut cmd = wd.confirm("in.csv", "r.csv", &sim.base_url());
    cmd.arg("--resume");
    let run = cmd.run_async().await;

    run.expect_code(0);
    let resumed_posts: Vec<String> = sim.requests()[sent_before..]
        .iter()
        .map(|r| r.tenant.clone())
        .collect();
    assert!(
        !resumed_posts.is_empty(),
        "the resumed run sent the rest{run}"
    );
    for tenant in &resumed_posts {
        assert!(
            !recorded_done.contains(tenant),
            "{tenant} was recorded done before the kill, yet sent again\n{killed_text}{run}"
        );
    }
    let results = Results::read(&wd.path("r.csv"), &run);
    for c in &customers {
        let done = results
            .rows
            .iter()
            .filter(|l| {
                l.tenant() == c.tenant && matches!(l.status(), "confirmed" | "already_confirmed")
            })
            .count();
        assert_eq!(
            done,
            1,
            "{} is done on exactly one line\n{}{run}",
            c.tenant,
            wd.read("r.csv")
        );
        assert_eq!(
            sim.agreements(c.tenant_uuid()).len(),
            1,
            "one agreement for {}{run}",
            c.tenant
        );
    }
}
