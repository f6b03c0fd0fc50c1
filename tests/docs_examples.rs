//! The scheduled-reconciliation examples in `docs/` (systemd units, a crontab line, a GitHub
//! Actions workflow) are checked the way an operator would use them: each file's structure is
//! parsed (a small INI parser for the units, the five time fields of the cron line, line-based
//! checks of the workflow: no YAML crate), then its `mca-attest status` command is taken out of
//! the example, its placeholders are pointed at a temporary directory and at a simulator run as
//! a child process (`mca-attest simulator --listen 127.0.0.1:0`), and it is run with the real
//! binary through the same shell the scheduler would use. With customers missing it must exit 1
//! (the scheduled job alerts) and leave the report and its manifest; once `confirm` has
//! confirmed the rows it emitted, the same command must exit 0.

#![cfg(unix)]

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mca-attest");

/// Secrets the simulator accepts; none of them may show up in any output or file.
const CLIENT_ID: &str = "3f1c0a52-docs-example-app";
const CLIENT_SECRET: &str = "docs-example-client-secret-never-print";
const REFRESH_TOKEN: &str = "docs-example-refresh-token-never-print";
const ACCESS_TOKEN: &str = "docs-example-access-token-never-print";
const SECRETS: [&str; 3] = [CLIENT_SECRET, REFRESH_TOKEN, ACCESS_TOKEN];

/// Placeholders the examples use, as the operator's machine would have them.
const EXAMPLE_BINARY: &str = "/usr/local/bin/mca-attest";
const EXAMPLE_STATE_DIR: &str = "/var/lib/mca-attest";
const EXAMPLE_ENV_FILE: &str = "/etc/mca-attest/partner-center.env";

const ATTESTED_A: &str = "627655da-a05f-4119-bcea-af308142c8ea";
const ATTESTED_B: &str = "37d047c9-fe01-4372-9313-badffba3fec7";
const DIRECT: &str = "ec7f6b9e-2398-4be3-90dd-5d0f85c49a0c";
const MISSING_A: &str = "42f2dc05-873f-4bd0-a608-0f174c96d8e2";
const MISSING_B: &str = "8df08078-a22e-4180-85c2-c2af3977a654";

const CUSTOMERS: &str = "\
customer_tenant_id,first_name,last_name,email,phone_number,date_agreed
627655da-a05f-4119-bcea-af308142c8ea,Tania,Carr,tania.carr@contoso.com,+61 2 5550 1022,2024-01-15
37d047c9-fe01-4372-9313-badffba3fec7,Priya,Sharma,priya.sharma@tailspintoys.de,,2025-02-01
ec7f6b9e-2398-4be3-90dd-5d0f85c49a0c,Sofia,Rossi,sofia.rossi@lucernepublishing.com,,2024-06-14
42f2dc05-873f-4bd0-a608-0f174c96d8e2,Marcus,Okafor,marcus.okafor@fabrikam.co.uk,+44 20 7946 0596,2024-06-14
8df08078-a22e-4180-85c2-c2af3977a654,Aiko,Tanaka,aiko.tanaka@northwindtraders.com,,2024-06-14
";

const EXISTING: &str = "\
customer_tenant_id,first_name,last_name,email,phone_number,date_agreed
627655da-a05f-4119-bcea-af308142c8ea,Tania,Carr,tania.carr@contoso.com,+61 2 5550 1022,2024-01-15
37d047c9-fe01-4372-9313-badffba3fec7,Priya,Sharma,priya.sharma@tailspintoys.de,,2025-02-01
";

fn docs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs")
}

