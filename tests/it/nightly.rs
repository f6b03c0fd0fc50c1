//! The nightly reconciliation without an input file, through the real binary: every customer
//! of the partner listed across pages (next links with and without `/v1`), `status
//! --all-customers` in every state, the stale loop closed end to end, and two scheduled runs
//! in a row against an authority that rotates refresh tokens and refuses old ones.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use crate::common::fake::{self, FakeServer};
use crate::common::{Results, Workdir, start_simulator};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use mca_attest::simulator::{
    AgreementSource, CustomerProfile, MCA_TEMPLATE_ID, NextLinkForm, SimulatorConfig,
    StoredAgreement, TokenEndpointConfig,
};
use secrecy::SecretString;
use uuid::Uuid;

fn tenant(n: u32) -> Uuid {
    Uuid::parse_str(&format!("{n:08x}-7b9a-4c1e-9d2b-3a5c7e9f1b2d")).expect("a GUID")
}

fn on_record(first: &str, email: &str, date: &str) -> StoredAgreement {
    StoredAgreement {
        first_name: first.into(),
        last_name: "Carr".into(),
        email: email.into(),
        phone_number: None,
        template_id: MCA_TEMPLATE_ID.into(),
        date_agreed: date
            .parse::<DateTime<Utc>>()
            .unwrap_or_else(|e| panic!("{date}: {e}")),
        agreement_type: "MicrosoftCustomerAgreement".into(),
        source: AgreementSource::Existing,
        date_without_z: false,
    }
}

fn profile(n: u32) -> CustomerProfile {
    CustomerProfile {
        tenant_id: tenant(n),
        company_name: Some(format!("Contoso {n}, \"Ltd\" — Société Générale")),
        domain: Some(format!("c{n}.onmicrosoft.com")),
        relationship_to_partner: Some("reseller".into()),
    }
}

