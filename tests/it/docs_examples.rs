//! The scheduled-reconciliation examples in `docs/` (systemd units, a crontab line, a GitHub
//! Actions workflow, an Azure Pipelines definition) are checked the way an operator would use
//! them: each file's structure is parsed (a small INI parser for the units, the five time fields
//! of the cron line, a YAML parser for the workflow and the pipeline), then its
//! `mca-attest status --all-customers` command
//! is taken out of the example, its placeholders are pointed at a temporary directory and at a
//! simulator run as a child process (`mca-attest simulator --listen 127.0.0.1:0 --customers
//! FILE`, with a token endpoint that rotates the refresh token on every use and refuses the old
//! one), and it is run with the real binary through the same shell the scheduler would use.
//!
//! Night 1, with customers missing and stale, must exit 1 (the scheduled job alerts) and leave
//! the report (with company_name and domain), its manifest and the todo file of exactly those
//! customers, and rewrite the refresh token file. A person then adds signer columns to the todo
//! rows (a new signer for the stale customer) and runs `confirm`; night 2 then starts from the
//! rotated refresh token and exits 0.

#![cfg(unix)]

use calamine::Reader;
use saphyr::{LoadableYamlNode, Yaml};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_mca-attest");

/// Secrets the simulator accepts; none of them may show up in any output or file, and neither
/// may the refresh tokens it issues (checked as they appear).
const CLIENT_ID: &str = "3f1c0a52-docs-example-app";
const CLIENT_SECRET: &str = "docs-example-client-secret-never-print";
const REFRESH_TOKEN: &str = "docs-example-refresh-token-never-print";
const ACCESS_TOKEN: &str = "docs-example-access-token-never-print";
const SECRETS: [&str; 3] = [CLIENT_SECRET, REFRESH_TOKEN, ACCESS_TOKEN];

/// Placeholders the examples use, as the operator's machine would have them.
const EXAMPLE_BINARY: &str = "/usr/local/bin/mca-attest";
const EXAMPLE_STATE_DIR: &str = "/var/lib/mca-attest";
const EXAMPLE_ETC_DIR: &str = "/etc/mca-attest";
const EXAMPLE_ENV_FILE: &str = "/etc/mca-attest/partner-center.env";

const ATTESTED_A: &str = "627655da-a05f-4119-bcea-af308142c8ea";
const ATTESTED_B: &str = "37d047c9-fe01-4372-9313-badffba3fec7";
const DIRECT: &str = "ec7f6b9e-2398-4be3-90dd-5d0f85c49a0c";
const STALE: &str = "b3c1e2d4-5f60-4a7b-8c9d-0e1f2a3b4c5d";
const MISSING_A: &str = "42f2dc05-873f-4bd0-a608-0f174c96d8e2";
const MISSING_B: &str = "8df08078-a22e-4180-85c2-c2af3977a654";

/// The partner's customers, as Partner Center lists them (the simulator's `--customers`).
const LISTING: &str = "\
customer_tenant_id,company_name,domain,relationship_to_partner
627655da-a05f-4119-bcea-af308142c8ea,Contoso Pty Ltd,contoso.onmicrosoft.com,reseller
37d047c9-fe01-4372-9313-badffba3fec7,Tailspin Toys GmbH,tailspintoys.onmicrosoft.com,reseller
ec7f6b9e-2398-4be3-90dd-5d0f85c49a0c,Lucerne Publishing,lucernepublishing.onmicrosoft.com,reseller
b3c1e2d4-5f60-4a7b-8c9d-0e1f2a3b4c5d,Wide World Importers,wideworldimporters.onmicrosoft.com,reseller
42f2dc05-873f-4bd0-a608-0f174c96d8e2,\"Fabrikam, Ltd\",fabrikam.onmicrosoft.com,reseller
8df08078-a22e-4180-85c2-c2af3977a654,Northwind Traders,northwindtraders.onmicrosoft.com,reseller
";

/// Agreements on record: two current, one from before the MCA refresh.
const EXISTING: &str = "\
customer_tenant_id,first_name,last_name,email,phone_number,date_agreed
627655da-a05f-4119-bcea-af308142c8ea,Tania,Carr,tania.carr@contoso.com,+61 2 5550 1022,2024-01-15
37d047c9-fe01-4372-9313-badffba3fec7,Priya,Sharma,priya.sharma@tailspintoys.de,,2025-02-01
b3c1e2d4-5f60-4a7b-8c9d-0e1f2a3b4c5d,Jun,Li,jun.li@wideworldimporters.com,,2021-03-10
";

/// What the person completing the todo file adds per customer: first name, last name, email,
/// date agreed. The stale customer's new acceptance has a signer that differs from the one on
/// record (another email), as the guide says it must.
const SIGNERS: [(&str, [&str; 4]); 3] = [
    (
        MISSING_A,
        [
            "Marcus",
            "Okafor",
            "marcus.okafor@fabrikam.co.uk",
            "2025-06-30",
        ],
    ),
    (
        MISSING_B,
        [
            "Aiko",
            "Tanaka",
            "aiko.tanaka@northwindtraders.com",
            "2025-06-30",
        ],
    ),
    (
        STALE,
        ["Jun", "Li", "j.li@wideworldimporters.com", "2025-06-30"],
    ),
];

fn docs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs")
}

fn read_doc(rel: &str) -> String {
    let path = docs().join(rel);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The listing's company name and domain of `tenant`.
fn listed(tenant: &str) -> (String, String) {
    let rows = csv_rows(LISTING);
    let row = rows
        .iter()
        .find(|r| r["customer_tenant_id"] == tenant)
        .unwrap_or_else(|| panic!("{tenant} is not listed"));
    (row["company_name"].clone(), row["domain"].clone())
}

/// A CSV text as its header and its rows (column name → cell).
fn csv_table(text: &str) -> (Vec<String>, Vec<BTreeMap<String, String>>) {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .expect("a header")
        .iter()
        .map(str::to_string)
        .collect();
    let rows = reader
        .records()
        .map(|r| {
            header
                .iter()
                .cloned()
                .zip(r.expect("a record").iter().map(str::to_string))
                .collect()
        })
        .collect();
    (header, rows)
}

fn csv_rows(text: &str) -> Vec<BTreeMap<String, String>> {
    csv_table(text).1
}

// ---------------------------------------------------------------------------------------------
// The simulator, a child process killed on drop.

struct SimulatorProcess {
    child: Child,
    /// Kept open so the simulator never writes to a closed pipe.
    _stdout: BufReader<ChildStdout>,
    base_url: String,
}

impl SimulatorProcess {
    fn start(dir: &Path) -> SimulatorProcess {
        fs::write(dir.join("sim-customers.csv"), LISTING).unwrap();
        fs::write(dir.join("sim-existing.csv"), EXISTING).unwrap();
        fs::write(dir.join("sim-direct-signed.txt"), format!("{DIRECT}\n")).unwrap();
        let stderr = fs::File::create(dir.join("simulator.log")).unwrap();
        let mut child = Command::new(BIN)
            .args(["simulator", "--listen", "127.0.0.1:0", "--customers"])
            .arg(dir.join("sim-customers.csv"))
            .arg("--existing")
            .arg(dir.join("sim-existing.csv"))
            .arg("--direct-signed")
            .arg(dir.join("sim-direct-signed.txt"))
            // The token endpoint: a new refresh token on every exchange, the used one refused
            // from then on.
            .args(["--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET])
            .args(["--refresh-token", REFRESH_TOKEN, "--rotate-refresh-token"])
            // Only this token (the person's `confirm`), and those the token endpoint issues,
            // are accepted.
            .args(["--access-token", ACCESS_TOKEN])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start mca-attest simulator");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let Some(url) = line
            .trim()
            .strip_prefix("mca-attest simulator listening on ")
        else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the simulator did not start: {line:?}\n{}",
                fs::read_to_string(dir.join("simulator.log")).unwrap_or_default()
            );
        };
        SimulatorProcess {
            base_url: url.to_string(),
            child,
            _stdout: stdout,
        }
    }
}

impl Drop for SimulatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// A scratch machine: a temporary directory standing in for the operator's paths.

struct Scene {
    tmp: tempfile::TempDir,
    sim: SimulatorProcess,
}

/// What a run of an example left behind.
struct Outcome {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Neither output shows `secret`.
    fn expect_free_of(&self, secret: &str) {
        assert!(
            !self.stdout.contains(secret) && !self.stderr.contains(secret),
            "a credential in the output\n{self}"
        );
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.status.code(),
            self.stdout,
            self.stderr
        )
    }
}

impl Scene {
    fn new() -> Scene {
        let tmp = tempfile::Builder::new()
            .prefix("mca-docs-")
            .tempdir()
            .unwrap();
        let sim = SimulatorProcess::start(tmp.path());
        Scene { tmp, sim }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    fn mkdir(&self, rel: &str) -> PathBuf {
        let p = self.path(rel);
        fs::create_dir_all(&p).unwrap();
        p
    }

    /// The operator's paths (`/var/lib/mca-attest`, `/etc/mca-attest`, the binary) in `text`,
    /// pointed at this scene.
    fn localise(&self, text: &str) -> String {
        text.replace(EXAMPLE_BINARY, BIN)
            .replace(
                EXAMPLE_STATE_DIR,
                self.path("var-lib-mca-attest").to_str().unwrap(),
            )
            .replace(
                EXAMPLE_ETC_DIR,
                self.path("etc-mca-attest").to_str().unwrap(),
            )
    }

    /// Runs `program args` in `cwd` with exactly `env` (as a scheduler does: no inherited
    /// environment), output to files, killed after 60 s.
    fn run(
        &self,
        name: &str,
        program: &str,
        args: &[&str],
        cwd: &Path,
        env: &BTreeMap<String, String>,
    ) -> Outcome {
        self.run_with_stdin(name, program, args, cwd, env, Stdio::null())
    }

    fn run_with_stdin(
        &self,
        name: &str,
        program: &str,
        args: &[&str],
        cwd: &Path,
        env: &BTreeMap<String, String>,
        stdin: Stdio,
    ) -> Outcome {
        let out = self.path(&format!("{name}.stdout"));
        let err = self.path(&format!("{name}.stderr"));
        let mut child = Command::new(program)
            .args(args)
            .current_dir(cwd)
            .env_clear()
            .envs(env)
            .stdin(stdin)
            .stdout(fs::File::create(&out).unwrap())
            .stderr(fs::File::create(&err).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        // Waits for the child on a thread of its own, at most 60 s; a child still running
        // then is killed (by its own process id) and the test fails.
        let pid = child.id();
        let (done, finished) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let _ = done.send(child.wait());
        });
        let status = match finished.recv_timeout(Duration::from_secs(60)) {
            Ok(status) => status.unwrap(),
            Err(_) => {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
                let _ = waiter.join();
                panic!(
                    "{name} still running after 60 s\n{}",
                    fs::read_to_string(&err).unwrap_or_default()
                );
            }
        };
        let outcome = Outcome {
            status,
            stdout: fs::read_to_string(&out).unwrap_or_default(),
            stderr: fs::read_to_string(&err).unwrap_or_default(),
        };
        for secret in SECRETS {
            outcome.expect_free_of(secret);
        }
        outcome
    }

