//! One module per subcommand, each with a `run`; this module dispatches and holds what they
//! share (connecting to the service).

pub mod confirm;
pub mod status;
pub mod template;
pub mod validate;

use std::sync::Arc;

use clap::{CommandFactory, Parser};
use tokio_util::sync::CancellationToken;

use crate::api::{ClientOptions, Credentials, PartnerCenterClient, TokenSource};
use crate::cli::{Cli, Command};
use crate::config::{ApiConfig, Endpoint};
use crate::error::{AppError, Exit};
use crate::rate::RequestGate;
use crate::simulator::{Simulator, SimulatorArgs, SimulatorConfig};

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> Result<Exit, AppError> {
    match cli.command {
        Command::Confirm(args) => confirm::run(args).await,
        Command::Validate(args) => validate::run(args),
        Command::Status(args) => status::run(args).await,
        Command::Template(args) => template::run(args).await,
        Command::Simulator(args) => {
            crate::simulator::run(args).await?;
            Ok(Exit::Success)
        }
        Command::Man => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut page)
                .map_err(|e| AppError::Aborted(format!("cannot render the manual page: {e}")))?;
            print_stdout(&page)?;
            Ok(Exit::Success)
        }
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "mca-attest", &mut script);
            print_stdout(&script)?;
            Ok(Exit::Success)
        }
    }
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
pub fn print_stdout(bytes: &[u8]) -> Result<(), AppError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(AppError::Aborted(format!(
            "cannot write to standard output: {e}"
        ))),
        _ => Ok(()),
    }
}

/// A client ready to talk to the configured service, and the in-process simulator behind it
/// when `--simulator` was given (kept alive as long as the connection).
#[derive(Debug)]
pub struct Connection {
    pub client: PartnerCenterClient,
    pub base_url: String,
    simulator: Option<Simulator>,
}

impl Connection {
    /// Reads credentials (or starts the simulator) and builds the client. Everything here can
    /// fail only with exit 2: nothing has been sent yet.
    pub async fn open(api: &ApiConfig, stop: CancellationToken) -> Result<Self, AppError> {
        let (base_url, credentials, simulator) = match &api.endpoint {
            Endpoint::Remote(url) => (url.clone(), Credentials::from_env()?, None),
            Endpoint::Simulator {
                existing,
                unknown_tenants,
                direct_signed,
            } => {
                let files = [
                    ("--existing", existing),
                    ("--unknown-tenants", unknown_tenants),
                    ("--direct-signed", direct_signed),
                ];
                let sim = start_simulator(&files).await?;
                let url = reqwest::Url::parse(&sim.base_url())
                    .map_err(|e| AppError::Usage(format!("simulator address: {e}")))?;
                tracing::info!(base_url = %url, "running against the in-process simulator: nothing leaves this machine");
                // The simulator accepts any bearer token in its default mode.
                let token = Credentials::AccessToken("simulator".to_string().into());
                (url, token, Some(sim))
            }
        };
        let options = ClientOptions {
            base_url: base_url.clone(),
            timeout: api.timeout,
            max_connections: api.concurrency,
        };
        let tokens = Arc::new(TokenSource::new(credentials, api.timeout));
        let gate = Arc::new(RequestGate::new(api.rate, stop));
        let client = PartnerCenterClient::new(&options, tokens, gate)
            .map_err(|e| AppError::Usage(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Connection {
            client,
            base_url: base_url.as_str().trim_end_matches('/').to_string(),
            simulator,
        })
    }

    pub async fn close(self) {
        if let Some(sim) = self.simulator {
            sim.shutdown().await;
        }
    }
}

/// Refuses an output path that is the input file itself: writing it would destroy the input
/// while it is being read.
pub fn refuse_same_file(
    output: &std::path::Path,
    input: &std::path::Path,
    what: &str,
) -> Result<(), AppError> {
    let same = match (std::fs::canonicalize(output), std::fs::canonicalize(input)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        return Err(AppError::Usage(format!(
            "{what} '{}' is the input file: choose another path",
            output.display()
        )));
    }
    Ok(())
}

/// Wraps the simulator's own arguments so its file loading is reused as is.
#[derive(Debug, Parser)]
struct InProcessSimulator {
    #[command(flatten)]
    args: SimulatorArgs,
}

async fn start_simulator(
    files: &[(&str, &Option<std::path::PathBuf>)],
) -> Result<Simulator, AppError> {
    let mut argv: Vec<std::ffi::OsString> = vec!["simulator".into()];
    for (flag, path) in files {
        if let Some(path) = path {
            argv.extend([(*flag).into(), path.as_os_str().to_owned()]);
        }
    }
    let parsed = InProcessSimulator::try_parse_from::<_, std::ffi::OsString>(argv)
        .map_err(|e| AppError::Usage(format!("simulator settings: {e}")))?;
    let mut config = SimulatorConfig::from_args(&parsed.args)?;
    config.record_requests = false;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    Ok(Simulator::start(config, addr).await?)
}

/// The command line that continues this run: the same arguments, with `--resume`.
pub fn resume_command() -> String {
    let mut args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--resume") {
        args.push("--resume".into());
    }
    args.iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn shell_quote(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+%".contains(c))
    {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_keeps_plain_words_and_quotes_the_rest() {
        assert_eq!(shell_quote("wave1.csv"), "wave1.csv");
        assert_eq!(shell_quote("--rate=5/s"), "--rate=5/s");
        assert_eq!(shell_quote("my file.csv"), "'my file.csv'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