fn csv_rows(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .expect("a header")
        .iter()
        .map(str::to_string)
        .collect();
    reader
        .records()
        .map(|r| {
            header
                .iter()
                .cloned()
                .zip(r.expect("a record").iter().map(str::to_string))
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_lists_every_customer_across_pages_and_both_link_forms() {
    let sim = start_simulator(SimulatorConfig {
        customers: (1..=1234).map(profile).collect(),
        customers_next_link: NextLinkForm::Alternate,
        customers_page_size_max: 100,
        ..Default::default()
    })
    .await;
    let wd = Workdir::new();
    let mut cmd = wd.command([
        "customers",
        "-o",
        "customers.csv",
        "--base-url",
        &sim.base_url(),
        "--rate",
        "1000/s",
    ]);
    cmd.env("PARTNER_CENTER_ACCESS_TOKEN", crate::common::TEST_TOKEN);
    let run = cmd.run_async().await;
    run.expect_code(0);
    let text = wd.read("customers.csv");
    assert!(text.starts_with("customer_tenant_id,company_name,domain,relationship_to_partner\n"));
    let rows = csv_rows(&text);
    assert_eq!(rows.len(), 1234, "{run}");
    let tenants: HashSet<&str> = rows
        .iter()
        .map(|r| r["customer_tenant_id"].as_str())
        .collect();
    assert_eq!(tenants.len(), 1234, "each customer once{run}");
    let seventh = rows
        .iter()
        .find(|r| r["customer_tenant_id"] == tenant(7).to_string())
        .expect("customer 7");
    assert_eq!(
        seventh["company_name"],
        "Contoso 7, \"Ltd\" — Société Générale"
    );
    assert_eq!(seventh["domain"], "c7.onmicrosoft.com");
    assert!(
        sim.stats().customer_list_gets >= 13,
        "pages of at most 100: {:?}",
        sim.stats()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_all_customers_checks_every_customer_in_every_state() {
    let [attested, stale, stale_direct, direct, missing] = [1, 2, 3, 4, 5].map(tenant);
    let sim = start_simulator(SimulatorConfig {
        customers: (1..=5).map(profile).collect(),
        customers_page_size_max: 2,
        existing: vec![
            (
                attested,
                on_record("Ann", "ann@contoso.com", "2024-02-03T00:00:00Z"),
            ),
            (
                stale,
                on_record("Bob", "bob@contoso.com", "2021-02-03T00:00:00Z"),
            ),
            (
                stale_direct,
                on_record("Cy", "cy@contoso.com", "2021-02-03T00:00:00Z"),
            ),
        ],
        direct_signed: HashSet::from([stale_direct, direct]),
        ..Default::default()
    })
    .await;
    let wd = Workdir::new();
    let mut cmd = wd.command([
        "status",
        "--all-customers",
        "--emit-confirm-input",
        "todo.csv",
        "--base-url",
        &sim.base_url(),
        "--rate",
        "1000/s",
    ]);
    cmd.env("PARTNER_CENTER_ACCESS_TOKEN", crate::common::TEST_TOKEN);
    let run = cmd.run_async().await;
    run.expect_code(1);
    let report = csv_rows(&wd.read("all-customers.status.csv"));
    let state: BTreeMap<String, (String, String)> = report
        .iter()
        .map(|r| {
            (
                r["customer_tenant_id"].clone(),
                (r["state"].clone(), r["company_name"].clone()),
            )
        })
        .collect();
    let expect = |t: Uuid, s: &str| {
        assert_eq!(
            state.get(&t.to_string()).map(|(s, _)| s.as_str()),
            Some(s),
            "{t}{run}"
        );
    };
    expect(attested, "attested");
    expect(stale, "stale");
    expect(stale_direct, "direct_signed");
    expect(direct, "direct_signed");
    expect(missing, "missing");
    assert_eq!(state.len(), 5, "{run}");
    assert!(state.values().all(|(_, c)| c.starts_with("Contoso")));
    let todo = csv_rows(&wd.read("todo.csv"));
    let todo: BTreeMap<&str, &str> = todo
        .iter()
        .map(|r| (r["customer_tenant_id"].as_str(), r["state"].as_str()))
        .collect();
    assert_eq!(todo.len(), 2, "{run}");
    assert_eq!(todo.get(stale.to_string().as_str()), Some(&"stale"));
    assert_eq!(todo.get(missing.to_string().as_str()), Some(&"missing"));
    run.expect_stderr_contains("no signer columns");
    assert!(wd.exists("all-customers.status.csv.manifest.json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stale_loop_closes_end_to_end() {
    let stale = tenant(42);
    let sim = start_simulator(SimulatorConfig {
        existing: vec![(
            stale,
            on_record("Bob", "bob@contoso.com", "2021-02-03T00:00:00Z"),
        )],
        ..Default::default()
    })
    .await;
    let wd = Workdir::new();
    let base = sim.base_url();
    let header = crate::common::INPUT_HEADER;
    wd.create(
        "in.csv",
        format!("{header}\n{stale},Bob,Carr,bob@contoso.com,,2021-02-03\n"),
    );
    let run_with_token = |args: Vec<&str>| {
        let mut cmd = wd.command(args);
        cmd.env("PARTNER_CENTER_ACCESS_TOKEN", crate::common::TEST_TOKEN);
        cmd
    };
    let status = run_with_token(vec![
        "status",
        "in.csv",
        "-o",
        "s1.csv",
        "--emit-confirm-input",
        "todo.csv",
        "--base-url",
        &base,
    ])
    .run_async()
    .await;
    status
        .expect_code(1)
        .expect_stderr_contains("stale one(s) need a new acceptance");

    // The same signer again: Partner Center says "already exists", and the record is stale.
    let same = run_with_token(vec![
        "confirm",
        "todo.csv",
        "-o",
        "r1.csv",
        "--base-url",
        &base,
    ])
    .run_async()
    .await;
    same.expect_code(1);
    let line = Results::read(&wd.path("r1.csv"), &same).rows[0].clone();
    assert_eq!(line.status(), "failed", "{same}");
    assert_eq!(line.get("error_name"), "AgreementOnRecordIsStale");
    assert!(line.get("message").contains("2021-02-03"), "{same}");
    assert!(line.get("message").contains("differs"), "{same}");

    // A new acceptance: a new date and a signer that differs.
    wd.create(
        "renewed.csv",
        format!("{header}\n{stale},Bob,Carr,bob.carr@contoso.com,,2026-11-02\n"),
    );
    run_with_token(vec![
        "confirm",
        "renewed.csv",
        "-o",
        "r2.csv",
        "--base-url",
        &base,
    ])
    .run_async()
    .await
    .expect_code(0);
    run_with_token(vec![
        "status",
        "in.csv",
        "-o",
        "s2.csv",
        "--base-url",
        &base,
    ])
    .run_async()
    .await
    .expect_code(0);
    let report = csv_rows(&wd.read("s2.csv"));
    assert_eq!(report[0]["state"], "attested");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_scheduled_runs_in_a_row_survive_a_rotating_refresh_token() {
    use std::os::unix::fs::PermissionsExt;
    const CLIENT_ID: &str = "0d7f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b";
    const SECRET: &str = "client-sekret-456";
    const FIRST_REFRESH: &str = "refresh-sekret-789";
    let sim = start_simulator(SimulatorConfig {
        customers: (1..=30).map(profile).collect(),
        customers_page_size_max: 10,
        token_endpoint: Some(TokenEndpointConfig {
            client_id: CLIENT_ID.into(),
            client_secret: SecretString::from(SECRET),
            refresh_token: SecretString::from(FIRST_REFRESH),
            token_ttl: Duration::from_secs(2),
            rotate_refresh_token: true,
        }),
        ..Default::default()
    })
    .await;
    let wd = Workdir::new();
    let token_file = wd.create("refresh-token", format!("{FIRST_REFRESH}\n"));
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o640))
        .expect("set the mode");
    let base = sim.base_url();
    for night in ["night1.csv", "night2.csv"] {
        let mut cmd = wd.command([
            "status",
            "--all-customers",
            "-o",
            night,
            "--base-url",
            &base,
            "--rate",
            "10/s",
        ]);
        cmd.env(
            "PARTNER_CENTER_TENANT_ID",
            "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
        )
        .env("PARTNER_CENTER_CLIENT_ID", CLIENT_ID)
        .env("PARTNER_CENTER_CLIENT_SECRET", SECRET)
        .env(
            "PARTNER_CENTER_REFRESH_TOKEN_FILE",
            &token_file.to_string_lossy(),
        )
        .env("PARTNER_CENTER_AUTHORITY", &base);
        let run = cmd.run_async().await;
        run.expect_code(1).expect_stderr_contains("saved to");
        assert_eq!(csv_rows(&wd.read(night)).len(), 30, "{run}");
        let saved = std::fs::read_to_string(&token_file).expect("the token file");
        assert_ne!(
            saved.trim(),
            FIRST_REFRESH,
            "the rotated token is stored{run}"
        );
        let mode = std::fs::metadata(&token_file)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o640, "same permissions{run}");
        for (path, bytes) in wd.files() {
            if path == token_file {
                continue;
            }
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains(saved.trim()) && !text.contains(SECRET),
                "a secret in {}{run}",
                path.display()
            );
        }
        assert!(!run.stderr.contains(saved.trim()), "{run}");
    }
}

/// A Partner Center whose records hold what the simulator never stores: a record of another
/// agreement type, and a date nobody can read.
async fn odd_records_service() -> FakeServer {
    FakeServer::builder()
        .get("/v1/customers/{tenant}/agreements", |req| {
            let tenant = req.path.trim_start_matches("/v1/customers/");
            let items = if tenant.starts_with("00000001") {
                // Only a Microsoft Cloud Agreement record: no MCA on record.
                r#"[{"primaryContact":{"firstName":"A","lastName":"B","email":"a@b.com"},"templateId":"998b88de-aa99-4388-a42c-1b3517d49490","dateAgreed":"2024-06-14T00:00:00Z","type":"MicrosoftCloudAgreement"}]"#
            } else {
                // An old MCA record, and a newer one whose date cannot be read.
                r#"[{"primaryContact":{"firstName":"A","lastName":"B","email":"a@b.com"},"templateId":"117a77b0-9360-443b-8795-c6dedc750cf9","dateAgreed":"2020-01-01T00:00:00Z","type":"MicrosoftCustomerAgreement"},{"primaryContact":{"firstName":"C","lastName":"D","email":"c@d.com"},"templateId":"117a77b0-9360-443b-8795-c6dedc750cf9","dateAgreed":"last Tuesday","type":"MicrosoftCustomerAgreement"}]"#
            };
            fake::json_text(
                StatusCode::OK,
                format!(r#"{{"totalCount":1,"items":{items}}}"#),
            )
        })
        .get(
            "/v1/customers/{tenant}/directSignedMicrosoftCustomerAgreementStatus",
            |_| fake::json_text(StatusCode::OK, r#"{"isSigned":false}"#),
        )
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_mca_records_count_and_an_unreadable_date_is_an_error() {
    let server = odd_records_service().await;
    let base = server.base_url();
    let wd = Workdir::new();
    let [cloud_only, unreadable] = [1, 2].map(tenant);
    wd.create(
        "in.csv",
        format!("customer_tenant_id\n{cloud_only}\n{unreadable}\n"),
    );
    let mut cmd = wd.command(["status", "in.csv", "-o", "s.csv", "--base-url", base]);
    cmd.env("PARTNER_CENTER_ACCESS_TOKEN", crate::common::TEST_TOKEN);
    let run = cmd.run_async().await;
    run.expect_code(1);
    let report = csv_rows(&wd.read("s.csv"));
    let by_tenant: BTreeMap<&str, &BTreeMap<String, String>> = report
        .iter()
        .map(|r| (r["customer_tenant_id"].as_str(), r))
        .collect();
    let cloud = by_tenant[cloud_only.to_string().as_str()];
    assert_eq!(cloud["state"], "missing", "{run}");
    let odd = by_tenant[unreadable.to_string().as_str()];
    assert_eq!(odd["state"], "error", "{run}");
    assert!(odd["message"].contains("last Tuesday"), "{run}");
}
