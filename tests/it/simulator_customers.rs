//! The simulator's customer listing, walked as a client walks it: `GET /v1/customers?size=N`,
//! then `links.next` (with or without `/v1`) with every header it lists, until no `next`.
//! In-process for 1,234 customers loaded from a `--customers` file, under a rate limit and
//! under faults, and once through `mca-attest simulator --customers FILE`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::common::{Workdir, start_simulator};
use clap::Parser;
use mca_attest::cli::{Cli, Command as CliCommand};
use mca_attest::simulator::SimulatorConfig;
use reqwest::StatusCode;
use serde_json::Value;
use url::Url;
use uuid::Uuid;

const TOKEN: &str = "test-token";
const CUSTOMERS: usize = 1234;
/// A walk that takes more tries than this is stuck.
const MAX_TRIES: usize = 400;

/// One customer as written to the file and expected back.
#[derive(Debug, Clone)]
struct Expected {
    tenant: Uuid,
    name: String,
    domain: String,
    relationship: String,
}

/// Names with commas, quotes, accents and other scripts; every third one left blank (the
/// simulator makes one up), every fifth relationship left blank (`reseller`).
fn expected_customers(n: usize) -> Vec<Expected> {
    let names = [
        "Contoso, Ltd.",
        "Fabrikam \"North\" GmbH",
        "Café Zoë, S.à r.l.",
        "Ångström & Søn A/S",
        "Müller-Lüdenscheidt \"Quoted, with comma\"",
        "株式会社サンプル",
        "Ñandú, \"El\" S.A.",
    ];
    (0..n)
        .map(|i| {
            let tenant = Uuid::new_v4();
            let short: String = tenant.simple().to_string().chars().take(8).collect();
            let (name, domain) = if i % 3 == 2 {
                (
                    format!("Customer {short}"),
                    format!("c{short}.onmicrosoft.com"),
                )
            } else {
                (
                    format!("{} #{i}", names[i % names.len()]),
                    format!("tenant{i}.onmicrosoft.com"),
                )
            };
            // Blank in the file every fifth row: the simulator says `reseller`.
            let relationship = if i % 5 != 4 && i % 2 == 1 {
                "advisor"
            } else {
                "reseller"
            }
            .to_owned();
            Expected {
                tenant,
                name,
                domain,
                relationship,
            }
        })
        .collect()
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// The `--customers` file for `customers`, with blank cells where the simulator fills in.
fn customers_csv(customers: &[Expected]) -> String {
    let mut text = String::from("customer_tenant_id,company_name,domain,relationship_to_partner\n");
    for (i, c) in customers.iter().enumerate() {
        let (name, domain) = if i % 3 == 2 {
            (String::new(), String::new())
        } else {
            (csv_cell(&c.name), csv_cell(&c.domain))
        };
        let relationship = if i % 5 == 4 { "" } else { &c.relationship };
        text.push_str(&format!("{},{name},{domain},{relationship}\n", c.tenant));
    }
    text
}

/// The config `mca-attest simulator --customers FILE FLAGS...` would build.
fn config_from_flags(flags: &[&str]) -> SimulatorConfig {
    let argv = ["mca-attest", "simulator"]
        .into_iter()
        .chain(flags.iter().copied());
    let args = match Cli::try_parse_from(argv).map(|cli| cli.command) {
        Ok(CliCommand::Simulator(args)) => args,
        other => panic!("not a simulator command line: {other:?}"),
    };
    mca_attest::commands::simulator::config(&args).expect("the config builds")
}

/// Joins a `links.next.uri` to the API root (`https://host`, no `/v1`), whichever form it
/// takes: `/v1/customers?...`, `/customers?...`, `customers?...` or an absolute URL.
fn join_next(root: &Url, uri: &str) -> Url {
    if let Ok(absolute) = Url::parse(uri) {
        return absolute;
    }
    let relative = uri.trim_start_matches('/');
    let relative = relative.strip_prefix("v1/").unwrap_or(relative);
    let mut api = root.clone();
    api.set_path("/v1/");
    api.join(relative)
        .expect("the next link joins to the API root")
}

/// What a walk saw.
#[derive(Debug, Default)]
struct Walk {
    items: Vec<Value>,
    pages: usize,
    next_uris: Vec<String>,
    throttled: usize,
    failed: usize,
}

/// Walks the listing from `GET {root}/v1/customers?size=N` to the page without `next`,
/// retrying a page after a 429 (waiting `Retry-After`), a 5xx or a lost connection with the
/// same URI and headers.
async fn walk(root: &str, size: usize) -> Walk {
    let root = Url::parse(root).expect("root URL");
    let client = crate::common::http()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let mut url = join_next(&root, &format!("/v1/customers?size={size}"));
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut walk = Walk::default();
    let mut tries = 0;
    loop {
        tries += 1;
        assert!(tries <= MAX_TRIES, "the walk is stuck: {walk:?}");
        let mut request = client.get(url.clone()).bearer_auth(TOKEN);
        for (key, value) in &headers {
            request = request.header(key, value);
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(_) => {
                walk.failed += 1;
                continue;
            }
        };
        let status = response.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            walk.throttled += 1;
            let wait: u64 = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .expect("a 429 carries Retry-After in seconds");
            tokio::time::sleep(Duration::from_secs(wait)).await;
            continue;
        }
        if status.is_server_error() {
            walk.failed += 1;
            continue;
        }
        let page: Value = response.json().await.expect("a page is JSON");
        assert_eq!(status, StatusCode::OK, "{url}: {page}");
        assert_eq!(page["attributes"]["objectType"], "Collection", "{page}");
        walk.pages += 1;
        walk.items
            .extend(page["items"].as_array().expect("items").iter().cloned());
        let Some(next) = page["links"].get("next") else {
            return walk;
        };
        assert_eq!(next["method"], "GET", "{next}");
        let uri = next["uri"].as_str().expect("next.uri");
        walk.next_uris.push(uri.to_owned());
        url = join_next(&root, uri);
        headers = next["headers"]
            .as_array()
            .expect("next.headers")
            .iter()
            .map(|h| {
                let key = h["key"].as_str().expect("header key").to_owned();
                let value = h["value"].as_str().expect("header value").to_owned();
                (key, value)
            })
            .collect();
    }
}

