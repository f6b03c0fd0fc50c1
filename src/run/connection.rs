//! The connection a run talks through: credentials read (or the in-process simulator
//! started), one client with its rate gate and token source.

use std::sync::Arc;

use clap::Parser;
use tokio_util::sync::CancellationToken;

use secrecy::{ExposeSecret, SecretString};

use crate::api::auth::ENV_REFRESH_TOKEN;
use crate::api::{ClientOptions, Credentials, PartnerCenterClient, TokenSource};
use crate::config::{ApiConfig, Endpoint};
use crate::error::AppError;
use crate::rate::RequestGate;
use crate::simulator::{Simulator, SimulatorArgs, SimulatorConfig};

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
                customers,
            } => {
                let files = [
                    ("--existing", existing),
                    ("--unknown-tenants", unknown_tenants),
                    ("--direct-signed", direct_signed),
                    ("--customers", customers),
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
        let rotates = matches!(credentials, Credentials::RefreshToken(_));
        let mut tokens = TokenSource::new(credentials, api.timeout).stop_on(stop.clone());
        if rotates {
            tokens = tokens.on_refresh_token_rotated(keep_rotated_refresh_token());
        }
        let tokens = Arc::new(tokens);
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

/// What to do with a refresh token the authority rotated: Microsoft's guidance is to store the
/// new one where the old one lived, and a nightly job that never does dies within 90 days.
/// Given as `PARTNER_CENTER_REFRESH_TOKEN_FILE`, the file is replaced atomically (same
/// permissions) as soon as the new token arrives; given in the environment, it cannot be, and
/// the log says so once.
fn keep_rotated_refresh_token() -> impl Fn(&SecretString) + Send + Sync + 'static {
    let file = std::env::var_os(ENV_REFRESH_TOKEN)
        .is_none()
        .then(|| std::env::var_os(format!("{ENV_REFRESH_TOKEN}_FILE")))
        .flatten()
        .map(std::path::PathBuf::from);
    let warned = std::sync::atomic::AtomicBool::new(false);
    move |token: &SecretString| match &file {
        Some(path) => {
            let mut text = token.expose_secret().to_string();
            text.push('\n');
            match crate::files::replace_keeping_mode(path, text.as_bytes()) {
                Ok(()) => tracing::info!(
                    "the token authority rotated the refresh token: saved to '{}' for the next run",
                    path.display()
                ),
                Err(e) => tracing::error!(
                    "the token authority rotated the refresh token, but it could not be saved to '{}' ({e}): the next run may start with a token that no longer works",
                    path.display()
                ),
            }
        }
        None => {
            if !warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::warn!(
                    "the token authority rotated the refresh token; it is used for this run but not saved, since {ENV_REFRESH_TOKEN} came from the environment: give it as {ENV_REFRESH_TOKEN}_FILE so scheduled runs keep a working token"
                );
            }
        }
    }
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
    let simulator_error =
        |e: crate::simulator::SimulatorError| AppError::Usage(format!("the simulator failed: {e}"));
    let mut config = SimulatorConfig::from_args(&parsed.args).map_err(simulator_error)?;
    config.record_requests = false;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    Simulator::start(config, addr)
        .await
        .map_err(simulator_error)
}
