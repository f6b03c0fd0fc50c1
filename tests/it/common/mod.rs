//! Shared helpers of the integration tests: a [`Workdir`] that holds a run's files in a fresh
//! temporary directory and runs the real binary there, the [`Run`] it returns (which shows the
//! command, its exit status, stdout and stderr whenever an assertion on it fails), a reader for
//! results files, an in-process Partner Center simulator started on a free loopback port, and
//! a programmable fake server ([`fake`]) for what the simulator does not do.
//!
//! Every test binary includes this module but uses only part of it.
#![allow(dead_code)]

pub mod fake;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use mca_attest::simulator::{Simulator, SimulatorConfig, SimulatorStats};
use uuid::Uuid;

/// The results header of the contract, in order.
pub const RESULTS_HEADER: &str = "row,customer_tenant_id,first_name,last_name,email,phone_number,date_agreed,status,http_status,error_code,error_name,message,attempts,template_id,request_id,correlation_id,finished_at";

/// The input header of the contract.
pub const INPUT_HEADER: &str =
    "customer_tenant_id,first_name,last_name,email,phone_number,date_agreed";

/// The token tests hand to the binary when the simulator accepts any token.
pub const TEST_TOKEN: &str = "test-token";

/// A run that takes longer than this is killed: a hung binary fails its test instead of
/// hanging the suite.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// Environment variables the binary reads; a run never inherits them from the machine.
const PRODUCT_ENV: [&str; 8] = [
    "PARTNER_CENTER_ACCESS_TOKEN",
    "PARTNER_CENTER_TENANT_ID",
    "PARTNER_CENTER_CLIENT_ID",
    "PARTNER_CENTER_CLIENT_SECRET",
    "PARTNER_CENTER_REFRESH_TOKEN",
    "PARTNER_CENTER_AUTHORITY",
    "PARTNER_CENTER_BASE_URL",
    "RUST_LOG",
];

/// The path of the built binary under test.
/// A plain HTTP client for the tests' own calls, after installing the TLS crypto provider the
/// product installs (reqwest is built without one).
pub fn http() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

/// GET `url` with a plain client.
pub async fn get(url: &str) -> reqwest::Result<reqwest::Response> {
    http().build()?.get(url).send().await
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_mca-attest")
}

/// A fresh temporary directory for one test's files, deleted when dropped.
pub struct Workdir {
    dir: tempfile::TempDir,
}

impl Default for Workdir {
    fn default() -> Self {
        Self::new()
    }
}

