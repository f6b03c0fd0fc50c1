//! The run pipeline, generic over the job: a reader on a blocking thread feeds a bounded
//! channel; at most `concurrency` rows are in flight, each request start passing the shared
//! rate gate; one writer task owns the report file and the progress display, so lines never
//! interleave and memory stays O(concurrency) whatever the file size.

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::api::ApiError;
use crate::domain::RowNumber;
use crate::progress::{Progress, Tally};
use crate::results::{OutputError, ReportRecord, ReportWriter};

/// One unit of work from the reader.
#[derive(Debug)]
pub enum Work<I, R> {
    /// A row that needs the network.
    Send { row: RowNumber, input: I },
    /// A row whose outcome is known without the network (invalid, duplicate, ...).
    Settled(R),
}

/// Why a run stopped before the end of its input.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AbortReason {
    #[error("{0}")]
    Credentials(String),
    #[error("the results file could not be written: {0}")]
    Output(String),
    #[error("the input file could not be read to the end: {0}")]
    Input(String),
    #[error("interrupted")]
    Interrupted,
    #[error("{0}")]
    ServiceDown(String),
}

/// Stops a run when the service is plainly down, instead of burning through the whole file:
/// [`OutageBreaker::ROWS`] rows in a row ended, after their retries, with server or
/// connection errors.
#[derive(Debug, Default)]
pub struct OutageBreaker {
    consecutive: AtomicU32,
}

impl OutageBreaker {
    pub const ROWS: u32 = 20;

    /// A row ended with an answer from a working service (success or a business error).
    pub fn healthy(&self) {
        self.consecutive.store(0, Ordering::Relaxed);
    }

    /// A row ended on `error`; returns the reason to stop the run when the breaker trips.
    pub fn failed(&self, error: &ApiError) -> Option<AbortReason> {
        if !error.is_retryable() {
            self.healthy();
            return None;
        }
        let down = self.consecutive.fetch_add(1, Ordering::Relaxed) + 1;
        (down >= Self::ROWS).then(|| {
            AbortReason::ServiceDown(format!(
                "{down} rows in a row ended with server or connection errors after their retries (last: {error}): Partner Center looks unavailable"
            ))
        })
    }
}

/// What a job did with one row.
#[derive(Debug)]
pub enum JobOutcome<R> {
    Done(R),
    /// The row's record, and the reason the whole run must stop.
    Abort(R, AbortReason),
    /// The run stopped before anything was sent for the row: no record, so a resumed run
    /// takes the row up again.
    NotStarted,
}

/// What every job shares: the stop signal and why the run stopped.
#[derive(Debug, Default)]
pub struct RunContext {
    /// Cancelled when the run must stop starting new work.
    pub stop: CancellationToken,
    abort: Mutex<Option<AbortReason>>,
}

impl RunContext {
    pub fn new(stop: CancellationToken) -> Self {
        RunContext {
            stop,
            abort: Mutex::new(None),
        }
    }

    /// Stops the run; the first reason given is the one reported.
    pub fn abort(&self, reason: AbortReason) {
        if let Ok(mut slot) = self.abort.lock() {
            slot.get_or_insert(reason);
        }
        self.stop.cancel();
    }

    /// Why the run stopped, if it did.
    pub fn abort_reason(&self) -> Option<AbortReason> {
        self.abort.lock().ok().and_then(|a| a.clone())
    }
}

/// A kind of network work done per row (confirming, checking status, ...).
pub trait Job: Send + Sync + 'static {
    type Input: Send + 'static;
    type Record: ReportRecord;

    /// Does the row's work. Each request must first pass `ctx.gate`.
    fn run(
        &self,
        row: RowNumber,
        input: Self::Input,
        ctx: &RunContext,
    ) -> impl Future<Output = JobOutcome<Self::Record>> + Send;
}

