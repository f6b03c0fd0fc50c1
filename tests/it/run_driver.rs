//! What every run gets from the run driver, through the real binary: its report file locked
//! for the whole run, every output path checked before anything is sent, dry runs beside the
//! real results, devices and pipes as outputs, SIGHUP handled like SIGTERM, a breaker for a
//! write call that refuses every row, rows never sent left without a line, and arguments that
//! are not UTF-8.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::common::fake::{self, FakeServer};
use crate::common::{
    Customer, Results, Workdir, default_simulator, no_calls, start_simulator, wait_until,
};
use axum::http::StatusCode;
use mca_attest::simulator::SimulatorConfig;

const TEMPLATE: &str = r#"{"totalCount":1,"items":[{"templateId":"117a77b0-9360-443b-8795-c6dedc750cf9","agreementType":"MicrosoftCustomerAgreement","agreementLink":"https://aka.ms/customeragreement","versionRank":0}],"attributes":{"objectType":"Collection"}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_on_the_same_results_file_is_refused_and_nothing_is_sent_twice() {
    let sim = start_simulator(SimulatorConfig {
        latency: Duration::from_millis(100),
        ..Default::default()
    })
    .await;
    let wd = Workdir::new();
    let customers = Customer::many(30);
    wd.create_customers("in.csv", &customers);
    let mut first = wd.spawn_confirm("in.csv", "r.csv", &sim.base_url(), "20/s", &[]);
    wait_until(
        Duration::from_secs(20),
        || sim.stats().agreement_posts >= 2,
        || format!("the first run's POSTs{}", first.describe()),
    )
    .await;

    for extra in [&[][..], &["--resume"][..]] {
        let mut second = wd.confirm("in.csv", "r.csv", &sim.base_url());
        second.args(extra);
        let run = second.run_async().await;
        run.expect_code(2)
            .expect_stderr_contains("another run is using");
    }

    let status = first.wait(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(0), "{}", first.describe());
    let stats = sim.stats();
    assert_eq!(
        stats.agreement_posts, 30,
        "every customer POSTed once, by the first run only: {stats:?}"
    );
    let text = wd.read("r.csv");
    let results = Results::parse(&text).expect("the results file is valid CSV");
    let rows: BTreeSet<u64> = results.rows.iter().map(|r| r.row()).collect();
    assert_eq!(results.rows.len(), 30, "one line per row:\n{text}");
    assert_eq!(rows.len(), 30, "no row twice:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_that_name_the_same_file_are_refused_before_anything_is_sent() {
    let sim = default_simulator().await;
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(2));
    wd.create(
        "t.csv",
        format!("customer_tenant_id\n{}\n", Customer::new(1).tenant),
    );
    let cases: Vec<Vec<&str>> = vec![
        vec![
            "confirm",
            "in.csv",
            "-o",
            "r.csv",
            "--summary-json",
            "r.csv",
        ],
        vec![
            "confirm",
            "in.csv",
            "-o",
            "r.csv",
            "--summary-json",
            "in.csv",
        ],
        vec!["confirm", "in.csv", "-o", "./in.csv"],
        vec![
            "confirm",
            "in.csv",
            "-o",
            "r.csv",
            "--summary-json",
            "r.csv.manifest.json",
        ],
        vec!["confirm", "in.csv", "-o", "-", "--summary-json", "-"],
        vec![
            "status",
            "t.csv",
            "-o",
            "s.csv",
            "--emit-confirm-input",
            "s.csv",
        ],
        vec![
            "status",
            "t.csv",
            "-o",
            "s.csv",
            "--emit-confirm-input",
            "t.csv",
        ],
        vec![
            "validate",
            "in.csv",
            "-o",
            "v.csv",
            "--summary-json",
            "v.csv",
        ],
    ];
    for args in cases {
        let mut cmd = wd.command(&args);
        if args[0] != "validate" {
            cmd.args(["--base-url", &sim.base_url()])
                .env("PARTNER_CENTER_ACCESS_TOKEN", crate::common::TEST_TOKEN);
        }
        let run = cmd.run_async().await;
        run.expect_code(2);
        run.check(
            run.stderr.contains("same file") || run.stderr.contains("is the input file"),
            "the message names the collision",
        );
    }
    assert!(no_calls(&sim.stats()), "nothing sent: {:?}", sim.stats());
    for name in ["r.csv", "s.csv", "v.csv"] {
        assert!(!wd.exists(name), "{name} was created");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_and_status_never_replace_a_confirm_results_file() {
    let wd = Workdir::new();
    let customers = Customer::many(3);
    wd.create_customers("in.csv", &customers);
    wd.command(["confirm", "in.csv", "-o", "r.csv", "--simulator"])
        .run_async()
        .await
        .expect_code(0);
    let before = wd.read_bytes("r.csv");
    wd.command(["validate", "in.csv", "-o", "r.csv"])
        .run_async()
        .await
        .expect_code(2)
        .expect_stderr_contains("audit record");
    wd.command(["status", "in.csv", "-o", "r.csv", "--simulator"])
        .run_async()
        .await
        .expect_code(2)
        .expect_stderr_contains("audit record");
    assert_eq!(
        wd.read_bytes("r.csv"),
        before,
        "the results file is untouched"
    );

    // A validation report, by contrast, is replaced by the next validation.
    wd.command(["validate", "in.csv", "-o", "v.csv"])
        .run_async()
        .await
        .expect_code(0);
    wd.command(["validate", "in.csv", "-o", "v.csv"])
        .run_async()
        .await
        .expect_code(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_writes_beside_the_real_results_and_the_real_run_then_sends_every_row() {
    let sim = default_simulator().await;
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(4));
    let base = sim.base_url();
    let mut dry = wd.command(["confirm", "in.csv", "--dry-run", "--base-url", &base]);
    dry.env("PARTNER_CENTER_ACCESS_TOKEN", crate::common::TEST_TOKEN);
    let dry = dry.run_async().await;
    dry.expect_code(0);
    assert!(wd.exists("in.dry-run.csv"), "{dry}");
    assert!(
        !wd.exists("in.results.csv"),
        "the dry run left the results file alone{dry}"
    );
    assert_eq!(sim.stats().agreement_posts, 0);
    let dry_results = Results::read(&wd.path("in.dry-run.csv"), &dry);
    assert!(
        dry_results
            .rows
            .iter()
            .all(|r| r.status() == "would_confirm")
    );

    let mut real = wd.command(["confirm", "in.csv", "--resume", "--base-url", &base]);
    real.env("PARTNER_CENTER_ACCESS_TOKEN", crate::common::TEST_TOKEN);
    let real = real.run_async().await;
    real.expect_code(0);
    assert_eq!(sim.stats().agreement_posts, 4, "{real}");
    let results = Results::read(&wd.path("in.results.csv"), &real);
    assert!(
        results.rows.iter().all(|r| r.status() == "confirmed"),
        "{real}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_and_pipes_are_outputs_whose_exit_code_is_the_rows() {
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(3));
    for target in ["/dev/null", "/dev/stdout", "-"] {
        let run = wd
            .command(["confirm", "in.csv", "-o", target, "--simulator"])
            .run_async()
            .await;
        run.expect_code(0);
        if target != "/dev/null" {
            run.expect_stdout_contains("confirmed");
        }
    }
    wd.command(["status", "in.csv", "-o", "/dev/null", "--simulator"])
        .run_async()
        .await
        .expect_code(1);
    assert!(!wd.exists("in.results.csv"));

    // A FIFO with a reader on the other end.
    let fifo = wd.path("results.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(made.success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read_to_string(fifo).expect("read the fifo"))
    };
    let run = wd
        .command(["confirm", "in.csv", "-o", "results.fifo", "--simulator"])
        .run_async()
        .await;
    run.expect_code(0);
    let text = reader.join().expect("the fifo reader");
    let results = Results::parse(&text).expect("CSV through the fifo");
    assert_eq!(results.rows.len(), 3, "{text}{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_stops_like_sigterm_and_records_the_rows_in_flight() {
    let sim = start_simulator(SimulatorConfig {
        latency: Duration::from_millis(300),
        ..Default::default()
    })
    .await;
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(40));
    let mut run = wd.spawn_confirm("in.csv", "r.csv", &sim.base_url(), "20/s", &[]);
    wait_until(
        Duration::from_secs(20),
        || sim.stats().agreement_posts >= 3,
        || format!("POSTs in flight{}", run.describe()),
    )
    .await;
    run.signal("HUP");
    let status = run.wait(Duration::from_secs(20)).await;
    assert_eq!(status.code(), Some(130), "{}", run.describe());
    let text = wd.read("r.csv");
    let results = Results::parse(&text).expect("valid CSV");
    let created = sim.stats().agreements_created;
    assert_eq!(
        results.with_status("confirmed").len() as u64,
        created,
        "every agreement created has its line:\n{text}{}",
        run.describe()
    );
    assert!(created < 40, "the run stopped early");
}

const CREATE: &str = "/v1/customers/{id}/agreements";

/// A Partner Center whose write call refuses every row alike, as a retired endpoint might.
async fn refusing_service() -> FakeServer {
    FakeServer::builder()
        .get("/v1/agreements", |_| fake::json_text(StatusCode::OK, TEMPLATE))
        .post(CREATE, |_| {
            fake::json_text(
                StatusCode::FORBIDDEN,
                r#"{"code":"1299","message":"This API is retired.","errorName":"ApiRetired","isRetryable":false}"#,
            )
        })
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_call_that_refuses_every_row_stops_the_run_and_names_the_answer() {
    let server = refusing_service().await;
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(300));
    let run = wd
        .confirm_at_rate("in.csv", "r.csv", server.base_url(), "200/s")
        .run_async()
        .await;
    run.expect_code(3).expect_stderr_contains("1299");
    let sent = server.count(CREATE);
    assert!(
        (20..60).contains(&sent),
        "stopped after about 20 identical refusals, not {sent}{run}"
    );
    let results = Results::read(&wd.path("r.csv"), &run);
    assert!(results.rows.len() < 60, "{run}");
    run.expect_stderr_contains("--resume");
}

/// A token authority that mints one short-lived token, then refuses the refresh token.
async fn authority_that_revokes() -> FakeServer {
    FakeServer::builder()
        .post("/{tenant}/oauth2/token", |req| {
            if req.n == 1 {
                fake::json_text(
                    StatusCode::OK,
                    r#"{"token_type":"Bearer","access_token":"first-access","expires_in":"2"}"#,
                )
            } else {
                fake::json_text(
                    StatusCode::BAD_REQUEST,
                    r#"{"error":"invalid_grant","error_description":"AADSTS70008: The refresh token has expired."}"#,
                )
            }
        })
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_never_sent_get_no_line_when_the_credentials_are_refused_mid_run() {
    let sim = default_simulator().await;
    let authority = authority_that_revokes().await;
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(60));
    let mut cmd = wd.command([
        "confirm",
        "in.csv",
        "-o",
        "r.csv",
        "--base-url",
        &sim.base_url(),
        "--rate",
        "10/s",
        "--no-progress",
    ]);
    cmd.env("PARTNER_CENTER_TENANT_ID", "partner.example")
        .env("PARTNER_CENTER_CLIENT_ID", "app")
        .env("PARTNER_CENTER_CLIENT_SECRET", "secret-value")
        .env("PARTNER_CENTER_REFRESH_TOKEN", "refresh-value")
        .env("PARTNER_CENTER_AUTHORITY", authority.base_url());
    let run = cmd.run_async().await;
    run.expect_code(3).expect_stderr_contains("refresh token");
    let results = Results::read(&wd.path("r.csv"), &run);
    assert!(!results.rows.is_empty() && results.rows.len() < 60, "{run}");
    for line in &results.rows {
        assert_ne!(
            line.get("attempts"),
            "0",
            "a line for a row never sent{run}"
        );
        assert_ne!(
            line.get("correlation_id"),
            "00000000-0000-0000-0000-000000000000",
            "a correlation id that never left the machine{run}"
        );
    }
    assert_eq!(
        results.with_status("confirmed").len() as u64,
        sim.stats().agreements_created,
        "every line is a row Partner Center saw{run}"
    );
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_name_that_is_not_utf8_runs_to_the_end_with_summary_and_manifest() {
    use std::os::unix::ffi::OsStrExt;
    let wd = Workdir::new();
    let name = std::ffi::OsStr::from_bytes(b"wave\xff.csv");
    let mut text = format!("{}\n", crate::common::INPUT_HEADER);
    text.push_str(&Customer::new(1).csv_line(','));
    text.push('\n');
    std::fs::write(wd.dir().join(name), text).expect("write the input");
    // Not through `Workdir::command`, which shows arguments as text.
    let out = std::process::Command::new(crate::common::binary())
        .arg("confirm")
        .arg(name)
        .arg("--simulator")
        .current_dir(wd.dir())
        .env_remove("PARTNER_CENTER_ACCESS_TOKEN")
        .env_remove("RUST_LOG")
        .output()
        .expect("run the binary");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("rows in"),
        "the summary is printed: {stderr}"
    );
    let manifest = wd.dir().join(std::ffi::OsStr::from_bytes(
        b"wave\xff.results.csv.manifest.json",
    ));
    assert!(
        manifest.exists(),
        "the manifest beside the results: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_with_a_changed_input_warns_with_both_hashes() {
    use sha2::{Digest, Sha256};
    let sim = default_simulator().await;
    let wd = Workdir::new();
    let customers = Customer::many(3);
    wd.create_customers("in.csv", &customers[..2]);
    let old = format!("{:x}", Sha256::digest(wd.read_bytes("in.csv")));
    wd.confirm("in.csv", "r.csv", &sim.base_url())
        .run_async()
        .await
        .expect_code(0);
    wd.create_customers("in.csv", &customers);
    let new = format!("{:x}", Sha256::digest(wd.read_bytes("in.csv")));
    let mut resume = wd.confirm("in.csv", "r.csv", &sim.base_url());
    resume.arg("--resume");
    let run = resume.run_async().await;
    run.expect_code(0)
        .expect_stderr_contains(&old[..12])
        .expect_stderr_contains(&new[..12]);
    assert_eq!(
        sim.stats().agreement_posts,
        3,
        "only the new row is sent{run}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_run_that_stops_early_keeps_the_last_complete_report() {
    let sim = start_simulator(SimulatorConfig {
        latency: Duration::from_millis(200),
        ..Default::default()
    })
    .await;
    let wd = Workdir::new();
    let customers = Customer::many(30);
    wd.create_customers("in.csv", &customers);
    let base = sim.base_url();
    let args = [
        "status",
        "in.csv",
        "-o",
        "report.csv",
        "--base-url",
        &base,
        "--rate",
        "1000/s",
        "--no-progress",
    ];
    let mut first = wd.command(args);
    first.env("PARTNER_CENTER_ACCESS_TOKEN", crate::common::TEST_TOKEN);
    first.run_async().await.expect_code(1);
    let complete = wd.read_bytes("report.csv");
    let complete_manifest = wd.read_bytes("report.csv.manifest.json");

    let slow = [
        "status",
        "in.csv",
        "-o",
        "report.csv",
        "--base-url",
        &base,
        "--rate",
        "10/s",
        "--no-progress",
    ];
    let mut again = wd.spawn_with_token(&slow, "again.stderr");
    let gets_before = sim.stats().agreement_gets;
    wait_until(
        Duration::from_secs(20),
        || sim.stats().agreement_gets >= gets_before + 3,
        || format!("the second run's calls{}", again.describe()),
    )
    .await;
    again.interrupt();
    let status = again.wait(Duration::from_secs(20)).await;
    assert_eq!(status.code(), Some(130), "{}", again.describe());
    assert_eq!(
        wd.read_bytes("report.csv"),
        complete,
        "the complete report is kept"
    );
    assert_eq!(
        wd.read_bytes("report.csv.manifest.json"),
        complete_manifest,
        "and its manifest"
    );
    assert!(wd.exists("report.csv.partial"), "{}", again.describe());
    assert!(
        again.stderr().contains("report.csv.partial"),
        "{}",
        again.describe()
    );

    let mut resume = wd.command(args);
    resume
        .arg("--resume")
        .env("PARTNER_CENTER_ACCESS_TOKEN", crate::common::TEST_TOKEN);
    let run = resume.run_async().await;
    run.expect_code(1);
    assert!(!wd.exists("report.csv.partial"), "{run}");
    let text = wd.read("report.csv");
    let rows = Results::parse(&text).expect("valid CSV").rows;
    let distinct: BTreeSet<u64> = rows.iter().map(|r| r.row()).collect();
    assert_eq!((rows.len(), distinct.len()), (30, 30), "{text}{run}");
}