    /// The operator's follow-up, as a person does it: the night's todo file, completed with the
    /// signer columns, is confirmed against the same simulator (with an access token of their
    /// own, so the job's refresh token is left alone). Every row must be confirmed.
    fn confirm(&self, todo: &Path) {
        let input = complete_todo(todo, &self.path("confirm-input.csv"));
        let mut env = base_env();
        env.insert("PARTNER_CENTER_ACCESS_TOKEN".into(), ACCESS_TOKEN.into());
        env.insert("PARTNER_CENTER_BASE_URL".into(), self.sim.base_url.clone());
        let results = self.path("confirm-input.results.csv");
        let outcome = self.run(
            "confirm",
            BIN,
            &[
                "confirm",
                input.to_str().unwrap(),
                "-o",
                results.to_str().unwrap(),
                "--rate",
                "50/s",
                "--no-progress",
            ],
            self.tmp.path(),
            &env,
        );
        assert_eq!(
            outcome.code(),
            Some(0),
            "confirm of the completed todo rows\n{outcome}"
        );
        let rows = csv_rows(&fs::read_to_string(&results).unwrap());
        assert_eq!(rows.len(), SIGNERS.len(), "{rows:?}");
        assert!(
            rows.iter().all(|r| r["status"] == "confirmed"),
            "every todo row confirmed: {rows:?}"
        );
    }
}

/// The todo file with the signer columns added at the end of each row, written to `to`: what
/// the guide tells a person to do before `mca-attest confirm`.
fn complete_todo(todo: &Path, to: &Path) -> PathBuf {
    let text = fs::read_to_string(todo).unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let mut writer = csv::Writer::from_path(to).unwrap();
    let mut header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_string)
        .collect();
    header.extend(["first_name", "last_name", "email", "date_agreed"].map(String::from));
    writer.write_record(&header).unwrap();
    for record in reader.records() {
        let record = record.unwrap();
        let tenant = record.get(0).unwrap().to_string();
        let (_, signer) = SIGNERS
            .iter()
            .find(|(t, _)| *t == tenant)
            .unwrap_or_else(|| panic!("no signer for {tenant} in the todo file"));
        let mut cells: Vec<String> = record.iter().map(str::to_string).collect();
        cells.extend(signer.iter().map(|s| s.to_string()));
        writer.write_record(&cells).unwrap();
    }
    writer.flush().unwrap();
    to.to_path_buf()
}

/// The environment every scheduler provides, whatever else is set.
fn base_env() -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into());
    env.insert("LANG".into(), "C.UTF-8".into());
    env
}

/// Writes a secret file as the guide has it: mode 0600, in a 0700 directory.
fn write_secret(path: &Path, value: &str) {
    let dir = path.parent().unwrap();
    fs::create_dir_all(dir).unwrap();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(path, format!("{value}\n")).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
}

/// The refresh token in `file` after a night: a new one (the authority rotated it and the tool
/// wrote it back), the file still 0600. Returns it.
fn expect_rotated(file: &Path, before: &str) -> String {
    let now = fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
        .trim_end()
        .to_string();
    assert!(!now.is_empty(), "{} is empty", file.display());
    assert_ne!(
        now,
        before,
        "the refresh token in {} was not rewritten",
        file.display()
    );
    let mode = fs::metadata(file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{} lost its mode", file.display());
    now
}

// ---------------------------------------------------------------------------------------------
// Reports.

/// The newest dated file `PREFIX-YYYY-MM-DD.SUFFIX` in `dir` (a run across midnight UTC may
/// leave two days).
fn dated(dir: &Path, prefix: &str, suffix: &str) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.strip_prefix(prefix)
                .and_then(|rest| rest.strip_suffix(suffix))
                .is_some_and(|day| {
                    day.len() == 10
                        && day.chars().enumerate().all(|(i, c)| {
                            if i == 4 || i == 7 {
                                c == '-'
                            } else {
                                c.is_ascii_digit()
                            }
                        })
                })
        })
        .collect();
    found.sort();
    found.pop()
}

/// Every listed customer is in the report with the expected state, and with its company name
/// and domain from the listing in the last two columns.
fn expect_states(report: &Path, all_attested: bool) {
    let (header, rows) = csv_table(&fs::read_to_string(report).unwrap());
    assert_eq!(
        &header[..3],
        ["row", "customer_tenant_id", "state"],
        "{header:?}"
    );
    assert_eq!(
        &header[header.len() - 2..],
        ["company_name", "domain"],
        "{header:?}"
    );
    let later = |before: &str| {
        if all_attested {
            "attested".to_string()
        } else {
            before.to_string()
        }
    };
    let want: BTreeMap<String, String> = [
        (ATTESTED_A, "attested".to_string()),
        (ATTESTED_B, "attested".to_string()),
        (DIRECT, "direct_signed".to_string()),
        (STALE, later("stale")),
        (MISSING_A, later("missing")),
        (MISSING_B, later("missing")),
    ]
    .into_iter()
    .map(|(t, s)| (t.to_string(), s))
    .collect();
    let got: BTreeMap<String, String> = rows
        .iter()
        .map(|r| (r["customer_tenant_id"].clone(), r["state"].clone()))
        .collect();
    assert_eq!(got, want, "states in {}", report.display());
    for row in &rows {
        let tenant = &row["customer_tenant_id"];
        assert_eq!(
            (row["company_name"].clone(), row["domain"].clone()),
            listed(tenant),
            "company of {tenant} in {}",
            report.display()
        );
    }
}

/// The manifest beside `report` exists and records a last run of `status --all-customers`
/// with `exit_code`.
fn expect_manifest(report: &Path, exit_code: i64) {
    let path = PathBuf::from(format!("{}.manifest.json", report.display()));
    let text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("no manifest {}: {e}", path.display()));
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let last = json["runs"]
        .as_array()
        .and_then(|r| r.last())
        .unwrap_or_else(|| panic!("no run in {text}"));
    assert_eq!(last["exit_code"], exit_code, "{text}");
    assert_eq!(last["command"], "status", "{text}");
    assert!(
        last["command_line"]
            .as_array()
            .is_some_and(|a| a.iter().any(|w| w == "--all-customers")),
        "{text}"
    );
    assert_eq!(last["rows"], 6, "{text}");
}

/// The todo file lists the missing and stale customers, with the listing's columns, their
/// state and their latest date on record.
fn expect_todo(todo: &Path) {
    let (header, rows) = csv_table(&fs::read_to_string(todo).unwrap());
    assert_eq!(
        header,
        [
            "customer_tenant_id",
            "company_name",
            "domain",
            "relationship_to_partner",
            "state",
            "latest_date_agreed"
        ],
        "{}",
        todo.display()
    );
    let got: BTreeMap<String, (String, String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["customer_tenant_id"].clone(),
                (
                    r["state"].clone(),
                    r["latest_date_agreed"].clone(),
                    r["company_name"].clone(),
                ),
            )
        })
        .collect();
    let want: BTreeMap<String, (String, String, String)> = [
        (STALE, "stale", "2021-03-10T00:00:00Z"),
        (MISSING_A, "missing", ""),
        (MISSING_B, "missing", ""),
    ]
    .into_iter()
    .map(|(t, s, d)| (t.to_string(), (s.to_string(), d.to_string(), listed(t).0)))
    .collect();
    assert_eq!(got, want, "{}", todo.display());
}

/// No file under `dir` holds a credential: the fixed ones or `more` (rotated tokens).
fn expect_no_secrets(dir: &Path, more: &[&str]) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            expect_no_secrets(&path, more);
        } else if path.is_file() {
            let text = String::from_utf8_lossy(&fs::read(&path).unwrap()).into_owned();
            for secret in SECRETS.iter().chain(more) {
                assert!(
                    !text.contains(secret),
                    "{} holds a credential",
                    path.display()
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// systemd units: a small INI reader.

/// Section name → key → values in order (a key may repeat: `Environment=`, `LoadCredential=`).
type Unit = BTreeMap<String, BTreeMap<String, Vec<String>>>;

fn parse_unit(name: &str, text: &str) -> Unit {
    let mut unit = Unit::new();
    let mut section: Option<String> = None;
    let mut pending = String::new();
    for (no, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if pending.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with(';'))
        {
            continue;
        }
        // A trailing backslash continues the line.
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        let line = std::mem::take(&mut pending) + line;
        if let Some(s) = line.strip_prefix('[') {
            let s = s
                .strip_suffix(']')
                .unwrap_or_else(|| panic!("{name}:{}: bad section line {line:?}", no + 1));
            assert!(
                ["Unit", "Service", "Timer", "Install"].contains(&s),
                "{name}:{}: unexpected section [{s}]",
                no + 1
            );
            assert!(!unit.contains_key(s), "{name}: section [{s}] twice");
            unit.insert(s.to_string(), BTreeMap::new());
            section = Some(s.to_string());
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("{name}:{}: not KEY=VALUE: {line:?}", no + 1));
        let key = key.trim();
        assert!(
            !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric()),
            "{name}:{}: bad key {key:?}",
            no + 1
        );
        let section = section
            .as_ref()
            .unwrap_or_else(|| panic!("{name}:{}: {key}= before any section", no + 1));
        unit.get_mut(section)
            .unwrap()
            .entry(key.to_string())
            .or_default()
            .push(value.trim().to_string());
    }
    assert!(pending.is_empty(), "{name}: ends in a continuation line");
    unit
}

fn values<'a>(unit: &'a Unit, section: &str, key: &str) -> &'a [String] {
    unit.get(section)
        .and_then(|s| s.get(key))
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// The one value of `key`, which must be present once.
fn one<'a>(unit: &'a Unit, section: &str, key: &str) -> &'a str {
    match values(unit, section, key) {
        [v] => v,
        other => panic!("[{section}] {key}= expected once, found {other:?}"),
    }
}

/// Undoes systemd's escapes in a command line (`%%`, `$$`), resolving `%d` (the credentials
/// directory) and refusing any other specifier or an unescaped `$` systemd would expand.
fn systemd_unescape(value: &str, credentials_dir: &Path) -> String {
    let mut out = String::new();
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '%' => match chars.next() {
                Some('%') => out.push('%'),
                Some('d') => out.push_str(credentials_dir.to_str().unwrap()),
                other => panic!("unexpected specifier %{other:?} in {value:?}"),
            },
            '$' => match chars.next() {
                Some('$') => out.push('$'),
                other => panic!(
                    "a lone $ (followed by {other:?}) would be expanded by systemd in {value:?}"
                ),
            },
            c => out.push(c),
        }
    }
    out
}

/// The values following each of `flags` in a shell command line (quotes removed).
fn flag_values(command: &str, flags: &[&str]) -> Vec<String> {
    let words: Vec<&str> = command.split_whitespace().collect();
    words
        .windows(2)
        .filter(|w| flags.contains(&w[0]))
        .map(|w| w[1].trim_matches(|c| c == '"' || c == '\'').to_string())
        .collect()
}

/// `systemd-analyze verify` on a unit file, where the tool exists: no complaint about it.
fn systemd_verify(path: &Path) {
    let Ok(out) = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(path)
        .output()
    else {
        return;
    };
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let complaints: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(&format!("{name}:")))
        .collect();
    assert!(
        complaints.is_empty(),
        "systemd-analyze verify {name}:\n{text}"
    );
}

/// The paths of a `ReadWritePaths=` value.
fn writable_paths(unit: &Unit) -> Vec<String> {
    values(unit, "Service", "ReadWritePaths")
        .iter()
        .flat_map(|v| v.split_whitespace())
        .map(|p| {
            p.trim_start_matches(['-', '+'])
                .trim_end_matches('/')
                .to_string()
        })
        .collect()
}

