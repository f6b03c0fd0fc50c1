//! Every report is staged: a `status` report, `customers -o FILE`, `validate -o FILE` and the
//! `--emit-confirm-input` file appear under their final names only when their run completes,
//! first run or not, and a manifest names the final file. Swept over the commands, with and
//! without an earlier complete report, and over the ways a run stops (SIGINT, SIGKILL, a
//! listing that keeps failing); the property for every case: the final name holds what it
//! held before (nothing, for a first run) or a complete report.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::common::{Customer, Results, Workdir, start_simulator, wait_until};
use mca_attest::simulator::{CustomerProfile, SimulatorConfig};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Command {
    Status,
    StatusWithEmit,
    StatusAllCustomers,
    Customers,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Stop {
    Interrupt,
    Kill,
}

const ROWS: usize = 24;

fn profiles() -> Vec<CustomerProfile> {
    Customer::many(ROWS)
        .iter()
        .map(|c| CustomerProfile::new(c.tenant_uuid()))
        .collect()
}

fn args(command: Command, base: &str, rate: &str) -> Vec<String> {
    let mut args: Vec<String> = match command {
        Command::Status => vec![
            "status".into(),
            "in.csv".into(),
            "-o".into(),
            "out.csv".into(),
        ],
        Command::StatusWithEmit => vec![
            "status".into(),
            "in.csv".into(),
            "-o".into(),
            "out.csv".into(),
            "--emit-confirm-input".into(),
            "emit.csv".into(),
        ],
        Command::StatusAllCustomers => vec![
            "status".into(),
            "--all-customers".into(),
            "-o".into(),
            "out.csv".into(),
        ],
        Command::Customers => vec!["customers".into(), "-o".into(), "out.csv".into()],
    };
    args.extend(
        ["--base-url", base, "--no-progress"]
            .iter()
            .map(|a| (*a).to_string()),
    );
    if command != Command::Customers {
        args.extend(["--rate".to_string(), rate.to_string()]);
    }
    args
}

/// The staged files a command writes, by their final names.
fn finals(command: Command) -> Vec<&'static str> {
    match command {
        Command::StatusWithEmit => vec!["out.csv", "out.csv.manifest.json", "emit.csv"],
        Command::Customers => vec!["out.csv"],
        _ => vec!["out.csv", "out.csv.manifest.json"],
    }
}

fn snapshot(wd: &Workdir, names: &[&str]) -> Vec<Option<Vec<u8>>> {
    names
        .iter()
        .map(|n| wd.exists(n).then(|| wd.read_bytes(n)))
        .collect()
}

