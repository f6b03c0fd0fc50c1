//! The habits of a good CLI, through the real binary: a flag given twice takes its last value,
//! `--summary-json -` writes to stdout, every stderr line is JSON with `--log-format json`
//! (errors and usage mistakes included), and `-q` leaves only errors.

use crate::common::{Customer, Workdir};

#[test]
fn a_flag_given_twice_takes_its_last_value() {
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(2));
    let run = wd
        .command([
            "confirm",
            "in.csv",
            "--simulator",
            "--rate",
            "1/h",
            "--rate",
            "500/s",
            "-o",
            "first.csv",
            "-o",
            "r.csv",
        ])
        .run();
    run.expect_code(0);
    assert!(wd.exists("r.csv") && !wd.exists("first.csv"), "{run}");
}

#[test]
fn the_summary_goes_to_stdout_with_a_dash() {
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(2));
    let run = wd
        .command([
            "confirm",
            "in.csv",
            "--simulator",
            "--rate",
            "500/s",
            "--summary-json",
            "-",
        ])
        .run();
    run.expect_code(0);
    let summary: serde_json::Value =
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("stdout is JSON: {e}{run}"));
    assert_eq!(summary["counts"]["confirmed"], 2, "{run}");
    assert!(!wd.exists("-"), "no file named '-'{run}");
}

#[test]
fn every_stderr_line_is_json_in_json_mode() {
    let wd = Workdir::new();
    wd.create_customers(
        "in.csv",
        &[Customer::new(1), Customer::new(2).email("nope")],
    );
    let runs = [
        wd.command([
            "confirm",
            "in.csv",
            "--simulator",
            "--rate",
            "500/s",
            "--log-format",
            "json",
        ])
        .run(),
        wd.command(["confirm", "in.csv", "--simulator", "--log-format", "json"])
            .run(),
        wd.command(["confirm", "--no-such-flag", "--log-format", "json"])
            .run(),
        wd.command(["status", "missing.csv", "--simulator", "--log-format=json"])
            .run(),
    ];
    let codes: Vec<Option<i32>> = runs.iter().map(crate::common::Run::code).collect();
    assert_eq!(codes, [Some(1), Some(2), Some(2), Some(2)]);
    for run in &runs {
        assert!(!run.stderr.trim().is_empty(), "{run}");
        for line in run.stderr.lines() {
            let value: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}{run}"));
            assert!(
                value["level"].is_string() && value["message"].is_string(),
                "{run}"
            );
        }
    }
    assert!(
        runs[0].stderr.contains(r#""kind":"summary""#),
        "{}",
        runs[0]
    );
    assert!(runs[1].stderr.contains("audit record"), "{}", runs[1]);
}

#[test]
fn quiet_leaves_only_errors() {
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(2));
    let run = wd
        .command(["confirm", "in.csv", "--simulator", "--rate", "500/s", "-q"])
        .run();
    run.expect_code(0);
    assert_eq!(run.stderr, "", "{run}");
    let again = wd.command(["confirm", "in.csv", "--simulator", "-q"]).run();
    again.expect_code(2).expect_stderr_contains("audit record");
}

/// Asks bash's completion function what `mca-attest SUBCOMMAND PREFIX<TAB>` offers.
fn bash_completes(script: &std::path::Path, subcommand: &str, prefix: &str) -> String {
    let probe = format!(
        r#"source "$1"
COMP_WORDS=(mca-attest {subcommand} {prefix}); COMP_CWORD=2
COMP_LINE="mca-attest {subcommand} {prefix}"; COMP_POINT=${{#COMP_LINE}}
_mca__attest mca-attest {prefix} {subcommand}
printf '%s\n' "${{COMPREPLY[@]}}""#
    );
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(probe)
        .arg("probe")
        .arg(script)
        .output()
        .expect("run bash");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn bash_completes_flags_after_the_subcommand() {
    let wd = Workdir::new();
    let run = wd.command(["completions", "bash"]).run();
    run.expect_code(0);
    let script = wd.create("mca-attest.bash", &run.stdout);
    assert_eq!(bash_completes(&script, "confirm", "--ra").trim(), "--rate");
    assert_eq!(
        bash_completes(&script, "status", "--all").trim(),
        "--all-customers"
    );
    assert!(bash_completes(&script, "customers", "--max").contains("--max-attempts"));
}

/// `validate` and `confirm` list the first ten invalid rows on stderr alike, for a sweep of
/// invalid-row counts around ten, and say how many more the report holds.
#[test]
fn validate_and_confirm_show_the_first_ten_bad_rows_with_their_messages() {
    for bad in [0usize, 1, 9, 10, 11, 14] {
        let wd = Workdir::new();
        let mut customers: Vec<Customer> = (1..=bad)
            .map(|n| Customer::new(n).email(&format!("broken{n}")))
            .collect();
        customers.push(Customer::new(bad + 1));
        wd.create_customers("in.csv", &customers);
        for command in [
            vec!["validate", "in.csv", "-o", "v.csv"],
            vec!["confirm", "in.csv", "-o", "r.csv", "--simulator"],
        ] {
            let run = wd.command(&command).run();
            run.expect_code(if bad == 0 { 0 } else { 1 });
            let shown: Vec<&str> = run
                .stderr
                .lines()
                .filter(|l| l.trim_start().starts_with("row "))
                .collect();
            assert_eq!(shown.len(), bad.min(10), "{command:?}{run}");
            for (n, line) in shown.iter().enumerate() {
                let row = n + 1;
                assert!(
                    line.contains(&format!("row {row} (spreadsheet line {}): email", row + 1))
                        && line.contains(&format!("broken{row}")),
                    "{command:?}: {line}{run}"
                );
            }
            let more = bad.saturating_sub(10);
            assert_eq!(
                run.stderr
                    .contains(&format!("and {more} more in the report")),
                more > 0,
                "{command:?}{run}"
            );
            let mut quiet_command = command.clone();
            quiet_command.push("-q");
            if command[0] == "confirm" {
                // A results file is never replaced: the quiet run resumes it.
                quiet_command.push("--resume");
            }
            let quiet = wd.command(&quiet_command).run();
            assert_eq!(quiet.stderr, "", "{quiet}");
        }
    }
}
