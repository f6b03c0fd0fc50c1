//! `mca-attest simulator` as a separate process: it announces its address on one stdout line,
//! serves a `confirm` run, answers its own stats and request log, loads its data files, and
//! stops on SIGTERM.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::common::{Customer, Results, Workdir, counts};
use serde_json::Value;

const PREFIX: &str = "mca-attest simulator listening on ";

/// A running `mca-attest simulator` child; killed when dropped, even when a test fails.
struct SimulatorProcess {
    child: Child,
    base_url: String,
    /// Lines written to stdout after the listening line, as they come.
    later_lines: mpsc::Receiver<String>,
    stderr_path: std::path::PathBuf,
}

impl SimulatorProcess {
    /// Starts the simulator on a free port with `extra` flags, and waits for its listening line.
    fn start(wd: &Workdir, extra: &[&str]) -> SimulatorProcess {
        let stderr_path = wd.path("simulator.stderr");
        let stderr = File::create(&stderr_path).expect("create the simulator's stderr file");
        let mut cmd = Command::new(crate::common::binary());
        cmd.args(["simulator", "--listen", "127.0.0.1:0"])
            .args(extra)
            .current_dir(wd.dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("PARTNER_CENTER_") {
                cmd.env_remove(&name);
            }
        }
        cmd.env_remove("RUST_LOG");
        let mut child = cmd.spawn().expect("spawn mca-attest simulator");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut process = SimulatorProcess {
            child,
            base_url: String::new(),
            later_lines: rx,
            stderr_path,
        };
        let first = process.later_lines.recv_timeout(Duration::from_secs(30));
        let line = match first {
            Ok(line) => line,
            Err(e) => panic!(
                "no listening line from the simulator ({e}){}",
                process.describe()
            ),
        };
        let url = line.strip_prefix(PREFIX).unwrap_or_else(|| {
            panic!(
                "unexpected first stdout line {line:?}{}",
                process.describe()
            )
        });
        assert!(
            url.starts_with("http://127.0.0.1:") && !url.ends_with(":0"),
            "the line names the bound address: {line:?}{}",
            process.describe()
        );
        process.base_url = url.to_string();
        process
    }

    fn describe(&self) -> String {
        let stderr = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
        format!("\n--- simulator stderr ---\n{stderr}")
    }

    async fn get_json(&self, path: &str) -> Value {
        let url = format!("{}{path}", self.base_url);
        let response = crate::common::get(&url)
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}{}", self.describe()));
        assert!(
            response.status().is_success(),
            "GET {url}: {}{}",
            response.status(),
            self.describe()
        );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_subcommand_serves_a_confirm_run_and_reports_its_counts() {
    let wd = Workdir::new();
    let sim = SimulatorProcess::start(&wd, &[]);
    wd.create_customers("in.csv", &Customer::many(3));

    let run = wd
        .confirm("in.csv", "r.csv", &sim.base_url)
        .run_async()
        .await;

    run.expect_code(0);
    let results = Results::read(&wd.path("r.csv"), &run);
    assert_eq!(results.counts(), counts(&[("confirmed", 3)]), "{run}");
    let stats = sim.get_json("/_simulator/stats").await;
    assert_eq!(stats["template_gets"], 1, "{stats}{run}");
    assert_eq!(stats["agreement_posts"], 3, "{stats}{run}");
    assert_eq!(stats["agreements_created"], 3, "{stats}{run}");
    assert_eq!(stats["throttled"], 0, "{stats}{run}");
    let requests = sim.get_json("/_simulator/requests").await;
    let requests = requests
        .as_array()
        .unwrap_or_else(|| panic!("requests is not a list: {requests}"));
    assert_eq!(requests.len(), 3, "{requests:?}{run}");
    for line in &results.rows {
        let sent = requests
            .iter()
            .find(|r| r["tenant"] == line.tenant())
            .unwrap_or_else(|| panic!("no recorded POST for {line:?}: {requests:?}"));
        assert_eq!(
            sent["request_id"],
            line.get("request_id"),
            "{sent} {line:?}{run}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_subcommand_loads_existing_agreements_and_unknown_tenants() {
    let wd = Workdir::new();
    let done = Customer::new(1);
    let unknown = Customer::new(2);
    wd.create_customers("existing.csv", std::slice::from_ref(&done));
    wd.create("unknown.txt", format!("{}\n", unknown.tenant));
    let sim = SimulatorProcess::start(
        &wd,
        &[
            "--existing",
            "existing.csv",
            "--unknown-tenants",
            "unknown.txt",
        ],
    );
    wd.create_customers("in.csv", &[done, unknown, Customer::new(3)]);

    let run = wd
        .confirm("in.csv", "r.csv", &sim.base_url)
        .run_async()
        .await;

    run.expect_code(1);
    let results = Results::read(&wd.path("r.csv"), &run);
    assert_eq!(results.by_row(1).status(), "already_confirmed", "{run}");
    assert_eq!(results.by_row(2).status(), "failed", "{run}");
    assert_eq!(results.by_row(2).get("error_code"), "60003", "{run}");
    assert_eq!(results.by_row(3).status(), "confirmed", "{run}");
    let stats = sim.get_json("/_simulator/stats").await;
    assert_eq!(stats["agreements_created"], 1, "{stats}{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_subcommand_stops_on_sigterm_having_printed_one_stdout_line() {
    let wd = Workdir::new();
    let mut sim = SimulatorProcess::start(&wd, &[]);
    let stats = sim.get_json("/_simulator/stats").await;
    assert_eq!(
        stats["agreement_posts"],
        0,
        "a fresh simulator{}",
        sim.describe()
    );

    let pid = sim.child.id().to_string();
    let signalled = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(signalled.success(), "kill -TERM {pid} failed");

    // The stdout reader ends when the process closes its stdout, i.e. when it exits.
    let mut later = Vec::new();
    loop {
        match sim.later_lines.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => later.push(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("the simulator did not stop on SIGTERM{}", sim.describe())
            }
        }
    }
    assert!(
        later.is_empty(),
        "stdout holds only the listening line, also got {later:?}{}",
        sim.describe()
    );
    let status = sim.child.wait().expect("wait for the simulator");
    assert!(
        status.code().is_some(),
        "the simulator exited on its own, not by a signal: {status}{}",
        sim.describe()
    );
}
