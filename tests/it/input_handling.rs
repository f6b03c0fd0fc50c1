//! How `confirm` reads its input: spreadsheet exports, separators, broken rows, dates, tenant
//! id spellings and the default date. Every case is confirmed against the simulator, so what
//! was read is checked both in the results and in what was sent.

use crate::common::{Customer, INPUT_HEADER, Results, Workdir, counts, default_simulator};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excel_export_with_bom_crlf_and_spelled_out_headers_is_read() {
    let sim = default_simulator().await;
    let wd = Workdir::new();
    let customers = [Customer::new(1).phone("425 555 0100"), Customer::new(2)];
    let mut bytes =
        b"\xEF\xBB\xBFCustomer Tenant ID,First Name,Last Name,Email Address,Phone,Date Agreed\r\n"
            .to_vec();
    for c in &customers {
        bytes.extend_from_slice(c.csv_line(',').as_bytes());
        bytes.extend_from_slice(b"\r\n");
    }
    wd.create("export.csv", bytes);

    let run = wd
        .confirm("export.csv", "r.csv", &sim.base_url())
        .run_async()
        .await;

    run.expect_code(0);
    let results = Results::read(&wd.path("r.csv"), &run);
    assert_eq!(results.counts(), counts(&[("confirmed", 2)]), "{run}");
    let requests = sim.requests();
    for c in &customers {
        let line = results.by_tenant(&c.tenant);
        assert_eq!(
            line.get("date_agreed"),
            "2024-06-14T00:00:00Z",
            "no stray CR: {line:?}{run}"
        );
        let req = requests
            .iter()
            .find(|r| r.tenant == c.tenant)
            .expect("a POST for the row");
        let contact = &req.body["primaryContact"];
        assert_eq!(
            contact["firstName"],
            c.first_name.as_str(),
            "{contact}{run}"
        );
        assert_eq!(contact["email"], c.email.as_str(), "{contact}{run}");
    }
    let phoned = &requests
        .iter()
        .find(|r| r.tenant == customers[0].tenant)
        .expect("a POST")
        .body;
    assert_eq!(
        phoned["primaryContact"]["phoneNumber"], "425 555 0100",
        "Phone is read as phone_number{run}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semicolon_separated_input_is_read_with_the_delimiter_flag() {
    let sim = default_simulator().await;
    let wd = Workdir::new();
    let customers = [Customer::new(1).last_name("Smith, Jr"), Customer::new(2)];
    let mut text = format!("{}\n", INPUT_HEADER.replace(',', ";"));
    for c in &customers {
        text.push_str(&c.csv_line(';'));
        text.push('\n');
    }
    wd.create("in.csv", text);

    let mut cmd = wd.confirm("in.csv", "r.csv", &sim.base_url());
    cmd.args(["--delimiter", ";"]);
    let run = cmd.run_async().await;

    run.expect_code(0);
    let results = Results::read(&wd.path("r.csv"), &run);
    assert_eq!(results.counts(), counts(&[("confirmed", 2)]), "{run}");
    assert_eq!(results.by_row(1).get("last_name"), "Smith, Jr", "{run}");
    assert_eq!(results.by_row(1).tenant(), customers[0].tenant, "{run}");
}

/// Writes `good, <bad line>, good` and confirms it; returns the run and its results.
async fn confirm_with_a_bad_middle_row(
    bad_line: &[u8],
) -> (crate::common::Run, Results, Vec<Customer>) {
    let sim = default_simulator().await;
    let wd = Workdir::new();
    let good = vec![Customer::new(1), Customer::new(3)];
    let mut bytes = format!("{INPUT_HEADER}\n{}\n", good[0].csv_line(',')).into_bytes();
    bytes.extend_from_slice(bad_line);
    bytes.extend_from_slice(format!("\n{}\n", good[1].csv_line(',')).as_bytes());
    wd.create("in.csv", bytes);
    let run = wd
        .confirm("in.csv", "r.csv", &sim.base_url())
        .run_async()
        .await;
    let results = Results::read(&wd.path("r.csv"), &run);
    let sent = sim.requests().len();
    assert_eq!(sent, 2, "only the good rows are sent{run}");
    sim.shutdown().await;
    (run, results, good)
}

fn assert_only_middle_row_invalid(
    run: &crate::common::Run,
    results: &Results,
    good: &[Customer],
    field: &str,
) {
    run.expect_code(1);
    assert_eq!(results.row_numbers(), vec![1, 2, 3], "{run}");
    let bad = results.by_row(2);
    assert_eq!(bad.status(), "invalid", "{bad:?}{run}");
    assert!(
        bad.get("message").contains(field),
        "the message names {field:?}: {bad:?}{run}"
    );
    assert_eq!(results.by_row(1).status(), "confirmed", "{run}");
    assert_eq!(
        results.by_row(3).status(),
        "confirmed",
        "rows after the bad one go on{run}"
    );
    assert_eq!(results.by_row(3).tenant(), good[1].tenant, "{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_with_a_missing_field_is_invalid_and_later_rows_go_through() {
    let ragged = format!(
        "{},Short,Row,short.row@contoso.com,2024-06-14",
        uuid::Uuid::new_v4()
    );
    let (run, results, good) = confirm_with_a_bad_middle_row(ragged.as_bytes()).await;
    assert_only_middle_row_invalid(&run, &results, &good, "field");
}

/// Excel's "CSV (Comma delimited)" on Western Windows: one accented name in Windows-1252.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_windows_1252_export_sends_nothing_until_its_encoding_is_given() {
    let sim = default_simulator().await;
    let wd = Workdir::new();
    let jose = Customer::new(2).first_name("José").last_name("Müller-Øst");
    let customers = [Customer::new(1), jose.clone(), Customer::new(3)];
    let mut bytes = format!("{INPUT_HEADER}\r\n").into_bytes();
    for c in &customers {
        let text = c.csv_line(',');
        let (line, _, unmappable) = encoding_rs::WINDOWS_1252.encode(&text);
        assert!(!unmappable);
        bytes.extend_from_slice(&line);
        bytes.extend_from_slice(b"\r\n");
    }
    wd.create("excel.csv", bytes);

    let refused = wd
        .confirm("excel.csv", "r.csv", &sim.base_url())
        .run_async()
        .await;
    refused.expect_code(2);
    for needed in [
        "Windows-1252",
        "CSV UTF-8 (Comma delimited)",
        "--encoding windows-1252",
    ] {
        refused.expect_stderr_contains(needed);
    }
    assert_eq!(
        refused
            .stderr
            .lines()
            .filter(|l| l.contains("Windows-1252"))
            .count(),
        1,
        "one message for the file, not one per cell{refused}"
    );
    assert!(sim.requests().is_empty(), "nothing sent{refused}");
    assert!(!wd.exists("r.csv"), "no results file{refused}");

    let mut read = wd.confirm("excel.csv", "r.csv", &sim.base_url());
    read.args(["--encoding", "windows-1252"]);
    let run = read.run_async().await;
    run.expect_code(0);
    let results = Results::read(&wd.path("r.csv"), &run);
    assert_eq!(results.counts(), counts(&[("confirmed", 3)]), "{run}");
    assert_eq!(results.by_row(2).get("first_name"), "José", "{run}");
    assert_eq!(results.by_row(2).get("last_name"), "Müller-Øst", "{run}");
    let sent = sim.requests();
    let body = &sent
        .iter()
        .find(|r| r.tenant == jose.tenant)
        .expect("a POST for José")
        .body;
    assert_eq!(body["primaryContact"]["firstName"], "José", "{run}");
    assert_eq!(body["primaryContact"]["lastName"], "Müller-Øst", "{run}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurdly_long_name_is_invalid_naming_the_field() {
    let line = format!(
        "{},Long,{},long@contoso.com,,2024-06-14",
        uuid::Uuid::new_v4(),
        "x".repeat(300)
    );
    let (run, results, good) = confirm_with_a_bad_middle_row(line.as_bytes()).await;
    assert_only_middle_row_invalid(&run, &results, &good, "last_name");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dates_in_every_allowed_form_are_sent_as_utc() {
    let sim = default_simulator().await;
    let wd = Workdir::new();
    let cases = [
        ("2024-06-14", "2024-06-14T00:00:00Z"),
        ("2024-06-14T09:30:00+02:00", "2024-06-14T07:30:00Z"),
        ("2024-06-14 09:30:00", "2024-06-14T09:30:00Z"),
    ];
    let customers: Vec<Customer> = cases
        .iter()
        .enumerate()
        .map(|(i, (raw, _))| Customer::new(i + 1).date(raw))
        .collect();
    wd.create_customers("in.csv", &customers);

    let run = wd
        .confirm("in.csv", "r.csv", &sim.base_url())
        .run_async()
        .await;

    run.expect_code(0);
    let results = Results::read(&wd.path("r.csv"), &run);
    let requests = sim.requests();
    for (c, (raw, want)) in customers.iter().zip(cases) {
        let line = results.by_tenant(&c.tenant);
        assert_eq!(line.get("date_agreed"), want, "{raw} in the results{run}");
        let req = requests
            .iter()
            .find(|r| r.tenant == c.tenant)
            .expect("a POST for the row");
        assert_eq!(req.body["dateAgreed"], want, "{raw} as sent{run}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_ids_in_braces_and_upper_case_are_accepted() {
    let sim = default_simulator().await;
    let wd = Workdir::new();
    let plain = Customer::new(1);
    let braced = plain
        .clone()
        .tenant(&format!("{{{}}}", plain.tenant.to_uppercase()));
    wd.create_customers("in.csv", &[braced]);

    let run = wd
        .confirm("in.csv", "r.csv", &sim.base_url())
        .run_async()
        .await;

    run.expect_code(0);
    let results = Results::read(&wd.path("r.csv"), &run);
    let line = results.by_row(1);
    assert_eq!(line.status(), "confirmed", "{line:?}{run}");
    assert_eq!(
        line.tenant(),
        plain.tenant,
        "the tenant id as a plain GUID{run}"
    );
    let requests = sim.requests();
    assert_eq!(requests.len(), 1, "{requests:#?}{run}");
    assert_eq!(
        requests[0].tenant, plain.tenant,
        "the path holds the plain GUID{run}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blank_dates_take_the_default_date_agreed() {
    let sim = default_simulator().await;
    let wd = Workdir::new();
    let blank = Customer::new(1).date("");
    let dated = Customer::new(2).date("2024-06-14");
    wd.create_customers("in.csv", &[blank.clone(), dated.clone()]);

    let mut cmd = wd.confirm("in.csv", "r.csv", &sim.base_url());
    cmd.args(["--default-date-agreed", "2024-01-02"]);
    let run = cmd.run_async().await;

    run.expect_code(0);
    let results = Results::read(&wd.path("r.csv"), &run);
    assert_eq!(
        results.by_tenant(&blank.tenant).get("date_agreed"),
        "2024-01-02T00:00:00Z",
        "{run}"
    );
    assert_eq!(
        results.by_tenant(&dated.tenant).get("date_agreed"),
        "2024-06-14T00:00:00Z",
        "{run}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blank_date_without_a_default_is_invalid_naming_the_field() {
    let sim = default_simulator().await;
    let wd = Workdir::new();
    wd.create_customers("in.csv", &[Customer::new(1).date(""), Customer::new(2)]);

    let run = wd
        .confirm("in.csv", "r.csv", &sim.base_url())
        .run_async()
        .await;

    run.expect_code(1);
    let results = Results::read(&wd.path("r.csv"), &run);
    let line = results.by_row(1);
    assert_eq!(line.status(), "invalid", "{line:?}{run}");
    assert!(line.get("message").contains("date_agreed"), "{line:?}{run}");
    assert_eq!(results.by_row(2).status(), "confirmed", "{run}");
    assert_eq!(sim.stats().agreement_posts, 1, "{run}");
}
