//! The run manifest, `<results or report file>.manifest.json`, beside the output of `confirm`,
//! `status` and `validate`: what it records about a run (and that it matches the run's own
//! files and exit code), that it has the schema of `--summary-json`, that credentials never
//! reach it, that an interrupted run still writes it, how `--resume` and a fresh run treat its
//! history, and that only its owner can read it.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::time::Duration;

use crate::common::{
    Customer, Results, Run, Workdir, default_simulator, start_simulator, wait_until,
};
use chrono::{DateTime, Utc};
use mca_attest::simulator::{MCA_TEMPLATE_ID, SimulatorConfig, TokenEndpointConfig};
use secrecy::SecretString;
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

const SCHEMA: &str = "mca-attest/manifest/v1";

/// A manifest as read back.
struct Manifest {
    json: Value,
    text: String,
}

impl Manifest {
    /// Reads the manifest beside `output` (a workdir file name), panicking with the run shown.
    fn beside(wd: &Workdir, output: &str, run: &Run) -> Manifest {
        let path = wd.path(&format!("{output}.manifest.json"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("no manifest at {}: {e}{run}", path.display()));
        let json: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("the manifest is not JSON: {e}\n{text}{run}"));
        assert_eq!(json["schema"], SCHEMA, "{text}{run}");
        Manifest { json, text }
    }

    fn runs(&self) -> &Vec<Value> {
        self.json["runs"]
            .as_array()
            .unwrap_or_else(|| panic!("no runs array in {}", self.text))
    }

    fn last_run(&self) -> &Value {
        self.runs()
            .last()
            .unwrap_or_else(|| panic!("no run in {}", self.text))
    }
}