/// Every customer exactly once, with the fields it was given or the ones made up for it.
fn assert_listed_once(walk: &Walk, customers: &[Expected]) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for item in &walk.items {
        let id = item["id"].as_str().expect("id").to_owned();
        *seen.entry(id).or_default() += 1;
    }
    let twice: Vec<&String> = seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(t, _)| t)
        .collect();
    assert!(twice.is_empty(), "listed more than once: {twice:?}");
    assert_eq!(walk.items.len(), customers.len(), "every customer, once");
    for (item, c) in walk.items.iter().zip(customers) {
        let tenant = c.tenant.to_string();
        assert_eq!(item["id"], tenant.as_str(), "file order");
        let profile = &item["companyProfile"];
        assert_eq!(profile["tenantId"], tenant.as_str(), "{item}");
        assert_eq!(profile["companyName"], c.name.as_str(), "{item}");
        assert_eq!(profile["domain"], c.domain.as_str(), "{item}");
        assert_eq!(
            profile["attributes"]["objectType"], "CustomerCompanyProfile",
            "{item}"
        );
        assert_eq!(
            item["relationshipToPartner"],
            c.relationship.as_str(),
            "{item}"
        );
        assert_eq!(item["attributes"]["objectType"], "Customer", "{item}");
    }
}

#[tokio::test]
async fn a_client_walks_1234_customers_through_both_link_forms() {
    let wd = Workdir::new();
    let customers = expected_customers(CUSTOMERS);
    let file = wd.create("customers.csv", customers_csv(&customers));
    let file = file.to_string_lossy().into_owned();
    let sim = start_simulator(config_from_flags(&["--customers", &file])).await;

    let walk = walk(&sim.base_url(), 100).await;

    assert_listed_once(&walk, &customers);
    assert_eq!(walk.pages, 13);
    assert!(
        walk.next_uris
            .iter()
            .any(|u| u.starts_with("/v1/customers?"))
            && walk.next_uris.iter().any(|u| u.starts_with("/customers?")),
        "both forms of next link: {:?}",
        walk.next_uris
    );
    assert_eq!((walk.throttled, walk.failed), (0, 0));
    assert_eq!(sim.stats().customer_list_gets, 13);
    sim.shutdown().await;
}

