//! `mca-attest status` (the read-only reconciliation report) and the template metadata of
//! `mca-attest template`: the real binary against the real simulator on a free loopback port.
//! States and their columns, the newest of several agreements, zone-less dates read as UTC,
//! the refresh cutoff, exit codes, `--emit-confirm-input` and the round trip it enables,
//! read-only traffic, and `--resume`.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};

use crate::common::{Customer, ResultRow, Results, Run, Workdir, start_simulator};
use chrono::{DateTime, Utc};
use mca_attest::simulator::{
    AgreementSource, MCA_CLOUD_TEMPLATE_ID, MCA_TEMPLATE_ID, Simulator, SimulatorConfig,
    StoredAgreement,
};
use serde_json::Value;
use uuid::Uuid;

/// The report header of the contract, in order.
const STATUS_HEADER: &str = "row,customer_tenant_id,state,agreements_on_record,latest_date_agreed,latest_first_name,latest_last_name,latest_email,latest_phone_number,template_id,signer_matches_input,direct_signed,http_status,error_code,message,checked_at,company_name,domain";

/// A time zone far west of Greenwich (POSIX form, no tz database needed): a zone-less date
/// read as local time instead of UTC would land 12 hours later.
const FAR_WEST_TZ: &str = "<-12>+12";

/// An MCA agreement on record for `tenant`, signed by `first_name` on `date_agreed` (RFC 3339),
/// rendered with a `Z` like a recent record.
fn on_record(tenant: Uuid, first_name: &str, date_agreed: &str) -> (Uuid, StoredAgreement) {
    (
        tenant,
        StoredAgreement {
            first_name: first_name.into(),
            last_name: "Carr".into(),
            email: format!("{}@contoso.com", first_name.to_lowercase()),
            phone_number: Some("555 0100".into()),
            template_id: MCA_TEMPLATE_ID.into(),
            date_agreed: date_agreed
                .parse::<DateTime<Utc>>()
                .unwrap_or_else(|e| panic!("{date_agreed} is not RFC 3339: {e}")),
            agreement_type: "MicrosoftCustomerAgreement".into(),
            source: AgreementSource::Existing,
            date_without_z: false,
        },
    )
}

/// Like [`on_record`], rendered without the `Z` as the service does for older records.
fn zoneless_on_record(
    tenant: Uuid,
    first_name: &str,
    date_agreed: &str,
) -> (Uuid, StoredAgreement) {
    let (tenant, mut agreement) = on_record(tenant, first_name, date_agreed);
    agreement.date_without_z = true;
    (tenant, agreement)
}

fn tenants<const N: usize>() -> [Uuid; N] {
    std::array::from_fn(|_| Uuid::new_v4())
}

/// An input with only the tenant id column.
fn tenant_only_input(wd: &Workdir, name: &str, tenants: &[&str]) {
    let mut text = String::from("customer_tenant_id\n");
    for t in tenants {
        text.push_str(t);
        text.push('\n');
    }
    wd.create(name, text);
}

/// `status INPUT -o REPORT` against `base_url` with a test token, fast, no progress bar.
fn status(
    wd: &Workdir,
    input: &str,
    report: &str,
    base_url: &str,
    extra: &[&str],
) -> crate::common::Cmd {
    let mut cmd = wd.command([
        "status",
        input,
        "-o",
        report,
        "--base-url",
        base_url,
        "--rate",
        "200/s",
        "--no-progress",
    ]);
    cmd.args(extra);
    cmd.env("PARTNER_CENTER_ACCESS_TOKEN", crate::common::TEST_TOKEN);
    cmd
}

/// Reads a report, checking its header against the contract.
fn report(wd: &Workdir, name: &str, run: &Run) -> Results {
    let report = Results::read(&wd.path(name), run);
    assert_eq!(report.header_line(), STATUS_HEADER, "{run}");
    report
}

fn state(line: &ResultRow) -> &str {
    line.get("state")
}

/// State per tenant.
fn states(report: &Results) -> BTreeMap<String, String> {
    report
        .rows
        .iter()
        .map(|r| (r.tenant().to_string(), state(r).to_string()))
        .collect()
}

