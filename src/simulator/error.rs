//! Errors the simulator reports to whoever starts it.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Why the simulator could not be configured, started or kept running.
#[derive(Debug, thiserror::Error)]
pub enum SimulatorError {
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// A non-loopback address was asked for without the explicit opt-in.
    #[error(
        "refusing to listen on {0}: the simulator is a test kit and listens on loopback only \
         (pass --allow-non-loopback to override)"
    )]
    NonLoopback(SocketAddr),
    /// A data file could not be read at all.
    #[error("cannot read {}: {source}", path.display())]
    ReadFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A data file was read but a line in it is wrong.
    #[error("{}:{line}: {reason}", path.display())]
    FileContent {
        path: PathBuf,
        line: u64,
        reason: String,
    },
    /// A flag or config value is out of range or inconsistent with another.
    #[error("invalid {arg}: {reason}")]
    InvalidArg { arg: &'static str, reason: String },
    /// Serving, signal handling or writing the ready line failed.
    #[error("simulator I/O error: {0}")]
    Io(#[from] io::Error),
}
