//! The wording of the messages users meet most when a run cannot start (exit 2) or has to
//! stop (exit 3). Key phrases only, not whole sentences: each message must say what went
//! wrong, where (the file, flag or variable), and what to do next. Every message is checked
//! on each subcommand that can give it. The last test is the exit-3 case of credentials lost in
//! the middle of a run, which must stop the run rather than pass over the rows left.

use crate::common::{Customer, Run, Workdir, default_simulator, start_simulator};
use mca_attest::simulator::{Simulator, SimulatorConfig, TokenEndpointConfig};
use secrecy::SecretString;

/// Asserts the exit code and that stderr holds every phrase.
fn expect_message(run: &Run, code: i32, phrases: &[&str]) {
    run.expect_code(code);
    for phrase in phrases {
        run.expect_stderr_contains(phrase);
    }
}

/// A workdir holding `in.csv` with two valid customers.
fn workdir_with_input() -> Workdir {
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(2));
    wd
}

/// The network subcommands with `extra` arguments, run against the built-in simulator.
fn against_builtin_simulator(wd: &Workdir, input: &str, extra: &[&str]) -> Vec<Run> {
    let runs = [
        vec![
            "confirm",
            input,
            "-o",
            "r.csv",
            "--simulator",
            "--no-progress",
        ],
        vec!["template", "--simulator"],
        vec![
            "status",
            input,
            "-o",
            "s.csv",
            "--simulator",
            "--no-progress",
        ],
    ];
    runs.into_iter()
        .map(|mut args| {
            args.extend_from_slice(extra);
            wd.command(args).run()
        })
        .collect()
}

/// The network subcommands against `base_url`, with `extra` arguments, prepared to run.
fn against(wd: &Workdir, base_url: &str, extra: &[&str]) -> Vec<crate::common::Cmd> {
    let runs = [
        vec!["confirm", "in.csv", "-o", "r.csv", "--no-progress"],
        vec!["template"],
        vec!["status", "in.csv", "-o", "s.csv", "--no-progress"],
    ];
    runs.into_iter()
        .map(|mut args| {
            args.extend_from_slice(&["--base-url", base_url]);
            args.extend_from_slice(extra);
            wd.command(args)
        })
        .collect()
}

#[test]
fn missing_input_file_is_named() {
    let wd = Workdir::new();

    let runs = [
        wd.command(["validate", "no-such-file.csv"]).run(),
        wd.command(["confirm", "no-such-file.csv", "--simulator"])
            .run(),
        wd.command(["status", "no-such-file.csv", "--simulator"])
            .run(),
    ];

    for run in &runs {
        expect_message(run, 2, &["cannot open", "'no-such-file.csv'"]);
    }
}

#[test]
fn missing_column_is_named_and_the_header_shown() {
    let wd = Workdir::new();
    let c = Customer::new(1);
    let header = "tenant_id,first_name,last_name,phone,date_agreed";
    wd.create(
        "in.csv",
        format!(
            "{header}\n{},{},{},,{}\n",
            c.tenant, c.first_name, c.last_name, c.date_agreed
        ),
    );

    let runs = [
        wd.command(["validate", "in.csv"]).run(),
        wd.command(["confirm", "in.csv", "--simulator", "--no-progress"])
            .run(),
    ];

    for run in &runs {
        expect_message(run, 2, &["in.csv", "no 'email' column", header]);
    }
}

#[test]
fn missing_tenant_column_of_status_is_named_with_its_other_spellings() {
    let wd = Workdir::new();
    wd.create("in.csv", "customer,first_name\ncontoso,Ann\n");

    let run = wd
        .command(["status", "in.csv", "--simulator", "--no-progress"])
        .run();

    expect_message(
        &run,
        2,
        &[
            "in.csv",
            "no 'customer_tenant_id' column",
            "tenant_id",
            "customer,first_name",
        ],
    );
}

#[test]
fn existing_results_file_message_says_to_resume_or_choose_another_file() {
    let wd = workdir_with_input();
    wd.create("r.csv", "row,customer_tenant_id\n1,x\n");

    let run = wd
        .command(["confirm", "in.csv", "-o", "r.csv", "--simulator"])
        .run();

    expect_message(
        &run,
        2,
        &[
            "'r.csv'",
            "already exists",
            "--resume",
            "another file with -o",
        ],
    );
}