/// Whether `path` is at or under one of `dirs`.
fn under_any(path: &str, dirs: &[String]) -> bool {
    dirs.iter()
        .any(|d| path == d || path.starts_with(&format!("{d}/")))
}

#[test]
fn systemd_timer_and_service_run_nightly_fail_on_exit_1_and_pass_once_confirmed() {
    let service_text = read_doc("systemd/mca-attest-status.service");
    let timer_text = read_doc("systemd/mca-attest-status.timer");
    let alert_text = read_doc("systemd/mca-attest-alert@.service");
    let service = parse_unit("mca-attest-status.service", &service_text);
    let timer = parse_unit("mca-attest-status.timer", &timer_text);
    let alert = parse_unit("mca-attest-alert@.service", &alert_text);
    for name in [
        "mca-attest-status.service",
        "mca-attest-status.timer",
        "mca-attest-alert@.service",
    ] {
        systemd_verify(&docs().join("systemd").join(name));
    }

    // The timer: nightly, catches up a missed night, starts the service, installable.
    let calendar = one(&timer, "Timer", "OnCalendar");
    let parts: Vec<&str> = calendar.split_whitespace().collect();
    assert!(
        calendar == "daily" || (parts.len() >= 2 && parts[0] == "*-*-*"),
        "OnCalendar={calendar} is not once a day"
    );
    if parts.len() >= 2 {
        let hms: Vec<u32> = parts[1].split(':').map(|p| p.parse().unwrap()).collect();
        assert!(hms.len() >= 2 && hms[0] < 24 && hms[1] < 60, "{calendar}");
    }
    assert_eq!(one(&timer, "Timer", "Persistent"), "yes");
    assert_eq!(one(&timer, "Timer", "Unit"), "mca-attest-status.service");
    assert_eq!(one(&timer, "Install", "WantedBy"), "timers.target");
    assert!(!one(&timer, "Unit", "Description").is_empty());

    // The service: a oneshot run whose failure starts the alert unit.
    assert!(!one(&service, "Unit", "Description").is_empty());
    assert_eq!(one(&service, "Service", "Type"), "oneshot");
    assert!(one(&service, "Unit", "After").contains("network-online.target"));
    let on_failure = one(&service, "Unit", "OnFailure");
    assert_eq!(on_failure, "mca-attest-alert@%n.service");
    assert!(!one(&alert, "Unit", "Description").is_empty());
    assert!(!values(&alert, "Service", "ExecStart").is_empty());
    assert!(
        values(&service, "Service", "SuccessExitStatus").is_empty(),
        "exit 1 must fail the unit"
    );
    assert!(!one(&service, "Service", "User").is_empty());
    // Hardening.
    for (key, want) in [
        ("ProtectSystem", "strict"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("ProtectHome", "yes"),
    ] {
        assert_eq!(one(&service, "Service", key), want, "{key}=");
    }
    let writable = writable_paths(&service);
    assert!(!writable.is_empty(), "no ReadWritePaths=");

    // Credentials: ids from an EnvironmentFile, secrets read through NAME_FILE variables, no
    // secret value in the unit. The client secret may be a systemd credential; the refresh
    // token may not (the credentials directory is read-only, and the token is rewritten).
    assert_eq!(
        one(&service, "Service", "EnvironmentFile"),
        EXAMPLE_ENV_FILE
    );
    let credentials: BTreeMap<&str, &str> = values(&service, "Service", "LoadCredential")
        .iter()
        .map(|v| v.split_once(':').expect("LoadCredential=ID:PATH"))
        .collect();
    let scene = Scene::new();
    let creds_dir = scene.mkdir("run-credentials");
    for (id, source) in &credentials {
        assert!(source.starts_with('/'), "LoadCredential={id}:{source}");
        let value = match *id {
            id if id.contains("secret") => CLIENT_SECRET,
            other => panic!(
                "unexpected credential {other}: only the client secret may be a systemd credential"
            ),
        };
        fs::write(creds_dir.join(id), format!("{value}\n")).unwrap();
    }
    let mut env = base_env();
    let mut token_file: Option<(String, PathBuf)> = None;
    for assignment in values(&service, "Service", "Environment") {
        let (key, value) = assignment.split_once('=').unwrap();
        assert!(
            !["SECRET", "TOKEN"].iter().any(|s| key.contains(s)) || key.ends_with("_FILE"),
            "secret {key} inline in Environment="
        );
        let value = systemd_unescape(value, &creds_dir);
        if key == "PARTNER_CENTER_REFRESH_TOKEN_FILE" {
            // Where the operator keeps it: a file the service account may rewrite.
            assert!(
                !value.starts_with(creds_dir.to_str().unwrap()),
                "the refresh token as a systemd credential cannot be rewritten: {value}"
            );
            let dir = Path::new(&value).parent().unwrap().to_str().unwrap();
            assert!(
                under_any(dir, &writable),
                "the refresh token's directory {dir} is not in ReadWritePaths={writable:?}: its rotated successor cannot be written beside it"
            );
            let local = PathBuf::from(scene.localise(&value));
            write_secret(&local, REFRESH_TOKEN);
            token_file = Some((value.clone(), local.clone()));
            env.insert(key.to_string(), local.to_str().unwrap().to_string());
        } else {
            env.insert(key.to_string(), value);
        }
    }
    let (token_path, token_file) =
        token_file.expect("no PARTNER_CENTER_REFRESH_TOKEN_FILE in Environment=");
    for var in [
        "PARTNER_CENTER_CLIENT_SECRET_FILE",
        "PARTNER_CENTER_REFRESH_TOKEN_FILE",
    ] {
        let path = env
            .get(var)
            .unwrap_or_else(|| panic!("no {var} in Environment="));
        assert!(
            Path::new(path).is_file(),
            "{var}={path} names no credential"
        );
    }
    // The guide's setup creates the token's directory for the service account.
    let guide = read_doc("scheduled-reconciliation.md");
    let token_dir = Path::new(&token_path).parent().unwrap().to_str().unwrap();
    assert!(
        guide.contains(&format!("-m 0700 {EXAMPLE_STATE_DIR}/reports {token_dir}"))
            || guide.contains(&format!("-m 0700 {token_dir}")),
        "the guide's setup does not create {token_dir}"
    );
    assert!(
        guide.contains(&token_path),
        "the guide does not name {token_path}"
    );
    // The EnvironmentFile's content (the non-secret ids), and the rehearsal settings the doc
    // describes: the API and the token authority are the simulator.
    env.insert(
        "PARTNER_CENTER_TENANT_ID".into(),
        "contoso.onmicrosoft.com".into(),
    );
    env.insert("PARTNER_CENTER_CLIENT_ID".into(), CLIENT_ID.into());
    env.insert("PARTNER_CENTER_BASE_URL".into(), scene.sim.base_url.clone());
    env.insert(
        "PARTNER_CENTER_AUTHORITY".into(),
        scene.sim.base_url.clone(),
    );

    // ExecStart: one command that execs the tool over every customer (so the unit's status is
    // the tool's), writing only under ReadWritePaths.
    let exec = systemd_unescape(one(&service, "Service", "ExecStart"), &creds_dir);
    assert!(
        exec.contains(&format!("exec {EXAMPLE_BINARY} status --all-customers ")),
        "ExecStart must exec `status --all-customers`: {exec}"
    );
    let outputs = flag_values(&exec, &["-o", "--emit-confirm-input", "--summary-json"]);
    assert_eq!(outputs.len(), 3, "{exec}");
    for out in &outputs {
        let dir = Path::new(out).parent().unwrap().to_str().unwrap();
        assert!(
            under_any(dir, &writable),
            "{out} is outside ReadWritePaths={writable:?}"
        );
    }
    assert!(exec.contains("--no-progress"));
    let workdir = one(&service, "Service", "WorkingDirectory");
    let exec = scene.localise(&exec);
    let cwd = PathBuf::from(scene.localise(workdir));
    fs::create_dir_all(&cwd).unwrap();
    for dir in &writable {
        fs::create_dir_all(scene.localise(dir)).unwrap();
    }
    let reports =
        PathBuf::from(scene.localise(Path::new(&outputs[0]).parent().unwrap().to_str().unwrap()));
    let (shell, flag, script) = split_shell(&exec);

    // Night 1: customers missing and stale: exit 1, the unit fails and OnFailure= alerts; the
    // refresh token the authority rotated is in the file for the next night.
    let night1 = scene.run("systemd-night1", &shell, &[&flag, &script], &cwd, &env);
    assert_eq!(night1.code(), Some(1), "{night1}");
    let token1 = expect_rotated(&token_file, REFRESH_TOKEN);
    night1.expect_free_of(&token1);
    let report = dated(&reports, "status-", ".csv").expect("a dated report");
    expect_states(&report, false);
    expect_manifest(&report, 1);
    let todo = dated(&reports, "todo-", ".csv").expect("a dated todo file");
    expect_todo(&todo);
    assert!(dated(&reports, "status-", ".summary.json").is_some());
    // The run's account on stderr (the journal).
    assert!(night1.stderr.contains("missing 2"), "{night1}");

    // The operator confirms the todo rows; night 2 starts from the rotated token and passes.
    scene.confirm(&todo);
    let night2 = scene.run("systemd-night2", &shell, &[&flag, &script], &cwd, &env);
    assert_eq!(night2.code(), Some(0), "{night2}");
    let token2 = expect_rotated(&token_file, &token1);
    night2.expect_free_of(&token1);
    night2.expect_free_of(&token2);
    let report = dated(&reports, "status-", ".csv").unwrap();
    expect_states(&report, true);
    expect_manifest(&report, 0);
    expect_no_secrets(
        &PathBuf::from(scene.localise(EXAMPLE_STATE_DIR)),
        &[&token1],
    );
    expect_no_secrets(&reports, &[&token2]);

    // The write-back is what kept night 2 working: the token night 1 started from is refused.
    write_secret(&token_file, REFRESH_TOKEN);
    let stale_token = scene.run("systemd-old-token", &shell, &[&flag, &script], &cwd, &env);
    assert_eq!(stale_token.code(), Some(3), "{stale_token}");
    // A run that stops early leaves the day's complete report as it was.
    expect_states(&report, true);
}

/// `/bin/sh -c 'SCRIPT'` → ("/bin/sh", "-c", "SCRIPT"); anything else runs through `/bin/sh -c`.
fn split_shell(exec: &str) -> (String, String, String) {
    for shell in ["/bin/sh", "/bin/bash", "/usr/bin/env sh"] {
        if let Some(rest) = exec.strip_prefix(&format!("{shell} -c ")) {
            let rest = rest.trim();
            if let Some(script) = rest
                .strip_prefix('\'')
                .and_then(|r| r.strip_suffix('\''))
                .filter(|s| !s.contains('\''))
            {
                return (shell.into(), "-c".into(), script.into());
            }
        }
    }
    ("/bin/sh".into(), "-c".into(), exec.into())
}

// ---------------------------------------------------------------------------------------------
// cron

/// Whether `field` is a valid crontab time field for values in `min..=max`.
fn cron_field_ok(field: &str, min: u32, max: u32) -> bool {
    let num = |s: &str| s.parse::<u32>().ok().filter(|n| (min..=max).contains(n));
    field.split(',').all(|item| {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        let step_ok = step.is_none_or(|s| s.parse::<u32>().is_ok_and(|n| n > 0));
        let range_ok = range == "*"
            || num(range).is_some()
            || range
                .split_once('-')
                .is_some_and(|(a, b)| matches!((num(a), num(b)), (Some(a), Some(b)) if a <= b));
        step_ok && range_ok
    })
}

/// The environment file the guide's cron section shows (`KEY=VALUE` lines of its code block
/// that names `PARTNER_CENTER_REFRESH_TOKEN_FILE`).
fn guide_cron_env_file() -> Vec<(String, String)> {
    let guide = read_doc("scheduled-reconciliation.md");
    let section = guide
        .split("\n## ")
        .find(|s| s.starts_with("cron"))
        .expect("a cron section in the guide");
    let block = section
        .split("```")
        .skip(1)
        .step_by(2)
        .find(|b| b.contains("PARTNER_CENTER_REFRESH_TOKEN_FILE="))
        .expect("the env file in the guide's cron section");
    block
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("not KEY=VALUE: {l}"));
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect()
}

