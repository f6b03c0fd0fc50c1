//! `mca-attest template` (the MCA template metadata as JSON) and `mca-attest completions`.

use crate::common::{Workdir, default_simulator};
use mca_attest::simulator::{MCA_CLOUD_TEMPLATE_ID, MCA_TEMPLATE_ID};
use serde_json::Value;

fn stdout_json(run: &crate::common::Run) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("stdout is not JSON: {e}{run}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_prints_the_mca_template_as_json() {
    let sim = default_simulator().await;
    let wd = Workdir::new();

    let mut cmd = wd.command(["template", "--base-url", &sim.base_url()]);
    cmd.env("PARTNER_CENTER_ACCESS_TOKEN", crate::common::TEST_TOKEN);
    let run = cmd.run_async().await;

    run.expect_code(0);
    let json = stdout_json(&run);
    assert_eq!(json["templateId"], MCA_TEMPLATE_ID, "{run}");
    assert_eq!(json["agreementType"], "MicrosoftCustomerAgreement", "{run}");
    assert_eq!(sim.stats().template_gets, 1, "{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_all_lists_every_agreement_type() {
    let sim = default_simulator().await;
    let wd = Workdir::new();

    let mut cmd = wd.command(["template", "--all", "--base-url", &sim.base_url()]);
    cmd.env("PARTNER_CENTER_ACCESS_TOKEN", crate::common::TEST_TOKEN);
    let run = cmd.run_async().await;

    run.expect_code(0);
    let json = stdout_json(&run);
    let items = json
        .as_array()
        .or_else(|| json["items"].as_array())
        .unwrap_or_else(|| panic!("no list of templates{run}"));
    assert!(items.len() > 1, "more than one template listed{run}");
    let ids: Vec<&str> = items
        .iter()
        .filter_map(|i| i["templateId"].as_str())
        .collect();
    assert!(
        ids.contains(&MCA_TEMPLATE_ID) && ids.contains(&MCA_CLOUD_TEMPLATE_ID),
        "{ids:?}{run}"
    );
}

#[test]
fn template_runs_against_the_built_in_simulator_without_credentials() {
    let wd = Workdir::new();

    let run = wd.command(["template", "--simulator"]).run();

    run.expect_code(0);
    assert_eq!(stdout_json(&run)["templateId"], MCA_TEMPLATE_ID, "{run}");
}

#[test]
fn bash_completions_mention_the_binary() {
    let wd = Workdir::new();

    let run = wd.command(["completions", "bash"]).run();

    run.expect_code(0).expect_stdout_contains("mca-attest");
    run.check(
        run.stdout.contains("confirm") && run.stdout.contains("validate"),
        "the script completes the subcommands",
    );
}