/// How a pipeline run ended.
#[derive(Debug)]
pub struct PipelineReport {
    pub tally: Tally,
    pub abort: Option<AbortReason>,
}

/// Runs `job` over everything `source` yields, writing each record through `writer`.
pub async fn run<J: Job>(
    job: Arc<J>,
    ctx: Arc<RunContext>,
    concurrency: usize,
    mut source: mpsc::Receiver<Work<J::Input, J::Record>>,
    mut writer: ReportWriter,
    progress: Progress,
) -> (PipelineReport, ReportWriter) {
    let (record_tx, mut record_rx) = mpsc::channel::<J::Record>(concurrency.max(1) * 2);
    let writer_task = {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut failed = false;
            while let Some(record) = record_rx.recv().await {
                if failed {
                    // The file can no longer be written; keep draining so workers finish.
                    continue;
                }
                if let Err(e) = writer.write(&record) {
                    failed = true;
                    ctx.abort(AbortReason::Output(e.to_string()));
                    continue;
                }
                tally.add(record.status_word());
                progress.record(&tally);
            }
            progress.finish();
            (writer, tally)
        })
    };

    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut workers = JoinSet::new();
    loop {
        let work = tokio::select! {
            biased;
            _ = ctx.stop.cancelled() => break,
            work = source.recv() => work,
        };
        let Some(work) = work else { break };
        match work {
            Work::Settled(record) => {
                if record_tx.send(record).await.is_err() {
                    break;
                }
            }
            Work::Send { row, input } => {
                let permit = tokio::select! {
                    biased;
                    _ = ctx.stop.cancelled() => break,
                    permit = permits.clone().acquire_owned() => match permit {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                };
                let job = job.clone();
                let ctx = ctx.clone();
                let tx = record_tx.clone();
                workers.spawn(async move {
                    let record = match job.run(row, input, &ctx).await {
                        JobOutcome::Done(r) => Some(r),
                        JobOutcome::Abort(r, reason) => {
                            ctx.abort(reason);
                            Some(r)
                        }
                        JobOutcome::NotStarted => None,
                    };
                    if let Some(record) = record {
                        let _ = tx.send(record).await;
                    }
                    drop(permit);
                });
            }
        }
        // Reap finished workers so the set does not grow with the file.
        while workers.try_join_next().is_some() {}
    }
    // Dropping the receiver tells the reader thread to stop.
    drop(source);
    while workers.join_next().await.is_some() {}
    drop(record_tx);
    let (writer, tally) = match writer_task.await {
        Ok(done) => done,
        Err(e) => {
            // The writer task panicked: nothing more can be recorded.
            std::panic::resume_unwind(e.into_panic());
        }
    };
    (
        PipelineReport {
            tally,
            abort: ctx.abort_reason(),
        },
        writer,
    )
}

/// Sends reader output into the pipeline from a blocking thread; returns false once the
/// pipeline has stopped listening.
pub fn feed<I, R>(tx: &mpsc::Sender<Work<I, R>>, work: Work<I, R>) -> bool {
    tx.blocking_send(work).is_ok()
}

/// After a pipeline run: joins the reader and finishes the report, keeping the first reason
/// the run stopped for (the pipeline's, then the reader's, then the report's).
pub async fn settle(
    mut abort: Option<AbortReason>,
    reader: tokio::task::JoinHandle<Result<(), crate::input::InputError>>,
    writer: ReportWriter,
) -> Option<AbortReason> {
    match reader.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            abort.get_or_insert(AbortReason::Input(e.to_string()));
        }
        Err(e) => {
            abort.get_or_insert(AbortReason::Input(format!("the reader stopped: {e}")));
        }
    }
    if let Err(e) = writer.finish() {
        abort.get_or_insert(output_abort(&e));
    }
    abort
}

/// Turns an output error into the abort reason the summary reports.
pub fn output_abort(e: &OutputError) -> AbortReason {
    AbortReason::Output(e.to_string())
}
