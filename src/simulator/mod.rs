//! A local Partner Center simulator: the agreement calls, the customer listing, their errors,
//! throttling, faults and the token endpoint, behaving as `partner-center-api.md` documents the
//! real service.
//!
//! Start it in-process with [`Simulator::start`], or as `mca-attest simulator` through [`run`].

mod agreements;
mod auth;
mod config;
mod customers;
mod dates;
mod error;
mod faults;
mod files;
mod limiter;
mod mix;
mod net;
mod rate_limit;
mod replies;
mod routes;
mod state;
#[cfg(test)]
mod tests;

use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::{DataFiles, Faults, SimulatorConfig, TemplateItem, TokenEndpointConfig};
pub use customers::{
    CustomerProfile, DEFAULT_CUSTOMER_PAGE_SIZE, MAX_CUSTOMER_PAGE_SIZE, NextLinkForm,
};
pub use error::SimulatorError;
pub use limiter::{LIMITER_GRAMMAR, Limiter, LimiterParseError};
pub use rate_limit::{RateLimit, RateLimitParseError};
pub use state::{AgreementSource, RecordedRequest, SimulatorStats, StoredAgreement};

/// The MCA template id served by the simulator (the real one).
pub const MCA_TEMPLATE_ID: &str = "117a77b0-9360-443b-8795-c6dedc750cf9";
/// The retired Microsoft Cloud Agreement template id.
pub const MCA_CLOUD_TEMPLATE_ID: &str = "998b88de-aa99-4388-a42c-1b3517d49490";

/// How long [`Simulator::shutdown`] lets open connections finish before cutting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A running simulator. Dropping it stops the server without waiting; prefer
/// [`Simulator::shutdown`].
pub struct Simulator {
    addr: SocketAddr,
    state: Arc<routes::AppState>,
    stop: CancellationToken,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl Simulator {
    /// Bind `addr` (use 127.0.0.1:0 for a free port) and serve on the current tokio runtime in a
    /// spawned task.
    ///
    /// # Errors
    /// An invalid config, a non-loopback `addr` without `allow_non_loopback`, or a bind failure.
    pub async fn start(
        config: SimulatorConfig,
        addr: SocketAddr,
    ) -> Result<Simulator, SimulatorError> {
        config.validate()?;
        if !addr.ip().is_loopback() && !config.allow_non_loopback {
            return Err(SimulatorError::NonLoopback(addr));
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| SimulatorError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| SimulatorError::Bind { addr, source })?;
        let stop = CancellationToken::new();
        let state = Arc::new(routes::AppState::new(&config, stop.clone()));
        let app = routes::router(Arc::clone(&state))
            .into_make_service_with_connect_info::<net::ConnHandle>();
        let serve = axum::serve(net::KillableListener::new(listener), app)
            .with_graceful_shutdown(stop.clone().cancelled_owned());
        let task = tokio::spawn(async move { serve.await });
        tracing::debug!(%addr, "partner center simulator started");
        Ok(Simulator {
            addr,
            state,
            stop,
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Snapshot of the counters.
    pub fn stats(&self) -> SimulatorStats {
        self.state.counters.snapshot()
    }

    /// Every agreement POST received, in arrival order (empty when recording is off).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.store.requests()
    }

    /// Agreements currently on record for a tenant (existing + created), in creation order.
    pub fn agreements(&self, tenant: uuid::Uuid) -> Vec<StoredAgreement> {
        self.state.store.agreements(&tenant)
    }

    /// Graceful shutdown; waits for the server task (connections still open after a grace
    /// period are cut).
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            match tokio::time::timeout(SHUTDOWN_GRACE, task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => tracing::warn!("simulator server ended with an error: {e}"),
                Ok(Err(e)) => tracing::warn!("simulator server task failed: {e}"),
                Err(_) => abort.abort(),
            }
        }
    }

    /// Resolves if the server task ends on its own (it should not before shutdown).
    async fn stopped(&mut self) -> io::Result<()> {
        let Some(task) = self.task.as_mut() else {
            return Ok(());
        };
        let result = task.await;
        self.task = None;
        match result {
            Ok(served) => served,
            Err(e) => Err(io::Error::other(e)),
        }
    }
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("addr", &self.addr)
            .field("running", &self.task.is_some())
            .finish_non_exhaustive()
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Installs the SIGINT/SIGTERM handlers now and returns a future that resolves on either, so
/// no signal that arrives after the ready line is printed can kill the process outright.
fn termination_signal() -> io::Result<impl std::future::Future<Output = io::Result<()>>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = int.recv() => Ok(()),
                _ = term.recv() => Ok(()),
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(tokio::signal::ctrl_c())
    }
}

/// Serves `config` on `listen` as `mca-attest simulator` does: starts, prints exactly one line
/// `mca-attest simulator listening on http://ADDR` to stdout (flushed; tests read it to find
/// the port), then serves until SIGINT/SIGTERM and shuts down gracefully.
///
/// # Errors
/// Those of [`Simulator::start`], and I/O errors writing the ready line or installing the
/// signal handlers.
pub async fn serve(config: SimulatorConfig, listen: SocketAddr) -> Result<(), SimulatorError> {
    let mut simulator = Simulator::start(config, listen).await?;
    let signal = termination_signal()?;
    {
        let mut out = io::stdout().lock();
        writeln!(
            out,
            "mca-attest simulator listening on {}",
            simulator.base_url()
        )?;
        out.flush()?;
    }
    tracing::info!(url = %simulator.base_url(), "simulator ready; stop with Ctrl-C");
    let outcome = tokio::select! {
        r = signal => r.map_err(SimulatorError::Io),
        r = simulator.stopped() => match r {
            Ok(()) => Err(SimulatorError::Io(io::Error::other("the server stopped unexpectedly"))),
            Err(e) => Err(SimulatorError::Io(e)),
        },
    };
    simulator.shutdown().await;
    outcome
}
