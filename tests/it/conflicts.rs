//! The input agrees with itself: generated inputs name tenants from a small pool with signers
//! from a small pool (the same signer written in other case or spacing, other signers, rows
//! made invalid), in any order, sent by `confirm` with and without `--resume` over a results
//! file cut after any number of lines, and over an input edited between the two runs. The
//! properties, for every case:
//! - no tenant ever gets POSTs with two different signers, across all runs;
//! - `validate` and `confirm` agree row for row (valid ↔ sent, invalid, duplicate, conflict);
//! - every row of a tenant named with two signers is `conflict`, and its message names the
//!   tenant's other rows with their spreadsheet lines.

use std::collections::{BTreeMap, BTreeSet};

use crate::common::{Customer, Results, Workdir, start_simulator};
use mca_attest::simulator::SimulatorConfig;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

const TENANTS: [&str; 4] = [
    "0f4d6f3e-7b9a-4c1e-9d2b-3a5c7e9f1b2d",
    "1a2b3c4d-5e6f-4a1b-8c2d-3e4f5a6b7c8d",
    "2b3c4d5e-6f7a-4b2c-9d3e-4f5a6b7c8d9e",
    "3c4d5e6f-7a8b-4c3d-8e4f-5a6b7c8d9e0f",
];

/// One generated row: a tenant, a signer, how it is written, and whether it is broken.
#[derive(Debug, Clone)]
struct Row {
    tenant: usize,
    signer: usize,
    /// The same signer written otherwise (upper case, spaces around, braces on the tenant).
    shouted: bool,
    /// An email that cannot be sent: the row is invalid.
    broken: bool,
}

fn row() -> impl Strategy<Value = Row> {
    (
        0..TENANTS.len(),
        0..3usize,
        any::<bool>(),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(tenant, signer, shouted, broken)| Row {
            tenant,
            signer,
            shouted,
            broken,
        })
}

fn customer(r: &Row) -> Customer {
    let names = ["Ann", "Bob", "Cleo"];
    let first = names[r.signer];
    let email = format!("{}@contoso.com", first.to_lowercase());
    let mut c = Customer::new(0)
        .tenant(TENANTS[r.tenant])
        .first_name(first)
        .last_name("Lee")
        .email(&email);
    if r.shouted {
        c = c
            .tenant(&format!("{{{}}}", TENANTS[r.tenant].to_uppercase()))
            .first_name(&format!(" {} ", first.to_uppercase()))
            .email(&email.to_uppercase());
    }
    if r.broken {
        c = c.email("no-at-sign");
    }
    c
}

fn input(rows: &[Row]) -> Vec<Customer> {
    rows.iter().map(customer).collect()
}

/// The signer of a POST as Partner Center compares them: names and email case-insensitive.
fn signer_of(body: &serde_json::Value) -> String {
    let contact = &body["primaryContact"];
    let field = |k: &str| {
        contact[k]
            .as_str()
            .unwrap_or_default()
            .trim()
            .to_lowercase()
    };
    format!(
        "{}|{}|{}",
        field("firstName"),
        field("lastName"),
        field("email")
    )
}

/// What `validate` said of each row, in `confirm`'s words before sending.
fn expected(validated: &Results) -> BTreeMap<u64, String> {
    validated
        .rows
        .iter()
        .map(|r| {
            let status = match r.status() {
                "valid" => "sent",
                other => other,
            };
            (r.row(), status.to_string())
        })
        .collect()
}

/// What `confirm` recorded for each row (the last line of the row), sent rows as one word.
fn confirmed(results: &Results) -> BTreeMap<u64, String> {
    results
        .rows
        .iter()
        .map(|r| {
            let status = match r.status() {
                "confirmed" | "already_confirmed" => "sent",
                other => other,
            };
            (r.row(), status.to_string())
        })
        .collect()
}

