//! Checked, ready-to-use settings built from the parsed command line (`TryFrom<args>`), so the
//! commands never see an unvalidated flag.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::Url;

use crate::api::client::{DEFAULT_BASE_URL, parse_base_url};
use crate::cli::{ApiArgs, ConfirmArgs, InputArgs, InputEncoding, StatusArgs, ValidateArgs};
use crate::domain::{DateAgreed, parse_datetime};
use crate::error::AppError;
use crate::files::{is_null_device, is_special, same_file};
use crate::input::{Column, Encoding, InputOptions};
use crate::manifest::manifest_path;
use crate::rate::Rate;
use crate::results::{OutputTarget, ReportMode};
use crate::validation::parse_date_agreed;

/// Where requests go and how fast.
#[derive(Debug, Clone)]
pub(crate) struct ApiConfig {
    pub endpoint: Endpoint,
    pub rate: Rate,
    pub concurrency: usize,
    pub timeout: Duration,
}

/// The service a run talks to.
#[derive(Debug, Clone)]
pub(crate) enum Endpoint {
    /// Partner Center (or anything at this URL), with credentials from the environment.
    Remote(Url),
    /// An in-process simulator started for this run.
    Simulator {
        existing: Option<PathBuf>,
        unknown_tenants: Option<PathBuf>,
        direct_signed: Option<PathBuf>,
        customers: Option<PathBuf>,
    },
}

impl TryFrom<&ApiArgs> for ApiConfig {
    type Error = AppError;

    fn try_from(args: &ApiArgs) -> Result<Self, AppError> {
        let endpoint = if args.simulator {
            Endpoint::Simulator {
                existing: args.simulator_existing.clone(),
                unknown_tenants: args.simulator_unknown_tenants.clone(),
                direct_signed: args.simulator_direct_signed.clone(),
                customers: args.simulator_customers.clone(),
            }
        } else {
            let raw = args.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL);
            Endpoint::Remote(parse_base_url(raw).map_err(|e| {
                AppError::Usage(format!("--base-url (or PARTNER_CENTER_BASE_URL) {e}"))
            })?)
        };
        let rate = args
            .rate
            .parse::<Rate>()
            .map_err(|e| AppError::Usage(format!("--rate {e}")))?;
        if args.concurrency == 0 || args.concurrency > 1024 {
            return Err(AppError::Usage(format!(
                "--concurrency {} is out of range: use 1 to 1024",
                args.concurrency
            )));
        }
        if !(args.timeout.is_finite() && args.timeout > 0.0 && args.timeout <= 3600.0) {
            return Err(AppError::Usage(format!(
                "--timeout {} is out of range: use more than 0 and at most 3600 seconds",
                args.timeout
            )));
        }
        Ok(ApiConfig {
            endpoint,
            rate,
            concurrency: args.concurrency,
            timeout: Duration::from_secs_f64(args.timeout),
        })
    }
}

/// How to read the input.
#[derive(Debug, Clone)]
pub(crate) struct InputConfig {
    /// `None`: detected from the header line.
    pub delimiter: Option<u8>,
    pub encoding: Encoding,
    pub default_date: Option<DateAgreed>,
}

impl TryFrom<&InputArgs> for InputConfig {
    type Error = AppError;

    fn try_from(args: &InputArgs) -> Result<Self, AppError> {
        Ok(InputConfig {
            delimiter: args.delimiter.as_deref().map(parse_delimiter).transpose()?,
            encoding: args.encoding.into(),
            default_date: args
                .default_date_agreed
                .as_deref()
                .map(parse_default_date)
                .transpose()?,
        })
    }
}

impl InputConfig {
    /// The columns `validate` and `confirm` require: `date_agreed` only when no default
    /// fills it.
    pub(crate) fn signer_options(&self) -> InputOptions {
        let mut required = vec![
            Column::TenantId,
            Column::FirstName,
            Column::LastName,
            Column::Email,
        ];
        if self.default_date.is_none() {
            required.push(Column::DateAgreed);
        }
        InputOptions {
            delimiter: self.delimiter,
            required,
            encoding: self.encoding,
        }
    }
}

