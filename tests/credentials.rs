//! The refresh-token flow (secure application model): access tokens minted from the token
//! authority, renewed when they run out, rotated refresh tokens followed, secrets kept out of
//! every output, and incomplete or refused credentials reported.

mod common;

use std::time::Duration;

use common::{Customer, Results, Workdir, counts, no_calls, start_simulator};
use mca_attest::simulator::{Simulator, SimulatorConfig, TokenEndpointConfig};
use secrecy::SecretString;

const CLIENT_ID: &str = "0d7f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b";
const CLIENT_SECRET: &str = "client-sekret-456";
const REFRESH_TOKEN: &str = "refresh-sekret-789";
const PARTNER_TENANT: &str = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d";

/// A simulator whose API accepts only tokens its own token endpoint issued.
async fn simulator_with_authority(token_ttl: Duration, rotate_refresh_token: bool) -> Simulator {
    start_simulator(SimulatorConfig {
        token_endpoint: Some(TokenEndpointConfig {
            client_id: CLIENT_ID.into(),
            client_secret: SecretString::from(CLIENT_SECRET),
            refresh_token: SecretString::from(REFRESH_TOKEN),
            token_ttl,
            rotate_refresh_token,
        }),
        ..Default::default()
    })
    .await
}

/// `confirm` with the four refresh-flow variables (no access token), the authority being the
/// simulator itself.
fn confirm_with_refresh_flow(
    wd: &Workdir,
    sim: &Simulator,
    refresh_token: &str,
    rate: &str,
) -> common::Cmd {
    let mut cmd = wd.confirm_at_rate("in.csv", "r.csv", &sim.base_url(), rate);
    cmd.env_remove("PARTNER_CENTER_ACCESS_TOKEN")
        .env("PARTNER_CENTER_TENANT_ID", PARTNER_TENANT)
        .env("PARTNER_CENTER_CLIENT_ID", CLIENT_ID)
        .env("PARTNER_CENTER_CLIENT_SECRET", CLIENT_SECRET)
        .env("PARTNER_CENTER_REFRESH_TOKEN", refresh_token)
        .env("PARTNER_CENTER_AUTHORITY", &sim.base_url());
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_token_flow_mints_one_access_token_for_a_short_run() {
    let sim = simulator_with_authority(Duration::from_secs(3599), false).await;
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(3));

    let run = confirm_with_refresh_flow(&wd, &sim, REFRESH_TOKEN, "1000/s")
        .run_async()
        .await;

    run.expect_code(0);
    let results = Results::read(&wd.path("r.csv"), &run);
    assert_eq!(results.counts(), counts(&[("confirmed", 3)]), "{run}");
    let stats = sim.stats();
    assert_eq!(
        stats.token_requests, 1,
        "one token serves the whole run: {stats:?}{run}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_token_is_renewed_before_it_expires_using_the_rotated_refresh_token() {
    // Tokens live 2 s and every exchange replaces the refresh token: a run of about 2.5 s needs
    // a renewal, and that works only with the refresh token the previous answer carried.
    let sim = simulator_with_authority(Duration::from_secs(2), true).await;
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(20));

    let mut cmd = confirm_with_refresh_flow(&wd, &sim, REFRESH_TOKEN, "8/s");
    cmd.args(["--concurrency", "1"]);
    let run = cmd.run_async().await;

    run.expect_code(0);
    let results = Results::read(&wd.path("r.csv"), &run);
    assert_eq!(results.counts(), counts(&[("confirmed", 20)]), "{run}");
    let stats = sim.stats();
    assert!(
        stats.token_requests >= 2,
        "the access token was renewed: {stats:?}{run}"
    );
    assert_eq!(
        stats.unauthorized, 0,
        "no request went out with an expired token: {stats:?}{run}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_waiting_for_the_rate_limit_go_out_with_a_live_token() {
    // Eight workers queue at 8/s, so a request may wait up to a second for its slot: as long as
    // the whole life of these tokens. The token must be the one current when the request
    // leaves, not the one current when it started waiting.
    let sim = simulator_with_authority(Duration::from_secs(1), false).await;
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(12));

    let run = confirm_with_refresh_flow(&wd, &sim, REFRESH_TOKEN, "8/s")
        .run_async()
        .await;

    run.expect_code(0);
    let results = Results::read(&wd.path("r.csv"), &run);
    assert_eq!(results.counts(), counts(&[("confirmed", 12)]), "{run}");
    let stats = sim.stats();
    assert_eq!(
        stats.unauthorized, 0,
        "no request went out with an expired token: {stats:?}{run}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_flow_secrets_never_appear_in_output_logs_or_files() {
    let sim = simulator_with_authority(Duration::from_secs(3599), false).await;
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(2));

    let mut cmd = confirm_with_refresh_flow(&wd, &sim, REFRESH_TOKEN, "1000/s");
    cmd.env("RUST_LOG", "trace")
        .args(["--summary-json", "summary.json"]);
    let run = cmd.run_async().await;

    run.expect_code(0);
    assert_no_secret_anywhere(
        &wd,
        &run,
        &[CLIENT_SECRET, REFRESH_TOKEN, "simat.", "simrt."],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_refresh_token_aborts_the_run_naming_the_variable() {
    let sim = simulator_with_authority(Duration::from_secs(3599), false).await;
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(2));

    let run = confirm_with_refresh_flow(&wd, &sim, "revoked-refresh-token", "1000/s")
        .run_async()
        .await;

    run.expect_code(3)
        .expect_stderr_contains("PARTNER_CENTER_REFRESH_TOKEN");
    let stats = sim.stats();
    assert!(
        stats.token_requests >= 1,
        "the authority was asked: {stats:?}{run}"
    );
    assert_eq!(stats.agreements_created, 0, "{stats:?}{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incomplete_refresh_flow_variables_are_refused_naming_the_missing_ones() {
    let sim = simulator_with_authority(Duration::from_secs(3599), false).await;
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(1));

    let mut cmd = wd.confirm("in.csv", "r.csv", &sim.base_url());
    cmd.env_remove("PARTNER_CENTER_ACCESS_TOKEN")
        .env("PARTNER_CENTER_TENANT_ID", PARTNER_TENANT)
        .env("PARTNER_CENTER_CLIENT_ID", CLIENT_ID)
        .env("PARTNER_CENTER_AUTHORITY", &sim.base_url());
    let run = cmd.run_async().await;

    run.expect_code(2)
        .expect_stderr_contains("PARTNER_CENTER_CLIENT_SECRET")
        .expect_stderr_contains("PARTNER_CENTER_REFRESH_TOKEN");
    let stats = sim.stats();
    assert!(no_calls(&stats), "nothing may be sent: {stats:?}{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_token_authority_off_loopback_is_refused() {
    let sim = simulator_with_authority(Duration::from_secs(3599), false).await;
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(1));

    let mut cmd = confirm_with_refresh_flow(&wd, &sim, REFRESH_TOKEN, "1000/s");
    cmd.env("PARTNER_CENTER_AUTHORITY", "http://login.example.com");
    let run = cmd.run_async().await;

    run.expect_code(2)
        .expect_stderr_contains("https is required");
    let stats = sim.stats();
    assert!(no_calls(&stats), "nothing may be sent: {stats:?}{run}");
}

/// Asserts that none of `secrets` appears on stdout, on stderr or in any file of the workdir.
fn assert_no_secret_anywhere(wd: &Workdir, run: &common::Run, secrets: &[&str]) {
    for secret in secrets {
        assert!(!run.stdout.contains(secret), "{secret} is on stdout{run}");
        assert!(!run.stderr.contains(secret), "{secret} is on stderr{run}");
        for (path, bytes) in wd.files() {
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains(secret),
                "{secret} is in {}{run}",
                path.display()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_across_many_token_lifetimes_confirms_every_row() {
    // 40 rows at 10/s last about four seconds: four lifetimes of these tokens, each exchange
    // replacing the refresh token.
    let sim = simulator_with_authority(Duration::from_secs(1), true).await;
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(40));

    let run = confirm_with_refresh_flow(&wd, &sim, REFRESH_TOKEN, "10/s")
        .run_async()
        .await;

    run.expect_code(0);
    let results = Results::read(&wd.path("r.csv"), &run);
    assert_eq!(results.counts(), counts(&[("confirmed", 40)]), "{run}");
    assert!(
        run.elapsed >= Duration::from_secs(3),
        "the run outlived several tokens{run}"
    );
    let stats = sim.stats();
    assert!(
        stats.token_requests >= 3,
        "a new token for each lifetime: {stats:?}{run}"
    );
    assert_eq!(
        stats.unauthorized, 0,
        "no request went out with an expired token: {stats:?}{run}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewed_and_rotated_tokens_never_appear_in_output_logs_or_files() {
    let sim = simulator_with_authority(Duration::from_secs(1), true).await;
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(12));

    let mut cmd = confirm_with_refresh_flow(&wd, &sim, REFRESH_TOKEN, "8/s");
    cmd.env("RUST_LOG", "trace")
        .args(["--summary-json", "summary.json"]);
    let run = cmd.run_async().await;

    run.expect_code(0);
    let stats = sim.stats();
    assert!(
        stats.token_requests >= 2,
        "tokens were renewed and refresh tokens rotated: {stats:?}{run}"
    );
    // Every access token the simulator issues starts with "simat.", every rotated refresh
    // token with "simrt.".
    assert_no_secret_anywhere(
        &wd,
        &run,
        &[CLIENT_SECRET, REFRESH_TOKEN, "simat.", "simrt."],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_refresh_token_is_not_printed_even_at_trace_level() {
    const REVOKED: &str = "revoked-refresh-sekret-321";
    let sim = simulator_with_authority(Duration::from_secs(3599), false).await;
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(2));

    let mut cmd = confirm_with_refresh_flow(&wd, &sim, REVOKED, "1000/s");
    cmd.env("RUST_LOG", "trace");
    let run = cmd.run_async().await;

    run.expect_code(3);
    assert!(
        sim.stats().token_requests >= 1,
        "the authority was asked{run}"
    );
    assert_no_secret_anywhere(&wd, &run, &[CLIENT_SECRET, REVOKED]);
}
