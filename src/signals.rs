//! Signals: the first SIGINT, SIGTERM or SIGHUP (an ssh session that drops) stops a run
//! gracefully, recording the rows in flight; a second one exits at once.

use std::sync::Arc;

use crate::pipeline::{AbortReason, RunContext};

/// First SIGINT/SIGTERM/SIGHUP: stop starting rows and let the in-flight ones finish. Second: exit at
/// once (every finished row is already on disk).
pub(crate) async fn watch(ctx: Arc<RunContext>) {
    let mut received = 0;
    loop {
        if !next_signal().await {
            return;
        }
        received += 1;
        if received == 1 {
            crate::console::say(
                crate::console::Kind::Note,
                "stopping: no new rows are started; waiting for the requests in flight (press Ctrl-C again to exit at once)",
            );
            ctx.abort(AbortReason::Interrupted);
        } else {
            crate::console::say(
                crate::console::Kind::Note,
                "exiting at once: every finished row is in the results file; run again with --resume",
            );
            std::process::exit(130);
        }
    }
}

#[cfg(unix)]
async fn next_signal() -> bool {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        return false;
    };
    tokio::select! {
        _ = int.recv() => true,
        _ = term.recv() => true,
        _ = hup.recv() => true,
    }
}

#[cfg(not(unix))]
async fn next_signal() -> bool {
    tokio::signal::ctrl_c().await.is_ok()
}
