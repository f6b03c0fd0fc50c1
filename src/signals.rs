//! Signals: the first SIGINT/SIGTERM stops a run gracefully, a second one exits at once.

use std::sync::Arc;

use crate::pipeline::{AbortReason, RunContext};

/// First SIGINT/SIGTERM: stop starting rows and let the in-flight ones finish. Second: exit at
/// once (every finished row is already on disk).
pub async fn watch(ctx: Arc<RunContext>) {
    let mut received = 0;
    loop {
        if !next_signal().await {
            return;
        }
        received += 1;
        if received == 1 {
            eprintln!(
                "stopping: no new rows are started; waiting for the requests in flight (press Ctrl-C again to exit at once)"
            );
            ctx.abort(AbortReason::Interrupted);
        } else {
            eprintln!(
                "exiting at once: every finished row is in the results file; run again with --resume"
            );
            std::process::exit(130);
        }
    }
}

#[cfg(unix)]
async fn next_signal() -> bool {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return false;
    };
    tokio::select! {
        _ = int.recv() => true,
        _ = term.recv() => true,
    }
}

#[cfg(not(unix))]
async fn next_signal() -> bool {
    tokio::signal::ctrl_c().await.is_ok()
}
