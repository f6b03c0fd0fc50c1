//! Runs that must not start (exit 2: nothing sent) and runs that must stop because Partner
//! Center refused the credentials (exit 3). Each exit-2 case runs against a live simulator
//! with valid settings otherwise, so that any request the binary made would be counted.

use crate::common::{Customer, Workdir, default_simulator, no_calls, start_simulator};
use mca_attest::simulator::{Simulator, SimulatorConfig};

fn assert_nothing_sent(sim: &Simulator, run: &crate::common::Run) {
    let stats = sim.stats();
    assert!(
        no_calls(&stats),
        "nothing may be sent, the simulator saw {stats:?}{run}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_required_column_is_refused_naming_it() {
    let sim = default_simulator().await;
    let wd = Workdir::new();
    let c = Customer::new(1);
    wd.create(
        "in.csv",
        format!(
            "customer_tenant_id,first_name,last_name,phone_number,date_agreed\n{},{},{},,{}\n",
            c.tenant, c.first_name, c.last_name, c.date_agreed
        ),
    );

    let run = wd
        .confirm("in.csv", "r.csv", &sim.base_url())
        .run_async()
        .await;

    run.expect_code(2).expect_stderr_contains("email");
    assert_nothing_sent(&sim, &run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_input_file_is_refused() {
    let sim = default_simulator().await;
    let wd = Workdir::new();

    let run = wd
        .confirm("no-such-file.csv", "r.csv", &sim.base_url())
        .run_async()
        .await;

    run.expect_code(2)
        .expect_stderr_contains("no-such-file.csv");
    assert_nothing_sent(&sim, &run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_input_file_is_refused() {
    let sim = default_simulator().await;
    let wd = Workdir::new();
    wd.create("in.csv", "");

    let run = wd
        .confirm("in.csv", "r.csv", &sim.base_url())
        .run_async()
        .await;

    run.expect_code(2).expect_stderr_contains("empty");
    assert_nothing_sent(&sim, &run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_input_file_is_refused() {
    let sim = default_simulator().await;
    let wd = Workdir::new();
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x10\0\0\0\x10\x08\x06\0\0\0".to_vec();
    png.extend(std::iter::repeat_n(0u8, 256));
    wd.create("picture.csv", png);

    let run = wd
        .confirm("picture.csv", "r.csv", &sim.base_url())
        .run_async()
        .await;

    run.expect_code(2).expect_stderr_contains("picture.csv");
    assert_nothing_sent(&sim, &run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_results_file_is_left_untouched_and_nothing_is_sent() {
    let sim = default_simulator().await;
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(2));
    let earlier = b"row,customer_tenant_id\r\n1,an earlier run's audit record\r\n\xff".to_vec();
    wd.create("r.csv", &earlier);

    let run = wd
        .confirm("in.csv", "r.csv", &sim.base_url())
        .run_async()
        .await;

    run.expect_code(2).expect_stderr_contains("r.csv");
    assert_eq!(
        wd.read_bytes("r.csv"),
        earlier,
        "the earlier results file changed{run}"
    );
    assert_nothing_sent(&sim, &run);
}

#[test]
fn plain_http_to_a_remote_host_is_refused() {
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(1));

    let run = wd.confirm("in.csv", "r.csv", "http://example.com").run();

    run.expect_code(2)
        .expect_stderr_contains("https is required");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_credentials_are_refused_naming_the_variables() {
    let sim = default_simulator().await;
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(1));

    let mut cmd = wd.confirm("in.csv", "r.csv", &sim.base_url());
    cmd.env_remove("PARTNER_CENTER_ACCESS_TOKEN");
    let run = cmd.run_async().await;

    run.expect_code(2)
        .expect_stderr_contains("PARTNER_CENTER_ACCESS_TOKEN")
        .expect_stderr_contains("PARTNER_CENTER_REFRESH_TOKEN");
    assert_nothing_sent(&sim, &run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_rate_is_refused() {
    let sim = default_simulator().await;
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(1));

    for rate in ["fast", "0/s", "5/fortnight"] {
        let run = wd
            .confirm_at_rate("in.csv", "r.csv", &sim.base_url(), rate)
            .run_async()
            .await;
        run.expect_code(2).expect_stderr_contains("rate");
        assert_nothing_sent(&sim, &run);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_credentials_abort_the_run_with_exit_3() {
    let sim = start_simulator(SimulatorConfig {
        access_tokens: vec!["good".into()],
        ..Default::default()
    })
    .await;
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(3));

    let mut cmd = wd.confirm("in.csv", "r.csv", &sim.base_url());
    cmd.env("PARTNER_CENTER_ACCESS_TOKEN", "not-the-good-one");
    let run = cmd.run_async().await;

    run.expect_code(3);
    let said = run.stderr.to_lowercase();
    run.check(
        (said.contains("refused") || said.contains("rejected"))
            && (said.contains("credentials") || said.contains("token")),
        "stderr says the credentials were refused",
    );
    let stats = sim.stats();
    assert!(
        stats.unauthorized >= 1,
        "the token was tried: {stats:?}{run}"
    );
    assert_eq!(stats.agreements_created, 0, "{stats:?}{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_without_mfa_claim_aborts_the_run_naming_error_900421() {
    let sim = start_simulator(SimulatorConfig {
        mfa_missing: true,
        ..Default::default()
    })
    .await;
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(3));

    let run = wd
        .confirm("in.csv", "r.csv", &sim.base_url())
        .run_async()
        .await;

    run.expect_code(3).expect_stderr_contains("900421");
    assert_eq!(sim.stats().agreements_created, 0, "{run}");
}