#[test]
fn cron_line_runs_nightly_alerts_on_exit_1_and_is_quiet_once_confirmed() {
    let text = read_doc("cron/mca-attest-status.cron");
    let mut variables = BTreeMap::new();
    let mut jobs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let first = line.split_whitespace().next().unwrap();
        if let Some((name, _)) = first.split_once('=')
            && name.chars().all(|c| c.is_ascii_uppercase() || c == '_')
        {
            variables.insert(name.to_string(), line[name.len() + 1..].trim().to_string());
        } else {
            jobs.push(line);
        }
    }
    assert_eq!(jobs.len(), 1, "one job line: {jobs:?}");
    let fields: Vec<&str> = jobs[0].splitn(6, char::is_whitespace).collect();
    assert_eq!(
        fields.len(),
        6,
        "five time fields and a command: {}",
        jobs[0]
    );
    let ranges = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)];
    for (field, (min, max)) in fields.iter().zip(ranges) {
        assert!(cron_field_ok(field, min, max), "bad time field {field:?}");
    }
    // Nightly: a fixed minute and hour, every day.
    assert!(fields[0].parse::<u32>().is_ok() && fields[1].parse::<u32>().is_ok());
    assert_eq!(&fields[2..5], ["*", "*", "*"], "every day");
    assert!(variables.contains_key("MAILTO"), "failures are mailed");
    let shell = variables.get("SHELL").cloned().unwrap_or("/bin/sh".into());
    let path_var = variables
        .get("PATH")
        .cloned()
        .unwrap_or("/usr/bin:/bin".into());

    // In a crontab an unescaped % ends the command: every % must be escaped.
    let command = fields[5];
    assert!(
        !command.replace("\\%", "").contains('%'),
        "unescaped % in the cron command: {command}"
    );
    assert!(command.contains(&format!("{EXAMPLE_BINARY} status --all-customers ")));
    assert!(
        command.contains(EXAMPLE_ENV_FILE),
        "credentials from the env file"
    );
    for secret_var in [
        "PARTNER_CENTER_CLIENT_SECRET=",
        "PARTNER_CENTER_REFRESH_TOKEN=",
    ] {
        assert!(!text.contains(secret_var), "a secret in the crontab");
    }
    let command = command.replace("\\%", "%");

    // The env file as the guide shows it: ids, and the secrets as files; the refresh token in
    // a file the job may rewrite. The rehearsal settings point the API and the token authority
    // at the simulator.
    let scene = Scene::new();
    let state = scene.mkdir("var-lib-mca-attest");
    let mut env_lines = Vec::new();
    let mut token_file = None;
    for (key, value) in guide_cron_env_file() {
        assert!(
            !["SECRET", "TOKEN"].iter().any(|s| key.contains(s)) || key.ends_with("_FILE"),
            "secret {key} inline in the env file"
        );
        let value = match key.as_str() {
            "PARTNER_CENTER_CLIENT_ID" => CLIENT_ID.to_string(),
            "PARTNER_CENTER_CLIENT_SECRET_FILE" => {
                let local = scene.localise(&value);
                write_secret(Path::new(&local), CLIENT_SECRET);
                local
            }
            "PARTNER_CENTER_REFRESH_TOKEN_FILE" => {
                assert!(
                    value.starts_with(&format!("{EXAMPLE_STATE_DIR}/")),
                    "the refresh token must live where the job can rewrite it: {value}"
                );
                let local = scene.localise(&value);
                write_secret(Path::new(&local), REFRESH_TOKEN);
                token_file = Some(PathBuf::from(&local));
                local
            }
            _ => value,
        };
        env_lines.push(format!("{key}={value}\n"));
    }
    let token_file = token_file.expect("PARTNER_CENTER_REFRESH_TOKEN_FILE in the env file");
    env_lines.push(format!("PARTNER_CENTER_BASE_URL={}\n", scene.sim.base_url));
    env_lines.push(format!("PARTNER_CENTER_AUTHORITY={}\n", scene.sim.base_url));
    let env_file = PathBuf::from(scene.localise(EXAMPLE_ENV_FILE));
    fs::create_dir_all(env_file.parent().unwrap()).unwrap();
    fs::write(&env_file, env_lines.concat()).unwrap();
    fs::set_permissions(&env_file, fs::Permissions::from_mode(0o600)).unwrap();

    // A `logger` that records its calls, ahead of the real one on PATH.
    let stubs = scene.mkdir("stubs");
    let logged = scene.path("logger.calls");
    let logger = stubs.join("logger");
    fs::write(
        &logger,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\n",
            logged.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&logger, fs::Permissions::from_mode(0o755)).unwrap();

    let command = scene.localise(&command);
    let mut env = base_env();
    env.insert("PATH".into(), format!("{}:{path_var}", stubs.display()));
    env.insert("SHELL".into(), shell.clone());
    env.insert("HOME".into(), state.to_str().unwrap().into());
    let reports = state.join("reports");

    // Night 1: exit 1, one line on stdout (mailed by cron), an error to syslog, the rotated
    // refresh token in its file.
    let night1 = scene.run("cron-night1", &shell, &["-c", &command], &state, &env);
    assert_eq!(night1.code(), Some(1), "{night1}");
    assert!(
        night1.stdout.contains("exited 1") && night1.stdout.lines().count() == 1,
        "one line for the mail: {night1}"
    );
    let calls = fs::read_to_string(&logged).unwrap_or_default();
    assert!(calls.contains("exited 1"), "logger calls: {calls:?}");
    let token1 = expect_rotated(&token_file, REFRESH_TOKEN);
    night1.expect_free_of(&token1);
    let report = dated(&reports, "status-", ".csv").expect("a dated report");
    expect_states(&report, false);
    expect_manifest(&report, 1);
    let todo = dated(&reports, "todo-", ".csv").expect("a dated todo file");
    expect_todo(&todo);
    let log = dated(&reports, "status-", ".log").expect("a dated log");
    let log_text = fs::read_to_string(&log).unwrap();
    assert!(
        log_text.contains("missing 2"),
        "the run's account in its log"
    );
    assert!(
        log_text.contains("rotated the refresh token: saved"),
        "the log says the token was saved: {log_text}"
    );

    // Confirmed: the next night, from the rotated token, prints nothing (no mail) and logs
    // nothing.
    scene.confirm(&todo);
    fs::remove_file(&logged).unwrap();
    let night2 = scene.run("cron-night2", &shell, &["-c", &command], &state, &env);
    assert_eq!(night2.code(), Some(0), "{night2}");
    assert!(
        night2.stdout.is_empty() && night2.stderr.is_empty(),
        "{night2}"
    );
    assert!(!logged.exists(), "logger called on success");
    let token2 = expect_rotated(&token_file, &token1);
    let report = dated(&reports, "status-", ".csv").unwrap();
    expect_states(&report, true);
    expect_manifest(&report, 0);
    expect_no_secrets(&reports, &[&token1, &token2]);
}

// GitHub Actions and Azure Pipelines: read with a YAML parser, as the services read them.

/// The one document of a YAML example.
fn yaml_document(text: &str) -> Yaml<'_> {
    let mut documents = Yaml::load_from_str(text).unwrap_or_else(|e| panic!("not YAML: {e}"));
    assert_eq!(documents.len(), 1, "one YAML document");
    documents.remove(0)
}

/// `node`'s value at `key`, which must be there.
fn at<'a, 'input>(node: &'a Yaml<'input>, key: &str) -> &'a Yaml<'input> {
    node.as_mapping_get(key)
        .unwrap_or_else(|| panic!("no {key}: in {node:?}"))
}

/// A scalar as the text a runner hands on (numbers and booleans as written); `None` for a
/// list or a mapping.
fn scalar(node: &Yaml) -> Option<String> {
    if let Some(text) = node.as_str() {
        return Some(text.to_string());
    }
    if let Some(number) = node.as_integer() {
        return Some(number.to_string());
    }
    if let Some(flag) = node.as_bool() {
        return Some(flag.to_string());
    }
    node.as_floating_point().map(|f| f.to_string())
}

/// A mapping of scalars (a step's `env:`, `with:` or `inputs:`); empty when there is none.
fn scalars(node: Option<&Yaml>) -> BTreeMap<String, String> {
    let Some(mapping) = node.and_then(Yaml::as_mapping) else {
        return BTreeMap::new();
    };
    mapping
        .iter()
        .map(|(key, value)| {
            let key = scalar(key).expect("a scalar key");
            let value = scalar(value).unwrap_or_else(|| panic!("{key}: is not a scalar"));
            (key, value)
        })
        .collect()
}

/// One step of a job: its scalar keys (`name`, `id`, `if`, `run`, `uses`, `script`, `task`,
/// `condition`, ...), its `env:`, and its `with:` (GitHub) or `inputs:` (Azure).
#[derive(Debug)]
struct Step {
    keys: BTreeMap<String, String>,
    env: BTreeMap<String, String>,
    inputs: BTreeMap<String, String>,
}

impl Step {
    fn get(&self, key: &str) -> Option<&str> {
        self.keys.get(key).map(String::as_str)
    }

    fn input(&self, key: &str) -> Option<&str> {
        self.inputs.get(key).map(String::as_str)
    }

    /// The shell script the step runs (GitHub's `run:`, Azure's `script:` or an `AzureCLI@2`
    /// task's `inlineScript:`), ending in a line break as a script file does.
    fn script(&self) -> Option<String> {
        let text = if self.get("task").is_some_and(|t| t.starts_with("AzureCLI@")) {
            self.input("inlineScript")
        } else {
            self.get("run").or(self.get("script"))
        }?;
        Some(if text.ends_with('\n') {
            text.to_string()
        } else {
            format!("{text}\n")
        })
    }
}

/// The steps of `job`'s `steps:` list, in order.
fn steps_of(job: &Yaml) -> Vec<Step> {
    at(job, "steps")
        .as_sequence()
        .expect("steps: is a list")
        .iter()
        .map(|step| {
            let keys = step
                .as_mapping()
                .expect("a step is a mapping")
                .iter()
                .filter_map(|(key, value)| Some((scalar(key)?, scalar(value)?)))
                .collect();
            let inputs = step
                .as_mapping_get("with")
                .or(step.as_mapping_get("inputs"));
            Step {
                keys,
                env: scalars(step.as_mapping_get("env")),
                inputs: scalars(inputs),
            }
        })
        .collect()
}

