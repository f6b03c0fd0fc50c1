//! The command line as parsed, before validation (see `config` for the checked form).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::SecretString;

/// Confirm, in bulk and on the record, that Microsoft CSP customers accepted the Microsoft
/// Customer Agreement.
#[derive(Debug, Parser)]
#[command(
    name = "mca-attest",
    version = VERSION,
    about,
    long_about = None,
    propagate_version = true,
    args_override_self = true,
    after_help = "Credentials come from the environment only: PARTNER_CENTER_ACCESS_TOKEN, or PARTNER_CENTER_TENANT_ID, _CLIENT_ID, _CLIENT_SECRET and _REFRESH_TOKEN (each also as NAME_FILE). Logs go to stderr (RUST_LOG, --log-format); NO_COLOR turns colour off."
)]
pub struct Cli {
    /// Format of every line on stderr: log lines, the summary, hints and errors (level from
    /// RUST_LOG, default info)
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    /// Do not show the progress bar (shown only when stderr is a terminal)
    #[arg(long, global = true)]
    pub no_progress: bool,

    /// No progress bar, no summary or hints on stderr; errors are still shown
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// More log lines: -v debug, -vv trace (RUST_LOG, when set, wins)
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

/// The version with the git revision it was built from.
pub(crate) const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("MCA_ATTEST_GIT_REV"),
    ")"
);

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The character encoding of an input file (`--encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InputEncoding {
    /// UTF-8, a byte order mark or not ("CSV UTF-8 (Comma delimited)")
    #[value(name = "utf-8", alias = "utf8")]
    Utf8,
    /// Excel's "CSV (Comma delimited)" on Western Windows
    #[value(name = "windows-1252", aliases = ["cp1252", "windows1252"])]
    Windows1252,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate INPUT, fetch the MCA template once, confirm every valid row
    #[command(after_help = CONFIRM_EXAMPLES)]
    Confirm(ConfirmArgs),
    /// Check INPUT offline: the row statuses `confirm` would give before sending (no credentials)
    #[command(after_help = VALIDATE_EXAMPLES)]
    Validate(ValidateArgs),
    /// Reconcile: what Partner Center has on record for each customer of INPUT (read-only)
    #[command(after_help = STATUS_EXAMPLES)]
    Status(StatusArgs),
    /// List every customer of the partner (all pages) as CSV
    #[command(after_help = CUSTOMERS_EXAMPLES)]
    Customers(CustomersArgs),
    /// Print the current MCA template metadata as JSON
    #[command(after_help = TEMPLATE_EXAMPLES)]
    Template(TemplateArgs),
    /// Make an Excel workbook (.xlsx) of results files or status reports, for people to open
    #[command(after_help = REPORT_EXAMPLES)]
    Report(ReportArgs),
    /// Serve a local Partner Center simulator (same calls, same errors) on loopback
    #[command(after_help = SIMULATOR_EXAMPLES)]
    Simulator(SimulatorArgs),
    /// Print a shell completion script
    #[command(after_help = COMPLETIONS_EXAMPLES)]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) on stdout
    #[command(after_help = "Example:\n    mca-attest man > mca-attest.1 && man ./mca-attest.1")]
    Man,
}

const CONFIRM_EXAMPLES: &str = "Examples:
  Try the whole job against the built-in simulator (no credentials, nothing leaves the machine):
    mca-attest confirm samples/customers.csv --simulator --simulator-existing samples/existing.csv
  Real run, 3 requests a second, results beside the input:
    PARTNER_CENTER_ACCESS_TOKEN=... mca-attest confirm wave1.csv --rate 3/s";

const STATUS_EXAMPLES: &str =
    "Example: find the customers that still need a confirmation, then confirm them:
    mca-attest status customers.csv -o status.csv --emit-confirm-input todo.csv
    mca-attest confirm todo.csv
  Exit 0 when every customer is attested or direct_signed, 1 otherwise (for scheduled jobs);
  4 when a rotated refresh token could not be saved to PARTNER_CENTER_REFRESH_TOKEN_FILE.";

const TEMPLATE_EXAMPLES: &str = "Examples:
    PARTNER_CENTER_ACCESS_TOKEN=... mca-attest template
    mca-attest template --all --simulator";

const CUSTOMERS_EXAMPLES: &str = "Examples:
    PARTNER_CENTER_ACCESS_TOKEN=... mca-attest customers -o customers.csv
    mca-attest customers --simulator --simulator-customers customers.csv";

const SIMULATOR_EXAMPLES: &str = "Examples:
  Rehearse a wave: agreements on record, a throttling limit, some flaky answers:
    mca-attest simulator --existing samples/existing.csv --rate-limit 10/s --fail-rate 0.05
    PARTNER_CENTER_ACCESS_TOKEN=any mca-attest confirm samples/customers.csv --base-url http://127.0.0.1:8080";

const COMPLETIONS_EXAMPLES: &str = "Install: one line per shell, then open a new shell.
  bash, in ~/.bashrc:
    source <(mca-attest completions bash)
  bash with the bash-completion package, instead (once; mkdir -p the folder first):
    mca-attest completions bash > ~/.local/share/bash-completion/completions/mca-attest
  zsh, in ~/.zshrc:
    autoload -Uz compinit && compinit && source <(mca-attest completions zsh)
  fish, once:
    mca-attest completions fish > ~/.config/fish/completions/mca-attest.fish
  PowerShell, in $PROFILE (notepad $PROFILE):
    mca-attest completions powershell | Out-String | Invoke-Expression";

const REPORT_EXAMPLES: &str = "Examples:
    mca-attest report wave1.results.csv -o wave1.xlsx
    mca-attest report customers.status.csv -o status.xlsx
  Several files of one kind make one workbook; for a row recorded more than once, the last line wins.";

const VALIDATE_EXAMPLES: &str = "Example:
    mca-attest validate wave1.csv -o -";

/// Where the API is and how hard to drive it.
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// Run against an in-process simulator instead of Partner Center: no credentials, nothing
    /// leaves the machine
    #[arg(long, conflicts_with = "base_url")]
    pub simulator: bool,

    /// With --simulator: agreements already on record (CSV: customer_tenant_id, first_name,
    /// last_name, email, phone_number, date_agreed)
    #[arg(long, value_name = "FILE", requires = "simulator")]
    pub simulator_existing: Option<PathBuf>,

    /// With --simulator: tenant ids the simulator does not know (one per line)
    #[arg(long, value_name = "FILE", requires = "simulator")]
    pub simulator_unknown_tenants: Option<PathBuf>,

    /// With --simulator: tenant ids that accepted the MCA themselves (one per line)
    #[arg(long, value_name = "FILE", requires = "simulator")]
    pub simulator_direct_signed: Option<PathBuf>,

    /// With --simulator: customers of the partner (CSV: customer_tenant_id, company_name,
    /// domain, relationship_to_partner), listed besides every tenant the simulator knows
    #[arg(long, value_name = "FILE", requires = "simulator")]
    pub simulator_customers: Option<PathBuf>,

    /// API root; http:// only to a loopback host
    #[arg(long, value_name = "URL", env = "PARTNER_CENTER_BASE_URL")]
    pub base_url: Option<String>,

    /// Most requests started per time unit (N/s, N/min, N/h); retries count too
    #[arg(long, value_name = "RATE", default_value = "5/s")]
    pub rate: String,

    /// Most requests in flight
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub concurrency: usize,

    /// Per-request timeout in seconds
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub timeout: f64,
}

/// Options shared by the commands that read an input file.
#[derive(Debug, Clone, Args)]
pub struct InputArgs {
    /// Field separator of the input: ',' ';' or '\t' [default: detected from the header line,
    /// ',' unless it holds only ';' or tabs]
    #[arg(long, value_name = "CHAR")]
    pub delimiter: Option<String>,

    /// Character encoding of the input: windows-1252 reads Excel's "CSV (Comma delimited)"
    /// (the results are UTF-8 either way)
    #[arg(long, value_enum, value_name = "ENCODING", default_value_t = InputEncoding::Utf8, ignore_case = true)]
    pub encoding: InputEncoding,

    /// Fill blank date_agreed cells with this date (YYYY-MM-DD, RFC 3339, or 'today')
    #[arg(long, value_name = "DATE|today")]
    pub default_date_agreed: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ConfirmArgs {
    /// Input CSV of customer tenants and signers; '-' for stdin (a pipe or FIFO works too)
    pub input: PathBuf,

    /// Results file; '-' for stdout [default: <input stem>.results.csv beside the input;
    /// stdin.results.csv in the working directory when INPUT is '-' or a shell's <(…)]
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<PathBuf>,

    #[command(flatten)]
    pub api: ApiArgs,

    #[command(flatten)]
    pub input_args: InputArgs,

    /// POSTs per row before it is `failed`
    #[arg(long, value_name = "N", default_value_t = 6)]
    pub max_attempts: u32,

    /// Continue an existing results file: customers already confirmed there are not sent
    /// again; new lines are appended
    #[arg(long)]
    pub resume: bool,

    /// Mask signers' emails and phone numbers in the results (for sharing; such a file cannot
    /// be resumed)
    #[arg(long, conflicts_with = "resume")]
    pub redact: bool,

    /// Validate, authenticate, fetch the template and report `would_confirm`; send no POST
    #[arg(long)]
    pub dry_run: bool,

    /// A row answered "already exists" (600061) whose acceptance on record with the same
    /// signer predates this date is `failed` (AgreementOnRecordIsStale): the customer must
    /// accept again, with a signer that differs in name, email or phone
    #[arg(long, value_name = "DATE", default_value = crate::reconcile::DEFAULT_REFRESH_CUTOFF)]
    pub refresh_cutoff: String,

    /// Write the run summary (counts per status, timings, template id, run id) as JSON
    #[arg(long, value_name = "PATH")]
    pub summary_json: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct ValidateArgs {
    /// Input CSV of customer tenants and signers; '-' for stdin (a pipe or FIFO works too)
    pub input: PathBuf,

    /// Report file; '-' for stdout [default: <input stem>.validation.csv beside the input;
    /// stdin.validation.csv in the working directory when INPUT is '-' or a shell's <(…)]
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<PathBuf>,

    #[command(flatten)]
    pub input_args: InputArgs,

    /// Write the summary as JSON
    #[arg(long, value_name = "PATH")]
    pub summary_json: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct CustomersArgs {
    /// Output CSV; '-' for stdout
    #[arg(short, long, value_name = "PATH", default_value = "-")]
    pub output: PathBuf,

    #[command(flatten)]
    pub api: ApiArgs,

    /// Attempts per page before the listing fails
    #[arg(long, value_name = "N", default_value_t = 6)]
    pub max_attempts: u32,
}

#[derive(Debug, Clone, Args)]
pub struct TemplateArgs {
    #[command(flatten)]
    pub api: ApiArgs,

    /// List every agreement type's templates, not only the MCA
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Input CSV ('-' for stdin; a pipe or FIFO works too): a tenant id column is required;
    /// signer columns, when present, are compared with the record
    #[arg(required_unless_present = "all_customers")]
    pub input: Option<PathBuf>,

    /// Check every customer of the partner, listed by Partner Center, instead of an input
    /// file [default report: all-customers.status.csv in the working directory]
    #[arg(long, conflicts_with = "input")]
    pub all_customers: bool,

    /// Report file; '-' for stdout [default: <input stem>.status.csv beside the input]
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<PathBuf>,

    #[command(flatten)]
    pub api: ApiArgs,

    /// Field separator of the input: ',' ';' or '\t' [default: detected from the header line]
    #[arg(long, value_name = "CHAR")]
    pub delimiter: Option<String>,

    /// Character encoding of the input: windows-1252 reads Excel's "CSV (Comma delimited)"
    /// (the report is UTF-8 either way)
    #[arg(long, value_enum, value_name = "ENCODING", default_value_t = InputEncoding::Utf8, ignore_case = true)]
    pub encoding: InputEncoding,

    /// Confirmations dated before this are `stale`: the customer must accept again
    #[arg(long, value_name = "DATE", default_value = crate::reconcile::DEFAULT_REFRESH_CUTOFF)]
    pub refresh_cutoff: String,

    /// Write the input rows (all their columns) of `missing` and `stale` customers here: a
    /// ready input for `confirm`
    #[arg(long, value_name = "PATH")]
    pub emit_confirm_input: Option<PathBuf>,

    /// Attempts per call before the customer is `error`
    #[arg(long, value_name = "N", default_value_t = 6)]
    pub max_attempts: u32,

    /// Continue an existing report: customers already checked there are not checked again
    #[arg(long)]
    pub resume: bool,

    /// Mask the emails and phone numbers on record in the report (for sharing)
    #[arg(long)]
    pub redact: bool,

    /// Write the run summary as JSON
    #[arg(long, value_name = "PATH")]
    pub summary_json: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// Results files of `confirm`, or reports of `status` (all of one kind): one workbook row
    /// per row of each file (its last line wins), by file in this order, then row
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// The workbook to write (.xlsx); never one of the FILEs
    #[arg(short, long, value_name = "PATH", required = true)]
    pub output: PathBuf,
}

/// Flags of `mca-attest simulator`: plain values; `commands::simulator` turns them into the
/// simulator's typed config (and reads the files they name).
#[derive(Debug, Clone, Args)]
pub struct SimulatorArgs {
    /// Address to listen on; loopback only unless --allow-non-loopback.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Allow a non-loopback --listen address (exposes a fake API on the network).
    #[arg(long)]
    pub allow_non_loopback: bool,

    /// CSV of agreements already on record (customer_tenant_id,first_name,last_name,email[,phone_number][,date_agreed][,template_id]).
    #[arg(long, value_name = "FILE")]
    pub existing: Option<PathBuf>,

    /// Tenant ids answered 404 "Tenant not found" (one per line, or a CSV with a tenant id column).
    #[arg(long, value_name = "FILE")]
    pub unknown_tenants: Option<PathBuf>,

    /// Tenant ids without a reseller relationship: POST answers 403 (code 20002).
    #[arg(long, value_name = "FILE")]
    pub no_relationship: Option<PathBuf>,

    /// Tenant ids that accepted the MCA themselves (direct-signed status answers isSigned=true).
    #[arg(long, value_name = "FILE")]
    pub direct_signed: Option<PathBuf>,

    /// Server-side limit across all API calls, as N/s or N/min (sliding window); excess gets 429.
    #[arg(long, value_name = "N/s|N/min")]
    pub rate_limit: Option<String>,

    /// Another server-side limiter shape instead of --rate-limit; every refusal is 429 with
    /// Retry-After: 1, and times count from the first API call. SHAPE:PARAMS is one of
    /// token-bucket:RATE[,burst=B] (B tokens, 1 unless given, full at the start, refilled at
    /// RATE); window:RATE (at most N calls in any sliding window); calendar:RATE (at most N
    /// in each window counted from the first call); in-flight:N (429 while N calls are being
    /// answered: give --latency-ms so it binds); changes:RATE@T=RATE[@T=RATE...] (a sliding
    /// window whose limit changes at each T); transient:T[,T...] (no limit, but the first
    /// call at or after each T gets 429). RATE is N/s, N/min or N/Ws (W whole seconds, 1 to
    /// 3600); T is Ns, N.Ns or Nms. Examples: token-bucket:30/s,burst=5, window:300/10s,
    /// calendar:40/s, in-flight:8, changes:60/s@20s=30/s, transient:2s,4s,6s,8s.
    #[arg(long, value_name = "SHAPE:PARAMS", conflicts_with = "rate_limit")]
    pub limiter: Option<String>,

    /// Delay added before answering every API call, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub latency_ms: u64,

    /// Seed of the fault-injection random sequence (same seed, same faults, in request order).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,

    /// Fraction of calls answered 503 (nothing created).
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = parse_probability)]
    pub fail_rate: f64,

    /// Fraction of calls whose connection is closed without any response (nothing created).
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = parse_probability)]
    pub drop_rate: f64,

    /// Fraction of calls that are carried out, then have their connection closed without a response.
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = parse_probability)]
    pub drop_after_commit_rate: f64,

    /// Fraction of calls that are carried out but answered only after --slow-ms.
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = parse_probability)]
    pub slow_rate: f64,

    /// Extra delay of the --slow-rate calls, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 35_000)]
    pub slow_ms: u64,

    /// Apply faults to GET /v1/agreements too (by default the template call is never faulted).
    #[arg(long)]
    pub fault_template: bool,

    /// Accept only this bearer token (repeatable). Default: any non-empty token.
    #[arg(long = "access-token", value_name = "TOKEN")]
    pub access_tokens: Vec<String>,

    /// Answer every API call 401 with code 900421 (App+User token without an MFA claim).
    #[arg(long)]
    pub mfa_missing: bool,

    /// Client id the token endpoint accepts (enables it, with --client-secret and --refresh-token).
    #[arg(long, value_name = "ID")]
    pub client_id: Option<String>,

    /// Client secret the token endpoint accepts.
    #[arg(long, value_name = "SECRET", value_parser = parse_secret)]
    pub client_secret: Option<SecretString>,

    /// Refresh token the token endpoint accepts initially.
    #[arg(long, value_name = "TOKEN", value_parser = parse_secret)]
    pub refresh_token: Option<SecretString>,

    /// Lifetime of issued access tokens, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 3599)]
    pub token_ttl: u64,

    /// Issue a new refresh token on every exchange and invalidate the one used.
    #[arg(long)]
    pub rotate_refresh_token: bool,

    /// Do not keep the list of agreement POSTs (for benchmarks).
    #[arg(long)]
    pub no_record: bool,

    /// CSV of the partner's customers for GET /v1/customers (customer_tenant_id[,company_name][,domain][,relationship_to_partner]); listed first, in file order.
    #[arg(long, value_name = "FILE")]
    pub customers: Option<PathBuf>,

    /// Form of links.next.uri in the customer listing: with /v1, without it, or one then the other page by page.
    #[arg(long, value_name = "FORM", value_enum, default_value_t = NextLink::Alternate)]
    pub customers_next_link: NextLink,

    /// Largest page of the customer listing; a larger ?size= is clamped to it.
    // The simulator's MAX_CUSTOMER_PAGE_SIZE (a test in commands::simulator keeps them equal).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub customers_page_size_max: usize,
}

/// `--customers-next-link`: the form of `links.next.uri` in the simulator's customer listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NextLink {
    /// `/v1/customers?...` on every page.
    V1,
    /// `/customers?...` (no `/v1`) on every page.
    Bare,
    /// `/v1/customers?...` on page 1, `/customers?...` on page 2, and so on.
    Alternate,
}

fn parse_probability(s: &str) -> Result<f64, String> {
    let p: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a number"))?;
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(format!("{p} is not a probability between 0 and 1"))
    }
}

fn parse_secret(s: &str) -> Result<SecretString, String> {
    if s.is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(SecretString::from(s))
    }
}
