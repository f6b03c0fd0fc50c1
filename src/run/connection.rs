//! The connection a run talks through: credentials read (or the in-process simulator
//! started), one client with its rate gate and token source.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::refresh_token::{RefreshTokenKeeper, TokenFile};
use crate::api::{ClientOptions, Credentials, PartnerCenterClient, TokenSource};
use crate::config::{ApiConfig, Endpoint};
use crate::console::{Kind, say};
use crate::error::AppError;
use crate::rate::RequestGate;
use crate::simulator::{DataFiles, Simulator, SimulatorConfig, SimulatorError};

/// A client ready to talk to the configured service, and the in-process simulator behind it
/// when `--simulator` was given (kept alive as long as the connection).
#[derive(Debug)]
pub(crate) struct Connection {
    pub client: PartnerCenterClient,
    pub base_url: String,
    simulator: Option<Simulator>,
    /// Where rotated refresh tokens go (refresh-token flow only).
    rotated: Option<Arc<RefreshTokenKeeper>>,
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
                let files = DataFiles {
                    existing: existing.clone(),
                    unknown_tenants: unknown_tenants.clone(),
                    direct_signed: direct_signed.clone(),
                    customers: customers.clone(),
                    no_relationship: None,
                };
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
        };
        // One HTTP client for every call of the run, the token authority's included.
        let connect_timeout = api.timeout.min(Duration::from_secs(10));
        let http = crate::api::http::client(api.concurrency, connect_timeout)
            .map_err(|e| AppError::Usage(format!("cannot set up the HTTP client: {e}")))?;
        let rotates = matches!(credentials, Credentials::RefreshToken(_));
        let mut tokens =
            TokenSource::new(credentials, http.clone(), api.timeout).stop_on(stop.clone());
        let rotated = rotates.then(|| Arc::new(RefreshTokenKeeper::from_env()));
        if let Some(keeper) = &rotated {
            if let Err(why) = keeper.check() {
                tracing::warn!("{why}");
            }
            let keeper = keeper.clone();
            tokens = tokens.on_refresh_token_rotated(move |token| keeper.keep(token));
        }
        let tokens = Arc::new(tokens);
        let gate = Arc::new(RequestGate::new(api.rate, stop));
        let client = PartnerCenterClient::new(&options, http, tokens, gate);
        Ok(Connection {
            client,
            base_url: base_url.as_str().trim_end_matches('/').to_string(),
            simulator,
            rotated,
        })
    }

    /// Ends the connection: a rotated refresh token that could not be saved is tried once
    /// more, and if it still cannot be, the operator is told what the next run will meet (the
    /// command then exits 4, see [`TokenFile::exit`]).
    pub(crate) async fn close(self) -> TokenFile {
        let mut token = TokenFile::Current;
        if let Some(Err(why)) = self.rotated.as_deref().map(RefreshTokenKeeper::finish) {
            say(Kind::Error, &format!("error: {why}"));
            token = TokenFile::Unsaved;
        }
        if let Some(sim) = self.simulator {
            sim.shutdown().await;
        }
        token
    }
}

/// Starts the in-process simulator on a free loopback port with the data files given; it
/// keeps no request log (nobody reads it in a run).
async fn start_simulator(files: &DataFiles) -> Result<Simulator, AppError> {
    let failed = |e: SimulatorError| AppError::Usage(format!("the simulator failed: {e}"));
    let mut config = SimulatorConfig {
        record_requests: false,
        ..SimulatorConfig::default()
    };
    config.load(files).map_err(failed)?;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    Simulator::start(config, addr).await.map_err(failed)
}