fn read_doc(rel: &str) -> String {
    let path = docs().join(rel);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
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
        fs::write(dir.join("sim-existing.csv"), EXISTING).unwrap();
        fs::write(dir.join("sim-direct-signed.txt"), format!("{DIRECT}\n")).unwrap();
        let stderr = fs::File::create(dir.join("simulator.log")).unwrap();
        let mut child = Command::new(BIN)
            .args(["simulator", "--listen", "127.0.0.1:0", "--existing"])
            .arg(dir.join("sim-existing.csv"))
            .arg("--direct-signed")
            .arg(dir.join("sim-direct-signed.txt"))
            .args(["--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET])
            .args(["--refresh-token", REFRESH_TOKEN])
            // Only this token, and those its token endpoint issues, are accepted.
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
        let out = self.path(&format!("{name}.stdout"));
        let err = self.path(&format!("{name}.stderr"));
        let mut child = Command::new(program)
            .args(args)
            .current_dir(cwd)
            .env_clear()
            .envs(env)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out).unwrap())
            .stderr(fs::File::create(&err).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{name} still running after 60 s\n{}",
                    fs::read_to_string(&err).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let outcome = Outcome {
            status,
            stdout: fs::read_to_string(&out).unwrap_or_default(),
            stderr: fs::read_to_string(&err).unwrap_or_default(),
        };
        for secret in SECRETS {
            assert!(
                !outcome.stdout.contains(secret) && !outcome.stderr.contains(secret),
                "{name} printed a credential\n{outcome}"
            );
        }
        outcome
    }

    /// The operator's follow-up: confirm the rows the report said are missing, against the
    /// same simulator. Must exit 0.
    fn confirm(&self, todo: &Path) {
        let mut env = base_env();
        env.insert("PARTNER_CENTER_ACCESS_TOKEN".into(), ACCESS_TOKEN.into());
        env.insert("PARTNER_CENTER_BASE_URL".into(), self.sim.base_url.clone());
        let results = self.path("todo.results.csv");
        let outcome = self.run(
            "confirm",
            BIN,
            &[
                "confirm",
                todo.to_str().unwrap(),
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
            "confirm of the todo rows\n{outcome}"
        );
    }
}

/// The environment every scheduler provides, whatever else is set.
fn base_env() -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into());
    env.insert("LANG".into(), "C.UTF-8".into());
    env
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

/// State per tenant from a report (the first three columns are never quoted).
fn states(report: &Path) -> BTreeMap<String, String> {
    let text = fs::read_to_string(report).unwrap();
    let mut lines = text.lines();
    let header = lines.next().expect("a header line");
    assert!(
        header.starts_with("row,customer_tenant_id,state,"),
        "{header}"
    );
    lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut cells = l.splitn(4, ',');
            let _row = cells.next();
            let tenant = cells.next().unwrap().to_string();
            let state = cells.next().unwrap().to_string();
            (tenant, state)
        })
        .collect()
}

fn expect_states(report: &Path, all_attested: bool) {
    let got = states(report);
    let later = if all_attested { "attested" } else { "missing" };
    let want: BTreeMap<String, String> = [
        (ATTESTED_A, "attested"),
        (ATTESTED_B, "attested"),
        (DIRECT, "direct_signed"),
        (MISSING_A, later),
        (MISSING_B, later),
    ]
    .into_iter()
    .map(|(t, s)| (t.to_string(), s.to_string()))
    .collect();
    assert_eq!(got, want, "states in {}", report.display());
}

/// The manifest beside `report` exists and records a last run with `exit_code`.
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
    assert!(last["input_sha256"].as_str().is_some_and(|s| s.len() == 64));
}

/// The rows of `todo` are those of the missing customers, with every input column, then the
/// customer's state and latest date on record.
fn expect_todo(todo: &Path) {
    let text = fs::read_to_string(todo).unwrap();
    let mut lines = text.lines();
    let header = CUSTOMERS
        .lines()
        .next()
        .map(|h| format!("{h},state,latest_date_agreed"));
    assert_eq!(lines.next().map(str::to_string), header);
    let mut tenants: Vec<&str> = lines.map(|l| l.split(',').next().unwrap()).collect();
    tenants.sort();
    assert_eq!(tenants, [MISSING_A, MISSING_B], "{text}");
}