/// The first step `pred` picks (`what` names it when none does).
fn step_at(steps: &[Step], what: &str, pred: &dyn Fn(&Step) -> bool) -> usize {
    steps
        .iter()
        .position(pred)
        .unwrap_or_else(|| panic!("no step {what}"))
}

/// A schedule's cron expression, checked: five fields in range, every day of every month.
/// Its fields.
fn nightly_cron(cron: &str) -> Vec<String> {
    let fields: Vec<String> = cron.split_whitespace().map(str::to_string).collect();
    assert_eq!(fields.len(), 5, "{cron}");
    for (field, (min, max)) in fields
        .iter()
        .zip([(0, 59), (0, 23), (1, 31), (1, 12), (0, 6)])
    {
        assert!(cron_field_ok(field, min, max), "bad cron field {field:?}");
    }
    assert_eq!(&fields[2..], ["*", "*", "*"], "nightly");
    fields
}

/// The repository the workflow runs in, as `${{ github.repository }}` gives it.
const GITHUB_REPOSITORY: &str = "contoso/mca-operations";

/// The GitHub runner, as far as the workflow's `run:` steps see it: the repository's secret
/// store (one file per secret, which the `gh` stub writes), the built tool on PATH, a
/// workspace kept across nights (the artifacts are taken from it), and a fresh RUNNER_TEMP
/// each night.
struct Runner<'a> {
    scene: &'a Scene,
    workspace: PathBuf,
    store: PathBuf,
    path: String,
}

/// What a night of the job did: each `run:` step's outcome, by position; the job's result.
struct Night {
    outcomes: BTreeMap<usize, Outcome>,
    outputs: BTreeMap<usize, String>,
    failed: bool,
    runner_temp: PathBuf,
}

impl Runner<'_> {
    fn secret(&self, name: &str) -> String {
        fs::read_to_string(self.store.join(name))
            .unwrap_or_else(|_| panic!("secret {name} is not in the repository's secret store"))
    }

    /// Replaces the expressions a `run:` step's env may use; any other is a failure.
    fn expand(&self, value: &str, runner_temp: &Path) -> String {
        let mut out = String::new();
        let mut rest = value;
        while let Some(at) = rest.find("${{") {
            out.push_str(&rest[..at]);
            let end = rest[at..].find("}}").expect("an unclosed ${{") + at;
            let expr = rest[at + 3..end].trim();
            if let Some(name) = expr.strip_prefix("secrets.") {
                out.push_str(&self.secret(name));
            } else if expr == "runner.temp" {
                out.push_str(runner_temp.to_str().unwrap());
            } else if expr == "github.repository" {
                out.push_str(GITHUB_REPOSITORY);
            } else {
                panic!("unexpected expression ${{{{ {expr} }}}} in {value:?}");
            }
            rest = &rest[end + 2..];
        }
        out.push_str(rest);
        out
    }

    /// Runs the `run:` steps from `first` on, in order, as the runner does: a step without
    /// `if:` only while every step before it succeeded, a step with `if: always() ...` anyway
    /// (the other terms of those conditions hold in these runs). `uses:` steps are skipped.
    fn night(&self, name: &str, steps: &[Step], first: usize) -> Night {
        let runner_temp = self.scene.mkdir(&format!("{name}-runner-temp"));
        let mut night = Night {
            outcomes: BTreeMap::new(),
            outputs: BTreeMap::new(),
            failed: false,
            runner_temp: runner_temp.clone(),
        };
        for (at, step) in steps.iter().enumerate().skip(first) {
            let Some(script) = step.script() else {
                continue;
            };
            assert!(
                !script.contains("${{"),
                "an expression in a run: script (use env:): {script}"
            );
            match step.get("if") {
                None if night.failed => continue,
                None => {}
                Some(cond) => assert!(
                    cond.contains("always()"),
                    "unsupported condition in the test's runner: {cond}"
                ),
            }
            let mut env = base_env();
            env.insert("PATH".into(), self.path.clone());
            env.insert("CI".into(), "true".into());
            env.insert("RUNNER_TEMP".into(), runner_temp.to_str().unwrap().into());
            env.insert(
                "GITHUB_WORKSPACE".into(),
                self.workspace.to_str().unwrap().into(),
            );
            let output = self.scene.path(&format!("{name}-step{at}-output"));
            let summary = self.scene.path(&format!("{name}-step-summary"));
            fs::write(&output, "").unwrap();
            env.insert("GITHUB_OUTPUT".into(), output.to_str().unwrap().into());
            env.insert(
                "GITHUB_STEP_SUMMARY".into(),
                summary.to_str().unwrap().into(),
            );
            // The rehearsal: Partner Center and its token authority are the simulator.
            env.insert(
                "PARTNER_CENTER_BASE_URL".into(),
                self.scene.sim.base_url.clone(),
            );
            env.insert(
                "PARTNER_CENTER_AUTHORITY".into(),
                self.scene.sim.base_url.clone(),
            );
            for (key, value) in &step.env {
                env.insert(key.clone(), self.expand(value, &runner_temp));
            }
            let script_path = self.scene.path(&format!("{name}-step{at}.sh"));
            fs::write(&script_path, &script).unwrap();
            // GitHub's default shell for `run:` on Linux.
            let outcome = self.scene.run(
                &format!("{name}-step{at}"),
                "bash",
                &["-e", script_path.to_str().unwrap()],
                &self.workspace,
                &env,
            );
            if outcome.code() != Some(0) {
                night.failed = true;
            }
            night
                .outputs
                .insert(at, fs::read_to_string(&output).unwrap_or_default());
            night.outcomes.insert(at, outcome);
        }
        night
    }
}

#[test]
fn github_workflow_runs_nightly_keeps_the_rotated_token_uploads_report_and_fails_on_exit_1() {
    let text = read_doc("ci/status-nightly.yml");
    let doc = yaml_document(&text);
    assert!(scalar(at(&doc, "name")).is_some_and(|n| !n.is_empty()));

    // on: a nightly schedule (and a manual trigger).
    let on = at(&doc, "on");
    let cron = at(on, "schedule")
        .as_sequence()
        .expect("schedule: is a list")
        .iter()
        .find_map(|s| s.as_mapping_get("cron").and_then(scalar))
        .expect("a schedule cron");
    nightly_cron(&cron);
    assert!(on.as_mapping_get("workflow_dispatch").is_some());
    assert_eq!(
        scalar(at(at(&doc, "permissions"), "contents")).as_deref(),
        Some("read")
    );
    // One run at a time: two would redeem the same refresh token.
    assert_eq!(
        at(at(&doc, "concurrency"), "cancel-in-progress").as_bool(),
        Some(false)
    );
    let jobs = at(&doc, "jobs").as_mapping().expect("jobs: is a mapping");
    assert_eq!(jobs.len(), 1, "one job");
    let job = jobs.values().next().unwrap();
    assert!(job.as_mapping_get("runs-on").is_some());
    assert!(
        at(job, "timeout-minutes")
            .as_integer()
            .is_some_and(|m| m > 0)
    );

    let steps = steps_of(job);
    let build_at = steps
        .iter()
        .position(|s| s.script().is_some_and(|r| r.contains("cargo ")))
        .expect("a step builds the tool");
    let find = |what: &str, pred: &dyn Fn(&Step) -> bool| step_at(&steps, what, pred);
    let status_at = find("with id: status", &|s| s.get("id") == Some("status"));
    let token_at = find("writing PARTNER_CENTER_REFRESH_TOKEN to a file", &|s| {
        s.script()
            .is_some_and(|r| r.contains("$PARTNER_CENTER_REFRESH_TOKEN\""))
    });
    let keep_at = find("running gh secret set", &|s| {
        s.script()
            .is_some_and(|r| r.contains("gh secret set PARTNER_CENTER_REFRESH_TOKEN"))
    });
    let upload_at = find("uploading the artifact", &|s| {
        s.get("uses")
            .is_some_and(|u| u.starts_with("actions/upload-artifact@"))
    });
    assert!(
        build_at < token_at && token_at < status_at && status_at < keep_at,
        "build, token file, run, keep the token: in that order"
    );
    assert!(upload_at > status_at, "the upload comes after the run");
    let (status, keep, upload) = (&steps[status_at], &steps[keep_at], &steps[upload_at]);
    assert!(
        upload.get("if").is_some_and(|v| v.contains("always()")),
        "the report is uploaded when the run failed too"
    );
    assert!(
        keep.get("if").is_some_and(|v| v.contains("always()")),
        "the rotated token is kept when the run failed too"
    );

    // The token file step: the secret from the store, into a private file in RUNNER_TEMP.
    let token_script = steps[token_at].script().unwrap();
    assert!(token_script.contains("umask 077"), "{token_script}");
    assert!(token_script.contains("$RUNNER_TEMP"), "{token_script}");
    // The status step: ids and the client secret from the secret store, the refresh token as
    // a file in RUNNER_TEMP only (PARTNER_CENTER_REFRESH_TOKEN would win over the file and
    // the rotated token would be lost).
    let status_env = &status.env;
    for (key, value) in status_env {
        if key == "PARTNER_CENTER_REFRESH_TOKEN_FILE" {
            assert!(value.starts_with("${{ runner.temp }}/"), "{key}: {value}");
        } else {
            assert_eq!(
                *value,
                format!("${{{{ secrets.{key} }}}}"),
                "{key} must come from the secret store"
            );
        }
    }
    assert!(
        !status_env.contains_key("PARTNER_CENTER_REFRESH_TOKEN"),
        "the refresh token must reach the tool as a file"
    );
    assert!(status_env.contains_key("PARTNER_CENTER_REFRESH_TOKEN_FILE"));
    let script = status.script().unwrap();
    assert!(
        script.contains("mca-attest status --all-customers "),
        "{script}"
    );
    assert!(!script.contains("secrets."), "secrets on the command line");
    // The keep step: gh with a token of its own from the store (the job's GITHUB_TOKEN cannot
    // write secrets).
    let gh_token = keep
        .env
        .get("GH_TOKEN")
        .and_then(|v| v.strip_prefix("${{ secrets."))
        .and_then(|v| v.strip_suffix(" }}"))
        .expect("GH_TOKEN: ${{ secrets.NAME }} in the step that keeps the token")
        .to_string();
    assert_ne!(gh_token, "GITHUB_TOKEN");
    assert!(
        read_doc("scheduled-reconciliation.md").contains(&gh_token),
        "the guide does not document {gh_token}"
    );

    // The runner: the secret store, the built tool and a `gh` that stores a secret from its
    // standard input (and refuses anything else: a token never goes on a command line).
    let scene = Scene::new();
    let store = scene.mkdir("secret-store");
    const GH_WRITER_TOKEN: &str = "docs-example-gh-secrets-writer-token";
    for (name, value) in [
        ("PARTNER_CENTER_TENANT_ID", "contoso.onmicrosoft.com"),
        ("PARTNER_CENTER_CLIENT_ID", CLIENT_ID),
        ("PARTNER_CENTER_CLIENT_SECRET", CLIENT_SECRET),
        ("PARTNER_CENTER_REFRESH_TOKEN", REFRESH_TOKEN),
        (gh_token.as_str(), GH_WRITER_TOKEN),
    ] {
        fs::write(store.join(name), value).unwrap();
    }
    let tool_dir = scene.mkdir("tool-bin");
    std::os::unix::fs::symlink(BIN, tool_dir.join("mca-attest")).unwrap();
    let gh_calls = scene.path("gh.calls");
    let gh = tool_dir.join("gh");
    fs::write(
        &gh,
        format!(
            "#!/bin/sh\n\
             printf '%s\\n' \"$*\" >> '{calls}'\n\
             [ \"$GH_TOKEN\" = '{GH_WRITER_TOKEN}' ] || {{ echo 'gh: not logged in' >&2; exit 4; }}\n\
             [ \"$GH_REPO\" = '{GITHUB_REPOSITORY}' ] || {{ echo 'gh: which repository?' >&2; exit 4; }}\n\
             if [ \"$1\" = secret ] && [ \"$2\" = set ] && [ $# -eq 3 ]; then cat > '{store}/'\"$3\"; exit; fi\n\
             echo \"gh: unexpected arguments\" >&2; exit 4\n",
            calls = gh_calls.display(),
            store = store.display(),
        ),
    )
    .unwrap();
    fs::set_permissions(&gh, fs::Permissions::from_mode(0o755)).unwrap();
    let runner = Runner {
        scene: &scene,
        workspace: scene.mkdir("workspace"),
        store: store.clone(),
        path: format!("{}:/usr/local/bin:/usr/bin:/bin", tool_dir.display()),
    };

    // Night 1: the run step exits 1 with an error annotation and the job fails; the token the
    // authority rotated is stored as the repository secret; no token file is left behind.
    let night1 = runner.night("gha-night1", &steps, build_at + 1);
    let run1 = &night1.outcomes[&status_at];
    assert_eq!(run1.code(), Some(1), "{run1}");
    assert!(run1.stdout.contains("::error"), "{run1}");
    assert!(night1.failed);
    let kept1 = &night1.outcomes[&keep_at];
    assert_eq!(kept1.code(), Some(0), "{kept1}");
    let token1 = runner
        .secret("PARTNER_CENTER_REFRESH_TOKEN")
        .trim_end()
        .to_string();
    assert_ne!(
        token1, REFRESH_TOKEN,
        "the rotated refresh token was not stored"
    );
    assert!(!token1.is_empty());
    let calls = fs::read_to_string(&gh_calls).unwrap();
    assert_eq!(calls, "secret set PARTNER_CENTER_REFRESH_TOKEN\n");
    for outcome in night1.outcomes.values() {
        outcome.expect_free_of(&token1);
    }
    assert_eq!(
        fs::read_dir(&night1.runner_temp).unwrap().count(),
        0,
        "files left in RUNNER_TEMP"
    );
    let day = night1.outputs[&status_at]
        .lines()
        .find_map(|l| l.strip_prefix("day="))
        .expect("the step sets its day output")
        .to_string();
    let step_summary = fs::read_to_string(scene.path("gha-night1-step-summary")).unwrap();
    assert!(step_summary.contains("missing"), "{step_summary}");

    // Every path the upload step names exists, the report and its manifest among them.
    let paths: Vec<String> = upload
        .input("path")
        .expect("a path: list in the upload step")
        .lines()
        .map(|l| l.trim().replace("${{ steps.status.outputs.day }}", &day))
        .filter(|l| !l.is_empty())
        .collect();
    assert!(
        paths.iter().any(|p| p.ends_with(".csv.manifest.json")),
        "{paths:?}"
    );
    let workspace = &runner.workspace;
    for p in &paths {
        assert!(
            workspace.join(p).is_file(),
            "artifact path {p} was not written"
        );
    }
    let report = workspace.join(
        paths
            .iter()
            .find(|p| p.ends_with(&format!("status-{day}.csv")))
            .expect("the report among the artifacts"),
    );
    expect_states(&report, false);
    expect_manifest(&report, 1);
    let reports = report.parent().unwrap().to_path_buf();
    // --redact: no email on record in the artifact.
    let report_text = fs::read_to_string(&report).unwrap();
    assert!(
        !report_text.contains("tania.carr@contoso.com"),
        "{report_text}"
    );
    let todo = dated(&reports, "todo-", ".csv").expect("a dated todo file");
    expect_todo(&todo);

    // Confirmed: the next night starts from the stored token and passes without an
    // annotation, storing the next one.
    scene.confirm(&todo);
    let night2 = runner.night("gha-night2", &steps, build_at + 1);
    let run2 = &night2.outcomes[&status_at];
    assert_eq!(run2.code(), Some(0), "{run2}");
    assert!(!run2.stdout.contains("::error"), "{run2}");
    assert!(!night2.failed, "night 2 failed");
    let token2 = runner
        .secret("PARTNER_CENTER_REFRESH_TOKEN")
        .trim_end()
        .to_string();
    assert_ne!(token2, token1, "the second rotation was not stored");
    for outcome in night2.outcomes.values() {
        outcome.expect_free_of(&token1);
        outcome.expect_free_of(&token2);
    }
    let report = dated(&reports, "status-", ".csv").unwrap();
    expect_states(&report, true);
    expect_manifest(&report, 0);
    expect_no_secrets(workspace, &[&token1, &token2]);
}

