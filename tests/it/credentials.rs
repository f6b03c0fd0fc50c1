//! The refresh-token flow (secure application model): access tokens minted from the token
//! authority, renewed when they run out, rotated refresh tokens followed, secrets kept out of
//! every output, and incomplete or refused credentials reported.

use std::time::Duration;

use crate::common::{Customer, Results, Workdir, counts, no_calls, start_simulator};
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
) -> crate::common::Cmd {
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
fn assert_no_secret_anywhere(wd: &Workdir, run: &crate::common::Run, secrets: &[&str]) {
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

/// How the token file of a run behaves when the authority rotates the refresh token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenFile {
    /// A regular file the rotated token replaces.
    Saved,
    /// A file the token is read from but that cannot be replaced: `/dev/stdin`, a pipe
    /// (something no file system permission can make of a regular file for root).
    Unsaved,
}

/// What the rows of a generated run are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rows {
    AllOk,
    SomeInvalid,
    SomeFailed,
}

/// One run of `args` (a subcommand and its own arguments) through the refresh-token flow,
/// the token file as `token` says, against a simulator whose authority rotates the refresh
/// token on every use.
fn with_token_file(
    wd: &Workdir,
    sim: &Simulator,
    token: TokenFile,
    args: &[&str],
) -> crate::common::Cmd {
    let base = sim.base_url();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--base-url", &base, "--rate", "1000/s"]);
    let mut cmd = wd.command(all);
    cmd.env("PARTNER_CENTER_TENANT_ID", PARTNER_TENANT)
        .env("PARTNER_CENTER_CLIENT_ID", CLIENT_ID)
        .env("PARTNER_CENTER_CLIENT_SECRET", CLIENT_SECRET)
        .env("PARTNER_CENTER_AUTHORITY", &base);
    match token {
        TokenFile::Saved => {
            let file = wd.create("refresh-token", format!("{REFRESH_TOKEN}\n"));
            cmd.env("PARTNER_CENTER_REFRESH_TOKEN_FILE", &file.to_string_lossy());
        }
        TokenFile::Unsaved => {
            cmd.env("PARTNER_CENTER_REFRESH_TOKEN_FILE", "/dev/stdin")
                .stdin(format!("{REFRESH_TOKEN}\n"));
        }
    }
    cmd
}

/// A simulator whose authority rotates the refresh token on every use (and refuses the old
/// one), over `config`.
async fn rotating_authority(config: SimulatorConfig) -> Simulator {
    start_simulator(SimulatorConfig {
        token_endpoint: Some(TokenEndpointConfig {
            client_id: CLIENT_ID.into(),
            client_secret: SecretString::from(CLIENT_SECRET),
            refresh_token: SecretString::from(REFRESH_TOKEN),
            token_ttl: Duration::from_secs(3599),
            rotate_refresh_token: true,
        }),
        ..config
    })
    .await
}

/// A current MCA confirmation on record.
fn attested() -> mca_attest::simulator::StoredAgreement {
    mca_attest::simulator::StoredAgreement {
        first_name: "Ann".into(),
        last_name: "Carr".into(),
        email: "ann@contoso.com".into(),
        phone_number: None,
        template_id: mca_attest::simulator::MCA_TEMPLATE_ID.into(),
        date_agreed: "2024-06-14T00:00:00Z".parse().expect("a date"),
        agreement_type: "MicrosoftCustomerAgreement".into(),
        source: mca_attest::simulator::AgreementSource::Existing,
        date_without_z: false,
    }
}

