//! The real binary against a hostile Partner Center stand-in: absurd `Retry-After` values,
//! a token authority with absurd lifetimes or passing outages, endless bodies, error messages
//! that try to forge log lines or carry terminal escapes, a service that echoes the bearer
//! token back, and an access token no HTTP header can carry.
//!
//! The stand-in is written here (axum on a free loopback port, plus a raw TCP responder for
//! the endless body) rather than taken from the built-in simulator, which behaves.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::fake::{self, FakeServer, Req};
use crate::common::{Customer, Results, Run, Workdir};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

const MCA_TEMPLATE_ID: &str = "117a77b0-9360-443b-8795-c6dedc750cf9";
const TENANT: &str = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d";
const CLIENT_ID: &str = "0d7f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b";
const CLIENT_SECRET: &str = "hostile-client-sekret-123";
const REFRESH_TOKEN: &str = "hostile-refresh-sekret-456";

/// How the stand-in answers the n-th (1-based) create call; `bearer` is the token it carried.
type PostReply = Box<dyn Fn(usize, &str) -> Response + Send + Sync>;
/// How the stand-in's token authority answers its n-th (1-based) request.
type TokenReply = Box<dyn Fn(usize) -> Token + Send + Sync>;

enum Token {
    /// A fresh access token with this `expires_in`.
    Minted(Value),
    /// An error status with an Entra-style body.
    Status(StatusCode),
}

struct Fake {
    post: PostReply,
    token: Option<TokenReply>,
    posts: AtomicUsize,
    token_requests: AtomicUsize,
    without_authorization: AtomicUsize,
    minted: Mutex<HashSet<String>>,
}

impl Fake {
    fn new(post: impl Fn(usize, &str) -> Response + Send + Sync + 'static) -> Self {
        Fake {
            post: Box::new(post),
            token: None,
            posts: AtomicUsize::new(0),
            token_requests: AtomicUsize::new(0),
            without_authorization: AtomicUsize::new(0),
            minted: Mutex::new(HashSet::new()),
        }
    }

    fn with_authority(mut self, token: impl Fn(usize) -> Token + Send + Sync + 'static) -> Self {
        self.token = Some(Box::new(token));
        self
    }

    /// The bearer token of a request, or `None` when it must be answered 401. With an
    /// authority, only tokens it minted are accepted.
    fn authorize(&self, req: &Req) -> Option<String> {
        let Some(bearer) = req.bearer() else {
            self.without_authorization.fetch_add(1, Ordering::SeqCst);
            return None;
        };
        if self.token.is_some() && !self.minted.lock().unwrap().contains(bearer) {
            return None;
        }
        Some(bearer.to_string())
    }
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({"code": 401, "message": "Unauthorized"})),
    )
        .into_response()
}

fn created() -> Response {
    (
        StatusCode::CREATED,
        axum::Json(json!({"templateId": MCA_TEMPLATE_ID, "type": "MicrosoftCustomerAgreement"})),
    )
        .into_response()
}

