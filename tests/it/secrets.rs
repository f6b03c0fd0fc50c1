//! The across-every-subcommand sweep for secrets: each subcommand that can read credentials
//! (`confirm`, `confirm --dry-run`, `status`, `template`, `template --all`, and `validate` with
//! credentials set anyway) runs at `RUST_LOG=trace`, with text logs for some and JSON logs for
//! others, and no secret it was given, nor any token the simulator issued, may show on
//! stdout, on stderr or in any file of the run (results, reports, emitted rows, manifests,
//! summary JSON).
//!
//! `tests/it/credentials.rs` covers the refresh-token flow of `confirm` in depth; this file covers
//! the other subcommands, the ready access token, and a client secret the authority refuses.
//! The partner tenant and client ids are identifiers that messages name on purpose (to say
//! which application was refused), so they are not checked here.

use std::time::Duration;

use crate::common::{Customer, Run, Workdir, start_simulator};
use mca_attest::simulator::{Simulator, SimulatorConfig, SimulatorStats, TokenEndpointConfig};
use secrecy::SecretString;

const ACCESS_TOKEN: &str = "access-token-marker-5e1d0c7a";
const CLIENT_SECRET: &str = "client-secret-marker-8b2f41d9";
const WRONG_CLIENT_SECRET: &str = "wrong-client-secret-marker-31c7e0aa";
const REFRESH_TOKEN: &str = "refresh-token-marker-c94a6b13";
const CLIENT_ID: &str = "0d7f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b";
const PARTNER_TENANT: &str = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d";
/// Every access token the simulator issues starts with the first, every rotated refresh token
/// with the second (`src/simulator/auth.rs`).
const ISSUED_TOKEN_PREFIXES: [&str; 2] = ["simat.", "simrt."];

/// A simulator that accepts [`ACCESS_TOKEN`] and the tokens its own endpoint issues for
/// [`CLIENT_SECRET`] and [`REFRESH_TOKEN`]: short-lived (a second) and rotated on every
/// exchange, so that runs of a second or more renew them.
async fn simulator() -> Simulator {
    start_simulator(SimulatorConfig {
        access_tokens: vec![ACCESS_TOKEN.into()],
        token_endpoint: Some(TokenEndpointConfig {
            client_id: CLIENT_ID.into(),
            client_secret: SecretString::from(CLIENT_SECRET),
            refresh_token: SecretString::from(REFRESH_TOKEN),
            token_ttl: Duration::from_secs(1),
            rotate_refresh_token: true,
        }),
        ..Default::default()
    })
    .await
}

