//! Retries and interruptions: a row keeps its MS-RequestId across attempts, throttling is
//! waited out, `--max-attempts` ends a row as `failed`, client errors are never retried, a
//! service that keeps failing stops the run, and an interrupted run records what finished and
//! exits 130.

use std::collections::{BTreeMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Customer, Results, Workdir, counts, start_simulator, uuid_of, wait_until};
use mca_attest::simulator::{
    AgreementSource, Faults, MCA_TEMPLATE_ID, RateLimit, RecordedRequest, Simulator,
    SimulatorConfig, StoredAgreement,
};

/// The POSTs the simulator saw, per tenant, in arrival order.
fn posts_by_tenant(requests: Vec<RecordedRequest>) -> BTreeMap<String, Vec<RecordedRequest>> {
    let mut map: BTreeMap<String, Vec<RecordedRequest>> = BTreeMap::new();
    for r in requests {
        map.entry(r.tenant.clone()).or_default().push(r);
    }
    map
}

/// Every attempt of a row carries the row's request id and a correlation id of its own;
/// `attempts` counts them; the correlation id recorded is the last attempt's.
fn assert_attempts_match_the_results(
    results: &Results,
    requests: Vec<RecordedRequest>,
    run: &crate::common::Run,
) {
    let posts = posts_by_tenant(requests);
    for line in &results.rows {
        let sent = posts
            .get(line.tenant())
            .unwrap_or_else(|| panic!("no POST for {line:?}{run}"));
        let request_id = uuid_of(line.get("request_id"), "request_id column");
        for attempt in sent {
            assert_eq!(
                uuid_of(
                    attempt.request_id.as_deref().unwrap_or_default(),
                    "MS-RequestId"
                ),
                request_id,
                "every attempt of row {} carries its request id: {sent:#?}{run}",
                line.row()
            );
        }
        let correlation_ids: HashSet<Option<&str>> =
            sent.iter().map(|a| a.correlation_id.as_deref()).collect();
        assert_eq!(
            correlation_ids.len(),
            sent.len(),
            "every attempt of row {} has a new correlation id: {sent:#?}{run}",
            line.row()
        );
        assert_eq!(
            line.get("attempts"),
            sent.len().to_string(),
            "attempts of row {}: {sent:#?}{run}",
            line.row()
        );
        let last = sent.last().expect("at least one attempt");
        assert_eq!(
            uuid_of(
                last.correlation_id.as_deref().unwrap_or_default(),
                "MS-CorrelationId"
            ),
            uuid_of(line.get("correlation_id"), "correlation_id column"),
            "the correlation id of row {}'s last attempt: {sent:#?}{run}",
            line.row()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answer_lost_after_the_agreement_was_made_is_retried_with_the_same_request_id() {
    let sim = start_simulator(SimulatorConfig {
        faults: Faults {
            seed: 7,
            drop_after_commit_rate: 0.3,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let wd = Workdir::new();
    let customers = Customer::many(8);
    wd.create_customers("in.csv", &customers);

    let run = wd
        .confirm("in.csv", "r.csv", &sim.base_url())
        .run_async()
        .await;

    let stats = sim.stats();
    assert!(
        stats.faults_injected >= 1,
        "the seed must drop at least one answer: {stats:?}{run}"
    );
    run.expect_code(0);
    let results = Results::read(&wd.path("r.csv"), &run);
    assert_eq!(results.counts(), counts(&[("confirmed", 8)]), "{run}");
    for c in &customers {
        assert_eq!(
            sim.agreements(c.tenant_uuid()).len(),
            1,
            "one agreement for {}, however many attempts{run}",
            c.tenant
        );
    }
    assert_attempts_match_the_results(&results, sim.requests(), &run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_rows_wait_and_are_retried_with_the_same_request_id() {
    let sim = start_simulator(SimulatorConfig {
        rate_limit: Some(RateLimit {
            max_requests: 2,
            window: Duration::from_secs(1),
        }),
        ..Default::default()
    })
    .await;
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(3));

    let run = wd
        .confirm("in.csv", "r.csv", &sim.base_url())
        .run_async()
        .await;

    let stats = sim.stats();
    assert!(
        stats.throttled >= 1,
        "at 1000/s against 2/s some requests are throttled: {stats:?}{run}"
    );
    run.expect_code(0);
    let results = Results::read(&wd.path("r.csv"), &run);
    assert_eq!(results.counts(), counts(&[("confirmed", 3)]), "{run}");
    assert_eq!(stats.agreements_created, 3, "{stats:?}{run}");
    assert_attempts_match_the_results(&results, sim.requests(), &run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_that_keeps_failing_is_failed_after_max_attempts() {
    let sim = start_simulator(SimulatorConfig {
        faults: Faults {
            fail_rate: 1.0,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(2));

    let mut cmd = wd.confirm("in.csv", "r.csv", &sim.base_url());
    cmd.args(["--max-attempts", "2"]);
    let run = cmd.run_async().await;

    run.expect_code(1);
    let results = Results::read(&wd.path("r.csv"), &run);
    assert_eq!(results.counts(), counts(&[("failed", 2)]), "{run}");
    for line in &results.rows {
        assert_eq!(line.get("attempts"), "2", "{line:?}{run}");
        assert_eq!(line.get("http_status"), "503", "{line:?}{run}");
    }
    assert_eq!(sim.stats().agreement_posts, 4, "{run}");
    assert_attempts_match_the_results(&results, sim.requests(), &run);
}

/// A child process killed when dropped, so a failing test leaves nothing running.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_run_records_every_finished_row_and_exits_130() {
    let sim = start_simulator(SimulatorConfig {
        latency: Duration::from_millis(300),
        ..Default::default()
    })
    .await;
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(40));
    let mut cmd = Command::new(crate::common::binary());
    cmd.args([
        "confirm",
        "in.csv",
        "-o",
        "r.csv",
        "--base-url",
        &sim.base_url(),
        "--rate",
        "10/s",
        "--no-progress",
    ])
    .current_dir(wd.dir())
    .env("PARTNER_CENTER_ACCESS_TOKEN", crate::common::TEST_TOKEN)
    .env_remove("PARTNER_CENTER_BASE_URL")
    .env_remove("RUST_LOG")
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(wd.path("stderr.txt")).expect("create stderr.txt"));
    let mut child = ChildGuard(cmd.spawn().expect("spawn confirm"));

    // Interrupt once rows are in flight: wait for the simulator to have received some POSTs.
    let deadline = Instant::now() + Duration::from_secs(20);
    while sim.stats().agreement_posts < 3 {
        assert!(
            Instant::now() < deadline,
            "no POST arrived: {}",
            wd.read("stderr.txt")
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pid = child.0.id().to_string();
    let signalled = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("run kill");
    assert!(signalled.success(), "kill -INT {pid} failed");
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait for confirm") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "confirm did not stop after SIGINT: {}",
            wd.read("stderr.txt")
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };

    let stderr = wd.read("stderr.txt");
    assert_eq!(
        status.code(),
        Some(130),
        "exit status {status} after SIGINT\n--- stderr ---\n{stderr}"
    );
    let text = wd.read("r.csv");
    let results = Results::parse(&text)
        .unwrap_or_else(|e| panic!("the results file is not valid CSV: {e}\n{text}"));
    let created = sim.stats().agreements_created as usize;
    assert!(
        created < 40,
        "the run stopped early, yet all 40 agreements were made\n{stderr}"
    );
    assert_eq!(
        results.with_status("confirmed").len(),
        created,
        "every agreement made, in flight ones included, is recorded\n{text}\n--- stderr ---\n{stderr}"
    );
}

/// A simulator injecting `faults` into the agreement POSTs.
async fn simulator_with_faults(faults: Faults) -> Simulator {
    start_simulator(SimulatorConfig {
        faults,
        ..Default::default()
    })
    .await
}

/// Every customer has exactly one agreement on record, however many attempts it took.
fn assert_one_agreement_each(sim: &Simulator, customers: &[Customer], run: &crate::common::Run) {
    for c in customers {
        assert_eq!(
            sim.agreements(c.tenant_uuid()).len(),
            1,
            "one agreement for {}{run}",
            c.tenant
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_until_confirmed_with_the_same_request_id() {
    // Seed 1 fails the very first POST, then about one in three.
    let sim = simulator_with_faults(Faults {
        seed: 1,
        fail_rate: 0.3,
        ..Default::default()
    })
    .await;
    let wd = Workdir::new();
    let customers = Customer::many(8);
    wd.create_customers("in.csv", &customers);

    let run = wd
        .confirm_at_rate("in.csv", "r.csv", &sim.base_url(), "200/s")
        .run_async()
        .await;

    let requests = sim.requests();
    assert!(
        requests.iter().any(|r| r.http_status == 503),
        "the seed must answer some POST 503: {requests:#?}{run}"
    );
    run.expect_code(0);
    let results = Results::read(&wd.path("r.csv"), &run);
    assert_eq!(results.counts(), counts(&[("confirmed", 8)]), "{run}");
    assert_one_agreement_each(&sim, &customers, &run);
    assert_attempts_match_the_results(&results, requests, &run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_are_retried_until_confirmed_with_the_same_request_id() {
    // Seed 1 drops the connection of the very first POST, then about one in three.
    let sim = simulator_with_faults(Faults {
        seed: 1,
        drop_rate: 0.3,
        ..Default::default()
    })
    .await;
    let wd = Workdir::new();
    let customers = Customer::many(8);
    wd.create_customers("in.csv", &customers);

    let run = wd
        .confirm_at_rate("in.csv", "r.csv", &sim.base_url(), "200/s")
        .run_async()
        .await;

    let requests = sim.requests();
    assert!(
        requests.iter().any(|r| r.http_status == 0),
        "the seed must drop some connection: {requests:#?}{run}"
    );
    run.expect_code(0);
    let results = Results::read(&wd.path("r.csv"), &run);
    assert_eq!(results.counts(), counts(&[("confirmed", 8)]), "{run}");
    assert_one_agreement_each(&sim, &customers, &run);
    assert_attempts_match_the_results(&results, requests, &run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_out_requests_are_retried_with_the_same_request_id() {
    // Seed 5 makes the first POST (and about one in three) answer after 1.5 s: the agreement
    // is made, but the client gave up after 1 s. The retry must carry the same request id so
    // the service answers it as the same request instead of refusing a duplicate.
    let sim = simulator_with_faults(Faults {
        seed: 5,
        slow_rate: 0.3,
        slow: Duration::from_millis(1500),
        ..Default::default()
    })
    .await;
    let wd = Workdir::new();
    let customers = Customer::many(6);
    wd.create_customers("in.csv", &customers);

    let mut cmd = wd.confirm_at_rate("in.csv", "r.csv", &sim.base_url(), "200/s");
    cmd.args(["--timeout", "1"]);
    let run = cmd.run_async().await;

    assert!(
        sim.stats().faults_injected >= 1,
        "the seed must slow some POST down: {:?}{run}",
        sim.stats()
    );
    run.expect_code(0);
    let results = Results::read(&wd.path("r.csv"), &run);
    assert_eq!(results.counts(), counts(&[("confirmed", 6)]), "{run}");
    assert!(
        results.rows.iter().any(|r| r.get("attempts") != "1"),
        "a timed-out row took more than one attempt: {:#?}{run}",
        results.rows
    );
    assert_one_agreement_each(&sim, &customers, &run);
    assert_attempts_match_the_results(&results, sim.requests(), &run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_are_sent_exactly_once() {
    let unknown = Customer::new(1);
    let stranger = Customer::new(2);
    let done = Customer::new(3);
    let sim = start_simulator(SimulatorConfig {
        unknown_tenants: HashSet::from([unknown.tenant_uuid()]),
        no_relationship: HashSet::from([stranger.tenant_uuid()]),
        existing: vec![(
            done.tenant_uuid(),
            StoredAgreement {
                first_name: done.first_name.clone(),
                last_name: done.last_name.clone(),
                email: done.email.clone(),
                phone_number: None,
                template_id: MCA_TEMPLATE_ID.into(),
                // After the MCA refresh cutoff: a current acceptance, so "already exists" is done.
                date_agreed: chrono::DateTime::from_timestamp(1_718_323_200, 0)
                    .expect("2024-06-14"),
                agreement_type: "MicrosoftCustomerAgreement".into(),
                source: AgreementSource::Existing,
                date_without_z: false,
            },
        )],
        ..Default::default()
    })
    .await;
    let wd = Workdir::new();
    wd.create_customers("in.csv", &[unknown, stranger, done, Customer::new(4)]);

    let run = wd
        .confirm_at_rate("in.csv", "r.csv", &sim.base_url(), "200/s")
        .run_async()
        .await;

    run.expect_code(1);
    let results = Results::read(&wd.path("r.csv"), &run);
    let posts = posts_by_tenant(sim.requests());
    for (row, http_status, status) in [
        (1, "404", "failed"),
        (2, "403", "failed"),
        (3, "400", "already_confirmed"),
    ] {
        let line = results.by_row(row);
        assert_eq!(line.status(), status, "{line:?}{run}");
        assert_eq!(line.get("http_status"), http_status, "{line:?}{run}");
        assert_eq!(line.get("attempts"), "1", "{line:?}{run}");
        let sent = posts.get(line.tenant()).map_or(0, Vec::len);
        assert_eq!(sent, 1, "one POST for row {row} ({http_status}){run}");
    }
    assert_eq!(results.by_row(4).status(), "confirmed", "{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_rows_in_a_row_failing_with_server_errors_stop_the_run_with_exit_3() {
    let sim = simulator_with_faults(Faults {
        fail_rate: 1.0,
        ..Default::default()
    })
    .await;
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(60));

    // One row at a time, so that the run stops exactly at the twentieth failure.
    let mut cmd = wd.confirm_at_rate("in.csv", "r.csv", &sim.base_url(), "200/s");
    cmd.args(["--max-attempts", "1", "--concurrency", "1"]);
    let run = cmd.run_async().await;

    run.expect_code(3)
        .expect_stderr_contains("unavailable")
        .expect_stderr_contains("--resume");
    assert_eq!(
        sim.stats().agreement_posts,
        20,
        "the run stops after 20 failed rows, not at the end of the 60{run}"
    );
    let results = Results::read(&wd.path("r.csv"), &run);
    assert_eq!(
        results.counts(),
        counts(&[("failed", 20)]),
        "every row sent is recorded{run}"
    );
}

/// Each stop signal (Ctrl-C's SIGINT, a service manager's SIGTERM, a closed terminal's SIGHUP)
/// is the user's stop: reported as such, not as an error with a cause to fix, with the command
/// that continues the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_run_prints_the_command_that_resumes_it() {
    let sim = start_simulator(SimulatorConfig {
        latency: Duration::from_millis(300),
        ..Default::default()
    })
    .await;
    for signal in ["INT", "TERM", "HUP"] {
        let wd = Workdir::new();
        wd.create_customers("in.csv", &Customer::many(20));
        let posted = sim.stats().agreement_posts;
        let mut bg = wd.spawn_confirm("in.csv", "r.csv", &sim.base_url(), "20/s", &[]);
        wait_until(
            Duration::from_secs(20),
            || sim.stats().agreement_posts >= posted + 2,
            || format!("POSTs in flight{}", bg.describe()),
        )
        .await;

        bg.signal(signal);
        let status = bg.wait(Duration::from_secs(20)).await;

        assert_eq!(
            status.code(),
            Some(130),
            "SIG{signal}: {status}{}",
            bg.describe()
        );
        let stderr = bg.stderr();
        assert!(
            stderr.lines().any(|l| l.contains("confirm")
                && l.contains("in.csv")
                && l.contains("r.csv")
                && l.contains("--resume")),
            "SIG{signal}: a line gives the command that continues the run{}",
            bg.describe()
        );
        assert!(
            stderr.contains("stopped as asked") && stderr.contains("to continue where it stopped"),
            "SIG{signal}: the stop is reported as the user's{}",
            bg.describe()
        );
        assert!(
            !stderr.contains("ERROR") && !stderr.contains("once the cause is fixed"),
            "SIG{signal}: a stop asked for is no error{}",
            bg.describe()
        );
    }
}