/// The rows of a complete report: every customer once.
fn assert_complete(wd: &Workdir, command: Command, what: &str) {
    let text = wd.read("out.csv");
    let rows = Results::parse(&text).expect("a CSV report").rows;
    let distinct: BTreeSet<String> = rows.iter().map(|r| r.tenant().to_string()).collect();
    assert_eq!(
        (rows.len(), distinct.len()),
        (ROWS, ROWS),
        "{what}: every customer once in\n{text}"
    );
    if command != Command::Customers {
        let manifest: serde_json::Value =
            serde_json::from_str(&wd.read("out.csv.manifest.json")).expect("a JSON manifest");
        let named = manifest["report"].as_str().unwrap_or_default();
        assert!(
            named.ends_with("out.csv"),
            "{what}: the manifest names the final file, not {named:?}"
        );
    }
    for name in finals(command) {
        let partial = format!("{name}.partial");
        assert!(!wd.exists(&partial), "{what}: {partial} is left behind");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_appears_under_its_name_only_when_its_run_completes() {
    let commands = [
        Command::Status,
        Command::StatusWithEmit,
        Command::StatusAllCustomers,
        Command::Customers,
    ];
    let mut cases = 0;
    for command in commands {
        for earlier in [false, true] {
            for stop in [Stop::Interrupt, Stop::Kill] {
                cases += 1;
                let what = format!("{command:?}, earlier report {earlier}, {stop:?}");
                let sim = start_simulator(SimulatorConfig {
                    latency: Duration::from_millis(100),
                    customers: profiles(),
                    customers_page_size_max: 2,
                    ..Default::default()
                })
                .await;
                let base = sim.base_url();
                let wd = Workdir::new();
                wd.create_customers("in.csv", &Customer::many(ROWS));
                if earlier {
                    let mut first = wd.command(args(command, &base, "1000/s"));
                    first.env("PARTNER_CENTER_ACCESS_TOKEN", crate::common::TEST_TOKEN);
                    let run = first.run_async().await;
                    assert!(matches!(run.code(), Some(0 | 1)), "{what}: {run}");
                    assert_complete(&wd, command, &what);
                }
                let before = snapshot(&wd, &finals(command));

                let slow: Vec<String> = args(command, &base, "10/s");
                let slow: Vec<&str> = slow.iter().map(String::as_str).collect();
                let mut run = wd.spawn_with_token(&slow, "stopped.stderr");
                let calls = |s: &mca_attest::simulator::SimulatorStats| {
                    s.agreement_gets + s.customer_list_gets
                };
                let at_start = calls(&sim.stats());
                wait_until(
                    Duration::from_secs(30),
                    || calls(&sim.stats()) >= at_start + 3,
                    || format!("{what}: calls of the run{}", run.describe()),
                )
                .await;
                match stop {
                    Stop::Interrupt => run.interrupt(),
                    Stop::Kill => run.kill(),
                }
                let status = run.wait(Duration::from_secs(30)).await;
                if stop == Stop::Interrupt {
                    assert_eq!(status.code(), Some(130), "{what}{}", run.describe());
                }
                assert_eq!(
                    snapshot(&wd, &finals(command)),
                    before,
                    "{what}: the final names hold what they held before{}",
                    run.describe()
                );

                // Continued (status) or run again (customers): complete under the final name.
                let mut again = wd.command(args(command, &base, "1000/s"));
                if command != Command::Customers {
                    again.arg("--resume");
                }
                again.env("PARTNER_CENTER_ACCESS_TOKEN", crate::common::TEST_TOKEN);
                let run = again.run_async().await;
                assert!(matches!(run.code(), Some(0 | 1)), "{what}: {run}");
                assert_complete(&wd, command, &what);
            }
        }
    }
    assert_eq!(cases, 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_that_keeps_failing_leaves_the_final_name_as_it_was() {
    for earlier in [false, true] {
        let customers = profiles();
        let sim = start_simulator(SimulatorConfig {
            customers: customers.clone(),
            customers_page_size_max: 2,
            ..Default::default()
        })
        .await;
        let base = sim.base_url();
        let wd = Workdir::new();
        if earlier {
            let mut first = wd.command(args(Command::StatusAllCustomers, &base, "1000/s"));
            first.env("PARTNER_CENTER_ACCESS_TOKEN", crate::common::TEST_TOKEN);
            let run = first.run_async().await;
            assert!(matches!(run.code(), Some(0 | 1)), "{run}");
        }
        let before = snapshot(&wd, &finals(Command::StatusAllCustomers));
        // A service that no longer answers: every call fails.
        let mut args = args(Command::StatusAllCustomers, "http://127.0.0.1:9", "1000/s");
        args.extend(["--max-attempts".into(), "1".into()]);
        let mut again = wd.command(&args);
        again.env("PARTNER_CENTER_ACCESS_TOKEN", crate::common::TEST_TOKEN);
        let run = again.run_async().await;
        assert_eq!(run.code(), Some(3), "{run}");
        assert_eq!(
            snapshot(&wd, &finals(Command::StatusAllCustomers)),
            before,
            "earlier report {earlier}: the final name holds what it held before{run}"
        );
    }
}

#[test]
fn validate_writes_its_report_under_the_final_name_only_when_complete() {
    use std::io::Write;
    use std::process::{Command as Process, Stdio};
    for earlier in [false, true] {
        let wd = Workdir::new();
        let mut customers = Customer::many(ROWS);
        customers[3] = customers[3].clone().email("broken");
        let input = wd.create_customers("in.csv", &customers);
        let text = std::fs::read(&input).unwrap();
        if earlier {
            wd.command(["validate", "in.csv", "-o", "out.csv"])
                .run()
                .expect_code(1);
        }
        let before = snapshot(&wd, &["out.csv", "out.csv.manifest.json"]);
        // Half the rows on standard input, which then stays open: the run cannot complete,
        // and is killed.
        let mut child = Process::new(crate::common::binary())
            .args(["validate", "-", "-o", "out.csv", "-q"])
            .current_dir(wd.dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&text[..text.len() / 2]).unwrap();
        stdin.flush().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        drop(stdin);
        assert_eq!(
            snapshot(&wd, &["out.csv", "out.csv.manifest.json"]),
            before,
            "earlier report {earlier}: the final name holds what it held before"
        );
        let run = wd
            .command(["validate", "in.csv", "-o", "out.csv", "-q"])
            .run();
        run.expect_code(1);
        let report = wd.read("out.csv");
        let rows = Results::parse(&report).expect("a CSV report").rows;
        assert_eq!(rows.len(), ROWS, "{run}");
        assert!(!wd.exists("out.csv.partial"), "{run}");
        let manifest: serde_json::Value =
            serde_json::from_str(&wd.read("out.csv.manifest.json")).expect("a JSON manifest");
        assert!(
            manifest["report"]
                .as_str()
                .is_some_and(|r| r.ends_with("out.csv")),
            "{manifest}"
        );
    }
}