impl From<InputEncoding> for Encoding {
    fn from(arg: InputEncoding) -> Self {
        match arg {
            InputEncoding::Utf8 => Encoding::Utf8,
            InputEncoding::Windows1252 => Encoding::Windows1252,
        }
    }
}

/// Where a run's rows come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RunInput {
    /// An input CSV file.
    File(PathBuf),
    /// Every customer of the partner, listed by Partner Center (`status --all-customers`).
    AllCustomers,
}

impl RunInput {
    pub(crate) fn path(&self) -> Option<&Path> {
        match self {
            RunInput::File(p) => Some(p),
            RunInput::AllCustomers => None,
        }
    }
}

impl std::fmt::Display for RunInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunInput::File(p) => write!(f, "{}", p.display()),
            RunInput::AllCustomers => {
                f.write_str("all customers of the partner (GET /v1/customers)")
            }
        }
    }
}

/// Every file a run reads or writes, checked against each other before anything is sent.
#[derive(Debug, Clone)]
pub(crate) struct RunFiles {
    pub input: RunInput,
    /// The results or report file.
    pub report: OutputTarget,
    /// What the run may do with a report that already holds lines.
    pub mode: ReportMode,
    pub summary_json: Option<OutputTarget>,
    /// `status --emit-confirm-input`.
    pub emit: Option<PathBuf>,
    /// Mask signers' emails and phone numbers in the report.
    pub redact: bool,
}

impl RunFiles {
    /// Plans a run's files: the report at `-o` or `<input stem>.<suffix>` beside the input.
    /// Refuses (exit 2) `--resume` on standard output, and any two paths that are one file.
    pub(crate) fn plan(
        input: RunInput,
        output: Option<&Path>,
        suffix: &str,
        existing: ReportMode,
        summary_json: Option<&Path>,
    ) -> Result<Self, AppError> {
        let report = match &input {
            RunInput::File(path) => output_target(path, output, suffix),
            // No input file to sit beside: the working directory.
            RunInput::AllCustomers => output_target(Path::new("all-customers"), output, suffix),
        };
        if existing.resumes() && report == OutputTarget::Stdout {
            return Err(AppError::Usage(
                "--resume needs a results or report file: it cannot continue standard output (-o -)"
                    .into(),
            ));
        }
        Ok(RunFiles {
            input,
            report,
            mode: existing,
            summary_json: summary_json.map(OutputTarget::parse),
            emit: None,
            redact: false,
        })
    }

    /// The manifest beside a report written to a regular file.
    pub(crate) fn manifest(&self) -> Option<PathBuf> {
        match &self.report {
            OutputTarget::File(p) if !is_special(p) => Some(manifest_path(p)),
            _ => None,
        }
    }

    /// Every path the run writes, with how messages name it.
    fn outputs(&self) -> Vec<(&'static str, OutputTarget)> {
        let mut out = vec![("the results or report file (-o)", self.report.clone())];
        if let Some(m) = self.manifest() {
            out.push(("its manifest", OutputTarget::File(m)));
        }
        if let Some(s) = &self.summary_json {
            out.push(("--summary-json", s.clone()));
        }
        if let Some(e) = &self.emit {
            out.push(("--emit-confirm-input", OutputTarget::File(e.clone())));
        }
        out
    }

