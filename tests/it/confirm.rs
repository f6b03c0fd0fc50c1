//! `mca-attest confirm` end to end: the real binary against the real simulator on a free
//! loopback port. Row statuses, exit codes 0 and 1, what goes over the wire, the template,
//! the dry run, the rate limit and secrets.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use crate::common::{
    Customer, Results, Workdir, counts, default_simulator, start_simulator, uuid_of,
};
use chrono::{DateTime, Utc};
use mca_attest::simulator::{
    AgreementSource, MCA_TEMPLATE_ID, RateLimit, SimulatorConfig, StoredAgreement, TemplateItem,
};
use uuid::Uuid;

const MCA_TYPE: &str = "MicrosoftCustomerAgreement";

fn on_record(c: &Customer) -> (Uuid, StoredAgreement) {
    (
        c.tenant_uuid(),
        StoredAgreement {
            first_name: c.first_name.clone(),
            last_name: c.last_name.clone(),
            email: c.email.clone(),
            phone_number: (!c.phone_number.is_empty()).then(|| c.phone_number.clone()),
            template_id: MCA_TEMPLATE_ID.into(),
            date_agreed: "2024-01-15T00:00:00Z".parse::<DateTime<Utc>>().unwrap(),
            agreement_type: MCA_TYPE.into(),
            source: AgreementSource::Existing,
            date_without_z: false,
        },
    )
}