fn expected_states(pairs: &[(&Uuid, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(t, s)| (t.to_string(), (*s).to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_customer_gets_the_state_partner_center_has_on_record() {
    let [attested, stale, direct, missing, unknown, cloud_only] = tenants();
    let (_, mut cloud) = on_record(cloud_only, "Cleo", "2024-03-01T00:00:00Z");
    cloud.template_id = MCA_CLOUD_TEMPLATE_ID.into();
    cloud.agreement_type = "MicrosoftCloudAgreement".into();
    let sim = start_simulator(SimulatorConfig {
        existing: vec![
            on_record(attested, "Ann", "2024-02-03T10:11:12Z"),
            on_record(stale, "Bob", "2021-05-05T00:00:00Z"),
            (cloud_only, cloud),
        ],
        direct_signed: HashSet::from([direct]),
        unknown_tenants: HashSet::from([unknown]),
        ..Default::default()
    })
    .await;
    let wd = Workdir::new();
    let ids = [attested, stale, direct, missing, unknown, cloud_only].map(|t| t.to_string());
    let mut input: Vec<&str> = ids.iter().map(String::as_str).collect();
    input.push("not-a-guid");
    tenant_only_input(&wd, "in.csv", &input);

    let run = status(&wd, "in.csv", "report.csv", &sim.base_url(), &[])
        .run_async()
        .await;

    run.expect_code(1);
    let report = report(&wd, "report.csv", &run);
    assert_eq!(report.row_numbers(), (1..=7).collect::<Vec<u64>>(), "{run}");
    let by_tenant = |t: &Uuid| report.by_tenant(&t.to_string());

    let a = by_tenant(&attested);
    assert_eq!(state(a), "attested", "{a:?}{run}");
    assert_eq!(a.get("agreements_on_record"), "1", "{a:?}{run}");
    assert_eq!(
        a.get("latest_date_agreed"),
        "2024-02-03T10:11:12Z",
        "{a:?}{run}"
    );
    assert_eq!(
        [
            a.get("latest_first_name"),
            a.get("latest_last_name"),
            a.get("latest_email"),
            a.get("latest_phone_number"),
            a.get("template_id"),
            a.get("http_status"),
        ],
        [
            "Ann",
            "Carr",
            "ann@contoso.com",
            "555 0100",
            MCA_TEMPLATE_ID,
            "200"
        ],
        "{a:?}{run}"
    );

    let s = by_tenant(&stale);
    assert_eq!(state(s), "stale", "{s:?}{run}");
    assert_eq!(
        s.get("latest_date_agreed"),
        "2021-05-05T00:00:00Z",
        "{s:?}{run}"
    );
    assert!(
        !s.get("message").is_empty(),
        "a stale customer is explained{run}"
    );

    let d = by_tenant(&direct);
    assert_eq!(
        [
            state(d),
            d.get("agreements_on_record"),
            d.get("direct_signed")
        ],
        ["direct_signed", "0", "true"],
        "{d:?}{run}"
    );

    for t in [missing, cloud_only] {
        let m = by_tenant(&t);
        assert_eq!(
            [
                state(m),
                m.get("agreements_on_record"),
                m.get("direct_signed")
            ],
            ["missing", "0", "false"],
            "a Microsoft Cloud Agreement is no MCA: {m:?}{run}"
        );
        assert_eq!(m.get("latest_date_agreed"), "", "{m:?}{run}");
    }

    let u = by_tenant(&unknown);
    assert_eq!(
        [state(u), u.get("http_status"), u.get("error_code")],
        ["error", "404", "60003"],
        "{u:?}{run}"
    );

    let bad = report.by_row(7);
    assert_eq!(bad.tenant(), "not-a-guid", "{bad:?}{run}");
    assert_eq!(state(bad), "error", "{bad:?}{run}");
    assert!(
        bad.get("message").contains("customer_tenant_id"),
        "the message names the field: {bad:?}{run}"
    );

    for line in &report.rows {
        let checked_at = line.get("checked_at");
        assert!(
            checked_at.ends_with('Z') && checked_at.parse::<DateTime<Utc>>().is_ok(),
            "checked_at is RFC 3339 UTC: {line:?}{run}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_id_column_alone_is_enough_and_leaves_signer_match_blank() {
    let [attested, direct] = tenants();
    let sim = start_simulator(SimulatorConfig {
        existing: vec![on_record(attested, "Ann", "2024-02-03T00:00:00Z")],
        direct_signed: HashSet::from([direct]),
        ..Default::default()
    })
    .await;
    let wd = Workdir::new();
    tenant_only_input(&wd, "in.csv", &[&attested.to_string(), &direct.to_string()]);

    let run = status(&wd, "in.csv", "report.csv", &sim.base_url(), &[])
        .run_async()
        .await;

    run.expect_code(0);
    let report = report(&wd, "report.csv", &run);
    assert_eq!(
        states(&report),
        expected_states(&[(&attested, "attested"), (&direct, "direct_signed")]),
        "{run}"
    );
    for line in &report.rows {
        assert_eq!(
            line.get("signer_matches_input"),
            "",
            "no signer columns, nothing compared: {line:?}{run}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signer_columns_are_compared_with_the_signer_on_record() {
    let [same, other, missing] = tenants();
    let sim = start_simulator(SimulatorConfig {
        existing: vec![
            on_record(same, "Ann", "2024-02-03T00:00:00Z"),
            on_record(other, "Bob", "2024-02-03T00:00:00Z"),
        ],
        ..Default::default()
    })
    .await;
    let wd = Workdir::new();
    wd.create_customers(
        "in.csv",
        &[
            // Same signer in other letter case.
            Customer::new(1)
                .tenant(&same.to_string())
                .first_name("ANN")
                .last_name("carr")
                .email("Ann@Contoso.com"),
            Customer::new(2)
                .tenant(&other.to_string())
                .first_name("Someone")
                .last_name("Else")
                .email("someone@contoso.com"),
            Customer::new(3).tenant(&missing.to_string()),
        ],
    );

    let run = status(&wd, "in.csv", "report.csv", &sim.base_url(), &[])
        .run_async()
        .await;

    run.expect_code(1);
    let report = report(&wd, "report.csv", &run);
    let matches: BTreeMap<String, String> = report
        .rows
        .iter()
        .map(|r| {
            let m = r.get("signer_matches_input").to_string();
            (r.tenant().to_string(), m)
        })
        .collect();
    assert_eq!(
        matches,
        expected_states(&[(&same, "true"), (&other, "false"), (&missing, "false")]),
        "{run}"
    );
    assert_eq!(
        states(&report),
        expected_states(&[
            (&same, "attested"),
            (&other, "attested"),
            (&missing, "missing")
        ]),
        "a different signer does not change the state{run}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newest_of_several_agreements_decides_the_state() {
    let [renewed, lapsed] = tenants();
    let sim = start_simulator(SimulatorConfig {
        existing: vec![
            // Newest first for one customer, last for the other: order on record must not
            // matter.
            on_record(renewed, "Newer", "2024-05-06T07:08:09Z"),
            on_record(renewed, "Older", "2020-01-01T00:00:00Z"),
            on_record(renewed, "Middle", "2022-01-01T00:00:00Z"),
            on_record(lapsed, "Early", "2019-08-26T00:00:00Z"),
            on_record(lapsed, "Latest", "2023-03-01T00:00:00Z"),
        ],
        ..Default::default()
    })
    .await;
    let wd = Workdir::new();
    tenant_only_input(&wd, "in.csv", &[&renewed.to_string(), &lapsed.to_string()]);

    let run = status(&wd, "in.csv", "report.csv", &sim.base_url(), &[])
        .run_async()
        .await;

    run.expect_code(1);
    let report = report(&wd, "report.csv", &run);
    let r = report.by_tenant(&renewed.to_string());
    assert_eq!(
        [
            state(r),
            r.get("agreements_on_record"),
            r.get("latest_date_agreed"),
            r.get("latest_first_name"),
            r.get("latest_email"),
        ],
        [
            "attested",
            "3",
            "2024-05-06T07:08:09Z",
            "Newer",
            "newer@contoso.com"
        ],
        "{r:?}{run}"
    );
    let l = report.by_tenant(&lapsed.to_string());
    assert_eq!(
        [
            state(l),
            l.get("agreements_on_record"),
            l.get("latest_date_agreed"),
            l.get("latest_first_name"),
        ],
        ["stale", "2", "2023-03-01T00:00:00Z", "Latest"],
        "{l:?}{run}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dates_on_record_without_a_zone_are_read_as_utc() {
    let [recent, before_cutoff] = tenants();
    let sim = start_simulator(SimulatorConfig {
        existing: vec![
            zoneless_on_record(recent, "Ann", "2024-02-03T23:30:00Z"),
            // Read as local time 12 hours west, this would fall after the cutoff.
            zoneless_on_record(before_cutoff, "Bob", "2023-03-31T23:30:00Z"),
        ],
        ..Default::default()
    })
    .await;
    let raw = raw_agreements(&sim, recent).await;
    assert_eq!(
        raw["items"][0]["dateAgreed"], "2024-02-03T23:30:00",
        "the simulator answers without a zone, as the service does for old records: {raw}"
    );
    let wd = Workdir::new();
    tenant_only_input(
        &wd,
        "in.csv",
        &[&recent.to_string(), &before_cutoff.to_string()],
    );

    let mut cmd = status(&wd, "in.csv", "report.csv", &sim.base_url(), &[]);
    cmd.env("TZ", FAR_WEST_TZ);
    let run = cmd.run_async().await;

    run.expect_code(1);
    let report = report(&wd, "report.csv", &run);
    let r = report.by_tenant(&recent.to_string());
    assert_eq!(
        [state(r), r.get("latest_date_agreed")],
        ["attested", "2024-02-03T23:30:00Z"],
        "{r:?}{run}"
    );
    let b = report.by_tenant(&before_cutoff.to_string());
    assert_eq!(
        [state(b), b.get("latest_date_agreed")],
        ["stale", "2023-03-31T23:30:00Z"],
        "{b:?}{run}"
    );
}

/// The simulator's raw answer to the agreements-on-record GET for `tenant`.
async fn raw_agreements(sim: &Simulator, tenant: Uuid) -> Value {
    let url = format!(
        "{}/v1/customers/{tenant}/agreements?agreementType=MicrosoftCustomerAgreement",
        sim.base_url()
    );
    let response = crate::common::http()
        .build()
        .expect("client")
        .get(&url)
        .bearer_auth(crate::common::TEST_TOKEN)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert!(response.status().is_success(), "GET {url}: {response:?}");
    response
        .json()
        .await
        .unwrap_or_else(|e| panic!("GET {url} is not JSON: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agreement_dated_exactly_at_the_cutoff_is_attested_and_one_second_earlier_is_stale() {
    let [at_cutoff, just_before] = tenants();
    let sim = start_simulator(SimulatorConfig {
        existing: vec![
            on_record(at_cutoff, "Ann", "2023-04-01T00:00:00Z"),
            on_record(just_before, "Bob", "2023-03-31T23:59:59Z"),
        ],
        ..Default::default()
    })
    .await;
    let wd = Workdir::new();
    tenant_only_input(
        &wd,
        "in.csv",
        &[&at_cutoff.to_string(), &just_before.to_string()],
    );

    let mut cmd = status(&wd, "in.csv", "report.csv", &sim.base_url(), &[]);
    cmd.env("TZ", FAR_WEST_TZ);
    let run = cmd.run_async().await;

    run.expect_code(1);
    assert_eq!(
        states(&report(&wd, "report.csv", &run)),
        expected_states(&[(&at_cutoff, "attested"), (&just_before, "stale")]),
        "the default cutoff is 2023-04-01T00:00:00Z{run}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_cutoff_moves_the_line_between_attested_and_stale() {
    let [older, newer] = tenants();
    let sim = start_simulator(SimulatorConfig {
        existing: vec![
            on_record(older, "Ann", "2022-06-01T00:00:00Z"),
            on_record(newer, "Bob", "2024-06-01T00:00:00Z"),
        ],
        ..Default::default()
    })
    .await;
    let wd = Workdir::new();
    tenant_only_input(&wd, "in.csv", &[&older.to_string(), &newer.to_string()]);

    for (cutoff, code, older_state, newer_state) in [
        (None, 1, "stale", "attested"),
        (Some("2022-01-01"), 0, "attested", "attested"),
        (Some("2024-07-01"), 1, "stale", "stale"),
    ] {
        let extra: Vec<&str> = cutoff
            .iter()
            .flat_map(|c| ["--refresh-cutoff", c])
            .collect();
        let run = status(&wd, "in.csv", "report.csv", &sim.base_url(), &extra)
            .run_async()
            .await;

        run.expect_code(code);
        assert_eq!(
            states(&report(&wd, "report.csv", &run)),
            expected_states(&[(&older, older_state), (&newer, newer_state)]),
            "cutoff {cutoff:?}{run}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_code_is_0_only_when_every_customer_is_attested_or_direct_signed() {
    let [attested, direct, stale, missing, unknown] = tenants();
    let sim = start_simulator(SimulatorConfig {
        existing: vec![
            on_record(attested, "Ann", "2024-02-03T00:00:00Z"),
            on_record(stale, "Bob", "2021-02-03T00:00:00Z"),
        ],
        direct_signed: HashSet::from([direct]),
        unknown_tenants: HashSet::from([unknown]),
        ..Default::default()
    })
    .await;
    let wd = Workdir::new();
    let (attested, direct) = (attested.to_string(), direct.to_string());

    for (other, state, code) in [
        (direct.clone(), "direct_signed", 0),
        (stale.to_string(), "stale", 1),
        (missing.to_string(), "missing", 1),
        (unknown.to_string(), "error", 1),
        ("{not-a-guid}".to_string(), "error", 1),
    ] {
        tenant_only_input(&wd, "in.csv", &[&attested, &other]);

        let run = status(&wd, "in.csv", "report.csv", &sim.base_url(), &[])
            .run_async()
            .await;

        run.expect_code(code);
        let report = report(&wd, "report.csv", &run);
        assert_eq!(
            [report.by_row(1).get("state"), report.by_row(2).get("state")],
            ["attested", state],
            "{run}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emit_confirm_input_holds_the_input_rows_of_missing_and_stale_customers_only() {
    let [attested, stale, direct, missing, unknown] = tenants();
    let sim = start_simulator(SimulatorConfig {
        existing: vec![
            on_record(attested, "Ann", "2024-02-03T00:00:00Z"),
            on_record(stale, "Bob", "2021-02-03T00:00:00Z"),
        ],
        direct_signed: HashSet::from([direct]),
        unknown_tenants: HashSet::from([unknown]),
        ..Default::default()
    })
    .await;
    let wd = Workdir::new();
    let header =
        "account,customer_tenant_id,first_name,last_name,email,phone_number,date_agreed,notes";
    let line = |account: &str, tenant: &Uuid, notes: &str| {
        format!("{account},{tenant},Tania,Carr,tania@contoso.com,,2024-06-14,{notes}")
    };
    let input = [
        header.to_string(),
        line("A-1", &attested, "fine"),
        line("A-2", &stale, "\"renew, please\""),
        line("A-3", &direct, "self-signed"),
        line("A-4", &missing, "\"said \"\"yes\"\" by phone\""),
        line("A-5", &unknown, "typo?"),
        "A-6,not-a-guid,Tania,Carr,tania@contoso.com,,2024-06-14,broken".to_string(),
    ]
    .join("\n")
        + "\n";
    wd.create("in.csv", &input);

    let run = status(
        &wd,
        "in.csv",
        "report.csv",
        &sim.base_url(),
        &["--emit-confirm-input", "todo.csv"],
    )
    .run_async()
    .await;

    run.expect_code(1);
    let (mut input_header, input_rows) = read_records(&wd.path("in.csv"), &run);
    let (emitted_header, emitted) = read_records(&wd.path("todo.csv"), &run);
    input_header.extend(["state".to_string(), "latest_date_agreed".to_string()]);
    assert_eq!(
        emitted_header, input_header,
        "the input's header first, then state and latest_date_agreed{run}"
    );
    let expected: BTreeSet<Vec<String>> = input_rows
        .into_iter()
        .filter_map(|mut r| {
            let extra: [&str; 2] = match r[0].as_str() {
                "A-2" => ["stale", "2021-02-03T00:00:00Z"],
                "A-4" => ["missing", ""],
                _ => return None,
            };
            r.extend(extra.map(str::to_string));
            Some(r)
        })
        .collect();
    let emitted: BTreeSet<Vec<String>> = emitted.into_iter().collect();
    assert_eq!(
        emitted, expected,
        "the stale and missing customers' own rows, every column{run}"
    );
}

/// A CSV file's header and records, as cells.
fn read_records(path: &Path, run: &Run) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::Reader::from_path(path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}{run}", path.display()));
    let header = reader
        .headers()
        .unwrap_or_else(|e| panic!("{} has no header: {e}{run}", path.display()))
        .iter()
        .map(str::to_string)
        .collect();
    let records = reader
        .records()
        .map(|r| {
            r.unwrap_or_else(|e| panic!("{} is not valid CSV: {e}{run}", path.display()))
                .iter()
                .map(str::to_string)
                .collect()
        })
        .collect();
    (header, records)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_sends_only_read_calls() {
    let [attested, stale, direct, missing, unknown] = tenants();
    let sim = start_simulator(SimulatorConfig {
        existing: vec![
            on_record(attested, "Ann", "2024-02-03T00:00:00Z"),
            on_record(stale, "Bob", "2021-02-03T00:00:00Z"),
        ],
        direct_signed: HashSet::from([direct]),
        unknown_tenants: HashSet::from([unknown]),
        ..Default::default()
    })
    .await;
    let wd = Workdir::new();
    let ids = [attested, stale, direct, missing, unknown].map(|t| t.to_string());
    let mut input: Vec<&str> = ids.iter().map(String::as_str).collect();
    input.push("not-a-guid");
    tenant_only_input(&wd, "in.csv", &input);

    let run = status(&wd, "in.csv", "report.csv", &sim.base_url(), &[])
        .run_async()
        .await;

    run.expect_code(1);
    let stats = sim.stats();
    assert_eq!(stats.agreement_posts, 0, "no POST: {stats:?}{run}");
    assert!(sim.requests().is_empty(), "no POST recorded{run}");
    assert_eq!(
        stats.agreement_gets, 5,
        "one agreements GET per valid customer: {stats:?}{run}"
    );
    assert_eq!(
        stats.direct_signed_gets, 3,
        "direct-signed status asked only for the customers with nothing current on record (stale ones too: a direct acceptance wins over a stale confirmation): {stats:?}{run}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_checks_only_the_customers_not_yet_in_the_report() {
    let all: [Uuid; 6] = tenants();
    let sim = start_simulator(SimulatorConfig {
        existing: all[..3]
            .iter()
            .map(|t| on_record(*t, "Ann", "2024-02-03T00:00:00Z"))
            .collect(),
        ..Default::default()
    })
    .await;
    let wd = Workdir::new();
    let ids = all.map(|t| t.to_string());
    tenant_only_input(
        &wd,
        "in.csv",
        &ids.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let first = status(&wd, "in.csv", "report.csv", &sim.base_url(), &[])
        .run_async()
        .await;
    first.expect_code(1);
    // Keep the header and two checked customers, as a run stopped early would have left.
    let full = wd.read("report.csv");
    let kept: String = full.split_inclusive('\n').take(3).collect();
    wd.create("report.csv", &kept);
    let already = Results::parse(&kept).expect("the kept lines are CSV");
    let before = sim.stats();

    let run = status(&wd, "in.csv", "report.csv", &sim.base_url(), &["--resume"])
        .run_async()
        .await;

    run.expect_code(1);
    let stats = sim.stats();
    assert_eq!(
        stats.agreement_gets - before.agreement_gets,
        4,
        "only the four customers not in the report are asked for: {stats:?}{run}"
    );
    let text = wd.read("report.csv");
    assert!(
        text.starts_with(&kept),
        "the lines already there are kept as they were\n{text}{run}"
    );
    let report = report(&wd, "report.csv", &run);
    assert_eq!(report.row_numbers(), (1..=6).collect::<Vec<u64>>(), "{run}");
    let appended: BTreeSet<&str> = report.rows[2..].iter().map(ResultRow::tenant).collect();
    let checked: BTreeSet<&str> = already.rows.iter().map(ResultRow::tenant).collect();
    assert!(
        appended.is_disjoint(&checked),
        "customers already checked are not checked again{run}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumed_run_emits_every_customer_the_report_shows_as_missing_or_stale() {
    let [stale, missing_1, missing_2, missing_3] = tenants();
    let sim = start_simulator(SimulatorConfig {
        existing: vec![on_record(stale, "Bob", "2021-02-03T00:00:00Z")],
        ..Default::default()
    })
    .await;
    let wd = Workdir::new();
    let ids = [stale, missing_1, missing_2, missing_3].map(|t| t.to_string());
    tenant_only_input(
        &wd,
        "in.csv",
        &ids.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let emit = ["--emit-confirm-input", "todo.csv"];
    let first = status(&wd, "in.csv", "report.csv", &sim.base_url(), &emit)
        .run_async()
        .await;
    first.expect_code(1);
    // Keep the header and two checked customers, as a run stopped early would have left.
    let kept: String = wd
        .read("report.csv")
        .split_inclusive('\n')
        .take(3)
        .collect();
    wd.create("report.csv", &kept);

    let mut args = emit.to_vec();
    args.push("--resume");
    let run = status(&wd, "in.csv", "report.csv", &sim.base_url(), &args)
        .run_async()
        .await;

    run.expect_code(1);
    let report = report(&wd, "report.csv", &run);
    let to_confirm: BTreeSet<String> = report
        .rows
        .iter()
        .filter(|r| matches!(state(r), "missing" | "stale"))
        .map(|r| r.tenant().to_string())
        .collect();
    assert_eq!(to_confirm.len(), 4, "{run}");
    let (_, emitted) = read_records(&wd.path("todo.csv"), &run);
    let emitted: BTreeSet<String> = emitted.into_iter().map(|r| r[0].clone()).collect();
    assert_eq!(
        emitted,
        to_confirm,
        "after --resume the emitted file still covers the customers checked by the earlier \
         run\n{}{run}",
        wd.read("todo.csv")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_run_records_no_customer_it_did_not_finish_checking_as_an_error() {
    // Nothing on record: every customer takes two calls, the agreements GET and the
    // direct-signed status, so a stop can fall between them.
    let sim = start_simulator(SimulatorConfig::default()).await;
    let wd = Workdir::new();
    let ids: Vec<String> = (0..40).map(|_| Uuid::new_v4().to_string()).collect();
    tenant_only_input(
        &wd,
        "in.csv",
        &ids.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let base_url = sim.base_url();
    let mut run = wd.spawn_with_token(
        &[
            "status",
            "in.csv",
            "-o",
            "report.csv",
            "--base-url",
            &base_url,
            "--rate",
            "10/s",
            "--no-progress",
        ],
        "status.stderr",
    );
    // The report is staged: the run writes its partial file until it completes.
    let report_path = wd.path("report.csv.partial");
    crate::common::wait_until(
        std::time::Duration::from_secs(20),
        || std::fs::read_to_string(&report_path).is_ok_and(|t| t.lines().count() >= 2),
        || format!("a first checked customer in the report{}", run.describe()),
    )
    .await;

    run.interrupt();
    let exit = run.wait(std::time::Duration::from_secs(20)).await;

    assert_eq!(exit.code(), Some(130), "{}", run.describe());
    assert!(
        !wd.exists("report.csv"),
        "no report under the final name{}",
        run.describe()
    );
    let report = Results::parse(&wd.read("report.csv.partial")).expect("the report is CSV");
    assert!(
        report.rows.len() < 40,
        "the run was cut short{}",
        run.describe()
    );
    let cut_short: Vec<String> = report
        .rows
        .iter()
        .filter(|r| state(r) != "missing")
        .map(|r| format!("{} {}: {}", r.tenant(), state(r), r.get("message")))
        .collect();
    assert!(
        cut_short.is_empty(),
        "every customer in the report was checked to the end (the others are left for \
         --resume), but these were not:\n{}\n{}",
        cut_short.join("\n"),
        run.describe()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_refuses_to_write_its_report_or_emitted_rows_over_its_input() {
    let [attested, missing] = tenants();
    let sim = start_simulator(SimulatorConfig {
        existing: vec![on_record(attested, "Ann", "2024-02-03T00:00:00Z")],
        ..Default::default()
    })
    .await;
    let wd = Workdir::new();
    tenant_only_input(
        &wd,
        "in.csv",
        &[&attested.to_string(), &missing.to_string()],
    );
    let input = wd.read_bytes("in.csv");

    for (report, extra) in [
        ("in.csv", vec![]),
        ("report.csv", vec!["--emit-confirm-input", "in.csv"]),
    ] {
        let run = status(&wd, "in.csv", report, &sim.base_url(), &extra)
            .run_async()
            .await;

        assert_eq!(
            wd.read_bytes("in.csv"),
            input,
            "the input is left as it was\n{}{run}",
            wd.read("in.csv")
        );
        run.expect_code(2);
        assert_eq!(
            sim.stats().agreement_gets,
            0,
            "nothing is sent before the refusal{run}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_then_confirm_of_the_emitted_file_closes_the_gap() {
    let wd = Workdir::new();
    let [attested, stale_1, stale_2, missing_1, missing_2, direct] = tenants();
    // Records in the simulator's own file come back without a `Z`.
    wd.create(
        "existing.csv",
        format!(
            "customer_tenant_id,first_name,last_name,email,date_agreed\n\
             {attested},Ann,Carr,ann@contoso.com,2024-02-03\n\
             {stale_1},Old,Signer,old1@contoso.com,2021-05-05T10:00:00\n\
             {stale_2},Old,Signer,old2@contoso.com,2023-03-31\n"
        ),
    );
    wd.create("direct.txt", format!("{direct}\n"));
    let sim = SimulatorProcess::start(
        &wd,
        &[
            "--existing",
            "existing.csv",
            "--direct-signed",
            "direct.txt",
        ],
    );
    // Stale customers have a new signer in the input: confirming creates a new agreement.
    let customers: Vec<Customer> = [attested, stale_1, stale_2, missing_1, missing_2, direct]
        .iter()
        .enumerate()
        .map(|(i, t)| {
            Customer::new(i + 1)
                .tenant(&t.to_string())
                .date("2024-06-14")
        })
        .collect();
    wd.create_customers("in.csv", &customers);

    let before = status(
        &wd,
        "in.csv",
        "before.csv",
        &sim.base_url,
        &["--emit-confirm-input", "todo.csv"],
    )
    .run_async()
    .await;
    before.expect_code(1);
    assert_eq!(
        states(&report(&wd, "before.csv", &before)),
        expected_states(&[
            (&attested, "attested"),
            (&stale_1, "stale"),
            (&stale_2, "stale"),
            (&missing_1, "missing"),
            (&missing_2, "missing"),
            (&direct, "direct_signed"),
        ]),
        "{before}"
    );

    let confirm = wd
        .confirm("todo.csv", "confirmed.csv", &sim.base_url)
        .run_async()
        .await;
    confirm.expect_code(0);
    let results = Results::read(&wd.path("confirmed.csv"), &confirm);
    assert_eq!(
        results.counts(),
        crate::common::counts(&[("confirmed", 4)]),
        "{confirm}"
    );

    let after = status(&wd, "in.csv", "after.csv", &sim.base_url, &[])
        .run_async()
        .await;
    after.expect_code(0);
    let after_report = report(&wd, "after.csv", &after);
    assert_eq!(
        states(&after_report),
        expected_states(&[
            (&attested, "attested"),
            (&stale_1, "attested"),
            (&stale_2, "attested"),
            (&missing_1, "attested"),
            (&missing_2, "attested"),
            (&direct, "direct_signed"),
        ]),
        "{after}"
    );
    for t in [stale_1, stale_2] {
        let line = after_report.by_tenant(&t.to_string());
        assert_eq!(
            [
                line.get("agreements_on_record"),
                line.get("latest_date_agreed"),
                line.get("signer_matches_input"),
            ],
            ["2", "2024-06-14T00:00:00Z", "true"],
            "{line:?}{after}"
        );
    }
    let stats = sim.stats().await;
    assert_eq!(
        stats["agreement_posts"], 4,
        "confirm sent one POST per emitted customer and status none: {stats}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_prints_the_mca_template_link_and_version_rank() {
    let sim = start_simulator(SimulatorConfig::default()).await;
    let wd = Workdir::new();

    let mut cmd = wd.command(["template", "--base-url", &sim.base_url()]);
    cmd.env("PARTNER_CENTER_ACCESS_TOKEN", crate::common::TEST_TOKEN);
    let run = cmd.run_async().await;

    run.expect_code(0);
    let json: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON: {e}{run}"));
    assert_eq!(json["templateId"], MCA_TEMPLATE_ID, "{run}");
    assert_eq!(json["agreementType"], "MicrosoftCustomerAgreement", "{run}");
    assert!(
        json["agreementLink"]
            .as_str()
            .is_some_and(|l| l.starts_with("https://")),
        "agreementLink is a link: {json}{run}"
    );
    assert_eq!(json["versionRank"], 0, "{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_all_gives_every_agreement_type_with_its_metadata() {
    let sim = start_simulator(SimulatorConfig::default()).await;
    let wd = Workdir::new();

    let mut cmd = wd.command(["template", "--all", "--base-url", &sim.base_url()]);
    cmd.env("PARTNER_CENTER_ACCESS_TOKEN", crate::common::TEST_TOKEN);
    let run = cmd.run_async().await;

    run.expect_code(0);
    let json: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON: {e}{run}"));
    let items = json
        .as_array()
        .or_else(|| json["items"].as_array())
        .unwrap_or_else(|| panic!("no list of templates{run}"));
    let types: BTreeSet<&str> = items
        .iter()
        .filter_map(|i| i["agreementType"].as_str())
        .collect();
    assert_eq!(
        types,
        BTreeSet::from(["MicrosoftCloudAgreement", "MicrosoftCustomerAgreement"]),
        "{run}"
    );
    for item in items {
        for key in [
            "templateId",
            "agreementType",
            "agreementLink",
            "versionRank",
        ] {
            assert!(item.get(key).is_some(), "{key} in {item}{run}");
        }
    }
}

/// A running `mca-attest simulator --listen 127.0.0.1:0` child, one instance across several
/// runs; killed when dropped, even when a test fails.
struct SimulatorProcess {
    child: Child,
    base_url: String,
    /// Kept open so the simulator never writes to a closed pipe.
    _stdout: BufReader<ChildStdout>,
    stderr_path: std::path::PathBuf,
}

impl SimulatorProcess {
    const PREFIX: &str = "mca-attest simulator listening on ";

    /// Starts the simulator with `extra` flags and reads its address from its first line.
    fn start(wd: &Workdir, extra: &[&str]) -> SimulatorProcess {
        let stderr_path = wd.path("simulator.stderr");
        let stderr =
            std::fs::File::create(&stderr_path).expect("create the simulator's stderr file");
        let mut cmd = Command::new(crate::common::binary());
        cmd.args(["simulator", "--listen", "127.0.0.1:0"])
            .args(extra)
            .current_dir(wd.dir())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut child = cmd.spawn().expect("spawn mca-attest simulator");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        let read = stdout.read_line(&mut line);
        let mut process = SimulatorProcess {
            child,
            base_url: String::new(),
            _stdout: stdout,
            stderr_path,
        };
        let url = match read {
            Ok(n) if n > 0 => line
                .trim_end()
                .strip_prefix(Self::PREFIX)
                .map(str::to_string),
            _ => None,
        };
        process.base_url = url.unwrap_or_else(|| {
            panic!(
                "no listening line from the simulator, got {line:?}{}",
                process.describe()
            )
        });
        process
    }

    fn describe(&self) -> String {
        let stderr = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
        format!("\n--- simulator stderr ---\n{stderr}")
    }

    async fn stats(&self) -> Value {
        let url = format!("{}/_simulator/stats", self.base_url);
        let response = crate::common::get(&url)
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}{}", self.describe()));
        response
            .json()
            .await
            .unwrap_or_else(|e| panic!("GET {url} is not JSON: {e}{}", self.describe()))
    }
}

impl Drop for SimulatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a generated tenant has on record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnRecord {
    Attested,
    Stale,
    Missing,
    DirectSigned,
}

impl OnRecord {
    fn state(self) -> &'static str {
        match self {
            OnRecord::Attested => "attested",
            OnRecord::Stale => "stale",
            OnRecord::Missing => "missing",
            OnRecord::DirectSigned => "direct_signed",
        }
    }

    /// Whether its check asks for the direct-signed status too (nothing current on record).
    fn asks_direct(self) -> bool {
        self != OnRecord::Attested
    }
}

/// A status input of `rows` (indices into `kinds`: tenants repeated any number of times, in
/// any order, among unique ones), each row with a signer that is, or is not, the one on
/// record ("Ann").
#[derive(Debug, Clone)]
struct RepeatedInput {
    kinds: Vec<OnRecord>,
    rows: Vec<(usize, bool)>,
    concurrency: u8,
}

fn repeated_inputs() -> impl proptest::strategy::Strategy<Value = RepeatedInput> {
    use proptest::prelude::*;
    let kind = prop_oneof![
        Just(OnRecord::Attested),
        Just(OnRecord::Stale),
        Just(OnRecord::Missing),
        Just(OnRecord::DirectSigned),
    ];
    (
        proptest::collection::vec(kind, 1..10),
        proptest::sample::select(vec![1u8, 2, 3, 8]),
    )
        .prop_flat_map(|(kinds, concurrency)| {
            let n = kinds.len();
            (
                Just(kinds),
                proptest::collection::vec((0..n, any::<bool>()), 1..40),
                Just(concurrency),
            )
        })
        .prop_map(|(kinds, rows, concurrency)| RepeatedInput {
            kinds,
            rows,
            concurrency,
        })
}

/// Runs `status` over a generated input against a fresh simulator; the report, the emitted
/// rows, the simulator's counts and the run.
fn run_repeated(
    input: &RepeatedInput,
) -> (
    Vec<Uuid>,
    Results,
    Vec<Vec<String>>,
    mca_attest::simulator::SimulatorStats,
    Run,
) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let ids: Vec<Uuid> = input.kinds.iter().map(|_| Uuid::new_v4()).collect();
    let mut existing = Vec::new();
    let mut direct = HashSet::new();
    for (id, kind) in ids.iter().zip(&input.kinds) {
        match kind {
            OnRecord::Attested => existing.push(on_record(*id, "Ann", "2024-02-03T00:00:00Z")),
            OnRecord::Stale => existing.push(on_record(*id, "Ann", "2021-02-03T00:00:00Z")),
            OnRecord::Missing => {}
            OnRecord::DirectSigned => {
                direct.insert(*id);
            }
        }
    }
    let sim = runtime.block_on(start_simulator(SimulatorConfig {
        existing,
        direct_signed: direct,
        ..Default::default()
    }));
    let wd = Workdir::new();
    let mut text = String::from("customer_tenant_id,first_name,last_name,email\n");
    for (i, ann) in &input.rows {
        let name = if *ann { "Ann" } else { "Bob" };
        let email = format!("{}@contoso.com", name.to_lowercase());
        text.push_str(&format!("{},{name},Carr,{email}\n", ids[*i]));
    }
    wd.create("in.csv", text);
    let concurrency = input.concurrency.to_string();
    let run = status(
        &wd,
        "in.csv",
        "report.csv",
        &sim.base_url(),
        &[
            "--emit-confirm-input",
            "todo.csv",
            "--concurrency",
            &concurrency,
        ],
    )
    .run();
    let report = report(&wd, "report.csv", &run);
    let (_, emitted) = read_records(&wd.path("todo.csv"), &run);
    let stats = sim.stats();
    runtime.block_on(sim.shutdown());
    (ids, report, emitted, stats, run)
}

/// Columns every row of a tenant shares with the row that was checked.
const SHARED: [&str; 12] = [
    "state",
    "agreements_on_record",
    "latest_date_agreed",
    "latest_first_name",
    "latest_last_name",
    "latest_email",
    "latest_phone_number",
    "template_id",
    "direct_signed",
    "http_status",
    "error_code",
    "checked_at",
];

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config {
        cases: 24,
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    })]

    /// Tenants repeated any number of times in any order, among unique ones, at several
    /// concurrencies: one agreements GET per distinct tenant (and one direct-signed GET for
    /// those with nothing current), a line for every row, each later row of a tenant with
    /// the first row's answer and a message naming it, its own signer compared, and each
    /// missing or stale tenant emitted once.
    #[test]
    fn status_asks_once_per_tenant_and_answers_every_row(input in repeated_inputs()) {
        let (ids, report, emitted, stats, run) = run_repeated(&input);
        let distinct: BTreeSet<usize> = input.rows.iter().map(|(i, _)| *i).collect();
        let not_current = distinct
            .iter()
            .any(|i| matches!(input.kinds[*i], OnRecord::Stale | OnRecord::Missing));
        run.expect_code(if not_current { 1 } else { 0 });
        assert_eq!(stats.agreement_gets, distinct.len() as u64, "{stats:?}{run}");
        let direct = distinct.iter().filter(|i| input.kinds[**i].asks_direct()).count();
        assert_eq!(stats.direct_signed_gets, direct as u64, "{stats:?}{run}");

        let mut rows: Vec<&ResultRow> = report.rows.iter().collect();
        rows.sort_by_key(|r| r.row());
        let numbers: Vec<u64> = rows.iter().map(|r| r.row()).collect();
        assert_eq!(numbers, (1..=input.rows.len() as u64).collect::<Vec<_>>(), "{run}");
        let mut first_of: BTreeMap<usize, &ResultRow> = BTreeMap::new();
        for (line, (i, ann)) in rows.iter().zip(&input.rows) {
            let kind = input.kinds[*i];
            assert_eq!(line.tenant(), ids[*i].to_string(), "{run}");
            assert_eq!(state(line), kind.state(), "{line:?}{run}");
            let on_record = matches!(kind, OnRecord::Attested | OnRecord::Stale);
            assert_eq!(
                line.get("signer_matches_input"),
                (on_record && *ann).to_string(),
                "{line:?}{run}"
            );
            match first_of.get(i) {
                None => {
                    assert!(!line.get("message").contains("same tenant"), "{line:?}{run}");
                    first_of.insert(*i, line);
                }
                Some(first) => {
                    let named = format!(
                        "same tenant as {}: checked once, for that row",
                        mca_attest::domain::RowNumber(first.row()).named()
                    );
                    assert!(line.get("message").starts_with(&named), "{line:?}{run}");
                    for column in SHARED {
                        assert_eq!(line.get(column), first.get(column), "{column}{run}");
                    }
                }
            }
        }
        let mut emitted_tenants: Vec<String> = emitted.into_iter().map(|r| r[0].clone()).collect();
        emitted_tenants.sort();
        let mut to_confirm: Vec<String> = distinct
            .iter()
            .filter(|i| matches!(input.kinds[**i], OnRecord::Stale | OnRecord::Missing))
            .map(|i| ids[*i].to_string())
            .collect();
        to_confirm.sort();
        assert_eq!(emitted_tenants, to_confirm, "{run}");
    }
}

/// A report cut after every possible number of lines (as a stopped run leaves it, the emitted
/// file holding what the kept checked rows emitted), then resumed: every row gets its one
/// line, a tenant with rows still to do is checked once more (one GET), a later row names a
/// row checked in the same run, and each missing or stale tenant is in the emitted file once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_a_report_of_repeated_tenants_answers_every_row_once() {
    let [missing, attested, stale] = tenants();
    let sim = start_simulator(SimulatorConfig {
        existing: vec![
            on_record(attested, "Ann", "2024-02-03T00:00:00Z"),
            on_record(stale, "Ann", "2021-02-03T00:00:00Z"),
        ],
        ..Default::default()
    })
    .await;
    let order = [
        missing, attested, missing, missing, stale, attested, missing,
    ];
    let ids: Vec<String> = order.iter().map(Uuid::to_string).collect();
    let wd = Workdir::new();
    tenant_only_input(
        &wd,
        "in.csv",
        &ids.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let emit = ["--emit-confirm-input", "todo.csv"];
    let full = status(&wd, "in.csv", "full.csv", &sim.base_url(), &emit)
        .run_async()
        .await;
    full.expect_code(1);
    let full_text = wd.read("full.csv");
    let full_todo = wd.read("todo.csv");
    let lines: Vec<&str> = full_text.split_inclusive('\n').collect();
    let to_confirm: BTreeSet<String> = [missing, stale].iter().map(Uuid::to_string).collect();

    for kept_lines in 0..=order.len() {
        let kept: String = lines[..=kept_lines].concat();
        let kept_report = Results::parse(&kept).expect("the kept lines are CSV");
        // What the stopped run emitted: the kept checked rows that are missing or stale.
        let emitted_before: BTreeSet<&str> = kept_report
            .rows
            .iter()
            .filter(|r| !r.get("message").starts_with("same tenant"))
            .filter(|r| matches!(state(r), "missing" | "stale"))
            .map(ResultRow::tenant)
            .collect();
        let todo: String = full_todo
            .split_inclusive('\n')
            .enumerate()
            .filter(|(i, line)| *i == 0 || emitted_before.iter().any(|t| line.starts_with(t)))
            .map(|(_, line)| line)
            .collect();
        wd.create("report.csv", &kept);
        wd.create("todo.csv", &todo);
        let done_rows: BTreeSet<u64> = kept_report.rows.iter().map(ResultRow::row).collect();
        let still_to_do: BTreeSet<&str> = ids
            .iter()
            .enumerate()
            .filter(|(i, _)| !done_rows.contains(&(*i as u64 + 1)))
            .map(|(_, t)| t.as_str())
            .collect();
        let before = sim.stats();

        let mut args = emit.to_vec();
        args.push("--resume");
        let run = status(&wd, "in.csv", "report.csv", &sim.base_url(), &args)
            .run_async()
            .await;

        let gets = sim.stats().agreement_gets - before.agreement_gets;
        assert_eq!(gets, still_to_do.len() as u64, "{kept_lines} kept{run}");
        let text = wd.read("report.csv");
        assert!(text.starts_with(&kept), "{kept_lines} kept\n{text}{run}");
        let report = report(&wd, "report.csv", &run);
        let mut numbers = report.row_numbers();
        numbers.sort_unstable();
        assert_eq!(
            numbers,
            (1..=order.len() as u64).collect::<Vec<_>>(),
            "{kept_lines} kept\n{text}{run}"
        );
        // The exit code speaks of this run's rows.
        let problems = report.rows[kept_lines..]
            .iter()
            .any(|r| !matches!(state(r), "attested" | "direct_signed"));
        run.expect_code(i32::from(problems));
        let appended: BTreeSet<u64> = report.rows[kept_lines..]
            .iter()
            .map(ResultRow::row)
            .collect();
        for line in &report.rows[kept_lines..] {
            let message = line.get("message");
            if let Some(rest) = message.strip_prefix("same tenant as row ") {
                let first: u64 = rest
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("{message}"));
                assert!(appended.contains(&first), "{message}\n{text}{run}");
            }
        }
        let (_, emitted) = read_records(&wd.path("todo.csv"), &run);
        let mut emitted: Vec<String> = emitted.into_iter().map(|r| r[0].clone()).collect();
        emitted.sort();
        assert_eq!(
            emitted,
            to_confirm.iter().cloned().collect::<Vec<_>>(),
            "{kept_lines} kept\n{}{run}",
            wd.read("todo.csv")
        );
    }
}