/// How a run is given its credentials.
#[derive(Clone, Copy)]
enum Credentials {
    AccessToken(&'static str),
    RefreshFlow { client_secret: &'static str },
}

impl Credentials {
    fn apply(self, cmd: &mut crate::common::Cmd, sim: &Simulator) {
        match self {
            Credentials::AccessToken(token) => {
                cmd.env("PARTNER_CENTER_ACCESS_TOKEN", token);
            }
            Credentials::RefreshFlow { client_secret } => {
                cmd.env("PARTNER_CENTER_TENANT_ID", PARTNER_TENANT)
                    .env("PARTNER_CENTER_CLIENT_ID", CLIENT_ID)
                    .env("PARTNER_CENTER_CLIENT_SECRET", client_secret)
                    .env("PARTNER_CENTER_REFRESH_TOKEN", REFRESH_TOKEN)
                    .env("PARTNER_CENTER_AUTHORITY", &sim.base_url());
            }
        }
    }
}

/// The subcommands that can read credentials, with the files each writes.
const SUBCOMMANDS: [&str; 6] = [
    "confirm",
    "confirm --dry-run",
    "status",
    "template",
    "template --all",
    "validate",
];

fn arguments(subcommand: &str, base_url: &str) -> Vec<String> {
    let api = ["--base-url", base_url, "--rate", "10/s", "--no-progress"];
    let words: Vec<&str> = match subcommand {
        "confirm" => [
            &["confirm", "in.csv", "-o", "results.csv"][..],
            &api,
            &["--summary-json", "summary.json"],
        ]
        .concat(),
        "confirm --dry-run" => [
            &["confirm", "in.csv", "-o", "results.csv", "--dry-run"][..],
            &api,
            &["--summary-json", "summary.json"],
        ]
        .concat(),
        "status" => [
            &["status", "in.csv", "-o", "status.csv"][..],
            &api,
            &[
                "--summary-json",
                "summary.json",
                "--emit-confirm-input",
                "todo.csv",
            ],
        ]
        .concat(),
        "template" => vec!["template", "--base-url", base_url],
        "template --all" => vec!["template", "--all", "--base-url", base_url],
        "validate" => vec![
            "validate",
            "in.csv",
            "-o",
            "validation.csv",
            "--summary-json",
            "summary.json",
        ],
        other => panic!("unknown subcommand {other}"),
    };
    words.into_iter().map(str::to_string).collect()
}

/// One subcommand's run in a workdir of its own, and what the simulator saw during it.
struct SweepRun {
    subcommand: &'static str,
    log_format: &'static str,
    wd: Workdir,
    run: Run,
    seen: SimulatorStats,
}

/// Runs every subcommand with `credentials` at trace level, alternating text and JSON logs
/// (starting with JSON when `json_first`), each against a simulator of its own (a rotated
/// refresh token is not accepted twice).
async fn sweep(credentials: Credentials, json_first: bool) -> Vec<SweepRun> {
    let mut runs = Vec::new();
    for (i, subcommand) in SUBCOMMANDS.into_iter().enumerate() {
        let sim = simulator().await;
        let wd = Workdir::new();
        wd.create_customers("in.csv", &Customer::many(8));
        let format = if (i % 2 == 0) == json_first {
            "json"
        } else {
            "text"
        };
        let mut cmd = wd.command(arguments(subcommand, &sim.base_url()));
        cmd.args(["--log-format", format]).env("RUST_LOG", "trace");
        credentials.apply(&mut cmd, &sim);
        let before = sim.stats();
        let run = cmd.run_async().await;
        let seen = difference(&sim.stats(), &before);
        sim.shutdown().await;
        run.check(
            matches!(run.code(), Some(0..=3)) && !run.stderr.contains("panicked"),
            format!("{subcommand} ends in an orderly way"),
        );
        runs.push(SweepRun {
            subcommand,
            log_format: format,
            wd,
            run,
            seen,
        });
    }
    runs
}

fn difference(after: &SimulatorStats, before: &SimulatorStats) -> SimulatorStats {
    SimulatorStats {
        template_gets: after.template_gets - before.template_gets,
        agreement_posts: after.agreement_posts - before.agreement_posts,
        agreements_created: after.agreements_created - before.agreements_created,
        agreement_gets: after.agreement_gets - before.agreement_gets,
        direct_signed_gets: after.direct_signed_gets - before.direct_signed_gets,
        throttled: after.throttled - before.throttled,
        unauthorized: after.unauthorized - before.unauthorized,
        faults_injected: after.faults_injected - before.faults_injected,
        token_requests: after.token_requests - before.token_requests,
        customer_list_gets: after.customer_list_gets - before.customer_list_gets,
    }
}

fn api_calls(s: &SimulatorStats) -> u64 {
    s.template_gets + s.agreement_posts + s.agreement_gets + s.direct_signed_gets + s.unauthorized
}

/// None of `secrets` on stdout, on stderr or in any file the run left in its workdir.
fn assert_no_secret_shown(r: &SweepRun, secrets: &[&str]) {
    let run = &r.run;
    let files = r.wd.files();
    let finished = matches!(run.code(), Some(0 | 1));
    assert!(
        files.len() > 1 || !finished || r.subcommand.starts_with("template"),
        "{} wrote its files: {:?}{run}",
        r.subcommand,
        files.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    for secret in secrets {
        assert!(
            !run.stdout.contains(secret),
            "{}: {secret} is on stdout{run}",
            r.subcommand
        );
        assert!(
            !run.stderr.contains(secret),
            "{}: {secret} is on stderr{run}",
            r.subcommand
        );
        for (path, bytes) in &files {
            assert!(
                !String::from_utf8_lossy(bytes).contains(secret),
                "{}: {secret} is in {}{run}",
                r.subcommand,
                path.display()
            );
        }
    }
}

/// The trace level was on, in the format asked for: the run logged below `info`, so a secret
/// had every chance to be logged.
fn assert_traced(r: &SweepRun) {
    let said = &r.run.stderr;
    let traced = match r.log_format {
        "json" => said.contains(r#""level":"TRACE""#) || said.contains(r#""level":"DEBUG""#),
        _ => said.contains(" TRACE ") || said.contains(" DEBUG "),
    };
    r.run.check(
        traced,
        format!("{} logged at trace level as {}", r.subcommand, r.log_format),
    );
}

/// `validate` reads no credentials and makes no call; every other subcommand used the
/// credentials against the simulator.
fn assert_credentials_used(r: &SweepRun, used: impl Fn(&SimulatorStats) -> bool) {
    let seen = &r.seen;
    if r.subcommand == "validate" {
        assert!(
            api_calls(seen) == 0 && seen.token_requests == 0,
            "validate made a call: {seen:?}{}",
            r.run
        );
    } else {
        assert!(
            used(seen),
            "{} used the credentials: {seen:?}{}",
            r.subcommand,
            r.run
        );
        assert_traced(r);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_access_token_is_shown_by_no_subcommand() {
    let runs = sweep(Credentials::AccessToken(ACCESS_TOKEN), true).await;

    for r in &runs {
        assert_credentials_used(r, |s| api_calls(s) > 0 && s.unauthorized == 0);
        assert_no_secret_shown(r, &[ACCESS_TOKEN]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_access_token_is_shown_by_no_subcommand() {
    const REFUSED: &str = "refused-access-token-marker-77e2b1f0";
    let runs = sweep(Credentials::AccessToken(REFUSED), false).await;

    for r in &runs {
        assert_credentials_used(r, |s| s.unauthorized > 0);
        assert_no_secret_shown(r, &[REFUSED]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_flow_secrets_and_the_short_lived_tokens_minted_are_shown_by_no_subcommand() {
    let runs = sweep(
        Credentials::RefreshFlow {
            client_secret: CLIENT_SECRET,
        },
        true,
    )
    .await;

    let mut secrets = vec![CLIENT_SECRET, REFRESH_TOKEN];
    secrets.extend(ISSUED_TOKEN_PREFIXES);
    for r in &runs {
        assert_credentials_used(r, |s| s.token_requests > 0 && api_calls(s) > 0);
        assert_no_secret_shown(r, &secrets);
    }
    let renewed = runs.iter().any(|r| r.seen.token_requests >= 2);
    assert!(
        renewed,
        "some run outlived its first token and renewed it: {:?}",
        runs.iter()
            .map(|r| (r.subcommand, r.seen.token_requests))
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_secret_refused_by_the_authority_is_shown_by_no_subcommand() {
    let runs = sweep(
        Credentials::RefreshFlow {
            client_secret: WRONG_CLIENT_SECRET,
        },
        false,
    )
    .await;

    for r in &runs {
        assert_credentials_used(r, |s| s.token_requests > 0 && api_calls(s) == 0);
        assert_no_secret_shown(r, &[WRONG_CLIENT_SECRET, REFRESH_TOKEN, "simat."]);
    }
}