    /// Refuses a run whose outputs overlap the input or each other: writing one would destroy
    /// the input while it is read, or two writers would interleave in one file.
    pub(crate) fn check(&self) -> Result<(), AppError> {
        let outputs = self.outputs();
        for (i, (what, target)) in outputs.iter().enumerate() {
            if let OutputTarget::File(path) = target {
                if is_null_device(path) {
                    continue;
                }
                if self
                    .input
                    .path()
                    .is_some_and(|input| !crate::input::is_stdin(input) && same_file(path, input))
                {
                    return Err(AppError::Usage(format!(
                        "{what} '{}' is the input file: choose another path",
                        path.display()
                    )));
                }
            }
            for (other, other_target) in &outputs[i + 1..] {
                let same = match (target, other_target) {
                    (OutputTarget::Stdout, OutputTarget::Stdout) => true,
                    (OutputTarget::File(a), OutputTarget::File(b)) => {
                        !is_null_device(a) && same_file(a, b)
                    }
                    _ => false,
                };
                if same {
                    return Err(AppError::Usage(format!(
                        "{what} and {other} are the same file ({target}): give each its own path"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// `--refresh-cutoff`: acceptances before it must be renewed.
fn refresh_cutoff(raw: &str) -> Result<DateTime<Utc>, AppError> {
    parse_datetime(raw.trim()).ok_or_else(|| {
        AppError::Usage(format!(
            "--refresh-cutoff '{raw}' is not a date: use YYYY-MM-DD"
        ))
    })
}

/// How many attempts a call gets: 1 to 100.
fn max_attempts(n: u32) -> Result<u32, AppError> {
    if (1..=100).contains(&n) {
        Ok(n)
    } else {
        Err(AppError::Usage(format!(
            "--max-attempts {n} is out of range: use 1 to 100"
        )))
    }
}

/// `confirm`, checked.
#[derive(Debug, Clone)]
pub(crate) struct ConfirmConfig {
    pub api: ApiConfig,
    pub input: InputConfig,
    pub files: RunFiles,
    pub max_attempts: u32,
    pub dry_run: bool,
    pub refresh_cutoff: DateTime<Utc>,
    pub progress: bool,
}

impl TryFrom<&ConfirmArgs> for ConfirmConfig {
    type Error = AppError;

    fn try_from(args: &ConfirmArgs) -> Result<Self, AppError> {
        let existing = if args.resume {
            ReportMode::AuditResume
        } else {
            ReportMode::Audit
        };
        // A dry run never writes the results file a real run uses: the real run would then be
        // refused, or with --resume find nothing done and send every row.
        let suffix = if args.dry_run {
            "dry-run.csv"
        } else {
            "results.csv"
        };
        let mut files = RunFiles::plan(
            RunInput::File(args.input.clone()),
            args.output.as_deref(),
            suffix,
            existing,
            args.summary_json.as_deref(),
        )?;
        files.redact = args.redact;
        files.check()?;
        Ok(ConfirmConfig {
            api: ApiConfig::try_from(&args.api)?,
            input: InputConfig::try_from(&args.input_args)?,
            files,
            max_attempts: max_attempts(args.max_attempts)?,
            dry_run: args.dry_run,
            refresh_cutoff: refresh_cutoff(&args.refresh_cutoff)?,
            progress: true,
        })
    }
}

/// `status`, checked.
#[derive(Debug, Clone)]
pub(crate) struct StatusConfig {
    pub api: ApiConfig,
    pub delimiter: Option<u8>,
    pub encoding: Encoding,
    pub files: RunFiles,
    pub max_attempts: u32,
    pub refresh_cutoff: DateTime<Utc>,
    pub progress: bool,
}

impl TryFrom<&StatusArgs> for StatusConfig {
    type Error = AppError;

    fn try_from(args: &StatusArgs) -> Result<Self, AppError> {
        let existing = if args.resume {
            ReportMode::DerivedResume
        } else {
            ReportMode::Derived
        };
        let input = match &args.input {
            Some(path) => RunInput::File(path.clone()),
            None => RunInput::AllCustomers,
        };
        let mut files = RunFiles::plan(
            input,
            args.output.as_deref(),
            "status.csv",
            existing,
            args.summary_json.as_deref(),
        )?;
        files.emit = args.emit_confirm_input.clone();
        files.redact = args.redact;
        files.check()?;
        let refresh_cutoff = refresh_cutoff(&args.refresh_cutoff)?;
        Ok(StatusConfig {
            api: ApiConfig::try_from(&args.api)?,
            delimiter: args.delimiter.as_deref().map(parse_delimiter).transpose()?,
            encoding: args.encoding.into(),
            files,
            max_attempts: max_attempts(args.max_attempts)?,
            refresh_cutoff,
            progress: true,
        })
    }
}

/// `customers`, checked.
#[derive(Debug, Clone)]
pub(crate) struct CustomersConfig {
    pub api: ApiConfig,
    pub output: OutputTarget,
    pub max_attempts: u32,
}

impl TryFrom<&crate::cli::CustomersArgs> for CustomersConfig {
    type Error = AppError;

    fn try_from(args: &crate::cli::CustomersArgs) -> Result<Self, AppError> {
        Ok(CustomersConfig {
            api: ApiConfig::try_from(&args.api)?,
            output: OutputTarget::parse(&args.output),
            max_attempts: max_attempts(args.max_attempts)?,
        })
    }
}

/// `validate`, checked.
#[derive(Debug, Clone)]
pub(crate) struct ValidateConfig {
    pub input: InputConfig,
    pub files: RunFiles,
}

impl TryFrom<&ValidateArgs> for ValidateConfig {
    type Error = AppError;

    fn try_from(args: &ValidateArgs) -> Result<Self, AppError> {
        let files = RunFiles::plan(
            RunInput::File(args.input.clone()),
            args.output.as_deref(),
            "validation.csv",
            ReportMode::Derived,
            args.summary_json.as_deref(),
        )?;
        files.check()?;
        Ok(ValidateConfig {
            input: InputConfig::try_from(&args.input_args)?,
            files,
        })
    }
}

pub(crate) fn parse_delimiter(raw: &str) -> Result<u8, AppError> {
    let d = match raw {
        "\\t" | "tab" | "\t" => b'\t',
        s if s.len() == 1 && s.is_ascii() => s.as_bytes()[0],
        _ => {
            return Err(AppError::Usage(format!(
                "--delimiter '{raw}' must be a single ASCII character such as ',' or ';'"
            )));
        }
    };
    if matches!(d, b'"' | b'\n' | b'\r') || d.is_ascii_alphanumeric() {
        return Err(AppError::Usage(format!(
            "--delimiter '{raw}' cannot separate CSV fields"
        )));
    }
    Ok(d)
}

fn parse_default_date(raw: &str) -> Result<DateAgreed, AppError> {
    let now = Utc::now();
    if raw.trim().eq_ignore_ascii_case("today") {
        // Midnight UTC of today: a time later than now would be rejected as a future date.
        let midnight = now
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .map(|n| n.and_utc())
            .unwrap_or(now);
        return Ok(DateAgreed::new(midnight));
    }
    parse_date_agreed(raw, now)
        .map_err(|e| AppError::Usage(format!("--default-date-agreed: {}", e.message)))
}

/// `<input stem>.<suffix>` beside the input (`stdin.<suffix>` in the working directory for
/// standard input or a pipe the shell made), or the explicit `-o` value.
fn output_target(input: &Path, explicit: Option<&Path>, suffix: &str) -> OutputTarget {
    match explicit {
        Some(p) => OutputTarget::parse(p),
        None if crate::input::is_shell_stream(input) => {
            OutputTarget::File(PathBuf::from(format!("stdin.{suffix}")))
        }
        None => {
            let mut name = input
                .file_stem()
                .map(std::ffi::OsStr::to_os_string)
                .unwrap_or_else(|| "input".into());
            name.push(".");
            name.push(suffix);
            OutputTarget::File(input.with_file_name(name))
        }
    }
}

/// `report`, checked: the files to read and a workbook path that is none of them.
#[derive(Debug, Clone)]
pub(crate) struct ReportConfig {
    pub files: Vec<PathBuf>,
    pub output: PathBuf,
}

impl TryFrom<&crate::cli::ReportArgs> for ReportConfig {
    type Error = AppError;

    fn try_from(args: &crate::cli::ReportArgs) -> Result<Self, AppError> {
        let output = args.output.clone();
        if let Some(input) = args.files.iter().find(|f| same_file(f, &output)) {
            return Err(AppError::Usage(format!(
                "-o '{}' is the input file '{}': an input is never replaced; choose another file with -o",
                output.display(),
                input.display()
            )));
        }
        let is_xlsx = output
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("xlsx"));
        if !is_xlsx {
            return Err(AppError::Usage(format!(
                "-o '{}' must name an Excel workbook ending in .xlsx",
                output.display()
            )));
        }
        if output.is_dir() {
            return Err(AppError::Usage(format!(
                "-o '{}' is a directory: give a file name ending in .xlsx",
                output.display()
            )));
        }
        let dir = match output.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if !dir.is_dir() {
            return Err(AppError::Usage(format!(
                "-o '{}': the folder '{}' does not exist",
                output.display(),
                dir.display()
            )));
        }
        Ok(ReportConfig {
            files: args.files.clone(),
            output,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_results_path_sits_beside_the_input() {
        let t = output_target(Path::new("/data/wave1.csv"), None, "results.csv");
        assert_eq!(
            t,
            OutputTarget::File(PathBuf::from("/data/wave1.results.csv"))
        );
        assert_eq!(
            output_target(Path::new("w.csv"), Some(Path::new("-")), "results.csv"),
            OutputTarget::Stdout
        );
    }

    #[test]
    fn delimiters() {
        assert_eq!(parse_delimiter(";").unwrap(), b';');
        assert_eq!(parse_delimiter("\\t").unwrap(), b'\t');
        assert!(parse_delimiter("ab").is_err());
        assert!(parse_delimiter("\"").is_err());
    }

    /// Every command that reads an input takes `--encoding`, in each spelling, the last one
    /// given winning; none given is UTF-8; anything else is a usage error.
    #[test]
    fn every_input_command_takes_the_encoding_in_any_spelling() {
        use clap::Parser;
        let encoding = |args: &[&str]| -> Option<Encoding> {
            let cli = crate::cli::Cli::try_parse_from(args).ok()?;
            let encoding = match &cli.command {
                crate::cli::Command::Confirm(a) => ConfirmConfig::try_from(a).ok()?.input.encoding,
                crate::cli::Command::Validate(a) => {
                    ValidateConfig::try_from(a).ok()?.input.encoding
                }
                crate::cli::Command::Status(a) => StatusConfig::try_from(a).ok()?.encoding,
                _ => return None,
            };
            Some(encoding)
        };
        for command in ["confirm", "validate", "status"] {
            let base = ["mca-attest", command, "in.csv"];
            assert_eq!(encoding(&base), Some(Encoding::Utf8), "{command}");
            for (given, expected) in [
                ("utf-8", Encoding::Utf8),
                ("UTF-8", Encoding::Utf8),
                ("utf8", Encoding::Utf8),
                ("windows-1252", Encoding::Windows1252),
                ("Windows-1252", Encoding::Windows1252),
                ("cp1252", Encoding::Windows1252),
            ] {
                let args = [&base[..], &["--encoding", given]].concat();
                assert_eq!(encoding(&args), Some(expected), "{command} {given}");
                let twice = [&args[..], &["--encoding", "utf-8"]].concat();
                assert_eq!(encoding(&twice), Some(Encoding::Utf8), "{command} {given}");
            }
            for wrong in ["latin-9", "utf-16", ""] {
                let args = [&base[..], &["--encoding", wrong]].concat();
                assert_eq!(encoding(&args), None, "{command} {wrong}");
            }
        }
    }

    #[test]
    fn default_date_today_is_midnight_utc() {
        let d = parse_default_date("today").unwrap();
        assert!(d.to_string().ends_with("T00:00:00Z"));
        assert!(parse_default_date("2999-01-01").is_err());
    }
}