/// Every kind of row outcome × a token saved or not, for each command that uses credentials:
/// a run whose rotated token could not be saved exits 4 (over 1), says how to fix it, and
/// still records every row; one whose token was saved exits as before.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_token_that_cannot_be_saved_makes_a_finished_run_exit_4() {
    use mca_attest::simulator::CustomerProfile;
    let customers: Vec<Customer> = (1..=3).map(Customer::new).collect();
    let failing = customers[1].tenant_uuid();
    let mut cases = 0;
    for token in [TokenFile::Saved, TokenFile::Unsaved] {
        for rows in [Rows::AllOk, Rows::SomeInvalid, Rows::SomeFailed] {
            let before = if rows == Rows::AllOk { 0 } else { 1 };
            let unknown = match rows {
                Rows::SomeFailed => std::collections::HashSet::from([failing]),
                _ => Default::default(),
            };
            // confirm: rows confirmed, one invalid (its email), or one failed (404).
            let sim = rotating_authority(SimulatorConfig {
                unknown_tenants: unknown.clone(),
                ..Default::default()
            })
            .await;
            let wd = Workdir::new();
            let mut input = customers.clone();
            if rows == Rows::SomeInvalid {
                input[1] = input[1].clone().email("not an email");
            }
            wd.create_customers("in.csv", &input);
            let run = with_token_file(
                &wd,
                &sim,
                token,
                &["confirm", "in.csv", "-o", "r.csv", "--no-progress"],
            )
            .run_async()
            .await;
            expect_token_outcome(&run, token, before);
            let results = Results::read(&wd.path("r.csv"), &run);
            assert_eq!(results.rows.len(), input.len(), "every row recorded{run}");
            let expected = match rows {
                Rows::AllOk => "confirmed",
                Rows::SomeInvalid => "invalid",
                Rows::SomeFailed => "failed",
            };
            assert_eq!(results.by_row(2).status(), expected, "{run}");
            assert!(sim.stats().token_requests > 0, "{run}");
            cases += 1;

            // status: every customer attested, one row whose tenant id is not a GUID (an
            // error before any request), or one the service does not know (an error).
            let existing = customers
                .iter()
                .map(|c| (c.tenant_uuid(), attested()))
                .collect();
            let sim = rotating_authority(SimulatorConfig {
                unknown_tenants: unknown,
                existing,
                ..Default::default()
            })
            .await;
            let mut text = String::from("customer_tenant_id\n");
            for (i, c) in customers.iter().enumerate() {
                match (rows, i) {
                    (Rows::SomeInvalid, 1) => text.push_str("not-a-guid\n"),
                    _ => text.push_str(&format!("{}\n", c.tenant_uuid())),
                }
            }
            wd.create("tenants.csv", text);
            let run = with_token_file(
                &wd,
                &sim,
                token,
                &["status", "tenants.csv", "-o", "s.csv", "--no-progress"],
            )
            .run_async()
            .await;
            expect_token_outcome(&run, token, before);
            let report = Results::read(&wd.path("s.csv"), &run);
            assert_eq!(
                report.rows.len(),
                customers.len(),
                "every row recorded{run}"
            );
            cases += 1;
        }
        // customers and template: nothing wrong but the token.
        let sim = rotating_authority(SimulatorConfig {
            customers: customers
                .iter()
                .map(|c| CustomerProfile::new(c.tenant_uuid()))
                .collect(),
            ..Default::default()
        })
        .await;
        let wd = Workdir::new();
        let run = with_token_file(&wd, &sim, token, &["customers", "-o", "c.csv"])
            .run_async()
            .await;
        expect_token_outcome(&run, token, 0);
        assert_eq!(
            Results::read(&wd.path("c.csv"), &run).rows.len(),
            3,
            "{run}"
        );
        let sim = rotating_authority(SimulatorConfig::default()).await;
        let run = with_token_file(&wd, &sim, token, &["template"])
            .run_async()
            .await;
        expect_token_outcome(&run, token, 0);
        run.expect_stdout_contains("templateId");
        cases += 2;
    }
    assert_eq!(cases, 16);
}

/// The next run after an unsaved rotation, with the token the file still holds, is refused
/// by the authority: what the exit 4 message warns of.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_after_an_unsaved_rotation_is_refused_as_exit_4_warned() {
    let sim = rotating_authority(SimulatorConfig::default()).await;
    let wd = Workdir::new();
    let run = with_token_file(&wd, &sim, TokenFile::Unsaved, &["template"])
        .run_async()
        .await;
    expect_token_outcome(&run, TokenFile::Unsaved, 0);
    let next = with_token_file(&wd, &sim, TokenFile::Unsaved, &["template"])
        .run_async()
        .await;
    next.expect_code(3).expect_stderr_contains("invalid_grant");
}

/// Exit `before` with the token saved; 4 with it unsaved, and the error line says why and
/// how to fix it, without the token.
fn expect_token_outcome(run: &crate::common::Run, token: TokenFile, before: i32) {
    match token {
        TokenFile::Saved => {
            run.expect_code(before);
            assert!(!run.stderr.contains("could not be saved"), "{run}");
        }
        TokenFile::Unsaved => {
            run.expect_code(4);
            for needed in [
                "could not be saved",
                "/dev/stdin",
                "will be refused",
                "writable",
                "consent again",
            ] {
                run.expect_stderr_contains(needed);
            }
        }
    }
    assert!(!run.stderr.contains(REFRESH_TOKEN), "{run}");
}