/// Every `mca-attest SUBCOMMAND ...` in `text` (backslash-continued lines joined): the
/// subcommand and the flags that follow it on its line. The account name in `sudo -u
/// mca-attest ...`, `chown`, `install -o` is not a command.
fn commands_in(text: &str) -> Vec<(String, Vec<String>)> {
    let joined = text.replace("\\\n", " ");
    let mut found = Vec::new();
    for line in joined.lines() {
        let line = line.trim_start();
        if line.starts_with('#') {
            continue;
        }
        for (at, _) in line.match_indices("mca-attest ") {
            let before = &line[..at];
            let previous = before.split_whitespace().last().unwrap_or("");
            if previous.starts_with('-') || before.ends_with(':') {
                continue;
            }
            let mut words = line[at + "mca-attest ".len()..]
                .split(|c: char| c.is_whitespace() || c == '\'' || c == '"' || c == '`')
                .filter(|w| !w.is_empty());
            let Some(sub) = words.next() else { continue };
            if !sub.chars().all(|c| c.is_ascii_lowercase()) {
                continue;
            }
            let flags = words
                .take_while(|w| !["&&", "||", "|", ";"].contains(w) && !w.ends_with(';'))
                .filter(|w| w.starts_with("--") && w.len() > 2)
                .map(|w| w.split('=').next().unwrap().to_string())
                .collect();
            found.push((sub.to_string(), flags));
        }
    }
    found
}