#[test]
fn plain_http_base_url_is_refused_saying_https_is_required() {
    let wd = workdir_with_input();

    for mut cmd in against(&wd, "http://partner.example.com", &[]) {
        cmd.env("PARTNER_CENTER_ACCESS_TOKEN", "token");
        let run = cmd.run();
        expect_message(
            &run,
            2,
            &[
                "http://partner.example.com",
                "https is required",
                "loopback",
            ],
        );
    }
}

#[test]
fn plain_http_base_url_from_the_environment_is_refused_naming_the_variable() {
    // A scheduled job sets the variable, not the flag: the message must point at what was set.
    let wd = workdir_with_input();

    let mut cmd = wd.command(["confirm", "in.csv", "--no-progress"]);
    cmd.env("PARTNER_CENTER_ACCESS_TOKEN", "token")
        .env("PARTNER_CENTER_BASE_URL", "http://partner.example.com");
    let run = cmd.run();

    expect_message(
        &run,
        2,
        &[
            "http://partner.example.com",
            "https is required",
            "PARTNER_CENTER_BASE_URL",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_credentials_message_names_the_variables_and_the_simulator() {
    let sim = default_simulator().await;
    let wd = workdir_with_input();

    for cmd in against(&wd, &sim.base_url(), &[]) {
        let run = cmd.run_async().await;
        expect_message(
            &run,
            2,
            &[
                "no credentials",
                "PARTNER_CENTER_ACCESS_TOKEN",
                "PARTNER_CENTER_REFRESH_TOKEN",
                "--simulator",
            ],
        );
    }
    assert!(crate::common::no_calls(&sim.stats()), "{:?}", sim.stats());
}

#[test]
fn malformed_rate_message_shows_the_accepted_forms() {
    let wd = workdir_with_input();

    for rate in ["fast", "5/fortnight", "5 per second", "/s", "-3/s"] {
        let flag = format!("--rate={rate}");
        for run in against_builtin_simulator(&wd, "in.csv", &[&flag]) {
            expect_message(&run, 2, &["--rate", rate, "N/s", "N/min", "N/h"]);
        }
    }
}

#[test]
fn zero_rate_message_says_the_least_rate() {
    let wd = workdir_with_input();

    for run in against_builtin_simulator(&wd, "in.csv", &["--rate", "0/min"]) {
        expect_message(&run, 2, &["--rate", "0/min", "at least 1"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_access_token_message_names_the_variable_and_what_to_check() {
    let sim = start_simulator(SimulatorConfig {
        access_tokens: vec!["the-good-token".into()],
        ..Default::default()
    })
    .await;
    let wd = workdir_with_input();

    for mut cmd in against(&wd, &sim.base_url(), &[]) {
        cmd.env("PARTNER_CENTER_ACCESS_TOKEN", "an-expired-token");
        let run = cmd.run_async().await;
        expect_message(
            &run,
            3,
            &[
                "refused",
                "PARTNER_CENTER_ACCESS_TOKEN",
                "App+User",
                "multi-factor authentication",
                "10001",
                "900421",
            ],
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_without_mfa_message_says_to_sign_in_again_with_mfa() {
    let sim = start_simulator(SimulatorConfig {
        mfa_missing: true,
        ..Default::default()
    })
    .await;
    let wd = workdir_with_input();

    for mut cmd in against(&wd, &sim.base_url(), &[]) {
        cmd.env("PARTNER_CENTER_ACCESS_TOKEN", "a-token-without-mfa");
        let run = cmd.run_async().await;
        expect_message(
            &run,
            3,
            &[
                "refused",
                "PARTNER_CENTER_ACCESS_TOKEN",
                "900421",
                "sign in again with MFA",
            ],
        );
    }
}

const CLIENT_ID: &str = "0d7f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b";
const CLIENT_SECRET: &str = "the-client-secret";
const REFRESH_TOKEN: &str = "the-refresh-token";

/// A simulator with a token endpoint that accepts [`CLIENT_SECRET`] and [`REFRESH_TOKEN`].
async fn simulator_with_authority() -> Simulator {
    start_simulator(SimulatorConfig {
        token_endpoint: Some(TokenEndpointConfig {
            client_id: CLIENT_ID.into(),
            client_secret: SecretString::from(CLIENT_SECRET),
            refresh_token: SecretString::from(REFRESH_TOKEN),
            token_ttl: std::time::Duration::from_secs(3599),
            rotate_refresh_token: false,
        }),
        ..Default::default()
    })
    .await
}

fn refresh_flow(cmd: &mut crate::common::Cmd, sim: &Simulator, secret: &str, refresh_token: &str) {
    cmd.env(
        "PARTNER_CENTER_TENANT_ID",
        "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
    )
    .env("PARTNER_CENTER_CLIENT_ID", CLIENT_ID)
    .env("PARTNER_CENTER_CLIENT_SECRET", secret)
    .env("PARTNER_CENTER_REFRESH_TOKEN", refresh_token)
    .env("PARTNER_CENTER_AUTHORITY", &sim.base_url());
}

const CLIENT_REFUSED: [&str; 4] = [
    "refused the application",
    "invalid_client",
    "PARTNER_CENTER_CLIENT_ID",
    "PARTNER_CENTER_CLIENT_SECRET",
];

const REFRESH_TOKEN_REFUSED: [&str; 6] = [
    "refused the refresh token",
    "invalid_grant",
    "expired",
    "revoked",
    "consent again",
    "PARTNER_CENTER_REFRESH_TOKEN",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_client_secret_message_names_the_variables_to_check() {
    let sim = simulator_with_authority().await;
    let wd = workdir_with_input();

    for mut cmd in against(&wd, &sim.base_url(), &[]) {
        refresh_flow(&mut cmd, &sim, "an-expired-client-secret", REFRESH_TOKEN);
        let run = cmd.run_async().await;
        expect_message(&run, 3, &CLIENT_REFUSED);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_refresh_token_message_says_to_consent_again() {
    let sim = simulator_with_authority().await;
    let wd = workdir_with_input();

    for mut cmd in against(&wd, &sim.base_url(), &[]) {
        refresh_flow(&mut cmd, &sim, CLIENT_SECRET, "a-revoked-refresh-token");
        let run = cmd.run_async().await;
        expect_message(&run, 3, &REFRESH_TOKEN_REFUSED);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_authority_lost_mid_run_stops_the_run_with_exit_3_instead_of_dropping_rows() {
    // Partner Center takes any token; the authority that mints them (for a second each) goes
    // away after the first confirmation, so the next renewal fails with rows still to send.
    let api = default_simulator().await;
    let authority = start_simulator(SimulatorConfig {
        token_endpoint: Some(TokenEndpointConfig {
            client_id: CLIENT_ID.into(),
            client_secret: SecretString::from(CLIENT_SECRET),
            refresh_token: SecretString::from(REFRESH_TOKEN),
            token_ttl: std::time::Duration::from_secs(1),
            rotate_refresh_token: false,
        }),
        ..Default::default()
    })
    .await;
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(4));
    let mut cmd = wd.confirm_at_rate("in.csv", "r.csv", &api.base_url(), "2/s");
    cmd.env_remove("PARTNER_CENTER_ACCESS_TOKEN")
        .args(["--concurrency", "1"]);
    refresh_flow(&mut cmd, &authority, CLIENT_SECRET, REFRESH_TOKEN);

    let running = tokio::spawn(cmd.run_async());
    crate::common::wait_until(
        std::time::Duration::from_secs(30),
        || api.stats().agreement_posts >= 1,
        || format!("a first confirmation: {:?}", api.stats()),
    )
    .await;
    authority.shutdown().await;
    let run = running.await.expect("the run thread");

    let results = crate::common::Results::read(&wd.path("r.csv"), &run);
    run.check(
        results.rows.len() < 4,
        "the authority went away before the last row was sent",
    );
    expect_message(&run, 3, &["token authority", "--resume"]);
}