/// SHA-256 of a file, in lowercase hex.
fn sha256_of(path: &Path) -> String {
    let bytes =
        std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The non-zero counts of a manifest run, as a status → count map.
fn run_counts(entry: &Value) -> BTreeMap<String, usize> {
    entry["counts"]
        .as_object()
        .unwrap_or_else(|| panic!("no counts object in {entry:#}"))
        .iter()
        .map(|(k, v)| {
            let n = v
                .as_u64()
                .unwrap_or_else(|| panic!("count {k} is not a number in {entry:#}"));
            (k.clone(), usize::try_from(n).expect("a count fits usize"))
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// Number of lines per value of `column` in a results or report file.
fn file_counts(results: &Results, column: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for r in &results.rows {
        *counts.entry(r.get(column).to_string()).or_insert(0) += 1;
    }
    counts
}

/// What every run entry must say about the run that wrote `output` from `input` (workdir file
/// names): the tool, the command, ids and times, the input's path, hash and rows, the counts of
/// the output file's `count_column`, and the exit code.
fn assert_describes_run(wd: &Workdir, entry: &Value, run: &Run, expect: Expected<'_>) {
    let shown = format!("{entry:#}{run}");
    assert_eq!(entry["tool_version"], env!("CARGO_PKG_VERSION"), "{shown}");
    assert_eq!(entry["command"], expect.command, "{shown}");
    let command_line: Vec<&str> = entry["command_line"]
        .as_array()
        .unwrap_or_else(|| panic!("command_line is not an array: {shown}"))
        .iter()
        .map(|a| a.as_str().unwrap_or_else(|| panic!("not a string: {a}")))
        .collect();
    assert!(
        command_line.contains(&expect.command) && command_line.contains(&expect.input),
        "the command line as run: {command_line:?}{shown}"
    );
    let run_id = entry["run_id"].as_str().unwrap_or_default();
    assert!(Uuid::parse_str(run_id).is_ok(), "run_id is a GUID: {shown}");
    let time = |key: &str| {
        entry[key]
            .as_str()
            .and_then(|t| t.parse::<DateTime<Utc>>().ok())
            .unwrap_or_else(|| panic!("{key} is not an RFC 3339 time: {shown}"))
    };
    assert!(
        time("started_at") <= time("finished_at"),
        "started before it finished: {shown}"
    );
    let recorded_input = Path::new(entry["input"].as_str().unwrap_or_default());
    assert_eq!(
        wd.dir().join(recorded_input).canonicalize().ok(),
        wd.path(expect.input).canonicalize().ok(),
        "input names the input file: {shown}"
    );
    assert_eq!(
        entry["input_sha256"],
        sha256_of(&wd.path(expect.input)),
        "input_sha256 is the SHA-256 of the input file: {shown}"
    );
    assert_eq!(entry["input_rows"], expect.input_rows, "{shown}");
    let output = Results::read(&wd.path(expect.output), run);
    assert_eq!(
        run_counts(entry),
        file_counts(&output, expect.count_column),
        "counts are those of {}: {shown}",
        expect.output
    );
    assert_eq!(
        entry["exit_code"].as_i64(),
        run.code().map(i64::from),
        "exit_code is the process's: {shown}"
    );
}

/// What a run entry should hold.
#[derive(Clone, Copy)]
struct Expected<'a> {
    command: &'a str,
    input: &'a str,
    input_rows: u64,
    output: &'a str,
    /// The column of the output file whose values the counts count.
    count_column: &'a str,
}

/// Five customers for `confirm`: three valid, one the simulator does not know (failed), one
/// with a bad email (invalid).
fn mixed_customers(unknown: &Customer) -> Vec<Customer> {
    vec![
        Customer::new(1),
        Customer::new(2),
        unknown.clone(),
        Customer::new(4).email("no-at-sign"),
        Customer::new(5),
    ]
}

/// `status INPUT -o REPORT` against `base_url` with a test token, fast, no progress bar.
fn status(wd: &Workdir, input: &str, report: &str, base_url: &str) -> crate::common::Cmd {
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
    cmd.env("PARTNER_CENTER_ACCESS_TOKEN", crate::common::TEST_TOKEN);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirm_manifest_describes_the_run_that_wrote_the_results() {
    let unknown = Customer::new(3);
    let sim = start_simulator(SimulatorConfig {
        unknown_tenants: HashSet::from([unknown.tenant_uuid()]),
        ..Default::default()
    })
    .await;
    let wd = Workdir::new();
    wd.create_customers("in.csv", &mixed_customers(&unknown));

    let run = wd
        .confirm("in.csv", "r.csv", &sim.base_url())
        .run_async()
        .await;

    run.expect_code(1);
    let manifest = Manifest::beside(&wd, "r.csv", &run);
    assert_eq!(manifest.runs().len(), 1, "{}{run}", manifest.text);
    assert!(
        manifest.json["report"]
            .as_str()
            .is_some_and(|r| r.ends_with("r.csv")),
        "report names the results file: {}{run}",
        manifest.text
    );
    let entry = manifest.last_run();
    assert_describes_run(
        &wd,
        entry,
        &run,
        Expected {
            command: "confirm",
            input: "in.csv",
            input_rows: 5,
            output: "r.csv",
            count_column: "status",
        },
    );
    assert_eq!(entry["template_id"], MCA_TEMPLATE_ID, "{entry:#}{run}");
    assert_eq!(entry["base_url"], sim.base_url(), "{entry:#}{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_manifest_describes_the_run_that_wrote_the_report() {
    let [unknown, direct] = [Uuid::new_v4(), Uuid::new_v4()];
    let sim = start_simulator(SimulatorConfig {
        unknown_tenants: HashSet::from([unknown]),
        direct_signed: HashSet::from([direct]),
        ..Default::default()
    })
    .await;
    let wd = Workdir::new();
    wd.create(
        "in.csv",
        format!(
            "customer_tenant_id\n{unknown}\n{direct}\n{}\nnot-a-guid\n",
            Uuid::new_v4()
        ),
    );

    let run = status(&wd, "in.csv", "report.csv", &sim.base_url())
        .run_async()
        .await;

    run.expect_code(1);
    let manifest = Manifest::beside(&wd, "report.csv", &run);
    assert_eq!(manifest.runs().len(), 1, "{}{run}", manifest.text);
    let entry = manifest.last_run();
    assert_describes_run(
        &wd,
        entry,
        &run,
        Expected {
            command: "status",
            input: "in.csv",
            input_rows: 4,
            output: "report.csv",
            count_column: "state",
        },
    );
    assert_eq!(entry["base_url"], sim.base_url(), "{entry:#}{run}");
}

#[test]
fn validate_manifest_describes_the_run_that_wrote_the_report() {
    let wd = Workdir::new();
    let mut customers = Customer::many(3);
    customers.push(Customer::new(4).email("no-at-sign"));
    customers.push(Customer::new(1));
    wd.create_customers("in.csv", &customers);

    let run = wd
        .command(["validate", "in.csv", "-o", "checked.csv"])
        .run();

    run.expect_code(1);
    let manifest = Manifest::beside(&wd, "checked.csv", &run);
    assert_eq!(manifest.runs().len(), 1, "{}{run}", manifest.text);
    assert_describes_run(
        &wd,
        manifest.last_run(),
        &run,
        Expected {
            command: "validate",
            input: "in.csv",
            input_rows: 5,
            output: "checked.csv",
            count_column: "status",
        },
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_run_has_the_schema_of_the_summary_json() {
    let sim = default_simulator().await;
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(2));
    let mut confirm = wd.confirm("in.csv", "r.csv", &sim.base_url());
    confirm.args(["--summary-json", "confirm-summary.json"]);
    let mut status = status(&wd, "in.csv", "report.csv", &sim.base_url());
    status.args(["--summary-json", "status-summary.json"]);

    for (cmd, output, summary) in [
        (confirm, "r.csv", "confirm-summary.json"),
        (status, "report.csv", "status-summary.json"),
    ] {
        let run = cmd.run_async().await;

        run.expect_code(0);
        let summary: Value = serde_json::from_str(&wd.read(summary))
            .unwrap_or_else(|e| panic!("the summary is not JSON: {e}{run}"));
        let manifest = Manifest::beside(&wd, output, &run);
        let entry = manifest.last_run();
        let keys = |v: &Value| -> BTreeSet<String> {
            v.as_object()
                .unwrap_or_else(|| panic!("not an object: {v:#}{run}"))
                .keys()
                .cloned()
                .collect()
        };
        assert_eq!(keys(entry), keys(&summary), "{entry:#}\n{summary:#}{run}");
        assert_eq!(
            entry["run_id"], summary["run_id"],
            "the same run: {entry:#}\n{summary:#}{run}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_from_the_environment_never_reach_a_manifest() {
    const CLIENT_SECRET: &str = "sekret-client-5b1e";
    const REFRESH_TOKEN: &str = "sekret-refresh-77c0";
    const ACCESS_TOKEN: &str = "sekret-access-90aa";
    let sim = start_simulator(SimulatorConfig {
        token_endpoint: Some(TokenEndpointConfig {
            client_id: "3f1d7a52-0c4b-4e8e-9a61-2b7d5c9e0f13".into(),
            client_secret: SecretString::from(CLIENT_SECRET),
            refresh_token: SecretString::from(REFRESH_TOKEN),
            token_ttl: Duration::from_secs(3599),
            rotate_refresh_token: false,
        }),
        access_tokens: vec![ACCESS_TOKEN.into()],
        ..Default::default()
    })
    .await;
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(2));
    let refresh_flow = |cmd: &mut crate::common::Cmd| {
        cmd.env_remove("PARTNER_CENTER_ACCESS_TOKEN")
            .env(
                "PARTNER_CENTER_TENANT_ID",
                "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
            )
            .env(
                "PARTNER_CENTER_CLIENT_ID",
                "3f1d7a52-0c4b-4e8e-9a61-2b7d5c9e0f13",
            )
            .env("PARTNER_CENTER_CLIENT_SECRET", CLIENT_SECRET)
            .env("PARTNER_CENTER_REFRESH_TOKEN", REFRESH_TOKEN)
            .env("PARTNER_CENTER_AUTHORITY", &sim.base_url());
    };
    let mut confirm_refresh = wd.confirm("in.csv", "r1.csv", &sim.base_url());
    refresh_flow(&mut confirm_refresh);
    let mut status_refresh = status(&wd, "in.csv", "s1.csv", &sim.base_url());
    refresh_flow(&mut status_refresh);
    let mut confirm_token = wd.confirm("in.csv", "r2.csv", &sim.base_url());
    confirm_token.env("PARTNER_CENTER_ACCESS_TOKEN", ACCESS_TOKEN);
    let mut status_token = status(&wd, "in.csv", "s2.csv", &sim.base_url());
    status_token.env("PARTNER_CENTER_ACCESS_TOKEN", ACCESS_TOKEN);

    for (cmd, output) in [
        (confirm_refresh, "r1.csv"),
        (status_refresh, "s1.csv"),
        (confirm_token, "r2.csv"),
        (status_token, "s2.csv"),
    ] {
        let run = cmd.run_async().await;

        run.expect_code(0);
        let manifest = Manifest::beside(&wd, output, &run);
        // `simat.` and `simrt.` start the tokens the simulator's authority issues.
        for secret in [
            CLIENT_SECRET,
            REFRESH_TOKEN,
            ACCESS_TOKEN,
            "simat.",
            "simrt.",
        ] {
            assert!(
                !manifest.text.contains(secret),
                "{secret} is in the manifest\n{}{run}",
                manifest.text
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_run_still_writes_its_manifest_with_exit_code_130() {
    let sim = default_simulator().await;
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(100));
    let mut run = wd.spawn_confirm("in.csv", "r.csv", &sim.base_url(), "20/s", &[]);
    let results = wd.path("r.csv");
    wait_until(
        Duration::from_secs(20),
        || std::fs::read_to_string(&results).is_ok_and(|t| t.lines().count() >= 3),
        || format!("two finished rows in the results{}", run.describe()),
    )
    .await;

    run.interrupt();
    let status = run.wait(Duration::from_secs(20)).await;

    assert_eq!(status.code(), Some(130), "{}", run.describe());
    let text = wd.read("r.csv.manifest.json");
    let manifest: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("the manifest is not JSON: {e}\n{text}{}", run.describe()));
    let runs = manifest["runs"].as_array().expect("a runs array");
    assert_eq!(runs.len(), 1, "{text}");
    let entry = &runs[0];
    assert_eq!(entry["exit_code"], 130, "{text}{}", run.describe());
    assert!(
        entry["aborted"].as_str().is_some_and(|a| !a.is_empty()),
        "aborted says why the run stopped: {text}"
    );
    let results = Results::parse(&wd.read("r.csv")).expect("the results are CSV");
    assert!(
        results.rows.len() < 100,
        "the run was cut short{}",
        run.describe()
    );
    assert_eq!(
        run_counts(entry),
        file_counts(&results, "status"),
        "the counts of the rows that finished: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumed_run_appends_its_entry_and_keeps_the_earlier_one() {
    let sim = default_simulator().await;
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(3));
    let first = wd
        .confirm("in.csv", "r.csv", &sim.base_url())
        .run_async()
        .await;
    first.expect_code(0);
    let first_entry = Manifest::beside(&wd, "r.csv", &first).last_run().clone();
    // Drop the last line, as if the run had died before writing it.
    let text = wd.read("r.csv");
    let kept: String = text.split_inclusive('\n').take(3).collect();
    wd.create("r.csv", &kept);

    let mut resume = wd.confirm("in.csv", "r.csv", &sim.base_url());
    resume.arg("--resume");
    let run = resume.run_async().await;

    run.expect_code(0);
    let manifest = Manifest::beside(&wd, "r.csv", &run);
    assert_eq!(manifest.runs().len(), 2, "{}{run}", manifest.text);
    assert_eq!(
        manifest.runs()[0],
        first_entry,
        "the first run's entry is unchanged{run}"
    );
    let second = &manifest.runs()[1];
    assert_ne!(second["run_id"], first_entry["run_id"], "{second:#}{run}");
    assert_eq!(second["exit_code"], 0, "{second:#}{run}");
    let appended = Results::parse(&format!(
        "{}\n{}",
        crate::common::RESULTS_HEADER,
        wd.read("r.csv")
            .strip_prefix(kept.as_str())
            .unwrap_or_else(|| panic!("the kept lines stay{run}"))
    ))
    .expect("the appended lines are CSV");
    assert_eq!(
        run_counts(second),
        file_counts(&appended, "status"),
        "the resumed run counts the lines it added: {second:#}{run}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_run_on_a_new_results_file_starts_a_new_history() {
    let sim = default_simulator().await;
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(2));
    let first = wd
        .confirm("in.csv", "r.csv", &sim.base_url())
        .run_async()
        .await;
    first.expect_code(0);
    let first_id = Manifest::beside(&wd, "r.csv", &first).last_run()["run_id"].clone();
    std::fs::remove_file(wd.path("r.csv")).expect("remove the results");

    let run = wd
        .confirm("in.csv", "r.csv", &sim.base_url())
        .run_async()
        .await;

    run.expect_code(0);
    let manifest = Manifest::beside(&wd, "r.csv", &run);
    assert_eq!(manifest.runs().len(), 1, "{}{run}", manifest.text);
    assert_ne!(
        manifest.last_run()["run_id"],
        first_id,
        "the entry is the new run's{run}"
    );
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_are_readable_by_their_owner_only_like_the_results() {
    use std::os::unix::fs::PermissionsExt;
    let sim = default_simulator().await;
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(2));
    let runs = [
        (
            wd.confirm("in.csv", "r.csv", &sim.base_url())
                .run_async()
                .await,
            "r.csv",
        ),
        (
            status(&wd, "in.csv", "report.csv", &sim.base_url())
                .run_async()
                .await,
            "report.csv",
        ),
        (
            wd.command(["validate", "in.csv", "-o", "checked.csv"])
                .run_async()
                .await,
            "checked.csv",
        ),
    ];

    for (run, output) in &runs {
        run.expect_code(0);
        for name in [output.to_string(), format!("{output}.manifest.json")] {
            let mode = std::fs::metadata(wd.path(&name))
                .unwrap_or_else(|e| panic!("{name}: {e}{run}"))
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "mode of {name} is {mode:o}{run}");
        }
    }
}