/// The fenced code blocks of a markdown text.
fn code_blocks(markdown: &str) -> String {
    markdown
        .split("```")
        .skip(1)
        .step_by(2)
        .map(|b| b.split_once('\n').map_or("", |(_, body)| body))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_guide_names_every_example_and_the_exit_codes() {
    let guide = read_doc("scheduled-reconciliation.md");
    for file in [
        "systemd/mca-attest-status.service",
        "systemd/mca-attest-status.timer",
        "cron/mca-attest-status.cron",
        "ci/status-nightly.yml",
        "azure-devops/status-nightly.yml",
    ] {
        assert!(guide.contains(file), "the guide does not link {file}");
        assert!(docs().join(file).is_file(), "{file} is missing");
    }
    // The guide's table of exit codes lists exactly the codes the tool says it exits with (its
    // manual's EXIT STATUS): what each means is pinned by the tests of those behaviours, and the
    // examples above exit with them.
    let man = Command::new(BIN).arg("man").output().unwrap();
    assert!(man.status.success());
    let man = String::from_utf8_lossy(&man.stdout).into_owned();
    let exit_status = man
        .split(".SH \"EXIT STATUS\"")
        .nth(1)
        .and_then(|rest| rest.split("\n.SH ").next())
        .expect("an EXIT STATUS section in the manual");
    let documented: BTreeSet<u32> = exit_status
        .lines()
        .filter_map(|l| l.strip_prefix("\\fB")?.strip_suffix("\\fR")?.parse().ok())
        .collect();
    let in_guide: BTreeSet<u32> = guide
        .lines()
        .filter_map(|l| l.strip_prefix("| ")?.split_once(" |")?.0.parse().ok())
        .collect();
    assert!(!documented.is_empty(), "{exit_status}");
    assert_eq!(in_guide, documented, "the guide's exit codes");
    for topic in [
        "--all-customers",
        "company_name",
        "--emit-confirm-input",
        "AgreementOnRecordIsStale",
        ".partial",
        "--resume",
        "PARTNER_CENTER_REFRESH_TOKEN_FILE",
        "gh secret set",
        "az keyvault secret set",
    ] {
        assert!(guide.contains(topic), "the guide does not explain {topic}");
    }

    // The examples' commands, and those in the guide's code blocks, use only flags of their
    // subcommand.
    let mut help: BTreeMap<String, String> = BTreeMap::new();
    let mut sources: Vec<(String, String)> = [
        "systemd/mca-attest-status.service",
        "cron/mca-attest-status.cron",
        "ci/status-nightly.yml",
        "azure-devops/status-nightly.yml",
    ]
    .iter()
    .map(|f| (f.to_string(), read_doc(f)))
    .collect();
    for (file, text) in &sources {
        assert!(
            commands_in(text)
                .iter()
                .any(|(sub, flags)| sub == "status" && flags.iter().any(|f| f == "--all-customers")),
            "{file} runs no `mca-attest status --all-customers`"
        );
    }
    sources.push(("scheduled-reconciliation.md".into(), code_blocks(&guide)));
    for (file, text) in &sources {
        for (sub, flags) in commands_in(text) {
            let help = help.entry(sub.clone()).or_insert_with(|| {
                let out = Command::new(BIN)
                    .args([sub.as_str(), "--help"])
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{file}: `mca-attest {sub}` is no subcommand"
                );
                String::from_utf8_lossy(&out.stdout).into_owned()
            });
            for flag in flags {
                assert!(
                    help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
                    "{file}: {flag} is not a flag of `mca-attest {sub}`"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Azure Pipelines.

/// The pipeline's `variables:`: the variable groups it links, and its own `name:`/`value:` pairs.
fn azure_variables(doc: &Yaml) -> (Vec<String>, BTreeMap<String, String>) {
    let mut groups = Vec::new();
    let mut values = BTreeMap::new();
    for item in at(doc, "variables")
        .as_sequence()
        .expect("variables: is a list")
    {
        if let Some(group) = item.as_mapping_get("group") {
            groups.push(scalar(group).expect("a group name"));
        } else {
            let name = scalar(at(item, "name")).expect("a variable name");
            let value = scalar(at(item, "value")).expect("a scalar value");
            values.insert(name, value);
        }
    }
    (groups, values)
}

/// The SHA-256 of `path`, as `sha256sum` prints it.
fn sha256_hex(path: &Path) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(fs::read(path).unwrap()))
}

/// The Azure Pipelines agent, as far as the pipeline's steps see it: the variable group (one
/// file per variable), the Key Vault (one file per secret, which the `az` stub reads and
/// writes), a release page the `curl` stub serves, a fresh workspace and temporary directory
/// each night (`workspace: clean: all`, as on a hosted agent).
struct AzureAgent<'a> {
    scene: &'a Scene,
    library: PathBuf,
    vault: PathBuf,
    stubs: PathBuf,
    variables: BTreeMap<String, String>,
}

/// What a night of the pipeline did: each script step's outcome, by position; the variables
/// the steps set; the artifacts published (name → path); the run's result.
struct AzureNight {
    outcomes: BTreeMap<usize, Outcome>,
    set: BTreeMap<String, String>,
    artifacts: BTreeMap<String, PathBuf>,
    summaries: Vec<PathBuf>,
    failed: bool,
    agent_temp: PathBuf,
}

impl AzureAgent<'_> {
    fn vault_secret(&self, name: &str) -> String {
        fs::read_to_string(self.vault.join(name))
            .unwrap_or_else(|_| panic!("secret {name} is not in the Key Vault"))
    }

    /// Replaces the macros (`$(NAME)`) a step's env or inputs may use; any other is a failure.
    fn expand(&self, value: &str, night: &AzureNight, workspace: &Path) -> String {
        let mut out = String::new();
        let mut rest = value;
        while let Some(at) = rest.find("$(") {
            out.push_str(&rest[..at]);
            let end = rest[at..].find(')').expect("an unclosed $(") + at;
            let name = &rest[at + 2..end];
            let known = night
                .set
                .get(name)
                .or_else(|| self.variables.get(name))
                .cloned()
                .or_else(|| fs::read_to_string(self.library.join(name)).ok())
                .or_else(|| match name {
                    "Agent.TempDirectory" => Some(night.agent_temp.to_str().unwrap().into()),
                    "System.DefaultWorkingDirectory" => Some(workspace.to_str().unwrap().into()),
                    "System.JobAttempt" => Some("1".into()),
                    _ => None,
                });
            out.push_str(&known.unwrap_or_else(|| panic!("unknown macro $({name}) in {value:?}")));
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        out
    }

    /// Runs the steps in order, as the agent does: a step without `condition:` only while
    /// every step before it succeeded, one with `always()` or `succeededOrFailed()` anyway,
    /// unless its condition asks for a variable (`ne(variables.NAME, '')`) no step set. Scripts run under bash without
    /// `-e`, as the agent runs them; `##vso[...]` logging commands on stdout set variables,
    /// extend PATH and attach summaries; a publish step publishes its path if it exists.
    fn night(&self, name: &str, steps: &[Step]) -> AzureNight {
        let workspace = self.scene.mkdir(&format!("{name}-workspace"));
        let mut night = AzureNight {
            outcomes: BTreeMap::new(),
            set: BTreeMap::new(),
            artifacts: BTreeMap::new(),
            summaries: Vec::new(),
            failed: false,
            agent_temp: self.scene.mkdir(&format!("{name}-agent-temp")),
        };
        // Directories `##vso[task.prependpath]` added, the latest first on PATH.
        let mut prepended: Vec<String> = Vec::new();
        for (at, step) in steps.iter().enumerate() {
            if step.get("checkout").is_some() {
                continue;
            }
            match step.get("condition") {
                None if night.failed => continue,
                None => {}
                Some(cond) => {
                    assert!(
                        cond.contains("always()") || cond.contains("succeededOrFailed()"),
                        "unsupported condition in the test's agent: {cond}"
                    );
                    // `ne(variables.NAME, '')`: NAME set by an earlier step.
                    let unset = cond.split("ne(variables.").skip(1).any(|rest| {
                        let name = rest.split(',').next().unwrap_or("").trim();
                        night.set.get(name).is_none_or(|v| v.is_empty())
                    });
                    if unset {
                        continue;
                    }
                }
            }
            let task = step.get("task");
            if task.is_some_and(|t| t.starts_with("PublishPipelineArtifact@")) {
                let target = step.input("targetPath").expect("a targetPath");
                let artifact = step.input("artifact").expect("an artifact name");
                let target = PathBuf::from(self.expand(target, &night, &workspace));
                let artifact = self.expand(artifact, &night, &workspace);
                assert!(
                    !artifact.contains(['/', '\\', ':', '"', '<', '>', '|', '*', '?']),
                    "artifact name {artifact:?}"
                );
                if target.exists() {
                    night.artifacts.insert(artifact, target);
                } else {
                    night.failed = true;
                }
                continue;
            }
            if let Some(task) = task {
                assert_eq!(task, "AzureCLI@2", "unsupported task in the test's agent");
                assert_eq!(step.input("scriptType"), Some("bash"));
                assert_eq!(step.input("scriptLocation"), Some("inlineScript"));
                assert!(
                    step.input("azureSubscription")
                        .is_some_and(|s| !s.is_empty())
                );
            }
            let script = step.script().expect("a script step");
            // Macros in a script would put values (secrets among them) into its text: scripts
            // take variables from the environment.
            for (macro_at, _) in script.match_indices("$(") {
                let inner = script[macro_at + 2..].split(')').next().unwrap_or("");
                let macro_like = !inner.is_empty()
                    && inner
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
                assert!(
                    !macro_like
                        || !(inner.contains('.')
                            || self.variables.contains_key(inner)
                            || self.library.join(inner).exists()),
                    "a macro $({inner}) in a script (use env:): {script}"
                );
            }

            let mut env = base_env();
            let search: Vec<&str> = prepended.iter().rev().map(String::as_str).collect();
            env.insert(
                "PATH".into(),
                format!(
                    "{}{}{}:/usr/local/bin:/usr/bin:/bin",
                    search.join(":"),
                    if search.is_empty() { "" } else { ":" },
                    self.stubs.display()
                ),
            );
            env.insert("TF_BUILD".into(), "True".into());
            env.insert(
                "AGENT_TEMPDIRECTORY".into(),
                night.agent_temp.to_str().unwrap().into(),
            );
            env.insert(
                "SYSTEM_DEFAULTWORKINGDIRECTORY".into(),
                workspace.to_str().unwrap().into(),
            );
            env.insert("SYSTEM_JOBATTEMPT".into(), "1".into());
            // Non-secret pipeline variables, and those set by earlier steps, are in every
            // step's environment; the variable group's only where env: maps them.
            for (key, value) in self.variables.iter().chain(&night.set) {
                env.insert(key.to_uppercase().replace('.', "_"), value.clone());
            }
            // The rehearsal: Partner Center and its token authority are the simulator.
            env.insert(
                "PARTNER_CENTER_BASE_URL".into(),
                self.scene.sim.base_url.clone(),
            );
            env.insert(
                "PARTNER_CENTER_AUTHORITY".into(),
                self.scene.sim.base_url.clone(),
            );
            for (key, value) in &step.env {
                env.insert(key.clone(), self.expand(value, &night, &workspace));
            }
            let script_path = self.scene.path(&format!("{name}-step{at}.sh"));
            fs::write(&script_path, &script).unwrap();
            let outcome = self.scene.run(
                &format!("{name}-step{at}"),
                "bash",
                &["--noprofile", "--norc", script_path.to_str().unwrap()],
                &workspace,
                &env,
            );
            for line in outcome.stdout.lines() {
                if let Some(rest) = line.strip_prefix("##vso[task.setvariable variable=") {
                    let (key, value) = rest.split_once(']').expect("##vso[...]value");
                    night.set.insert(key.to_string(), value.to_string());
                } else if let Some(dir) = line.strip_prefix("##vso[task.prependpath]") {
                    prepended.push(dir.to_string());
                } else if let Some(file) = line.strip_prefix("##vso[task.uploadsummary]") {
                    night.summaries.push(PathBuf::from(file));
                }
            }
            if outcome.code() != Some(0) {
                night.failed = true;
            }
            night.outcomes.insert(at, outcome);
        }
        night
    }
}

#[test]
fn azure_pipeline_runs_nightly_keeps_the_rotated_token_publishes_report_and_workbook_and_fails_on_exit_1()
 {
    let text = read_doc("azure-devops/status-nightly.yml");
    let doc = yaml_document(&text);

    // Scheduled only: no run on a push or a pull request.
    assert_eq!(scalar(at(&doc, "trigger")).as_deref(), Some("none"));
    assert_eq!(scalar(at(&doc, "pr")).as_deref(), Some("none"));
    // schedules: nightly, whether or not the repository changed.
    let schedules = at(&doc, "schedules")
        .as_sequence()
        .expect("schedules: is a list");
    assert_eq!(schedules.len(), 1, "one schedule");
    let schedule = &schedules[0];
    let fields = nightly_cron(&scalar(at(schedule, "cron")).expect("a cron"));
    assert!(fields[0].parse::<u32>().is_ok() && fields[1].parse::<u32>().is_ok());
    assert_eq!(
        at(schedule, "always").as_bool(),
        Some(true),
        "a schedule without always: true skips nights when nothing changed"
    );
    assert!(
        at(at(schedule, "branches"), "include")
            .as_sequence()
            .is_some_and(|b| !b.is_empty())
    );
    // One run at a time: two would redeem the same refresh token.
    assert_eq!(
        scalar(at(&doc, "lockBehavior")).as_deref(),
        Some("sequential")
    );
    assert!(scalar(at(at(&doc, "pool"), "vmImage")).is_some_and(|v| v.starts_with("ubuntu")));
    let jobs = at(&doc, "jobs").as_sequence().expect("jobs: is a list");
    assert_eq!(jobs.len(), 1, "one job");
    let job = &jobs[0];
    assert!(
        at(job, "timeoutInMinutes")
            .as_integer()
            .is_some_and(|m| m > 0)
    );
    let (groups, mut variables) = azure_variables(&doc);
    assert_eq!(groups.len(), 1, "{groups:?}");
    let version = variables
        .get("MCA_ATTEST_VERSION")
        .expect("MCA_ATTEST_VERSION")
        .clone();
    let repository = variables
        .get("MCA_ATTEST_REPOSITORY")
        .expect("MCA_ATTEST_REPOSITORY")
        .clone();
    let vault_name = variables
        .get("MCA_ATTEST_KEY_VAULT")
        .expect("MCA_ATTEST_KEY_VAULT")
        .clone();

    let steps = steps_of(job);
    let script_of = |s: &Step| s.script().unwrap_or_default();
    let find = |what: &str, pred: &dyn Fn(&Step) -> bool| step_at(&steps, what, pred);
    let download_at = find("downloading and verifying the release", &|s| {
        let script = script_of(s);
        script.contains("sha256sum -c") && script.contains("##vso[task.prependpath]")
    });
    let token_at = find("downloading the refresh token from Key Vault", &|s| {
        script_of(s).contains("az keyvault secret download ")
    });
    let status_at = find("with name: status", &|s| s.get("name") == Some("status"));
    let report_at = find("making the workbook", &|s| {
        script_of(s).contains("mca-attest report ")
    });
    let keep_at = find(
        "storing the rotated token with az keyvault secret set",
        &|s| script_of(s).contains("az keyvault secret set "),
    );
    let publish: Vec<usize> = (0..steps.len())
        .filter(|&i| {
            steps[i]
                .get("task")
                .is_some_and(|t| t.starts_with("PublishPipelineArtifact@1"))
        })
        .collect();
    assert!(
        publish.len() >= 2,
        "publish steps for the workbook and the report"
    );
    assert!(
        download_at < token_at && token_at < status_at && status_at < keep_at,
        "download, token file, run, keep the token: in that order"
    );
    assert!(status_at < report_at, "the workbook comes after the run");
    for &at in &publish {
        assert!(at > report_at, "publishing comes after the workbook");
        assert!(
            steps[at]
                .get("condition")
                .is_some_and(|c| c.contains("always()")),
            "step {at}: the artifacts are published when the run failed too"
        );
    }
    assert!(
        steps[report_at]
            .get("condition")
            .is_some_and(|c| c.contains("succeededOrFailed()") || c.contains("always()")),
        "the workbook is made after exit 1 too"
    );
    assert!(
        steps[keep_at]
            .get("condition")
            .is_some_and(|c| c.contains("always()")),
        "the rotated token is kept when the run failed too"
    );
    // Both Key Vault steps go through one service connection: the one whose identity may get
    // and set the vault's secrets.
    let connections: Vec<&str> = [token_at, keep_at]
        .iter()
        .map(|&at| {
            steps[at]
                .input("azureSubscription")
                .expect("azureSubscription")
        })
        .collect();
    assert!(!connections[0].is_empty(), "{connections:?}");
    assert_eq!(connections[0], connections[1]);

    // The token file step: from the vault, into a private file in the agent's temp directory.
    let token_script = script_of(&steps[token_at]);
    assert!(token_script.contains("umask 077"), "{token_script}");
    assert!(
        token_script.contains("$AGENT_TEMPDIRECTORY"),
        "{token_script}"
    );
    // The status step: ids and the client secret from the variable group, mapped explicitly
    // (secret variables reach a script no other way), the refresh token as a file only.
    let status_env = &steps[status_at].env;
    for (key, value) in status_env {
        if key == "PARTNER_CENTER_REFRESH_TOKEN_FILE" {
            assert!(
                value.starts_with("$(Agent.TempDirectory)/"),
                "{key}: {value}"
            );
        } else {
            assert_eq!(
                *value,
                format!("$({key})"),
                "{key} must come from the group"
            );
        }
    }
    for key in [
        "PARTNER_CENTER_TENANT_ID",
        "PARTNER_CENTER_CLIENT_ID",
        "PARTNER_CENTER_CLIENT_SECRET",
        "PARTNER_CENTER_REFRESH_TOKEN_FILE",
    ] {
        assert!(status_env.contains_key(key), "{key} is not mapped");
    }
    assert!(
        !status_env.contains_key("PARTNER_CENTER_REFRESH_TOKEN"),
        "the refresh token must reach the tool as a file"
    );
    let script = script_of(&steps[status_at]);
    assert!(
        script.contains("mca-attest status --all-customers "),
        "{script}"
    );
    assert!(
        read_doc("scheduled-reconciliation.md").contains("az keyvault secret set"),
        "the guide does not explain how the rotated token is kept"
    );

    // The agent: the variable group, the vault, a release page served by a `curl` stub, and
    // an `az` stub that moves the vault's secrets through files only (`--value` is refused:
    // a token never goes on a command line).
    let scene = Scene::new();
    let library = scene.mkdir("variable-group");
    for (name, value) in [
        ("PARTNER_CENTER_TENANT_ID", "contoso.onmicrosoft.com"),
        ("PARTNER_CENTER_CLIENT_ID", CLIENT_ID),
        ("PARTNER_CENTER_CLIENT_SECRET", CLIENT_SECRET),
    ] {
        fs::write(library.join(name), value).unwrap();
    }
    let vault = scene.mkdir("key-vault");
    fs::write(
        vault.join("partner-center-refresh-token"),
        format!("{REFRESH_TOKEN}\n"),
    )
    .unwrap();

    // The release, as .ci/release packs it: NAME/mca-attest in NAME.tar.gz, and SHA256SUMS.
    let release = scene.mkdir("release");
    let archive = format!("mca-attest-{version}-x86_64-unknown-linux-musl");
    let staging = scene.mkdir(&format!("staging/{archive}"));
    let launcher = staging.join("mca-attest");
    fs::write(&launcher, format!("#!/bin/sh\nexec '{BIN}' \"$@\"\n")).unwrap();
    fs::set_permissions(&launcher, fs::Permissions::from_mode(0o755)).unwrap();
    fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"),
        staging.join("README.md"),
    )
    .unwrap();
    let tarball = release.join(format!("{archive}.tar.gz"));
    let tar = Command::new("tar")
        .arg("-C")
        .arg(scene.path("staging"))
        .arg("-czf")
        .arg(&tarball)
        .arg(&archive)
        .status()
        .expect("tar");
    assert!(tar.success());
    let sha = sha256_hex(&tarball);
    fs::write(
        release.join("SHA256SUMS"),
        format!(
            "{sha}  {archive}.tar.gz\n{}  mca-attest-{version}-x86_64-pc-windows-gnu.zip\n",
            "0".repeat(64)
        ),
    )
    .unwrap();
    // The reviewed hash, as the operator pins it.
    variables.insert("MCA_ATTEST_SHA256".into(), sha);

    let stubs = scene.mkdir("agent-stubs");
    let curl = stubs.join("curl");
    fs::write(
        &curl,
        format!(
            "#!/bin/sh\n\
             out=; url=\n\
             while [ $# -gt 0 ]; do case \"$1\" in -o) out=$2; shift 2;; --retry) shift 2;; -*) shift;; *) url=$1; shift;; esac; done\n\
             case \"$url\" in https://github.com/{repository}/releases/download/v{version}/*) ;; *) echo \"curl: (6) Could not resolve host: $url\" >&2; exit 6;; esac\n\
             src='{release}/'\"${{url##*/}}\"\n\
             [ -f \"$src\" ] || {{ echo 'curl: (22) The requested URL returned error: 404' >&2; exit 22; }}\n\
             [ -n \"$out\" ] || {{ echo 'curl: no -o' >&2; exit 2; }}\n\
             cat \"$src\" > \"$out\"\n",
            release = release.display(),
        ),
    )
    .unwrap();
    let az_calls = scene.path("az.calls");
    let az = stubs.join("az");
    fs::write(
        &az,
        format!(
            "#!/bin/sh\n\
             printf '%s\\n' \"$*\" >> '{calls}'\n\
             [ \"$1 $2\" = 'keyvault secret' ] || {{ echo \"az: unexpected: $*\" >&2; exit 2; }}\n\
             op=$3; shift 3; vault=; name=; file=\n\
             while [ $# -gt 0 ]; do case \"$1\" in --vault-name) vault=$2; shift 2;; --name) name=$2; shift 2;; --file) file=$2; shift 2;; --output) shift 2;; *) echo \"az: unexpected argument $1\" >&2; exit 2;; esac; done\n\
             [ \"$vault\" = '{vault_name}' ] || {{ echo \"az: no vault '$vault'\" >&2; exit 3; }}\n\
             [ -n \"$name\" ] && [ -n \"$file\" ] || {{ echo 'az: --name and --file' >&2; exit 2; }}\n\
             case \"$op\" in\n\
               download) [ ! -e \"$file\" ] || {{ echo \"az: $file exists\" >&2; exit 1; }}; cat '{vault}/'\"$name\" > \"$file\";;\n\
               set) cat \"$file\" > '{vault}/'\"$name\";;\n\
               *) echo \"az: unexpected: keyvault secret $op\" >&2; exit 2;;\n\
             esac\n",
            calls = az_calls.display(),
            vault = vault.display(),
        ),
    )
    .unwrap();
    for stub in [&curl, &az] {
        fs::set_permissions(stub, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let agent = AzureAgent {
        scene: &scene,
        library,
        vault,
        stubs,
        variables,
    };

    // Night 1: the run step exits 1 with an error issue and the run fails; the workbook and
    // the report are published all the same; the token the authority rotated is in the vault;
    // no token file is left behind.
    let night1 = agent.night("ado-night1", &steps);
    let download = &night1.outcomes[&download_at];
    assert_eq!(download.code(), Some(0), "{download}");
    let run1 = &night1.outcomes[&status_at];
    assert_eq!(run1.code(), Some(1), "{run1}");
    assert!(
        run1.stdout.contains("##vso[task.logissue type=error]"),
        "{run1}"
    );
    assert!(night1.failed);
    let kept1 = &night1.outcomes[&keep_at];
    assert_eq!(kept1.code(), Some(0), "{kept1}");
    let token1 = agent
        .vault_secret("partner-center-refresh-token")
        .trim_end()
        .to_string();
    assert_ne!(
        token1, REFRESH_TOKEN,
        "the rotated refresh token was not stored"
    );
    assert!(!token1.is_empty());
    let calls = fs::read_to_string(&az_calls).unwrap();
    let calls: Vec<&str> = calls.lines().collect();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(
        calls[0].starts_with("keyvault secret download "),
        "{calls:?}"
    );
    assert!(calls[1].starts_with("keyvault secret set "), "{calls:?}");
    for outcome in night1.outcomes.values() {
        outcome.expect_free_of(&token1);
    }
    assert!(
        !night1.agent_temp.join("mca-attest").exists(),
        "the refresh token file was left behind"
    );
    let summary: String = night1
        .summaries
        .iter()
        .map(|p| fs::read_to_string(p).unwrap())
        .collect();
    assert!(summary.contains("missing"), "{summary}");

    // The artifacts: the workbook, and the report with its manifest and the todo file.
    let day = night1.set.get("day").expect("the run sets day").clone();
    assert_eq!(
        night1.artifacts.len(),
        publish.len(),
        "{:?}",
        night1.artifacts
    );
    let workbook = night1
        .artifacts
        .values()
        .find(|p| p.extension().is_some_and(|e| e == "xlsx"))
        .expect("the workbook among the artifacts");
    let mut wb: calamine::Xlsx<_> = calamine::open_workbook(workbook).expect("a workbook");
    assert!(
        ["Rows", "Summary"]
            .iter()
            .all(|s| wb.sheet_names().iter().any(|n| n == s)),
        "{:?}",
        wb.sheet_names()
    );
    let rows = wb.worksheet_range("Rows").expect("the Rows sheet");
    assert_eq!(rows.height(), 7, "a header and six customers");
    let reports = night1
        .artifacts
        .values()
        .find(|p| p.is_dir())
        .expect("the report directory among the artifacts");
    let report = reports.join(format!("status-{day}.csv"));
    expect_states(&report, false);
    expect_manifest(&report, 1);
    let report_text = fs::read_to_string(&report).unwrap();
    assert!(
        !report_text.contains("tania.carr@contoso.com"),
        "{report_text}"
    );
    let todo = reports.join(format!("todo-{day}.csv"));
    expect_todo(&todo);

    // Confirmed: the next night starts from the token in the vault and passes without an
    // issue, storing the next one.
    scene.confirm(&todo);
    let night2 = agent.night("ado-night2", &steps);
    let run2 = &night2.outcomes[&status_at];
    assert_eq!(run2.code(), Some(0), "{run2}");
    assert!(!run2.stdout.contains("##vso[task.logissue"), "{run2}");
    assert!(!night2.failed, "night 2 failed");
    let token2 = agent
        .vault_secret("partner-center-refresh-token")
        .trim_end()
        .to_string();
    assert_ne!(token2, token1, "the second rotation was not stored");
    for outcome in night2.outcomes.values() {
        outcome.expect_free_of(&token1);
        outcome.expect_free_of(&token2);
    }
    let day2 = night2.set.get("day").expect("the run sets day").clone();
    let reports2 = night2
        .artifacts
        .values()
        .find(|p| p.is_dir())
        .expect("the report directory among the artifacts");
    let report = reports2.join(format!("status-{day2}.csv"));
    expect_states(&report, true);
    expect_manifest(&report, 0);
    expect_no_secrets(reports.parent().unwrap(), &[&token1, &token2]);
    expect_no_secrets(reports2.parent().unwrap(), &[&token1, &token2]);
}