/// No file the run left holds a credential.
fn expect_no_secrets(dir: &Path) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let text = String::from_utf8_lossy(&fs::read(&path).unwrap()).into_owned();
            for secret in SECRETS {
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
    let writable = one(&service, "Service", "ReadWritePaths");

    // Credentials: ids from an EnvironmentFile, secrets as systemd credentials read through
    // NAME_FILE variables; no secret value in the unit.
    assert_eq!(
        one(&service, "Service", "EnvironmentFile"),
        EXAMPLE_ENV_FILE
    );
    let credentials: BTreeMap<&str, &str> = values(&service, "Service", "LoadCredential")
        .iter()
        .map(|v| v.split_once(':').expect("LoadCredential=ID:PATH"))
        .collect();
    assert_eq!(credentials.len(), 2, "{credentials:?}");
    let scene = Scene::new();
    let creds_dir = scene.mkdir("credentials");
    let mut env = base_env();
    for assignment in values(&service, "Service", "Environment") {
        let (key, value) = assignment.split_once('=').unwrap();
        assert!(
            !["SECRET", "TOKEN"].iter().any(|s| key.contains(s)) || key.ends_with("_FILE"),
            "secret {key} inline in Environment="
        );
        env.insert(key.to_string(), systemd_unescape(value, &creds_dir));
    }
    for (id, source) in &credentials {
        assert!(source.starts_with('/'), "LoadCredential={id}:{source}");
        let value = match *id {
            id if id.contains("secret") => CLIENT_SECRET,
            id if id.contains("refresh") => REFRESH_TOKEN,
            other => panic!("unexpected credential {other}"),
        };
        fs::write(creds_dir.join(id), format!("{value}\n")).unwrap();
    }
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

    // ExecStart: one command that execs the tool (so the unit's status is the tool's), writing
    // only under ReadWritePaths.
    let exec = systemd_unescape(one(&service, "Service", "ExecStart"), &creds_dir);
    assert!(
        exec.contains(&format!("exec {EXAMPLE_BINARY} status ")),
        "ExecStart must exec the tool: {exec}"
    );
    let outputs = flag_values(&exec, &["-o", "--emit-confirm-input", "--summary-json"]);
    assert_eq!(outputs.len(), 3, "{exec}");
    for out in &outputs {
        assert!(
            out.starts_with(&format!("{writable}/")),
            "{out} is outside ReadWritePaths={writable}"
        );
    }
    assert!(exec.contains("--no-progress"));
    let workdir = one(&service, "Service", "WorkingDirectory");
    let state = scene.mkdir("var-lib-mca-attest");
    let localise = |s: &str| {
        s.replace(EXAMPLE_BINARY, BIN)
            .replace(EXAMPLE_STATE_DIR, state.to_str().unwrap())
    };
    let exec = localise(&exec);
    let cwd = PathBuf::from(localise(workdir));
    let reports = PathBuf::from(localise(writable));
    fs::create_dir_all(&reports).unwrap();
    fs::write(state.join("customers.csv"), CUSTOMERS).unwrap();
    let (shell, flag, script) = split_shell(&exec);

    // Night 1: two customers missing: exit 1, the unit fails and OnFailure= alerts.
    let night1 = scene.run("systemd-night1", &shell, &[&flag, &script], &cwd, &env);
    assert_eq!(night1.code(), Some(1), "{night1}");
    let report = dated(&reports, "status-", ".csv").expect("a dated report");
    expect_states(&report, false);
    expect_manifest(&report, 1);
    let todo = dated(&reports, "todo-", ".csv").expect("a dated todo file");
    expect_todo(&todo);
    assert!(dated(&reports, "status-", ".summary.json").is_some());
    // The run's account on stderr (the journal).
    assert!(night1.stderr.contains("missing 2"), "{night1}");

    // The operator confirms the emitted rows; night 2 passes.
    scene.confirm(&todo);
    let night2 = scene.run("systemd-night2", &shell, &[&flag, &script], &cwd, &env);
    assert_eq!(night2.code(), Some(0), "{night2}");
    let report = dated(&reports, "status-", ".csv").unwrap();
    expect_states(&report, true);
    expect_manifest(&report, 0);
    expect_no_secrets(&reports);
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
    assert!(command.contains(&format!("{EXAMPLE_BINARY} status ")));
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

    let scene = Scene::new();
    let state = scene.mkdir("var-lib-mca-attest");
    fs::write(state.join("customers.csv"), CUSTOMERS).unwrap();
    let env_file = scene.path("partner-center.env");
    fs::write(
        &env_file,
        format!(
            "PARTNER_CENTER_ACCESS_TOKEN={ACCESS_TOKEN}\nPARTNER_CENTER_BASE_URL={}\n",
            scene.sim.base_url
        ),
    )
    .unwrap();
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
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&logger, fs::Permissions::from_mode(0o755)).unwrap();

    let command = command
        .replace(EXAMPLE_BINARY, BIN)
        .replace(EXAMPLE_ENV_FILE, env_file.to_str().unwrap())
        .replace(EXAMPLE_STATE_DIR, state.to_str().unwrap());
    let mut env = base_env();
    env.insert("PATH".into(), format!("{}:{path_var}", stubs.display()));
    env.insert("SHELL".into(), shell.clone());
    env.insert("HOME".into(), state.to_str().unwrap().into());
    let reports = state.join("reports");

    // Night 1: exit 1, one line on stdout (mailed by cron), an error to syslog.
    let night1 = scene.run("cron-night1", &shell, &["-c", &command], &state, &env);
    assert_eq!(night1.code(), Some(1), "{night1}");
    assert!(
        night1.stdout.contains("exited 1") && night1.stdout.lines().count() == 1,
        "one line for the mail: {night1}"
    );
    let calls = fs::read_to_string(&logged).unwrap_or_default();
    assert!(calls.contains("exited 1"), "logger calls: {calls:?}");
    let report = dated(&reports, "status-", ".csv").expect("a dated report");
    expect_states(&report, false);
    expect_manifest(&report, 1);
    let todo = dated(&reports, "todo-", ".csv").expect("a dated todo file");
    expect_todo(&todo);
    let log = dated(&reports, "status-", ".log").expect("a dated log");
    assert!(
        fs::read_to_string(&log).unwrap().contains("missing 2"),
        "the run's account in its log"
    );

    // Confirmed: the next night prints nothing (no mail) and logs nothing.
    scene.confirm(&todo);
    fs::remove_file(&logged).unwrap();
    let night2 = scene.run("cron-night2", &shell, &["-c", &command], &state, &env);
    assert_eq!(night2.code(), Some(0), "{night2}");
    assert!(
        night2.stdout.is_empty() && night2.stderr.is_empty(),
        "{night2}"
    );
    assert!(!logged.exists(), "logger called on success");
    let report = dated(&reports, "status-", ".csv").unwrap();
    expect_states(&report, true);
    expect_manifest(&report, 0);
    expect_no_secrets(&reports);
}