impl Workdir {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("mca-attest-test-")
            .tempdir()
            .expect("create a temporary directory");
        Workdir { dir }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The path of `name` inside the workdir (the file need not exist).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `contents` to `name` and returns its path.
    pub fn create(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("create {}: {e}", parent.display()));
        }
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// Writes an input file in the contract's layout, one line per customer.
    pub fn create_customers(&self, name: &str, customers: &[Customer]) -> PathBuf {
        let mut text = format!("{INPUT_HEADER}\n");
        for c in customers {
            text.push_str(&c.csv_line(','));
            text.push('\n');
        }
        self.create(name, text)
    }

    /// Copies a file of the repository (e.g. `samples/customers.csv`) into the workdir.
    pub fn copy_from_repo(&self, repo_path: &str, name: &str) -> PathBuf {
        let from = Path::new(env!("CARGO_MANIFEST_DIR")).join(repo_path);
        let to = self.path(name);
        std::fs::copy(&from, &to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
        to
    }

    pub fn read(&self, name: &str) -> String {
        let path = self.path(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }

    pub fn read_bytes(&self, name: &str) -> Vec<u8> {
        let path = self.path(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }

    pub fn exists(&self, name: &str) -> bool {
        self.path(name).exists()
    }

    /// Every file in the workdir, with its bytes.
    pub fn files(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(self.dir()).expect("list the workdir") {
            let path = entry.expect("read a workdir entry").path();
            if path.is_file() {
                let bytes = std::fs::read(&path).unwrap_or_default();
                out.push((path, bytes));
            }
        }
        out
    }

    /// The binary with `args`, run in the workdir with a clean environment: no
    /// `PARTNER_CENTER_*` variable and no `RUST_LOG` unless the test sets them.
    pub fn command<I, S>(&self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<String> = args
            .into_iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect();
        let mut cmd = self.clean_command(binary());
        cmd.args(&args);
        prepare(cmd, format!("mca-attest {}", args.join(" ")))
    }

    /// The binary with `args`, like [`Workdir::command`], run by `sh` under a limit on the size
    /// of any file it writes (`ulimit -f`: blocks of 512 bytes in dash, 1024 in bash) and with
    /// SIGXFSZ ignored, so that a write past the limit fails with EFBIG instead of killing the
    /// process: a disk that fills up in the middle of a run.
    pub fn command_with_file_size_limit<I, S>(&self, blocks: u32, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<String> = args
            .into_iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect();
        let script = format!("trap '' XFSZ; ulimit -f {blocks} && exec \"$0\" \"$@\"");
        let mut cmd = self.clean_command("sh");
        cmd.arg("-c").arg(&script).arg(binary()).args(&args);
        prepare(
            cmd,
            format!("sh -c {script:?} mca-attest {}", args.join(" ")),
        )
    }

    /// `program` run in the workdir with a clean environment: no `PARTNER_CENTER_*` variable
    /// and no `RUST_LOG` unless the test sets them.
    fn clean_command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(self.dir());
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("PARTNER_CENTER_") {
                cmd.env_remove(&name);
            }
        }
        for name in PRODUCT_ENV {
            cmd.env_remove(name);
        }
        cmd.env("NO_COLOR", "1");
        cmd
    }

    /// `confirm INPUT -o OUTPUT` against the simulator at `base_url` with a test token, fast and
    /// without a progress bar.
    pub fn confirm(&self, input: &str, output: &str, base_url: &str) -> Cmd {
        self.confirm_at_rate(input, output, base_url, "1000/s")
    }

    /// Like [`Workdir::confirm`], at `--rate RATE`.
    pub fn confirm_at_rate(&self, input: &str, output: &str, base_url: &str, rate: &str) -> Cmd {
        let mut cmd = self.command(confirm_args(input, output, base_url, rate));
        cmd.env("PARTNER_CENTER_ACCESS_TOKEN", TEST_TOKEN);
        cmd
    }

    /// Like [`Workdir::confirm_at_rate`], under a limit of `blocks` on the size of any file the
    /// run writes (see [`Workdir::command_with_file_size_limit`]).
    pub fn confirm_with_file_size_limit(
        &self,
        blocks: u32,
        input: &str,
        output: &str,
        base_url: &str,
        rate: &str,
    ) -> Cmd {
        let mut cmd =
            self.command_with_file_size_limit(blocks, confirm_args(input, output, base_url, rate));
        cmd.env("PARTNER_CENTER_ACCESS_TOKEN", TEST_TOKEN);
        cmd
    }

    /// Starts `confirm INPUT -o OUTPUT` against the simulator at `base_url` at `--rate RATE`,
    /// with `extra` arguments and a test token, in the background: for tests that interrupt or
    /// kill a run. Its stderr goes to `OUTPUT.stderr` in the workdir.
    pub fn spawn_confirm(
        &self,
        input: &str,
        output: &str,
        base_url: &str,
        rate: &str,
        extra: &[&str],
    ) -> Background {
        let mut args = confirm_args(input, output, base_url, rate);
        args.extend(extra.iter().map(|a| (*a).to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.spawn_with_token(&args, &format!("{output}.stderr"))
    }

    /// Starts the binary with `args` and a test token in the background, like
    /// [`Workdir::spawn_confirm`] but for any command (e.g. `status`). Its stderr goes to
    /// `stderr_name` in the workdir.
    pub fn spawn_with_token(&self, args: &[&str], stderr_name: &str) -> Background {
        self.spawn_with_env(
            args,
            &[("PARTNER_CENTER_ACCESS_TOKEN", TEST_TOKEN)],
            stderr_name,
        )
    }

    /// Starts the binary with `args` and only the variables `env` of the product's own (no
    /// test token) in the background, e.g. the refresh-token flow. Its stderr goes to
    /// `stderr_name` in the workdir.
    pub fn spawn_with_env(
        &self,
        args: &[&str],
        env: &[(&str, &str)],
        stderr_name: &str,
    ) -> Background {
        let stderr = self.path(stderr_name);
        let mut cmd = self.clean_command(binary());
        cmd.args(args);
        for (name, value) in env {
            cmd.env(name, value);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("create the stderr file"));
        let command = format!("mca-attest {}", args.join(" "));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{command}`: {e}"));
        Background {
            child,
            command,
            stderr,
        }
    }
}

/// A command to run to completion, killed if it outlives [`RUN_TIMEOUT`].
fn prepare(cmd: Command, shown: String) -> Cmd {
    let mut cmd = assert_cmd::Command::from_std(cmd);
    cmd.timeout(RUN_TIMEOUT);
    Cmd {
        cmd,
        shown,
        env: Vec::new(),
    }
}

fn confirm_args(input: &str, output: &str, base_url: &str, rate: &str) -> Vec<String> {
    [
        "confirm",
        input,
        "-o",
        output,
        "--base-url",
        base_url,
        "--rate",
        rate,
        "--no-progress",
    ]
    .iter()
    .map(|a| (*a).to_string())
    .collect()
}

/// A run of the binary in the background, killed if still running when dropped so that a
/// failing test leaves nothing behind.
pub struct Background {
    child: Child,
    command: String,
    stderr: PathBuf,
}

impl Background {
    /// What the run has written to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The command and its stderr, for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "\n--- command ---\n{}\n--- stderr ---\n{}",
            self.command,
            self.stderr()
        )
    }

    /// Sends SIGINT, as Ctrl-C does.
    pub fn interrupt(&self) {
        self.signal("INT");
    }

    /// Sends the signal `name` (`INT`, `TERM`, `HUP`, ...).
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .expect("run kill");
        assert!(
            status.success(),
            "kill -{name} {pid} failed{}",
            self.describe()
        );
    }

    /// Sends SIGKILL and reaps the process: a crash, nothing gets to run.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL the run");
        self.child.wait().expect("reap the killed run");
    }

    /// Waits for the run to end by itself, panicking after `timeout`.
    pub async fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the run") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the run did not end within {timeout:?}{}",
                self.describe()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `condition` every 10 ms until it holds, panicking with `what()` after `timeout`.
pub async fn wait_until(
    timeout: Duration,
    mut condition: impl FnMut() -> bool,
    what: impl Fn() -> String,
) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "waited {timeout:?} for {}",
            what()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A command about to run, remembering how to show itself.
pub struct Cmd {
    cmd: assert_cmd::Command,
    shown: String,
    env: Vec<String>,
}

impl Cmd {
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Self {
        self.shown.push(' ');
        self.shown.push_str(&arg.as_ref().to_string_lossy());
        self.cmd.arg(arg);
        self
    }

    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        for a in args {
            self.arg(a);
        }
        self
    }

    pub fn env(&mut self, name: &str, value: &str) -> &mut Self {
        self.env.retain(|e| !e.starts_with(&format!("{name}=")));
        self.env.push(format!("{name}={value}"));
        self.cmd.env(name, value);
        self
    }

    /// What the command reads on its standard input.
    pub fn stdin(&mut self, bytes: impl Into<Vec<u8>>) -> &mut Self {
        self.shown.push_str(" < (stdin)");
        self.cmd.write_stdin(bytes.into());
        self
    }

    pub fn env_remove(&mut self, name: &str) -> &mut Self {
        self.env.retain(|e| !e.starts_with(&format!("{name}=")));
        self.cmd.env_remove(name);
        self
    }

    /// Runs to completion (blocking).
    pub fn run(mut self) -> Run {
        let started = Instant::now();
        let output = self
            .cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run `{}`: {e}", self.shown));
        let command = if self.env.is_empty() {
            self.shown
        } else {
            format!("{} {}", self.env.join(" "), self.shown)
        };
        Run {
            command,
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            elapsed: started.elapsed(),
        }
    }

    /// Runs to completion on a blocking thread, so that a simulator serving on the test's own
    /// runtime keeps answering meanwhile.
    pub async fn run_async(self) -> Run {
        tokio::task::spawn_blocking(move || self.run())
            .await
            .expect("the run thread panicked")
    }
}

/// A finished run of the binary. Its `Display` shows everything needed to see why a check
/// failed; every `expect_*` method panics with it.
pub struct Run {
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "\n--- command ---\n{}", self.command)?;
        writeln!(
            f,
            "--- status ---\n{} (after {:.2} s)",
            self.status,
            self.elapsed.as_secs_f64()
        )?;
        writeln!(f, "--- stdout ---\n{}", self.stdout)?;
        writeln!(f, "--- stderr ---\n{}", self.stderr)
    }
}

impl Run {
    /// The exit code (`None` if killed by a signal, e.g. on timeout).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code(), Some(code), "expected exit code {code}{self}");
        self
    }

    pub fn expect_stderr_contains(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "expected stderr to contain {needle:?}{self}"
        );
        self
    }

    pub fn expect_stdout_contains(&self, needle: &str) -> &Self {
        assert!(
            self.stdout.contains(needle),
            "expected stdout to contain {needle:?}{self}"
        );
        self
    }

    /// Panics with the run shown unless `ok`.
    pub fn check(&self, ok: bool, what: impl fmt::Display) -> &Self {
        assert!(ok, "{what}{self}");
        self
    }
}

/// One customer row of an input file.
#[derive(Debug, Clone)]
pub struct Customer {
    pub tenant: String,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub phone_number: String,
    pub date_agreed: String,
}

impl Customer {
    /// A valid customer with a fresh tenant id, signer number `n`, no phone, agreed
    /// 2024-06-14.
    pub fn new(n: usize) -> Self {
        Customer {
            tenant: Uuid::new_v4().to_string(),
            first_name: format!("First{n}"),
            last_name: format!("Last{n}"),
            email: format!("signer{n}@contoso.com"),
            phone_number: String::new(),
            date_agreed: "2024-06-14".into(),
        }
    }

    /// `n` valid customers numbered 1..=n.
    pub fn many(n: usize) -> Vec<Customer> {
        (1..=n).map(Customer::new).collect()
    }

    pub fn tenant(mut self, tenant: &str) -> Self {
        self.tenant = tenant.into();
        self
    }

    pub fn first_name(mut self, v: &str) -> Self {
        self.first_name = v.into();
        self
    }

    pub fn last_name(mut self, v: &str) -> Self {
        self.last_name = v.into();
        self
    }

    pub fn email(mut self, v: &str) -> Self {
        self.email = v.into();
        self
    }

    pub fn phone(mut self, v: &str) -> Self {
        self.phone_number = v.into();
        self
    }

    pub fn date(mut self, v: &str) -> Self {
        self.date_agreed = v.into();
        self
    }

    pub fn tenant_uuid(&self) -> Uuid {
        let t = self
            .tenant
            .trim()
            .trim_start_matches('{')
            .trim_end_matches('}');
        Uuid::parse_str(t).expect("the customer's tenant is a GUID")
    }

    /// The row as a CSV line with `sep` between fields (quoted where needed).
    pub fn csv_line(&self, sep: char) -> String {
        [
            &self.tenant,
            &self.first_name,
            &self.last_name,
            &self.email,
            &self.phone_number,
            &self.date_agreed,
        ]
        .iter()
        .map(|cell| quote(cell, sep))
        .collect::<Vec<_>>()
        .join(&sep.to_string())
    }
}

fn quote(cell: &str, sep: char) -> String {
    if cell.contains(sep) || cell.contains('"') || cell.contains('\n') || cell.contains('\r') {
        format!("\"{}\"", cell.replace('"', "\"\""))
    } else {
        cell.to_string()
    }
}

/// One line of a results (or validation) file, by column name.
#[derive(Debug, Clone)]
pub struct ResultRow {
    pub cells: BTreeMap<String, String>,
}

impl ResultRow {
    pub fn get(&self, column: &str) -> &str {
        self.cells
            .get(column)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("no column {column:?} in {self:?}"))
    }

    pub fn row(&self) -> u64 {
        self.get("row")
            .parse()
            .unwrap_or_else(|_| panic!("row is not a number in {self:?}"))
    }

    pub fn status(&self) -> &str {
        self.get("status")
    }

    pub fn tenant(&self) -> &str {
        self.get("customer_tenant_id")
    }
}

/// A results file as read back: its header line and its records.
#[derive(Debug, Clone)]
pub struct Results {
    pub header: Vec<String>,
    pub rows: Vec<ResultRow>,
}

impl Results {
    /// Parses CSV text strictly (every record as wide as the header).
    pub fn parse(text: &str) -> Result<Results, csv::Error> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(false)
            .from_reader(text.as_bytes());
        let header: Vec<String> = reader.headers()?.iter().map(str::to_string).collect();
        let mut rows = Vec::new();
        for record in reader.records() {
            let record = record?;
            let cells = header
                .iter()
                .cloned()
                .zip(record.iter().map(str::to_string))
                .collect();
            rows.push(ResultRow { cells });
        }
        Ok(Results { header, rows })
    }

    /// Parses the complete lines of a file whose writer may have been killed in the middle of
    /// a line: anything after the last newline is left out.
    pub fn parse_complete_lines(text: &str) -> Result<Results, csv::Error> {
        let complete = text.rfind('\n').map_or("", |end| &text[..=end]);
        Results::parse(complete)
    }

    /// Reads and parses `path`, panicking with the run shown if that fails.
    pub fn read(path: &Path, run: &Run) -> Results {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("cannot read results file {}: {e}{run}", path.display()));
        Results::parse(&text).unwrap_or_else(|e| {
            panic!(
                "results file {} is not valid CSV: {e}\n{text}{run}",
                path.display()
            )
        })
    }

    pub fn header_line(&self) -> String {
        self.header.join(",")
    }

    /// The line for input row `n`; panics unless there is exactly one.
    pub fn by_row(&self, n: u64) -> &ResultRow {
        let found: Vec<&ResultRow> = self.rows.iter().filter(|r| r.row() == n).collect();
        assert_eq!(
            found.len(),
            1,
            "expected exactly one line for row {n} in {:#?}",
            self.rows
        );
        found[0]
    }

    /// The line for a tenant; panics unless there is exactly one.
    pub fn by_tenant(&self, tenant: &str) -> &ResultRow {
        let found: Vec<&ResultRow> = self.rows.iter().filter(|r| r.tenant() == tenant).collect();
        assert_eq!(
            found.len(),
            1,
            "expected exactly one line for tenant {tenant} in {:#?}",
            self.rows
        );
        found[0]
    }

    pub fn with_status(&self, status: &str) -> Vec<&ResultRow> {
        self.rows.iter().filter(|r| r.status() == status).collect()
    }

    /// Number of lines per status.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for r in &self.rows {
            *counts.entry(r.status().to_string()).or_insert(0) += 1;
        }
        counts
    }

    /// Row numbers, sorted.
    pub fn row_numbers(&self) -> Vec<u64> {
        let mut rows: Vec<u64> = self.rows.iter().map(ResultRow::row).collect();
        rows.sort_unstable();
        rows
    }
}

/// Builds a status → count map for comparisons, e.g. `counts(&[("confirmed", 3)])`.
pub fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, v)| ((*k).to_string(), *v)).collect()
}

/// Starts a simulator on a free loopback port of the current runtime, recording requests.
pub async fn start_simulator(mut config: SimulatorConfig) -> Simulator {
    config.record_requests = true;
    Simulator::start(config, "127.0.0.1:0".parse().expect("a socket address"))
        .await
        .expect("start the simulator")
}

/// A simulator with the default configuration (any token, nothing on record).
pub async fn default_simulator() -> Simulator {
    start_simulator(SimulatorConfig::default()).await
}

/// Whether the simulator saw no call at all, authenticated or not.
pub fn no_calls(stats: &SimulatorStats) -> bool {
    stats.template_gets == 0
        && stats.agreement_posts == 0
        && stats.agreement_gets == 0
        && stats.direct_signed_gets == 0
        && stats.throttled == 0
        && stats.unauthorized == 0
        && stats.token_requests == 0
}

/// Parses a GUID written by the binary or seen by the simulator, panicking with `what`.
pub fn uuid_of(text: &str, what: &str) -> Uuid {
    Uuid::parse_str(text.trim()).unwrap_or_else(|e| panic!("{what} {text:?} is not a GUID: {e}"))
}