#[test]
fn readme_first_command_confirms_the_sample_file() {
    let wd = Workdir::new();
    wd.copy_from_repo("samples/customers.csv", "customers.csv");
    wd.copy_from_repo("samples/existing.csv", "existing.csv");
    let results_path = wd.path("r.csv");
    let run = wd
        .command([
            "confirm",
            "customers.csv",
            "--simulator",
            "--simulator-existing",
            "existing.csv",
            "-o",
            results_path.to_str().unwrap(),
        ])
        .run();

    run.expect_code(1);
    let results = Results::read(&results_path, &run);
    run.check(
        results.row_numbers() == (1..=50).collect::<Vec<u64>>(),
        format!(
            "every input row exactly once, got rows {:?}",
            results.row_numbers()
        ),
    );
    run.check(
        results.counts()
            == counts(&[
                ("invalid", 5),
                ("duplicate", 1),
                ("already_confirmed", 6),
                ("conflict", 2),
                ("confirmed", 36),
            ]),
        format!("statuses {:?}", results.counts()),
    );

    let invalid: BTreeSet<u64> = results
        .with_status("invalid")
        .iter()
        .map(|r| r.row())
        .collect();
    assert_eq!(
        invalid,
        BTreeSet::from([7, 14, 22, 30, 36]),
        "invalid rows{run}"
    );
    for (row, field) in [
        (7, "customer_tenant_id"),
        (14, "email"),
        (22, "date_agreed"),
        (30, "last_name"),
        (36, "phone_number"),
    ] {
        let message = results.by_row(row).get("message");
        assert!(
            message.contains(field),
            "row {row}'s message {message:?} should name {field}{run}"
        );
    }

    let duplicate = results.by_row(41);
    assert_eq!(duplicate.status(), "duplicate", "{run}");
    assert!(
        duplicate.get("message").contains("10"),
        "the duplicate's message names row 10: {duplicate:?}{run}"
    );

    let existing = std::fs::read_to_string(wd.path("existing.csv")).unwrap();
    let existing_tenants: BTreeSet<&str> = existing
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').next())
        .collect();
    let already: BTreeSet<&str> = results
        .with_status("already_confirmed")
        .iter()
        .map(|r| r.tenant())
        .collect();
    assert_eq!(
        already, existing_tenants,
        "already_confirmed rows are those on record{run}"
    );

    // One tenant has two signers (a tenant id pasted onto another customer's row): neither
    // is sent, and each names the other with its spreadsheet line.
    for (row, other) in [
        (3, "row 45 (spreadsheet line 46)"),
        (45, "row 3 (spreadsheet line 4)"),
    ] {
        let line = results.by_row(row);
        assert_eq!(line.status(), "conflict", "{run}");
        assert!(
            line.get("message").contains(other),
            "row {row}: {line:?}{run}"
        );
        assert_eq!(line.get("attempts"), "0", "{run}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_where_every_row_is_confirmed_exits_zero() {
    let sim = default_simulator().await;
    let wd = Workdir::new();
    let customers = Customer::many(4);
    wd.create_customers("in.csv", &customers);

    let run = wd
        .confirm("in.csv", "r.csv", &sim.base_url())
        .run_async()
        .await;

    run.expect_code(0);
    let results = Results::read(&wd.path("r.csv"), &run);
    assert_eq!(results.counts(), counts(&[("confirmed", 4)]), "{run}");
    for r in &results.rows {
        assert_eq!(r.get("http_status"), "201", "{r:?}{run}");
        assert_eq!(r.get("attempts"), "1", "{r:?}{run}");
    }
    assert_eq!(sim.stats().agreements_created, 4, "{run}");
    for c in &customers {
        assert_eq!(
            sim.agreements(c.tenant_uuid()).len(),
            1,
            "agreement on record for {}{run}",
            c.tenant
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_row_is_sent_once_and_does_not_fail_the_run() {
    let sim = default_simulator().await;
    let wd = Workdir::new();
    let first = Customer::new(1).phone("+1 (425) 555-0100");
    let again = first
        .clone()
        .first_name("FIRST1")
        .email("SIGNER1@CONTOSO.COM")
        .phone("+14255550100");
    wd.create_customers("in.csv", &[first.clone(), Customer::new(2), again]);

    let run = wd
        .confirm("in.csv", "r.csv", &sim.base_url())
        .run_async()
        .await;

    run.expect_code(0);
    let results = Results::read(&wd.path("r.csv"), &run);
    assert_eq!(
        results.counts(),
        counts(&[("confirmed", 2), ("duplicate", 1)]),
        "{run}"
    );
    let duplicate = results.by_row(3);
    assert_eq!(duplicate.status(), "duplicate", "{run}");
    assert!(
        duplicate.get("message").contains("row 1"),
        "message names the earlier row: {duplicate:?}{run}"
    );
    assert_eq!(duplicate.get("attempts"), "0", "{run}");
    let sent_for_tenant = sim
        .requests()
        .iter()
        .filter(|r| r.tenant == first.tenant)
        .count();
    assert_eq!(
        sent_for_tenant, 1,
        "the duplicated signer is sent once{run}"
    );
    assert_eq!(sim.stats().agreement_posts, 2, "{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn already_existing_agreement_is_reported_as_already_confirmed() {
    let done = Customer::new(1).phone("425 555 0101");
    let sim = start_simulator(SimulatorConfig {
        existing: vec![on_record(&done)],
        ..Default::default()
    })
    .await;
    let wd = Workdir::new();
    wd.create_customers("in.csv", &[done.clone(), Customer::new(2)]);

    let run = wd
        .confirm("in.csv", "r.csv", &sim.base_url())
        .run_async()
        .await;

    run.expect_code(0);
    let results = Results::read(&wd.path("r.csv"), &run);
    let line = results.by_row(1);
    assert_eq!(line.status(), "already_confirmed", "{line:?}{run}");
    assert_eq!(line.get("http_status"), "400", "{line:?}{run}");
    assert_eq!(line.get("error_code"), "600061", "{line:?}{run}");
    assert_eq!(line.get("attempts"), "1", "not retried: {line:?}{run}");
    assert_eq!(results.by_row(2).status(), "confirmed", "{run}");
    assert_eq!(
        sim.agreements(done.tenant_uuid()).len(),
        1,
        "no second agreement was created{run}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn future_date_is_invalid_and_never_sent() {
    let sim = default_simulator().await;
    let wd = Workdir::new();
    let tomorrow = (Utc::now() + chrono::Duration::days(2))
        .format("%Y-%m-%d")
        .to_string();
    let future = Customer::new(1).date(&tomorrow);
    wd.create_customers("in.csv", &[future.clone(), Customer::new(2)]);

    let run = wd
        .confirm("in.csv", "r.csv", &sim.base_url())
        .run_async()
        .await;

    run.expect_code(1);
    let results = Results::read(&wd.path("r.csv"), &run);
    let line = results.by_row(1);
    assert_eq!(line.status(), "invalid", "{line:?}{run}");
    assert!(
        line.get("message").contains("date_agreed"),
        "message names the field: {line:?}{run}"
    );
    assert!(
        line.get("message").contains("future"),
        "message says why: {line:?}{run}"
    );
    assert_eq!(results.by_row(2).status(), "confirmed", "{run}");
    assert!(
        sim.requests().iter().all(|r| r.tenant != future.tenant),
        "nothing was sent for the future-dated row: {:#?}{run}",
        sim.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tenant_is_failed_with_404_and_code_60003() {
    let unknown = Customer::new(2);
    let sim = start_simulator(SimulatorConfig {
        unknown_tenants: HashSet::from([unknown.tenant_uuid()]),
        ..Default::default()
    })
    .await;
    let wd = Workdir::new();
    wd.create_customers("in.csv", &[Customer::new(1), unknown, Customer::new(3)]);

    let run = wd
        .confirm("in.csv", "r.csv", &sim.base_url())
        .run_async()
        .await;

    run.expect_code(1);
    let results = Results::read(&wd.path("r.csv"), &run);
    let line = results.by_row(2);
    assert_eq!(line.status(), "failed", "{line:?}{run}");
    assert_eq!(line.get("http_status"), "404", "{line:?}{run}");
    assert_eq!(line.get("error_code"), "60003", "{line:?}{run}");
    assert_eq!(line.get("attempts"), "1", "not retryable: {line:?}{run}");
    assert!(
        !line.get("request_id").is_empty() && !line.get("correlation_id").is_empty(),
        "ids for support: {line:?}{run}"
    );
    assert_eq!(results.by_row(1).status(), "confirmed", "{run}");
    assert_eq!(results.by_row(3).status(), "confirmed", "{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_without_a_reseller_relationship_is_failed_with_403_and_code_20002() {
    let stranger = Customer::new(1);
    let sim = start_simulator(SimulatorConfig {
        no_relationship: HashSet::from([stranger.tenant_uuid()]),
        ..Default::default()
    })
    .await;
    let wd = Workdir::new();
    wd.create_customers("in.csv", &[stranger, Customer::new(2)]);

    let run = wd
        .confirm("in.csv", "r.csv", &sim.base_url())
        .run_async()
        .await;

    run.expect_code(1);
    let results = Results::read(&wd.path("r.csv"), &run);
    let line = results.by_row(1);
    assert_eq!(line.status(), "failed", "{line:?}{run}");
    assert_eq!(line.get("http_status"), "403", "{line:?}{run}");
    assert_eq!(line.get("error_code"), "20002", "{line:?}{run}");
    assert_eq!(line.get("attempts"), "1", "not retryable: {line:?}{run}");
    assert_eq!(results.by_row(2).status(), "confirmed", "{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mca_template_is_fetched_once_per_run_and_recorded_on_every_sent_row() {
    let sim = default_simulator().await;
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(6));

    let run = wd
        .confirm("in.csv", "r.csv", &sim.base_url())
        .run_async()
        .await;

    // The simulator answers the retired Microsoft Cloud Agreement template when
    // agreementType=MicrosoftCustomerAgreement is left out, and refuses POSTs that use it: every
    // row confirmed proves the right template was asked for.
    run.expect_code(0);
    assert_eq!(sim.stats().template_gets, 1, "{run}");
    let results = Results::read(&wd.path("r.csv"), &run);
    assert_eq!(results.counts(), counts(&[("confirmed", 6)]), "{run}");
    for r in &results.rows {
        assert_eq!(r.get("template_id"), MCA_TEMPLATE_ID, "{r:?}{run}");
    }
    for req in sim.requests() {
        assert_eq!(req.body["templateId"], MCA_TEMPLATE_ID, "{req:?}{run}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn highest_ranked_mca_template_is_the_one_sent() {
    let newer = "3c2f8e1a-5b7d-4c9e-8f1a-2b3c4d5e6f70";
    let sim = start_simulator(SimulatorConfig {
        extra_mca_templates: vec![TemplateItem {
            template_id: newer.into(),
            agreement_type: MCA_TYPE.into(),
            agreement_link: "https://aka.ms/customeragreement".into(),
            version_rank: 1,
        }],
        ..Default::default()
    })
    .await;
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(2));

    let run = wd
        .confirm("in.csv", "r.csv", &sim.base_url())
        .run_async()
        .await;

    run.expect_code(0);
    let results = Results::read(&wd.path("r.csv"), &run);
    for r in &results.rows {
        assert_eq!(r.get("template_id"), newer, "{r:?}{run}");
    }
    for req in sim.requests() {
        assert_eq!(req.body["templateId"], newer, "{req:?}{run}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_post_carries_the_rows_ids_and_the_documented_body() {
    let sim = default_simulator().await;
    let wd = Workdir::new();
    let customers = vec![
        Customer::new(1).phone("425 555 0100"),
        Customer::new(2),
        Customer::new(3).date("2024-06-14T09:30:00+02:00"),
    ];
    wd.create_customers("in.csv", &customers);

    let run = wd
        .confirm("in.csv", "r.csv", &sim.base_url())
        .run_async()
        .await;

    run.expect_code(0);
    let results = Results::read(&wd.path("r.csv"), &run);
    let requests = sim.requests();
    assert_eq!(
        requests.len(),
        customers.len(),
        "one POST per valid row: {requests:#?}{run}"
    );
    let request_ids: HashSet<Uuid> = requests
        .iter()
        .map(|r| uuid_of(r.request_id.as_deref().unwrap_or_default(), "MS-RequestId"))
        .collect();
    assert_eq!(
        request_ids.len(),
        customers.len(),
        "a distinct MS-RequestId per row: {requests:#?}{run}"
    );

    for c in &customers {
        let line = results.by_tenant(&c.tenant);
        let sent: Vec<_> = requests.iter().filter(|r| r.tenant == c.tenant).collect();
        assert_eq!(
            sent.len(),
            1,
            "one POST for {}: {requests:#?}{run}",
            c.tenant
        );
        let req = sent[0];

        assert_eq!(
            uuid_of(
                req.request_id.as_deref().unwrap_or_default(),
                "MS-RequestId"
            ),
            uuid_of(line.get("request_id"), "request_id column"),
            "{req:?} {line:?}{run}"
        );
        assert_eq!(
            uuid_of(
                req.correlation_id.as_deref().unwrap_or_default(),
                "MS-CorrelationId"
            ),
            uuid_of(line.get("correlation_id"), "correlation_id column"),
            "{req:?} {line:?}{run}"
        );
        assert!(
            req.authorization_present,
            "Authorization header: {req:?}{run}"
        );
        assert_eq!(
            req.accept.as_deref(),
            Some("application/json"),
            "{req:?}{run}"
        );

        let body = &req.body;
        let contact = &body["primaryContact"];
        assert_eq!(contact["firstName"], c.first_name.as_str(), "{body}{run}");
        assert_eq!(contact["lastName"], c.last_name.as_str(), "{body}{run}");
        assert_eq!(contact["email"], c.email.as_str(), "{body}{run}");
        if c.phone_number.is_empty() {
            assert!(
                contact.get("phoneNumber").is_none(),
                "no phoneNumber when none is given: {body}{run}"
            );
        } else {
            assert_eq!(
                contact["phoneNumber"],
                c.phone_number.as_str(),
                "{body}{run}"
            );
        }
        assert_eq!(body["templateId"], MCA_TEMPLATE_ID, "{body}{run}");
        assert_eq!(body["type"], MCA_TYPE, "{body}{run}");
        let date = body["dateAgreed"].as_str().unwrap_or_default();
        assert!(date.ends_with('Z'), "dateAgreed is UTC with Z: {body}{run}");
        assert_eq!(
            date,
            line.get("date_agreed"),
            "results show the date as sent: {body} {line:?}{run}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_fetches_the_template_and_sends_no_post() {
    let sim = default_simulator().await;
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(3));

    let mut cmd = wd.confirm("in.csv", "r.csv", &sim.base_url());
    cmd.arg("--dry-run");
    let run = cmd.run_async().await;

    run.expect_code(0);
    let stats = sim.stats();
    assert_eq!(stats.template_gets, 1, "{stats:?}{run}");
    assert_eq!(stats.agreement_posts, 0, "{stats:?}{run}");
    let results = Results::read(&wd.path("r.csv"), &run);
    assert_eq!(results.counts(), counts(&[("would_confirm", 3)]), "{run}");
    for r in &results.rows {
        assert_eq!(r.get("attempts"), "0", "{r:?}{run}");
        assert_eq!(r.get("template_id"), MCA_TEMPLATE_ID, "{r:?}{run}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_stay_under_the_rate_so_a_server_limit_above_it_never_throttles() {
    let sim = start_simulator(SimulatorConfig {
        rate_limit: Some(RateLimit {
            max_requests: 25,
            window: Duration::from_secs(1),
        }),
        ..Default::default()
    })
    .await;
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(30));

    let run = wd
        .confirm_at_rate("in.csv", "r.csv", &sim.base_url(), "20/s")
        .run_async()
        .await;

    run.expect_code(0);
    let stats = sim.stats();
    assert_eq!(
        stats.throttled, 0,
        "no 429 at 20/s against a 25/s limit: {stats:?}{run}"
    );
    let results = Results::read(&wd.path("r.csv"), &run);
    assert_eq!(results.counts(), counts(&[("confirmed", 30)]), "{run}");
    // 31 request starts (template + 30 POSTs) 50 ms apart take at least 1.5 s: a lower bound
    // shows the limiter holds; no upper bound is asserted.
    assert!(
        run.elapsed >= Duration::from_millis(1400),
        "31 requests at 20/s finished in {:?}{run}",
        run.elapsed
    );
}

const SECRET: &str = "sekret-token-123";

fn assert_secret_absent(wd: &Workdir, run: &crate::common::Run) {
    assert!(!run.stdout.contains(SECRET), "the token is on stdout{run}");
    assert!(!run.stderr.contains(SECRET), "the token is on stderr{run}");
    for (path, bytes) in wd.files() {
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains(SECRET),
            "the token is in {}{run}",
            path.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_token_never_appears_in_output_logs_or_files() {
    let sim = start_simulator(SimulatorConfig {
        access_tokens: vec![SECRET.into()],
        ..Default::default()
    })
    .await;
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(2));

    let mut cmd = wd.confirm("in.csv", "r.csv", &sim.base_url());
    cmd.env("PARTNER_CENTER_ACCESS_TOKEN", SECRET)
        .env("RUST_LOG", "trace")
        .args(["--summary-json", "summary.json"]);
    let run = cmd.run_async().await;

    run.expect_code(0);
    assert_eq!(sim.stats().agreements_created, 2, "the token was used{run}");
    run.check(
        !run.stderr.trim().is_empty(),
        "trace logging produced log lines",
    );
    assert_secret_absent(&wd, &run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_access_token_is_not_printed_either() {
    let sim = start_simulator(SimulatorConfig {
        access_tokens: vec!["good".into()],
        ..Default::default()
    })
    .await;
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(2));

    let mut cmd = wd.confirm("in.csv", "r.csv", &sim.base_url());
    cmd.env("PARTNER_CENTER_ACCESS_TOKEN", SECRET)
        .env("RUST_LOG", "trace")
        .args(["--log-format", "json"]);
    let run = cmd.run_async().await;

    run.expect_code(3);
    assert_secret_absent(&wd, &run);
}

/// A proxy set in the environment for the API root carries every call. The simulator stands
/// in for the proxy (it answers an absolute-form request by its path); the API root named on
/// the command line is a loopback port where nothing listens, so a call that went straight
/// there would be refused.
#[tokio::test]
async fn a_proxy_in_the_environment_carries_every_call() {
    let sim = default_simulator().await;
    let wd = Workdir::new();
    let customers = Customer::many(3);
    wd.create_customers("in.csv", &customers);
    let closed = crate::common::fake::closed_url();

    let mut cmd = wd.confirm("in.csv", "r.csv", &closed);
    cmd.env("HTTP_PROXY", &sim.base_url())
        .env_remove("NO_PROXY");
    let run = cmd.run_async().await;

    run.expect_code(0);
    let results = Results::read(&wd.path("r.csv"), &run);
    assert_eq!(results.counts(), counts(&[("confirmed", 3)]), "{run}");
    assert_eq!(sim.stats().agreements_created, 3, "{run}");
    assert_eq!(sim.stats().template_gets, 1, "{run}");

    // Without the proxy, the same run cannot connect and sends nothing.
    let mut cmd = wd.confirm("in.csv", "r2.csv", &closed);
    cmd.env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .arg("--max-attempts")
        .arg("1");
    let run = cmd.run_async().await;
    assert_ne!(run.status.code(), Some(0), "{run}");
    assert!(run.stderr.contains("could not connect"), "{run}");
    assert_eq!(sim.stats().agreements_created, 3, "{run}");
}