fn json_error(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

impl Fake {
    fn template(&self, req: &Req) -> Response {
        if self.authorize(req).is_none() {
            return unauthorized();
        }
        fake::json(
            StatusCode::OK,
            &json!({
                "totalCount": 1,
                "items": [{"templateId": MCA_TEMPLATE_ID, "agreementType": "MicrosoftCustomerAgreement",
                           "agreementLink": "https://aka.ms/customeragreement", "versionRank": 0}],
                "attributes": {"objectType": "Collection"}
            }),
        )
    }

    fn create(&self, req: &Req) -> Response {
        let Some(bearer) = self.authorize(req) else {
            return unauthorized();
        };
        let n = self.posts.fetch_add(1, Ordering::SeqCst) + 1;
        (self.post)(n, &bearer)
    }

    fn token(&self) -> Response {
        let n = self.token_requests.fetch_add(1, Ordering::SeqCst) + 1;
        let Some(reply) = &self.token else {
            return StatusCode::NOT_FOUND.into_response();
        };
        match reply(n) {
            Token::Minted(expires_in) => {
                let access = format!("fake-at-{}", uuid::Uuid::new_v4().simple());
                self.minted.lock().unwrap().insert(access.clone());
                fake::json(
                    StatusCode::OK,
                    &json!({
                        "token_type": "Bearer", "access_token": access, "expires_in": expires_in,
                    }),
                )
            }
            Token::Status(status) => json_error(
                status,
                json!({"error": "temporarily_unavailable",
                       "error_description": "AADSTS90033: A transient error has occurred."}),
            ),
        }
    }
}

/// Serves `fake` on a free loopback port (404 for anything it does not know).
async fn serve(fake: Arc<Fake>) -> FakeServer {
    let (template, create, token) = (fake.clone(), fake.clone(), fake);
    FakeServer::builder()
        .get("/v1/agreements", move |req| template.template(req))
        .post("/v1/customers/{tenant}/agreements", move |req| {
            create.create(req)
        })
        .post("/{tenant}/oauth2/token", move |_| token.token())
        .start()
        .await
}

/// `confirm in.csv -o r.csv` against `base_url` with a ready access token.
fn confirm(wd: &Workdir, base_url: &str, token: &str, rate: &str) -> crate::common::Cmd {
    let mut cmd = wd.confirm_at_rate("in.csv", "r.csv", base_url, rate);
    cmd.env("PARTNER_CENTER_ACCESS_TOKEN", token);
    cmd
}

/// The refresh-token flow's variables, the stand-in at `base_url` being the authority too.
fn authority_env(base_url: &str) -> [(&str, &str); 5] {
    [
        ("PARTNER_CENTER_TENANT_ID", TENANT),
        ("PARTNER_CENTER_CLIENT_ID", CLIENT_ID),
        ("PARTNER_CENTER_CLIENT_SECRET", CLIENT_SECRET),
        ("PARTNER_CENTER_REFRESH_TOKEN", REFRESH_TOKEN),
        ("PARTNER_CENTER_AUTHORITY", base_url),
    ]
}

/// `confirm` with the refresh-token flow, the stand-in being the token authority too.
fn confirm_with_authority(wd: &Workdir, base_url: &str, rate: &str) -> crate::common::Cmd {
    let mut cmd = wd.confirm_at_rate("in.csv", "r.csv", base_url, rate);
    cmd.env_remove("PARTNER_CENTER_ACCESS_TOKEN");
    for (name, value) in authority_env(base_url) {
        cmd.env(name, value);
    }
    cmd
}

fn assert_no_panic(run: &Run) {
    run.check(
        !run.stderr.contains("panicked"),
        "the binary panicked on a hostile answer",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_of_a_day_is_capped_and_the_run_goes_on() {
    // How long the capped pause lasts is the gate's, asserted in paused time
    // (`rate::gate::tests::an_absurd_pause_is_capped_and_cannot_panic`), not by waiting two
    // minutes of this machine's clock. Through the binary: the cap is said, nothing is sent
    // while the run waits, a Ctrl-C ends the wait at once, and `--resume` sends the row.
    let fake = Arc::new(Fake::new(|n, _| {
        if n == 1 {
            let mut r = json_error(
                StatusCode::TOO_MANY_REQUESTS,
                json!({"statusCode": 429, "message": "Rate limit is exceeded. Try again in 86400 seconds."}),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, "86400".parse().unwrap());
            r
        } else {
            created()
        }
    }));
    let server = serve(fake.clone()).await;
    let url = server.base_url().to_string();
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(1));

    let mut run = wd.spawn_confirm("in.csv", "r.csv", &url, "1000/s", &[]);
    crate::common::wait_until(
        Duration::from_secs(30),
        || run.stderr().contains("cap of 120 s"),
        || format!("the capped pause to be said{}", run.describe()),
    )
    .await;
    assert_eq!(
        fake.posts.load(Ordering::SeqCst),
        1,
        "nothing sent while the run waits{}",
        run.describe()
    );
    run.interrupt();
    let status = run.wait(Duration::from_secs(20)).await;
    assert_eq!(status.code(), Some(130), "{}", run.describe());
    assert_eq!(fake.posts.load(Ordering::SeqCst), 1, "{}", run.describe());

    let mut again = wd.confirm("in.csv", "r.csv", &url);
    again.arg("--resume");
    let resumed = again.run_async().await;
    resumed.expect_code(0);
    assert_no_panic(&resumed);
    // The stopped run recorded the row as failed; the resumed one appended its confirmation.
    let results = Results::read(&wd.path("r.csv"), &resumed);
    let statuses: Vec<&str> = results.rows.iter().map(|r| r.status()).collect();
    assert_eq!(statuses, ["failed", "confirmed"], "{resumed}");
    assert_eq!(fake.posts.load(Ordering::SeqCst), 2, "{resumed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_beyond_any_clock_does_not_panic() {
    let fake = Arc::new(Fake::new(|_, _| {
        let mut r = json_error(
            StatusCode::TOO_MANY_REQUESTS,
            json!({"statusCode": 429, "message": "Rate limit is exceeded."}),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, "99999999999999999999".parse().unwrap());
        r
    }));
    let server = serve(fake.clone()).await;
    let url = server.base_url().to_string();
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(1));

    // One attempt per row: the row fails on the 429 instead of waiting out the cap.
    let mut cmd = confirm(&wd, &url, crate::common::TEST_TOKEN, "1000/s");
    cmd.args(["--max-attempts", "1"]);
    let run = cmd.run_async().await;

    assert_no_panic(&run);
    run.expect_code(1).expect_stderr_contains("cap of 120 s");
    let results = Results::read(&wd.path("r.csv"), &run);
    let row = results.by_row(1);
    assert_eq!(row.status(), "failed", "{run}");
    assert_eq!(row.get("http_status"), "429", "{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absurd_token_lifetime_is_capped_without_panicking() {
    for expires_in in [
        json!(1e30),
        json!("99999999999999999999"),
        serde_json::from_str::<Value>("99999999999999999999").unwrap(),
    ] {
        let shown = expires_in.to_string();
        let fake = Arc::new(
            Fake::new(|_, _| created()).with_authority(move |_| Token::Minted(expires_in.clone())),
        );
        let server = serve(fake.clone()).await;
        let url = server.base_url().to_string();
        let wd = Workdir::new();
        wd.create_customers("in.csv", &Customer::many(3));

        let run = confirm_with_authority(&wd, &url, "1000/s")
            .run_async()
            .await;

        assert_no_panic(&run);
        run.expect_code(0).expect_stderr_contains("86400 s");
        let results = Results::read(&wd.path("r.csv"), &run);
        assert_eq!(
            results.with_status("confirmed").len(),
            3,
            "expires_in {shown}{run}"
        );
        assert_eq!(fake.token_requests.load(Ordering::SeqCst), 1, "{run}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authority_outage_while_the_token_is_valid_costs_no_row() {
    // Tokens live 3 s, so renewal is due during the run (60 rows at 20/s); the three
    // renewals after the first token fail with 503 while that token is still valid.
    let fake = Arc::new(Fake::new(|_, _| created()).with_authority(|n| {
        if (2..=4).contains(&n) {
            Token::Status(StatusCode::SERVICE_UNAVAILABLE)
        } else {
            Token::Minted(json!(3))
        }
    }));
    let server = serve(fake.clone()).await;
    let url = server.base_url().to_string();
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(60));

    let run = confirm_with_authority(&wd, &url, "20/s").run_async().await;

    run.expect_code(0)
        .expect_stderr_contains("renewing the access token failed");
    let results = Results::read(&wd.path("r.csv"), &run);
    assert_eq!(results.with_status("confirmed").len(), 60, "{run}");
    let token_requests = fake.token_requests.load(Ordering::SeqCst);
    assert!(
        token_requests >= 5,
        "the failed renewals were tried again until one worked: {token_requests}{run}"
    );
    assert_no_secret(&wd, &run, &[CLIENT_SECRET, REFRESH_TOKEN, "fake-at-"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_while_rows_wait_for_a_token_ends_the_run_at_once_and_resume_sends_the_rest() {
    // Tokens live 2 s; once the first has been minted the authority fails (503) until told
    // otherwise, so when that token expires every row waits for a renewal that does not come
    // (up to 45 s before the run would give up).
    let authority_up = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let up = authority_up.clone();
    let fake = Arc::new(Fake::new(|_, _| created()).with_authority(move |n| {
        if n == 1 || up.load(Ordering::SeqCst) {
            Token::Minted(json!(2))
        } else {
            Token::Status(StatusCode::SERVICE_UNAVAILABLE)
        }
    }));
    let server = serve(fake.clone()).await;
    let url = server.base_url().to_string();
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(60));
    let args = [
        "confirm",
        "in.csv",
        "-o",
        "r.csv",
        "--base-url",
        &url,
        "--rate",
        "10/s",
        "--no-progress",
        "--summary-json",
        "summary.json",
    ];
    authority_up.store(false, Ordering::SeqCst);
    let mut bg = wd.spawn_with_env(&args, &authority_env(&url), "r.csv.stderr");
    crate::common::wait_until(
        Duration::from_secs(20),
        || {
            bg.stderr()
                .contains("no valid access token, and renewing it failed")
        },
        || format!("rows waiting for a token{}", bg.describe()),
    )
    .await;
    let posts_before = fake.posts.load(Ordering::SeqCst);

    let interrupted = Instant::now();
    bg.interrupt();
    let status = bg.wait(Duration::from_secs(30)).await;

    assert_eq!(status.code(), Some(130), "{status}{}", bg.describe());
    let took = interrupted.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "the run ended {took:?} after Ctrl-C, not at once{}",
        bg.describe()
    );
    assert!(!bg.stderr().contains("panicked"), "{}", bg.describe());
    assert!(
        !bg.stderr().contains("no access token could be had"),
        "a stop is not a failure of the authority{}",
        bg.describe()
    );
    let text = std::fs::read_to_string(wd.path("r.csv")).unwrap();
    let first = crate::common::Results::parse(&text).unwrap();
    let sent = fake.posts.load(Ordering::SeqCst);
    assert_eq!(
        sent,
        posts_before,
        "nothing sent after the stop{}",
        bg.describe()
    );
    assert!(
        (1..60).contains(&sent),
        "some rows went out with the first token, not all: {sent}{}",
        bg.describe()
    );
    assert_eq!(
        first.counts(),
        crate::common::counts(&[("confirmed", sent)]),
        "every row sent has its line, the rows that waited for a token have none{}",
        bg.describe()
    );
    // The summary counts the requests that left (the template and the rows sent), not the
    // rows that were granted a start and then waited for a token.
    let summary: Value = serde_json::from_str(&wd.read("summary.json")).unwrap();
    assert_eq!(
        summary["requests_sent"].as_u64(),
        Some(sent as u64 + 1),
        "{summary}"
    );

    // The authority is back: the resumed run sends exactly the rows that have no line.
    authority_up.store(true, Ordering::SeqCst);
    let mut again: Vec<&str> = args.to_vec();
    again.push("--resume");
    let mut resumed = wd.spawn_with_env(&again, &authority_env(&url), "resumed.stderr");
    let status = resumed.wait(Duration::from_secs(60)).await;
    assert_eq!(status.code(), Some(0), "{status}{}", resumed.describe());
    let results =
        crate::common::Results::parse(&std::fs::read_to_string(wd.path("r.csv")).unwrap()).unwrap();
    assert_eq!(results.row_numbers(), (1..=60).collect::<Vec<u64>>());
    assert_eq!(
        results.counts(),
        crate::common::counts(&[("confirmed", 60)])
    );
    assert_eq!(fake.posts.load(Ordering::SeqCst), 60, "no row sent twice");
    for (path, bytes) in wd.files() {
        for secret in [CLIENT_SECRET, REFRESH_TOKEN, "fake-at-"] {
            assert!(
                !String::from_utf8_lossy(&bytes).contains(secret),
                "{secret} in {}",
                path.display()
            );
        }
    }
}

/// The template as usual (unless `endless_get`), and for anything else (a create: 201) an
/// answer whose chunked body never ends.
async fn serve_endless(endless_get: bool) -> FakeServer {
    let mut builder = FakeServer::builder();
    if !endless_get {
        builder = builder.get("/v1/agreements", |_| {
            fake::json(
                StatusCode::OK,
                &json!({"totalCount": 1, "items": [{"templateId": MCA_TEMPLATE_ID,
                        "agreementType": "MicrosoftCustomerAgreement", "versionRank": 0}]}),
            )
        });
    }
    builder
        .fallback(|req| {
            fake::endless(if req.method == Method::POST {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            })
        })
        .start()
        .await
}

/// How many POSTs `server` answered.
fn posts(server: &FakeServer) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| r.req.method == Method::POST)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_created_body_costs_bounded_time_and_memory() {
    let server = serve_endless(false).await;
    let url = server.base_url().to_string();
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(2));

    // Reading the body to its end would last until the 5 s timeout, and then fail the row.
    let mut cmd = confirm(&wd, &url, crate::common::TEST_TOKEN, "1000/s");
    cmd.args(["--timeout", "5"]);
    let run = cmd.run_async().await;

    run.expect_code(0);
    let results = Results::read(&wd.path("r.csv"), &run);
    for row in [1, 2] {
        assert_eq!(results.by_row(row).status(), "confirmed", "{run}");
        assert_eq!(results.by_row(row).get("attempts"), "1", "{run}");
    }
    assert_eq!(posts(&server), 2, "{run}");
    run.check(
        run.elapsed < Duration::from_secs(4),
        "the endless body was not read to its end",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_answer_to_a_read_is_refused_at_the_bound() {
    let server = serve_endless(true).await;
    let url = server.base_url().to_string();
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(1));

    let mut cmd = confirm(&wd, &url, crate::common::TEST_TOKEN, "1000/s");
    cmd.args(["--timeout", "5", "--max-attempts", "1"]);
    let run = cmd.run_async().await;

    run.expect_code(3)
        .expect_stderr_contains("larger than 4194304 bytes");
    assert_eq!(posts(&server), 0, "{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_text_cannot_forge_log_lines_or_carry_escapes() {
    let fake = Arc::new(Fake::new(|_, _| {
        json_error(
            StatusCode::BAD_REQUEST,
            json!({
                "code": "800002\u{1b}[31m",
                "errorName": "Invalid\nName",
                "message": "bad input\nERROR mca_attest: forged line\u{1b}[2J\r\u{1b}]0;title\u{7}",
                "isRetryable": false
            }),
        )
    }));
    let server = serve(fake.clone()).await;
    let url = server.base_url().to_string();
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(1));

    let run = confirm(&wd, &url, crate::common::TEST_TOKEN, "1000/s")
        .run_async()
        .await;

    run.expect_code(1);
    let bytes = wd.read_bytes("r.csv");
    assert!(
        !bytes.contains(&0x1b) && !bytes.contains(&0x07),
        "a raw escape in the results file{run}"
    );
    let results = Results::read(&wd.path("r.csv"), &run);
    let row = results.by_row(1);
    for column in ["message", "error_name", "error_code"] {
        let cell = row.get(column);
        assert!(
            !cell.chars().any(char::is_control),
            "{column} {cell:?}{run}"
        );
    }
    assert!(
        row.get("message")
            .contains(r"bad input\nERROR mca_attest: forged line\u{1b}[2J"),
        "{row:?}{run}"
    );
    run.check(!run.stderr.contains('\u{1b}'), "an ESC byte on stderr");
    run.check(
        !run.stderr
            .lines()
            .any(|l| l.starts_with("ERROR mca_attest: forged")),
        "a forged line on stderr",
    );
    run.check(!run.stderr.contains('\r'), "a carriage return on stderr");
}

/// Asserts that none of `secrets` is on stdout, on stderr or in any file of the workdir.
fn assert_no_secret(wd: &Workdir, run: &Run, secrets: &[&str]) {
    for secret in secrets {
        run.check(!run.stdout.contains(secret), format!("{secret} on stdout"));
        run.check(!run.stderr.contains(secret), format!("{secret} on stderr"));
        for (path, bytes) in wd.files() {
            run.check(
                !String::from_utf8_lossy(&bytes).contains(secret),
                format!("{secret} in {}", path.display()),
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bearer_token_echoed_by_the_service_is_never_shown() {
    const BEARER: &str = "eyJhbGciOiJub25lIn0.hostile-bearer-sekret-789";
    // A business error that quotes the token, in the message and as a raw body.
    let fake = Arc::new(Fake::new(|n, bearer| {
        if n % 2 == 1 {
            json_error(
                StatusCode::BAD_REQUEST,
                json!({"code": 800002, "errorName": format!("Bearer {bearer}"),
                       "message": format!("the token {bearer} may not do this"),
                       "isRetryable": false}),
            )
        } else {
            (
                StatusCode::FORBIDDEN,
                format!("<html>denied for {bearer} at /v1</html>"),
            )
                .into_response()
        }
    }));
    let server = serve(fake.clone()).await;
    let url = server.base_url().to_string();
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(4));

    let mut cmd = confirm(&wd, &url, BEARER, "1000/s");
    cmd.env("RUST_LOG", "debug")
        .args(["--concurrency", "1", "--summary-json", "summary.json"]);
    let run = cmd.run_async().await;

    run.expect_code(1);
    let results = Results::read(&wd.path("r.csv"), &run);
    assert_eq!(results.with_status("failed").len(), 4, "{run}");
    assert!(
        results
            .rows
            .iter()
            .any(|r| r.get("message").contains("***")),
        "{results:?}{run}"
    );
    assert_no_secret(&wd, &run, &[BEARER, "hostile-bearer-sekret"]);

    // Echoed with a 401: the run aborts, and its message quotes the service, scrubbed.
    let echo_401 = Arc::new(Fake::new(|_, bearer| {
        json_error(
            StatusCode::UNAUTHORIZED,
            json!({"code": 401, "message": format!("token {bearer} expired")}),
        )
    }));
    let server = serve(echo_401).await;
    let url = server.base_url().to_string();
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(1));
    // The template fetch succeeds only with the right token: use the 401 on the create.
    let run = confirm(&wd, &url, BEARER, "1000/s").run_async().await;
    run.expect_code(3).expect_stderr_contains("***");
    assert_no_secret(&wd, &run, &[BEARER, "hostile-bearer-sekret"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_access_token_with_a_line_break_is_refused_before_anything_is_sent() {
    let fake = Arc::new(Fake::new(|_, _| created()));
    let server = serve(fake.clone()).await;
    let url = server.base_url().to_string();
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(1));

    let run = confirm(
        &wd,
        &url,
        "first-half-sekret\nX-Injected: second-half",
        "1000/s",
    )
    .run_async()
    .await;

    run.expect_code(2).expect_stderr_contains(
        "PARTNER_CENTER_ACCESS_TOKEN holds a line break or another character that cannot be sent in an HTTP header",
    );
    assert_no_secret(&wd, &run, &["first-half-sekret", "second-half"]);
    assert_eq!(server.requests().len(), 0, "nothing sent{run}");
    assert_eq!(fake.without_authorization.load(Ordering::SeqCst), 0);
}
