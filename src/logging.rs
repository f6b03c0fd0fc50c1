//! Log lines on stderr through `tracing`: level from `RUST_LOG` (default `info`), text or JSON,
//! written around the progress bar so neither tears the other.

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;
use crate::progress::BarSafeStderr;

/// Installs the global subscriber; a second call (tests running in-process) is a no-op. The
/// level is `RUST_LOG` when set, else from `-q` (errors only) and `-v` (debug, then trace).
pub(crate) fn init(format: LogFormat, quiet: bool, verbose: u8) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let ansi = !no_color && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(BarSafeStderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(ansi).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