fn cases() -> ProptestConfig {
    ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

async fn one_case(
    rows: Vec<Row>,
    cut: Option<usize>,
    edits: Vec<(usize, usize)>,
) -> Result<(), TestCaseError> {
    let sim = start_simulator(SimulatorConfig::default()).await;
    let base = sim.base_url();
    let wd = Workdir::new();
    wd.create_customers("in.csv", &input(&rows));
    let confirm = || wd.confirm_at_rate("in.csv", "r.csv", &base, "1000/s");
    let mut current = rows.clone();
    if let Some(cut) = cut {
        // A first run, its results file cut after `cut` lines as a killed run leaves it;
        // the input may then be edited (a signer changed) before the run is resumed.
        let first = confirm().run_async().await;
        prop_assert!(matches!(first.code(), Some(0 | 1)), "{first}");
        let text = wd.read("r.csv");
        let kept: Vec<&str> = text.lines().take(cut.saturating_add(1)).collect();
        wd.create("r.csv", format!("{}\n", kept.join("\n")));
        for (at, signer) in &edits {
            if let Some(r) = current.get_mut(*at) {
                r.signer = *signer;
            }
        }
        wd.create_customers("in.csv", &input(&current));
        let mut again = confirm();
        again.arg("--resume");
        let run = again.run_async().await;
        prop_assert!(matches!(run.code(), Some(0 | 1)), "{run}");
    } else {
        let run = confirm().run_async().await;
        prop_assert!(matches!(run.code(), Some(0 | 1)), "{run}");
    }

    // No tenant ever gets POSTs with two signers.
    let mut signers: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for request in sim.requests() {
        signers
            .entry(request.tenant.to_lowercase())
            .or_default()
            .insert(signer_of(&request.body));
    }
    for (tenant, seen) in &signers {
        prop_assert!(
            seen.len() == 1,
            "tenant {tenant} got POSTs with signers {seen:?}\nrows {rows:?}\nedits {edits:?}"
        );
    }

    // validate and confirm agree row for row (when the input is the one first sent).
    let results = Results::parse(&wd.read("r.csv")).expect("a results file");
    let recorded = confirmed(&results);
    prop_assert_eq!(
        recorded.keys().copied().collect::<Vec<_>>(),
        (1..=rows.len() as u64).collect::<Vec<_>>(),
        "every row has a line"
    );
    if edits.is_empty() {
        let validated = wd.command(["validate", "in.csv", "-o", "v.csv"]).run();
        prop_assert!(matches!(validated.code(), Some(0 | 1)), "{validated}");
        let validated = Results::parse(&wd.read("v.csv")).expect("a report");
        prop_assert_eq!(expected(&validated), recorded.clone());
    }

    // Conflicts: exactly the valid rows of tenants named with two signers; each names the
    // tenant's other valid rows.
    for (i, r) in current.iter().enumerate() {
        if r.broken {
            continue;
        }
        let of_tenant: Vec<usize> = current
            .iter()
            .enumerate()
            .filter(|(_, o)| o.tenant == r.tenant && !o.broken)
            .map(|(j, _)| j)
            .collect();
        let two_signers = of_tenant
            .iter()
            .map(|j| current[*j].signer)
            .collect::<BTreeSet<_>>()
            .len()
            > 1;
        // A resumed run records a row that is not done again: its last line is what holds.
        let Some(line) = results.rows.iter().rev().find(|l| l.row() == i as u64 + 1) else {
            return Err(TestCaseError::fail(format!("no line for row {}", i + 1)));
        };
        if two_signers {
            // A row done in the first run (before an edit) is on record and not sent again.
            if line.status() == "conflict" {
                for j in of_tenant.iter().filter(|j| **j != i).take(5) {
                    let named = format!("row {} (spreadsheet line {})", j + 1, j + 2);
                    prop_assert!(
                        line.get("message").contains(&named),
                        "row {}: {:?} lacks {named}",
                        i + 1,
                        line.get("message")
                    );
                }
                prop_assert_eq!(line.get("attempts"), "0");
            } else {
                prop_assert!(
                    cut.is_some(),
                    "row {} of a two-signer tenant: {line:?}",
                    i + 1
                );
            }
        } else if cut.is_none() {
            prop_assert!(line.status() != "conflict", "row {}: {line:?}", i + 1);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn no_tenant_gets_two_signers_and_validate_agrees_with_confirm(
        rows in prop::collection::vec(row(), 1..14),
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(one_case(rows, None, Vec::new()))?;
    }

    #[test]
    fn no_tenant_gets_two_signers_across_a_resume(
        rows in prop::collection::vec(row(), 1..14),
        cut in 0usize..14,
        edits in prop::collection::vec((0usize..14, 0usize..3), 0..3),
        edited in any::<bool>(),
    ) {
        // Either a run killed after `cut` lines resumed over the same input, or a complete
        // run resumed over an input whose signers were edited since (a lost line and an
        // edited input together leave no trace of what was sent: nothing can tell).
        let (cut, edits) = if edited { (usize::MAX, edits) } else { (cut, Vec::new()) };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(one_case(rows, Some(cut), edits))?;
    }
}

/// A killed run can leave the customer's confirmation on record but not the lines of its
/// duplicate rows (they are written as rows finish, in any order): `--resume` writes them,
/// sends nothing for them, and skips the duplicates that already have a line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_whose_lines_were_lost_get_them_on_resume() {
    let sim = start_simulator(SimulatorConfig::default()).await;
    let base = sim.base_url();
    let wd = Workdir::new();
    let ann = |shouted| Row {
        tenant: 0,
        signer: 0,
        shouted,
        broken: false,
    };
    let bob = Row {
        tenant: 1,
        signer: 1,
        shouted: false,
        broken: false,
    };
    // Rows 1, 3 and 5 are one customer and signer; 4 repeats 2.
    let rows = [ann(false), bob.clone(), ann(true), bob, ann(false)];
    wd.create_customers("in.csv", &input(&rows));
    let confirm = |resume: bool| {
        let mut cmd = wd.confirm_at_rate("in.csv", "r.csv", &base, "1000/s");
        if resume {
            cmd.arg("--resume");
        }
        cmd
    };
    let first = confirm(false).run_async().await;
    first.expect_code(0);
    let posts = sim.requests().len();
    // Keep the header, both confirmations and row 4's duplicate line; lose rows 3 and 5's.
    let text = wd.read("r.csv");
    let kept: Vec<&str> = text
        .lines()
        .enumerate()
        .filter(|(i, line)| {
            *i == 0 || line.starts_with("1,") || line.starts_with("2,") || line.starts_with("4,")
        })
        .map(|(_, line)| line)
        .collect();
    assert_eq!(kept.len(), 4, "{text}");
    wd.create("r.csv", format!("{}\n", kept.join("\n")));

    let resumed = confirm(true).run_async().await;
    resumed.expect_code(0);
    assert_eq!(sim.requests().len(), posts, "nothing sent again{resumed}");
    let results = Results::parse(&wd.read("r.csv")).expect("a results file");
    let mut lines: Vec<(u64, String)> = results
        .rows
        .iter()
        .map(|r| (r.row(), r.status().to_string()))
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            (1, "confirmed".to_string()),
            (2, "confirmed".to_string()),
            (3, "duplicate".to_string()),
            (4, "duplicate".to_string()),
            (5, "duplicate".to_string()),
        ],
        "every row one line{resumed}"
    );
}