// ---------------------------------------------------------------------------------------------
// GitHub Actions: line-based, no YAML crate.

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The lines of the block under the line at `at` (more indented; blank lines kept).
fn block<'a>(lines: &[&'a str], at: usize) -> Vec<&'a str> {
    let base = indent(lines[at]);
    lines[at + 1..]
        .iter()
        .take_while(|l| l.trim().is_empty() || indent(l) > base)
        .copied()
        .collect()
}

/// A literal block (`key: |`) dedented.
fn literal(lines: &[&str]) -> String {
    let cut = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| indent(l))
        .min()
        .unwrap_or(0);
    let mut out: Vec<&str> = lines
        .iter()
        .map(|l| if l.len() >= cut { &l[cut..] } else { "" })
        .collect();
    while out.last().is_some_and(|l| l.is_empty()) {
        out.pop();
    }
    out.join("\n") + "\n"
}

/// The steps of the workflow's job, each as its lines (the first is `- name: ...` or `- uses:`).
fn steps<'a>(lines: &[&'a str]) -> Vec<Vec<&'a str>> {
    let at = lines
        .iter()
        .position(|l| l.trim() == "steps:")
        .expect("a steps: list");
    let body = block(lines, at);
    let item_indent = body
        .iter()
        .find(|l| l.trim_start().starts_with("- "))
        .map(|l| indent(l))
        .expect("steps");
    let mut steps: Vec<Vec<&str>> = Vec::new();
    for line in body {
        if indent(line) == item_indent && line.trim_start().starts_with("- ") {
            steps.push(vec![line]);
        } else if let Some(step) = steps.last_mut() {
            step.push(line);
        }
    }
    steps
}

/// The value of `key:` in a step (first occurrence, `- ` stripped).
fn step_value<'a>(step: &[&'a str], key: &str) -> Option<&'a str> {
    step.iter().find_map(|l| {
        let t = l.trim_start().trim_start_matches("- ");
        t.strip_prefix(&format!("{key}:")).map(str::trim)
    })
}

/// The block under `key:` in a step.
fn step_block<'a>(step: &[&'a str], key: &str) -> Vec<&'a str> {
    let at = step
        .iter()
        .position(|l| {
            l.trim_start()
                .trim_start_matches("- ")
                .starts_with(&format!("{key}:"))
        })
        .unwrap_or_else(|| panic!("no {key}: in step {:?}", step.first()));
    block(step, at)
}