#[tokio::test]
async fn the_listing_is_rate_limited_and_a_client_that_waits_gets_everyone() {
    let wd = Workdir::new();
    let customers = expected_customers(CUSTOMERS);
    let file = wd.create("customers.csv", customers_csv(&customers));
    let file = file.to_string_lossy().into_owned();
    let sim = start_simulator(config_from_flags(&[
        "--customers",
        &file,
        "--rate-limit",
        "4/s",
    ]))
    .await;

    let walk = walk(&sim.base_url(), 250).await;

    assert_listed_once(&walk, &customers);
    assert_eq!(walk.pages, 5);
    assert!(walk.throttled >= 1, "{walk:?}");
    let stats = sim.stats();
    assert_eq!(stats.throttled, walk.throttled as u64);
    assert_eq!(
        stats.customer_list_gets,
        (walk.pages + walk.throttled) as u64
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn the_listing_survives_failures_and_dropped_connections() {
    let wd = Workdir::new();
    let customers = expected_customers(CUSTOMERS);
    let file = wd.create("customers.csv", customers_csv(&customers));
    let file = file.to_string_lossy().into_owned();
    let sim = start_simulator(config_from_flags(&[
        "--customers",
        &file,
        "--fail-rate",
        "0.25",
        "--drop-rate",
        "0.25",
        "--seed",
        "11",
        "--customers-next-link",
        "bare",
    ]))
    .await;

    let walk = walk(&sim.base_url(), 50).await;

    assert_listed_once(&walk, &customers);
    assert_eq!(walk.pages, 25);
    assert!(
        walk.next_uris.iter().all(|u| u.starts_with("/customers?")),
        "{:?}",
        walk.next_uris
    );
    assert!(walk.failed >= 1, "{walk:?}");
    assert_eq!(sim.stats().faults_injected, walk.failed as u64);
    sim.shutdown().await;
}

/// `mca-attest simulator` in the background; killed when dropped.
struct SimulatorProcess {
    child: Child,
    base_url: String,
}

impl SimulatorProcess {
    fn start(wd: &Workdir, extra: &[&str]) -> SimulatorProcess {
        let mut cmd = Command::new(crate::common::binary());
        cmd.args(["simulator", "--listen", "127.0.0.1:0"])
            .args(extra)
            .current_dir(wd.dir())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("spawn mca-attest simulator");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut process = SimulatorProcess {
            child,
            base_url: String::new(),
        };
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the simulator prints its listening line");
        process.base_url = line
            .trim()
            .strip_prefix("mca-attest simulator listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        process
    }
}

impl Drop for SimulatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_subcommand_serves_a_customers_file() {
    let wd = Workdir::new();
    let customers = expected_customers(25);
    wd.create("customers.csv", customers_csv(&customers));
    let sim = SimulatorProcess::start(&wd, &["--customers", "customers.csv"]);

    let walk = walk(&sim.base_url, 10).await;

    assert_listed_once(&walk, &customers);
    assert_eq!(
        walk.next_uris,
        [
            "/v1/customers?size=10&seekOperation=Next",
            "/customers?size=10&seekOperation=Next",
        ]
    );
    let stats: Value = crate::common::get(&format!("{}/_simulator/stats", sim.base_url))
        .await
        .expect("stats answer")
        .json()
        .await
        .expect("stats are JSON");
    assert_eq!(stats["customer_list_gets"], 3, "{stats}");
}

#[test]
fn the_simulator_subcommand_refuses_a_bad_customers_file() {
    let wd = Workdir::new();
    let t = Uuid::new_v4();
    wd.create(
        "customers.csv",
        format!("customer_tenant_id,company_name\n{t},\"A, Inc.\"\n{t},Again\n"),
    );
    let run = wd
        .command([
            "simulator",
            "--listen",
            "127.0.0.1:0",
            "--customers",
            "customers.csv",
        ])
        .run();
    run.check(run.code().is_some_and(|c| c != 0), "a non-zero exit")
        .expect_stderr_contains("customers.csv:3")
        .expect_stderr_contains("twice");
}