#[test]
fn github_workflow_runs_nightly_uploads_report_and_manifest_and_fails_on_exit_1() {
    let text = read_doc("ci/status-nightly.yml");
    assert!(!text.contains('\t'), "tabs in YAML");
    let lines: Vec<&str> = text.lines().collect();
    let top = |key: &str| lines.iter().position(|l| *l == format!("{key}:"));
    assert!(lines.iter().any(|l| l.starts_with("name: ")));

    // on: a nightly schedule (and a manual trigger).
    let on = top("on").expect("a top-level on:");
    let triggers = block(&lines, on);
    let cron = triggers
        .iter()
        .find_map(|l| l.trim().strip_prefix("- cron:"))
        .expect("a schedule cron")
        .trim()
        .trim_matches(|c| c == '"' || c == '\'');
    let fields: Vec<&str> = cron.split_whitespace().collect();
    assert_eq!(fields.len(), 5, "{cron}");
    for (field, (min, max)) in fields
        .iter()
        .zip([(0, 59), (0, 23), (1, 31), (1, 12), (0, 6)])
    {
        assert!(cron_field_ok(field, min, max), "bad cron field {field:?}");
    }
    assert_eq!(&fields[2..], ["*", "*", "*"], "nightly");
    assert!(triggers.iter().any(|l| l.trim() == "schedule:"));
    assert!(
        triggers
            .iter()
            .any(|l| l.trim().starts_with("workflow_dispatch"))
    );
    let permissions = block(&lines, top("permissions").expect("permissions:"));
    assert!(permissions.iter().any(|l| l.trim() == "contents: read"));
    let jobs = block(&lines, top("jobs").expect("jobs:"));
    assert!(jobs.iter().any(|l| l.trim().starts_with("runs-on:")));
    assert!(
        jobs.iter()
            .any(|l| l.trim().starts_with("timeout-minutes:"))
    );

    let steps = steps(&lines);
    assert!(
        steps
            .iter()
            .any(|s| step_value(s, "run").is_some_and(|_| s.join("\n").contains("cargo "))),
        "a step builds the tool"
    );
    let status = steps
        .iter()
        .find(|s| step_value(s, "id") == Some("status"))
        .expect("a step with id: status");
    let upload = steps
        .iter()
        .find(|s| step_value(s, "uses").is_some_and(|u| u.starts_with("actions/upload-artifact@")))
        .expect("an upload-artifact step");
    let status_at = steps.iter().position(|s| std::ptr::eq(s, status)).unwrap();
    let upload_at = steps.iter().position(|s| std::ptr::eq(s, upload)).unwrap();
    assert!(upload_at > status_at, "the upload comes after the run");
    assert!(
        step_value(upload, "if").is_some_and(|v| v.contains("always()")),
        "the report is uploaded when the run failed too"
    );

    // Secrets from the secret store, into the step's environment only.
    let scene = Scene::new();
    let mut env = base_env();
    for line in step_block(status, "env") {
        let (key, value) = line.trim().split_once(':').unwrap();
        assert_eq!(
            value.trim(),
            format!("${{{{ secrets.{key} }}}}"),
            "{key} must come from the secret store"
        );
        let test_value = match key {
            "PARTNER_CENTER_TENANT_ID" => "contoso.onmicrosoft.com",
            "PARTNER_CENTER_CLIENT_ID" => CLIENT_ID,
            "PARTNER_CENTER_CLIENT_SECRET" => CLIENT_SECRET,
            "PARTNER_CENTER_REFRESH_TOKEN" => REFRESH_TOKEN,
            "PARTNER_CENTER_ACCESS_TOKEN" => ACCESS_TOKEN,
            other => panic!("unexpected secret {other}"),
        };
        env.insert(key.to_string(), test_value.to_string());
    }
    assert!(
        env.contains_key("PARTNER_CENTER_ACCESS_TOKEN")
            || env.contains_key("PARTNER_CENTER_REFRESH_TOKEN"),
        "credentials in the step's env"
    );
    let run_lines = step_block(status, "run");
    assert_eq!(step_value(status, "run"), Some("|"));
    let script = literal(&run_lines);
    assert!(script.contains("mca-attest status "), "{script}");
    assert!(!script.contains("secrets."), "secrets on the command line");

    // The runner: the built tool on PATH, GitHub's files, the repository checked out.
    let workspace = scene.mkdir("workspace");
    let input = script
        .split_whitespace()
        .skip_while(|w| *w != "status")
        .nth(1)
        .expect("the input of status")
        .to_string();
    let input_path = workspace.join(&input);
    fs::create_dir_all(input_path.parent().unwrap()).unwrap();
    fs::write(&input_path, CUSTOMERS).unwrap();
    let tool_dir = scene.mkdir("tool-bin");
    std::os::unix::fs::symlink(BIN, tool_dir.join("mca-attest")).unwrap();
    let output = scene.path("github-output");
    let summary = scene.path("github-step-summary");
    env.insert(
        "PATH".into(),
        format!("{}:/usr/local/bin:/usr/bin:/bin", tool_dir.display()),
    );
    env.insert("GITHUB_OUTPUT".into(), output.to_str().unwrap().into());
    env.insert(
        "GITHUB_STEP_SUMMARY".into(),
        summary.to_str().unwrap().into(),
    );
    env.insert(
        "GITHUB_WORKSPACE".into(),
        workspace.to_str().unwrap().into(),
    );
    env.insert("CI".into(), "true".into());
    env.insert("PARTNER_CENTER_BASE_URL".into(), scene.sim.base_url.clone());
    env.insert(
        "PARTNER_CENTER_AUTHORITY".into(),
        scene.sim.base_url.clone(),
    );
    let script_path = scene.path("status-step.sh");
    fs::write(&script_path, &script).unwrap();
    // GitHub's default shell for `run:` on Linux.
    let bash_args = ["-e", script_path.to_str().unwrap()];

    // Night 1: the step exits 1 with an error annotation; the job fails.
    let night1 = scene.run("gha-night1", "bash", &bash_args, &workspace, &env);
    assert_eq!(night1.code(), Some(1), "{night1}");
    assert!(night1.stdout.contains("::error"), "{night1}");
    let outputs = fs::read_to_string(&output).unwrap();
    let day = outputs
        .lines()
        .find_map(|l| l.strip_prefix("day="))
        .expect("the step sets its day output")
        .to_string();
    let step_summary = fs::read_to_string(&summary).unwrap();
    assert!(step_summary.contains("missing"), "{step_summary}");

    // Every path the upload step names exists, the report and its manifest among them.
    let with = step_block(upload, "with");
    let path_at = with
        .iter()
        .position(|l| l.trim() == "path: |")
        .expect("a path: | list in the upload step");
    let paths: Vec<String> = block(&with, path_at)
        .iter()
        .map(|l| l.trim().replace("${{ steps.status.outputs.day }}", &day))
        .filter(|l| !l.is_empty())
        .collect();
    assert!(
        paths.iter().any(|p| p.ends_with(".csv.manifest.json")),
        "{paths:?}"
    );
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

    // Confirmed: the next run passes without an annotation.
    scene.confirm(&todo);
    fs::write(&output, "").unwrap();
    let night2 = scene.run("gha-night2", "bash", &bash_args, &workspace, &env);
    assert_eq!(night2.code(), Some(0), "{night2}");
    assert!(!night2.stdout.contains("::error"), "{night2}");
    let report = dated(&reports, "status-", ".csv").unwrap();
    expect_states(&report, true);
    expect_manifest(&report, 0);
    expect_no_secrets(&reports);
}

#[test]
fn the_guide_names_every_example_and_the_exit_codes() {
    let guide = read_doc("scheduled-reconciliation.md");
    for file in [
        "systemd/mca-attest-status.service",
        "systemd/mca-attest-status.timer",
        "cron/mca-attest-status.cron",
        "ci/status-nightly.yml",
    ] {
        assert!(guide.contains(file), "the guide does not link {file}");
        assert!(docs().join(file).is_file(), "{file} is missing");
    }
    for code in ["| 0 |", "| 1 |", "| 2 |", "| 3 |"] {
        assert!(guide.contains(code), "exit code row {code} missing");
    }
    // The examples' commands use only flags the tool documents.
    let help = Command::new(BIN)
        .args(["status", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    for file in [
        "systemd/mca-attest-status.service",
        "cron/mca-attest-status.cron",
        "ci/status-nightly.yml",
    ] {
        let text = read_doc(file);
        let commands: Vec<&str> = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#') && l.contains("mca-attest status "))
            .collect();
        assert!(!commands.is_empty(), "{file} runs no `mca-attest status`");
        for flag in commands
            .iter()
            .flat_map(|l| l.split(|c: char| c.is_whitespace() || c == '\'' || c == '"'))
            .filter(|w| w.starts_with("--") && w.len() > 2)
        {
            assert!(
                help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
                "{file}: {flag} is not a flag of `mca-attest status`"
            );
        }
    }
}
